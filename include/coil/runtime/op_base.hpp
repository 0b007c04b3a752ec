// SPDX-License-Identifier: MIT
/// @file
/// `detail::op_base`: the op record the executor keeps in its slot table while an op is in
/// flight. It lives inside an `operation<Op>` awaiter, in the awaiting coroutine's frame.
#pragma once

#include <coil/io/ring.hpp>

#include <coroutine>
#include <cstdint>
#include <stop_token>
#include <system_error>

namespace coil {

class executor;

namespace detail {

/// Where an op record is in its life. The two states whose op the executor still holds
/// compare greater than `done`.
enum class op_state : std::uint8_t {
    idle,      ///< not yet awaited
    done,      ///< every completion reaped (or it never needed the kernel)
    waiting,   ///< awaited, queued in the executor until the CQ has room
    in_flight, ///< handed to the ring; `pending` completions still to come
};

/// The op record the executor works with. Lives inside an `operation<Op>`.
///
/// An op record is built for every awaited op, so the constructor writes only its state
/// and flags (one word). Every other field is written before it is read: `waiter`, `owner`
/// and `stop_token` when the op is awaited, and `deadline` and `timeout_result` if it has a
/// deadline; `prepare` when it takes the executor's general path; `slot` and `pending` when
/// it goes in flight; `next` when it queues; `result` before the op is done, unless it failed
/// to set up (`setup_failed`, then `setup_value` and `setup_category`).
struct op_base {
    using prepare_fn = std::error_code (*)(op_base&, io::ring&, std::uint64_t user_data,
                                           io::sqe_flags flags) noexcept;

    op_base() noexcept {}
    op_base(const op_base&) = delete;
    op_base& operator=(const op_base&) = delete;

    /// Flag bits: what makes an op leave the common path.
    static constexpr std::uint8_t has_deadline = 1; ///< `deadline` is set (with_timeout)
    static constexpr std::uint8_t setup_failed = 2; ///< never reached the kernel: setup_error()

    /// Records why the op never reached the kernel; it is then done.
    void fail_setup(std::error_code e) noexcept
    {
        setup_value = e.value();
        setup_category = &e.category();
        flags |= setup_failed;
        state = op_state::done;
    }
    std::error_code setup_error() const noexcept { return {setup_value, *setup_category}; }
    /// Whether the op has a deadline (then `deadline` is set).
    bool timed() const noexcept { return (flags & has_deadline) != 0; }

    // The three fields written when the op is awaited are kept apart: stored side by side,
    // GCC merges them into vector stores that cost more instructions than they save.
    union {
        std::coroutine_handle<> waiter; // resumed when the op is done; null once abandoned
    };
    const io::timespec64* deadline; // the linked timeout (in the awaiter), only if timed()
    executor* owner;
    prepare_fn prepare;             // fills the SQE, for the executor's general path
    // The awaiting coroutine's stop token (owned by it or an ancestor, which outlive the op),
    // or null. When a stop source is triggered the executor cancels every pending op whose
    // token reports stop_requested(): no callback is registered per op.
    const std::stop_token* stop_token;
    op_base* next;                  // link in the executor's waiting FIFO, when queued
    std::int32_t result;            // the op's own CQE result
    std::int32_t timeout_result;    // the linked timeout's CQE result
    std::uint32_t slot;             // index in the executor's slot table, in flight
    // One word, written whole by the constructor.
    op_state state = op_state::idle;
    std::uint8_t pending = 0;       // CQEs still to come (1, or 2 with a deadline), in flight
    std::uint8_t flags = 0;
    bool cancel_requested = false;  // a cancel was asked for (maybe not yet submitted)
    int setup_value;
    const std::error_category* setup_category;
};

} // namespace detail
} // namespace coil
