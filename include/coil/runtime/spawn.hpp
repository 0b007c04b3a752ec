// SPDX-License-Identifier: MIT
/// @file
/// `executor::run` and `executor::spawn`: the drivers that own top-level tasks.
#pragma once

#include <coil/runtime/executor.hpp>
#include <coil/runtime/join_handle.hpp>
#include <coil/runtime/task.hpp>

#include <system_error>
#include <type_traits>

namespace coil {
namespace detail {

template <class T>
spawned_coroutine<T> drive(task<T> t)
{
    if constexpr (std::is_void_v<T>)
        co_await std::move(t);
    else
        co_return co_await std::move(t);
}

/// Marks a `run()` active on `ex` for a scope: makes `ex` current on this thread and refuses a
/// nested run or one from a foreign thread (`std::logic_error`). Defined in executor.cpp.
class run_scope {
public:
    explicit run_scope(executor& ex);
    ~run_scope();
    run_scope(const run_scope&) = delete;
    run_scope& operator=(const run_scope&) = delete;

private:
    executor& executor_;
    executor* previous_;
};

} // namespace detail

template <class T>
join_handle<T> executor::spawn(task<T> t)
{
    if (!on_executor_thread())
        detail::throw_foreign_spawn();
    auto coroutine = detail::drive(std::move(t));
    auto& promise = coroutine.handle.promise();
    track(promise);
    schedule(promise.start_);
    return join_handle<T>(&promise);
}

template <class T>
T executor::run(task<T> t)
{
    detail::run_scope scope(*this);
    join_handle<T> root = spawn(std::move(t));
    run_loop();
    if (!root.done())
        throw std::system_error(std::make_error_code(std::errc::operation_canceled),
                                forked_ ? "coil: this executor was inherited through fork() "
                                          "while it ran: in the child it stopped at its next "
                                          "loop turn, leaving the parent's ring alone (create "
                                          "a new executor in the child)"
                                        : "coil: the executor was stopped before the task "
                                          "finished");
    return root.get();
}

} // namespace coil
