// SPDX-License-Identifier: MIT
/// @file
/// bench_files' Boost.Asio peer, in a translation unit of its own (Asio's headers are not
/// -Wpedantic clean, and only this file is built with BOOST_ASIO_HAS_IO_URING).
#pragma once

#include "harness.hpp"

#include <cstddef>
#include <cstdint>
#include <span>

namespace coil::bench::asio_files {

/// Random 4 KiB reads of `path` from `depth` C++20 coroutines on one io_context with Asio's
/// io_uring backend, each with its own `random_access_file` (opened with `open_flags`, e.g.
/// O_DIRECT) and reading into `buffers[i * 4096, +4096)`; offsets as every read system draws
/// them (splitmix64(seed + i)). Samples latencies through `clock`; fails on a short read.
std::uint64_t reads(const char* path, int open_flags, std::uint64_t file_size, unsigned depth,
                    std::uint64_t seed, std::span<std::byte> buffers, run_clock& clock);

} // namespace coil::bench::asio_files
