// SPDX-License-Identifier: MIT
/// @file
/// `task<T>`: coil's lazy, move-only coroutine type.
#pragma once

#include <coil/runtime/detail/stop_scope.hpp>

#include <cassert>
#include <concepts>
#include <coroutine>
#include <cstdint>
#include <stdexcept>
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

/// The executor running on this thread, or null. Defined in runtime/executor.cpp.
executor* running_executor() noexcept;

/// The errors for a co_await of a coil awaitable in a coroutine no executor runs, and in one
/// whose executor is not the one running on this thread. Defined in runtime/executor.cpp.
[[noreturn]] void throw_no_executor();
[[noreturn]] void throw_foreign_await();

/// What every coil coroutine promise carries: who to resume when it ends, the executor it
/// runs on, and the stop scope that the operations it awaits join.
///
/// The scope is held by pointer: a task uses the scope of whoever awaits it (which outlives
/// it), or its own when given a token with `with_stop_token`. Passing a scope down a chain of
/// awaits thus costs nothing, and an op reads one pointer to find it.
class promise_base {
public:
    std::coroutine_handle<> continuation() const noexcept { return continuation_; }
    void set_continuation(std::coroutine_handle<> h) noexcept { continuation_ = h; }

    /// The executor this coroutine runs on (inherited from its awaiter), or null if unknown.
    executor* owning_executor() const noexcept { return executor_; }
    void set_owning_executor(executor* ex) noexcept { executor_ = ex; }

    /// The scope this coroutine's ops join, or null when nothing can stop them.
    stop_scope* scope() const noexcept { return scope_; }

    /// Starts the coroutine under `parent` (its awaiter's scope, which outlives it) on `ex`,
    /// unless it has a token of its own: then its own scope, made now on `ex`.
    void enter_scope(executor* ex, stop_scope* parent)
    {
        executor_ = ex;
        if (!own_) {
            scope_ = parent;
        } else if (ex != nullptr && !own_->scope) {
            scope_ = &own_->scope.emplace(*ex, own_->token);
        }
    }

    /// Gives the coroutine a token of its own (`with_stop_token`). Before it starts only.
    void set_stop_token(std::stop_token token)
    {
        own_ = std::make_unique<own_stop>(std::move(token));
    }

    /// Resumes the continuation by symmetric transfer, so long chains of tasks that complete
    /// at once do not grow the stack.
    struct final_awaiter {
        bool await_ready() const noexcept { return false; }
        template <class Promise>
        std::coroutine_handle<> await_suspend(std::coroutine_handle<Promise> h) const noexcept
        {
            promise_base& self = h.promise();
            if (self.awaiting_parent_ != nullptr)
                std::exchange(self.awaiting_parent_, nullptr)->awaited_ = nullptr;
            // A finished task may be kept (and destroyed) long after its executor: its own
            // scope, registered with the user's token, goes now, on the executor's thread, so
            // that a later stop request reaches nothing.
            if (self.own_ && self.own_->scope) {
                self.scope_ = nullptr;
                self.own_->scope.reset();
            }
            std::coroutine_handle<> next = self.continuation();
            return next ? next : std::noop_coroutine();
        }
        void await_resume() const noexcept {}
    };

    /// Records that `parent`'s coroutine is suspended awaiting this one, whose frame the task
    /// object at `owner` owns (in `parent`'s frame); `teardown(owner)` destroys it.
    void link_awaited_by(promise_base& parent, void* owner, void (*teardown)(void*) noexcept) noexcept
    {
        parent.awaited_ = this;
        awaiting_parent_ = &parent;
        owner_ = owner;
        teardown_ = teardown;
    }

    /// The task object that owns this frame moved from `from` to `to` (a task may be moved
    /// while it is awaited, e.g. inside a vector that grows).
    void owner_moved(void* from, void* to) noexcept
    {
        if (owner_ == from)
            owner_ = to;
    }

    /// Forgets the parent awaiting this coroutine (its frame is being destroyed).
    void unlink_from_parent() noexcept
    {
        if (awaiting_parent_ != nullptr)
            std::exchange(awaiting_parent_, nullptr)->awaited_ = nullptr;
    }

    /// Destroys the chain of tasks `top` is suspended awaiting (not `top` itself), deepest
    /// first. Destroying a frame destroys the task it awaits from inside, one nested call per
    /// level: a suspended chain of a few hundred thousand tasks, torn down at shutdown, would
    /// overflow the stack. Bottom-up, each frame is destroyed after the one it awaits, as the
    /// nested way does (the awaited task goes first among what its frame holds), each in
    /// constant stack.
    static void destroy_awaited_chain(promise_base& top) noexcept
    {
        promise_base* p = &top;
        while (p->awaited_ != nullptr)
            p = p->awaited_;
        while (p != &top) {
            promise_base* parent = p->awaiting_parent_;
            parent->awaited_ = nullptr;
            p->teardown_(p->owner_); // awaits nothing now: no recursion down this chain
            p = parent;
        }
    }

protected:
    /// A task's result is taken once: a second `co_await` (or `run()`) of the same finished
    /// task would otherwise hand out a moved-from value.
    void check_untaken()
    {
        if (std::exchange(taken_, true))
            throw std::logic_error("coil: co_await (or run) of a task that has already been "
                                   "awaited (a task yields its result once)");
    }

private:
    std::coroutine_handle<> continuation_;
    bool taken_ = false;
    executor* executor_ = nullptr;
    stop_scope* scope_ = nullptr;
    // The chain of awaits, for destroy_awaited_chain: the task this coroutine is suspended
    // awaiting, and, in that task, who awaits it and the task object that owns its frame.
    promise_base* awaited_ = nullptr;
    promise_base* awaiting_parent_ = nullptr;
    void* owner_ = nullptr;
    void (*teardown_)(void*) noexcept = nullptr;
    // A token of the coroutine's own (with_stop_token) and, once started, its scope. Rare, so
    // kept out of line.
    struct own_stop {
        explicit own_stop(std::stop_token t) noexcept : token(std::move(t)) {}
        std::stop_token token;
        std::optional<stop_scope> scope;
    };
    std::unique_ptr<own_stop> own_;
};

/// Detects a coil promise (one that carries a stop scope) at a suspension point.
template <class Promise>
concept has_stop_scope = requires(const Promise& p) {
    { p.scope() } -> std::convertible_to<stop_scope*>;
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

/// The executor that a coil awaitable awaited in the coroutine behind `h` runs on: the
/// coroutine's own, or, for a coroutine no executor started (not a coil task), the one running
/// on this thread. Throws `std::logic_error` when there is none, and when the coroutine's
/// executor is not the one running on this thread: something resumed it on another thread
/// (another executor's `post`, a thread of the user's), where its executor's ring, timers and
/// ready queue must not be touched.
template <class Promise>
executor* awaiting_executor(std::coroutine_handle<Promise> h)
{
    executor* const running = running_executor();
    if constexpr (knows_executor<Promise>) {
        if (executor* ex = h.promise().owning_executor()) {
            if (ex != running) [[unlikely]]
                throw_foreign_await();
            return ex;
        }
    }
    if (running == nullptr) [[unlikely]]
        throw_no_executor();
    return running;
}

/// The stop scope of the coroutine behind `h`, or null when it has none.
template <class Promise>
stop_scope* scope_of(std::coroutine_handle<Promise> h) noexcept
{
    if constexpr (has_stop_scope<Promise>)
        return h.promise().scope();
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
        check_untaken();
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
        check_untaken();
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
    task(task&& other) noexcept : handle_(std::exchange(other.handle_, nullptr))
    {
        if (handle_)
            handle_.promise().owner_moved(&other, this);
    }
    task& operator=(task&& other) noexcept
    {
        if (this != &other) {
            destroy();
            handle_ = std::exchange(other.handle_, nullptr);
            if (handle_)
                handle_.promise().owner_moved(&other, this);
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
        explicit awaiter(task& owner) noexcept : handle_(owner.handle_), owner_(&owner) {}
        bool await_ready() const
        {
            if (handle_ && !handle_.done() && handle_.promise().continuation())
                throw std::logic_error("coil: a task awaited by two coroutines at once (a task "
                                       "is awaited once; share its result, or spawn it and "
                                       "await the join_handle)");
            return !handle_ || handle_.done();
        }

        template <class Promise>
        std::coroutine_handle<> await_suspend(std::coroutine_handle<Promise> parent) noexcept
        {
            auto& child = handle_.promise();
            child.set_continuation(parent);
            if constexpr (std::derived_from<Promise, detail::promise_base>)
                child.link_awaited_by(parent.promise(), owner_, &task::teardown);
            // A token set explicitly on the child (with_stop_token) wins over the parent's.
            child.enter_scope(detail::executor_of(parent), detail::scope_of(parent));
            return handle_;
        }

        T await_resume()
        {
            if (!handle_) // await_ready let it through, so that the error is thrown here
                throw std::logic_error("coil: co_await of an empty task (moved from, already "
                                       "run, or default-constructed)");
            return handle_.promise().take();
        }

    private:
        std::coroutine_handle<promise_type> handle_;
        task* owner_;
    };

    /// Starts the task and suspends the caller until it ends; yields its value or rethrows.
    awaiter operator co_await() && noexcept { return awaiter(*this); }

    /// The coroutine handle, for the runtime's own drivers. The task keeps ownership.
    std::coroutine_handle<promise_type> handle() const noexcept { return handle_; }

    /// Gives up ownership of the frame.
    std::coroutine_handle<promise_type> release() noexcept { return std::exchange(handle_, nullptr); }

private:
    void destroy() noexcept
    {
        if (handle_) {
            detail::promise_base::destroy_awaited_chain(handle_.promise());
            handle_.promise().unlink_from_parent();
            std::exchange(handle_, nullptr).destroy();
        }
    }
    // The teardown of a task in an awaited chain (promise_base::destroy_awaited_chain): the
    // frame it owns awaits nothing any more.
    static void teardown(void* owner) noexcept
    {
        std::exchange(static_cast<task*>(owner)->handle_, nullptr).destroy();
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
    if (!t.handle())
        throw std::logic_error("coil: with_stop_token of an empty task (moved from, already "
                               "run, or default-constructed)");
    t.handle().promise().set_stop_token(std::move(token));
    return t;
}

/// An awaitable that yields the current task's stop token.
struct get_stop_token_t {
    bool await_ready() const noexcept { return false; }
    template <class Promise>
    bool await_suspend(std::coroutine_handle<Promise> h) noexcept
    {
        if (const detail::stop_scope* scope = detail::scope_of(h))
            token_ = scope->token();
        return false;
    }
    std::stop_token await_resume() noexcept { return std::move(token_); }
    std::stop_token token_;
};

/// `std::stop_token t = co_await coil::get_stop_token();`
inline get_stop_token_t get_stop_token() noexcept { return {}; }

} // namespace coil
