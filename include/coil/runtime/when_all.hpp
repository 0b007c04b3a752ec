// SPDX-License-Identifier: MIT
/// @file
/// `when_all`: runs tasks concurrently and waits for all of them.
#pragma once

#include <coil/runtime/child_group.hpp>
#include <coil/runtime/task.hpp>

#include <cstddef>
#include <optional>
#include <tuple>
#include <utility>
#include <vector>

namespace coil {

/// Runs every task concurrently on the current executor and yields all their values, as a
/// tuple in argument order (`void` tasks give `detail::void_result`).
///
/// If a task throws, the others are asked to stop (their pending operations are cancelled),
/// all of them are awaited, and the first exception is rethrown. A stop request on the
/// awaiting task's token reaches every child. Children never outlive the `co_await`.
template <class... T>
task<std::tuple<detail::non_void_t<T>...>> when_all(task<T>... tasks)
{
    detail::child_group group;
    group.link(co_await get_stop_token());
    std::tuple<std::optional<detail::non_void_t<T>>...> values;
    auto start_one = [&]<std::size_t I>(std::integral_constant<std::size_t, I>, auto& t) {
        using value_type = std::tuple_element_t<I, std::tuple<T...>>;
        auto& out = std::get<I>(values);
        if constexpr (std::is_void_v<value_type>)
            group.start(detail::run_child(group, std::move(t), [&out] { out.emplace(); }));
        else
            group.start(detail::run_child(group, std::move(t),
                                          [&out](value_type v) { out.emplace(std::move(v)); }));
    };
    [&]<std::size_t... I>(std::index_sequence<I...>) {
        (start_one(std::integral_constant<std::size_t, I>{}, tasks), ...);
    }(std::index_sequence_for<T...>{});
    co_await group.join();
    if (group.exception())
        std::rethrow_exception(group.exception());
    co_return std::apply([](auto&... v) { return std::tuple<detail::non_void_t<T>...>(std::move(*v)...); },
                         values);
}

/// Runs every task of `tasks` concurrently and yields their values in order.
/// Exceptions and stop requests behave as for the variadic form.
template <class T>
task<std::vector<detail::non_void_t<T>>> when_all(std::vector<task<T>> tasks)
{
    detail::child_group group;
    group.link(co_await get_stop_token());
    std::vector<std::optional<detail::non_void_t<T>>> values(tasks.size());
    for (std::size_t i = 0; i < tasks.size(); ++i) {
        auto& out = values[i];
        if constexpr (std::is_void_v<T>)
            group.start(detail::run_child(group, std::move(tasks[i]), [&out] { out.emplace(); }));
        else
            group.start(detail::run_child(group, std::move(tasks[i]),
                                          [&out](T v) { out.emplace(std::move(v)); }));
    }
    co_await group.join();
    if (group.exception())
        std::rethrow_exception(group.exception());
    std::vector<detail::non_void_t<T>> out;
    out.reserve(values.size());
    for (auto& v : values)
        out.push_back(std::move(*v));
    co_return out;
}

} // namespace coil
