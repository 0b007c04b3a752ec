// SPDX-License-Identifier: MIT
/// @file
/// The benchmarks' shared harness: a common command line, interleaved coil-versus-baseline runs,
/// min/median/max reporting, the environment banner and the JSON result file.
///
/// A benchmark program describes itself with a `program`, then hands `run_program` a body that
/// calls `harness::compare` once per row:
///
/// @code
/// int main(int argc, char** argv)
/// {
///     coil::bench::program p{"bench_x", "what it measures", "raw liburing"};
///     return coil::bench::run_program(argc, argv, p, [](coil::bench::harness& h) {
///         h.compare("nop batch 1", coil_side, baseline_side);
///     });
/// }
/// @endcode
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace coil::bench {

/// What the common command line selected.
struct options {
    /// Length of one measured run of one side.
    std::chrono::nanoseconds duration = std::chrono::seconds(1);
    /// Measured runs per side; each side is summarised by min/median/max over them.
    int runs = 5;
    /// Where to write the JSON results; empty: no file.
    std::string json_path;
    /// Short runs for CI smoke tests: the numbers only prove that everything still works.
    bool quick = false;
    /// Only rows whose name matches this regex (ECMAScript, unanchored) run; empty: all rows.
    std::string filter;
    /// Run only one side (for profiling it alone): "coil", "baseline" or "both".
    std::string side = "both";
    /// What ops/s is divided by: "wall" (elapsed time, the default) or "cpu" (the measuring
    /// thread's CPU time, user + system). On a shared machine the CPU time excludes the slices
    /// another process took, so "cpu" compares the two sides with less noise; it does not
    /// count work done by other threads (io-wq workers, SQPOLL), which these rows do not use.
    std::string clock = "wall";
};

/// A program-specific option taking one value (`--name VALUE` or `--name=VALUE`).
struct extra_option {
    std::string name;  ///< without the leading dashes
    std::string help;  ///< one line for --help
    std::string value; ///< the default on input; what the command line said on output
};

/// Describes a benchmark program to the harness.
struct program {
    std::string name;          ///< e.g. "bench_ring"; names the JSON file's "program"
    std::string description;   ///< one line for --help and the banner
    std::string baseline_name; ///< what coil is compared with, e.g. "raw liburing"
    std::vector<extra_option> extra_options{};
};

/// Thrown by a measurement whose results are wrong (a short read, an unexpected error): the
/// program stops with the message rather than reporting a speed for incorrect work.
class benchmark_failure : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// Throws `benchmark_failure` with `why`.
[[noreturn]] void fail(const std::string& why);

/// Tells a measurement loop when its time is up. Reading the clock costs tens of nanoseconds,
/// which is a visible share of a one-NOP iteration, so it is read only every `check_every`
/// calls; the overshoot is a few iterations, and the harness times the whole call anyway.
class run_clock {
public:
    static constexpr unsigned check_every = 16;

    explicit run_clock(std::chrono::nanoseconds budget)
        : deadline_(std::chrono::steady_clock::now() + budget)
    {
    }

    /// True until the budget is spent; call once per iteration.
    bool running() noexcept
    {
        if (++calls_ % check_every != 0)
            return true;
        return std::chrono::steady_clock::now() < deadline_;
    }

private:
    std::chrono::steady_clock::time_point deadline_;
    unsigned calls_ = 0;
};

/// One side of a row: loops while `clock.running()`, leaves no work in flight when it returns
/// (so the other side starts from a quiet ring), and returns the operations it completed.
using measurement = std::function<std::uint64_t(run_clock& clock)>;

/// Throughput samples of one side, in operations per second.
struct sample_summary {
    std::vector<double> samples; ///< in run order
    double min = 0;
    double median = 0;
    double max = 0;

    bool empty() const noexcept { return samples.empty(); }
};

/// One row of the results table.
struct comparison {
    std::string name;
    sample_summary coil;
    sample_summary baseline;
    /// The median of the per-run ratios coil / baseline, where run i of each side ran back
    /// to back: a slow spell of the machine then slows both halves of a pair instead of
    /// skewing one side's median. Absent when a side did not run.
    std::optional<double> ratio;
    /// The per-run ratios, in run order.
    std::vector<double> run_ratios;
    /// coil median / baseline median, for comparison with `ratio`.
    std::optional<double> ratio_of_medians;
};

/// Runs the rows of one program and records their results. Single-threaded.
class harness {
public:
    harness(program prog, options opts);

    const options& opts() const noexcept { return opts_; }
    /// The value of a program-specific option (its default when not given).
    const std::string& option(std::string_view name) const;

    /// Prints the environment (CPU, cores, kernel, liburing, compiler, load) and the settings.
    void print_environment();

    /// Measures one row: a short unrecorded warm-up of each side, then `opts().runs` runs of
    /// each, interleaved (the side that goes first alternates from run to run, so slow drift
    /// such as another process's load or frequency changes falls on both sides alike). Prints
    /// the row as soon as it is done. Skipped (returns false) when the row does not match
    /// `--filter`. Measurement failures propagate as `benchmark_failure`.
    bool compare(const std::string& name, const measurement& coil, const measurement& baseline);

    /// Whether a row called `name` would run under `--filter`; lets a program skip expensive
    /// setup (a large data file) that only filtered-out rows need.
    bool selected(std::string_view name) const;

    /// Appends a free-form note to the report (printed at the end and stored in the JSON).
    void note(std::string text);

    /// The rows measured so far.
    const std::vector<comparison>& rows() const noexcept { return rows_; }

    /// Prints the closing summary and writes the JSON file if one was asked for. Returns the
    /// process exit status (non-zero when the JSON file could not be written).
    int finish();

private:
    void print_header();
    double measure_once(const measurement& m, std::chrono::nanoseconds duration) const;

    program program_;
    options opts_;
    std::vector<comparison> rows_;
    std::vector<std::string> notes_;
    std::string load_at_start_;
    bool header_printed_ = false;
};

/// The machine and build a benchmark runs on, as the banner prints them.
struct machine {
    std::string cpu;      ///< the model name /proc/cpuinfo gives
    long cores = 0;       ///< online CPUs
    std::string kernel;   ///< uname: system, release, machine
    std::string liburing; ///< the version compiled against
    std::string compiler;
    std::string build;    ///< optimised or not, assertions or not
};

/// Reads the machine's description (for programs that print their own banner or JSON).
machine read_machine();

/// /proc/loadavg's 1, 5 and 15 minute figures, "unknown" if unreadable.
std::string load_average();

/// `s` as a quoted JSON string.
std::string json_string(std::string_view s);

/// `v` as a JSON number (null for NaN and infinities).
std::string json_number(double v);

/// 12345678.9 as "12,345,679", for medians read digit by digit.
std::string grouped(double value);

/// Parses the common options plus `prog.extra_options`; prints help and exits 0 for `--help`,
/// prints the problem and exits 2 for a bad command line.
options parse_command_line(int argc, char** argv, program& prog);

/// The usual `main`: parses the command line, prints the environment, runs `body`, finishes.
/// A `benchmark_failure` or any other exception ends the program with a message and status 1.
int run_program(int argc, char** argv, program prog, const std::function<void(harness&)>& body);

} // namespace coil::bench
