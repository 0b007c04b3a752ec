// SPDX-License-Identifier: MIT
/// @file
/// `stream<Op>`: a multishot op (one SQE, many completions) as a stream a coroutine reads with
/// `co_await s.next()`.
///
/// @code
/// coil::stream ready = coil::poll_multishot(fd, POLLIN);
/// while (auto event = co_await ready.next()) {   // std::optional<result<std::uint32_t>>
///     if (!*event) break;                          // an error ends the stream
///     drain(fd);
/// }
/// @endcode
///
/// - The op starts at the first `next()` and keeps its slot in the executor until its final
///   completion (the one without `IORING_CQE_F_MORE`).
/// - Completions that arrive while nobody awaits are buffered in the stream, in order. The
///   buffer has a bound (`stream_options::bound`, 64 by default): when it is reached the
///   stream pauses the op (ASYNC_CANCEL) and re-arms it once the consumer has emptied the
///   buffer. Completions that arrive between the pause and the final completion are still
///   kept, so nothing the kernel posted is lost or reordered; what happens meanwhile at the
///   source (a readiness, a tick) is observed again after the re-arm.
/// - A final completion that is neither a pause nor a stop is delivered, and the op is re-armed
///   at the next `next()` if it allows it (`rearm_after`: a poll does after a value, an endless
///   timer after a tick); otherwise, e.g. after an error, the stream ends: `next()` then
///   yields `nullopt`.
/// - A stop request on the awaiting task's token (or `stop()`) cancels the op; the stream ends
///   with `operation_canceled` after its final completion has been reaped. A task that awaits
///   the stream while its op is armed for an earlier consumer takes it over: its token is the
///   one that ends it from then on.
/// - Destroying the stream with its op in flight cancels it and waits for the final
///   completion, like any awaiter. One coroutine at a time may await `next()`.
#pragma once

#include <coil/io/completion.hpp>
#include <coil/io/result.hpp>
#include <coil/io/ring.hpp>
#include <coil/runtime/detail/op_base.hpp>
#include <coil/runtime/detail/rearm_waiter.hpp>
#include <coil/runtime/executor.hpp>
#include <coil/runtime/operation.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <concepts>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <system_error>
#include <utility>
#include <vector>

namespace coil {

/// What a multishot op type provides: `prepare` (as for `ring_op`), `complete` turning each
/// completion into a `result<T>`, and `rearm_after(final)`, which says whether the op should
/// be armed again after a final completion that was neither a pause nor a stop (the kernel
/// ends some multishot ops on its own, e.g. when the CQ overflows); if not, the stream ends
/// after delivering it.
///
/// Optional hooks, for ops that hold resources:
/// - `arrived(c)`: called for every kernel completion as it arrives, with the copy the stream
///   buffers: it may rewrite the copy's `user_data` to carry what it learned then to
///   `complete` and `discard` (an incremental buffer's offset, which only arrival order gives;
///   never `~0`, the stream's own end marker);
/// - `retry_after(final)`: true when a final completion is internal and the op must simply be
///   armed again (not delivered): a provided-buffer receive that ran out of buffers, a
///   multishot request the kernel refused that falls back to single-shot;
/// - `park(waiter)`: true when the op cannot be armed now and `waiter.ready` will be called
///   when it can (a buffer pool that ran dry);
/// - `discard(c)`: releases what a completion carries that nobody took (a descriptor, a
///   buffer), for completions still buffered when the stream is destroyed.
template <class Op>
concept multishot_op = ring_op<Op> && requires(Op& op, const io::completion& c) {
    { op.rearm_after(c) } -> std::same_as<bool>;
};

namespace detail {
// The optional hooks of a multishot op (see `stream`).
template <class Op>
concept has_arrived = requires(Op& op, io::completion& c) { op.arrived(c); };
template <class Op>
concept has_retry_after = requires(Op& op, const io::completion& c) {
    { op.retry_after(c) } -> std::same_as<bool>;
};
template <class Op>
concept has_park = requires(Op& op, rearm_waiter& w) {
    { op.park(w) } -> std::same_as<bool>;
};
template <class Op>
concept has_discard = requires(Op& op, const io::completion& c) { op.discard(c); };
} // namespace detail

/// Stream settings.
struct stream_options {
    /// Completions buffered before the stream pauses its op. At least 1.
    std::size_t bound = 64;
};

template <multishot_op Op>
class [[nodiscard]] stream : private detail::op_base {
public:
    using result_type = decltype(std::declval<Op&>().complete(std::declval<const io::completion&>()));

    explicit stream(Op op, stream_options options = {})
        : op_(std::move(op)), bound_(options.bound == 0 ? 1 : options.bound)
    {
        buffer_.reserve(initial_capacity());
        on_completion = &on_completion_thunk;
        prepare = &prepare_thunk;
        cancel = &cancel_thunk;
        scope_gone = &scope_gone_thunk;
        multishot = true;
    }
    stream(stream&& other)
        : op_(std::move(other.op_)), bound_(other.bound_)
    {
        if (other.state != detail::op_state::idle || other.started_)
            throw std::logic_error("coil: a stream cannot be moved once started");
        buffer_.reserve(initial_capacity());
        on_completion = &on_completion_thunk;
        prepare = &prepare_thunk;
        cancel = &cancel_thunk;
        scope_gone = &scope_gone_thunk;
        multishot = true;
    }
    stream& operator=(stream&&) = delete;

    ~stream()
    {
        if (state == detail::op_state::waiting || state == detail::op_state::in_flight)
            owner->abandon(*this);
        // What the kernel delivered and nobody took (an accepted descriptor, a buffer).
        if constexpr (detail::has_discard<Op>) {
            for (std::size_t i = head_; i < buffer_.size(); ++i)
                if (buffer_[i].user_data != end_marker)
                    op_.discard(buffer_[i]);
        }
    }

    class next_awaiter : private detail::timer_entry {
    public:
        explicit next_awaiter(stream& s,
                              std::chrono::nanoseconds timeout = std::chrono::nanoseconds(-1)) noexcept
            : stream_(s), timeout_(timeout)
        {
        }

        /// A deadline `d` from the `co_await` for this one wait (see `stream::next`).
        next_awaiter with_timeout(std::chrono::nanoseconds d) && noexcept
        {
            return next_awaiter(stream_, std::max(d, std::chrono::nanoseconds::zero()));
        }

        bool await_ready() const noexcept { return stream_.has_next(); }
        template <class Promise>
        bool await_suspend(std::coroutine_handle<Promise> h)
        {
            executor* ex = detail::awaiting_executor(h);
            if (!stream_.suspend(h, ex, detail::scope_of(h)))
                return false;
            if (timeout_.count() >= 0) [[unlikely]]
                ex->arm_timer(*this, detail::deadline_after(timeout_), &expired);
            return true;
        }
        std::optional<result_type> await_resume()
        {
            if (timed_out_) [[unlikely]]
                return result_type(std::make_error_code(std::errc::timed_out));
            if (armed())
                stream_.owner->disarm_timer(*this);
            return stream_.take();
        }

    private:
        // The deadline passed with the consumer still waiting: resume it with timed_out. The
        // op stays armed; what it delivers meanwhile is kept for the next next().
        static void expired(detail::timer_entry& t) noexcept
        {
            auto& self = static_cast<next_awaiter&>(t);
            if (!self.stream_.wake_consumer())
                return; // already woken by a completion, not yet resumed
            self.timed_out_ = true;
            self.stream_.owner->schedule(self.stream_.wake);
        }

        stream& stream_;
        std::chrono::nanoseconds timeout_;
        bool timed_out_ = false;
    };

    /// Waits for the next completion: yields its result, or `nullopt` once the stream ended.
    /// `next().with_timeout(d)` gives this one wait a deadline: if nothing arrived after `d`,
    /// it yields `std::errc::timed_out` and the stream goes on (its op stays armed; a
    /// server's idle timeout on a multishot receive is this, then destroying the stream).
    next_awaiter next() noexcept { return next_awaiter(*this); }

    /// Ends the stream: its op is cancelled, and `next()` yields `operation_canceled` (after
    /// any completions already buffered) once its final completion is reaped.
    void stop() noexcept
    {
        stopping_ = true;
        if (state == detail::op_state::in_flight || state == detail::op_state::waiting)
            owner->cancel(*this);
        else if (parked_.linked())
            end_parked();
        else if (!ended_)
            end_with(std::make_error_code(std::errc::operation_canceled));
    }

    /// Whether every completion was taken and no more will come.
    bool ended() const noexcept { return ended_ && head_ == buffer_.size(); }
    /// Completions buffered now.
    std::size_t buffered() const noexcept { return buffer_.size() - head_; }
    /// Times the op was paused because the buffer reached its bound.
    std::size_t pauses() const noexcept { return pauses_; }
    /// Times the op was started (1 + re-arms).
    std::size_t arms() const noexcept { return arms_; }
    /// The wrapped op value.
    const Op& op() const noexcept { return op_; }

private:
    bool has_next() const noexcept { return head_ != buffer_.size() || ended_; }

    bool suspend(std::coroutine_handle<> h, executor* ex, detail::stop_scope* scope)
    {
        if (waiting_consumer_)
            throw std::logic_error("coil: two coroutines await the same stream");
        if (started_ && ex != owner)
            throw std::logic_error("coil: a stream awaited in a task of another executor than "
                                   "the one its op was started on (its op, its completions and "
                                   "the consumer's resumption belong to that executor's "
                                   "thread)");
        wake.handle = h;
        if (state == detail::op_state::in_flight || state == detail::op_state::waiting ||
            parked_.linked()) {
            waiting_consumer_ = true;
            // Armed for an earlier consumer: from now on this consumer's stop requests end it.
            if (scope != this->scope) {
                detail::cancellable::unlink();
                this->scope = scope;
                if (scope != nullptr && scope->stop_requested())
                    stop();
                else if (scope != nullptr)
                    scope->add(*this);
            }
            return true;
        }
        // Not armed: first next(), or after a pause or an end the op allows a re-arm after.
        owner = ex;
        this->scope = scope;
        started_ = true;
        if (!arm())
            return false;
        waiting_consumer_ = true;
        return true;
    }

    // Arms the op (or parks it until its op can be armed). Returns false when the stream
    // ended at once instead (stopped, shut down, unsupported).
    bool arm() noexcept
    {
        ++arms_;
        cancel_requested = false;
        setup_error = {};
        if (stopping_ || (scope != nullptr && scope->stop_requested())) {
            end_with(std::make_error_code(std::errc::operation_canceled));
            return false;
        }
        if constexpr (detail::has_park<Op>) {
            parked_.ready = &unparked_thunk;
            if (op_.park(parked_)) {
                // Waiting for the resource, not in the executor: a stop request must still
                // reach it (cancel_thunk ends the wait).
                if (scope != nullptr)
                    scope->add(*this);
                return true;
            }
        }
        if (!owner->start(*this)) {
            end_with(setup_error.failed() ? setup_error.get()
                                          : std::make_error_code(std::errc::operation_canceled));
            return false;
        }
        return true;
    }

    static void unparked_thunk(detail::rearm_waiter& w) noexcept
    {
        auto& self = *static_cast<parked_link&>(w).self;
        self.detail::cancellable::unlink(); // arm() links it into its scope again
        if (!self.arm() && self.wake_consumer())
            self.owner->schedule(self.wake);
    }

    // Ends the stream while it waits for its resource (a pool's buffer): leaves the queue and
    // the stop scope, and resumes a waiting consumer, which takes operation_canceled.
    void end_parked() noexcept
    {
        parked_.unlink();
        detail::cancellable::unlink();
        end_with(std::make_error_code(std::errc::operation_canceled));
        if (wake_consumer())
            owner->schedule(wake);
    }

    std::optional<result_type> take()
    {
        waiting_consumer_ = false;
        // Empty here only once the stream ended: the consumer is resumed when a completion is
        // buffered or the stream ends, never for a pause.
        if (head_ == buffer_.size())
            return std::nullopt;
        const io::completion c = buffer_[head_++];
        if (head_ == buffer_.size()) {
            buffer_.clear();
            head_ = 0;
        }
        if (c.user_data == end_marker)
            return result_type(end_error_);
        return op_.complete(c);
    }

    // Ends the stream with `error`, delivered after what is buffered.
    void end_with(std::error_code error) noexcept
    {
        ended_ = true;
        end_error_ = error;
        buffer_.push_back(io::completion{end_marker, 0, 0});
    }

    static bool on_completion_thunk(op_base& base, const io::completion& c) noexcept
    {
        return static_cast<stream&>(base).on_completion_(c);
    }
    bool on_completion_(const io::completion& kernel_completion) noexcept
    {
        if (setup_error.failed()) {
            // Not a completion: the op waited for SQ room and, when the executor queued it at
            // last, could not be set up (executor::admit_waiting). It never reached the kernel.
            end_with(setup_error.get());
            return wake_consumer();
        }
        io::completion c = kernel_completion;
        if constexpr (detail::has_arrived<Op>)
            op_.arrived(c);
        if (c.more()) {
            buffer_.push_back(c);
            if (buffered() >= bound_ && !cancel_requested) {
                paused_ = true;
                ++pauses_;
                owner->cancel(*this);
            }
            return wake_consumer();
        }
        // The final completion: the op has left the executor.
        if (c.result == -ECANCELED && paused_ && !stopping_) {
            paused_ = false;
            // Normally re-armed by the next next() once the buffer is empty; if the consumer
            // already emptied it and waits, re-arm now.
            if (waiting_consumer_ && buffered() == 0)
                return rearm();
            return false;
        }
        paused_ = false;
        if constexpr (detail::has_retry_after<Op>) {
            if (!stopping_ && op_.retry_after(c)) {
                if (waiting_consumer_ && buffered() == 0)
                    return rearm();
                return false; // re-armed by the next next()
            }
        }
        buffer_.push_back(c);
        if (stopping_ && c.result >= 0)
            end_with(std::make_error_code(std::errc::operation_canceled)); // after its value
        else if (stopping_ || !op_.rearm_after(c))
            ended_ = true;
        return wake_consumer();
    }

    // Whether the consumer must be resumed: once per suspension.
    bool wake_consumer() noexcept { return std::exchange(waiting_consumer_, false); }

    // Starts the op again for a waiting consumer, from the completion handler.
    bool rearm() noexcept
    {
        if (arm())
            return false; // in flight (or parked) again; the consumer keeps waiting
        return wake_consumer();
    }

    static std::error_code prepare_thunk(op_base& base, io::ring& r,
                                         std::uint64_t user_data) noexcept
    {
        return static_cast<stream&>(base).op_.prepare(r, user_data);
    }
    static void scope_gone_thunk(detail::cancellable& c) noexcept
    {
        static_cast<stream&>(static_cast<op_base&>(c)).scope = nullptr;
    }
    static void cancel_thunk(detail::cancellable& c) noexcept
    {
        auto& self = static_cast<stream&>(static_cast<op_base&>(c));
        self.stopping_ = true;
        if (self.parked_.linked())
            self.end_parked();
        else
            self.owner->cancel(self);
    }

    // Marks the buffered entry that stands for end_error_ (no kernel completion has this
    // user_data: the executor's are slot-encoded).
    static constexpr std::uint64_t end_marker = ~std::uint64_t{0};

    // The stream's place in a resource's queue while parked (see `park`).
    struct parked_link : detail::rearm_waiter {
        stream* self;
    };

    Op op_;
    // Room for two completions at first: a consumer that keeps up never holds more than one
    // or two, and an idle stream (a server's idle connection) should cost little. The buffer
    // grows (doubling) if completions pile up towards the bound (and past it by what was
    // already in the CQ when the pause was asked for); it keeps its capacity from then on.
    static constexpr std::size_t initial_capacity() noexcept { return 2; }

    std::size_t bound_;
    std::error_code end_error_;
    parked_link parked_{{}, this};
    std::vector<io::completion> buffer_; // completions not yet taken, from head_ on
    std::size_t head_ = 0;
    std::size_t pauses_ = 0;
    std::size_t arms_ = 0;
    bool started_ = false;
    bool paused_ = false;           // cancelled because the buffer reached its bound
    bool stopping_ = false;         // stop() or a stop request: end, do not re-arm
    bool ended_ = false;            // no completion will be added
    bool waiting_consumer_ = false; // a coroutine awaits next()
};

namespace ops {

/// Multishot poll: a completion (the revents) every time `fd` becomes ready for `events`.
struct poll_multishot {
    int fd;
    std::uint32_t events;
    std::error_code prepare(io::ring& r, std::uint64_t ud) noexcept
    {
        return r.add_poll(fd, events, ud, io::poll_mode::multishot);
    }
    result<std::uint32_t> complete(const io::completion& c) const noexcept
    {
        if (c.result < 0)
            return io::error_from_result(c.result);
        return static_cast<std::uint32_t>(c.result);
    }
    /// The kernel ends a multishot poll with a value only when it must (a CQ overflow): arm
    /// it again. An error ends the stream.
    bool rearm_after(const io::completion& c) const noexcept { return c.result >= 0; }
};

/// A repeating timer (`IORING_OP_TIMEOUT` with `IORING_TIMEOUT_MULTISHOT`, Linux 6.4): a tick
/// every `interval`, `count` times (0: until stopped). Kernels without it end the stream with
/// `invalid_argument` at the first `next()`.
struct ticks {
    io::timespec64 interval;
    unsigned count;     ///< 0: endless
    unsigned fired = 0; ///< ticks the kernel posted so far (a re-armed timer fires only the rest)
    std::error_code prepare(io::ring& r, std::uint64_t ud) noexcept
    {
        return r.add_multishot_timeout(&interval, count == 0 ? 0 : count - fired, ud);
    }
    void arrived(const io::completion& c) noexcept
    {
        if (c.result == -ETIME)
            ++fired;
    }
    result<void> complete(const io::completion& c) const noexcept
    {
        if (c.result != -ETIME)
            return io::error_from_result(c.result < 0 ? c.result : -EINVAL);
        return {};
    }
    /// The kernel ends the timer with its last tick, or earlier with a tick that found the CQ
    /// full: armed again while ticks remain (always, for an endless one).
    bool rearm_after(const io::completion& c) const noexcept
    {
        return c.result == -ETIME && (count == 0 || fired < count);
    }
};

} // namespace ops

/// A stream of `count` ticks, one every `interval` (0: endless, until stopped). A consumer
/// slower than the timer sees fewer ticks only if the stream paused (its buffer reached its
/// bound): ticks due while it is paused are not made up, and a counted timer still ends after
/// `count` delivered ticks.
inline stream<ops::ticks> ticks(std::chrono::nanoseconds interval, unsigned count = 0,
                                stream_options options = {})
{
    return stream<ops::ticks>({io::timespec64::from(interval), count}, options);
}

/// A stream of readiness events on `fd` (`IORING_OP_POLL_ADD` with `IORING_POLL_ADD_MULTI`).
inline stream<ops::poll_multishot> poll_multishot(int fd, std::uint32_t events,
                                                  stream_options options = {})
{
    return stream<ops::poll_multishot>({fd, events}, options);
}

} // namespace coil
