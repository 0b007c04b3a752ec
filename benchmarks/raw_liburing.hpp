// SPDX-License-Identifier: MIT
/// @file
/// The benchmarks' baseline: a plain liburing ring, and the raw NOP batch loop both benchmark
/// programs compare coil with.
#pragma once

#include "harness.hpp"

#include <liburing.h>

#include <cstdint>
#include <initializer_list>

namespace coil::bench {

/// A liburing ring set up the way coil sets up its own, so that the kernel does the same work
/// for both sides and a ratio measures user-space code alone. The ring is created with the
/// first of `flag_sets` the kernel accepts (coil drops unknown flags in the same order), and
/// its fd is registered with the ring where the kernel can (Linux 5.18), as coil does.
class raw_ring {
public:
    raw_ring(unsigned entries, std::initializer_list<unsigned> flag_sets);
    ~raw_ring();
    raw_ring(const raw_ring&) = delete;
    raw_ring& operator=(const raw_ring&) = delete;

    io_uring* get() noexcept { return &ring_; }
    bool registered_fd() const noexcept { return registered_fd_; }

private:
    io_uring ring_{};
    bool registered_fd_ = false;
};

/// One iteration: queue `batch` NOPs, one io_uring_submit_and_wait for all of them, reap them
/// with io_uring_for_each_cqe. Returns the NOPs completed; fails on any unexpected result.
std::uint64_t raw_nops(raw_ring& raw, unsigned batch, run_clock& clock);

} // namespace coil::bench
