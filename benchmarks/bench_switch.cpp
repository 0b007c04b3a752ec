// SPDX-License-Identifier: MIT
// Round trips through the scheduler: coil::yield() beside Boost.Asio's post (a task switch
// with no I/O), and an awaited NOP beside raw liburing's (a trip through the ring); then heap
// allocations per awaited op, counted by the replaced global operator new below.
//
// The rows are reported without a target: they show what one suspension costs, which a real
// workload pays once per op. The allocation counts must read 0 for coil (the design rule "no
// heap allocation per I/O op in steady state"); the program fails if one does not, so the
// benchmark-smoke test checks the rule on every `meson test`.

#include "bench_data.hpp"
#include "harness.hpp"
#include "raw_liburing.hpp"
#ifdef COIL_BENCH_ASIO
#include "bench_switch_asio.hpp"
#endif

#include <coil/coil.hpp>

#include <fmt/core.h>

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <string>
#include <system_error>
#include <vector>

// --- counting allocator ------------------------------------------------------------------------
// Every global operator new of this program counts itself. A relaxed atomic is enough: the
// count is read on the thread that allocated, or after the threads that did were joined.

namespace {

std::atomic<std::uint64_t> allocation_counter{0};

void* counted_allocation(std::size_t size)
{
    allocation_counter.fetch_add(1, std::memory_order_relaxed);
    if (void* p = std::malloc(size == 0 ? 1 : size))
        return p;
    throw std::bad_alloc();
}

void* counted_aligned_allocation(std::size_t size, std::align_val_t align)
{
    allocation_counter.fetch_add(1, std::memory_order_relaxed);
    const auto alignment = static_cast<std::size_t>(align);
    // aligned_alloc wants a size that is a multiple of the alignment.
    const std::size_t rounded = (size + alignment - 1) / alignment * alignment;
    if (void* p = std::aligned_alloc(alignment, rounded == 0 ? alignment : rounded))
        return p;
    throw std::bad_alloc();
}

std::uint64_t allocations() { return allocation_counter.load(std::memory_order_relaxed); }

// Where the self-check's allocation goes: a volatile store, so the compiler cannot elide the
// new/delete pair and the check sees the counter move.
char* volatile check_sink = nullptr;

// A count of 0 proves something only if the counter counts: fail when one allocation through
// the replaced operator new is not seen.
void check_counter()
{
    const std::uint64_t before = allocations();
    check_sink = new char[64];
    delete[] check_sink;
    if (allocations() != before + 1)
        coil::bench::fail("the counting operator new did not count an allocation; the "
                          "allocation figures would mean nothing");
}

} // namespace

void* operator new(std::size_t size) { return counted_allocation(size); }
void* operator new[](std::size_t size) { return counted_allocation(size); }
void* operator new(std::size_t size, std::align_val_t align)
{
    return counted_aligned_allocation(size, align);
}
void* operator new[](std::size_t size, std::align_val_t align)
{
    return counted_aligned_allocation(size, align);
}
void* operator new(std::size_t size, const std::nothrow_t&) noexcept
{
    try {
        return counted_allocation(size);
    } catch (const std::bad_alloc&) {
        return nullptr;
    }
}
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept
{
    try {
        return counted_allocation(size);
    } catch (const std::bad_alloc&) {
        return nullptr;
    }
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

namespace {

namespace bench = coil::bench;
using bench::fail;

constexpr unsigned ring_entries = 256;
constexpr unsigned warm_up_ops = 1000;
constexpr unsigned counted_ops = 20'000;
constexpr std::size_t read_size = 4096;
constexpr std::uint64_t read_file_bytes = 1U << 20;

// --- round trips -------------------------------------------------------------------------------

enum class trip { yield, nop };

coil::task<void> trip_loop(trip kind, bench::run_clock& clock, std::uint64_t& ops)
{
    while (clock.running()) {
        if (kind == trip::yield) {
            co_await coil::yield();
        } else {
            coil::result<void> done = co_await coil::nop();
            if (!done)
                fail("coil: a NOP failed: " + done.error().message());
        }
        ++ops;
    }
}

coil::task<void> trip_tasks(trip kind, unsigned tasks, bench::run_clock& clock, std::uint64_t& ops)
{
    std::vector<coil::task<void>> loops;
    for (unsigned i = 0; i < tasks; ++i)
        loops.push_back(trip_loop(kind, clock, ops));
    co_await coil::when_all(std::move(loops));
}

std::uint64_t coil_trips(coil::executor& ex, trip kind, unsigned tasks, bench::run_clock& clock)
{
    std::uint64_t ops = 0;
    ex.run(trip_tasks(kind, tasks, clock, ops));
    return ops;
}

// --- allocations per awaited op ------------------------------------------------------------------

enum class counted_op { nop, yield, read };

// Every task runs warm_up_ops, then counted_ops, then warm_up_ops again; task 0 reads the
// counter when it starts and ends its counted ops. Tasks take turns op by op, so in that
// window every task is in steady state: the frames, the ring and the queues exist already.
struct allocation_window {
    std::uint64_t before = 0;
    std::uint64_t after = 0;
};

coil::task<void> counted_loop(counted_op kind, int fd, unsigned index, allocation_window& window)
{
    std::array<std::byte, read_size> buffer{};
    for (unsigned i = 0; i < 2 * warm_up_ops + counted_ops; ++i) {
        if (index == 0 && i == warm_up_ops)
            window.before = allocations();
        if (index == 0 && i == warm_up_ops + counted_ops)
            window.after = allocations();
        if (kind == counted_op::yield) {
            co_await coil::yield();
        } else if (kind == counted_op::nop) {
            coil::result<void> done = co_await coil::nop();
            if (!done)
                fail("coil: a NOP failed: " + done.error().message());
        } else {
            const std::uint64_t offset = (i * 7919ULL * read_size) % read_file_bytes;
            coil::result<std::size_t> n = co_await coil::read(fd, buffer, offset);
            if (!n || *n != read_size)
                fail("coil: a 4 KiB read failed or came back short");
        }
    }
}

coil::task<void> counted_tasks(counted_op kind, int fd, unsigned tasks, allocation_window& window)
{
    std::vector<coil::task<void>> loops;
    for (unsigned i = 0; i < tasks; ++i)
        loops.push_back(counted_loop(kind, fd, i, window));
    co_await coil::when_all(std::move(loops));
}

// Heap allocations per awaited op, the counted window's ops being those of every task.
double coil_allocations_per_op(coil::executor& ex, counted_op kind, int fd, unsigned tasks)
{
    allocation_window window;
    ex.run(counted_tasks(kind, fd, tasks, window));
    return static_cast<double>(window.after - window.before) / (double(counted_ops) * tasks);
}

// A small page-cached file for the counted reads, removed when the program ends.
class small_file : public bench::scratch_file {
public:
    explicit small_file(const std::string& dir) : scratch_file(dir, "coil-bench-switch-read.dat")
    {
        std::vector<char> data(read_file_bytes, 'x');
        if (::pwrite(fd(), data.data(), data.size(), 0) != static_cast<ssize_t>(data.size()))
            fail("cannot fill " + path());
    }
};

bench::system asio_post_system(unsigned tasks)
{
#ifdef COIL_BENCH_ASIO
    return {"Boost.Asio post", [tasks](bench::run_clock& c) {
                return bench::asio_peer::post_round_trips(tasks, c);
            }};
#else
    (void)tasks;
    return {"Boost.Asio post", {}, {}, COIL_BENCH_ASIO_MISSING};
#endif
}

} // namespace

int main(int argc, char** argv)
{
    bench::program prog{
        "bench_switch",
        "round trips through the scheduler: coil::yield() beside Boost.Asio's post, an awaited "
        "NOP beside raw liburing's; heap allocations per awaited op (must be 0 for coil)",
        "Boost.Asio post",
        {{"data-dir", "where the counted reads' 1 MiB file goes (default $COIL_BENCH_DIR, else " COIL_BENCH_DATA_DIR ")", ""}},
    };
    return bench::run_program(argc, argv, std::move(prog), [](bench::harness& h) {
        coil::executor ex(coil::executor_options{.entries = ring_entries});
        bench::raw_ring raw(ring_entries,
                            {IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER |
                                 IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
                             IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER,
                             IORING_SETUP_SUBMIT_ALL, 0U});

        for (unsigned tasks : {1U, 128U}) {
            h.compare_systems(
                fmt::format("round trip, {} task{}", tasks, tasks == 1 ? "" : "s"),
                {{"coil yield", [&](bench::run_clock& c) { return coil_trips(ex, trip::yield, tasks, c); }},
                 asio_post_system(tasks),
                 {"coil nop", [&](bench::run_clock& c) { return coil_trips(ex, trip::nop, tasks, c); }},
                 {"raw liburing nop", [&](bench::run_clock& c) { return bench::raw_nops(raw, tasks, c); }}},
                "Boost.Asio post");
        }

        if (!h.selected("allocations"))
            return;
        check_counter();
        small_file file(bench::data_directory(h, COIL_BENCH_DATA_DIR));
        struct counted {
            const char* name;
            counted_op kind;
            unsigned tasks;
        };
        for (const counted& c : {counted{"awaited NOP, 1 task", counted_op::nop, 1},
                                 counted{"awaited NOP, 128 tasks", counted_op::nop, 128},
                                 counted{"awaited 4 KiB read, 1 task", counted_op::read, 1},
                                 counted{"awaited 4 KiB read, 32 tasks", counted_op::read, 32},
                                 counted{"yield, 1 task", counted_op::yield, 1}}) {
            const double per_op = coil_allocations_per_op(ex, c.kind, file.fd(), c.tasks);
            h.add_metric({fmt::format("heap allocations per op: {}", c.name), "coil", per_op,
                          "allocations/op"});
            if (per_op != 0)
                fail(fmt::format("coil allocated {} times per op ({}) in steady state; the "
                                 "design promises 0",
                                 per_op, c.name));
        }
#ifdef COIL_BENCH_ASIO
        h.add_metric({"heap allocations per op: post round trip, 1 coroutine", "Boost.Asio",
                      bench::asio_peer::allocations_per_post(counted_ops, allocations),
                      "allocations/op"});
#endif
    });
}
