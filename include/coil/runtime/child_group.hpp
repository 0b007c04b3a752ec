// SPDX-License-Identifier: MIT
/// @file
/// `detail::child_group`: the machinery behind when_all, when_any and nursery: a set of child
/// coroutines that share a stop source and a join point, and never outlive their parent.
#pragma once

#include <coil/runtime/task.hpp>

#include <cassert>
#include <coroutine>
#include <cstddef>
#include <exception>
#include <optional>
#include <stop_token>
#include <type_traits>
#include <utility>

namespace coil::detail {

class child_group;

/// The promise of one child. Children are linked into their group; a finished child
/// destroys its own frame and, if it was the last, resumes whoever joins the group.
class child_promise : public promise_base {
public:

    std::suspend_always initial_suspend() const noexcept { return {}; }

    struct final_awaiter {
        bool await_ready() const noexcept { return false; }
        std::coroutine_handle<> await_suspend(std::coroutine_handle<child_promise> h) noexcept;
        void await_resume() const noexcept {}
    };
    final_awaiter final_suspend() const noexcept { return {}; }

    void return_void() const noexcept {}
    // The child body catches everything and hands it to the group.
    void unhandled_exception() const noexcept { std::terminate(); }

    struct child_coroutine get_return_object() noexcept;

private:
    friend class child_group;
    child_group* group_ = nullptr;
    child_promise* prev_ = nullptr;
    child_promise* next_ = nullptr;
};

struct child_coroutine {
    using promise_type = child_promise;
    std::coroutine_handle<child_promise> handle;
};

inline child_coroutine child_promise::get_return_object() noexcept
{
    return {std::coroutine_handle<child_promise>::from_promise(*this)};
}

/// A group of child coroutines. Not movable: children point at it.
///
/// - `start()` runs a child at once, until its first suspension.
/// - `join()` waits until no child is left.
/// - `request_stop()` triggers the stop token every child's operations observe; a stop request
///   on the parent's token (passed to `link`) is forwarded to it.
/// - The destructor destroys children still alive. That only happens when the parent's frame
///   is destroyed at executor shutdown, after every operation has completed; a child awaiting
///   an op cancels and drains it as its awaiter is destroyed (docs/lifetimes.md).
class child_group {
public:
    child_group() : executor_(running_executor())
    {
        if (executor_ != nullptr)
            scope_.emplace(*executor_, stop_.get_token());
    }
    child_group(const child_group&) = delete;
    child_group& operator=(const child_group&) = delete;

    ~child_group()
    {
        while (head_ != nullptr) {
            child_promise* p = head_;
            unlink(*p);
            std::coroutine_handle<child_promise>::from_promise(*p).destroy();
        }
    }

    /// Forwards stop requests on `parent` to the children.
    void link(const std::stop_token& parent)
    {
        if (parent.stop_possible())
            parent_link_.emplace(parent, forward_stop{this});
    }

    /// Triggers the children's token: the executor cancels their pending ops (the ops of this
    /// group's scope, and through their own links those of nested groups). Safe from any
    /// thread.
    void request_stop() noexcept { stop_.request_stop(); }
    bool stop_requested() const noexcept { return stop_.stop_requested(); }
    std::stop_token stop_token() const noexcept { return stop_.get_token(); }

    /// Children started and not yet finished.
    std::size_t active() const noexcept { return active_; }

    /// Records the first exception a child threw (later ones are dropped) and stops the rest.
    void fail(std::exception_ptr e) noexcept
    {
        if (!exception_)
            exception_ = std::move(e);
        request_stop();
    }
    const std::exception_ptr& exception() const noexcept { return exception_; }
    /// The executor the children run on (null outside one).
    executor* owner() const noexcept { return executor_; }

    /// Starts `body` as a child: it runs now, until it first suspends.
    void start(child_coroutine child)
    {
        child_promise& p = child.handle.promise();
        p.group_ = this;
        p.enter_scope(executor_, scope_ ? &*scope_ : nullptr);
        p.next_ = head_;
        if (head_ != nullptr)
            head_->prev_ = &p;
        head_ = &p;
        ++active_;
        child.handle.resume();
    }

    struct join_awaiter {
        child_group& group;
        bool await_ready() const noexcept { return group.active_ == 0; }
        void await_suspend(std::coroutine_handle<> h) noexcept { group.joiner_ = h; }
        void await_resume() const noexcept {}
    };
    /// Waits until every child has finished.
    join_awaiter join() noexcept { return {*this}; }

private:
    friend class child_promise;

    struct forward_stop {
        child_group* target;
        void operator()() const noexcept { target->request_stop(); }
    };

    void unlink(child_promise& p) noexcept
    {
        if (p.prev_ != nullptr)
            p.prev_->next_ = p.next_;
        else
            head_ = p.next_;
        if (p.next_ != nullptr)
            p.next_->prev_ = p.prev_;
        p.prev_ = p.next_ = nullptr;
    }

    // Called from a child's final suspend: forget it; if it was the last, resume the joiner.
    std::coroutine_handle<> finished(child_promise& p) noexcept
    {
        unlink(p);
        std::coroutine_handle<child_promise>::from_promise(p).destroy();
        if (--active_ == 0 && joiner_)
            return std::exchange(joiner_, nullptr);
        return std::noop_coroutine();
    }

    executor* executor_;             // the executor the children run on
    std::stop_source stop_;
    std::optional<stop_scope> scope_; // stop_'s scope, which every child's ops join
    // Destroyed first (declared last of the three): no parent stop reaches a dying scope.
    std::optional<std::stop_callback<forward_stop>> parent_link_;
    child_promise* head_ = nullptr;
    std::size_t active_ = 0;
    std::coroutine_handle<> joiner_;
    std::exception_ptr exception_;
};

inline std::coroutine_handle<>
child_promise::final_awaiter::await_suspend(std::coroutine_handle<child_promise> h) noexcept
{
    return h.promise().group_->finished(h.promise());
}

/// A child body: awaits `t`, hands its value to `on_value`, and any exception to the group.
template <class T, class OnValue>
child_coroutine run_child(child_group& group, task<T> t, OnValue on_value)
{
    try {
        if constexpr (std::is_void_v<T>) {
            co_await std::move(t);
            on_value();
        } else {
            on_value(co_await std::move(t));
        }
    } catch (...) {
        group.fail(std::current_exception());
    }
}

/// `void` results are represented by this empty type in tuples and variants.
struct void_result {
    friend bool operator==(void_result, void_result) = default;
};

template <class T>
using non_void_t = std::conditional_t<std::is_void_v<T>, void_result, T>;

} // namespace coil::detail
