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

/// Makes the executor current on this thread for a scope, restoring the previous one after.
class current_executor_scope {
public:
    explicit current_executor_scope(executor* ex) noexcept;
    ~current_executor_scope();
    current_executor_scope(const current_executor_scope&) = delete;
    current_executor_scope& operator=(const current_executor_scope&) = delete;

private:
    executor* previous_;
};

} // namespace detail

template <class T>
join_handle<T> executor::spawn(task<T> t)
{
    auto coroutine = detail::drive(std::move(t));
    auto& promise = coroutine.handle.promise();
    track(promise);
    schedule(coroutine.handle);
    return join_handle<T>(&promise);
}

template <class T>
T executor::run(task<T> t)
{
    detail::current_executor_scope scope(this);
    join_handle<T> root = spawn(std::move(t));
    run_loop();
    if (!root.done())
        throw std::system_error(std::make_error_code(std::errc::operation_canceled),
                                "coil: the executor was stopped before the task finished");
    return root.get();
}

} // namespace coil
