// SPDX-License-Identifier: MIT
/// @file
/// The read systems bench_files measures and probe_reads runs alone (for profiles): page-aligned
/// read buffers, blocking pread loops, and coil's plain and fixed read loops on one executor.
#pragma once

#include "bench_data.hpp"
#include "harness.hpp"
#include "raw_liburing.hpp"

#include <coil/coil.hpp>

#include <fmt/core.h>

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

namespace coil::bench::reads {

inline constexpr unsigned ring_entries = 256;
inline constexpr std::size_t read_size = 4096;
inline constexpr unsigned max_depth = 128;
inline constexpr std::uint64_t read_seed = 0x636f696c'66696c65; // "coilfile"

inline std::string errno_text(int error) { return std::generic_category().message(error); }

using steady = std::chrono::steady_clock;

// Page-aligned memory for `max_depth` (or one per thread) 4 KiB buffers, shared by the systems
// (they run one after the other).
struct aligned_arena {
    explicit aligned_arena(std::size_t bytes)
        : memory(static_cast<std::byte*>(std::aligned_alloc(4096, bytes))), size(bytes)
    {
        if (memory == nullptr)
            fail("could not allocate the read buffers");
        std::fill_n(memory, size, std::byte{0});
    }
    ~aligned_arena() { std::free(memory); }
    aligned_arena(const aligned_arena&) = delete;
    aligned_arena& operator=(const aligned_arena&) = delete;

    std::span<std::byte> all() const noexcept { return {memory, size}; }
    std::span<std::byte> slot(unsigned i) const noexcept
    {
        return {memory + std::size_t{i} * read_size, read_size};
    }

    std::byte* memory;
    std::size_t size;
};

// Times one read in `clock`'s sampling rate: start() before, stop() after.
class latency_sample {
public:
    explicit latency_sample(run_clock& clock) noexcept
        : clock_(clock), timed_(clock.sample_latency())
    {
        if (timed_)
            start_ = steady::now();
    }
    void stop() noexcept
    {
        if (timed_)
            clock_.record_latency(steady::now() - start_);
    }

private:
    run_clock& clock_;
    bool timed_;
    steady::time_point start_{};
};

inline void check_read(const char* system, long got, std::uint64_t offset)
{
    if (got != static_cast<long>(read_size))
        fail(fmt::format("{}: a {}-byte read at {} gave {}", system, read_size, offset,
                         got < 0 ? errno_text(static_cast<int>(-got)) : std::to_string(got)));
}

// --- blocking pread --------------------------------------------------------------------------

inline std::uint64_t pread_loop(int fd, std::uint64_t file_size, std::uint64_t seed,
                         std::span<std::byte> buffer, run_clock* clock,
                         const std::atomic<bool>* stop)
{
    splitmix64 rng(seed);
    std::uint64_t ops = 0;
    for (;;) {
        if (clock != nullptr ? !clock->running() : stop->load(std::memory_order_relaxed))
            return ops;
        const std::uint64_t offset = random_page_offset(rng, file_size);
        std::optional<latency_sample> sample;
        if (clock != nullptr)
            sample.emplace(*clock);
        const ssize_t n = ::pread(fd, buffer.data(), read_size, static_cast<off_t>(offset));
        check_read("pread", n < 0 ? -errno : n, offset);
        if (sample)
            sample->stop();
        ++ops;
    }
}

// One blocking loop per thread: this thread runs one (and watches the clock), `threads - 1`
// others run until it is done.
inline std::uint64_t pread_threads(int fd, std::uint64_t file_size, unsigned threads,
                            const aligned_arena& arena, run_clock& clock)
{
    std::atomic<bool> stop{false};
    std::vector<std::uint64_t> counts(threads, 0);
    std::vector<std::thread> others;
    for (unsigned t = 1; t < threads; ++t)
        others.emplace_back([&, t] {
            counts[t] = pread_loop(fd, file_size, read_seed + t, arena.slot(t), nullptr, &stop);
        });
    counts[0] = pread_loop(fd, file_size, read_seed, arena.slot(0), &clock, nullptr);
    stop.store(true, std::memory_order_relaxed);
    for (std::thread& t : others)
        t.join();
    std::uint64_t total = 0;
    for (std::uint64_t c : counts)
        total += c;
    return total;
}

// --- coil --------------------------------------------------------------------------------------

// Plain reads: one coroutine per queue slot, each reading into its slot of the arena.
inline coil::task<void> coil_read_loop(int fd, std::uint64_t file_size, std::uint64_t seed,
                                std::span<std::byte> buffer, round_clock& rounds,
                                bool leader, std::uint64_t& ops)
{
    splitmix64 rng(seed);
    while (rounds.check(leader)) {
        const std::uint64_t offset = random_page_offset(rng, file_size);
        latency_sample sample(rounds.clock);
        coil::result<std::size_t> n = co_await coil::read(fd, buffer, offset);
        check_read("coil", n ? static_cast<long>(*n) : -n.error().value(), offset);
        sample.stop();
        ++ops;
    }
}

// Registered buffers through a registered file: each coroutine holds one lease.
inline coil::task<void> coil_fixed_loop(const coil::file& f, coil::fixed_buffer_pool& pool,
                                 std::uint64_t file_size, std::uint64_t seed,
                                 round_clock& rounds, bool leader, std::uint64_t& ops)
{
    coil::fixed_buffer buffer = pool.try_acquire();
    if (!buffer)
        fail("coil fixed: the pool has fewer buffers than the queue depth");
    splitmix64 rng(seed);
    while (rounds.check(leader)) {
        const std::uint64_t offset = random_page_offset(rng, file_size);
        latency_sample sample(rounds.clock);
        coil::result<std::size_t> n = co_await f.read_fixed_at(buffer, offset);
        check_read("coil fixed", n ? static_cast<long>(*n) : -n.error().value(), offset);
        sample.stop();
        ++ops;
    }
}

// --- SQPOLL -----------------------------------------------------------------------------------

// The CPU for an SQPOLL thread: the last one this process may run on, if it may run on two or
// more (the thread must not share a CPU with the loop that feeds it).
inline std::optional<unsigned> sqpoll_cpu()
{
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    if (::sched_getaffinity(0, sizeof allowed, &allowed) != 0 || CPU_COUNT(&allowed) < 2)
        return std::nullopt;
    for (int cpu = CPU_SETSIZE - 1; cpu >= 0; --cpu)
        if (CPU_ISSET(cpu, &allowed))
            return static_cast<unsigned>(cpu);
    return std::nullopt;
}

// Keeps the calling thread off `cpu` (its SQPOLL thread's) while it lives, then restores the
// thread's affinity.
class cpu_kept_free {
public:
    explicit cpu_kept_free(unsigned cpu) noexcept
    {
        CPU_ZERO(&saved_);
        if (::sched_getaffinity(0, sizeof saved_, &saved_) != 0)
            return;
        cpu_set_t others = saved_;
        CPU_CLR(static_cast<int>(cpu), &others);
        restore_ = CPU_COUNT(&others) != 0 && ::sched_setaffinity(0, sizeof others, &others) == 0;
    }
    ~cpu_kept_free()
    {
        if (restore_)
            static_cast<void>(::sched_setaffinity(0, sizeof saved_, &saved_));
    }
    cpu_kept_free(const cpu_kept_free&) = delete;
    cpu_kept_free& operator=(const cpu_kept_free&) = delete;

private:
    cpu_set_t saved_;
    bool restore_ = false;
};

// How long an idle SQPOLL thread of the read systems spins before it sleeps: short, so that
// the spinning after a run ends is not charged to the next system's CPU time.
inline constexpr std::chrono::milliseconds sqpoll_idle{1};

// The executor options of `coil sqpoll`: an SQPOLL ring whose thread runs on `cpu`, and an
// executor that spins on the completion queue before it sleeps.
inline coil::executor_options sqpoll_options(unsigned cpu)
{
    coil::executor_options options{.entries = ring_entries};
    options.ring.sqpoll = true;
    options.ring.sqpoll_idle = sqpoll_idle;
    options.ring.sqpoll_cpu = cpu;
    options.busy_poll = std::chrono::milliseconds(10);
    return options;
}

// The ring of `raw liburing sqpoll`: set up like the other raw rings, but for DEFER_TASKRUN
// (which SQPOLL excludes), with its thread on `cpu`.
inline io_uring_params sqpoll_raw_params(unsigned cpu)
{
    io_uring_params params{};
    params.flags = IORING_SETUP_SQPOLL | IORING_SETUP_SQ_AFF | IORING_SETUP_SUBMIT_ALL |
                   IORING_SETUP_SINGLE_ISSUER;
    params.sq_thread_cpu = cpu;
    params.sq_thread_idle = static_cast<unsigned>(sqpoll_idle.count());
    return params;
}

// The executor, its buffer pool and the data file in a registered slot, for the coil systems.
struct coil_side {
    coil_side() : coil_side(coil::executor_options{.entries = ring_entries}) {}
    explicit coil_side(const coil::executor_options& options) : ex(options) {}

    coil::executor ex;
    coil::fixed_buffer_pool pool{ex, max_depth, read_size};

    // Opens `path` with `flags` as a coil::file in a registered slot.
    coil::file open_registered(const std::string& path, int flags)
    {
        const int fd = ::open(path.c_str(), flags | O_CLOEXEC);
        if (fd < 0)
            fail(fmt::format("coil: open {}: {}", path, errno_text(errno)));
        coil::file f(fd);
        auto registration = [&]() -> coil::task<coil::result<void>> { co_return f.register_slot(); };
        coil::result<void> registered = ex.run(registration());
        if (!registered)
            fail("coil fixed: registering the file: " + registered.error().message());
        return f;
    }

    std::uint64_t plain(int fd, std::uint64_t file_size, unsigned depth,
                        const aligned_arena& arena, run_clock& clock)
    {
        std::uint64_t ops = 0;
        auto body = [&]() -> coil::task<void> {
            round_clock rounds{clock};
            std::vector<coil::task<void>> loops;
            for (unsigned i = 0; i < depth; ++i)
                loops.push_back(coil_read_loop(fd, file_size, read_seed + i, arena.slot(i),
                                               rounds, i == 0, ops));
            co_await coil::when_all(std::move(loops));
        };
        ex.run(body());
        return ops;
    }

    std::uint64_t fixed(const coil::file& f, std::uint64_t file_size, unsigned depth,
                        run_clock& clock)
    {
        std::uint64_t ops = 0;
        auto body = [&]() -> coil::task<void> {
            round_clock rounds{clock};
            std::vector<coil::task<void>> loops;
            for (unsigned i = 0; i < depth; ++i)
                loops.push_back(
                    coil_fixed_loop(f, pool, file_size, read_seed + i, rounds, i == 0, ops));
            co_await coil::when_all(std::move(loops));
        };
        ex.run(body());
        return ops;
    }
};

} // namespace coil::bench::reads
