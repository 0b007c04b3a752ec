// SPDX-License-Identifier: MIT
/// @file
/// `coil::event`: a flag the tasks of one executor wait for, to wake one another (a writer
/// task waiting for its queue to fill, a shutdown signal for a group of tasks).
///
/// @code
/// coil::event ready;
/// std::deque<std::string> queue; // a connection's outgoing messages
///
/// // The writer: sleeps while the queue is empty.
/// while (true) {
///     while (queue.empty()) {
///         ready.reset();
///         if (!co_await ready.wait()) // operation_canceled: the task was stopped
///             co_return;
///     }
///     ... send queue.front(), pop it ...
/// }
///
/// // Anyone else on the executor's thread:
/// queue.push_back(message);
/// ready.set();
/// @endcode
#pragma once

#include <coil/runtime/detail/list.hpp>
#include <coil/runtime/detail/timer_heap.hpp>
#include <coil/runtime/executor.hpp>
#include <coil/runtime/ops.hpp>

#include <atomic>
#include <chrono>
#include <coroutine>
#include <cstdint>
#include <stdexcept>
#include <system_error>

namespace coil {

namespace detail {
struct event_tag;
} // namespace detail

/// A manual-reset event for the tasks of one executor. `set()` wakes every task waiting in
/// `wait()` at that moment, in the order they began to wait, and leaves the event set: later
/// waits complete at once until `reset()`.
///
/// A wait yields `result<void>`: success once the event is set, `operation_canceled` when the
/// waiting task is stopped first (or the event is destroyed under it), `timed_out` when
/// `wait().with_timeout(d)` passes its deadline. Waiting allocates nothing (the wait lives in
/// the awaiting coroutine's frame), and a task destroyed while it waits leaves the event's
/// queue with it.
///
/// Executor thread only, like everything but `executor::post`: from another thread, post the
/// call (`ex.post([&] { ev.set(); })`). One executor's tasks only. An event belongs to the
/// thread of the executor running where it was made, else of the executor of its first wait; a
/// wait with no other task waiting moves it to the waiting task's executor's thread. Misuse
/// throws `std::logic_error`: a `set()` off that thread (whether or not a task waits), a wait
/// from a task of another executor than those already waiting, one `wait()` awaiter awaited by
/// two coroutines at once. An awaiter may be awaited again once its `co_await` has completed.
class event {
public:
    class wait_awaiter;

    event() noexcept
        : thread_(executor::current() != nullptr ? io::detail::this_thread_serial() : 0)
    {
    }
    event(const event&) = delete;
    event& operator=(const event&) = delete;
    /// Wakes the tasks still waiting, with `operation_canceled`.
    ~event();

    bool is_set() const noexcept { return set_; }
    /// Sets the event and wakes every waiting task. Throws `std::logic_error` when called on
    /// a thread other than its executor's (post it there instead).
    void set();
    /// Clears the event: the next waits suspend until `set()`.
    void reset() noexcept { set_ = false; }

    /// Waits until the event is set (at once when it is).
    wait_awaiter wait() noexcept;

private:
    bool set_ = false;
    detail::list<wait_awaiter, detail::event_tag> waiting_;
    // The serial (io::detail::this_thread_serial) of the thread that may set the event, 0
    // while none is known. Atomic: a set() from a wrong thread reads it to say so.
    std::atomic<std::uint64_t> thread_;
};

/// The awaiter of `event::wait()`.
class [[nodiscard]] event::wait_awaiter : private detail::cancellable_wait,
                                          private detail::link<detail::event_tag>,
                                          private detail::timer_entry {
public:
    explicit wait_awaiter(event& e) noexcept : event_(&e) {}
    wait_awaiter(wait_awaiter&& other) noexcept
        : event_(other.event_), timeout_(other.timeout_), has_timeout_(other.has_timeout_)
    {
    }

    /// Bounds the wait: it yields `timed_out` if the event is not set within `d` of the
    /// `co_await`.
    wait_awaiter with_timeout(std::chrono::nanoseconds d) && noexcept
    {
        timeout_ = d;
        has_timeout_ = true;
        return std::move(*this);
    }

    bool await_ready() noexcept
    {
        if (in_use()) [[unlikely]]
            return false; // await_suspend says so
        // Each await runs anew, as an operation's does: nothing of an earlier one carries over.
        cancelled_ = timed_out_ = false;
        return event_->set_;
    }

    template <class Promise>
    bool await_suspend(std::coroutine_handle<Promise> h)
    {
        if (in_use()) [[unlikely]]
            throw_misuse("coil: two coroutines await the same event wait");
        if (!begin_wait(h, &cancel_thunk))
            return false;
        if (!event_->waiting_.empty() && event_->waiting_.front().executor_ != executor_)
            [[unlikely]] {
            detail::cancellable::unlink();
            throw_misuse("coil: an event's waiters must all run on one executor (wake tasks "
                         "of another executor through executor::post)");
        }
        event_->thread_.store(io::detail::this_thread_serial(), std::memory_order_relaxed);
        event_->waiting_.push_back(*this);
        if (has_timeout_)
            executor_->arm_timer(*this, detail::deadline_after(timeout_), &deadline_thunk);
        return true;
    }

    result<void> await_resume() const noexcept
    {
        if (cancelled_)
            return std::make_error_code(std::errc::operation_canceled);
        if (timed_out_)
            return std::make_error_code(std::errc::timed_out);
        return {};
    }

private:
    friend class event;
    friend class detail::list<wait_awaiter, detail::event_tag>;

    [[noreturn]] static void throw_misuse(const char* what) { throw std::logic_error(what); }

    // Waiting, or woken and not yet resumed: another coroutine's await of it.
    bool in_use() const noexcept
    {
        return detail::link<detail::event_tag>::linked() || wake_.linked();
    }

    // Ends the wait: leaves the event's queue, the stop scope and the timer heap, and resumes
    // the task at the executor's next turn.
    void finish() noexcept
    {
        detail::link<detail::event_tag>::unlink();
        detail::cancellable::unlink();
        if (armed())
            executor_->disarm_timer(*this);
        executor_->schedule(wake_);
    }
    static void cancel_thunk(detail::cancellable& c) noexcept
    {
        auto& self = static_cast<wait_awaiter&>(c);
        self.cancelled_ = true;
        self.finish();
    }
    static void deadline_thunk(detail::timer_entry& t) noexcept
    {
        auto& self = static_cast<wait_awaiter&>(t);
        self.timed_out_ = true;
        self.finish();
    }

    event* event_;
    std::chrono::nanoseconds timeout_{0};
    bool has_timeout_ = false;
    bool timed_out_ = false;
};

inline event::wait_awaiter event::wait() noexcept { return wait_awaiter(*this); }

inline void event::set()
{
    const std::uint64_t owner = thread_.load(std::memory_order_relaxed);
    if (owner != 0 && owner != io::detail::this_thread_serial()) [[unlikely]]
        wait_awaiter::throw_misuse("coil: event::set() called off the thread of the executor "
                                   "the event belongs to (whose tasks wait for it): post it "
                                   "there with executor::post");
    set_ = true;
    while (wait_awaiter* w = waiting_.pop_front())
        w->finish();
}

inline event::~event()
{
    while (wait_awaiter* w = waiting_.pop_front()) {
        w->cancelled_ = true;
        w->finish();
    }
}

} // namespace coil
