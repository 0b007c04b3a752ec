// SPDX-License-Identifier: MIT
/// @file
/// `nursery` and `with_nursery`: a scope whose child tasks never outlive it.
#pragma once

#include <coil/runtime/child_group.hpp>
#include <coil/runtime/task.hpp>

#include <concepts>
#include <exception>
#include <stdexcept>
#include <stop_token>
#include <utility>

namespace coil {

/// A set of child tasks bound to a scope. Made only by `with_nursery`, which waits for every
/// child before it returns.
class nursery {
public:
    nursery(const nursery&) = delete;
    nursery& operator=(const nursery&) = delete;

    /// Starts `t` as a child now (it runs until its first suspension). If a child throws, the
    /// nursery stops the others and `with_nursery` rethrows the first exception.
    /// On the nursery's executor's thread only (post a function that spawns).
    void spawn(task<void> t)
    {
        if (detail::running_executor() != group_.owner())
            throw std::logic_error("coil: nursery::spawn() called outside the nursery's "
                                   "executor (on another thread, or in another executor's "
                                   "task); hand the work over with that executor's post()");
        group_.start(detail::run_child(group_, std::move(t), [] {}));
    }

    /// Asks every child to stop: their pending operations are cancelled.
    void request_stop() noexcept { group_.request_stop(); }

    /// The token the children's operations observe.
    std::stop_token stop_token() const noexcept { return group_.stop_token(); }

    /// Children started and not yet finished.
    std::size_t active() const noexcept { return group_.active(); }

private:
    template <class F>
    friend task<void> with_nursery(F body);
    nursery() = default;
    detail::child_group group_;
};

/// Runs `body(n)` with a fresh nursery `n`, then waits until every task spawned into it has
/// finished. If the body or a child throws, the remaining children are asked to stop, all are
/// awaited, and the first exception is rethrown. A stop request on the awaiting task's token
/// reaches the body's operations and every child.
///
/// @code
/// co_await coil::with_nursery([&](coil::nursery& n) -> coil::task<void> {
///     for (int fd : clients) n.spawn(serve(fd));
///     co_return;
/// });
/// @endcode
template <class F>
task<void> with_nursery(F body)
{
    nursery n;
    n.group_.link(co_await get_stop_token());
    std::exception_ptr body_exception;
    try {
        co_await with_stop_token(n.stop_token(), body(n));
    } catch (...) {
        body_exception = std::current_exception();
        n.request_stop();
    }
    co_await n.group_.join();
    if (body_exception)
        std::rethrow_exception(body_exception);
    if (n.group_.exception())
        std::rethrow_exception(n.group_.exception());
}

} // namespace coil
