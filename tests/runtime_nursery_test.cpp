// SPDX-License-Identifier: MIT
// with_nursery: every child is joined before it returns, and the first exception is rethrown.

#include "runtime_test_support.hpp"
#include "test_executor.hpp"

#include <coil/coil.hpp>

#include <catch2/catch_test_macros.hpp>

#include <array>
#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

using namespace std::chrono_literals;

namespace {

bool is_canceled(const std::error_code& ec)
{
    return ec == std::make_error_code(std::errc::operation_canceled);
}

/// A child that does a few kinds of suspension, then counts itself done.
coil::task<void> worker(coil_test::frame_guard guard, int i, int& finished)
{
    for (int k = 0; k < i % 4; ++k)
        co_await coil::yield();
    coil::result<void> r;
    if (i % 2 == 0)
        r = co_await coil::nop();
    else
        r = co_await coil::sleep_for(1ms);
    if (!r)
        throw std::system_error(r.error());
    ++finished;
    (void)guard;
}

coil::task<void> blocked_read(int fd, std::optional<std::error_code>& ended)
{
    std::array<std::byte, 16> buffer{};
    coil::result<std::size_t> r = co_await coil::read(fd, buffer, coil::current_position);
    ended = r.ok() ? std::error_code() : r.error();
}

coil::task<void> fail_after_nop(std::string message)
{
    coil::result<void> r = co_await coil::nop();
    (void)r;
    throw std::runtime_error(message);
}

} // namespace

TEST_CASE("runtime: with_nursery returns only after every child has finished", "[runtime][nursery]")
{
    constexpr int children = 50;
    coil_test::frame_census census(children);
    int finished = 0;
    bool all_finished_at_return = false;
    bool all_destroyed_at_return = false;
    std::size_t active_after_spawn = 0;
    auto body = [&]() -> coil::task<void> {
        co_await coil::with_nursery([&](coil::nursery& n) -> coil::task<void> {
            for (int i = 0; i < children; ++i)
                n.spawn(worker(coil_test::frame_guard(census, static_cast<std::size_t>(i)), i, finished));
            active_after_spawn = n.active();
            co_return;
        });
        all_finished_at_return = finished == children;
        all_destroyed_at_return = census.destroyed == static_cast<std::size_t>(children);
    };
    coil_test::run(body());
    CHECK(active_after_spawn == static_cast<std::size_t>(children)); // each suspended at least once
    CHECK(all_finished_at_return);
    CHECK(all_destroyed_at_return);
    CHECK(census.each_destroyed_once());
}

TEST_CASE("runtime: with_nursery rethrows the first child exception after cancelling the others",
          "[runtime][nursery]")
{
    auto p = coil_test::make_pipe();
    std::optional<std::error_code> sibling_ended;
    bool sibling_ended_before_rethrow = false;
    coil::executor ex(coil_test::executor_options());
    auto body = [&]() -> coil::task<void> {
        try {
            co_await coil::with_nursery([&](coil::nursery& n) -> coil::task<void> {
                n.spawn(blocked_read(p.read_end.get(), sibling_ended));
                n.spawn(fail_after_nop("first"));
                n.spawn([]() -> coil::task<void> {
                    for (int i = 0; i < 5; ++i)
                        co_await coil::yield();
                    throw std::runtime_error("later");
                }());
                co_return;
            });
        } catch (const std::runtime_error& e) {
            sibling_ended_before_rethrow = sibling_ended.has_value();
            CHECK(std::string(e.what()) == "first");
            throw;
        }
    };
    CHECK_THROWS_AS(ex.run(body()), std::runtime_error);
    CHECK(sibling_ended_before_rethrow);
    REQUIRE(sibling_ended.has_value());
    CHECK(is_canceled(*sibling_ended));
    CHECK(ex.in_flight() == 0);
}

TEST_CASE("runtime: an exception of the nursery body stops the children and is rethrown",
          "[runtime][nursery]")
{
    auto p = coil_test::make_pipe();
    std::optional<std::error_code> child_ended;
    auto body = [&]() -> coil::task<void> {
        co_await coil::with_nursery([&](coil::nursery& n) -> coil::task<void> {
            n.spawn(blocked_read(p.read_end.get(), child_ended));
            coil::result<void> r = co_await coil::nop();
            (void)r;
            throw std::logic_error("body failed");
        });
    };
    CHECK_THROWS_AS(coil_test::run(body()), std::logic_error);
    REQUIRE(child_ended.has_value());
    CHECK(is_canceled(*child_ended));
}

TEST_CASE("runtime: nursery::request_stop cancels the children's ops and with_nursery returns",
          "[runtime][nursery][cancel]")
{
    std::vector<coil_test::pipe_fds> pipes;
    for (int i = 0; i < 6; ++i)
        pipes.push_back(coil_test::make_pipe());
    std::vector<std::optional<std::error_code>> ended(6);
    auto body = [&]() -> coil::task<void> {
        co_await coil::with_nursery([&](coil::nursery& n) -> coil::task<void> {
            for (std::size_t i = 0; i < pipes.size(); ++i)
                n.spawn(blocked_read(pipes[i].read_end.get(), ended[i]));
            coil::result<void> r = co_await coil::nop();
            (void)r;
            n.request_stop();
        });
    };
    coil_test::run(body());
    for (const auto& e : ended) {
        REQUIRE(e.has_value());
        CHECK(is_canceled(*e));
    }
}

TEST_CASE("runtime: a stop request on the token of the task awaiting with_nursery reaches the "
          "body's operations and every child",
          "[runtime][nursery][cancel]")
{
    std::vector<coil_test::pipe_fds> pipes;
    for (int i = 0; i < 4; ++i)
        pipes.push_back(coil_test::make_pipe());
    std::vector<std::optional<std::error_code>> ended(4);
    std::stop_source source;
    coil::executor ex(coil_test::executor_options());
    auto body = [&]() -> coil::task<void> {
        auto scoped = coil::with_stop_token(
            source.get_token(), coil::with_nursery([&](coil::nursery& n) -> coil::task<void> {
                for (std::size_t i = 1; i < 4; ++i)
                    n.spawn(blocked_read(pipes[i].read_end.get(), ended[i]));
                co_await blocked_read(pipes[0].read_end.get(), ended[0]); // the body's own
            }));
        auto stopper = [&]() -> coil::task<void> {
            while (ex.in_flight() < 4) // the body's read and the children's are in the kernel
                co_await coil::yield();
            source.request_stop();
        };
        co_await coil::when_all(std::move(scoped), stopper());
    };
    ex.run(body());
    for (std::size_t i = 0; i < 4; ++i) {
        CAPTURE(i);
        REQUIRE(ended[i].has_value());
        CHECK(is_canceled(*ended[i]));
    }
    CHECK(ex.in_flight() == 0);
}
