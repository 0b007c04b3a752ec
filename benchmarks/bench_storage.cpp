// SPDX-License-Identifier: MIT
// Storage rows: a durable log (4 KiB appends, each or every 16 followed by fdatasync) and a
// sequential file copy in 1 MiB chunks, coil against raw liburing, blocking system calls and
// copy_file_range.
//
// coil's awaitables have no way to link SQEs (`co_await` starts one op and waits for it), so
// the "coil" system awaits each write and the fdatasync in order: one round trip per op. The
// ring core does have `sqe_flags::link`, so "coil ring, linked" queues the whole chain (16
// writes and the fdatasync) through `coil::io::ring` and waits once, as raw liburing does.

#include "bench_data.hpp"
#include "harness.hpp"
#include "raw_liburing.hpp"

#include <coil/coil.hpp>
#include <coil/io/ring.hpp>

#include <fmt/core.h>

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

// Only for the raw liburing systems.
#include <liburing.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <system_error>
#include <vector>

namespace {

namespace bench = coil::bench;
using bench::fail;
using steady = std::chrono::steady_clock;

constexpr unsigned ring_entries = 64;
constexpr std::size_t record_size = 4096;
constexpr unsigned max_group = 16;
constexpr std::size_t chunk_size = 1U << 20;

std::string errno_text(int error) { return std::generic_category().message(error); }

using bench::scratch_file;

void expect(long got, std::size_t wanted, const char* system, const char* what)
{
    if (got < 0 || static_cast<std::size_t>(got) != wanted)
        fail(fmt::format("{}: {} returned {} (wanted {})", system, what,
                         got < 0 ? errno_text(static_cast<int>(-got)) : std::to_string(got),
                         wanted));
}

// Times every group of the log (first write to the fdatasync's completion) or every chunk of
// the copy (read to write): each takes far longer than reading the clock.
class group_timer {
public:
    explicit group_timer(bench::run_clock& clock) noexcept
        : clock_(clock), sampled_((clock.sample_every(1), clock.sample_latency()))
    {
        if (sampled_)
            start_ = steady::now();
    }
    ~group_timer()
    {
        if (sampled_)
            clock_.record_latency(steady::now() - start_);
    }
    group_timer(const group_timer&) = delete;
    group_timer& operator=(const group_timer&) = delete;

private:
    bench::run_clock& clock_;
    bool sampled_;
    steady::time_point start_{};
};

// What a completion must say: the byte count (0 for a sync) and the op's name for the message.
struct wanted_result {
    std::size_t result;
    const char* what;
};

// Submits the SQEs queued so far, waits for `count` completions, reaps them and checks each
// against `wanted(user_data)`.
template <typename Wanted>
void raw_complete(io_uring* ring, unsigned count, Wanted wanted)
{
    int submitted = io_uring_submit_and_wait(ring, count);
    if (submitted < 0)
        fail("raw liburing: submit_and_wait: " + errno_text(-submitted));
    unsigned seen = 0;
    unsigned head;
    io_uring_cqe* cqe;
    io_uring_for_each_cqe(ring, head, cqe)
    {
        const wanted_result w = wanted(cqe->user_data);
        expect(cqe->res, w.result, "raw liburing", w.what);
        ++seen;
    }
    io_uring_cq_advance(ring, seen);
    if (seen != count)
        fail(fmt::format("raw liburing: reaped {} completions, wanted {}", seen, count));
}

// --- durable log append ------------------------------------------------------------------

struct log_setup {
    const scratch_file& file;
    std::span<const std::byte> record;
    unsigned group; // appends per fdatasync
};

coil::task<void> coil_append_loop(const log_setup& s, bench::run_clock& clock, std::uint64_t& ops)
{
    std::uint64_t offset = 0;
    while (clock.running()) {
        group_timer timer(clock);
        for (unsigned i = 0; i < s.group; ++i) {
            coil::result<std::size_t> n = co_await coil::write(s.file.fd(), s.record, offset);
            if (!n || *n != record_size)
                fail(fmt::format("coil: a 4 KiB append gave {}",
                                 n ? std::to_string(*n) : n.error().message()));
            offset += record_size;
        }
        coil::result<void> synced = co_await coil::fdatasync(s.file.fd());
        if (!synced)
            fail("coil: fdatasync: " + synced.error().message());
        ops += s.group;
    }
}

std::uint64_t coil_append(coil::executor& ex, const log_setup& s, bench::run_clock& clock)
{
    s.file.truncate();
    std::uint64_t ops = 0;
    ex.run(coil_append_loop(s, clock, ops));
    return ops;
}

std::uint64_t coil_ring_append(coil::io::ring& ring, const log_setup& s, bench::run_clock& clock)
{
    s.file.truncate();
    std::array<coil::io::completion, max_group + 1> done{};
    std::span<coil::io::completion> want(done.data(), s.group + 1);
    std::uint64_t offset = 0;
    std::uint64_t ops = 0;
    while (clock.running()) {
        group_timer timer(clock);
        for (unsigned i = 0; i < s.group; ++i, offset += record_size)
            if (auto ec = ring.add_write(s.file.fd(), s.record, offset, i, coil::io::sqe_flags::link))
                fail("coil ring: add_write: " + ec.message());
        if (auto ec = ring.add_fsync(s.file.fd(), coil::io::fsync_mode::data, s.group))
            fail("coil ring: add_fsync: " + ec.message());
        auto waited = ring.wait(s.group + 1);
        if (!waited)
            fail("coil ring: wait: " + waited.error().message());
        if (ring.reap_into(want) != want.size())
            fail("coil ring: reaped fewer completions than the chain has ops");
        for (const coil::io::completion& c : want)
            expect(c.result, c.user_data == s.group ? 0 : record_size, "coil ring",
                   c.user_data == s.group ? "fdatasync" : "write");
        ops += s.group;
    }
    return ops;
}

std::uint64_t raw_append(bench::raw_ring& raw, const log_setup& s, bench::run_clock& clock)
{
    s.file.truncate();
    io_uring* ring = raw.get();
    std::uint64_t offset = 0;
    std::uint64_t ops = 0;
    while (clock.running()) {
        group_timer timer(clock);
        for (unsigned i = 0; i <= s.group; ++i) {
            io_uring_sqe* sqe = io_uring_get_sqe(ring);
            if (sqe == nullptr)
                fail("raw liburing: the SQ is full");
            if (i < s.group) {
                io_uring_prep_write(sqe, s.file.fd(), s.record.data(), record_size, offset);
                sqe->flags |= IOSQE_IO_LINK;
                offset += record_size;
            } else {
                io_uring_prep_fsync(sqe, s.file.fd(), IORING_FSYNC_DATASYNC);
            }
            io_uring_sqe_set_data64(sqe, i);
        }
        raw_complete(ring, s.group + 1, [&](std::uint64_t user_data) {
            const bool sync = user_data == s.group;
            return wanted_result{sync ? 0 : record_size, sync ? "fdatasync" : "write"};
        });
        ops += s.group;
    }
    return ops;
}

std::uint64_t blocking_append(const log_setup& s, bench::run_clock& clock)
{
    s.file.truncate();
    std::uint64_t offset = 0;
    std::uint64_t ops = 0;
    while (clock.running()) {
        group_timer timer(clock);
        for (unsigned i = 0; i < s.group; ++i, offset += record_size)
            expect(::pwrite(s.file.fd(), s.record.data(), record_size, static_cast<off_t>(offset)),
                   record_size, "pwrite", "pwrite");
        expect(::fdatasync(s.file.fd()), 0, "pwrite", "fdatasync");
        ops += s.group;
    }
    return ops;
}

// --- sequential copy ---------------------------------------------------------------------

struct copy_setup {
    const scratch_file& source;
    const scratch_file& target;
    std::uint64_t size;       // of the source, a multiple of chunk_size
    std::span<std::byte> buffer; // chunk_size bytes
};

// Each copies the source chunk by chunk from where the last call stopped, wrapping around:
// every op is one 1 MiB chunk read and written.
coil::task<void> coil_copy_loop(const copy_setup& s, bench::run_clock& clock, std::uint64_t& ops)
{
    std::uint64_t offset = 0;
    while (clock.running()) {
        group_timer timer(clock);
        coil::result<std::size_t> n = co_await coil::read(s.source.fd(), s.buffer, offset);
        if (!n || *n != chunk_size)
            fail(fmt::format("coil: a 1 MiB read gave {}", n ? std::to_string(*n) : n.error().message()));
        coil::result<std::size_t> w = co_await coil::write(s.target.fd(), s.buffer, offset);
        if (!w || *w != chunk_size)
            fail(fmt::format("coil: a 1 MiB write gave {}", w ? std::to_string(*w) : w.error().message()));
        offset = (offset + chunk_size) % s.size;
        ++ops;
    }
}

std::uint64_t coil_copy(coil::executor& ex, const copy_setup& s, bench::run_clock& clock)
{
    std::uint64_t ops = 0;
    ex.run(coil_copy_loop(s, clock, ops));
    return ops;
}

// Waits for a chunk's `count` completions (user_data 0: the read, 1: the write).
void raw_wait_chunks(io_uring* ring, unsigned count)
{
    raw_complete(ring, count, [](std::uint64_t user_data) {
        return wanted_result{chunk_size, user_data == 0 ? "read" : "write"};
    });
}

// Runs `copy_chunk(offset)` (one 1 MiB chunk at `offset` of both files) while the clock runs,
// wrapping around the source; returns the chunks copied.
template <typename CopyChunk>
std::uint64_t chunk_loop(const copy_setup& s, bench::run_clock& clock, CopyChunk copy_chunk)
{
    std::uint64_t offset = 0;
    std::uint64_t ops = 0;
    while (clock.running()) {
        group_timer timer(clock);
        copy_chunk(offset);
        offset = (offset + chunk_size) % s.size;
        ++ops;
    }
    return ops;
}

// linked: the read linked to the write of the same buffer, one submission per chunk; else the
// read, a wait, the write, a wait, as coil's awaits do.
std::uint64_t raw_copy(bench::raw_ring& raw, bool linked, const copy_setup& s,
                       bench::run_clock& clock)
{
    io_uring* ring = raw.get();
    return chunk_loop(s, clock, [&](std::uint64_t offset) {
        io_uring_sqe* read = io_uring_get_sqe(ring);
        if (read == nullptr)
            fail("raw liburing: the SQ is full");
        io_uring_prep_read(read, s.source.fd(), s.buffer.data(), chunk_size, offset);
        io_uring_sqe_set_data64(read, 0);
        if (linked)
            read->flags |= IOSQE_IO_LINK;
        else
            raw_wait_chunks(ring, 1);
        io_uring_sqe* write = io_uring_get_sqe(ring);
        if (write == nullptr)
            fail("raw liburing: the SQ is full");
        io_uring_prep_write(write, s.target.fd(), s.buffer.data(), chunk_size, offset);
        io_uring_sqe_set_data64(write, 1);
        raw_wait_chunks(ring, linked ? 2 : 1);
    });
}

std::uint64_t blocking_copy(const copy_setup& s, bench::run_clock& clock)
{
    return chunk_loop(s, clock, [&](std::uint64_t offset) {
        const auto at = static_cast<off_t>(offset);
        expect(::pread(s.source.fd(), s.buffer.data(), chunk_size, at), chunk_size,
               "read+write", "pread");
        expect(::pwrite(s.target.fd(), s.buffer.data(), chunk_size, at), chunk_size,
               "read+write", "pwrite");
    });
}

std::uint64_t kernel_copy(const copy_setup& s, bench::run_clock& clock)
{
    return chunk_loop(s, clock, [&](std::uint64_t offset) {
        auto in = static_cast<off_t>(offset);
        auto out = static_cast<off_t>(offset);
        expect(::copy_file_range(s.source.fd(), &in, s.target.fd(), &out, chunk_size, 0),
               chunk_size, "copy_file_range", "copy_file_range");
    });
}

// cp(1) copying the whole source to `target`, again and again until the budget is spent: a
// program a user would run instead, timed by this loop (a self-timed system; the harness
// charges it the CPU time of the reaped cp processes). cp truncates its target first, so it
// gets a file of its own: the other systems overwrite allocated blocks of theirs.
bench::self_timed_run cp_copies(const std::string& cp_path, const copy_setup& s,
                                const scratch_file& cp_target, std::chrono::nanoseconds budget)
{
    const auto start = steady::now();
    bench::self_timed_run run;
    do {
        std::string source = s.source.path();
        std::string target = cp_target.path();
        char cp[] = "cp";
        char* argv[] = {cp, source.data(), target.data(), nullptr};
        pid_t pid = 0;
        if (int error = ::posix_spawn(&pid, cp_path.c_str(), nullptr, nullptr, argv, environ))
            fail("cannot start cp: " + errno_text(error));
        int status = 0;
        if (::waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            fail("cp failed");
        run.operations += static_cast<double>(s.size / chunk_size);
    } while (steady::now() - start < budget);
    run.seconds = std::chrono::duration<double>(steady::now() - start).count();
    return run;
}

// Fills the copy source with a non-zero pattern (a hole would make reads cheaper) and
// flushes it once, so the copy rows read from the page cache and never wait for the
// source's writeback.
void fill_source(const scratch_file& f, std::uint64_t size)
{
    std::vector<std::byte> chunk(chunk_size);
    bench::splitmix64 rng(0x636f696c'636f7079); // "coilcopy"
    for (std::size_t i = 0; i < chunk.size(); ++i)
        chunk[i] = static_cast<std::byte>((rng.next() & 0xfe) | 1);
    for (std::uint64_t at = 0; at < size; at += chunk_size)
        expect(::pwrite(f.fd(), chunk.data(), chunk.size(), static_cast<off_t>(at)), chunk_size,
               "setup", "pwrite");
    expect(::fsync(f.fd()), 0, "setup", "fsync");
}

} // namespace

int main(int argc, char** argv)
{
    bench::program prog{
        "bench_storage",
        "a durable log (4 KiB appends + fdatasync, each or per 16) and a 1 MiB-chunk file copy: "
        "coil, coil's ring with linked SQEs, raw liburing, blocking calls, copy_file_range, cp",
        "blocking system calls",
        {{"data-dir", "where the log and copy files go, created and removed by this program "
                      "(default $COIL_BENCH_DIR, else " COIL_BENCH_DATA_DIR ")",
          ""}},
    };
    return bench::run_program(argc, argv, std::move(prog), [](bench::harness& h) {
        const std::string dir = bench::data_directory(h, COIL_BENCH_DATA_DIR);
        coil::executor ex(coil::executor_options{.entries = ring_entries});
        coil::io::ring ring(ring_entries);
        bench::raw_ring raw(ring_entries, {IORING_SETUP_SUBMIT_ALL, 0U});
        fmt::print("  files     in {} (removed at the end)\n", dir);
        fmt::print("  coil      co_await of each op in order (the awaitables cannot link SQEs); "
                   "\"coil ring, linked\": coil::io::ring with sqe_flags::link\n");

        std::vector<std::byte> record(record_size);
        for (std::size_t i = 0; i < record.size(); ++i)
            record[i] = static_cast<std::byte>('a' + i % 26);

        for (unsigned group : {1U, max_group}) {
            const std::string row =
                group == 1 ? "append 4k + fdatasync, group 1" : "append 4k + fdatasync, group 16";
            if (!h.selected(row))
                continue;
            scratch_file log(dir, "coil-bench-log.dat");
            const log_setup s{log, record, group};
            h.compare_systems(
                row,
                {{"coil", [&](bench::run_clock& c) { return coil_append(ex, s, c); }},
                 {"coil ring, linked", [&](bench::run_clock& c) { return coil_ring_append(ring, s, c); }},
                 {"raw liburing, linked", [&](bench::run_clock& c) { return raw_append(raw, s, c); }},
                 {"pwrite+fdatasync", [&](bench::run_clock& c) { return blocking_append(s, c); }}},
                "pwrite+fdatasync");
        }

        const std::uint64_t copy_size = h.opts().quick ? 32 * chunk_size : 256 * chunk_size;
        const std::string copy_row = fmt::format("copy 1 MiB chunks ({} MiB file)", copy_size >> 20);
        if (h.selected(copy_row)) {
            scratch_file source(dir, "coil-bench-copy-source.dat");
            scratch_file target(dir, "coil-bench-copy-target.dat");
            scratch_file cp_target(dir, "coil-bench-copy-cp-target.dat");
            fill_source(source, copy_size);
            std::vector<std::byte> buffer(chunk_size);
            const copy_setup s{source, target, copy_size, buffer};
            std::vector<bench::system> systems{
                {"coil", [&](bench::run_clock& c) { return coil_copy(ex, s, c); }},
                {"raw liburing, in order", [&](bench::run_clock& c) { return raw_copy(raw, false, s, c); }},
                {"raw liburing, linked", [&](bench::run_clock& c) { return raw_copy(raw, true, s, c); }},
                {"read+write loop", [&](bench::run_clock& c) { return blocking_copy(s, c); }},
                {"copy_file_range", [&](bench::run_clock& c) { return kernel_copy(s, c); }}};
            const std::optional<std::string> cp_path = bench::find_program("cp");
            if (cp_path)
                systems.push_back({"cp (coreutils)", {}, [&](std::chrono::nanoseconds budget) {
                                       return cp_copies(*cp_path, s, cp_target, budget);
                                   }});
            else
                systems.push_back({.name = "cp (coreutils)",
                                   .skipped = "cp not found on PATH (apt-get install coreutils)"});
            h.compare_systems(copy_row, systems, "read+write loop");
            h.note(fmt::format("{}: one op is one 1 MiB chunk read and written, so ops/s is "
                               "MiB/s, p50/p99 are per chunk; the target file is not synced (page-cache copy)",
                               copy_row));
        }
        h.note("append rows: one op is one 4 KiB record made durable (group 1: each followed by "
               "fdatasync; group 16: 16 writes, then one fdatasync); p50/p99 are per group; each "
               "run starts with an empty log");
    });
}
