// SPDX-License-Identifier: MIT
/// @file
/// `when_any`: runs tasks concurrently, yields the first to finish, cancels the rest.
#pragma once

#include <coil/runtime/child_group.hpp>
#include <coil/runtime/task.hpp>

#include <cstddef>
#include <optional>
#include <utility>
#include <variant>
#include <vector>

namespace coil {

/// Runs the tasks concurrently and yields the value of the first one to finish, as a variant
/// whose `index()` says which it was (`void` tasks give `detail::void_result`).
///
/// As soon as one finishes, the others are asked to stop: their pending operations are
/// cancelled (ASYNC_CANCEL), and `when_any` waits until every one of them has ended before it
/// returns, so no loser's memory is freed while the kernel may still touch it. If the first
/// task to finish threw, its exception is rethrown (after the others ended).
template <class... T>
task<std::variant<detail::non_void_t<T>...>> when_any(task<T>... tasks)
{
    static_assert(sizeof...(T) > 0, "when_any needs at least one task");
    detail::child_group group;
    group.link(co_await get_stop_token());
    std::optional<std::variant<detail::non_void_t<T>...>> winner;
    std::exception_ptr winner_exception;
    auto start_one = [&]<std::size_t I>(std::integral_constant<std::size_t, I>, auto& t) {
        using value_type = std::tuple_element_t<I, std::tuple<T...>>;
        auto wrapped = [](task<value_type> inner, std::optional<std::variant<detail::non_void_t<T>...>>& w,
                          std::exception_ptr& we, detail::child_group& g) -> task<void> {
            try {
                if constexpr (std::is_void_v<value_type>) {
                    co_await std::move(inner);
                    if (!w && !we)
                        w.emplace(std::in_place_index<I>);
                } else {
                    auto v = co_await std::move(inner);
                    if (!w && !we)
                        w.emplace(std::in_place_index<I>, std::move(v));
                }
            } catch (...) {
                if (!w && !we)
                    we = std::current_exception();
            }
            g.request_stop();
        };
        group.start(detail::run_child(group, wrapped(std::move(t), winner, winner_exception, group),
                                      [] {}));
    };
    [&]<std::size_t... I>(std::index_sequence<I...>) {
        (start_one(std::integral_constant<std::size_t, I>{}, tasks), ...);
    }(std::index_sequence_for<T...>{});
    co_await group.join();
    if (winner_exception)
        std::rethrow_exception(winner_exception);
    co_return std::move(*winner);
}

/// The result of the range form of `when_any`: which task won, and its value.
template <class T>
struct when_any_result {
    std::size_t index;
    T value;
};

/// Range form: runs every task of `tasks` concurrently and yields the first to finish with its
/// index. Precondition: `tasks` is not empty. Cancellation as for the variadic form.
template <class T>
task<when_any_result<detail::non_void_t<T>>> when_any(std::vector<task<T>> tasks)
{
    detail::child_group group;
    group.link(co_await get_stop_token());
    std::optional<when_any_result<detail::non_void_t<T>>> winner;
    std::exception_ptr winner_exception;
    auto wrapped = [](task<T> inner, std::size_t index,
                      std::optional<when_any_result<detail::non_void_t<T>>>& w,
                      std::exception_ptr& we, detail::child_group& g) -> task<void> {
        try {
            if constexpr (std::is_void_v<T>) {
                co_await std::move(inner);
                if (!w && !we)
                    w.emplace(when_any_result<detail::void_result>{index, {}});
            } else {
                auto v = co_await std::move(inner);
                if (!w && !we)
                    w.emplace(when_any_result<T>{index, std::move(v)});
            }
        } catch (...) {
            if (!w && !we)
                we = std::current_exception();
        }
        g.request_stop();
    };
    for (std::size_t i = 0; i < tasks.size(); ++i)
        group.start(detail::run_child(group, wrapped(std::move(tasks[i]), i, winner,
                                                     winner_exception, group),
                                      [] {}));
    co_await group.join();
    if (winner_exception)
        std::rethrow_exception(winner_exception);
    co_return std::move(*winner);
}

} // namespace coil
