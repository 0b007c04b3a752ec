// SPDX-License-Identifier: MIT
// executor::post from other threads: the function runs once, on the executor's thread, and can
// resume a task that waits for it.

#include "runtime_test_support.hpp"
#include "test_executor.hpp"

#include <coil/coil.hpp>

#include <catch2/catch_test_macros.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <coroutine>
#include <memory>
#include <thread>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include <unistd.h>

using coil_test::event;

TEST_CASE("runtime: a function posted from another thread wakes the executor and resumes a task",
          "[runtime][post][threads]")
{
    coil::executor ex(coil_test::executor_options());
    const pid_t executor_tid = coil_test::current_tid();
    const std::thread::id executor_thread = std::this_thread::get_id();
    event ready;
    int value = 0;
    std::thread::id ran_on;
    bool saw_blocked = false;

    std::thread poster([&] {
        // Post only once the executor is asleep in the kernel, so the post has to wake it.
        saw_blocked = coil_test::wait_until_blocked_in_ring(executor_tid);
        ex.post([&] {
            value = 42;
            ran_on = std::this_thread::get_id();
            ready.set(ex);
        });
    });
    auto body = [&]() -> coil::task<int> {
        co_await ready;
        co_return value;
    };
    const int seen = ex.run(body());
    poster.join();
    CHECK(seen == 42);
    CHECK(ran_on == executor_thread);
    CHECK(saw_blocked);
}

TEST_CASE("runtime: 2,000 posts from two threads each run exactly once", "[runtime][post][threads]")
{
    constexpr int per_thread = 1000;
    coil::executor ex(coil_test::executor_options());
    std::vector<int> runs(2 * per_thread, 0); // touched only on the executor thread
    int total = 0;
    bool wrong_thread = false;
    const std::thread::id executor_thread = std::this_thread::get_id();
    event all_done;

    auto post_range = [&](int first) {
        for (int i = first; i < first + per_thread; ++i) {
            ex.post([&, i] {
                wrong_thread |= std::this_thread::get_id() != executor_thread;
                ++runs[static_cast<std::size_t>(i)];
                if (++total == 2 * per_thread)
                    all_done.set(ex);
            });
            if (i % 100 == 0)
                std::this_thread::yield(); // interleave with the executor's turns
        }
    };
    std::thread a(post_range, 0);
    std::thread b(post_range, per_thread);
    auto body = [&]() -> coil::task<int> {
        co_await all_done;
        // Any stray extra run would land after this point, so give the loop a few more turns.
        for (int i = 0; i < 3; ++i) {
            coil::result<void> r = co_await coil::nop();
            (void)r;
        }
        co_return total;
    };
    const int seen = ex.run(body());
    a.join();
    b.join();
    CHECK(seen == 2 * per_thread);
    CHECK(total == 2 * per_thread);
    CHECK_FALSE(wrong_thread);
    CHECK(std::all_of(runs.begin(), runs.end(), [](int n) { return n == 1; }));
}

TEST_CASE("runtime: a function posted before run() runs during run()", "[runtime][post]")
{
    coil::executor ex(coil_test::executor_options());
    event ready;
    ex.post([&] { ready.set(ex); });
    auto body = [&]() -> coil::task<bool> {
        co_await ready;
        co_return true;
    };
    CHECK(ex.run(body()));
}

TEST_CASE("runtime: posted work can spawn tasks that do I/O", "[runtime][post][threads]")
{
    coil::executor ex(coil_test::executor_options());
    const pid_t executor_tid = coil_test::current_tid();
    event done;
    int nops = 0;
    std::thread poster([&] {
        (void)coil_test::wait_until_blocked_in_ring(executor_tid);
        ex.post([&] {
            auto work = [](int& count, event& finished, coil::executor& e) -> coil::task<void> {
                for (int i = 0; i < 10; ++i) {
                    coil::result<void> r = co_await coil::nop();
                    count += r.ok() ? 1 : 0;
                }
                finished.set(e);
            };
            ex.spawn(work(nops, done, ex)).detach();
        });
    });
    auto body = [&]() -> coil::task<int> {
        co_await done;
        co_return nops;
    };
    CHECK(ex.run(body()) == 10);
    poster.join();
}

TEST_CASE("runtime: a posted function that throws is counted and the others still run once",
          "[runtime][post]")
{
    coil::executor ex(coil_test::executor_options());
    int first = 0;
    int third = 0;
    event third_ran;
    ex.post([&] { ++first; });
    ex.post([] { throw std::runtime_error("posted failure"); });
    ex.post([&] {
        ++third;
        third_ran.set(ex);
    });
    auto wait_for = [](event& e) -> coil::task<int> {
        co_await e;
        co_return 1;
    };
    CHECK(ex.run(wait_for(third_ran)) == 1);
    CHECK(first == 1);
    CHECK(third == 1);
    CHECK(ex.stats().unhandled_exceptions == 1);
    // Nothing that ran runs again in a later loop.
    event again;
    ex.post([&] { again.set(ex); });
    CHECK(ex.run(wait_for(again)) == 1);
    CHECK(first == 1);
    CHECK(third == 1);
}

TEST_CASE("runtime: a function posted as the last task ends still runs before run() returns",
          "[runtime][post]")
{
    coil::executor ex(coil_test::executor_options());
    int ran = 0;
    auto body = [&]() -> coil::task<void> {
        ex.post([&] { ++ran; });
        co_return; // the only task ends with the function still queued
    };
    ex.run(body());
    CHECK(ran == 1);
}

TEST_CASE("runtime: functions posted while no run() is active run at the next run(), and are "
          "dropped unrun (and destroyed) if none comes",
          "[runtime][post]")
{
    int ran = 0;
    auto token = std::make_shared<int>(0);
    {
        auto ex = std::make_unique<coil::executor>(coil_test::executor_options());
        ex->post([&] { ++ran; });
        auto body = []() -> coil::task<void> { co_return; };
        ex->run(body());
        CHECK(ran == 1);
        ex->post([&ran, token] { ++ran; });
        CHECK(token.use_count() == 2);
        // Destroyed with one function queued: it says so on stderr.
        int report[2];
        REQUIRE(::pipe(report) == 0);
        const int saved = ::dup(STDERR_FILENO);
        ::dup2(report[1], STDERR_FILENO);
        ex.reset();
        ::dup2(saved, STDERR_FILENO);
        ::close(saved);
        ::close(report[1]);
        const std::string said = coil_test::read_to_end(report[0]);
        ::close(report[0]);
        CHECK(said.find("1 posted function(s) dropped unrun") != std::string::npos);
    }
    CHECK(ran == 1);
    CHECK(token.use_count() == 1);
}

TEST_CASE("runtime: a stop() made while no run() is active does not stop the next run()",
          "[runtime][post][stop]")
{
    coil::executor ex(coil_test::executor_options());
    ex.stop();
    std::thread([&] { ex.stop(); }).join();
    auto body = []() -> coil::task<int> {
        auto r = co_await coil::nop();
        co_return r.ok() ? 3 : 0;
    };
    CHECK(ex.run(body()) == 3);
}

TEST_CASE("runtime: a stop posted before run() ends the next run()", "[runtime][post]")
{
    coil::executor ex(coil_test::executor_options());
    ex.post([&ex] { ex.stop(); });
    auto sleeper = []() -> coil::task<bool> {
        auto slept = co_await coil::sleep_for(std::chrono::hours(1));
        co_return slept.ok();
    };
    // The hour-long sleep is cancelled: run() ends as a stopped run does.
    bool stopped = false;
    try {
        (void)ex.run(sleeper());
    } catch (const std::system_error& e) {
        stopped = e.code() == std::errc::operation_canceled;
    }
    CHECK(stopped);
}

TEST_CASE("runtime: a spawned task starts at the next loop turn, and run() returns only when "
          "every spawned task has ended",
          "[runtime][post]")
{
    coil::executor ex(coil_test::executor_options());
    bool started = false, seen_at_spawn = true, seen_after_yield = false, detached_done = false;
    auto mark = [](bool& flag) -> coil::task<void> {
        flag = true;
        co_return;
    };
    auto later = [](bool& flag) -> coil::task<void> {
        (void)co_await coil::sleep_for(std::chrono::milliseconds(20));
        flag = true;
    };
    auto body = [&]() -> coil::task<void> {
        auto handle = ex.spawn(mark(started));
        seen_at_spawn = started;
        co_await coil::yield();
        seen_after_yield = started;
        co_await std::move(handle);
        (void)ex.spawn(later(detached_done)); // its handle dropped: detached
    };
    ex.run(body());
    CHECK_FALSE(seen_at_spawn);
    CHECK(seen_after_yield);
    CHECK(detached_done);
}
