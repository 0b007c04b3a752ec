// SPDX-License-Identifier: MIT
/// @file
/// The benchmarks' shared harness: a common command line, rows of N systems measured in
/// interleaved rounds, min/median/max, latency percentiles and CPU per op, the environment
/// banner and the JSON result file (its schema: benchmarks/README.md).
///
/// A benchmark program describes itself with a `program`, then hands `run_program` a body that
/// calls `harness::compare` once per row:
///
/// @code
/// int main(int argc, char** argv)
/// {
///     coil::bench::program p{"bench_x", "what it measures", "raw liburing"};
///     return coil::bench::run_program(argc, argv, p, [](coil::bench::harness& h) {
///         h.compare("nop batch 1", coil_side, baseline_side);   // two systems
///         h.compare_systems("append+fdatasync",                  // N systems
///                           {{"coil", coil_side}, {"raw liburing", raw_side},
///                            {"pwrite", blocking_side}},
///                           "pwrite");
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
    /// Run only one system (for profiling it alone): its name, "baseline" for a row's
    /// reference, or "both" (every system).
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

/// Files (or empty directories) to remove if SIGINT, SIGTERM or SIGHUP ends the program before
/// their owner removes them: data files half written, scratch files of hundreds of MiB.
/// Registering installs the handlers (once); `forget_on_interrupt` when the owner has removed
/// or kept the file. At most 32 at a time (more are not removed on a signal).
void remove_on_interrupt(const std::string& path);
void forget_on_interrupt(const std::string& path);

/// The process `pid` is gone (no /proc entry): what a leftover named after it was left by.
bool process_gone(long pid);

/// The path of the executable `name` on $PATH or in the sbin directories (where nginx lives,
/// often off a user's PATH); nullopt if there is none, so that its row is skipped, not failed.
std::optional<std::string> find_program(std::string_view name);

/// Tells a measurement loop when its time is up, and collects the latencies it samples.
/// Reading the clock costs tens of nanoseconds, which is a visible share of a one-NOP
/// iteration, so `running()` reads it only every `check_every` calls; the overshoot is a few
/// iterations, and the harness times the whole call anyway.
class run_clock {
public:
    static constexpr unsigned check_every = 16;
    /// By default `sample_latency()` says yes once in this many calls.
    static constexpr unsigned default_latency_every = 32;

    explicit run_clock(std::chrono::nanoseconds budget,
                       std::vector<std::int64_t>* latencies = nullptr) noexcept
        : deadline_(std::chrono::steady_clock::now() + budget), latencies_(latencies)
    {
    }

    /// True until the budget is spent; call once per iteration.
    bool running() noexcept
    {
        if (++calls_ % check_every != 0)
            return true;
        return std::chrono::steady_clock::now() < deadline_;
    }

    /// Whether the caller should time the operation it is about to start and pass the time to
    /// `record_latency` (one call in `default_latency_every`, or in what `sample_every` set,
    /// so timing costs little). False when this run collects no latencies (the warm-up).
    bool sample_latency() noexcept
    {
        return latencies_ != nullptr && ++latency_calls_ % latency_every_ == 0;
    }

    /// Samples one operation in `n` (n >= 1) from now on: 1 suits slow operations (an
    /// fdatasync), where timing every one costs nothing measurable.
    void sample_every(unsigned n) noexcept { latency_every_ = n == 0 ? 1 : n; }

    /// Records one operation's latency (start to completion) for the row's p50/p99. Never
    /// allocates: the harness reserved room, and samples beyond it are dropped.
    void record_latency(std::chrono::nanoseconds took) noexcept
    {
        if (latencies_ != nullptr && latencies_->size() < latencies_->capacity())
            latencies_->push_back(took.count());
    }

private:
    std::chrono::steady_clock::time_point deadline_;
    std::vector<std::int64_t>* latencies_; // not owned; null: latencies not wanted
    unsigned calls_ = 0;
    unsigned latency_calls_ = 0;
    unsigned latency_every_ = default_latency_every;
};

/// One side of a row: loops while `clock.running()`, leaves no work in flight when it returns
/// (so the other side starts from a quiet ring), and returns the operations it completed.
/// It may sample latencies through `clock.sample_latency()` / `clock.record_latency()`.
using measurement = std::function<std::uint64_t(run_clock& clock)>;

/// What a system that times itself reports for one run (an external program such as fio,
/// which runs for a duration it was given and prints its own operation count).
struct self_timed_run {
    double operations = 0;
    double seconds = 0;                 ///< the time those operations took, by the system's clock
    std::optional<double> cpu_seconds;  ///< CPU time it used; absent: the harness's own count
    /// Its own latency percentiles, when it reports them; the row shows the median over runs.
    std::optional<double> p50_ns;
    std::optional<double> p99_ns;
};

/// A self-timed system's run: does about `budget` of work and reports it. The harness still
/// counts the CPU time of this process and of children waited for during the call, which
/// covers a program started with fork/exec and reaped before returning.
using self_timed_measurement = std::function<self_timed_run(std::chrono::nanoseconds budget)>;

/// One system of a row: a name for the table ("coil", "coil fixed", "raw liburing",
/// "pread x1", "Boost.Asio", "fio") and its measurement. Exactly one of `run` and `self_timed`
/// is set, unless `skipped` says why the system cannot run here (a peer not installed, a
/// kernel feature missing): then the row shows it as skipped, with the reason, rather than
/// dropping it.
struct system {
    std::string name;
    measurement run{};
    self_timed_measurement self_timed{};
    std::string skipped{};
};

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

/// What one system of a row measured.
struct system_result {
    std::string name;
    std::string skipped;        ///< non-empty: it did not run, and why
    sample_summary throughput;  ///< ops/s per run (or ops per CPU second under --clock cpu)
    /// The median over rounds of this system / the reference, each round's runs having run
    /// back to back; absent for the reference itself or when either did not run.
    std::optional<double> ratio;
    std::vector<double> run_ratios; ///< per round, in round order
    std::optional<double> p50_ns;   ///< over every latency sampled in the measured runs
    std::optional<double> p99_ns;
    /// CPU seconds (user + system, this process and children reaped during the run) per
    /// million operations, the median over runs.
    std::optional<double> cpu_seconds_per_million;
};

/// One row of N systems.
struct row_result {
    std::string name;
    std::string reference;
    std::vector<system_result> systems;

    /// The system called `name`, or null.
    const system_result* find(std::string_view system_name) const noexcept;
};

/// A single figure that is not a throughput: memory per idle connection, heap allocations per
/// awaited op. Stored in the JSON's "metrics" and printed with the summary.
struct metric {
    std::string name;   ///< e.g. "heap allocations per awaited read"
    std::string system; ///< whose figure it is, e.g. "coil"
    double value = 0;
    std::string unit;   ///< e.g. "allocations/op", "bytes/connection"
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

    /// Measures one row of N systems: an unrecorded warm-up of each, then `opts().runs` rounds
    /// in which every system runs once, the order rotating by one from round to round (so
    /// slow drift such as another process's load or frequency changes falls on every system
    /// alike, and none always inherits another's cache state). Prints one table for the row:
    /// system, ops/s median (min..max), ratio to `reference` (the median of the per-round
    /// ratios), p50/p99 latency when the measurement sampled latencies, and CPU seconds per
    /// million ops. Skipped systems are listed with their reason. `--side NAME` runs only the
    /// system called NAME ("baseline": the reference). Returns false when the row does not
    /// match `--filter`. Measurement failures propagate as `benchmark_failure`.
    bool compare_systems(const std::string& row, const std::vector<system>& systems,
                         std::string_view reference);

    /// Measures one row of two systems, "coil" and the program's `baseline_name` (the
    /// reference), as `compare_systems` does; the row is also kept as a `comparison`.
    bool compare(const std::string& name, const measurement& coil, const measurement& baseline);

    /// Whether a row called `name` would run under `--filter`; lets a program skip expensive
    /// setup (a large data file) that only filtered-out rows need.
    bool selected(std::string_view name) const;

    /// Appends a free-form note to the report (printed at the end and stored in the JSON).
    void note(std::string text);

    /// Records a figure for the summary and the JSON's "metrics".
    void add_metric(metric m);

    /// The two-system rows measured so far by `compare`.
    const std::vector<comparison>& rows() const noexcept { return rows_; }
    /// Every row measured so far (`compare` and `compare_systems`).
    const std::vector<row_result>& results() const noexcept { return results_; }

    /// Prints the closing summary and writes the JSON file if one was asked for. Returns the
    /// process exit status (non-zero when the JSON file could not be written).
    int finish();

private:
    struct one_run {
        double throughput = 0;
        double cpu_seconds_per_million = 0;
        std::optional<double> reported_p50_ns; // from a self-timed system
        std::optional<double> reported_p99_ns;
    };
    one_run measure_once(const system& s, std::chrono::nanoseconds duration,
                         std::vector<std::int64_t>* latencies) const;

    program program_;
    options opts_;
    std::vector<comparison> rows_;
    std::vector<row_result> results_;
    std::vector<metric> metrics_;
    std::vector<std::string> notes_;
    std::vector<std::string> system_names_; // every system a row offered, for --side's check
    std::string load_at_start_;
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
