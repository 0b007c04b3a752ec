// SPDX-License-Identifier: MIT
/// @file
/// The benchmarks' baseline: a plain liburing ring, and the raw NOP batch loop and random-read
/// loop the benchmark programs compare coil with.
#pragma once

#include "harness.hpp"

#include <liburing.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <initializer_list>

namespace coil::bench {

/// A liburing ring set up the way coil sets up its own, so that the kernel does the same work
/// for both sides and a ratio measures user-space code alone. The ring is created with the
/// first of `flag_sets` the kernel accepts (coil drops unknown flags in the same order), and
/// its fd is registered with the ring where the kernel can (Linux 5.18), as coil does.
class raw_ring {
public:
    raw_ring(unsigned entries, std::initializer_list<unsigned> flag_sets);
    /// A ring set up with exactly `params` (for SQPOLL: its flags, thread CPU and idle time).
    raw_ring(unsigned entries, io_uring_params params);
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

/// How `raw_reads` names its file and buffers.
enum class raw_read_mode {
    plain, ///< IORING_OP_READ on the descriptor
    fixed, ///< IORING_OP_READ_FIXED into registered buffers, on a registered file (slot 0)
};

/// Random 4 KiB reads with `depth` in flight, each slot refilled with its next read as it
/// completes (offsets from `splitmix64(seed + slot)`, as every system of the read rows draws
/// them). Slot i reads into `buffers[i * 4096, +4096)`; `buffers` holds `depth * 4096` bytes.
/// With `raw_read_mode::fixed` the file and the buffers are registered for the call and
/// unregistered after it. On an SQPOLL ring the loop hands its SQEs over and spins on the
/// completion queue instead of waiting in the kernel. Samples latencies through `clock`. Fails
/// on a short read.
std::uint64_t raw_reads(raw_ring& raw, int fd, std::uint64_t file_size, unsigned depth,
                        std::uint64_t seed, std::span<std::byte> buffers, raw_read_mode mode,
                        run_clock& clock);

} // namespace coil::bench
