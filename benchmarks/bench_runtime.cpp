// SPDX-License-Identifier: MIT
// The coroutine runtime against a hand-written raw liburing loop doing the same work: NOP round
// trips from 1 and 128 coroutines, and 4 KiB random reads of a page-cached file from one
// coroutine per queue slot at depths 1, 32 and 128.
//
// Both sides get the same ring setup (256 entries, SINGLE_ISSUER + DEFER_TASKRUN when the
// kernel has them, the ring fd registered), so the ratio measures what coil's executor, tasks
// and awaiters cost, not a difference in kernel flags.

#include "bench_data.hpp"
#include "harness.hpp"
#include "raw_liburing.hpp"
#include "read_systems.hpp"

#include <coil/coil.hpp>

#include <fmt/core.h>

// Only for the baseline: coil's side goes through <coil/coil.hpp> alone.
#include <liburing.h>

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <vector>

namespace {

namespace bench = coil::bench;
using bench::fail;

constexpr unsigned ring_entries = 256;
constexpr std::size_t read_size = 4096;
constexpr std::uint64_t read_seed = 0x636f696c'72756e74; // "coilrunt"

using bench::raw_nops;
using bench::raw_ring;

// The flags coil's executor asks for, dropped in the same order when the kernel lacks them.
raw_ring make_raw_ring()
{
    return raw_ring(ring_entries,
                    {IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER |
                         IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
                     IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER, IORING_SETUP_SUBMIT_ALL,
                     0U});
}

// --- NOP round trips -------------------------------------------------------------------------

using bench::round_clock;

coil::task<void> nop_loop(round_clock& clock, bool leader, std::uint64_t& ops)
{
    while (clock.check(leader)) {
        coil::result<void> done = co_await coil::nop();
        if (!done)
            fail("coil: a NOP failed: " + done.error().message());
        ++ops;
    }
}

coil::task<void> nop_tasks(unsigned tasks, bench::run_clock& clock, std::uint64_t& ops)
{
    round_clock rounds{clock};
    if (tasks == 1) {
        co_await nop_loop(rounds, true, ops);
        co_return;
    }
    std::vector<coil::task<void>> loops;
    for (unsigned i = 0; i < tasks; ++i)
        loops.push_back(nop_loop(rounds, i == 0, ops));
    co_await coil::when_all(std::move(loops));
}

std::uint64_t coil_nops(coil::executor& ex, unsigned tasks, bench::run_clock& clock)
{
    std::uint64_t ops = 0;
    ex.run(nop_tasks(tasks, clock, ops));
    return ops;
}

// --- random reads ------------------------------------------------------------------------------

// One coroutine per queue slot (read_systems.hpp's loop, which bench_files runs too): draw an
// offset, read 4 KiB there into the slot's page of the shared arena, check the count, sample
// one read in 32 for p50/p99 (as the raw loop does).
coil::task<void> read_tasks(unsigned depth, const bench::read_file& file,
                            const bench::reads::aligned_arena& arena, bench::run_clock& clock,
                            std::uint64_t& ops)
{
    round_clock rounds{clock};
    std::vector<coil::task<void>> loops;
    for (unsigned i = 0; i < depth; ++i)
        loops.push_back(bench::reads::coil_read_loop(file.fd(), file.size(), read_seed + i,
                                                     arena.slot(i), rounds, i == 0, ops));
    co_await coil::when_all(std::move(loops));
}

std::uint64_t coil_reads(coil::executor& ex, unsigned depth, const bench::read_file& file,
                         const bench::reads::aligned_arena& arena, bench::run_clock& clock)
{
    std::uint64_t ops = 0;
    ex.run(read_tasks(depth, file, arena, clock, ops));
    return ops;
}

// `depth` reads in flight, each slot refilled with its next read as it completes (the shared
// raw loop, raw_liburing.cpp), into the same page-aligned buffers as coil's.
std::uint64_t raw_reads(raw_ring& raw, unsigned depth, const bench::read_file& file,
                        const bench::reads::aligned_arena& arena, bench::run_clock& clock)
{
    return bench::raw_reads(raw, file.fd(), file.size(), depth, read_seed, arena.all(),
                            bench::raw_read_mode::plain, clock);
}

} // namespace

int main(int argc, char** argv)
{
    bench::program prog{
        "bench_runtime",
        "coil's executor and coroutines against raw liburing with the same ring flags "
        "(io_uring_submit_and_wait / io_uring_for_each_cqe): NOP round trips, 4 KiB random "
        "reads",
        "raw liburing",
        {{"data-dir", "where the read rows keep their data file (default $COIL_BENCH_DIR, else " COIL_BENCH_DATA_DIR ")", ""}},
    };
    return bench::run_program(argc, argv, std::move(prog), [](bench::harness& h) {
        coil::executor ex(coil::executor_options{.entries = ring_entries});
        raw_ring raw = make_raw_ring();
        fmt::print("  rings     coil {} SQ / {} CQ entries ({}), raw liburing {} / {}\n",
                   ex.ring().sq_entries(), ex.ring().cq_entries(),
                   ex.ring().single_issuer() ? "SINGLE_ISSUER+DEFER_TASKRUN" : "no DEFER_TASKRUN",
                   raw.get()->sq.ring_entries, raw.get()->cq.ring_entries);

        const std::array<unsigned, 3> depths = {1, 32, 128};
        const std::string size_name = h.opts().quick ? "64 MiB" : "1 GiB";
        bool any_read = false;
        for (unsigned depth : depths)
            any_read = any_read || h.selected(fmt::format("read 4k random qd{} ({})", depth, size_name));
        std::optional<bench::read_file> file;
        // One page per read in flight at the deepest depth, shared by both sides (they run one
        // after the other), so that neither reads into unaligned or differently placed memory.
        const bench::reads::aligned_arena arena(std::size_t{depths.back()} * read_size);
        if (any_read)
            file.emplace(bench::data_directory(h, COIL_BENCH_DATA_DIR), bench::read_file_size(h));

        for (unsigned tasks : {1U, 128U})
            h.compare(
                fmt::format("nop round trip, {} task{}", tasks, tasks == 1 ? "" : "s"),
                [&](bench::run_clock& c) { return coil_nops(ex, tasks, c); },
                [&](bench::run_clock& c) { return raw_nops(raw, tasks, c); });

        if (file) {
            double resident = file->rewarm();
            if (resident >= 0 && resident < 0.99)
                h.note(fmt::format("warning: only {:.1f}% of {} was in the page cache; the "
                                   "read numbers include disk I/O",
                                   resident * 100, file->path()));
            for (unsigned depth : depths)
                h.compare(
                    fmt::format("read 4k random qd{} ({})", depth, size_name),
                    [&](bench::run_clock& c) { return coil_reads(ex, depth, *file, arena, c); },
                    [&](bench::run_clock& c) { return raw_reads(raw, depth, *file, arena, c); });
        }

        // Since the runtime was rebuilt for servers (b013378) the read rows, the realistic
        // ones, are held to 0.95 at every depth; the NOP rows, which show the runtime's own
        // per-op cost almost bare, are reported without a target (docs/benchmarks.md).
        for (const bench::comparison& row : h.rows()) {
            if (!row.ratio)
                continue;
            if (row.name.rfind("read 4k random", 0) == 0)
                h.note(fmt::format("target: {} >= 0.95: {:.3f} ({}){}", row.name, *row.ratio,
                                   *row.ratio >= 0.95 ? "MET" : "MISSED",
                                   h.opts().quick ? " (--quick: a smoke test, not a measurement)"
                                                  : ""));
        }
    });
}
