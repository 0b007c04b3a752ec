// SPDX-License-Identifier: MIT
// The ring core's throughput against a hand-written raw liburing loop doing the same work:
// batches of NOPs (pure per-op and per-syscall overhead) and 4 KiB random reads of a
// page-cached file at queue depth 32.

#include "bench_data.hpp"
#include "harness.hpp"
#include "raw_liburing.hpp"

#include <coil/io/ring.hpp>

#include <fmt/core.h>

// Only for the baseline: coil's own side goes through <coil/io/ring.hpp> alone.
#include <liburing.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace {

namespace bench = coil::bench;
using bench::fail;

// Both sides use rings of the same size; the kernel doubles it for the CQ.
constexpr unsigned ring_entries = 256;
constexpr std::array<unsigned, 4> nop_batches = {1, 8, 32, 128};
constexpr unsigned max_nop_batch = 128;

constexpr unsigned read_depth = 32;
constexpr std::size_t read_size = 4096;
// Both sides draw the same offsets, run after run.
constexpr std::uint64_t read_seed = 0x636f696c'72656164; // "coilread"

std::string errno_text(int error) { return std::generic_category().message(error); }

// --- the baseline's ring ----------------------------------------------------------------------

using bench::raw_nops;
using bench::raw_ring;

// coil's ring asks for SUBMIT_ALL by default and drops it on a kernel before 5.18.
raw_ring make_raw_ring() { return raw_ring(ring_entries, {IORING_SETUP_SUBMIT_ALL, 0U}); }

// --- NOP batches -------------------------------------------------------------------------------

// One iteration: queue `batch` NOPs, one submit-and-wait for all of them, reap them in bulk.
std::uint64_t coil_nops(coil::io::ring& ring, unsigned batch, bench::run_clock& clock)
{
    std::array<coil::io::completion, max_nop_batch> done{};
    std::span<coil::io::completion> want(done.data(), batch);
    std::uint64_t ops = 0;
    while (clock.running()) {
        for (unsigned i = 0; i < batch; ++i)
            if (auto ec = ring.add_nop(i))
                fail("coil: add_nop: " + ec.message());
        auto waited = ring.wait(batch);
        if (!waited)
            fail("coil: wait: " + waited.error().message());
        std::size_t n = ring.reap_into(want);
        if (n != batch)
            fail(fmt::format("coil: waited for {} NOPs but reaped {}", batch, n));
        for (const coil::io::completion& c : want)
            if (c.result != 0)
                fail(fmt::format("coil: a NOP completed with {}", c.result));
        ops += n;
    }
    return ops;
}

// The same, reaping through the completion_range the wait returns instead of reap_into.
std::uint64_t coil_nops_range(coil::io::ring& ring, unsigned batch, bench::run_clock& clock)
{
    std::uint64_t ops = 0;
    while (clock.running()) {
        for (unsigned i = 0; i < batch; ++i)
            if (auto ec = ring.add_nop(i))
                fail("coil: add_nop: " + ec.message());
        auto waited = ring.wait(batch);
        if (!waited)
            fail("coil: wait: " + waited.error().message());
        unsigned n = 0;
        for (const coil::io::completion& c : *waited) {
            if (c.result != 0)
                fail(fmt::format("coil: a NOP completed with {}", c.result));
            ++n;
        }
        if (n != batch)
            fail(fmt::format("coil: waited for {} NOPs but reaped {}", batch, n));
        ops += n;
    }
    return ops;
}

// The same, reaping in place with for_each_completion (no copy of the completions).
std::uint64_t coil_nops_for_each(coil::io::ring& ring, unsigned batch, bench::run_clock& clock)
{
    std::uint64_t ops = 0;
    while (clock.running()) {
        for (unsigned i = 0; i < batch; ++i)
            if (auto ec = ring.add_nop(i))
                fail("coil: add_nop: " + ec.message());
        auto waited = ring.wait(batch);
        if (!waited)
            fail("coil: wait: " + waited.error().message());
        std::size_t n = ring.for_each_completion([](const coil::io::completion& c) {
            if (c.result != 0)
                fail(fmt::format("coil: a NOP completed with {}", c.result));
        });
        if (n != batch)
            fail(fmt::format("coil: waited for {} NOPs but reaped {}", batch, n));
        ops += n;
    }
    return ops;
}

// --- random reads --------------------------------------------------------------------------------

// What the read rows read: the page-cached file, and read_depth slots of read_size bytes.
struct read_setup {
    int fd = -1;
    std::uint64_t file_size = 0; // a power-of-two number of pages
    std::span<std::byte> buffers;
};

std::uint64_t random_offset(bench::splitmix64& rng, const read_setup& s) noexcept
{
    return bench::random_page_offset(rng, s.file_size);
}

[[noreturn]] void bad_read(const char* side, std::uint64_t offset, std::int32_t result)
{
    fail(fmt::format("{}: a {}-byte read at offset {} returned {}{}", side, read_size, offset,
                     result, result < 0 ? " (" + errno_text(-result) + ")" : std::string()));
}

// Keeps read_depth reads in flight, refilling each slot as its read completes.
std::uint64_t coil_reads(coil::io::ring& ring, const read_setup& s, bench::run_clock& clock)
{
    bench::splitmix64 rng(read_seed);
    std::array<std::uint64_t, read_depth> offsets{};
    auto queue = [&](std::uint64_t slot) {
        offsets[slot] = random_offset(rng, s);
        if (auto ec = ring.add_read(s.fd, s.buffers.subspan(slot * read_size, read_size),
                                    offsets[slot], slot))
            fail("coil: add_read: " + ec.message());
    };
    std::array<coil::io::completion, read_depth> done{};
    auto reap = [&]() -> std::size_t {
        std::size_t n = ring.reap_into(done);
        for (std::size_t i = 0; i < n; ++i)
            if (done[i].result != static_cast<std::int32_t>(read_size))
                bad_read("coil", offsets[done[i].user_data], done[i].result);
        return n;
    };

    for (std::uint64_t slot = 0; slot < read_depth; ++slot)
        queue(slot);
    std::uint64_t ops = 0;
    while (clock.running()) {
        auto waited = ring.wait(1);
        if (!waited)
            fail("coil: wait: " + waited.error().message());
        std::size_t n = reap();
        for (std::size_t i = 0; i < n; ++i)
            queue(done[i].user_data);
        ops += n;
    }
    // Leave nothing in flight: the other side's run comes next.
    while (ring.outstanding() != 0) {
        auto waited = ring.wait(ring.outstanding());
        if (!waited)
            fail("coil: wait: " + waited.error().message());
        ops += reap();
    }
    return ops;
}

std::uint64_t raw_reads(raw_ring& raw, const read_setup& s, bench::run_clock& clock)
{
    io_uring* ring = raw.get();
    bench::splitmix64 rng(read_seed);
    std::array<std::uint64_t, read_depth> offsets{};
    auto queue = [&](std::uint64_t slot) {
        io_uring_sqe* sqe = io_uring_get_sqe(ring);
        if (sqe == nullptr)
            fail("raw liburing: the SQ is full");
        offsets[slot] = random_offset(rng, s);
        io_uring_prep_read(sqe, s.fd, s.buffers.data() + slot * read_size, read_size,
                           offsets[slot]);
        io_uring_sqe_set_data64(sqe, slot);
    };
    // Returns the completions seen; with `refill` each completed slot gets its next read.
    auto reap = [&](bool refill) -> unsigned {
        unsigned head = 0;
        unsigned n = 0;
        io_uring_cqe* cqe = nullptr;
        io_uring_for_each_cqe(ring, head, cqe)
        {
            std::uint64_t slot = io_uring_cqe_get_data64(cqe);
            if (cqe->res != static_cast<std::int32_t>(read_size))
                bad_read("raw liburing", offsets[slot], cqe->res);
            if (refill)
                queue(slot);
            ++n;
        }
        io_uring_cq_advance(ring, n);
        return n;
    };

    for (std::uint64_t slot = 0; slot < read_depth; ++slot)
        queue(slot);
    std::uint64_t ops = 0;
    while (clock.running()) {
        int ret = io_uring_submit_and_wait(ring, 1);
        if (ret < 0 && ret != -EINTR)
            fail("raw liburing: io_uring_submit_and_wait: " + errno_text(-ret));
        ops += reap(true);
    }
    for (unsigned in_flight = read_depth; in_flight != 0;) {
        int ret = io_uring_submit_and_wait(ring, in_flight);
        if (ret < 0 && ret != -EINTR)
            fail("raw liburing: io_uring_submit_and_wait: " + errno_text(-ret));
        unsigned n = reap(false);
        in_flight -= n;
        ops += n;
    }
    return ops;
}

} // namespace

int main(int argc, char** argv)
{
    bench::program prog{
        "bench_ring",
        "coil::io::ring against hand-written raw liburing (io_uring_get_sqe / "
        "io_uring_submit_and_wait / io_uring_for_each_cqe): NOP batches, 4 KiB random reads",
        "raw liburing",
        {{"data-dir", "where the read benchmark keeps its data file (default $COIL_BENCH_DIR, "
                      "else " COIL_BENCH_DATA_DIR ")",
          ""}},
    };
    return bench::run_program(argc, argv, std::move(prog), [](bench::harness& h) {
        coil::io::ring ring(ring_entries);
        raw_ring raw = make_raw_ring();
        fmt::print("  rings     coil {} SQ / {} CQ entries, raw liburing {} / {} (ring fd {})\n",
                   ring.sq_entries(), ring.cq_entries(), raw.get()->sq.ring_entries,
                   raw.get()->cq.ring_entries,
                   raw.registered_fd() ? "registered" : "not registered: kernel before 5.18");

        // The read file is prepared before any row runs, so that its creation and the page
        // cache warm-up neither interrupt the table nor overlap a measurement.
        std::string read_row = fmt::format("read 4k random qd{} ({})", read_depth,
                                           h.opts().quick ? "64 MiB" : "1 GiB");
        std::optional<bench::read_file> file;
        if (h.selected(read_row))
            file.emplace(bench::data_directory(h, COIL_BENCH_DATA_DIR),
                         bench::read_file_size(h));
        std::vector<std::byte> buffers(read_depth * read_size, std::byte{0});

        for (unsigned batch : nop_batches)
            h.compare(
                fmt::format("nop batch {}", batch),
                [&](bench::run_clock& c) { return coil_nops(ring, batch, c); },
                [&](bench::run_clock& c) { return raw_nops(raw, batch, c); });
        h.compare(
            "nop (range reap) batch 32",
            [&](bench::run_clock& c) { return coil_nops_range(ring, 32, c); },
            [&](bench::run_clock& c) { return raw_nops(raw, 32, c); });
        h.compare(
            "nop (for_each) batch 32",
            [&](bench::run_clock& c) { return coil_nops_for_each(ring, 32, c); },
            [&](bench::run_clock& c) { return raw_nops(raw, 32, c); });

        if (file) {
            // Warmed again: the NOP rows ran for a minute, and memory reclaim (DAMON, another
            // process's build) may have dropped pages of the file since.
            double resident = file->rewarm();
            if (resident >= 0 && resident < 0.99)
                h.note(fmt::format("warning: only {:.1f}% of {} was in the page cache; the "
                                   "read numbers include disk I/O",
                                   resident * 100, file->path()));
            read_setup s{file->fd(), file->size(), buffers};
            h.compare(
                read_row, [&](bench::run_clock& c) { return coil_reads(ring, s, c); },
                [&](bench::run_clock& c) { return raw_reads(raw, s, c); });
        }
        // The NOP rows are reported without a target (docs/benchmarks.md): they show the
        // ring core's own per-op cost almost bare, not what a workload feels.
    });
}
