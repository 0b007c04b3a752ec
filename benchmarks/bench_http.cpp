// SPDX-License-Identifier: MIT
// HTTP/1.1 static files over loopback: coil's examples/http_server against nginx with one
// worker (sendfile on, keep-alive, access log off), both serving the same files from the same
// directory, each a process pinned to one CPU, both driven by the same wrk command pinned to
// another CPU.
//
// For each file size and connection count every server runs `--runs` times, interleaved (the
// order rotates from run to run, so a slow spell of the shared machine falls on each server
// alike). A run is one wrk invocation; a Lua `done` hook prints wrk's own totals (requests,
// errors by kind, latency percentiles), which this program reads. Beside requests/s it reports
// the server's CPU time per request (utime + stime of the server process, before and after the
// run), the efficiency figure that does not depend on whether wrk or the server was the
// bottleneck. Before measuring, each server's answer for each file is fetched once and compared
// byte for byte with the file; a run with any wrk error or non-2xx answer fails the benchmark.
//
// wrk is closed-loop: its latency percentiles understate the tail under overload (coordinated
// omission). They compare two servers under the same load; they are not a latency SLO.

#include "harness.hpp"
#include "peer_process.hpp"

#include <fmt/core.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace {

namespace bench = coil::bench;
namespace fs = std::filesystem;
using bench::fail;
using bench::server_process;
using bench::spread;
using bench::summarise;

// The issue's target: coil >= nginx in requests/s with p99 no worse (aim: 1.2x).
constexpr double target_vs_nginx = 1.0;

std::string errno_text(int error) { return std::generic_category().message(error); }

// --- the files and the servers -----------------------------------------------------------------

std::string file_name(std::size_t size) { return fmt::format("file-{}.bin", size); }

// The served directory: one file of each size, random bytes (so no layer can compress them).
void write_files(const fs::path& root, const std::vector<unsigned long>& sizes)
{
    fs::create_directories(root);
    std::mt19937_64 rng(0x636f696c'68747470); // "coilhttp"
    for (unsigned long size : sizes) {
        std::string bytes(size, '\0');
        for (char& c : bytes)
            c = static_cast<char>(rng() & 0xff);
        std::ofstream out(root / file_name(size), std::ios::binary | std::ios::trunc);
        out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
        if (!out)
            fail("cannot write " + (root / file_name(size)).string());
    }
}

struct server_spec {
    std::string name;        // coil, coil-read, coil-splice, nginx
    std::string description; // for the legend
    std::string missing_why; // empty: runnable
    std::string program;
    std::vector<std::string> extra_args; // coil: after --port 0 --root DIR
};

std::vector<server_spec> known_servers()
{
    std::vector<server_spec> all;
    auto coil = [&](std::string name, std::string method, std::string description) {
        all.push_back({std::move(name), std::move(description), "", COIL_HTTP_PEER_COIL,
                       {"--idle-timeout-ms", "600000", "--large-file", std::move(method)}});
    };
    coil("coil", "sendfile",
         "coil's examples/http_server.cpp (multishot accept, files read through the ring, "
         "large files with sendfile(2) from the loop)");
    coil("coil-read", "read", "coil's http_server, large files with ring reads + sends");
    coil("coil-splice", "splice", "coil's http_server, large files spliced through a pipe");
    server_spec nginx{"nginx", "nginx, one worker (master_process off), sendfile on, tcp_nopush, "
                               "keep-alive, access log off", "", "", {}};
    if (auto path = bench::find_program("nginx"))
        nginx.program = *path;
    else
        nginx.missing_why = "nginx not installed (./dev bench installs it from Debian)";
    all.push_back(std::move(nginx));
    return all;
}

// nginx as tuned for static files on one core; every path it writes lives under `dir`.
std::string nginx_config(const fs::path& dir, const fs::path& root, std::uint16_t port)
{
    return fmt::format(R"(# written by bench_http
daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile 65536;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{
    worker_connections 16384;
    use epoll;
}}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 600s;
    keepalive_requests 1000000000;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    types {{ application/octet-stream bin; }}
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {root};
        location / {{ }}
    }}
}}
)",
                       fmt::arg("dir", dir.string()), fmt::arg("root", root.string()),
                       fmt::arg("port", port));
}

bench::process_spec process_of(const server_spec& s, const fs::path& work, const fs::path& root)
{
    if (s.name != "nginx") {
        std::vector<std::string> argv{s.program, "--port", "0", "--root", root.string()};
        argv.insert(argv.end(), s.extra_args.begin(), s.extra_args.end());
        return {s.name, std::move(argv), std::nullopt, true};
    }
    const fs::path dir = work / "nginx";
    fs::create_directories(dir);
    const std::uint16_t port = bench::free_port();
    std::ofstream(dir / "nginx.conf") << nginx_config(dir, root, port);
    return {s.name,
            {s.program, "-p", dir.string(), "-e", (dir / "error.log").string(), "-c",
             (dir / "nginx.conf").string()},
            port,
            true};
}

// --- checking an answer ------------------------------------------------------------------------

// GET /name over a fresh connection (HTTP/1.0, so the server closes after the answer); the
// whole answer, head and body.
std::string fetch(std::uint16_t port, const std::string& name)
{
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        fail("socket: " + errno_text(errno));
    sockaddr_in at{};
    at.sin_family = AF_INET;
    at.sin_port = htons(port);
    at.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&at), sizeof(at)) != 0) {
        const int error = errno;
        ::close(fd);
        fail(fmt::format("connect to port {}: {}", port, errno_text(error)));
    }
    const std::string request = "GET /" + name + " HTTP/1.0\r\nHost: localhost\r\n\r\n";
    if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) !=
        static_cast<ssize_t>(request.size())) {
        ::close(fd);
        fail("cannot send a request");
    }
    std::string answer;
    char chunk[65536];
    for (;;) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 10'000) <= 0) {
            ::close(fd);
            fail(fmt::format("no complete answer for /{} within 10 s", name));
        }
        const ssize_t n = ::recv(fd, chunk, sizeof(chunk), 0);
        if (n <= 0)
            break;
        answer.append(chunk, static_cast<std::size_t>(n));
    }
    ::close(fd);
    return answer;
}

void check_answers(const std::string& server, std::uint16_t port, const fs::path& root,
                   const std::vector<unsigned long>& sizes)
{
    for (unsigned long size : sizes) {
        const std::string answer = fetch(port, file_name(size));
        const auto end_of_head = answer.find("\r\n\r\n");
        if (answer.rfind("HTTP/1.1 200 ", 0) != 0 || end_of_head == std::string::npos)
            fail(fmt::format("{} answered /{} with '{}'", server, file_name(size),
                             answer.substr(0, answer.find('\r'))));
        auto expected = bench::read_text_file((root / file_name(size)).string());
        if (!expected || answer.compare(end_of_head + 4, std::string::npos, *expected) != 0)
            fail(fmt::format("{} sent a body for /{} that differs from the file", server,
                             file_name(size)));
    }
}

// --- wrk ---------------------------------------------------------------------------------------

// wrk's `done` hook, which prints its totals on one line this program parses.
constexpr std::string_view wrk_report_script = R"(-- written by bench_http
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "bench_http requests=%d duration_us=%d bytes=%d connect=%d read=%d write=%d status=%d " ..
    "timeout=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(99)))
end
)";

struct run_result {
    std::uint64_t requests = 0;
    std::uint64_t bytes = 0;
    std::uint64_t errors = 0; // socket errors and non-2xx/3xx answers together
    double seconds = 0;
    double server_cpu_seconds = 0;
    double p50_us = 0;
    double p99_us = 0;

    double requests_per_second() const { return seconds > 0 ? double(requests) / seconds : 0; }
    double megabytes_per_second() const { return seconds > 0 ? double(bytes) / seconds / 1e6 : 0; }
    double server_us_per_request() const
    {
        return requests > 0 ? server_cpu_seconds * 1e6 / double(requests) : 0;
    }
};

// Runs wrk on the client CPU and reads its totals.
run_result run_wrk(const std::string& wrk, const fs::path& script, int cpu, unsigned connections,
                   unsigned seconds, std::uint16_t port, const std::string& name)
{
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0)
        fail("pipe2: " + errno_text(errno));
    const std::vector<std::string> args{wrk,
                                        "-t1",
                                        "-c" + std::to_string(connections),
                                        "-d" + std::to_string(seconds) + "s",
                                        "--timeout",
                                        "10s",
                                        "-s",
                                        script.string(),
                                        fmt::format("http://127.0.0.1:{}/{}", port, name)};
    const pid_t pid = bench::spawn_pinned(args, cpu, out[1], false);
    ::close(out[1]);
    std::string text;
    char chunk[4096];
    for (ssize_t n; (n = ::read(out[0], chunk, sizeof(chunk))) != 0;) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break;
        text.append(chunk, static_cast<std::size_t>(n));
    }
    ::close(out[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    const auto at = text.find("bench_http ");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || at == std::string::npos)
        fail("wrk failed; it said:\n" + text);

    std::map<std::string, double> field;
    std::istringstream words(text.substr(at + 11, text.find('\n', at) - at - 11));
    for (std::string word; words >> word;) {
        const auto eq = word.find('=');
        if (eq != std::string::npos)
            field[word.substr(0, eq)] = std::stod(word.substr(eq + 1));
    }
    run_result r;
    r.requests = static_cast<std::uint64_t>(field["requests"]);
    r.bytes = static_cast<std::uint64_t>(field["bytes"]);
    r.seconds = field["duration_us"] / 1e6;
    r.errors = static_cast<std::uint64_t>(field["connect"] + field["read"] + field["write"] +
                                          field["status"] + field["timeout"]);
    r.p50_us = field["p50_us"];
    r.p99_us = field["p99_us"];
    return r;
}

// --- the benchmark -----------------------------------------------------------------------------

struct server_runs {
    std::string skipped; // why, when it did not run
    std::vector<run_result> runs;
};

struct row {
    std::size_t size = 0;
    unsigned connections = 0;
    std::map<std::string, server_runs> servers;
    // Per server but nginx, per run: its requests/s / nginx's, and nginx's CPU us per request /
    // its own (requests per CPU second, relative). "coil" is the headline.
    std::map<std::string, std::vector<double>> vs_nginx;
    std::map<std::string, std::vector<double>> cpu_vs_nginx;
};

std::string size_text(std::size_t size)
{
    if (size % (1024 * 1024) == 0)
        return fmt::format("{} MiB", size / (1024 * 1024));
    if (size % 1024 == 0)
        return fmt::format("{} KiB", size / 1024);
    return fmt::format("{} B", size);
}

class http_benchmark {
public:
    explicit http_benchmark(bench::harness& h) : h_(h)
    {
        sizes_ = bench::number_list(h.option("sizes"), "sizes", 1UL << 30);
        for (unsigned long c : bench::number_list(h.option("connections"), "connections", 10000))
            connection_counts_.push_back(static_cast<unsigned>(c));
        const long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
        server_cpu_ = static_cast<int>(
            bench::integer_option(h.option("server-cpu"), "server-cpu", -1, cpus - 1));
        client_cpu_ = static_cast<int>(
            bench::integer_option(h.option("client-cpu"), "client-cpu", -1, cpus - 1));
        servers_ = bench::select_by_name(known_servers(), h.option("servers"), "servers");
        if (servers_.empty())
            fail("--servers names none of coil, coil-read, coil-splice, nginx");
        auto found = bench::find_program("wrk");
        if (!found)
            fail("wrk is not installed (./dev bench installs it; or: apt-get install wrk)");
        wrk_ = *found;
        // A run killed by a signal left bench_http.PID (nginx's files, the served ones): one
        // whose process is gone is removed now.
        std::error_code swept;
        for (const auto& entry : fs::directory_iterator(h.option("data-dir"), swept)) {
            const std::string name = entry.path().filename().string();
            if (name.starts_with("bench_http.") &&
                bench::process_gone(std::atol(name.c_str() + std::strlen("bench_http."))))
                fs::remove_all(entry.path(), swept);
        }
        work_ = fs::path(h.option("data-dir")) / fmt::format("bench_http.{}", ::getpid());
        root_ = work_ / "root";
        // Whole seconds: wrk's -d takes no fraction.
        seconds_ = static_cast<unsigned>(std::max<double>(
            1.0, std::round(std::chrono::duration<double>(h.opts().duration).count())));
    }

    ~http_benchmark()
    {
        std::error_code ignored;
        fs::remove_all(work_, ignored);
    }
    http_benchmark(const http_benchmark&) = delete;
    http_benchmark& operator=(const http_benchmark&) = delete;

    void run()
    {
        const unsigned largest =
            *std::max_element(connection_counts_.begin(), connection_counts_.end());
        const rlim_t got = bench::raise_file_limit(largest * 2 + 256);
        write_files(root_, sizes_);
        script_ = work_ / "report.lua";
        std::ofstream(script_) << wrk_report_script;

        fmt::print("  pinning   servers on CPU {}, wrk on CPU {}; RLIMIT_NOFILE {}\n",
                   server_cpu_, client_cpu_, got);
        fmt::print("  servers   (each its own process, started by this program)\n");
        for (const server_spec& s : servers_)
            fmt::print("    {:<12} {}{}\n", s.name, s.description,
                       s.missing_why.empty() ? "" : " -- SKIPPED: " + s.missing_why);
        fmt::print("  client    {} -t1 (one thread), keep-alive, {} s per run, --timeout 10s\n",
                   wrk_, seconds_);
        const double asked = std::chrono::duration<double>(h_.opts().duration).count();
        if (asked != static_cast<double>(seconds_))
            fmt::print("  note      wrk runs whole seconds: each run lasts {} s, not the {:.3g} s "
                       "the settings line gives\n",
                       seconds_, asked);
        fmt::print("  files     random bytes in {}\n", root_.string());
        fmt::print("  target    coil >= {:.2f}x nginx in requests/s with p99 no worse (aim "
                   "1.2x)\n", target_vs_nginx);
        std::fflush(stdout);
        print_header();
        for (unsigned long size : sizes_)
            for (unsigned connections : connection_counts_)
                measure_row(size, connections);
    }

    int finish()
    {
        summary();
        return write_json();
    }

private:
    void print_header()
    {
        fmt::print("\n{:>17} | {:<11} | {:>11} | {:>13} | {:>9} | {:>8} | {:>9} | {:>13}\n",
                   "file x conns", "server", "req/s (med)", "req/s min..max", "MB/s", "p50 us",
                   "p99 us", "server us/req");
        fmt::print("{:->17}-+-{:-<11}-+-{:->11}-+-{:->13}-+-{:->9}-+-{:->8}-+-{:->9}-+-{:->13}\n",
                   "", "", "", "", "", "", "", "");
    }

    void measure_row(std::size_t size, unsigned connections)
    {
        // Progress rewrites one line with \r: only on a terminal, never into a log file.
        const bool progress_on_terminal = ::isatty(STDERR_FILENO) != 0;
        row r;
        r.size = size;
        r.connections = connections;
        // Every server runs at once (each idle while another is measured), so the runs of one
        // round are back to back.
        std::vector<std::unique_ptr<server_process>> procs(servers_.size());
        std::vector<std::size_t> live;
        for (std::size_t i = 0; i < servers_.size(); ++i) {
            const server_spec& s = servers_[i];
            if (!s.missing_why.empty()) {
                r.servers[s.name].skipped = s.missing_why;
                continue;
            }
            procs[i] = std::make_unique<server_process>(process_of(s, work_, root_), server_cpu_);
            check_answers(s.name, procs[i]->port(), root_, sizes_);
            live.push_back(i);
        }
        const std::string name = file_name(size);
        for (std::size_t i : live) // warm-up: page cache, server caches, TCP
            (void)run_wrk(wrk_, script_, client_cpu_, connections, 1, procs[i]->port(), name);
        for (int run = 0; run < h_.opts().runs; ++run) {
            std::map<std::string, run_result> round;
            for (std::size_t k = 0; k < live.size(); ++k) {
                const std::size_t i = live[(k + static_cast<std::size_t>(run)) % live.size()];
                server_process& p = *procs[i];
                const double cpu_before = p.cpu_seconds();
                run_result x = run_wrk(wrk_, script_, client_cpu_, connections, seconds_,
                                       p.port(), name);
                x.server_cpu_seconds = p.cpu_seconds() - cpu_before;
                p.check_alive();
                if (x.errors != 0)
                    fail(fmt::format("{}: {} socket errors or non-2xx answers in a run of {} "
                                     "requests", servers_[i].name, x.errors, x.requests));
                if (x.requests == 0)
                    fail(fmt::format("{}: no request completed in a run", servers_[i].name));
                round[servers_[i].name] = x;
                r.servers[servers_[i].name].runs.push_back(x);
                if (h_.opts().runs > 1 && progress_on_terminal) {
                    fmt::print(stderr, "\r  {} x {}: run {}/{} {:<12}", size_text(size),
                               connections, run + 1, h_.opts().runs, servers_[i].name);
                }
            }
            if (round.count("nginx") != 0) {
                const run_result& nginx = round["nginx"];
                for (const auto& [name, x] : round) {
                    if (name == "nginx")
                        continue;
                    r.vs_nginx[name].push_back(x.requests_per_second() /
                                               nginx.requests_per_second());
                    r.cpu_vs_nginx[name].push_back(nginx.server_us_per_request() /
                                                   x.server_us_per_request());
                }
            }
        }
        if (h_.opts().runs > 1 && progress_on_terminal)
            fmt::print(stderr, "\r{:60}\r", "");
        for (std::size_t i : live) {
            const int status = procs[i]->stop();
            if (status != 0 && servers_[i].name != "nginx") // nginx exits 0 on SIGTERM too
                fail(fmt::format("{} exited with status {} when stopped", servers_[i].name, status));
        }
        print_row(r);
        rows_.push_back(std::move(r));
    }

    void print_row(const row& r)
    {
        bool first = true;
        for (const server_spec& s : servers_) {
            const server_runs& sr = r.servers.at(s.name);
            const std::string label =
                first ? fmt::format("{} x {}", size_text(r.size), r.connections) : "";
            first = false;
            if (!sr.skipped.empty()) {
                fmt::print("{:>17} | {:<11} | skipped: {}\n", label, s.name, sr.skipped);
                continue;
            }
            std::vector<double> rps, mbps, p50, p99, cpu;
            for (const run_result& x : sr.runs) {
                rps.push_back(x.requests_per_second());
                mbps.push_back(x.megabytes_per_second());
                p50.push_back(x.p50_us);
                p99.push_back(x.p99_us);
                cpu.push_back(x.server_us_per_request());
            }
            const spread rs = summarise(rps);
            fmt::print("{:>17} | {:<11} | {:>11.0f} | {:>13} | {:>9.0f} | {:>8.0f} | {:>9.0f} | "
                       "{:>13.2f}\n",
                       label, s.name, rs.median,
                       bench::compact(rs.min) + ".." + bench::compact(rs.max),
                       bench::median(mbps), bench::median(p50), bench::median(p99),
                       bench::median(cpu));
        }
        for (const auto& [name, ratios] : r.vs_nginx) {
            const spread v = summarise(ratios);
            const spread c = summarise(r.cpu_vs_nginx.at(name));
            fmt::print("{:>17}   {} / nginx: requests/s {:.3f} ({:.3f}..{:.3f}), requests per "
                       "CPU second {:.3f} ({:.3f}..{:.3f})\n",
                       "", name, v.median, v.min, v.max, c.median, c.min, c.max);
        }
        std::fflush(stdout);
    }

    void summary()
    {
        fmt::print("\nsummary (medians of per-run ratios; a run of each server back to back)\n");
        for (const row& r : rows_) {
            if (r.vs_nginx.count("coil") == 0)
                continue;
            const double ratio = bench::median(r.vs_nginx.at("coil"));
            std::vector<double> coil_p99, nginx_p99;
            for (const run_result& x : r.servers.at("coil").runs)
                coil_p99.push_back(x.p99_us);
            for (const run_result& x : r.servers.at("nginx").runs)
                nginx_p99.push_back(x.p99_us);
            const double cp = bench::median(coil_p99);
            const double np = bench::median(nginx_p99);
            const bool met = ratio >= target_vs_nginx && cp <= np;
            verdicts_.push_back(fmt::format(
                "{} x {}: coil/nginx requests/s {:.3f}, p99 {:.0f} us vs {:.0f} us, requests "
                "per server CPU second {:.3f}: target {}{}", size_text(r.size), r.connections,
                ratio, cp, np, bench::median(r.cpu_vs_nginx.at("coil")), met ? "MET" : "MISSED",
                h_.opts().quick ? " (--quick: a smoke test, not a measurement)" : ""));
            fmt::print("  {}\n", verdicts_.back());
        }
        fmt::print("load average at the end: {}\n", bench::load_average());
    }

    // The common schema of benchmarks/README.md ("The JSON results"), which ./dev bench reads:
    // one row per file size and connection count, nginx the reference.
    int write_json()
    {
        const std::string& path = h_.opts().json_path;
        if (path.empty())
            return 0;
        std::ostringstream json;
        json << "{\n  \"schema\": 1,\n  \"program\": \"bench_http\",\n";
        json << "  \"description\": "
             << bench::json_string("HTTP/1.1 static files over loopback: coil's http_server vs "
                                   "nginx (one worker), driven by wrk")
             << ",\n";
        json << "  \"environment\": " << bench::json_environment() << ",\n";
        json << "  \"settings\": {\"seconds_per_run\": " << seconds_
             << ", \"duration_seconds\": " << seconds_
             << ", \"quick\": " << (h_.opts().quick ? "true" : "false")
             << ", \"runs\": " << h_.opts().runs << ", \"server_cpu\": " << server_cpu_
             << ", \"client_cpu\": " << client_cpu_ << ", \"client\": \"wrk -t1\"},\n";
        json << "  \"unit\": \"requests/s\",\n  \"rows\": [";
        for (std::size_t i = 0; i < rows_.size(); ++i) {
            const row& r = rows_[i];
            json << (i == 0 ? "\n" : ",\n") << "    {\"name\": "
                 << bench::json_string(fmt::format("{} file x {} conn", size_text(r.size),
                                                   r.connections))
                 << ", \"reference\": \"nginx\", \"systems\": [";
            bool first = true;
            for (const server_spec& spec : servers_) {
                const server_runs& sr = r.servers.at(spec.name);
                json << (first ? "\n" : ",\n") << "      {\"name\": "
                     << bench::json_string(spec.name);
                first = false;
                if (!sr.skipped.empty()) {
                    json << ", \"skipped\": " << bench::json_string(sr.skipped) << "}";
                    continue;
                }
                std::vector<double> rps, p50, p99, cpu;
                for (const run_result& x : sr.runs) {
                    rps.push_back(x.requests_per_second());
                    p50.push_back(x.p50_us * 1e3);
                    p99.push_back(x.p99_us * 1e3);
                    cpu.push_back(x.server_us_per_request()); // = CPU s per million requests
                }
                const auto ratios = r.vs_nginx.find(spec.name);
                std::string run_ratios;
                if (ratios != r.vs_nginx.end())
                    for (double v : ratios->second)
                        run_ratios += (run_ratios.empty() ? "" : ", ") + bench::json_number(v);
                json << ", \"throughput\": " << bench::json_spread(summarise(rps))
                     << ", \"ratio\": "
                     << (ratios == r.vs_nginx.end() ? "null"
                                                    : bench::json_number(
                                                          bench::median(ratios->second)))
                     << ", \"run_ratios\": [" << run_ratios << "]"
                     << ", \"p50_ns\": " << bench::json_number(bench::median(p50))
                     << ", \"p99_ns\": " << bench::json_number(bench::median(p99))
                     << ", \"cpu_seconds_per_million\": " << bench::json_number(bench::median(cpu))
                     << "}";
            }
            json << "]}";
        }
        json << "\n  ],\n  \"metrics\": [],\n  \"notes\": [";
        for (std::size_t i = 0; i < verdicts_.size(); ++i)
            json << (i == 0 ? "" : ", ") << bench::json_string(verdicts_[i]);
        json << "]\n}\n";
        std::ofstream out(path);
        out << json.str();
        if (!out) {
            fmt::print(stderr, "bench_http: cannot write {}\n", path);
            return 1;
        }
        return 0;
    }

    bench::harness& h_;
    std::vector<std::string> verdicts_; // the target lines summary() printed, for the JSON
    std::vector<unsigned long> sizes_;
    std::vector<unsigned> connection_counts_;
    int server_cpu_ = 0;
    int client_cpu_ = 1;
    std::vector<server_spec> servers_;
    std::string wrk_;
    fs::path work_;
    fs::path root_;
    fs::path script_;
    unsigned seconds_ = 1;
    std::vector<row> rows_;
};

} // namespace

int main(int argc, char** argv)
{
    ::signal(SIGPIPE, SIG_IGN);
    bench::program prog{
        "bench_http",
        "HTTP/1.1 static files over loopback: coil's http_server against nginx (one worker), "
        "both driven by wrk",
        "nginx",
        {
            {"sizes", "file sizes in bytes, comma-separated", "4096,1048576"},
            {"connections", "wrk connection counts, comma-separated", "50"},
            {"servers", "which servers: coil,coil-read,coil-splice,nginx", "coil,nginx"},
            {"server-cpu", "CPU the servers are pinned to (-1: none)", "0"},
            {"client-cpu", "CPU wrk is pinned to (-1: none)", "1"},
            {"data-dir", "where the served files are written (removed at the end)",
             COIL_BENCH_DATA_DIR},
        },
    };
    const bench::options opts = bench::parse_command_line(argc, argv, prog);
    return bench::run_server_benchmark(prog, opts, [](bench::harness& h) {
        http_benchmark b(h);
        b.run();
        return b.finish();
    });
}
