// SPDX-License-Identifier: MIT
/// @file
/// `detail::op_base`: the op record the executor works with while an op is pending. It lives
/// inside an awaiter (`operation<Op>`, `stream<Op>`), in the awaiting coroutine's frame.
#pragma once

#include <coil/io/completion.hpp>
#include <coil/io/result.hpp>
#include <coil/io/ring.hpp>
#include <coil/runtime/detail/list.hpp>
#include <coil/runtime/detail/resumption.hpp>
#include <coil/runtime/detail/stop_scope.hpp>
#include <coil/runtime/detail/timer_heap.hpp>

#include <cstdint>
#include <system_error>

namespace coil {

class executor;

namespace detail {

/// Where an op record is in its life.
enum class op_state : std::uint8_t {
    idle,      ///< not started, or its result was taken
    waiting,   ///< started, waiting for room in the submission queue (never reached the kernel)
    in_flight, ///< its SQE is in the ring; its final completion has not been reaped
    done,      ///< its final completion was reaped (or it ended without reaching the kernel)
};

struct waiting_tag;

/// The op record. Every field is initialised: an awaiter is built, awaited and destroyed like
/// any object, with no invariant held by `assert` alone.
///
/// The executor holds a record (in its slot table, its waiting list, a stop scope's list, its
/// timer heap, its ready queue) only through links the record owns; the awaiter's destructor
/// gives each up (`executor::abandon` for the slot: cancel, then wait for the final completion).
struct op_base : cancellable, link<waiting_tag>, timer_entry {
    /// Queues the op's SQE on `ring` tagged with `user_data` (the general path: after waiting
    /// for SQ room, or to re-arm a stream).
    using prepare_fn = std::error_code (*)(op_base&, io::ring&, std::uint64_t user_data) noexcept;
    /// A multishot op's handler, called for every completion (final or not) with the record
    /// already updated (`state` is `done` for the final one). Returns whether the awaiting
    /// coroutine must be resumed.
    using completion_fn = bool (*)(op_base&, const io::completion&) noexcept;

    op_base() noexcept = default;
    op_base(const op_base&) = delete;
    op_base& operator=(const op_base&) = delete;

    executor* owner = nullptr;      ///< set when started
    stop_scope* scope = nullptr;    ///< the awaiting coroutine's scope, or null
    resumption wake;                ///< the awaiting coroutine
    // The timer_entry base is armed while a `with_timeout` deadline runs.
    prepare_fn prepare = nullptr;
    completion_fn on_completion = nullptr; ///< null: single-shot (result stored, done at final)
    io::completion last{};          ///< single-shot: its result CQE (not a SEND_ZC notification)
    /// Why it ended without reaching the kernel, if it did (a stored error: resetting it costs
    /// two stores, where an empty std::error_code asks for the system category).
    io::detail::stored_error setup_error;
    std::uint32_t slot = 0;         ///< index in the executor's slot table, while in flight
    op_state state = op_state::idle;
    bool cancel_requested = false;  ///< an ASYNC_CANCEL was asked for (maybe not yet submitted)
    bool timed_out = false;         ///< its deadline fired before it completed
    /// A multishot op (a stream's): a cancel that finds nothing (-ENOENT) may have fallen
    /// between two of its completions, and is made again while it stays in flight. A single-shot
    /// op that a cancel misses is finishing on its own (its completion is on the way, or it
    /// runs where the kernel cannot stop it): cancelling it again would only repeat the miss,
    /// once per loop turn, until it ends.
    bool multishot = false;

    /// `IORING_CQE_F_NOTIF`: a zero-copy send's notification, which follows its result.
    static constexpr std::uint32_t notif_flag = 1U << 3;
};

} // namespace detail
} // namespace coil
