// SPDX-License-Identifier: MIT
// File reads against everything a user might use instead: 4 KiB random reads of a page-cached
// file at queue depths 1, 8, 32 and 128, by coil (plain reads, and registered buffers through
// a registered file), raw liburing (the same two), a blocking pread loop on one thread and on
// one thread per core, Boost.Asio's random_access_file on io_uring (a file object per
// coroutine) and fio's io_uring engine; then the same reads with O_DIRECT where the file system
// takes it. The reference of every row is the one-thread pread loop.
//
// Every system draws its offsets the same way (splitmix64 per queue slot, seeded alike) and
// reads into page-aligned buffers, so they differ only in how they reach the kernel. The coil
// and raw liburing rings are set up alike (256 entries, SINGLE_ISSUER + DEFER_TASKRUN when the
// kernel has them, the ring fd registered).

#include "bench_data.hpp"
#include "harness.hpp"
#include "raw_liburing.hpp"
#include "read_systems.hpp"
#if COIL_BENCH_ASIO
#include "bench_files_asio.hpp"
#endif

#include <coil/coil.hpp>

#include <fmt/core.h>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

// Only for the raw liburing systems.
#include <liburing.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

namespace {

namespace bench = coil::bench;
using bench::fail;
using namespace bench::reads;

// --- fio ---------------------------------------------------------------------------------------

// The number after `"key"` that follows `after` in fio's JSON output (no JSON library here:
// the keys read are unique within the job's "read" object).
std::optional<double> json_number(const std::string& json, std::size_t after, const char* key)
{
    const std::size_t at = json.find(fmt::format("\"{}\"", key), after);
    if (at == std::string::npos)
        return std::nullopt;
    const std::size_t colon = json.find(':', at);
    if (colon == std::string::npos)
        return std::nullopt;
    return std::strtod(json.c_str() + colon + 1, nullptr);
}

// fio reads for about `budget` and reports its own figures: throughput over its job's run time
// (or, with `cpu_clock`, over the job's CPU time, as the harness's --clock cpu measures the
// other systems), its job's CPU time (usr_cpu + sys_cpu, so fio's process start-up is not
// charged to its reads), and its submission-to-completion percentiles.
bench::self_timed_run fio_reads(const std::string& fio, const std::string& path,
                                std::uint64_t file_size, unsigned depth, bool direct,
                                bool cpu_clock, std::chrono::nanoseconds budget)
{
    const auto ms = std::max<long long>(
        100, std::chrono::duration_cast<std::chrono::milliseconds>(budget).count());
    // invalidate=0: fio would otherwise drop the file from the page cache before the job.
    const std::string command = fmt::format(
        "{} --name=coil-bench --filename={} --readonly --ioengine=io_uring --rw=randread "
        "--bs=4k --iodepth={} --size={} --direct={} --invalidate=0 --norandommap "
        "--randrepeat=0 --time_based --runtime={}ms --lat_percentiles=1 --output-format=json "
        "2>&1",
        fio, path, depth, file_size, direct ? 1 : 0, ms);
    std::FILE* pipe = ::popen(command.c_str(), "r");
    if (pipe == nullptr)
        fail("fio: popen: " + errno_text(errno));
    std::string output;
    std::array<char, 4096> chunk;
    while (std::size_t n = std::fread(chunk.data(), 1, chunk.size(), pipe))
        output.append(chunk.data(), n);
    const int status = ::pclose(pipe);
    const std::size_t read_at = output.find("\"read\"");
    std::optional<double> ios = json_number(output, read_at, "total_ios");
    std::optional<double> runtime_ms = json_number(output, read_at, "runtime");
    if (status != 0 || read_at == std::string::npos || !ios || !runtime_ms || *runtime_ms <= 0)
        fail(fmt::format("fio failed (status {}): {}", status, output.substr(0, 600)));
    bench::self_timed_run run;
    run.operations = *ios;
    run.seconds = *runtime_ms / 1000.0;
    // The job's CPU, in percent of its run time; these keys follow the job's "read" object.
    std::optional<double> user = json_number(output, read_at, "usr_cpu");
    std::optional<double> system = json_number(output, read_at, "sys_cpu");
    if (user && system) {
        run.cpu_seconds = (*user + *system) / 100.0 * run.seconds;
        if (cpu_clock && *run.cpu_seconds > 0)
            run.seconds = *run.cpu_seconds;
    }
    // Submission to completion (lat_ns, with lat_percentiles=1), as the other systems time a
    // read; clat_ns would leave out the submission.
    const std::size_t lat = output.find("\"lat_ns\"", read_at);
    const std::size_t percentiles = output.find("\"percentile\"", lat);
    if (lat != std::string::npos && percentiles != std::string::npos) {
        run.p50_ns = json_number(output, percentiles, "50.000000");
        run.p99_ns = json_number(output, percentiles, "99.000000");
    }
    return run;
}

// --- the rows ----------------------------------------------------------------------------------

// The files one set of rows reads: buffered, or opened with O_DIRECT.
struct row_files {
    std::string label;       // "" or " O_DIRECT"
    int open_flags;          // O_RDONLY or O_RDONLY | O_DIRECT
    int fd;                  // for pread, coil and raw liburing
    const coil::file* registered; // the same file in coil's registered slot
    const coil::file* registered_sqpoll; // in `coil sqpoll`'s slot; null: no SQPOLL systems
};

// The SQPOLL systems, where the process may use two CPUs: their polling threads run on `cpu`,
// and the loops that feed them elsewhere.
struct sqpoll_sides {
    explicit sqpoll_sides(unsigned thread_cpu)
        : cpu(thread_cpu), coil(sqpoll_options(thread_cpu)),
          raw(ring_entries, sqpoll_raw_params(thread_cpu))
    {
    }

    unsigned cpu;
    coil_side coil;
    bench::raw_ring raw;
};

struct context {
    bench::harness& h;
    const bench::read_file& file;
    coil_side& coil;
    bench::raw_ring& raw;
    const aligned_arena& arena;
    std::optional<std::string> fio;
    unsigned cores;
    sqpoll_sides* sqpoll; // null: the process has one CPU
};

// The per-round median of `a / b` (both are ratios to the same reference round by round, so
// their quotient is a / b in each round).
std::optional<double> paired_median(const bench::system_result& a, const bench::system_result& b)
{
    std::vector<double> per_round;
    for (std::size_t i = 0; i < std::min(a.run_ratios.size(), b.run_ratios.size()); ++i)
        per_round.push_back(a.run_ratios[i] / b.run_ratios[i]);
    if (per_round.empty())
        return std::nullopt;
    std::sort(per_round.begin(), per_round.end());
    return per_round[per_round.size() / 2];
}

// Prints the two targets of issue 9 for `system` (against pread x1, and against `raw`).
void note_targets(bench::harness& h, const std::string& row, const bench::row_result& result,
                  const char* system, const char* raw)
{
    const bench::system_result* ours = result.find(system);
    const bench::system_result* theirs = result.find(raw);
    const char* smoke = h.opts().quick ? " (--quick: a smoke test, not a measurement)" : "";
    if (ours != nullptr && ours->ratio)
        h.note(fmt::format("target: {}: {} / pread x1 >= 1.10: {:.3f} ({}){}", row, system,
                           *ours->ratio, *ours->ratio >= 1.10 ? "MET" : "MISSED", smoke));
    if (ours == nullptr || theirs == nullptr || !ours->ratio || !theirs->ratio)
        return;
    // The median over rounds of the paired ratio, as every ratio here: not the ratio of the
    // two medians the table shows.
    if (std::optional<double> median = paired_median(*ours, *theirs))
        h.note(fmt::format("target: {}: {} / {} >= 0.97 (median of per-round ratios): {:.3f} "
                           "({}){}",
                           row, system, raw, *median, *median >= 0.97 ? "MET" : "MISSED", smoke));
}

void measure_rows(context& c, const row_files& files, const std::string& size_name)
{
    const std::uint64_t size = c.file.size();
    const std::string& path = c.file.path();
    for (unsigned depth : {1U, 8U, 32U, 128U}) {
        std::vector<bench::system> systems;
        systems.push_back({"pread x1", [&](bench::run_clock& clock) {
                               return pread_threads(files.fd, size, 1, c.arena, clock);
                           }});
        systems.push_back({fmt::format("pread x{}", c.cores), [&](bench::run_clock& clock) {
                               return pread_threads(files.fd, size, c.cores, c.arena, clock);
                           }});
        systems.push_back({"coil", [&, depth](bench::run_clock& clock) {
                               return c.coil.plain(files.fd, size, depth, c.arena, clock);
                           }});
        systems.push_back({"coil fixed", [&, depth](bench::run_clock& clock) {
                               return c.coil.fixed(*files.registered, size, depth, clock);
                           }});
        systems.push_back({"raw liburing", [&, depth](bench::run_clock& clock) {
                               return bench::raw_reads(c.raw, files.fd, size, depth, read_seed,
                                                       c.arena.all(), bench::raw_read_mode::plain,
                                                       clock);
                           }});
        systems.push_back({"raw liburing fixed", [&, depth](bench::run_clock& clock) {
                               return bench::raw_reads(c.raw, files.fd, size, depth, read_seed,
                                                       c.arena.all(), bench::raw_read_mode::fixed,
                                                       clock);
                           }});
        if (c.sqpoll != nullptr && files.registered_sqpoll != nullptr) {
            // Registered buffers through a registered file, like the fixed systems, with a
            // kernel thread on another CPU taking the SQEs and posting the completions.
            systems.push_back({"coil sqpoll", [&, depth](bench::run_clock& clock) {
                                   cpu_kept_free off(c.sqpoll->cpu);
                                   return c.sqpoll->coil.fixed(*files.registered_sqpoll, size,
                                                               depth, clock);
                               }});
            systems.push_back({"raw liburing sqpoll", [&, depth](bench::run_clock& clock) {
                                   cpu_kept_free off(c.sqpoll->cpu);
                                   return bench::raw_reads(c.sqpoll->raw, files.fd, size, depth,
                                                           read_seed, c.arena.all(),
                                                           bench::raw_read_mode::fixed, clock);
                               }});
        } else if (files.label.empty()) {
            const char* why = "SQPOLL needs a second CPU for its kernel thread";
            systems.push_back({.name = "coil sqpoll", .skipped = why});
            systems.push_back({.name = "raw liburing sqpoll", .skipped = why});
        }
#if COIL_BENCH_ASIO
        systems.push_back({"Boost.Asio", [&, depth](bench::run_clock& clock) {
                               return bench::asio_files::reads(path.c_str(), files.open_flags,
                                                               size, depth, read_seed,
                                                               c.arena.all(), clock);
                           }});
#else
        systems.push_back({.name = "Boost.Asio", .skipped = COIL_BENCH_ASIO_MISSING});
#endif
        if (c.fio) {
            const bool direct = (files.open_flags & O_DIRECT) != 0;
            systems.push_back({.name = "fio",
                               .self_timed = [&, depth, direct](std::chrono::nanoseconds budget) {
                                   return fio_reads(*c.fio, path, size, depth, direct,
                                                    c.h.opts().clock == "cpu", budget);
                               }});
        } else {
            systems.push_back({.name = "fio",
                               .skipped = "fio not installed (./dev bench installs it from "
                                          "Debian: apt-get install fio)"});
        }
        const std::string row =
            fmt::format("read 4k random{} qd{} ({})", files.label, depth, size_name);
        if (!c.h.compare_systems(row, systems, "pread x1"))
            continue;
        // The targets of issue 9, for the buffered rows at qd1 and qd32.
        if (!files.label.empty() || (depth != 1 && depth != 32))
            continue;
        const bench::row_result& result = c.h.results().back();
        note_targets(c.h, row, result, "coil fixed", "raw liburing fixed");
        // SQPOLL is the qd1 answer (docs/benchmarks.md): at depth its one kernel thread per
        // ring, not the runtime, sets the pace, so its rows there are reported, not targeted.
        if (c.sqpoll != nullptr && depth == 1)
            note_targets(c.h, row, result, "coil sqpoll", "raw liburing sqpoll");
    }
}

} // namespace

int main(int argc, char** argv)
{
    bench::program prog{
        "bench_files",
        "4 KiB random reads of a page-cached file (and with O_DIRECT) at queue depths 1..128: "
        "coil, raw liburing, blocking pread, Boost.Asio, fio",
        "pread x1 (a blocking pread loop on one thread)",
        {{"data-dir", "where the read rows keep their data file (default $COIL_BENCH_DIR, else " COIL_BENCH_DATA_DIR ")", ""}},
    };
    return bench::run_program(argc, argv, std::move(prog), [](bench::harness& h) {
        const std::string size_name = h.opts().quick ? "64 MiB" : "1 GiB";
        bool any = false;
        for (const char* label : {"", " O_DIRECT"})
            for (unsigned depth : {1U, 8U, 32U, 128U})
                any = any || h.selected(fmt::format("read 4k random{} qd{} ({})", label, depth,
                                                    size_name));
        if (!any)
            return;
        bench::read_file file(bench::data_directory(h, COIL_BENCH_DATA_DIR),
                              bench::read_file_size(h));
        coil_side coil;
        bench::raw_ring raw(ring_entries,
                            {IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER |
                                 IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
                             IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER,
                             IORING_SETUP_SUBMIT_ALL, 0U});
        const unsigned cores = std::max(1U, std::thread::hardware_concurrency());
        aligned_arena arena(std::max(max_depth, cores) * read_size);
        std::optional<sqpoll_sides> sqpoll;
        if (std::optional<unsigned> cpu = sqpoll_cpu())
            sqpoll.emplace(*cpu);
        context c{h, file, coil, raw, arena, bench::find_program("fio"), cores,
                  sqpoll ? &*sqpoll : nullptr};
        fmt::print("  rings     coil {} SQ / {} CQ entries ({}), raw liburing {} / {}\n",
                   coil.ex.ring().sq_entries(), coil.ex.ring().cq_entries(),
                   coil.ex.ring().single_issuer() ? "SINGLE_ISSUER+DEFER_TASKRUN"
                                                  : "no DEFER_TASKRUN",
                   raw.get()->sq.ring_entries, raw.get()->cq.ring_entries);
        if (!c.fio)
            h.note("fio: skipped, not installed (./dev bench installs it from Debian)");

        {
            const double resident = file.rewarm();
            if (resident >= 0 && resident < 0.99)
                h.note(fmt::format("warning: only {:.1f}% of {} was in the page cache; the "
                                   "buffered rows include disk I/O",
                                   resident * 100, file.path()));
            coil::file registered = coil.open_registered(file.path(), O_RDONLY);
            std::optional<coil::file> registered_sqpoll;
            if (sqpoll)
                registered_sqpoll = sqpoll->coil.open_registered(file.path(), O_RDONLY);
            measure_rows(c,
                         {"", O_RDONLY, file.fd(), &registered,
                          registered_sqpoll ? &*registered_sqpoll : nullptr},
                         size_name);
        }

        // O_DIRECT: the same reads, past the page cache, where the file system allows it.
        const int direct_fd = ::open(file.path().c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
        if (direct_fd < 0) {
            h.note(fmt::format("O_DIRECT rows skipped: opening {} with O_DIRECT failed ({}); "
                               "the file system does not support direct I/O (tmpfs, overlayfs "
                               "on some kernels): set --data-dir to a directory on ext4 or xfs",
                               file.path(), errno_text(errno)));
            return;
        }
        coil::file registered = coil.open_registered(file.path(), O_RDONLY | O_DIRECT);
        measure_rows(c, {" O_DIRECT", O_RDONLY | O_DIRECT, direct_fd, &registered, nullptr},
                     size_name);
        ::close(direct_fd);
    });
}
