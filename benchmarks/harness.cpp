// SPDX-License-Identifier: MIT
// The benchmarks' shared harness: command line, interleaved runs, tables, environment and JSON.

#include "harness.hpp"

#include <fmt/core.h>

#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
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
               "  --duration SECONDS  length of one measured run of one side (default 1)\n"
               "  --runs N            measured runs per side (default 5)\n"
               "  --json PATH         also write the results as JSON to PATH\n"
               "  --quick             short runs for CI smoke tests (0.1 s, 3 runs)\n"
               "  --filter REGEX      only run rows whose name matches REGEX (ECMAScript,\n"
               "                      unanchored: 'nop', '^nop batch 32$')\n"
               "  --side SIDE         coil, baseline or both (default); one side is handy\n"
               "                      under perf or callgrind\n"
               "  --clock CLOCK       wall (default): ops per elapsed second; cpu: ops per\n"
               "                      second of this thread's CPU time (less noisy when\n"
               "                      other processes share the CPUs)\n",
               prog.name, prog.description, prog.name);
    for (const extra_option& o : prog.extra_options)
        fmt::print("  --{:<18}{}\n", o.name + " VALUE", o.help);
}

} // namespace

void fail(const std::string& why) { throw benchmark_failure(why); }

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
            if (end == v.c_str() || *end != '\0' || !(seconds > 0) || seconds > 3600)
                usage_error(prog, "--duration wants seconds in (0, 3600], not '" + v + "'");
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
            if (opts.side != "coil" && opts.side != "baseline" && opts.side != "both")
                usage_error(prog, "--side wants coil, baseline or both, not '" + opts.side + "'");
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
    fmt::print("  settings  {:.3g} s x {} runs per side, interleaved; ops/s per {} second{}\n",
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

void harness::print_header()
{
    if (header_printed_)
        return;
    header_printed_ = true;
    fmt::print("\n{:<28} | {:>16} | {:>16} | {:>6} | {:>10} | {:>15} | {:>15}\n", "benchmark",
               "coil ops/s (med)", "base ops/s (med)", "ratio", "run ratios", "coil min..max",
               "base min..max");
    fmt::print("{:-<28}-+-{:->16}-+-{:->16}-+-{:->6}-+-{:->10}-+-{:->15}-+-{:->15}\n", "", "", "",
               "", "", "", "");
}

double harness::measure_once(const measurement& m, std::chrono::nanoseconds duration) const
{
    run_clock clock(duration);
    bool cpu = opts_.clock == "cpu";
    double start = cpu ? thread_cpu_seconds() : wall_seconds();
    std::uint64_t ops = m(clock);
    double took = (cpu ? thread_cpu_seconds() : wall_seconds()) - start;
    return static_cast<double>(ops) / took;
}

bool harness::compare(const std::string& name, const measurement& coil,
                      const measurement& baseline)
{
    if (!selected(name))
        return false;
    print_header();
    bool run_coil = opts_.side != "baseline";
    bool run_baseline = opts_.side != "coil";

    // Warm-up: fault in buffers, settle the caches and branch predictors, let the CPU clock
    // up. Not recorded.
    auto warm_up = std::min<std::chrono::nanoseconds>(opts_.duration / 5,
                                                      std::chrono::milliseconds(200));
    if (run_coil)
        measure_once(coil, warm_up);
    if (run_baseline)
        measure_once(baseline, warm_up);

    std::vector<double> coil_samples, baseline_samples;
    for (int run = 0; run < opts_.runs; ++run) {
        // Alternate which side goes first, so neither always inherits the other's cache state.
        bool coil_first = run % 2 == 0;
        if (coil_first && run_coil)
            coil_samples.push_back(measure_once(coil, opts_.duration));
        if (run_baseline)
            baseline_samples.push_back(measure_once(baseline, opts_.duration));
        if (!coil_first && run_coil)
            coil_samples.push_back(measure_once(coil, opts_.duration));
    }

    comparison row;
    row.name = name;
    for (std::size_t i = 0; i < coil_samples.size() && i < baseline_samples.size(); ++i)
        if (baseline_samples[i] > 0)
            row.run_ratios.push_back(coil_samples[i] / baseline_samples[i]);
    row.coil = summarise(std::move(coil_samples));
    row.baseline = summarise(std::move(baseline_samples));
    if (!row.run_ratios.empty())
        row.ratio = median_of(row.run_ratios);
    if (!row.coil.empty() && !row.baseline.empty() && row.baseline.median > 0)
        row.ratio_of_medians = row.coil.median / row.baseline.median;

    std::string ratio_spread = "-";
    if (!row.run_ratios.empty()) {
        auto [lo, hi] = std::minmax_element(row.run_ratios.begin(), row.run_ratios.end());
        ratio_spread = fmt::format("{:.2f}..{:.2f}", *lo, *hi);
    }
    fmt::print("{:<28} | {:>16} | {:>16} | {:>6} | {:>10} | {:>15} | {:>15}\n", row.name,
               row.coil.empty() ? "-" : grouped(row.coil.median),
               row.baseline.empty() ? "-" : grouped(row.baseline.median),
               row.ratio ? fmt::format("{:.3f}", *row.ratio) : "-", ratio_spread,
               spread(row.coil), spread(row.baseline));
    std::fflush(stdout);
    rows_.push_back(std::move(row));
    return true;
}

int harness::finish()
{
    std::string load_at_end = load_average();
    fmt::print("\nbaseline: {}. Run i of each side runs back to back with run i of the other; "
               "ratio = the median over runs of coil / baseline (higher is better for coil), "
               "run ratios = their range.\n",
               program_.baseline_name);
    fmt::print("load average at start {}, at end {}: a load above zero means another process "
               "shared the CPUs and the numbers are noisier.\n",
               load_at_start_, load_at_end);
    for (const std::string& n : notes_)
        fmt::print("{}\n", n);
    if (rows_.empty()) {
        fmt::print(stderr, "{}: no benchmark matched --filter '{}'\n", program_.name,
                   opts_.filter);
        return 2;
    }

    if (opts_.json_path.empty())
        return 0;

    machine env = read_machine();
    std::ostringstream json;
    json << "{\n";
    json << "  \"program\": " << json_string(program_.name) << ",\n";
    json << "  \"description\": " << json_string(program_.description) << ",\n";
    json << "  \"baseline\": " << json_string(program_.baseline_name) << ",\n";
    json << "  \"environment\": {\n";
    json << "    \"cpu\": " << json_string(env.cpu) << ",\n";
    json << "    \"cores\": " << env.cores << ",\n";
    json << "    \"kernel\": " << json_string(env.kernel) << ",\n";
    json << "    \"liburing\": " << json_string(env.liburing) << ",\n";
    json << "    \"compiler\": " << json_string(env.compiler) << ",\n";
    json << "    \"build\": " << json_string(env.build) << ",\n";
    json << "    \"load_average_start\": " << json_string(load_at_start_) << ",\n";
    json << "    \"load_average_end\": " << json_string(load_at_end) << "\n";
    json << "  },\n";
    json << "  \"settings\": {\"duration_seconds\": "
         << json_number(std::chrono::duration<double>(opts_.duration).count())
         << ", \"runs\": " << opts_.runs << ", \"quick\": " << (opts_.quick ? "true" : "false")
         << ", \"filter\": " << json_string(opts_.filter)
         << ", \"side\": " << json_string(opts_.side)
         << ", \"clock\": " << json_string(opts_.clock) << "},\n";
    json << "  \"unit\": " << json_string(opts_.clock == "cpu" ? "ops per thread CPU second"
                                                                  : "ops/s") << ",\n";
    json << "  \"results\": [";
    for (std::size_t i = 0; i < rows_.size(); ++i) {
        const comparison& r = rows_[i];
        json << (i == 0 ? "\n" : ",\n");
        json << "    {\"name\": " << json_string(r.name) << ",\n";
        json << "     \"coil\": " << json_summary(r.coil) << ",\n";
        json << "     \"baseline\": " << json_summary(r.baseline) << ",\n";
        json << "     \"ratio\": " << (r.ratio ? json_number(*r.ratio) : "null") << ",\n";
        std::string ratios;
        for (double x : r.run_ratios)
            ratios += (ratios.empty() ? "" : ", ") + json_number(x);
        json << "     \"run_ratios\": [" << ratios << "],\n";
        json << "     \"ratio_of_medians\": "
             << (r.ratio_of_medians ? json_number(*r.ratio_of_medians) : "null") << "}";
    }
    json << "\n  ],\n";
    json << "  \"notes\": [";
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
