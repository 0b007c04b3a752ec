// SPDX-License-Identifier: MIT
/// @file
/// What the server benchmarks (bench_echo, bench_http) share: a server started as a process of
/// its own and pinned to one CPU, whose CPU time and resident memory can be read; pinning the
/// benchmark itself; raising the descriptor limit; and the min/median/max summary of a
/// handful of runs.
#pragma once

#include "harness.hpp"

#include <sys/types.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace coil::bench {

class harness;
struct options;
struct program;

/// How to start one server.
struct process_spec {
    std::string name;              ///< for messages: "coil", "nginx", ...
    std::vector<std::string> argv; ///< argv[0] is the program's path
    /// The port the server was told to use; it is ready once a TCP connection to
    /// 127.0.0.1:port succeeds. Without one, the server must print a line holding
    /// "listening on HOST:PORT" on stdout, as coil's examples do, and that port is used.
    std::optional<std::uint16_t> port;
    /// Sends the server's stderr to /dev/null (for servers that talk on every start and stop
    /// and keep a log of their own).
    bool quiet = false;
};

/// A server in a process of its own, pinned to one CPU (-1: not pinned). The constructor
/// returns once the server accepts connections, or throws `benchmark_failure`. Stopped
/// (SIGTERM, then SIGKILL after five seconds) by `stop()` or the destructor.
class server_process {
public:
    server_process(const process_spec& spec, int cpu);
    ~server_process() { stop(); }
    server_process(const server_process&) = delete;
    server_process& operator=(const server_process&) = delete;

    std::uint16_t port() const noexcept { return port_; }
    pid_t pid() const noexcept { return pid_; }

    /// The process's user + system CPU time so far, in seconds (all its threads, including
    /// io_uring's io-wq workers, which belong to it). Clock-tick resolution (usually 10 ms).
    double cpu_seconds() const;

    /// VmRSS in KiB.
    long rss_kib() const;

    /// Fails if the process has exited (a crash shows here rather than as a stalled client).
    void check_alive();

    /// SIGTERM, then waits; returns the exit status (-1: had to be killed, or gone already).
    int stop();

private:
    void wait_until_accepting();

    std::string name_;
    pid_t pid_ = -1;
    std::uint16_t port_ = 0;
};

/// Starts `argv` (argv[0] is the program's path) in a child process pinned to `cpu` (-1: not
/// pinned), its stdout going to `stdout_fd` and, with `quiet`, its stderr to /dev/null.
/// Returns the child's pid; fails when it cannot fork.
pid_t spawn_pinned(const std::vector<std::string>& argv, int cpu, int stdout_fd, bool quiet);

/// The `main` of a server benchmark: unpins servers and client on a one-CPU machine (options
/// `server-cpu` and `client-cpu`), prints the environment, runs `body`, and turns a
/// `benchmark_failure` or any other exception into a message and exit status 1.
int run_server_benchmark(program& prog, const options& opts,
                         const std::function<int(harness&)>& body);

/// A TCP port on 127.0.0.1 that was free a moment ago (for servers that cannot be told to
/// pick one and print it, such as nginx).
std::uint16_t free_port();

/// Pins the calling thread to `cpu` (nothing for -1); fails when the CPU does not exist.
void pin_self(int cpu);

/// Raises both RLIMIT_NOFILE limits to `wanted` where allowed (root may raise the hard limit;
/// others go as far as the hard limit). Children inherit it. Returns the soft limit reached.
rlim_t raise_file_limit(rlim_t wanted);

/// The contents of a (small) file, such as /proc/PID/stat.
std::optional<std::string> read_text_file(const std::string& path);

/// Minimum, median and maximum of some runs, with the runs themselves.
struct spread {
    double median = 0;
    double min = 0;
    double max = 0;
    std::vector<double> samples;
};

double median(std::vector<double> v);
spread summarise(std::vector<double> v);

/// `s` as a JSON object {"median", "min", "max", "samples"}.
std::string json_spread(const spread& s);

/// The machine and the load average, as one JSON object (the "environment" of a result file).
std::string json_environment();

/// 1234567 as "1.23M", 45600 as "45.6k": for ranges in narrow table columns.
std::string compact(double v);

/// A command-line value the program cannot use: reported as a usage error (exit status 2).
class usage_failure : public benchmark_failure {
public:
    using benchmark_failure::benchmark_failure;
};

/// "64,4096" as {64, 4096}; a usage failure (naming option `what`) on anything but numbers
/// in 1..`max`.
std::vector<unsigned long> number_list(const std::string& text, const char* what,
                                       unsigned long max);

/// The integer `text` of option `what`, in `min`..`max`; a usage failure otherwise.
long integer_option(const std::string& text, const char* what, long min, long max);

/// "coil,nginx" as its names, each one of `known`; a usage failure naming them otherwise.
std::vector<std::string> name_list(const std::string& text, const char* what,
                                   const std::vector<std::string>& known);

/// The entries of `known` (anything with a `name`) that option `what`'s comma-separated
/// `text` names, in `known`'s order; a usage failure for a name `known` lacks.
template <class Spec>
std::vector<Spec> select_by_name(std::vector<Spec> known, const std::string& text,
                                 const char* what)
{
    std::vector<std::string> names;
    for (const Spec& s : known)
        names.push_back(s.name);
    const std::vector<std::string> wanted = name_list(text, what, names);
    std::vector<Spec> chosen;
    for (Spec& s : known)
        if (std::find(wanted.begin(), wanted.end(), s.name) != wanted.end())
            chosen.push_back(std::move(s));
    return chosen;
}

} // namespace coil::bench
