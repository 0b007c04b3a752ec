// SPDX-License-Identifier: MIT
// with_timeout: a linked deadline that ends a blocked op with timed_out, and leaves a prompt op alone.

#include "runtime_test_support.hpp"
#include "test_executor.hpp"

#include <coil/coil.hpp>

#include <catch2/catch_test_macros.hpp>

#include <poll.h>

#include <array>
#include <chrono>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using coil_test::bytes_of;

namespace {

bool is_error(const std::error_code& ec, std::errc e) { return ec == std::make_error_code(e); }

} // namespace

TEST_CASE("runtime: with_timeout ends a blocked pipe read with timed_out", "[runtime][timeout]")
{
    auto p = coil_test::make_pipe();
    coil::executor ex(coil_test::executor_options());
    auto body = [&]() -> coil::task<coil::result<std::size_t>> {
        std::array<std::byte, 16> buffer{};
        co_return co_await coil::with_timeout(coil::read(p.read_end.get(), buffer), 5ms);
    };
    coil::result<std::size_t> r = ex.run(body());
    REQUIRE_FALSE(r.ok());
    INFO(r.error().message());
    CHECK(is_error(r.error(), std::errc::timed_out));
    CHECK(ex.in_flight() == 0);

    // The pipe is untouched: the read that timed out consumed nothing.
    coil_test::write_fully(p.write_end.get(), bytes_of("kept"));
    auto again = [&]() -> coil::task<std::string> {
        std::array<char, 16> buffer{};
        coil::result<std::size_t> n =
            co_await coil::read(p.read_end.get(), std::as_writable_bytes(std::span(buffer)));
        REQUIRE(n.ok());
        co_return std::string(buffer.data(), *n);
    };
    CHECK(ex.run(again()) == "kept");
}

TEST_CASE("runtime: with_timeout ends a blocked poll with timed_out", "[runtime][timeout]")
{
    auto efd = coil_test::make_eventfd();
    auto body = [&]() -> coil::task<coil::result<std::uint32_t>> {
        co_return co_await coil::with_timeout(coil::poll(efd.get(), POLLIN), 2ms);
    };
    coil::result<std::uint32_t> r = coil_test::run(body());
    REQUIRE_FALSE(r.ok());
    CHECK(is_error(r.error(), std::errc::timed_out));
}

TEST_CASE("runtime: a with_timeout that does not fire yields the op's real result",
          "[runtime][timeout]")
{
    auto p = coil_test::make_pipe();
    coil_test::write_fully(p.write_end.get(), bytes_of("in time"));
    coil::executor ex(coil_test::executor_options());
    auto body = [&]() -> coil::task<std::string> {
        std::array<char, 16> buffer{};
        // The data is already there: the read wins, and the hour-long deadline is cancelled
        // (the executor reaps its completion too before resuming us).
        coil::result<std::size_t> n = co_await coil::with_timeout(
            coil::read(p.read_end.get(), std::as_writable_bytes(std::span(buffer))), 1h);
        REQUIRE(n.ok());
        co_return std::string(buffer.data(), *n);
    };
    CHECK(ex.run(body()) == "in time");
    CHECK(ex.in_flight() == 0);

    // Also when the data arrives while the op waits (here from another task after a yield).
    auto writer = [&]() -> coil::task<void> {
        co_await coil::yield();
        coil_test::write_fully(p.write_end.get(), bytes_of("later"));
    };
    auto waiting = [&]() -> coil::task<std::string> {
        auto w = ex.spawn(writer());
        std::array<char, 16> buffer{};
        coil::result<std::size_t> n = co_await coil::with_timeout(
            coil::read(p.read_end.get(), std::as_writable_bytes(std::span(buffer))), 1h);
        co_await w;
        REQUIRE(n.ok());
        co_return std::string(buffer.data(), *n);
    };
    CHECK(ex.run(waiting()) == "later");
    CHECK(ex.in_flight() == 0);
}

TEST_CASE("runtime: an op with a timeout that fails on its own reports its own error",
          "[runtime][timeout]")
{
    auto body = []() -> coil::task<coil::result<std::size_t>> {
        std::array<std::byte, 8> buffer{};
        co_return co_await coil::with_timeout(coil::read(1 << 29, buffer, 0), 1h);
    };
    coil::result<std::size_t> r = coil_test::run(body());
    REQUIRE_FALSE(r.ok());
    CHECK(is_error(r.error(), std::errc::bad_file_descriptor));
}

TEST_CASE("runtime: a stop request beats a pending timeout with operation_canceled",
          "[runtime][timeout][cancel]")
{
    auto p = coil_test::make_pipe();
    std::stop_source source;
    auto reader = [&]() -> coil::task<coil::result<std::size_t>> {
        std::array<std::byte, 8> buffer{};
        co_return co_await coil::with_timeout(coil::read(p.read_end.get(), buffer), 1h);
    };
    auto body = [&]() -> coil::task<coil::result<std::size_t>> {
        auto r = coil::executor::current()->spawn(coil::with_stop_token(source.get_token(), reader()));
        coil::result<void> turn = co_await coil::nop();
        REQUIRE(turn.ok());
        source.request_stop();
        co_return co_await r;
    };
    coil::result<std::size_t> r = coil_test::run(body());
    REQUIRE_FALSE(r.ok());
    CHECK(is_error(r.error(), std::errc::operation_canceled));
}

TEST_CASE("runtime: a timeout or sleep of nanoseconds::max() means never, not already expired",
          "[runtime][timeout]")
{
    // now() + nanoseconds::max() overflows; the deadline is saturated instead (found by a user
    // trial: the op ended timed_out at once, the sleep returned at once). The pipe's data,
    // written by a short timer, must be what ends both the read and the race with the sleep.
    auto p = coil_test::make_pipe();
    coil::executor ex(coil_test::executor_options());
    auto body = [&]() -> coil::task<std::string> {
        auto writer = [&]() -> coil::task<void> {
            (void)co_await coil::sleep_for(5ms);
            coil_test::write_fully(p.write_end.get(), bytes_of("late"));
        };
        auto h = ex.spawn(writer());
        std::array<char, 16> buffer{};
        coil::result<std::size_t> n = co_await coil::with_timeout(
            coil::read(p.read_end.get(), std::as_writable_bytes(std::span(buffer))),
            std::chrono::nanoseconds::max());
        co_await std::move(h);
        if (!n)
            co_return "error: " + n.error().message();
        auto sleeper = []() -> coil::task<int> {
            (void)co_await coil::sleep_for(std::chrono::nanoseconds::max());
            co_return 1;
        };
        auto short_nap = []() -> coil::task<int> {
            (void)co_await coil::sleep_for(2ms);
            co_return 2;
        };
        auto winner = co_await coil::when_any(sleeper(), short_nap());
        co_return std::string(buffer.data(), *n) + (winner.index() == 1 ? "+nap" : "+forever?");
    };
    CHECK(ex.run(body()) == "late+nap");
    CHECK(ex.timers_armed() == 0);
}

TEST_CASE("runtime: a sleep of nanoseconds::min() and a timeout of it end at once", "[runtime][timeout]")
{
    // The deadline saturates at the clock's start instead of overflowing (UBSan reported the
    // subtraction; found by a second user trial).
    auto p = coil_test::make_pipe();
    coil::executor ex(coil_test::executor_options());
    auto body = [&]() -> coil::task<bool> {
        coil::result<void> slept = co_await coil::sleep_for(std::chrono::nanoseconds::min());
        std::array<std::byte, 4> buffer{};
        coil::result<std::size_t> r = co_await coil::with_timeout(
            coil::read(p.read_end.get(), buffer), std::chrono::nanoseconds::min());
        co_return slept.ok() && !r && is_error(r.error(), std::errc::timed_out);
    };
    CHECK(ex.run(body()));
}

TEST_CASE("runtime: an op with a deadline kept in a variable runs anew at each await, its "
          "deadline counted from that await",
          "[runtime][timeout]")
{
    auto p = coil_test::make_pipe();
    coil::executor ex(coil_test::executor_options());
    auto body = [&]() -> coil::task<std::vector<std::string>> {
        std::array<std::byte, 16> buffer{};
        auto read = coil::read(p.read_end.get(), buffer).with_timeout(100ms);
        std::vector<std::string> seen;
        auto describe = [&](const coil::result<std::size_t>& r) {
            return r ? std::to_string(*r) + " bytes"
                     : is_error(r.error(), std::errc::timed_out) ? "timed_out" : r.error().message();
        };
        auto first = co_await read; // nothing written: the deadline ends it
        seen.push_back(describe(first));
        coil_test::write_fully(p.write_end.get(), bytes_of("abc"));
        auto second = co_await read; // data: it completes with it
        seen.push_back(describe(second));
        // Longer than the deadline passes before the third await: a deadline counted from the
        // first await (or kept from it) would have expired already, and the third would end at
        // once without waiting; it must wait its own 100 ms, and data written meanwhile ends it.
        (void)co_await coil::sleep_for(150ms);
        auto writer = [&]() -> coil::task<void> {
            (void)co_await coil::sleep_for(2ms);
            coil_test::write_fully(p.write_end.get(), bytes_of("defg"));
        };
        auto await_again = [](auto& op) -> coil::task<coil::result<std::size_t>> {
            co_return co_await op;
        };
        auto [third, written] = co_await coil::when_all(await_again(read), writer());
        (void)written;
        seen.push_back(describe(third));
        co_return seen;
    };
    CHECK(ex.run(body()) == std::vector<std::string>{"timed_out", "3 bytes", "4 bytes"});
    CHECK(ex.in_flight() == 0);
}
