// SPDX-License-Identifier: MIT
// Exceptions: through nested tasks, out of executor::run, and out of spawned tasks via join handles.

#include "runtime_test_support.hpp"
#include "test_executor.hpp"

#include <coil/coil.hpp>

#include <catch2/catch_test_macros.hpp>

#include <stdexcept>
#include <string>

namespace {

struct level_error : std::runtime_error {
    level_error(const std::string& what, int level) : std::runtime_error(what), level(level) {}
    int level;
};

coil::task<int> level3(bool suspend_first)
{
    if (suspend_first) {
        coil::result<void> r = co_await coil::nop();
        (void)r;
    }
    throw level_error("thrown at level 3", 3);
}

coil::task<int> level2(bool suspend_first, int& reached_after)
{
    int v = co_await level3(suspend_first);
    ++reached_after; // skipped: the exception passes through
    co_return v + 1;
}

coil::task<std::string> level1(bool suspend_first, int& reached_after)
{
    int v = co_await level2(suspend_first, reached_after);
    ++reached_after;
    co_return std::to_string(v);
}

coil::task<void> throws_at_once() { throw std::invalid_argument("before any suspension"); co_return; }

} // namespace

TEST_CASE("runtime: an exception thrown three tasks deep reaches executor::run", "[runtime][exceptions]")
{
    for (bool suspend_first : {false, true}) {
        INFO("suspends before throwing: " << suspend_first);
        int reached_after = 0;
        coil::executor ex(coil_test::executor_options());
        try {
            (void)ex.run(level1(suspend_first, reached_after));
            FAIL("run() did not throw");
        } catch (const level_error& e) {
            CHECK(e.level == 3);
            CHECK(std::string(e.what()) == "thrown at level 3");
        }
        CHECK(reached_after == 0);
        CHECK(ex.in_flight() == 0);
        // The executor is still usable afterwards.
        auto fine = []() -> coil::task<int> {
            coil::result<void> r = co_await coil::nop();
            co_return r.ok() ? 5 : -1;
        };
        CHECK(ex.run(fine()) == 5);
    }
}

TEST_CASE("runtime: a task can catch a nested exception and throw another", "[runtime][exceptions]")
{
    auto middle = []() -> coil::task<int> {
        int reached = 0;
        try {
            co_return co_await level2(true, reached);
        } catch (const level_error& e) {
            throw std::out_of_range("translated from level " + std::to_string(e.level));
        }
    };
    auto top = [&]() -> coil::task<std::string> {
        try {
            (void)co_await middle();
        } catch (const std::out_of_range& e) {
            co_return std::string(e.what());
        }
        co_return "not thrown";
    };
    CHECK(coil_test::run(top()) == "translated from level 3");
}

TEST_CASE("runtime: a root task that throws before suspending rethrows from run", "[runtime][exceptions]")
{
    CHECK_THROWS_AS(coil_test::run(throws_at_once()), std::invalid_argument);
}

TEST_CASE("runtime: a spawned task's exception is rethrown where its join handle is awaited",
          "[runtime][exceptions][spawn]")
{
    coil::executor ex(coil_test::executor_options());
    auto body = [&]() -> coil::task<std::string> {
        int reached = 0;
        coil::join_handle<std::string> h = ex.spawn(level1(true, reached));
        try {
            (void)co_await h;
        } catch (const level_error& e) {
            co_return "caught level " + std::to_string(e.level);
        }
        co_return "not thrown";
    };
    CHECK(ex.run(body()) == "caught level 3");
    CHECK(ex.stats().unhandled_exceptions == 0);

    // A handle awaited after the task already failed rethrows too.
    auto late = [&]() -> coil::task<bool> {
        coil::join_handle<void> h = ex.spawn(throws_at_once());
        for (int i = 0; i < 3; ++i)
            co_await coil::yield();
        REQUIRE(h.done());
        try {
            co_await h;
        } catch (const std::invalid_argument&) {
            co_return true;
        }
        co_return false;
    };
    CHECK(ex.run(late()));
    CHECK(ex.stats().unhandled_exceptions == 0);
}

TEST_CASE("runtime: a detached task's exception is counted, not lost and not fatal",
          "[runtime][exceptions][spawn]")
{
    coil::executor ex(coil_test::executor_options());
    auto body = [&]() -> coil::task<int> {
        ex.spawn(throws_at_once()).detach();
        coil::result<void> r = co_await coil::nop();
        co_return r.ok() ? 1 : 0;
    };
    CHECK(ex.run(body()) == 1);
    CHECK(ex.stats().unhandled_exceptions == 1);
}

TEST_CASE("runtime: join_handle::get returns the value of a finished spawned task", "[runtime][spawn]")
{
    coil::executor ex(coil_test::executor_options());
    auto value = []() -> coil::task<int> {
        coil::result<void> r = co_await coil::nop();
        co_return r.ok() ? 42 : 0;
    };
    coil::join_handle<int> h = ex.spawn(value());
    CHECK_FALSE(h.done());
    auto waiter = [&]() -> coil::task<void> {
        while (!h.done())
            co_await coil::yield();
    };
    ex.run(waiter());
    REQUIRE(h.done());
    CHECK(h.get() == 42);
}
