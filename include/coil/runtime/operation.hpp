// SPDX-License-Identifier: MIT
/// @file
/// `operation<Op>`: the one awaiting mechanism that makes every single-shot ring op
/// `co_await`-able.
///
/// An op is a small value type with two duties: prepare its SQE and turn its completion into
/// a `result<T>`. `operation<Op>` wraps it with the state the executor needs (the op record)
/// and lives in the awaiting coroutine's frame, so awaiting an op allocates nothing. Once
/// awaited it does not move: its address is what the executor's slot table points at.
///
/// To queue an SQE coil has not wrapped, write such an op type yourself: its `prepare` calls
/// `ring.add_sqe(...)` (or any `add_*`), and `operation<your_op>` makes it awaitable, with
/// cancellation, deadlines and shutdown handled like coil's own ops (docs/runtime.md).
#pragma once

#include <coil/io/completion.hpp>
#include <coil/io/result.hpp>
#include <coil/io/ring.hpp>
#include <coil/runtime/detail/op_base.hpp>
#include <coil/runtime/executor.hpp>
#include <coil/runtime/task.hpp>

#include <cerrno>
#include <chrono>
#include <concepts>
#include <coroutine>
#include <cstdint>
#include <stdexcept>
#include <system_error>
#include <type_traits>
#include <utility>

namespace coil {

/// What an op type provides: `prepare` queues its SQE on the ring with the given user_data
/// and returns an empty error code (or `no_space` / `unsupported_operation` from the ring);
/// `complete` turns its completion (result and flags) into a `result<T>`.
///
/// An op whose result is a new descriptor (openat, accept, socket) sets
/// `static constexpr bool yields_descriptor = true`: if it completes after its awaiter was
/// destroyed or the executor shut down, the runtime closes the descriptor.
template <class Op>
concept ring_op = requires(Op& op, io::ring& r, std::uint64_t ud, const io::completion& c) {
    { op.prepare(r, ud) } noexcept -> std::same_as<std::error_code>;
    op.complete(c);
};

/// An op that may need more than one SQE to finish (a send of a whole buffer after a short
/// send) provides `resubmit_after(c)`: called with each completion, it returns true, having
/// advanced the op's own state, when the op must be queued again for the rest; `complete` then
/// sees only the last completion. The re-queueing happens in the completion handler, so the
/// awaiting coroutine is resumed once, at the end, and nothing is allocated. A stop request or
/// a deadline that interrupts such an op between two SQEs ends it with
/// `operation_canceled` / `timed_out`, even if the interrupted SQE had moved some bytes.
template <class Op>
concept resubmitting_op = requires(Op& op, const io::completion& c) {
    { op.resubmit_after(c) } noexcept -> std::same_as<bool>;
};

/// An op whose opcode older kernels lack may provide `fallback()`: the same work done by the
/// blocking system call, returning what its completion would carry (`-errno` on failure).
/// When the ring reports `unsupported_operation` for it, the operation runs `fallback()` on the
/// executor's thread (blocking it for the call) and completes with that result.
template <class Op>
concept syscall_fallback_op = requires(const Op& op) {
    { op.fallback() } noexcept -> std::same_as<int>;
};

namespace detail {
template <class Op>
constexpr bool yields_descriptor() noexcept
{
    if constexpr (requires { Op::yields_descriptor; })
        return Op::yields_descriptor;
    else
        return false;
}

} // namespace detail

/// An awaitable ring operation. `co_await` it to run the op; it yields `result<T>`.
///
/// - Lifetime: everything the op borrows (buffers, iovecs, paths) must stay valid until the
///   `co_await` completes. The kernel is never left holding memory of a destroyed awaiter:
///   destroying one whose op is still in flight cancels the op and waits for its completion.
/// - Cancellation: a stop request on the awaiting task's stop token cancels the op
///   (`ASYNC_CANCEL`); the coroutine resumes only after the op's own completion arrives, with
///   `std::errc::operation_canceled` or, if the op won the race, its real result.
/// - `with_timeout(d)` gives the op a deadline `d` from the `co_await`: if it has not
///   completed by then (whether still waiting to reach the kernel or in flight) it is
///   cancelled and ends with `std::errc::timed_out`, unless it completed first.
/// - Awaiting outside an executor, or awaiting an operation whose previous `co_await` has not
///   finished (from a second coroutine), throws `std::logic_error` (a misuse, not an I/O error).
template <ring_op Op>
class [[nodiscard]] operation : private detail::op_base {
public:
    using result_type = decltype(std::declval<Op&>().complete(std::declval<const io::completion&>()));

    explicit operation(Op op) noexcept : op_(std::move(op)) {}

    /// Moving is allowed only before the operation is awaited (throws `std::logic_error`
    /// otherwise: the executor points at it).
    operation(operation&& other) : op_(std::move(other.op_)), timeout_(other.timeout_)
    {
        if (other.state != detail::op_state::idle)
            throw std::logic_error("coil: an operation cannot be moved once awaited");
    }
    operation& operator=(operation&&) = delete;

    ~operation()
    {
        if (state == detail::op_state::waiting || state == detail::op_state::in_flight)
            owner->abandon(*this);
        // Completed, but its coroutine never took the result (it was abandoned, or the
        // executor shut down): a descriptor it produced belongs to nobody.
        if constexpr (detail::yields_descriptor<Op>()) {
            if (state == detail::op_state::done && !setup_error.failed() && last.result >= 0)
                owner->close_orphan(last.result);
        }
    }

    /// Gives the op a deadline `d` after its `co_await` starts.
    operation with_timeout(std::chrono::nanoseconds d) &&
    {
        timeout_ = d < std::chrono::nanoseconds::zero() ? std::chrono::nanoseconds::zero() : d;
        return std::move(*this);
    }

    bool await_ready() const noexcept { return false; }

    template <class Promise>
    bool await_suspend(std::coroutine_handle<Promise> h)
    {
        if (state != detail::op_state::idle) [[unlikely]]
            throw std::logic_error("coil: an operation awaited while its previous co_await is "
                                   "still pending (one awaiter at a time)");
        executor* ex = detail::awaiting_executor(h);
        owner = ex;
        scope = detail::scope_of(h);
        wake.handle = h;
        prepare = &prepare_thunk;
        cancel = &cancel_thunk;
        cancel_requested = false;
        timed_out = false;
        setup_error = {};
        if constexpr (resubmitting_op<Op>) {
            on_completion = &resubmit_thunk;
            unfinished_ = false;
        }
        if (timeout_ != no_timeout) [[unlikely]] {
            const auto deadline = detail::deadline_after(timeout_);
            if constexpr (resubmitting_op<Op>)
                deadline_ = deadline;
            ex->arm_timer(*this, deadline, &deadline_thunk);
            if (ex->start(*this))
                return true;
            ex->disarm_timer(*this);
            return false;
        }
        return ex->start(*this, [this](io::ring& r, std::uint64_t user_data) noexcept {
            return op_.prepare(r, user_data);
        });
    }

    result_type await_resume()
    {
        state = detail::op_state::idle; // the result is taken: the executor holds nothing of it
        if (setup_error.failed()) [[unlikely]] {
            if constexpr (syscall_fallback_op<Op>) {
                if (setup_error.get() == io::errc::unsupported_operation)
                    return op_.complete(io::completion{0, op_.fallback(), 0});
            }
            return result_type(setup_error.get());
        }
        // A cancel that reached an op a kernel worker was running interrupts it (EINTR, or a
        // restart code for a splice): cancelled, like one the cancel found waiting.
        if (cancel_requested && io::interrupted_result(last.result)) [[unlikely]]
            last.result = -ECANCELED;
        if (timed_out && last.result == -ECANCELED) [[unlikely]]
            return result_type(std::make_error_code(std::errc::timed_out));
        if constexpr (resubmitting_op<Op>) {
            if (unfinished_) [[unlikely]]
                return result_type(std::make_error_code(
                    timed_out ? std::errc::timed_out : std::errc::operation_canceled));
        }
        return op_.complete(last);
    }

    /// The wrapped op value.
    const Op& op() const noexcept { return op_; }

private:
    static constexpr std::chrono::nanoseconds no_timeout{-1};

    static std::error_code prepare_thunk(op_base& base, io::ring& r,
                                         std::uint64_t user_data) noexcept
    {
        return static_cast<operation&>(base).op_.prepare(r, user_data);
    }
    static void cancel_thunk(detail::cancellable& c) noexcept
    {
        auto& op = static_cast<op_base&>(c);
        op.owner->cancel(op);
    }
    static void deadline_thunk(detail::timer_entry& t) noexcept
    {
        auto& op = static_cast<op_base&>(t);
        op.timed_out = true;
        op.owner->cancel(op);
    }

    // A resubmitting op's completion handler: queues the op again while it asks for it, and
    // resumes the coroutine once it is finished, interrupted, or cannot be queued again.
    static bool resubmit_thunk(op_base& base, const io::completion& c) noexcept
    {
        auto& self = static_cast<operation&>(base);
        self.last = c;
        if (!self.op_.resubmit_after(c))
            return true;
        // A stop request, a deadline or the awaiter's destruction (abandon) asked for this SQE
        // to be cancelled: the op ends here, whatever the SQE moved.
        if (self.cancel_requested || self.timed_out) {
            self.unfinished_ = true;
            return true;
        }
        executor* ex = self.owner;
        const bool has_deadline = self.timeout_ != no_timeout;
        if (has_deadline) // the final completion disarmed it; the deadline itself stays
            ex->arm_timer(self, self.deadline_, &deadline_thunk);
        if (ex->start(self))
            return false; // in flight again: the coroutine keeps waiting
        if (has_deadline)
            ex->disarm_timer(self);
        // Not queued: a stop request (last is then -ECANCELED), shutdown or a setup error.
        self.unfinished_ = !self.setup_error.failed() && self.last.result != -ECANCELED;
        return true;
    }

    struct no_deadline {};
    using deadline_type = std::conditional_t<resubmitting_op<Op>,
                                             detail::timer_heap::clock::time_point, no_deadline>;

    Op op_;
    std::chrono::nanoseconds timeout_ = no_timeout;
    [[no_unique_address]] deadline_type deadline_{}; // resubmitting ops: for every SQE
    bool unfinished_ = false; // resubmitting ops: ended between two SQEs by a stop or deadline
};

/// Gives `op` a deadline: `co_await coil::with_timeout(coil::read(fd, buf), 100ms)` ends with
/// `std::errc::timed_out` if the read has not completed after 100 ms.
template <ring_op Op>
operation<Op> with_timeout(operation<Op>&& op, std::chrono::nanoseconds d)
{
    return std::move(op).with_timeout(d);
}

} // namespace coil
