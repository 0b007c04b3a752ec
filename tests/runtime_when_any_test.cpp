// SPDX-License-Identifier: MIT
// when_any: the first task to finish wins; the losers' ops are cancelled and awaited before it returns.

#include "runtime_test_support.hpp"
#include "test_executor.hpp"

#include <coil/coil.hpp>

#include <catch2/catch_test_macros.hpp>

#include <sys/eventfd.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <thread>
#include <chrono>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using coil_test::bytes_of;

namespace {

bool is_canceled(const std::error_code& ec)
{
    return ec == std::make_error_code(std::errc::operation_canceled);
}

/// A loser: blocks in a read of an empty pipe and records how the read ended.
coil::task<int> blocked_read(int fd, std::optional<std::error_code>& ended)
{
    std::array<std::byte, 16> buffer{};
    coil::result<std::size_t> r = co_await coil::read(fd, buffer, coil::current_position);
    ended = r.ok() ? std::error_code() : r.error();
    co_return -1;
}

coil::task<int> nop_then(int value)
{
    coil::result<void> r = co_await coil::nop();
    if (!r)
        throw std::system_error(r.error());
    co_return value;
}

coil::task<int> sleep_then(int value)
{
    coil::result<void> r = co_await coil::sleep_for(1ms);
    if (!r)
        throw std::system_error(r.error());
    co_return value;
}

} // namespace

TEST_CASE("runtime: when_any with a nop winner cancels a blocked pipe read before returning",
          "[runtime][when_any]")
{
    auto p = coil_test::make_pipe();
    std::optional<std::error_code> loser_ended;
    coil::executor ex(coil_test::executor_options());
    auto body = [&]() -> coil::task<void> {
        auto outcome =
            co_await coil::when_any(blocked_read(p.read_end.get(), loser_ended), nop_then(7));
        const std::variant<int, int>& winner = outcome.winner;
        // when_any has returned: the loser's read must already have ended.
        REQUIRE(loser_ended.has_value());
        CHECK(is_canceled(*loser_ended));
        CHECK(ex.in_flight() == 0);
        CHECK(winner.index() == 1);
        CHECK(std::get<1>(winner) == 7);
    };
    ex.run(body());
    CHECK(ex.stats().cancels_submitted >= 1);
}

TEST_CASE("runtime: when_any with a short sleep winner cancels a blocked pipe read",
          "[runtime][when_any]")
{
    auto p = coil_test::make_pipe();
    std::optional<std::error_code> loser_ended;
    auto body = [&]() -> coil::task<std::pair<std::size_t, bool>> {
        auto winner = co_await coil::when_any(sleep_then(3), blocked_read(p.read_end.get(), loser_ended));
        const bool loser_done_first = loser_ended.has_value() && is_canceled(*loser_ended);
        co_return std::pair{winner.index(), loser_done_first};
    };
    auto [index, loser_done_first] = coil_test::run(body());
    CHECK(index == 0);
    CHECK(loser_done_first);
}

TEST_CASE("runtime: when_any yields the read that gets data, with its bytes", "[runtime][when_any]")
{
    auto quiet = coil_test::make_pipe();
    auto busy = coil_test::make_pipe();
    std::optional<std::error_code> quiet_ended;
    auto reader = [](int fd) -> coil::task<std::string> {
        std::array<char, 16> buffer{};
        coil::result<std::size_t> n =
            co_await coil::read(fd, std::as_writable_bytes(std::span(buffer)), coil::current_position);
        if (!n)
            throw std::system_error(n.error());
        co_return std::string(buffer.data(), *n);
    };
    auto writer = [&]() -> coil::task<void> {
        co_await coil::yield();
        coil_test::write_fully(busy.write_end.get(), bytes_of("winner"));
    };
    auto body = [&]() -> coil::task<std::variant<int, std::string>> {
        auto w = coil::executor::current()->spawn(writer());
        auto result = co_await coil::when_any(blocked_read(quiet.read_end.get(), quiet_ended),
                                              reader(busy.read_end.get()));
        co_await w;
        co_return result.winner;
    };
    auto result = coil_test::run(body());
    REQUIRE(result.index() == 1);
    CHECK(std::get<1>(result) == "winner");
    REQUIRE(quiet_ended.has_value());
    CHECK(is_canceled(*quiet_ended));
}

TEST_CASE("runtime: the vector form of when_any yields the winner's index and cancels the rest",
          "[runtime][when_any]")
{
    std::vector<coil_test::pipe_fds> pipes;
    for (int i = 0; i < 5; ++i)
        pipes.push_back(coil_test::make_pipe());
    std::vector<std::optional<std::error_code>> ended(5);
    auto body = [&]() -> coil::task<coil::when_any_result<int>> {
        std::vector<coil::task<int>> tasks;
        for (std::size_t i = 0; i < 5; ++i)
            tasks.push_back(i == 3 ? nop_then(30) : blocked_read(pipes[i].read_end.get(), ended[i]));
        auto result = co_await coil::when_any(std::move(tasks));
        for (std::size_t i = 0; i < 5; ++i)
            if (i != 3)
                REQUIRE(ended[i].has_value()); // every loser ended before when_any returned
        co_return result;
    };
    coil::when_any_result<int> result = coil_test::run(body());
    CHECK(result.index == 3);
    CHECK(result.value == 30);
    for (std::size_t i = 0; i < 5; ++i) {
        if (i == 3)
            continue;
        REQUIRE(ended[i].has_value());
        CHECK(is_canceled(*ended[i]));
    }
}

TEST_CASE("runtime: when_any rethrows the winner's exception after the losers ended",
          "[runtime][when_any]")
{
    auto p = coil_test::make_pipe();
    std::optional<std::error_code> loser_ended;
    bool loser_ended_before_rethrow = false;
    auto thrower = []() -> coil::task<int> {
        coil::result<void> r = co_await coil::nop();
        (void)r;
        throw std::runtime_error("winner failed");
    };
    auto body = [&]() -> coil::task<void> {
        try {
            (void)co_await coil::when_any(blocked_read(p.read_end.get(), loser_ended), thrower());
        } catch (const std::runtime_error&) {
            loser_ended_before_rethrow = loser_ended.has_value();
            throw;
        }
    };
    CHECK_THROWS_AS(coil_test::run(body()), std::runtime_error);
    CHECK(loser_ended_before_rethrow);
    REQUIRE(loser_ended.has_value());
    CHECK(is_canceled(*loser_ended));
}

TEST_CASE("runtime: when_any of void tasks reports which one finished", "[runtime][when_any]")
{
    auto p = coil_test::make_pipe();
    auto blocked = [](int fd) -> coil::task<void> {
        std::array<std::byte, 4> buffer{};
        coil::result<std::size_t> r = co_await coil::read(fd, buffer, coil::current_position);
        (void)r;
    };
    auto prompt = []() -> coil::task<void> {
        coil::result<void> r = co_await coil::nop();
        (void)r;
    };
    auto body = [&]() -> coil::task<std::size_t> {
        auto v = co_await coil::when_any(blocked(p.read_end.get()), prompt());
        co_return v.index();
    };
    CHECK(coil_test::run(body()) == 1);
}

TEST_CASE("runtime: when_any loses no data: eventfd reads raced against short timers sum to what "
          "another thread wrote",
          "[runtime][when_any][threads]")
{
    // Another thread writes 1..10,000 to an eventfd. A loop races a read of it against a 0-1 ms
    // timer. When the timer wins, the read is cancelled, but its completion may already have
    // taken the counter: that value comes back in `losers`, and must be counted too.
    constexpr std::uint64_t count = 10'000;
    constexpr std::uint64_t total = count * (count + 1) / 2;
    int efd = ::eventfd(0, EFD_CLOEXEC);
    REQUIRE(efd >= 0);
    coil_test::unique_fd guard(efd);
    std::atomic<bool> writer_done{false};
    std::atomic<bool> write_failed{false};
    std::thread writer([&] {
        for (std::uint64_t i = 1; i <= count; ++i) {
            if (::write(efd, &i, sizeof(i)) != sizeof(i))
                write_failed = true;
            if (i % 16 == 0)
                std::this_thread::sleep_for(std::chrono::microseconds(20));
        }
        writer_done = true;
    });
    auto read_counter = [](int fd) -> coil::task<std::uint64_t> {
        std::uint64_t v = 0;
        auto n = co_await coil::read(fd, std::as_writable_bytes(std::span(&v, 1)));
        co_return n ? v : 0;
    };
    auto timer = [](std::chrono::microseconds d) -> coil::task<void> {
        (void)co_await coil::sleep_for(d);
    };
    std::size_t timer_wins = 0;
    std::size_t late_reads = 0;
    std::size_t final_timer_wins = 0;
    auto body = [&]() -> coil::task<std::uint64_t> {
        std::uint64_t sum = 0;
        std::uint64_t round = 0;
        int idle_rounds = 0; // rounds without data after the writer finished
        while (sum < total && idle_rounds < 100) {
            const auto d = std::chrono::microseconds((round++ * 37) % 1000);
            auto outcome = co_await coil::when_any(read_counter(efd), timer(d));
            if (outcome.index() == 0) {
                sum += std::get<0>(outcome.winner);
            } else {
                ++timer_wins;
                if (auto& lost = std::get<0>(outcome.losers); lost && *lost != 0) {
                    ++late_reads;
                    sum += *lost;
                } else if (writer_done) {
                    ++idle_rounds; // data lost, if the sum is still short: do not wait forever
                }
            }
        }
        // Every value has been read: now each read must lose to its timer and be cancelled
        // without taking anything (how often the timer won above depends on the machine's
        // speed; these rounds make sure the cancel path ran).
        for (int i = 0; i < 3 && sum == total; ++i) {
            auto outcome = co_await coil::when_any(read_counter(efd), timer(std::chrono::milliseconds(1)));
            if (outcome.index() == 0) {
                sum += std::get<0>(outcome.winner);
            } else {
                ++final_timer_wins;
                if (auto& lost = std::get<0>(outcome.losers); lost && *lost != 0)
                    sum += *lost;
            }
        }
        co_return sum;
    };
    const std::uint64_t sum = coil_test::run(body());
    writer.join();
    INFO("timer wins while the writer ran: " << timer_wins
                                             << ", reads that completed after losing: " << late_reads);
    REQUIRE_FALSE(write_failed);
    CHECK(sum == total);
    CHECK(final_timer_wins == 3);
}

TEST_CASE("runtime: the vector form of when_any hands back what losers returned after their "
          "cancel, leaves empty the winner's slot and a loser that threw; no tasks is "
          "invalid_argument",
          "[runtime][when_any]")
{
    std::vector<coil_test::pipe_fds> pipes;
    for (int i = 0; i < 4; ++i)
        pipes.push_back(coil_test::make_pipe());
    // A loser that, cancelled, returns a value anyway (or throws, when `value` is negative).
    auto stubborn = [](int fd, int value) -> coil::task<int> {
        std::array<std::byte, 16> buffer{};
        auto r = co_await coil::read(fd, buffer, coil::current_position);
        if (r)
            co_return 1000; // data: not in this test
        if (value < 0)
            throw std::runtime_error("loser gave up");
        co_return value;
    };
    auto body = [&]() -> coil::task<coil::when_any_result<int>> {
        std::vector<coil::task<int>> tasks;
        tasks.push_back(stubborn(pipes[0].read_end.get(), 7));
        tasks.push_back(nop_then(30));
        tasks.push_back(stubborn(pipes[2].read_end.get(), -1));
        tasks.push_back(stubborn(pipes[3].read_end.get(), 9));
        co_return co_await coil::when_any(std::move(tasks));
    };
    coil::when_any_result<int> result = coil_test::run(body());
    CHECK(result.index == 1);
    CHECK(result.value == 30);
    REQUIRE(result.losers.size() == 4);
    CHECK(result.losers[0] == std::optional<int>(7));
    CHECK_FALSE(result.losers[1].has_value()); // the winner
    CHECK_FALSE(result.losers[2].has_value()); // threw
    CHECK(result.losers[3] == std::optional<int>(9));

    auto none = []() -> coil::task<int> {
        auto r = co_await coil::when_any(std::vector<coil::task<int>>{});
        co_return static_cast<int>(r.index);
    };
    CHECK_THROWS_AS(coil_test::run(none()), std::invalid_argument);
}

TEST_CASE("runtime: when_any waits for a loser awaiting a join_handle, which no stop request "
          "reaches, and hands back what the joined task returned",
          "[runtime][when_any][spawn]")
{
    coil::executor ex(coil_test::executor_options());
    std::vector<std::string> order;
    bool winner_done = false;
    coil::event release;
    auto body = [&]() -> coil::task<coil::first_of<int, int>> {
        auto spawned = [&]() -> coil::task<int> {
            (void)co_await release.wait(); // no stop scope of its own: only set() ends this
            order.push_back("spawned task ended");
            co_return 42;
        };
        coil::join_handle<int> handle = ex.spawn(spawned());
        auto releaser = [&]() -> coil::task<void> {
            while (!winner_done)
                co_await coil::yield();
            for (int i = 0; i < 5; ++i)
                co_await coil::yield(); // when_any has asked its loser to stop by now
            order.push_back("released");
            release.set();
        };
        auto r = ex.spawn(releaser());
        auto join = [&]() -> coil::task<int> { co_return co_await handle; };
        auto winner = [&]() -> coil::task<int> {
            co_await coil::yield();
            winner_done = true;
            order.push_back("winner");
            co_return 7;
        };
        auto result = co_await coil::when_any(join(), winner());
        order.push_back("when_any returned");
        co_await r;
        co_return result;
    };
    const coil::first_of<int, int> result = ex.run(body());
    CHECK(result.index() == 1);
    CHECK(std::get<1>(result.winner) == 7);
    CHECK(std::get<0>(result.losers) == std::optional<int>(42));
    CHECK(order == std::vector<std::string>{"winner", "released", "spawned task ended",
                                            "when_any returned"});
}

TEST_CASE("runtime: when_any's stop does not reach a loser that has a token of its own "
          "(with_stop_token): when_any returns once that token ends it",
          "[runtime][when_any][cancel]")
{
    coil::executor ex(coil_test::executor_options());
    std::vector<std::string> order;
    bool winner_done = false;
    std::stop_source own;
    coil::event never;
    auto body = [&]() -> coil::task<coil::first_of<std::string, int>> {
        auto releaser = [&]() -> coil::task<void> {
            while (!winner_done)
                co_await coil::yield();
            for (int i = 0; i < 5; ++i)
                co_await coil::yield(); // when_any has asked its loser to stop by now
            order.push_back("own token stopped");
            own.request_stop();
        };
        auto r = ex.spawn(releaser());
        auto loser = [&]() -> coil::task<std::string> {
            auto waited = co_await never.wait();
            order.push_back("loser ended");
            co_return waited ? "set" : waited.error().message();
        };
        auto winner = [&]() -> coil::task<int> {
            co_await coil::yield();
            winner_done = true;
            order.push_back("winner");
            co_return 7;
        };
        auto result =
            co_await coil::when_any(coil::with_stop_token(own.get_token(), loser()), winner());
        order.push_back("when_any returned");
        co_await r;
        co_return result;
    };
    const auto result = ex.run(body());
    CHECK(result.index() == 1);
    CHECK(std::get<0>(result.losers) ==
          std::optional<std::string>(std::make_error_code(std::errc::operation_canceled).message()));
    CHECK(order == std::vector<std::string>{"winner", "own token stopped", "loser ended",
                                            "when_any returned"});
}
