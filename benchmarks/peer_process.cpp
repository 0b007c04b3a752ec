// SPDX-License-Identifier: MIT
// Servers as pinned processes, and the small statistics the server benchmarks share.

#include "peer_process.hpp"

#include "harness.hpp"

#include <fmt/core.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <system_error>

namespace coil::bench {

namespace {

using clock_type = std::chrono::steady_clock;

std::string errno_text(int error) { return std::generic_category().message(error); }

sockaddr_in loopback(std::uint16_t port)
{
    sockaddr_in at{};
    at.sin_family = AF_INET;
    at.sin_port = htons(port);
    at.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return at;
}

bool accepts_connections(std::uint16_t port)
{
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    const sockaddr_in at = loopback(port);
    const bool ok = ::connect(fd, reinterpret_cast<const sockaddr*>(&at), sizeof(at)) == 0;
    ::close(fd);
    return ok;
}

} // namespace

server_process::server_process(const process_spec& spec, int cpu) : name_(spec.name)
{
    if (spec.argv.empty())
        fail("server " + spec.name + ": no program to run");
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0)
        fail("pipe2: " + errno_text(errno));
    pid_ = spawn_pinned(spec.argv, cpu, out[1], spec.quiet);
    ::close(out[1]);
    if (spec.port) {
        ::close(out[0]);
        port_ = *spec.port;
        wait_until_accepting();
        return;
    }
    // The server prints "...listening on 127.0.0.1:PORT" once it accepts connections.
    std::string text;
    const auto deadline = clock_type::now() + std::chrono::seconds(10);
    while (text.find('\n') == std::string::npos) {
        pollfd p{out[0], POLLIN, 0};
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now());
        if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0)
            break;
        char chunk[256];
        const ssize_t n = ::read(out[0], chunk, sizeof(chunk));
        if (n <= 0)
            break;
        text.append(chunk, static_cast<std::size_t>(n));
    }
    ::close(out[0]);
    const auto at = text.find("listening on ");
    const auto colon = text.rfind(':');
    unsigned port = 0;
    if (at != std::string::npos && colon != std::string::npos && colon > at) {
        const char* first = text.data() + colon + 1;
        std::from_chars(first, text.data() + text.size(), port);
    }
    if (port == 0 || port > 65535) {
        stop();
        fail(fmt::format("server {} ({}) did not say which port it listens on (it said '{}')",
                         spec.name, spec.argv[0], text));
    }
    port_ = static_cast<std::uint16_t>(port);
}

void server_process::wait_until_accepting()
{
    const auto deadline = clock_type::now() + std::chrono::seconds(10);
    while (!accepts_connections(port_)) {
        check_alive();
        if (clock_type::now() > deadline) {
            stop();
            fail(fmt::format("server {} accepts no connection on port {} after 10 s", name_,
                             port_));
        }
        ::usleep(10'000);
    }
}

double server_process::cpu_seconds() const
{
    auto stat = read_text_file(fmt::format("/proc/{}/stat", pid_));
    if (!stat)
        fail(fmt::format("server {} is gone (no /proc/{}/stat)", name_, pid_));
    // Fields after the command name, which is in parentheses and may hold spaces.
    std::istringstream rest(stat->substr(stat->rfind(')') + 2));
    std::string field;
    unsigned long long utime = 0;
    unsigned long long stime = 0;
    for (int i = 3; i <= 15 && rest >> field; ++i) {
        if (i == 14)
            utime = std::stoull(field);
        if (i == 15)
            stime = std::stoull(field);
    }
    return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

long server_process::rss_kib() const
{
    auto status = read_text_file(fmt::format("/proc/{}/status", pid_));
    if (!status)
        fail(fmt::format("server {} is gone (no /proc/{}/status)", name_, pid_));
    const auto at = status->find("VmRSS:");
    if (at == std::string::npos)
        fail("no VmRSS in /proc/PID/status");
    return std::stol(status->substr(at + 6));
}

void server_process::check_alive()
{
    int status = 0;
    if (pid_ > 0 && ::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        fail(fmt::format("server {} exited during the run ({})", name_,
                         WIFSIGNALED(status) ? "signal " + std::to_string(WTERMSIG(status))
                                             : "status " + std::to_string(WEXITSTATUS(status))));
    }
}

int server_process::stop()
{
    if (pid_ <= 0)
        return -1;
    ::kill(pid_, SIGTERM);
    int status = 0;
    const auto deadline = clock_type::now() + std::chrono::seconds(5);
    while (::waitpid(pid_, &status, WNOHANG) == 0) {
        if (clock_type::now() > deadline) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, &status, 0);
            pid_ = -1;
            return -1;
        }
        ::usleep(2000);
    }
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

pid_t spawn_pinned(const std::vector<std::string>& argv, int cpu, int stdout_fd, bool quiet)
{
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0)
        fail("fork: " + errno_text(errno));
    if (pid != 0)
        return pid;
    // A server or client ends with the benchmark, even one killed by a signal sent to it
    // alone: the kernel sends SIGTERM when the thread that forked exits (checked against a
    // parent gone before the request).
    if (::prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || ::getppid() != parent)
        ::_exit(127);
    if (cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        (void)::sched_setaffinity(0, sizeof(set), &set);
    }
    ::dup2(stdout_fd, STDOUT_FILENO);
    if (quiet) {
        const int null = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (null >= 0)
            ::dup2(null, STDERR_FILENO);
    }
    std::vector<char*> args;
    for (const std::string& a : argv)
        args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    std::fprintf(stderr, "cannot run %s: %s\n", args[0], std::strerror(errno));
    ::_exit(127);
}

int run_server_benchmark(program& prog, const options& opts,
                         const std::function<int(harness&)>& body)
{
    if (::sysconf(_SC_NPROCESSORS_ONLN) < 2) {
        for (extra_option& o : prog.extra_options)
            if (o.name == "server-cpu" || o.name == "client-cpu")
                o.value = "-1";
    }
    // The common options that select systems and the clock, as a server benchmark reads them:
    // --side NAME is --servers NAME; requests/s is always per wall-clock second (each server's
    // CPU per request is reported beside it).
    if (opts.clock != "wall") {
        fmt::print(stderr, "{}: --clock cpu does not apply here: requests/s is per wall-clock "
                           "second, and each server's CPU time per request is reported beside "
                           "it\n(try --help)\n", prog.name);
        return 2;
    }
    if (opts.side == "baseline") {
        fmt::print(stderr, "{}: --side baseline does not apply here: name the servers with "
                           "--servers\n(try --help)\n", prog.name);
        return 2;
    }
    if (opts.side != "both")
        for (extra_option& o : prog.extra_options)
            if (o.name == "servers")
                o.value = opts.side;
    harness h(prog, opts);
    try {
        h.print_environment();
        return body(h);
    } catch (const usage_failure& e) {
        std::fflush(stdout);
        fmt::print(stderr, "{}: {}\n(try --help)\n", prog.name, e.what());
        return 2;
    } catch (const benchmark_failure& e) {
        std::fflush(stdout);
        fmt::print(stderr, "\nbenchmark FAILED: {}\n", e.what());
    } catch (const std::exception& e) {
        std::fflush(stdout);
        fmt::print(stderr, "\nbenchmark stopped by an error: {}\n", e.what());
    }
    return 1;
}

std::uint16_t free_port()
{
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        fail("socket: " + errno_text(errno));
    sockaddr_in at = loopback(0);
    socklen_t len = sizeof(at);
    if (::bind(fd, reinterpret_cast<const sockaddr*>(&at), sizeof(at)) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&at), &len) != 0) {
        const int error = errno;
        ::close(fd);
        fail("cannot find a free port: " + errno_text(error));
    }
    ::close(fd);
    return ntohs(at.sin_port);
}

void pin_self(int cpu)
{
    if (cpu < 0)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (::sched_setaffinity(0, sizeof(set), &set) != 0)
        fail(fmt::format("cannot pin the client to CPU {}: {}", cpu, errno_text(errno)));
}

rlim_t raise_file_limit(rlim_t wanted)
{
    rlimit now{};
    ::getrlimit(RLIMIT_NOFILE, &now);
    if (now.rlim_cur >= wanted)
        return now.rlim_cur;
    rlimit want{wanted, std::max(wanted, now.rlim_max)};
    if (::setrlimit(RLIMIT_NOFILE, &want) != 0) {
        want = rlimit{now.rlim_max, now.rlim_max}; // not root: as far as the hard limit goes
        (void)::setrlimit(RLIMIT_NOFILE, &want);
    }
    ::getrlimit(RLIMIT_NOFILE, &now);
    return now.rlim_cur;
}

std::optional<std::string> read_text_file(const std::string& path)
{
    std::ifstream in(path);
    if (!in)
        return std::nullopt;
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

double median(std::vector<double> v)
{
    if (v.empty())
        return 0;
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

spread summarise(std::vector<double> v)
{
    spread s;
    if (v.empty())
        return s;
    s.min = *std::min_element(v.begin(), v.end());
    s.max = *std::max_element(v.begin(), v.end());
    s.median = median(v);
    s.samples = std::move(v);
    return s;
}

std::string json_spread(const spread& s)
{
    std::string samples;
    for (double x : s.samples)
        samples += (samples.empty() ? "" : ", ") + json_number(x);
    return fmt::format("{{\"median\": {}, \"min\": {}, \"max\": {}, \"samples\": [{}]}}",
                       json_number(s.median), json_number(s.min), json_number(s.max), samples);
}

std::string json_environment()
{
    const machine env = read_machine();
    return fmt::format("{{\"cpu\": {}, \"cores\": {}, \"kernel\": {}, \"liburing\": {}, "
                       "\"compiler\": {}, \"build\": {}, \"load_average_end\": {}}}",
                       json_string(env.cpu), env.cores, json_string(env.kernel),
                       json_string(env.liburing), json_string(env.compiler),
                       json_string(env.build), json_string(load_average()));
}

std::string compact(double v)
{
    if (v >= 1e6)
        return fmt::format("{:.3g}M", v / 1e6);
    if (v >= 1e3)
        return fmt::format("{:.3g}k", v / 1e3);
    return fmt::format("{:.3g}", v);
}

std::vector<unsigned long> number_list(const std::string& text, const char* what,
                                       unsigned long max)
{
    std::vector<unsigned long> out;
    std::size_t at = 0;
    while (at <= text.size()) {
        const std::size_t comma = std::min(text.find(',', at), text.size());
        unsigned long v = 0;
        auto [ptr, ec] = std::from_chars(text.data() + at, text.data() + comma, v);
        if (ec != std::errc{} || ptr != text.data() + comma || v == 0 || v > max)
            throw usage_failure(fmt::format("--{} takes numbers in 1..{} separated by commas, "
                                            "not '{}'", what, max, text));
        out.push_back(v);
        at = comma + 1;
    }
    return out;
}

long integer_option(const std::string& text, const char* what, long min, long max)
{
    long v = 0;
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (text.empty() || ec != std::errc{} || ptr != text.data() + text.size() || v < min ||
        v > max)
        throw usage_failure(
            fmt::format("--{} takes an integer in {}..{}, not '{}'", what, min, max, text));
    return v;
}

std::vector<std::string> name_list(const std::string& text, const char* what,
                                   const std::vector<std::string>& known)
{
    std::vector<std::string> out;
    std::size_t at = 0;
    while (at <= text.size()) {
        const std::size_t comma = std::min(text.find(',', at), text.size());
        std::string name = text.substr(at, comma - at);
        if (std::find(known.begin(), known.end(), name) == known.end()) {
            std::string all;
            for (const std::string& k : known)
                all += (all.empty() ? "" : ", ") + k;
            throw usage_failure(fmt::format("--{}: no server called '{}' (known: {})", what,
                                            name, all));
        }
        if (std::find(out.begin(), out.end(), name) == out.end())
            out.push_back(std::move(name));
        at = comma + 1;
    }
    return out;
}

} // namespace coil::bench
