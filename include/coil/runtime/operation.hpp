// SPDX-License-Identifier: MIT
/// @file
/// `operation<Op>`: the one awaiting mechanism that makes every ring op `co_await`-able.
///
/// An op is a small value type with two duties: prepare its SQE and turn the kernel's result
/// into a `result<T>`. `operation<Op>` wraps it with the state the executor needs (the op
/// record) and lives in the awaiting coroutine's frame, so awaiting an op allocates nothing.
/// Once awaited it does not move: its address is what the executor's slot table points at.
#pragma once

#include <coil/io/result.hpp>
#include <coil/io/ring.hpp>
#include <coil/runtime/executor.hpp>
#include <coil/runtime/op_base.hpp>
#include <coil/runtime/task.hpp>

#include <cassert>
#include <cerrno>
#include <chrono>
#include <concepts>
#include <coroutine>
#include <cstdint>
#include <memory>
#include <stop_token>
#include <system_error>
#include <utility>

namespace coil {

/// What an op type provides: `prepare` queues its SQE on the ring with the given user_data and
/// flags; `complete` turns the kernel's result (`-errno` on failure) into a `result<T>`.
template <class Op>
concept ring_op = requires(Op& op, io::ring& r, std::uint64_t ud, io::sqe_flags f,
                           std::int32_t res) {
    { op.prepare(r, ud, f) } noexcept -> std::same_as<std::error_code>;
    op.complete(res);
};

/// An awaitable ring operation. `co_await` it to run the op; it yields `result<T>`.
///
/// - Lifetime: everything the op borrows (buffers, iovecs, paths) must stay valid until the
///   `co_await` completes. The kernel is never left holding memory of a destroyed awaiter:
///   destroying one whose op is still in flight cancels the op and waits for its completion.
/// - Cancellation: a stop request on the awaiting task's stop token makes the executor submit
///   `ASYNC_CANCEL` (at its next loop turn, whatever thread requested the stop); the coroutine
///   resumes only after the op's own completion arrives, with
///   `std::errc::operation_canceled` or, if the op won the race, its real result.
/// - `with_timeout(d)` adds a linked timeout: if the op is still running after `d`, it ends
///   with `std::errc::timed_out`.
template <ring_op Op>
class [[nodiscard]] operation : private detail::op_base {
public:
    using result_type = decltype(std::declval<Op&>().complete(std::int32_t{}));

    explicit operation(Op op) noexcept : op_(std::move(op)) {}

    /// Moving is allowed only before the operation is awaited.
    operation(operation&& other) noexcept : op_(std::move(other.op_))
    {
        assert(other.state == detail::op_state::idle && "an awaited operation cannot move");
        if (other.flags & has_deadline) {
            std::construct_at(&timeout_.when, other.timeout_.when);
            flags |= has_deadline;
        }
    }
    operation& operator=(operation&&) = delete;

    ~operation()
    {
        if (state > detail::op_state::done) // waiting or in flight
            owner->abandon(*this);
    }

    /// Gives the op a deadline (an `IORING_OP_LINK_TIMEOUT` linked to it).
    operation with_timeout(std::chrono::nanoseconds d) && noexcept
    {
        std::construct_at(&timeout_.when, io::timespec64::from(d));
        flags |= has_deadline;
        return std::move(*this);
    }

    bool await_ready() const noexcept { return false; }

    template <class Promise>
    bool await_suspend(std::coroutine_handle<Promise> h)
    {
        // Read before the stop token's atomic load, which the compiler may not look past:
        // for an op built in this coroutine it then knows the flags are clear.
        const bool is_timed = timed();
        executor* ex = detail::executor_of(h);
        assert(ex != nullptr && "co_await of a coil operation outside an executor");
        owner = ex;
        waiter = h;
        if (is_timed) {
            deadline = &timeout_.when;
            timeout_result = 0; // read by await_resume even if the timeout never runs
        }
        stop_token = detail::stop_token_of(h);
        if (stop_token != nullptr &&
            detail::stop_requested_now(h, *stop_token, ex->stop_epoch())) [[unlikely]] {
            flags &= has_deadline; // nothing left over from an earlier run
            cancel_requested = false;
            result = -ECANCELED; // cancelled before it was submitted
            state = detail::op_state::done;
            return false;
        }
        return ex->start(*this, is_timed, &prepare_thunk,
                         [this](io::ring& r, std::uint64_t user_data,
                                io::sqe_flags sqe_flags) noexcept {
                             return op_.prepare(r, user_data, sqe_flags);
                         });
    }

    result_type await_resume()
    {
        // Done: the executor holds nothing of it. Saying so here lets the compiler drop the
        // destructor's check, which follows at once.
        state = detail::op_state::idle;
        if (flags != 0) [[unlikely]] {
            if (flags & setup_failed) {
                flags &= ~setup_failed;
                return result_type(setup_error());
            }
            if (timeout_result == -ETIME && (result == -ECANCELED || result == -EINTR))
                return result_type(std::make_error_code(std::errc::timed_out));
        }
        return op_.complete(result);
    }

    /// The wrapped op value.
    const Op& op() const noexcept { return op_; }

private:
    static std::error_code prepare_thunk(op_base& base, io::ring& r, std::uint64_t user_data,
                                         io::sqe_flags flags) noexcept
    {
        return static_cast<operation&>(base).op_.prepare(r, user_data, flags);
    }

    // Storage for a deadline, left unwritten unless with_timeout() gives one: most ops have
    // none, and an op record is built for every awaited op.
    union deadline_storage {
        deadline_storage() noexcept {}
        io::timespec64 when;
    };

    Op op_;
    deadline_storage timeout_;
};

/// Gives `op` a deadline: `co_await coil::with_timeout(coil::read(fd, buf), 100ms)` ends with
/// `std::errc::timed_out` if the read has not completed after 100 ms.
template <ring_op Op>
operation<Op> with_timeout(operation<Op>&& op, std::chrono::nanoseconds d) noexcept
{
    return std::move(op).with_timeout(d);
}

} // namespace coil
