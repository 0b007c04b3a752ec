// SPDX-License-Identifier: MIT
// when_all: every task's value in order; a throwing child stops its siblings and is rethrown.

#include "runtime_test_support.hpp"
#include "test_executor.hpp"

#include <coil/coil.hpp>

#include <catch2/catch_test_macros.hpp>

#include <array>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

using coil_test::bytes_of;

namespace {

bool is_canceled(const std::error_code& ec)
{
    return ec == std::make_error_code(std::errc::operation_canceled);
}

coil::task<std::string> read_file_at(int fd, std::uint64_t offset, std::size_t size)
{
    std::vector<char> buffer(size);
    coil::result<std::size_t> n = co_await coil::read(fd, std::as_writable_bytes(std::span(buffer)), offset);
    if (!n)
        throw std::system_error(n.error());
    co_return std::string(buffer.data(), *n);
}

coil::task<int> square_after_nop(int i)
{
    coil::result<void> r = co_await coil::nop();
    if (!r)
        throw std::system_error(r.error());
    co_return i * i;
}

coil::task<void> just_nop(int& count)
{
    coil::result<void> r = co_await coil::nop();
    if (r)
        ++count;
}

coil::task<int> blocked_read(int fd, std::optional<std::error_code>& ended)
{
    std::array<std::byte, 16> buffer{};
    coil::result<std::size_t> r = co_await coil::read(fd, buffer, coil::current_position);
    ended = r.ok() ? std::error_code() : r.error();
    co_return 0;
}

coil::task<int> throw_after_yields(int yields, std::string message)
{
    for (int i = 0; i < yields; ++i)
        co_await coil::yield();
    throw std::runtime_error(message);
}

} // namespace

TEST_CASE("runtime: when_all yields every task's result in argument order", "[runtime][when_all]")
{
    coil_test::temp_dir dir;
    auto fd = dir.create_file("data", bytes_of("abcdefghij"));
    int nops = 0;
    auto body = [&]() -> coil::task<std::tuple<std::string, coil::detail::void_result, int, std::string>> {
        co_return co_await coil::when_all(read_file_at(fd.get(), 0, 3), just_nop(nops),
                                          square_after_nop(9), read_file_at(fd.get(), 7, 10));
    };
    auto [first, nothing, square, last] = coil_test::run(body());
    CHECK(first == "abc");
    CHECK(nothing == coil::detail::void_result{});
    CHECK(nops == 1);
    CHECK(square == 81);
    CHECK(last == "hij");
}

TEST_CASE("runtime: the vector form of when_all yields results in order", "[runtime][when_all]")
{
    auto body = []() -> coil::task<std::vector<int>> {
        std::vector<coil::task<int>> tasks;
        for (int i = 0; i < 100; ++i)
            tasks.push_back(square_after_nop(i));
        co_return co_await coil::when_all(std::move(tasks));
    };
    std::vector<int> squares = coil_test::run(body());
    REQUIRE(squares.size() == 100);
    for (int i = 0; i < 100; ++i)
        CHECK(squares[static_cast<std::size_t>(i)] == i * i);

    int nops = 0;
    auto voids = [&]() -> coil::task<std::size_t> {
        std::vector<coil::task<void>> tasks;
        for (int i = 0; i < 20; ++i)
            tasks.push_back(just_nop(nops));
        auto done = co_await coil::when_all(std::move(tasks));
        co_return done.size();
    };
    CHECK(coil_test::run(voids()) == 20);
    CHECK(nops == 20);

    auto empty = []() -> coil::task<std::size_t> {
        auto none = co_await coil::when_all(std::vector<coil::task<int>>{});
        co_return none.size();
    };
    CHECK(coil_test::run(empty()) == 0);
}

TEST_CASE("runtime: when_all rethrows a child's exception after stopping its siblings",
          "[runtime][when_all]")
{
    auto p = coil_test::make_pipe();
    std::optional<std::error_code> sibling_ended;
    bool sibling_ended_before_rethrow = false;
    coil::executor ex(coil_test::executor_options());
    auto body = [&]() -> coil::task<void> {
        try {
            (void)co_await coil::when_all(blocked_read(p.read_end.get(), sibling_ended),
                                          throw_after_yields(2, "child failed"));
        } catch (const std::runtime_error& e) {
            sibling_ended_before_rethrow = sibling_ended.has_value();
            CHECK(std::string(e.what()) == "child failed");
            throw;
        }
    };
    CHECK_THROWS_AS(ex.run(body()), std::runtime_error);
    CHECK(sibling_ended_before_rethrow);
    REQUIRE(sibling_ended.has_value());
    CHECK(is_canceled(*sibling_ended));
    CHECK(ex.in_flight() == 0);
    CHECK(ex.stats().cancels_submitted >= 1);
}

TEST_CASE("runtime: the vector form of when_all rethrows the first exception and stops the rest",
          "[runtime][when_all]")
{
    std::vector<coil_test::pipe_fds> pipes;
    for (int i = 0; i < 4; ++i)
        pipes.push_back(coil_test::make_pipe());
    std::vector<std::optional<std::error_code>> ended(4);
    auto body = [&]() -> coil::task<void> {
        std::vector<coil::task<int>> tasks;
        for (std::size_t i = 0; i < 4; ++i)
            tasks.push_back(blocked_read(pipes[i].read_end.get(), ended[i]));
        tasks.push_back(throw_after_yields(3, "second"));
        tasks.push_back(throw_after_yields(1, "first"));
        (void)co_await coil::when_all(std::move(tasks));
    };
    try {
        coil_test::run(body());
        FAIL("when_all did not throw");
    } catch (const std::runtime_error& e) {
        CHECK(std::string(e.what()) == "first");
    }
    for (const auto& e : ended) {
        REQUIRE(e.has_value());
        CHECK(is_canceled(*e));
    }
}
