// SPDX-License-Identifier: MIT
// The raw liburing baseline shared by the benchmark programs.

#include "raw_liburing.hpp"

#include "bench_data.hpp"

#include <fmt/core.h>

#include <sys/uio.h>

#include <cerrno>
#include <chrono>
#include <string>
#include <system_error>
#include <vector>

namespace coil::bench {

raw_ring::raw_ring(unsigned entries, std::initializer_list<unsigned> flag_sets)
{
    int ret = -EINVAL;
    unsigned tried = 0;
    for (unsigned flags : flag_sets) {
        io_uring_params params{};
        params.flags = flags;
        tried = flags;
        ret = io_uring_queue_init_params(entries, &ring_, &params);
        if (ret != -EINVAL)
            break;
    }
    if (ret < 0)
        fail(fmt::format("raw liburing: io_uring_queue_init_params (flags {:#x}): {}", tried,
                         std::generic_category().message(-ret)));
    registered_fd_ = io_uring_register_ring_fd(&ring_) == 1;
}

raw_ring::raw_ring(unsigned entries, io_uring_params params)
{
    if (int ret = io_uring_queue_init_params(entries, &ring_, &params); ret < 0)
        fail(fmt::format("raw liburing: io_uring_queue_init_params (flags {:#x}): {}",
                         params.flags, std::generic_category().message(-ret)));
    registered_fd_ = io_uring_register_ring_fd(&ring_) == 1;
}

raw_ring::~raw_ring() { io_uring_queue_exit(&ring_); }

std::uint64_t raw_nops(raw_ring& raw, unsigned batch, run_clock& clock)
{
    io_uring* ring = raw.get();
    std::uint64_t ops = 0;
    while (clock.running()) {
        for (unsigned i = 0; i < batch; ++i) {
            io_uring_sqe* sqe = io_uring_get_sqe(ring);
            if (sqe == nullptr)
                fail("raw liburing: the SQ is full");
            io_uring_prep_nop(sqe);
            io_uring_sqe_set_data64(sqe, i);
        }
        int ret = io_uring_submit_and_wait(ring, batch);
        if (ret < 0)
            fail("raw liburing: io_uring_submit_and_wait: " + std::generic_category().message(-ret));
        unsigned head = 0;
        unsigned n = 0;
        io_uring_cqe* cqe = nullptr;
        io_uring_for_each_cqe(ring, head, cqe)
        {
            if (cqe->res != 0)
                fail(fmt::format("raw liburing: a NOP completed with {}", cqe->res));
            ++n;
        }
        io_uring_cq_advance(ring, n);
        if (n != batch)
            fail(fmt::format("raw liburing: waited for {} NOPs but reaped {}", batch, n));
        ops += n;
    }
    return ops;
}

std::uint64_t raw_reads(raw_ring& raw, int fd, std::uint64_t file_size, unsigned depth,
                        std::uint64_t seed, std::span<std::byte> buffers, raw_read_mode mode,
                        run_clock& clock)
{
    constexpr std::size_t read_size = 4096;
    io_uring* ring = raw.get();
    const bool fixed = mode == raw_read_mode::fixed;
    if (fixed) {
        std::vector<iovec> iovecs(depth);
        for (unsigned i = 0; i < depth; ++i)
            iovecs[i] = iovec{buffers.data() + i * read_size, read_size};
        if (int ret = io_uring_register_buffers(ring, iovecs.data(), depth); ret < 0)
            fail("raw liburing: io_uring_register_buffers: " + std::generic_category().message(-ret));
        if (int ret = io_uring_register_files(ring, &fd, 1); ret < 0)
            fail("raw liburing: io_uring_register_files: " + std::generic_category().message(-ret));
    }
    std::vector<splitmix64> rngs;
    for (unsigned i = 0; i < depth; ++i)
        rngs.emplace_back(seed + i);
    std::vector<std::uint64_t> offsets(depth);
    std::vector<std::chrono::steady_clock::time_point> started(depth);
    std::vector<bool> timed(depth, false);
    auto queue = [&](unsigned slot) {
        io_uring_sqe* sqe = io_uring_get_sqe(ring);
        if (sqe == nullptr)
            fail("raw liburing: the SQ is full");
        offsets[slot] = random_page_offset(rngs[slot], file_size);
        std::byte* buffer = buffers.data() + slot * read_size;
        if (fixed) {
            io_uring_prep_read_fixed(sqe, 0, buffer, read_size, offsets[slot],
                                     static_cast<int>(slot));
            sqe->flags |= IOSQE_FIXED_FILE;
        } else {
            io_uring_prep_read(sqe, fd, buffer, read_size, offsets[slot]);
        }
        io_uring_sqe_set_data64(sqe, slot);
        timed[slot] = clock.sample_latency();
        if (timed[slot])
            started[slot] = std::chrono::steady_clock::now();
    };
    for (unsigned slot = 0; slot < depth; ++slot)
        queue(slot);
    std::uint64_t ops = 0;
    unsigned in_flight = depth;
    bool refill = true;
    const bool sqpoll = (ring->flags & IORING_SETUP_SQPOLL) != 0;
    while (in_flight != 0) {
        refill = refill && clock.running();
        int ret = sqpoll ? io_uring_submit(ring) : io_uring_submit_and_wait(ring, 1);
        if (ret < 0 && ret != -EINTR)
            fail("raw liburing: io_uring_submit_and_wait: " + std::generic_category().message(-ret));
        if (sqpoll)
            while (io_uring_cq_ready(ring) == 0) {
#if defined(__x86_64__) || defined(__i386__)
                __builtin_ia32_pause();
#endif
            }
        unsigned head = 0;
        unsigned n = 0;
        io_uring_cqe* cqe = nullptr;
        io_uring_for_each_cqe(ring, head, cqe)
        {
            const auto slot = static_cast<unsigned>(io_uring_cqe_get_data64(cqe));
            if (cqe->res != static_cast<int>(read_size))
                fail(fmt::format("raw liburing: a {}-byte read at {} gave {}", read_size,
                                 offsets[slot], cqe->res));
            if (timed[slot])
                clock.record_latency(std::chrono::steady_clock::now() - started[slot]);
            if (refill)
                queue(slot);
            else
                --in_flight;
            ++n;
        }
        io_uring_cq_advance(ring, n);
        ops += n;
    }
    if (fixed) {
        io_uring_unregister_files(ring);
        io_uring_unregister_buffers(ring);
    }
    return ops;
}

} // namespace coil::bench
