// SPDX-License-Identifier: MIT
// The raw liburing baseline shared by bench_ring and bench_runtime.

#include "raw_liburing.hpp"

#include <fmt/core.h>

#include <cerrno>
#include <string>
#include <system_error>

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

} // namespace coil::bench
