// SPDX-License-Identifier: MIT
/// @file
/// `when_any`: runs tasks concurrently, yields the first to finish, cancels the rest, and
/// hands back every result that arrived anyway.
#pragma once

#include <coil/runtime/child_group.hpp>
#include <coil/runtime/task.hpp>

#include <cstddef>
#include <exception>
#include <optional>
#include <stdexcept>
#include <tuple>
#include <utility>
#include <variant>
#include <vector>

namespace coil {

/// What the variadic `when_any` yields: the winner, and the losers' values.
///
/// A loser is cancelled, but cancellation races with completion: an op whose completion
/// arrived before its cancel landed has done its work (bytes read, a connection accepted), and
/// the loser task returns normally with that result. `losers` keeps what every loser returned,
/// so nothing is silently lost: check it when the ops' effects matter.
template <class... T>
struct first_of {
    /// The value of the first task to finish; `winner.index()` says which task it was.
    std::variant<detail::non_void_t<T>...> winner;
    /// Per task: what it returned if it lost and still returned (its op completed, or it
    /// ended with `operation_canceled` in its own result type); empty for the winner and for
    /// losers that threw.
    std::tuple<std::optional<detail::non_void_t<T>>...> losers;

    std::size_t index() const noexcept { return winner.index(); }
};

/// Runs the tasks concurrently and yields the first to finish (`first_of<T...>`; `void` tasks
/// give `detail::void_result`).
///
/// As soon as one finishes, the others are asked to stop: their pending operations are
/// cancelled (ASYNC_CANCEL) and their sleeps end, and `when_any` waits until every one of them
/// has ended before it returns, so no loser's memory is freed while the kernel may still touch
/// it. A loser waiting on something a stop request does not reach (a `join_handle`), or with a
/// token of its own (`with_stop_token`, which replaces the group's), ends only when that ends;
/// an `event` wait ends with `operation_canceled`. If the first task to finish
/// threw, its exception is rethrown (after the others ended).
template <class... T>
task<first_of<T...>> when_any(task<T>... tasks)
{
    static_assert(sizeof...(T) > 0, "when_any needs at least one task");
    detail::child_group group;
    group.link(co_await get_stop_token());
    std::optional<std::variant<detail::non_void_t<T>...>> winner;
    std::tuple<std::optional<detail::non_void_t<T>>...> losers;
    std::exception_ptr winner_exception;
    auto start_one = [&]<std::size_t I>(std::integral_constant<std::size_t, I>, auto& t) {
        using value_type = std::tuple_element_t<I, std::tuple<T...>>;
        auto wrapped = [](task<value_type> inner,
                          std::optional<std::variant<detail::non_void_t<T>...>>& w,
                          std::optional<detail::non_void_t<value_type>>& lost,
                          std::exception_ptr& we, detail::child_group& g) -> task<void> {
            try {
                if constexpr (std::is_void_v<value_type>) {
                    co_await std::move(inner);
                    if (!w && !we)
                        w.emplace(std::in_place_index<I>);
                    else
                        lost.emplace();
                } else {
                    auto v = co_await std::move(inner);
                    if (!w && !we)
                        w.emplace(std::in_place_index<I>, std::move(v));
                    else
                        lost.emplace(std::move(v));
                }
            } catch (...) {
                if (!w && !we)
                    we = std::current_exception();
            }
            g.request_stop();
        };
        group.start(detail::run_child(
            group, wrapped(std::move(t), winner, std::get<I>(losers), winner_exception, group),
            [] {}));
    };
    [&]<std::size_t... I>(std::index_sequence<I...>) {
        (start_one(std::integral_constant<std::size_t, I>{}, tasks), ...);
    }(std::index_sequence_for<T...>{});
    co_await group.join();
    if (winner_exception)
        std::rethrow_exception(winner_exception);
    co_return first_of<T...>{std::move(*winner), std::move(losers)};
}

/// The result of the range form of `when_any`: which task won, its value, and what the
/// losers returned anyway.
template <class T>
struct when_any_result {
    std::size_t index;
    T value;
    /// Per task (by index): what it returned if it lost and still returned; empty for the
    /// winner and for losers that threw.
    std::vector<std::optional<T>> losers;
};

/// Range form: runs every task of `tasks` concurrently and yields the first to finish with its
/// index. Precondition: `tasks` is not empty (else `std::invalid_argument`). Cancellation and
/// losers' results as for the variadic form.
template <class T>
task<when_any_result<detail::non_void_t<T>>> when_any(std::vector<task<T>> tasks)
{
    using value_type = detail::non_void_t<T>;
    if (tasks.empty())
        throw std::invalid_argument("coil: when_any of no tasks");
    detail::child_group group;
    group.link(co_await get_stop_token());
    std::optional<std::pair<std::size_t, value_type>> winner;
    std::vector<std::optional<value_type>> losers(tasks.size());
    std::exception_ptr winner_exception;
    auto wrapped = [](task<T> inner, std::size_t index,
                      std::optional<std::pair<std::size_t, value_type>>& w,
                      std::optional<value_type>& lost, std::exception_ptr& we,
                      detail::child_group& g) -> task<void> {
        try {
            if constexpr (std::is_void_v<T>) {
                co_await std::move(inner);
                if (!w && !we)
                    w.emplace(index, detail::void_result{});
                else
                    lost.emplace();
            } else {
                auto v = co_await std::move(inner);
                if (!w && !we)
                    w.emplace(index, std::move(v));
                else
                    lost.emplace(std::move(v));
            }
        } catch (...) {
            if (!w && !we)
                we = std::current_exception();
        }
        g.request_stop();
    };
    for (std::size_t i = 0; i < tasks.size(); ++i)
        group.start(detail::run_child(
            group, wrapped(std::move(tasks[i]), i, winner, losers[i], winner_exception, group),
            [] {}));
    co_await group.join();
    if (winner_exception)
        std::rethrow_exception(winner_exception);
    co_return when_any_result<value_type>{winner->first, std::move(winner->second),
                                          std::move(losers)};
}

} // namespace coil
