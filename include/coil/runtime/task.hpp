// SPDX-License-Identifier: MIT
/// @file
/// `task<T>`: coil's lazy, move-only coroutine type.
#pragma once

#include <cassert>
#include <concepts>
#include <coroutine>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <stop_token>
#include <type_traits>
#include <utility>
#include <variant>

namespace coil {

template <class T = void>
class task;
class executor;

namespace detail {

/// Tells `ex` that some stop source was triggered, so that it looks for ops to cancel. Safe
/// from any thread. Defined in runtime/executor.cpp.
void notify_stop_requested(executor* ex) noexcept;
/// The executor running on this thread, or null. Defined in runtime/executor.cpp.
executor* running_executor() noexcept;

/// A stop callback that wakes the executor's search for cancelled ops.
struct stop_notifier {
    executor* ex;
    void operator()() const noexcept { notify_stop_requested(ex); }
};

/// What every coil coroutine promise carries: who to resume when it ends, and the stop token
/// that the operations it awaits observe.
///
/// The token is held by pointer: a task points at the token of whoever awaits it (which
/// outlives it), or at its own when given one with `with_stop_token`. Passing a token down a
/// chain of awaits thus costs no atomic reference counting, and an op reads it with one load.
class promise_base {
public:
    std::coroutine_handle<> continuation() const noexcept { return continuation_; }
    void set_continuation(std::coroutine_handle<> h) noexcept { continuation_ = h; }

    /// The executor this coroutine runs on (inherited from its awaiter), or null if unknown.
    executor* owning_executor() const noexcept { return executor_; }
    void set_owning_executor(executor* ex) noexcept { executor_ = ex; }

    /// The token this coroutine's ops observe, or null when nothing can stop them.
    const std::stop_token* stop_token_ptr() const noexcept { return token_; }

    /// Uses `token` (owned by an ancestor or a child group, which outlive this coroutine)
    /// unless the coroutine has a token of its own.
    void inherit_stop_token(const std::stop_token* token) noexcept
    {
        if (!own_) {
            token_ = token;
            stop_epoch_seen_ = 0;
        }
    }

    /// Gives the coroutine a token of its own (`with_stop_token`).
    void set_stop_token(std::stop_token token) noexcept
    {
        if (!token.stop_possible()) {
            own_.reset();
            token_ = nullptr;
            return;
        }
        own_ = std::make_unique<own_stop>(std::move(token));
        token_ = &own_->token;
        stop_epoch_seen_ = 0;
    }

    /// Whether the token must be read before an op starts: false when this coroutine found it
    /// unstopped during the executor's current stop epoch (`executor::stop_epoch()`), which
    /// changes whenever the executor learns of a stop request. Reading the token is three
    /// dependent loads; this is one compare.
    bool stop_check_due(std::uint32_t epoch) const noexcept { return stop_epoch_seen_ != epoch; }
    /// Records that the token was found unstopped during `epoch`.
    void stop_checked(std::uint32_t epoch) noexcept { stop_epoch_seen_ = epoch; }

    /// Once the coroutine starts on `ex`: a stop request on its own token makes `ex` look
    /// for ops to cancel. (Inherited tokens are watched by whoever owns them.)
    void watch_own_stop_token(executor* ex)
    {
        if (ex != nullptr && own_ && !own_->watch)
            own_->watch.emplace(own_->token, stop_notifier{ex});
    }

    /// Resumes the continuation by symmetric transfer, so long chains of tasks that complete
    /// at once do not grow the stack.
    struct final_awaiter {
        bool await_ready() const noexcept { return false; }
        template <class Promise>
        std::coroutine_handle<> await_suspend(std::coroutine_handle<Promise> h) const noexcept
        {
            std::coroutine_handle<> next = h.promise().continuation();
            return next ? next : std::noop_coroutine();
        }
        void await_resume() const noexcept {}
    };

private:
    std::coroutine_handle<> continuation_;
    executor* executor_ = nullptr;
    const std::stop_token* token_ = nullptr;
    std::uint32_t stop_epoch_seen_ = 0; // executor epochs start at 1: the first op reads token_
    // A token of the coroutine's own (with_stop_token) and the callback that watches it. Rare,
    // so kept out of line: every task frame would otherwise carry about 60 bytes for it.
    struct own_stop {
        explicit own_stop(std::stop_token t) noexcept : token(std::move(t)) {}
        std::stop_token token;
        std::optional<std::stop_callback<stop_notifier>> watch;
    };
    std::unique_ptr<own_stop> own_;
};

/// Detects a coil promise (one that carries a stop token) at a suspension point.
template <class Promise>
concept has_stop_token = requires(const Promise& p) {
    { p.stop_token_ptr() } -> std::convertible_to<const std::stop_token*>;
};

/// Detects a promise that knows its executor.
template <class Promise>
concept knows_executor = requires(const Promise& p) {
    { p.owning_executor() } -> std::convertible_to<executor*>;
};

/// The executor of the coroutine behind `h`, or the one running on this thread.
template <class Promise>
executor* executor_of(std::coroutine_handle<Promise> h) noexcept
{
    if constexpr (knows_executor<Promise>) {
        if (executor* ex = h.promise().owning_executor())
            return ex;
    }
    return running_executor();
}

/// Detects a promise that remembers when it last found its stop token unstopped.
template <class Promise>
concept has_stop_epoch = requires(Promise& p, std::uint32_t e) {
    { p.stop_check_due(e) } -> std::same_as<bool>;
    p.stop_checked(e);
};

/// Whether `token` (the stop token of the coroutine behind `h`) has been stopped, for an op
/// about to start on an executor whose stop epoch is `epoch`. A coroutine that already found
/// it unstopped during this epoch skips reading it: a stop requested since then either moved
/// the epoch (a stop on the executor's thread) or is still pending in the executor, whose
/// search for stopped ops at its next loop turn cancels this op too.
template <class Promise>
bool stop_requested_now(std::coroutine_handle<Promise> h, const std::stop_token& token,
                        std::uint32_t epoch) noexcept
{
    if constexpr (has_stop_epoch<Promise>) {
        Promise& p = h.promise();
        if (!p.stop_check_due(epoch))
            return false;
        if (token.stop_requested())
            return true;
        p.stop_checked(epoch);
        return false;
    } else {
        return token.stop_requested();
    }
}

/// The stop token of the coroutine behind `h`, or null when it has none.
template <class Promise>
const std::stop_token* stop_token_of(std::coroutine_handle<Promise> h) noexcept
{
    if constexpr (has_stop_token<Promise>)
        return h.promise().stop_token_ptr();
    else
        return nullptr;
}

template <class T>
class task_promise : public promise_base {
public:
    task<T> get_return_object() noexcept;
    std::suspend_always initial_suspend() const noexcept { return {}; }
    final_awaiter final_suspend() const noexcept { return {}; }

    template <class U>
        requires std::is_convertible_v<U&&, T>
    void return_value(U&& value) noexcept(std::is_nothrow_constructible_v<T, U&&>)
    {
        result_.template emplace<1>(std::forward<U>(value));
    }
    void unhandled_exception() noexcept { result_.template emplace<2>(std::current_exception()); }

    /// The value, or rethrows what the coroutine threw. Precondition: it has finished.
    T take()
    {
        if (result_.index() == 2)
            std::rethrow_exception(std::get<2>(result_));
        assert(result_.index() == 1 && "task finished without a result");
        return std::move(std::get<1>(result_));
    }

private:
    std::variant<std::monostate, T, std::exception_ptr> result_;
};

template <>
class task_promise<void> : public promise_base {
public:
    task<void> get_return_object() noexcept;
    std::suspend_always initial_suspend() const noexcept { return {}; }
    final_awaiter final_suspend() const noexcept { return {}; }
    void return_void() const noexcept {}
    void unhandled_exception() noexcept { exception_ = std::current_exception(); }

    void take()
    {
        if (exception_)
            std::rethrow_exception(exception_);
    }

private:
    std::exception_ptr exception_;
};

} // namespace detail

/// A lazy coroutine producing a `T` (or nothing, for `task<void>`).
///
/// A task does nothing until it is awaited (`co_await std::move(t)` or `co_await f()`), run
/// (`coil::run`, `executor::run`) or spawned (`executor::spawn`). Awaiting it starts it and
/// resumes the awaiter when it ends, by symmetric transfer: a loop of a million awaits of tasks
/// that complete at once does not grow the stack. An exception thrown in the task propagates
/// to its awaiter. The task inherits its awaiter's stop token, so cancelling a parent cancels
/// the operations its children are waiting on.
///
/// Lifetime: the task object owns the coroutine frame. Destroying a task that never started
/// frees it. A started task is owned by whoever awaits it and only ends by running to its end,
/// or at executor shutdown after every operation it had in flight has completed
/// (docs/lifetimes.md).
template <class T>
class [[nodiscard]] task {
public:
    using promise_type = detail::task_promise<T>;
    using value_type = T;

    task() noexcept = default;
    explicit task(std::coroutine_handle<promise_type> h) noexcept : handle_(h) {}
    task(task&& other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
    task& operator=(task&& other) noexcept
    {
        if (this != &other) {
            destroy();
            handle_ = std::exchange(other.handle_, nullptr);
        }
        return *this;
    }
    task(const task&) = delete;
    task& operator=(const task&) = delete;
    ~task() { destroy(); }

    /// True when the task holds a coroutine.
    bool valid() const noexcept { return handle_ != nullptr; }
    /// True when the coroutine has run to its end.
    bool done() const noexcept { return handle_ && handle_.done(); }

    class awaiter {
    public:
        explicit awaiter(std::coroutine_handle<promise_type> h) noexcept : handle_(h) {}
        bool await_ready() const noexcept { return !handle_ || handle_.done(); }

        template <class Promise>
        std::coroutine_handle<> await_suspend(std::coroutine_handle<Promise> parent) noexcept
        {
            auto& child = handle_.promise();
            child.set_continuation(parent);
            // A token set explicitly on the child (with_stop_token) wins over the parent's.
            if constexpr (detail::has_stop_token<Promise>)
                child.inherit_stop_token(parent.promise().stop_token_ptr());
            executor* ex = detail::executor_of(parent);
            child.set_owning_executor(ex);
            child.watch_own_stop_token(ex);
            return handle_;
        }

        T await_resume()
        {
            assert(handle_ && "awaiting an empty task");
            return handle_.promise().take();
        }

    private:
        std::coroutine_handle<promise_type> handle_;
    };

    /// Starts the task and suspends the caller until it ends; yields its value or rethrows.
    awaiter operator co_await() && noexcept { return awaiter(handle_); }

    /// The coroutine handle, for the runtime's own drivers. The task keeps ownership.
    std::coroutine_handle<promise_type> handle() const noexcept { return handle_; }

    /// Gives up ownership of the frame.
    std::coroutine_handle<promise_type> release() noexcept { return std::exchange(handle_, nullptr); }

private:
    void destroy() noexcept
    {
        if (handle_) {
            handle_.destroy();
            handle_ = nullptr;
        }
    }

    std::coroutine_handle<promise_type> handle_;
};

namespace detail {

template <class T>
task<T> task_promise<T>::get_return_object() noexcept
{
    return task<T>(std::coroutine_handle<task_promise<T>>::from_promise(*this));
}

inline task<void> task_promise<void>::get_return_object() noexcept
{
    return task<void>(std::coroutine_handle<task_promise<void>>::from_promise(*this));
}

} // namespace detail

/// Runs `t` with `token` as its stop token (instead of inheriting its awaiter's): a stop
/// request on `token` cancels the operations `t` awaits.
template <class T>
task<T> with_stop_token(std::stop_token token, task<T> t)
{
    t.handle().promise().set_stop_token(std::move(token));
    return t;
}

/// An awaitable that yields the current task's stop token.
struct get_stop_token_t {
    bool await_ready() const noexcept { return false; }
    template <class Promise>
    bool await_suspend(std::coroutine_handle<Promise> h) noexcept
    {
        if (const std::stop_token* token = detail::stop_token_of(h))
            token_ = *token;
        return false;
    }
    std::stop_token await_resume() noexcept { return std::move(token_); }
    std::stop_token token_;
};

/// `std::stop_token t = co_await coil::get_stop_token();`
inline get_stop_token_t get_stop_token() noexcept { return {}; }

} // namespace coil
