// SPDX-License-Identifier: MIT
/// @file
/// `detail::op_base`: the op record the executor keeps in its slot table while an op is in
/// flight. It lives inside an `operation<Op>` awaiter, in the awaiting coroutine's frame.
#pragma once

#include <coil/io/result.hpp>
#include <coil/io/ring.hpp>

#include <coroutine>
#include <cstdint>
#include <stop_token>
#include <system_error>

namespace coil {

class executor;

namespace detail {

/// Where an op record is in its life.
enum class op_state : std::uint8_t {
    idle,      ///< not yet awaited
    waiting,   ///< awaited, queued in the executor until the CQ has room
    in_flight, ///< handed to the ring; `pending` completions still to come
    done,      ///< every completion reaped (or it never needed the kernel)
};

/// The op record the executor works with. Lives inside an `operation<Op>`.
struct op_base {
    using prepare_fn = std::error_code (*)(op_base&, io::ring&, std::uint64_t user_data,
                                           io::sqe_flags flags) noexcept;

    explicit op_base(prepare_fn p) noexcept : prepare(p) {}
    op_base(const op_base&) = delete;
    op_base& operator=(const op_base&) = delete;

    prepare_fn prepare;                       // fills the SQE
    std::coroutine_handle<> waiter;           // resumed when the op is done
    // Written before they are read (docs in the executor), so left uninitialised: an op record
    // is built for every awaited op.
    executor* owner;                          // set when awaited
    op_base* next;                            // link in the executor's waiting FIFO, when queued
    const io::timespec64* deadline = nullptr; // a linked timeout, if any (points into the awaiter)
    io::detail::stored_error setup_error;     // why the op never reached the kernel, if it did not
    std::int32_t result = 0;                  // the op's own CQE result
    std::int32_t timeout_result = 0;          // the linked timeout's CQE result
    std::uint32_t slot;                       // index in the executor's slot table, in flight
    std::uint8_t pending;                     // CQEs still to come (1, or 2 with a deadline), in flight
    op_state state = op_state::idle;
    bool cancel_requested = false;            // a cancel was asked for (maybe not yet submitted)
    // The awaiting coroutine's stop token (owned by it or an ancestor, which outlive the op),
    // or null. When a stop source is triggered the executor cancels every op whose token
    // reports stop_requested(): no callback is registered per op.
    const std::stop_token* stop_token = nullptr;
};

} // namespace detail
} // namespace coil
