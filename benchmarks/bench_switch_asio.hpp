// SPDX-License-Identifier: MIT
/// @file
/// bench_switch's Boost.Asio peer, compiled in a translation unit of its own (Asio's headers
/// are not -Wpedantic clean, so meson.build builds it at a lower warning level).
#pragma once

#include "harness.hpp"

#include <cstdint>

namespace coil::bench::asio_peer {

/// `coroutines` Asio coroutines on one `io_context(1)`, each looping `co_await
/// asio::post(executor, use_awaitable)` while `clock.running()`. Returns the posts completed.
std::uint64_t post_round_trips(unsigned coroutines, run_clock& clock);

/// Heap allocations during `posts` post round trips of one coroutine after a warm-up, counted
/// with `allocations()`, divided by `posts`.
double allocations_per_post(unsigned posts, std::uint64_t (*allocations)());

} // namespace coil::bench::asio_peer
