// SPDX-License-Identifier: MIT
// The benchmarks' shared harness: command line, interleaved runs, tables, environment and JSON.

#include "harness.hpp"

#include <fmt/core.h>

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <regex>
#include <sstream>
#include <utility>

// meson.build passes these through `coil_build_info`; a build that forgets them still works.
#ifndef COIL_LIBURING_VERSION
#define COIL_LIBURING_VERSION "unknown"
#endif
#ifndef COIL_COMPILER
#define COIL_COMPILER "unknown"
#endif

namespace coil::bench {

namespace {

std::string trim(std::string s)
{
    auto not_space = [](unsigned char c) { return c != ' ' && c != '\t' && c != '\n'; };
    s.erase(s.begin(), std::find_if(s.begin(), s.end(), not_space));
    s.erase(std::find_if(s.rbegin(), s.rend(), not_space).base(), s.end());
    return s;
}

std::string cpu_model()
{
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line)) {
        // x86 says "model name", some arm64 kernels only "Hardware" or "CPU part".
        if (line.rfind("model name", 0) == 0 || line.rfind("Hardware", 0) == 0) {
            auto colon = line.find(':');
            if (colon != std::string::npos)
                return trim(line.substr(colon + 1));
        }
    }
    return "unknown";
}

} // namespace

std::string load_average()
{
    std::ifstream in("/proc/loadavg");
    std::string one, five, fifteen;
    if (!(in >> one >> five >> fifteen))
        return "unknown";
    return one + " " + five + " " + fifteen;
}

machine read_machine()
{
    machine env;
    env.liburing = COIL_LIBURING_VERSION;
    env.compiler = COIL_COMPILER;
    env.cpu = cpu_model();
    env.cores = sysconf(_SC_NPROCESSORS_ONLN);
    utsname u{};
    env.kernel = uname(&u) == 0 ? fmt::format("{} {} {}", u.sysname, u.release, u.machine)
                                : "unknown";
    // Numbers from an unoptimised or assert-laden build mislead; say which one this is.
#if defined(__OPTIMIZE__) && defined(NDEBUG)
    env.build = "optimized, NDEBUG";
#elif defined(__OPTIMIZE__)
    env.build = "optimized, assertions on";
#else
    env.build = "NOT optimized (numbers are meaningless: use -Dbuildtype=release)";
#endif
    return env;
}

namespace {

double wall_seconds() noexcept
{
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

double thread_cpu_seconds() noexcept
{
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

double median_of(std::vector<double> v)
{
    std::sort(v.begin(), v.end());
    std::size_t n = v.size();
    return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

sample_summary summarise(std::vector<double> samples)
{
    sample_summary s;
    if (samples.empty())
        return s;
    auto [lo, hi] = std::minmax_element(samples.begin(), samples.end());
    s.min = *lo;
    s.max = *hi;
    s.median = median_of(samples);
    s.samples = std::move(samples);
    return s;
}

} // namespace

// 12345678.9 -> "12,345,679": medians are read digit by digit, so group them.
std::string grouped(double value)
{
    auto digits = fmt::format("{:.0f}", std::fabs(value));
    std::string out = value < 0 ? "-" : "";
    for (std::size_t i = 0; i < digits.size(); ++i) {
        if (i != 0 && (digits.size() - i) % 3 == 0)
            out += ',';
        out += digits[i];
    }
    return out;
}

namespace {

// 12345678.9 -> "12.3M": the min..max column only shows the spread.
std::string compact(double value)
{
    if (value >= 1e9)
        return fmt::format("{:.3g}G", value / 1e9);
    if (value >= 1e6)
        return fmt::format("{:.3g}M", value / 1e6);
    if (value >= 1e3)
        return fmt::format("{:.3g}k", value / 1e3);
    return fmt::format("{:.3g}", value);
}

std::string spread(const sample_summary& s)
{
    return s.empty() ? "-" : compact(s.min) + ".." + compact(s.max);
}

} // namespace

// --- JSON, by hand: the schema is small and flat, and it keeps the benchmarks dependency-free.

std::string json_string(std::string_view s)
{
    std::string out = "\"";
    for (char ch : s) {
        auto c = static_cast<unsigned char>(ch);
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\t': out += "\\t"; break;
        default:
            if (c < 0x20)
                out += fmt::format("\\u{:04x}", c);
            else
                out += ch;
        }
    }
    return out + "\"";
}

std::string json_number(double v)
{
    // JSON has no NaN or infinity.
    return std::isfinite(v) ? fmt::format("{}", v) : "null";
}

namespace {

std::string json_summary(const sample_summary& s)
{
    if (s.empty())
        return "null";
    std::string samples;
    for (double v : s.samples) {
        if (!samples.empty())
            samples += ", ";
        samples += json_number(v);
    }
    return fmt::format("{{\"min\": {}, \"median\": {}, \"max\": {}, \"samples\": [{}]}}",
                       json_number(s.min), json_number(s.median), json_number(s.max), samples);
}

[[noreturn]] void usage_error(const program& prog, const std::string& why)
{
    fmt::print(stderr, "{}: {}\n(try --help)\n", prog.name, why);
    std::exit(2);
}

void print_help(const program& prog)
{
    fmt::print("{}: {}\n\n"
               "usage: {} [options]\n"
               "  --duration SECONDS  length of one measured run of one system (default 1)\n"
               "  --runs N            measured rounds per row (default 5)\n"
               "  --json PATH         also write the results as JSON to PATH\n"
               "  --quick             short runs for CI smoke tests (0.1 s, 3 runs)\n"
               "  --filter REGEX      only run rows whose name matches REGEX (ECMAScript,\n"
               "                      unanchored: 'nop', '^nop batch 32$')\n"
               "  --side NAME         only the system called NAME ('coil'), 'baseline' (the\n"
               "                      row's reference) or 'both' (default: every system);\n"
               "                      one system alone is handy under perf or callgrind\n"
               "  --clock CLOCK       wall (default): ops per elapsed second; cpu: ops per\n"
               "                      second of this thread's CPU time (less noisy when\n"
               "                      other processes share the CPUs)\n",
               prog.name, prog.description, prog.name);
    for (const extra_option& o : prog.extra_options) {
        const std::string name = o.name + " VALUE";
        if (name.size() < 18)
            fmt::print("  --{:<18}{}\n", name, o.help);
        else // too long for the column: the help goes on its own line, aligned with the rest
            fmt::print("  --{}\n{:22}{}\n", name, "", o.help);
    }
}

} // namespace

void fail(const std::string& why) { throw benchmark_failure(why); }

namespace {

// What remove_on_interrupt registered: fixed storage, since the handler may only make
// async-signal-safe calls (unlink, rmdir, signal, raise) and touch no allocator.
constexpr std::size_t cleanup_slots = 32;
char cleanup_paths[cleanup_slots][4096];
volatile std::sig_atomic_t cleanup_used[cleanup_slots];

extern "C" void remove_and_reraise(int signal_number)
{
    for (std::size_t i = 0; i < cleanup_slots; ++i)
        if (cleanup_used[i] != 0 && ::unlink(cleanup_paths[i]) != 0)
            (void)::rmdir(cleanup_paths[i]);
    std::signal(signal_number, SIG_DFL);
    std::raise(signal_number);
}

} // namespace

void remove_on_interrupt(const std::string& path)
{
    static const bool installed = [] {
        for (int signal_number : {SIGINT, SIGTERM, SIGHUP})
            std::signal(signal_number, remove_and_reraise);
        return true;
    }();
    (void)installed;
    if (path.size() >= sizeof cleanup_paths[0])
        return;
    for (std::size_t i = 0; i < cleanup_slots; ++i)
        if (cleanup_used[i] == 0) {
            std::memcpy(cleanup_paths[i], path.c_str(), path.size() + 1);
            cleanup_used[i] = 1;
            return;
        }
}

void forget_on_interrupt(const std::string& path)
{
    for (std::size_t i = 0; i < cleanup_slots; ++i)
        if (cleanup_used[i] != 0 && path == cleanup_paths[i])
            cleanup_used[i] = 0;
}

bool process_gone(long pid)
{
    return pid > 0 && ::access(fmt::format("/proc/{}", pid).c_str(), F_OK) != 0;
}

std::optional<std::string> find_program(std::string_view name)
{
    const char* env = ::getenv("PATH");
    std::string path = env != nullptr ? env : "/usr/bin:/bin";
    path += ":/usr/sbin:/sbin:/usr/local/sbin";
    std::size_t at = 0;
    while (at <= path.size()) {
        const std::size_t colon = std::min(path.find(':', at), path.size());
        const std::string candidate = path.substr(at, colon - at) + "/" + std::string(name);
        if (colon > at && ::access(candidate.c_str(), X_OK) == 0)
            return candidate;
        at = colon + 1;
    }
    return std::nullopt;
}

options parse_command_line(int argc, char** argv, program& prog)
{
    options opts;
    std::optional<double> duration;
    std::optional<int> runs;
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        std::string value;
        bool has_value = false;
        if (auto eq = arg.find('='); arg.rfind("--", 0) == 0 && eq != std::string::npos) {
            value = arg.substr(eq + 1);
            arg.resize(eq);
            has_value = true;
        }
        auto take_value = [&]() -> std::string {
            if (has_value)
                return value;
            if (i + 1 >= argc)
                usage_error(prog, arg + " needs a value");
            return argv[++i];
        };
        if (arg == "--help" || arg == "-h") {
            print_help(prog);
            std::exit(0);
        } else if (arg == "--duration") {
            std::string v = take_value();
            char* end = nullptr;
            double seconds = std::strtod(v.c_str(), &end);
            // Below a millisecond a run is the clock's own granularity and start-up.
            if (end == v.c_str() || *end != '\0' || !(seconds >= 0.001) || seconds > 3600)
                usage_error(prog, "--duration wants seconds in [0.001, 3600], not '" + v + "'");
            duration = seconds;
        } else if (arg == "--runs") {
            std::string v = take_value();
            char* end = nullptr;
            long n = std::strtol(v.c_str(), &end, 10);
            if (end == v.c_str() || *end != '\0' || n < 1 || n > 1000)
                usage_error(prog, "--runs wants a count in 1..1000, not '" + v + "'");
            runs = static_cast<int>(n);
        } else if (arg == "--json") {
            opts.json_path = take_value();
            // Refused now rather than after a run of minutes whose results it could not hold.
            std::error_code ec;
            if (opts.json_path.empty() || std::filesystem::is_directory(opts.json_path, ec))
                usage_error(prog, "--json wants a file to write, not '" + opts.json_path + "'");
            // Opened for appending (and removed again if this made it): a directory that does
            // not exist or cannot be written, or a file that cannot, fails here.
            const bool existed = std::filesystem::exists(opts.json_path, ec);
            const int probe = ::open(opts.json_path.c_str(),
                                     O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
            if (probe < 0)
                usage_error(prog, "--json cannot write '" + opts.json_path +
                                      "': " + std::strerror(errno));
            ::close(probe);
            if (!existed)
                ::unlink(opts.json_path.c_str());
        } else if (arg == "--quick") {
            opts.quick = true;
        } else if (arg == "--filter") {
            opts.filter = take_value();
            try {
                std::regex check(opts.filter);
            } catch (const std::regex_error& e) {
                usage_error(prog,
                            "--filter '" + opts.filter + "' is not a regex: " + e.what());
            }
        } else if (arg == "--clock") {
            opts.clock = take_value();
            if (opts.clock != "wall" && opts.clock != "cpu")
                usage_error(prog, "--clock wants wall or cpu, not '" + opts.clock + "'");
        } else if (arg == "--side") {
            opts.side = take_value();
            if (opts.side.empty())
                usage_error(prog, "--side wants a system's name, baseline or both");
        } else {
            auto extra = std::find_if(prog.extra_options.begin(), prog.extra_options.end(),
                                      [&](const extra_option& o) { return arg == "--" + o.name; });
            if (extra == prog.extra_options.end())
                usage_error(prog, "unknown argument '" + arg + "'");
            extra->value = take_value();
        }
    }
    // --quick only changes the defaults, so "--quick --runs 5" means what it says.
    if (opts.quick) {
        opts.duration = std::chrono::milliseconds(100);
        opts.runs = 3;
    }
    if (duration)
        opts.duration = std::chrono::duration_cast<std::chrono::nanoseconds>(
            std::chrono::duration<double>(*duration));
    if (runs)
        opts.runs = *runs;
    return opts;
}

harness::harness(program prog, options opts) : program_(std::move(prog)), opts_(std::move(opts))
{
}

const std::string& harness::option(std::string_view name) const
{
    for (const extra_option& o : program_.extra_options)
        if (o.name == name)
            return o.value;
    throw std::logic_error("coil::bench: no option named " + std::string(name));
}

void harness::print_environment()
{
    machine env = read_machine();
    load_at_start_ = load_average();
    fmt::print("{}: {}\n", program_.name, program_.description);
    fmt::print("  cpu       {} ({} online)\n", env.cpu, env.cores);
    fmt::print("  kernel    {}\n", env.kernel);
    fmt::print("  liburing  {} (compile time)\n", env.liburing);
    fmt::print("  compiler  {}\n", env.compiler);
    fmt::print("  build     {}\n", env.build);
    fmt::print("  load avg  {} (1, 5, 15 min)\n", load_at_start_);
    fmt::print("  settings  {:.3g} s x {} rounds per system, interleaved; ops/s per {} second{}\n",
               std::chrono::duration<double>(opts_.duration).count(), opts_.runs,
               opts_.clock == "cpu" ? "thread CPU" : "wall-clock",
               opts_.quick ? " (--quick: smoke test, not a measurement)" : "");
    std::fflush(stdout);
}

bool harness::selected(std::string_view name) const
{
    return opts_.filter.empty() ||
           std::regex_search(name.begin(), name.end(), std::regex(opts_.filter));
}

void harness::note(std::string text) { notes_.push_back(std::move(text)); }

const system_result* row_result::find(std::string_view system_name) const noexcept
{
    for (const system_result& s : systems)
        if (s.name == system_name)
            return &s;
    return nullptr;
}

void harness::add_metric(metric m)
{
    fmt::print("{:<56} {:>8} {} ({})\n", m.name, fmt::format("{:.4g}", m.value), m.unit,
               m.system);
    std::fflush(stdout);
    metrics_.push_back(std::move(m));
}

namespace {

// CPU time of this process (every thread) plus that of children reaped so far: a system that
// starts a program and waits for it is charged for the program too.
double process_cpu_seconds() noexcept
{
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    rusage children{};
    getrusage(RUSAGE_CHILDREN, &children);
    auto seconds = [](const timeval& tv) {
        return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) * 1e-6;
    };
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9 +
           seconds(children.ru_utime) + seconds(children.ru_stime);
}

// The q-quantile of `v` (nearest rank), which it sorts.
double quantile(std::vector<std::int64_t>& v, double q)
{
    std::sort(v.begin(), v.end());
    auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(v.size())));
    return static_cast<double>(v[std::min(v.size() - 1, rank == 0 ? 0 : rank - 1)]);
}

// 1234.5 ns as "1.23 us": latencies span nanoseconds (a NOP) to milliseconds (an fdatasync).
std::string duration_text(std::optional<double> ns)
{
    if (!ns)
        return "-";
    if (*ns >= 1e6)
        return fmt::format("{:.3g} ms", *ns / 1e6);
    if (*ns >= 1e3)
        return fmt::format("{:.3g} us", *ns / 1e3);
    return fmt::format("{:.3g} ns", *ns);
}

std::string ratio_range(const std::vector<double>& ratios)
{
    if (ratios.empty())
        return "-";
    auto [lo, hi] = std::minmax_element(ratios.begin(), ratios.end());
    return fmt::format("{:.2f}..{:.2f}", *lo, *hi);
}

constexpr std::size_t latency_room = 1U << 16; // samples kept per system per row

} // namespace

harness::one_run harness::measure_once(const system& s, std::chrono::nanoseconds duration,
                                       std::vector<std::int64_t>* latencies) const
{
    const bool cpu_clock = opts_.clock == "cpu";
    const double cpu_start = process_cpu_seconds();
    const double thread_start = thread_cpu_seconds();
    const double wall_start = wall_seconds();
    double operations = 0;
    double seconds = 0;
    std::optional<double> reported_cpu;
    one_run out;
    if (s.run) {
        run_clock clock(duration, latencies);
        operations = static_cast<double>(s.run(clock));
        seconds = cpu_clock ? thread_cpu_seconds() - thread_start : wall_seconds() - wall_start;
    } else {
        self_timed_run r = s.self_timed(duration);
        operations = r.operations;
        seconds = r.seconds;
        reported_cpu = r.cpu_seconds;
        out.reported_p50_ns = r.p50_ns;
        out.reported_p99_ns = r.p99_ns;
    }
    const double cpu = reported_cpu ? *reported_cpu : process_cpu_seconds() - cpu_start;
    out.throughput = seconds > 0 ? operations / seconds : 0;
    out.cpu_seconds_per_million = operations > 0 ? cpu / operations * 1e6 : 0;
    return out;
}

bool harness::compare_systems(const std::string& row, const std::vector<system>& systems,
                              std::string_view reference)
{
    if (!selected(row))
        return false;
    const std::size_t n = systems.size();
    std::vector<bool> runs(n);
    for (std::size_t i = 0; i < n; ++i) {
        const system& s = systems[i];
        if (s.skipped.empty() && !s.run && !s.self_timed)
            throw std::logic_error("coil::bench: system '" + s.name + "' has no measurement");
        if (std::find(system_names_.begin(), system_names_.end(), s.name) == system_names_.end())
            system_names_.push_back(s.name);
        runs[i] = s.skipped.empty() &&
                  (opts_.side == "both" || opts_.side == s.name ||
                   (opts_.side == "baseline" && s.name == reference));
    }

    fmt::print("\n{}  (reference: {})\n", row, reference);
    std::fflush(stdout);
    // Warm-up: fault in buffers, settle the caches and branch predictors, let the CPU clock
    // up. Not recorded.
    const auto warm_up = std::min<std::chrono::nanoseconds>(opts_.duration / 5,
                                                            std::chrono::milliseconds(200));
    for (std::size_t i = 0; i < n; ++i)
        if (runs[i])
            measure_once(systems[i], warm_up, nullptr);

    std::vector<std::vector<double>> throughput(n), cpu(n), reported_p50(n), reported_p99(n);
    std::vector<std::vector<std::int64_t>> latencies(n);
    for (auto& l : latencies)
        l.reserve(latency_room);
    for (int round = 0; round < opts_.runs; ++round) {
        for (std::size_t k = 0; k < n; ++k) {
            const std::size_t i = (k + static_cast<std::size_t>(round)) % n;
            if (!runs[i])
                continue;
            one_run r = measure_once(systems[i], opts_.duration, &latencies[i]);
            throughput[i].push_back(r.throughput);
            cpu[i].push_back(r.cpu_seconds_per_million);
            if (r.reported_p50_ns && r.reported_p99_ns) {
                reported_p50[i].push_back(*r.reported_p50_ns);
                reported_p99[i].push_back(*r.reported_p99_ns);
            }
        }
    }

    row_result result;
    result.name = row;
    result.reference = std::string(reference);
    const auto ref = std::find_if(systems.begin(), systems.end(),
                                  [&](const system& s) { return s.name == reference; });
    const std::size_t ref_index = static_cast<std::size_t>(ref - systems.begin());
    for (std::size_t i = 0; i < n; ++i) {
        system_result r;
        r.name = systems[i].name;
        r.skipped = systems[i].skipped;
        if (!runs[i] && r.skipped.empty())
            r.skipped = "not selected (--side " + opts_.side + ")";
        if (ref_index < n && i != ref_index)
            for (std::size_t k = 0; k < throughput[i].size() && k < throughput[ref_index].size(); ++k)
                if (throughput[ref_index][k] > 0)
                    r.run_ratios.push_back(throughput[i][k] / throughput[ref_index][k]);
        if (!r.run_ratios.empty())
            r.ratio = median_of(r.run_ratios);
        if (!cpu[i].empty())
            r.cpu_seconds_per_million = median_of(cpu[i]);
        if (!latencies[i].empty()) {
            r.p50_ns = quantile(latencies[i], 0.50);
            r.p99_ns = quantile(latencies[i], 0.99);
        } else if (!reported_p50[i].empty()) {
            r.p50_ns = median_of(reported_p50[i]);
            r.p99_ns = median_of(reported_p99[i]);
        }
        result.systems.push_back(std::move(r));
    }
    // Only now: the ratios above read every system's samples, the reference's included.
    for (std::size_t i = 0; i < n; ++i)
        result.systems[i].throughput = summarise(std::move(throughput[i]));

    const char* unit = opts_.clock == "cpu" ? "ops/CPU s" : "ops/s";
    fmt::print("  {:<24} {:>14} {:>15} {:>7} {:>11} {:>9} {:>9} {:>10}\n", "system",
               fmt::format("{} (med)", unit), "min..max", "ratio", "run ratios", "p50", "p99",
               "CPU s/Mop");
    for (const system_result& r : result.systems) {
        if (!r.skipped.empty()) {
            fmt::print("  {:<24} skipped: {}\n", r.name, r.skipped);
            continue;
        }
        fmt::print("  {:<24} {:>14} {:>15} {:>7} {:>11} {:>9} {:>9} {:>10}\n", r.name,
                   grouped(r.throughput.median), spread(r.throughput),
                   r.name == reference ? "1" : r.ratio ? fmt::format("{:.3f}", *r.ratio) : "-",
                   ratio_range(r.run_ratios), duration_text(r.p50_ns), duration_text(r.p99_ns),
                   r.cpu_seconds_per_million ? fmt::format("{:.3f}", *r.cpu_seconds_per_million)
                                             : "-");
    }
    std::fflush(stdout);
    results_.push_back(std::move(result));
    return true;
}

bool harness::compare(const std::string& name, const measurement& coil,
                      const measurement& baseline)
{
    const std::string& reference = program_.baseline_name;
    if (!compare_systems(name, {{"coil", coil}, {reference, baseline}}, reference))
        return false;
    const row_result& r = results_.back();
    comparison row;
    row.name = name;
    row.coil = r.systems[0].throughput;
    row.baseline = r.systems[1].throughput;
    row.run_ratios = r.systems[0].run_ratios;
    row.ratio = r.systems[0].ratio;
    if (!row.coil.empty() && !row.baseline.empty() && row.baseline.median > 0)
        row.ratio_of_medians = row.coil.median / row.baseline.median;
    rows_.push_back(std::move(row));
    return true;
}

namespace {

std::string json_optional(const std::optional<double>& v)
{
    return v ? json_number(*v) : "null";
}

std::string json_list(const std::vector<double>& v)
{
    std::string out;
    for (double x : v)
        out += (out.empty() ? "" : ", ") + json_number(x);
    return "[" + out + "]";
}

} // namespace

int harness::finish()
{
    std::string load_at_end = load_average();
    fmt::print("\nEach row: a warm-up of every system, then {} rounds in which every system runs "
               "once, the order rotating; ratio = the median over rounds of system / reference "
               "(higher is better), run ratios = their range; p50/p99 from sampled "
               "latencies; CPU s/Mop = CPU seconds (process and reaped children) per million "
               "ops.\n",
               opts_.runs);
    fmt::print("load average at start {}, at end {}: a load above zero means another process "
               "shared the CPUs and the numbers are noisier.\n",
               load_at_start_, load_at_end);
    for (const metric& m : metrics_)
        fmt::print("{} ({}): {:.4g} {}\n", m.name, m.system, m.value, m.unit);
    for (const std::string& n : notes_)
        fmt::print("{}\n", n);
    if (opts_.side != "both" && opts_.side != "baseline" && !system_names_.empty() &&
        std::find(system_names_.begin(), system_names_.end(), opts_.side) == system_names_.end()) {
        std::string known;
        for (const std::string& n : system_names_)
            known += (known.empty() ? "'" : ", '") + n + "'";
        fmt::print(stderr, "{}: --side '{}' names no system of the rows that ran (they have: {}; "
                           "or baseline, both)\n", program_.name, opts_.side, known);
        return 2;
    }
    if (results_.empty() && metrics_.empty()) {
        fmt::print(stderr, "{}: no benchmark matched --filter '{}'\n", program_.name,
                   opts_.filter);
        return 2;
    }
    if (opts_.json_path.empty())
        return 0;

    // The schema is documented in benchmarks/README.md ("The JSON results"); ./dev bench
    // (benchmarks/bench.py) reads it.
    machine env = read_machine();
    std::ostringstream json;
    json << "{\n  \"schema\": 1,\n";
    json << "  \"program\": " << json_string(program_.name) << ",\n";
    json << "  \"description\": " << json_string(program_.description) << ",\n";
    json << "  \"environment\": {\"cpu\": " << json_string(env.cpu) << ", \"cores\": " << env.cores
         << ", \"kernel\": " << json_string(env.kernel)
         << ", \"liburing\": " << json_string(env.liburing)
         << ", \"compiler\": " << json_string(env.compiler)
         << ", \"build\": " << json_string(env.build)
         << ", \"load_average_start\": " << json_string(load_at_start_)
         << ", \"load_average_end\": " << json_string(load_at_end) << "},\n";
    json << "  \"settings\": {\"duration_seconds\": "
         << json_number(std::chrono::duration<double>(opts_.duration).count())
         << ", \"runs\": " << opts_.runs << ", \"quick\": " << (opts_.quick ? "true" : "false")
         << ", \"filter\": " << json_string(opts_.filter)
         << ", \"side\": " << json_string(opts_.side)
         << ", \"clock\": " << json_string(opts_.clock) << "},\n";
    json << "  \"unit\": " << json_string(opts_.clock == "cpu" ? "ops per CPU second" : "ops/s")
         << ",\n";
    json << "  \"rows\": [";
    for (std::size_t i = 0; i < results_.size(); ++i) {
        const row_result& r = results_[i];
        json << (i == 0 ? "\n" : ",\n") << "    {\"name\": " << json_string(r.name)
             << ", \"reference\": " << json_string(r.reference) << ", \"systems\": [";
        for (std::size_t k = 0; k < r.systems.size(); ++k) {
            const system_result& s = r.systems[k];
            json << (k == 0 ? "\n" : ",\n") << "      {\"name\": " << json_string(s.name);
            if (!s.skipped.empty()) {
                json << ", \"skipped\": " << json_string(s.skipped) << "}";
                continue;
            }
            json << ", \"throughput\": " << json_summary(s.throughput)
                 << ", \"ratio\": " << json_optional(s.ratio)
                 << ", \"run_ratios\": " << json_list(s.run_ratios)
                 << ", \"p50_ns\": " << json_optional(s.p50_ns)
                 << ", \"p99_ns\": " << json_optional(s.p99_ns)
                 << ", \"cpu_seconds_per_million\": " << json_optional(s.cpu_seconds_per_million)
                 << "}";
        }
        json << "]}";
    }
    json << "\n  ],\n  \"metrics\": [";
    for (std::size_t i = 0; i < metrics_.size(); ++i) {
        const metric& m = metrics_[i];
        json << (i == 0 ? "\n" : ",\n") << "    {\"name\": " << json_string(m.name)
             << ", \"system\": " << json_string(m.system) << ", \"value\": "
             << json_number(m.value) << ", \"unit\": " << json_string(m.unit) << "}";
    }
    json << "\n  ],\n  \"notes\": [";
    for (std::size_t i = 0; i < notes_.size(); ++i)
        json << (i == 0 ? "" : ", ") << json_string(notes_[i]);
    json << "]\n}\n";

    std::ofstream out(opts_.json_path, std::ios::trunc);
    out << json.str();
    out.close();
    if (!out) {
        fmt::print(stderr, "{}: cannot write {}: {}\n", program_.name, opts_.json_path,
                   std::strerror(errno));
        return 1;
    }
    fmt::print("results written to {}\n", opts_.json_path);
    return 0;
}

int run_program(int argc, char** argv, program prog, const std::function<void(harness&)>& body)
{
    options opts = parse_command_line(argc, argv, prog);
    harness h(std::move(prog), std::move(opts));
    try {
        h.print_environment();
        body(h);
        return h.finish();
    } catch (const benchmark_failure& e) {
        std::fflush(stdout);
        fmt::print(stderr, "\nbenchmark FAILED: {}\n", e.what());
    } catch (const std::exception& e) {
        std::fflush(stdout);
        fmt::print(stderr, "\nbenchmark stopped by an error: {}\n", e.what());
    }
    return 1;
}

} // namespace coil::bench
