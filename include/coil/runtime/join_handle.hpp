// SPDX-License-Identifier: MIT
/// @file
/// `join_handle<T>`: the result of a task started with `executor::spawn`.
#pragma once

#include <coil/runtime/detail/resumption.hpp>

#include <cassert>
#include <coroutine>
#include <cstdint>
#include <exception>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <system_error>
#include <utility>

namespace coil {

class executor;

namespace detail {

class stop_scope;
class spawned_promise_base;

/// What a join handle holds: the promise, until the handle is dropped, or until the executor
/// stops and destroys the task before it finished (then `promise` is null, `abandoned` true).
/// The promise knows where its handle's link is, so that moving the handle moves it.
struct join_link {
    spawned_promise_base* promise = nullptr;
    bool abandoned = false;
};

/// The part of a join awaiter the promise knows: what to resume, and the pointer back to the
/// promise that the executor clears if it destroys the task first. A suspended awaiter holds a
/// reference to the frame (`counted`), so that dropping the handle meanwhile cannot free it.
struct join_waiter {
    resumption wake;
    spawned_promise_base* promise = nullptr;
    bool counted = false;
};

/// The promise of the coroutine that drives a spawned task. Its frame is shared by the
/// executor (until the task finishes) and the join handle (until it is dropped): two
/// references, and the last one out destroys it. When the executor stops, it destroys the
/// frame of every task that did not finish, join handle or not: the handle and any awaiter
/// of it are told (`join_link`, `join_waiter`), so nothing is left pointing at the frame.
class spawned_promise_base {
public:
    std::suspend_always initial_suspend() const noexcept { return {}; }

    struct final_awaiter {
        bool await_ready() const noexcept { return false; }
        template <class Promise>
        void await_suspend(std::coroutine_handle<Promise> h) const noexcept
        {
            h.promise().on_finished();
        }
        void await_resume() const noexcept {}
    };
    final_awaiter final_suspend() const noexcept { return {}; }

    /// The executor that owns the task.
    executor* owning_executor() const noexcept { return owner_; }

    /// Spawned tasks start with no stop scope: only shutdown cancels their ops.
    stop_scope* scope() const noexcept { return nullptr; }

    bool finished() const noexcept { return finished_; }
    bool failed() const noexcept { return exception_ != nullptr; }

    /// Drops one reference; the last destroys the frame. Executor thread only.
    void release() noexcept
    {
        assert(refs_ > 0);
        if (--refs_ == 0)
            self_.destroy();
    }

    /// Called by the join handle when it is dropped.
    void detach() noexcept; // defined in runtime/executor.cpp
    /// The join handle's link moved to `link`.
    void relink(join_link* link) noexcept { link_ = link; }

    /// Makes `w` the coroutine to resume when the task finishes. Throws `std::logic_error` if
    /// the task was already joined or is being awaited (a join handle is awaited once).
    void set_joiner(join_waiter& w); // defined in runtime/executor.cpp
    /// Forgets `w` if it is the joiner (its awaiter is being destroyed).
    void drop_joiner(join_waiter& w) noexcept
    {
        if (joiner_ == &w)
            joiner_ = nullptr;
    }
    /// Throws `std::logic_error` if the result was already taken.
    void check_not_joined() const; // defined in runtime/executor.cpp
    /// Throws `std::logic_error` unless the calling thread is running the task's executor (or
    /// that executor is gone): a joiner is resumed by the executor that runs the task.
    void check_awaited_here() const; // defined in runtime/executor.cpp

protected:
    void set_self(std::coroutine_handle<> h) noexcept
    {
        self_ = h;
        start_.handle = h;
    }
    void set_exception(std::exception_ptr e) noexcept { exception_ = std::move(e); }
    void rethrow_if_failed()
    {
        check_not_joined();
        observed_ = true;
        if (exception_)
            std::rethrow_exception(exception_);
    }

private:
    friend class coil::executor;
    void on_finished() noexcept; // defined in runtime/executor.cpp
    // The executor stopped before the task finished: tells the handle and the joiner, then
    // destroys the frame (runtime/executor.cpp).
    void abandon() noexcept;

    executor* owner_ = nullptr;
    spawned_promise_base* prev_ = nullptr; // the executor's list of live spawned tasks
    spawned_promise_base* next_ = nullptr;
    std::coroutine_handle<> self_;
    resumption start_;             // the executor's first resumption of the task
    join_link* link_ = nullptr;    // in the join handle, while it holds this promise
    join_waiter* joiner_ = nullptr; // in the awaiter of whoever joins; it clears this if destroyed
    std::exception_ptr exception_; // what the task threw, if it did
    int refs_ = 2;                 // the executor's and the join handle's (+1 while awaited)
    bool finished_ = false;
    bool detached_ = false;
    bool observed_ = false;        // someone took the result (or the exception)
};

template <class T>
class spawned_promise;

template <class T>
struct spawned_coroutine {
    using promise_type = spawned_promise<T>;
    std::coroutine_handle<promise_type> handle;
};

template <class T>
class spawned_promise : public spawned_promise_base {
public:
    spawned_promise() { set_self(std::coroutine_handle<spawned_promise>::from_promise(*this)); }
    spawned_coroutine<T> get_return_object() noexcept
    {
        return {std::coroutine_handle<spawned_promise>::from_promise(*this)};
    }
    template <class U>
    void return_value(U&& value)
    {
        value_.emplace(std::forward<U>(value));
    }
    void unhandled_exception() noexcept { set_exception(std::current_exception()); }
    T take()
    {
        rethrow_if_failed();
        assert(value_.has_value());
        return std::move(*value_);
    }

private:
    std::optional<T> value_;
};

template <>
class spawned_promise<void> : public spawned_promise_base {
public:
    spawned_promise() { set_self(std::coroutine_handle<spawned_promise>::from_promise(*this)); }
    spawned_coroutine<void> get_return_object() noexcept
    {
        return {std::coroutine_handle<spawned_promise>::from_promise(*this)};
    }
    void return_void() const noexcept {}
    void unhandled_exception() noexcept { set_exception(std::current_exception()); }
    void take() { rethrow_if_failed(); }
};

} // namespace detail

/// The handle of a spawned task: `co_await` it for the task's value (or its exception), or
/// drop it to let the task run on detached. Move-only; use it on the executor's thread.
/// An exception of a detached task is counted in `executor_stats::unhandled_exceptions` and
/// reported on stderr.
template <class T>
class [[nodiscard]] join_handle {
public:
    using promise = detail::spawned_promise<T>;

    join_handle() noexcept = default;
    explicit join_handle(promise* p) noexcept : link_{p, false} { p->relink(&link_); }
    join_handle(join_handle&& other) noexcept { take_link(other); }
    join_handle& operator=(join_handle&& other) noexcept
    {
        if (this != &other) {
            reset();
            take_link(other);
        }
        return *this;
    }
    ~join_handle() { reset(); }

    /// Whether the task has finished.
    bool done() const noexcept { return link_.promise && link_.promise->finished(); }

    /// Whether the executor stopped (or was destroyed) before the task finished, and destroyed
    /// it: the handle then has no result, and `get()` or `co_await` throw `std::system_error`
    /// with `std::errc::operation_canceled`.
    bool abandoned() const noexcept { return link_.abandoned; }

    /// The value of a finished task, or rethrows its exception. Precondition: `done()`.
    T get()
    {
        if (link_.abandoned)
            throw_abandoned();
        if (!done())
            throw std::logic_error("coil: join_handle::get() before the task finished");
        return typed(link_.promise)->take();
    }

    /// Lets the task run on without anyone waiting for it.
    void detach() noexcept { reset(); }

    class awaiter {
    public:
        explicit awaiter(const detail::join_link& link) noexcept : abandoned_(link.abandoned)
        {
            waiter_.promise = link.promise;
        }
        awaiter(const awaiter&) = delete;
        awaiter& operator=(const awaiter&) = delete;
        ~awaiter()
        {
            if (waiter_.promise != nullptr) {
                waiter_.promise->drop_joiner(waiter_);
                if (waiter_.counted)
                    waiter_.promise->release();
            }
        }
        bool await_ready() const
        {
            if (abandoned_)
                throw_abandoned();
            if (waiter_.promise == nullptr)
                throw std::logic_error("coil: co_await of an empty join_handle");
            waiter_.promise->check_awaited_here();
            return waiter_.promise->finished();
        }
        void await_suspend(std::coroutine_handle<> h)
        {
            waiter_.wake.handle = h;
            waiter_.promise->set_joiner(waiter_);
        }
        T await_resume()
        {
            if (waiter_.promise == nullptr) // resumed only by a task that finished
                throw_abandoned();
            return typed(waiter_.promise)->take();
        }

    private:
        detail::join_waiter waiter_;
        bool abandoned_;
    };

    /// Waits for the task to finish; yields its value or rethrows its exception. A handle is
    /// joined once: awaiting it again (or while another coroutine awaits it) throws
    /// `std::logic_error`, and so does awaiting an empty handle; awaiting an abandoned one
    /// throws `std::system_error` (`abandoned()`).
    awaiter operator co_await() const noexcept { return awaiter(link_); }

private:
    static promise* typed(detail::spawned_promise_base* p) noexcept
    {
        return static_cast<promise*>(p);
    }
    [[noreturn]] static void throw_abandoned()
    {
        throw std::system_error(std::make_error_code(std::errc::operation_canceled),
                                "coil: the executor stopped before the spawned task finished "
                                "and destroyed it");
    }
    void take_link(join_handle& other) noexcept
    {
        link_ = std::exchange(other.link_, detail::join_link{});
        if (link_.promise != nullptr)
            link_.promise->relink(&link_);
    }
    void reset() noexcept
    {
        if (link_.promise != nullptr)
            std::exchange(link_, detail::join_link{}).promise->detach();
        link_.abandoned = false;
    }

    detail::join_link link_;
};

} // namespace coil
