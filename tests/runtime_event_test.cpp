// SPDX-License-Identifier: MIT
// coil::event: set wakes every waiter in order and stays set until reset; a stop request, a
// deadline or the event's destruction ends a wait with an error; a task destroyed while it
// waits leaves the event; a set posted from another thread wakes the waiter; a writer task fed
// through a queue and an event.

#include "runtime_test_support.hpp"
#include "test_executor.hpp"

#include <coil/coil.hpp>

#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

// Waits for `ev`, then records `id` (or the error) in `log`.
coil::task<void> waiter(coil::event& ev, int id, std::vector<std::string>& log)
{
    auto woke = co_await ev.wait();
    log.push_back(woke ? std::to_string(id) : std::to_string(id) + ":" + woke.error().message());
}

// Sets `ev` after `delay`.
coil::task<void> set_after(coil::event& ev, std::chrono::milliseconds delay)
{
    (void)co_await coil::sleep_for(delay);
    ev.set();
}

} // namespace

TEST_CASE("runtime: event::set wakes every waiting task in the order they came, and a set event "
          "lets waits through until reset",
          "[runtime][event]")
{
    coil::event ev;
    std::vector<std::string> log;
    auto body = [&]() -> coil::task<void> {
        coil::executor& ex = *coil::executor::current();
        std::vector<coil::join_handle<void>> waiters;
        for (int id = 0; id < 3; ++id)
            waiters.push_back(ex.spawn(waiter(ev, id, log)));
        for (int turn = 0; turn < 3; ++turn)
            co_await coil::yield(); // all three now wait
        log.push_back("set");
        ev.set();
        CHECK(ev.is_set());
        for (auto& w : waiters)
            co_await w;
        // Set: a wait completes at once, without suspending.
        co_await waiter(ev, 3, log);
        ev.reset();
        CHECK_FALSE(ev.is_set());
        auto late = ex.spawn(waiter(ev, 4, log));
        for (int turn = 0; turn < 3; ++turn)
            co_await coil::yield();
        log.push_back("reset, still waiting");
        ev.set();
        co_await late;
    };
    coil_test::run(body());
    CHECK(log == std::vector<std::string>{"set", "0", "1", "2", "3", "reset, still waiting", "4"});
}

TEST_CASE("runtime: a stop request ends an event wait with operation_canceled, and a later set "
          "wakes only the others",
          "[runtime][event]")
{
    coil::event ev;
    std::vector<std::string> log;
    std::stop_source stop;
    auto body = [&]() -> coil::task<void> {
        coil::executor& ex = *coil::executor::current();
        auto stopped = ex.spawn(coil::with_stop_token(stop.get_token(), waiter(ev, 0, log)));
        auto other = ex.spawn(waiter(ev, 1, log));
        for (int turn = 0; turn < 3; ++turn)
            co_await coil::yield();
        stop.request_stop();
        co_await stopped;
        log.push_back("set");
        ev.set();
        co_await other;
        // A task stopped before it waits does not wait at all, even on an event never set.
        coil::event never;
        co_await coil::with_stop_token(stop.get_token(), waiter(never, 2, log));
    };
    coil_test::run(body());
    const std::string canceled = std::make_error_code(std::errc::operation_canceled).message();
    CHECK(log == std::vector<std::string>{"0:" + canceled, "set", "1", "2:" + canceled});
}

TEST_CASE("runtime: event::wait().with_timeout yields timed_out when nobody sets the event, and "
          "success when the set comes first",
          "[runtime][event][timeout]")
{
    coil::event ev;
    auto body = [&]() -> coil::task<std::vector<std::error_code>> {
        std::vector<std::error_code> out;
        auto late = co_await ev.wait().with_timeout(10ms);
        out.push_back(late ? std::error_code() : late.error());

        auto setting = coil::executor::current()->spawn(set_after(ev, 5ms));
        auto in_time = co_await ev.wait().with_timeout(10s);
        out.push_back(in_time ? std::error_code() : in_time.error());
        co_await setting;
        // The disarmed deadline fires nothing later: a sleep past it ends normally.
        auto slept = co_await coil::sleep_for(20ms);
        out.push_back(slept ? std::error_code() : slept.error());
        co_return out;
    };
    const auto errors = coil_test::run(body());
    REQUIRE(errors.size() == 3);
    CHECK(errors[0] == std::errc::timed_out);
    CHECK_FALSE(errors[1]);
    CHECK_FALSE(errors[2]);
}

TEST_CASE("runtime: tasks destroyed while they wait leave the event, which can be set after",
          "[runtime][event][lifetime]")
{
    coil::event ev;
    std::vector<std::string> log;
    {
        coil::executor ex(coil_test::executor_options());
        auto body = [&]() -> coil::task<void> {
            for (int id = 0; id < 4; ++id)
                (void)coil::executor::current()->spawn(waiter(ev, id, log));
            co_await coil::yield();
            coil::executor::current()->stop(); // the waiters are destroyed, never resumed
            (void)co_await coil::sleep_for(1h);
        };
        bool stopped = false;
        try {
            ex.run(body());
        } catch (const std::system_error& e) {
            stopped = e.code() == std::errc::operation_canceled;
        }
        CHECK(stopped);
    }
    ev.set(); // nobody waits: the frames that did are gone (ASan would see a use after free)
    CHECK(log.empty());
}

TEST_CASE("runtime: an event destroyed while tasks wait on it ends their waits with "
          "operation_canceled",
          "[runtime][event][lifetime]")
{
    std::vector<std::string> log;
    auto body = [&]() -> coil::task<void> {
        auto ev = std::make_unique<coil::event>();
        auto a = coil::executor::current()->spawn(waiter(*ev, 0, log));
        auto b = coil::executor::current()->spawn(waiter(*ev, 1, log));
        co_await coil::yield();
        ev.reset();
        co_await a;
        co_await b;
    };
    coil_test::run(body());
    const std::string canceled = std::make_error_code(std::errc::operation_canceled).message();
    CHECK(log == std::vector<std::string>{"0:" + canceled, "1:" + canceled});
}

TEST_CASE("runtime: a set posted from another thread wakes the waiting task", "[runtime][event]")
{
    coil::executor ex(coil_test::executor_options());
    coil::event ev;
    auto body = [&]() -> coil::task<bool> {
        std::thread setter([&] { ex.post([&ev] { ev.set(); }); });
        auto woke = co_await ev.wait().with_timeout(30s);
        setter.join();
        co_return woke.ok();
    };
    CHECK(ex.run(body()));
}

TEST_CASE("runtime: a writer task fed through a queue and an event sends every message in order",
          "[runtime][event]")
{
    // The pattern of the event's documentation: a per-connection writer that sleeps while its
    // queue is empty, over a real pipe.
    auto pipe = coil_test::make_pipe();
    std::deque<std::string> queue;
    coil::event ready;
    bool closing = false;
    auto writer = [&]() -> coil::task<std::size_t> {
        std::size_t written = 0;
        for (;;) {
            while (queue.empty()) {
                if (closing)
                    co_return written;
                ready.reset();
                if (!co_await ready.wait())
                    co_return written;
            }
            const std::string message = std::move(queue.front());
            queue.pop_front();
            auto n = co_await coil::write(pipe.write_end.get(), coil_test::bytes_of(message));
            REQUIRE(n);
            REQUIRE(*n == message.size());
            written += *n;
        }
    };
    auto body = [&]() -> coil::task<std::size_t> {
        auto writing = coil::executor::current()->spawn(writer());
        for (int i = 0; i < 100; ++i) {
            queue.push_back("message " + std::to_string(i) + "\n");
            ready.set();
            if (i % 7 == 0)
                (void)co_await coil::sleep_for(1ms);
        }
        closing = true;
        ready.set();
        co_return co_await writing;
    };
    const std::size_t written = coil_test::run(body());
    pipe.write_end.reset();
    std::string expected;
    for (int i = 0; i < 100; ++i)
        expected += "message " + std::to_string(i) + "\n";
    CHECK(written == expected.size());
    CHECK(coil_test::read_to_end(pipe.read_end.get()) == expected);
}

TEST_CASE("runtime: an event wait awaiter awaited again runs anew, not with the last outcome",
          "[runtime][event]")
{
    coil::event ev;
    auto body = [&]() -> coil::task<std::vector<std::error_code>> {
        std::vector<std::error_code> out;
        auto wait = ev.wait().with_timeout(5ms);
        auto first = co_await wait; // nobody sets it
        out.push_back(first ? std::error_code() : first.error());
        auto setting = coil::executor::current()->spawn(set_after(ev, 1ms));
        auto second = co_await wait; // set before its new deadline
        out.push_back(second ? std::error_code() : second.error());
        co_await setting;
        auto third = co_await wait; // set already: at once
        out.push_back(third ? std::error_code() : third.error());
        co_return out;
    };
    const auto errors = coil_test::run(body());
    REQUIRE(errors.size() == 3);
    CHECK(errors[0] == std::errc::timed_out);
    CHECK_FALSE(errors[1]);
    CHECK_FALSE(errors[2]);
}

namespace {
// Calls ev.set() on a thread of its own, and yields the logic_error's message ("" if none).
std::string set_from_another_thread(coil::event& ev)
{
    std::string what;
    std::thread([&] {
        try {
            ev.set();
        } catch (const std::logic_error& e) {
            what = e.what();
        }
    }).join();
    return what;
}
} // namespace

TEST_CASE("runtime: event misuse throws logic_error: one awaiter awaited twice at once, a set() "
          "off the executor's thread, a wait from another executor's task",
          "[runtime][event][misuse]")
{
    coil::executor ex(coil_test::executor_options());
    coil::event ev;
    std::string twice, foreign_set, foreign_wait;
    bool first_woke = false;
    auto await_it = [](coil::event::wait_awaiter& w, bool& woke) -> coil::task<void> {
        woke = (co_await w).ok();
    };
    auto body = [&]() -> coil::task<void> {
        auto wait = ev.wait();
        auto first = ex.spawn(await_it(wait, first_woke));
        co_await coil::yield(); // the first waiter is suspended
        try {
            (void)co_await wait;
        } catch (const std::logic_error& e) {
            twice = e.what();
        }
        // Woken but not yet resumed is in use still: the second await must not take over.
        ev.set();
        std::string twice_woken;
        try {
            (void)co_await wait;
        } catch (const std::logic_error& e) {
            twice_woken = e.what();
        }
        CHECK(twice_woken == "coil: two coroutines await the same event wait");
        ev.reset();
        co_await first;
        first_woke = false;
        first = ex.spawn(await_it(wait, first_woke)); // the awaiter is free again: reused
        co_await coil::yield();
        // Threads started now see the waiting list as it is (thread creation orders it), and
        // this thread is blocked in join() while they look.
        foreign_set = set_from_another_thread(ev);
        std::thread([&] {
            coil::executor other(coil_test::executor_options());
            auto waits_here = [&]() -> coil::task<void> {
                try {
                    (void)co_await ev.wait();
                } catch (const std::logic_error& e) {
                    foreign_wait = e.what();
                }
            };
            other.run(waits_here());
        }).join();
        CHECK_FALSE(ev.is_set());
        ev.set(); // on the right thread: wakes the first waiter
        co_await first;
    };
    ex.run(body());
    CHECK(twice == "coil: two coroutines await the same event wait");
    CHECK(foreign_set.find("event::set() called off the thread") != std::string::npos);
    CHECK(foreign_wait.find("must all run on one executor") != std::string::npos);
    CHECK(first_woke);
}

TEST_CASE("runtime: event::set() off its executor's thread throws logic_error with nobody "
          "waiting too, and the event stays unset",
          "[runtime][event][misuse]")
{
    const bool made_in_task = GENERATE(true, false);
    CAPTURE(made_in_task);
    coil::executor ex(coil_test::executor_options());
    std::optional<coil::event> outside;
    if (!made_in_task)
        outside.emplace(); // no executor runs here: the event belongs to its first waiter's
    auto body = [&]() -> coil::task<std::string> {
        std::optional<coil::event> inside;
        coil::event& ev = made_in_task ? inside.emplace() : *outside;
        if (!made_in_task) {
            CHECK(set_from_another_thread(ev).empty()); // nobody has waited: no thread is known yet
            ev.reset();
            auto setter = [&]() -> coil::task<void> {
                co_await coil::yield();
                ev.set();
            };
            auto s = coil::executor::current()->spawn(setter());
            auto waited = co_await ev.wait(); // now it is this executor's
            REQUIRE(waited);
            co_await s;
            ev.reset();
        }
        std::string what = set_from_another_thread(ev); // nobody waits now
        CHECK_FALSE(ev.is_set());
        ev.set(); // on its thread: fine
        CHECK(ev.is_set());
        co_return what;
    };
    CHECK_THAT(ex.run(body()),
               Catch::Matchers::ContainsSubstring("event::set() called off the thread"));
}

TEST_CASE("runtime: an event nobody waits on moves to the executor of its next waiter: set() "
          "works on that thread and throws on the one it left",
          "[runtime][event]")
{
    std::optional<coil::event> ev;
    // Waited on (and set) on this thread's executor: the event is this thread's.
    auto wait_here = [&]() -> coil::task<bool> {
        auto s = coil::executor::current()->spawn(set_after(*ev, 1ms));
        auto woke = co_await ev->wait();
        co_await s;
        co_return woke.ok();
    };
    coil::executor here(coil_test::executor_options());
    auto make_and_wait = [&]() -> coil::task<bool> {
        ev.emplace();
        co_return co_await wait_here();
    };
    CHECK(here.run(make_and_wait()));
    ev->reset();

    // Another thread's executor waits with nobody else waiting: the event moves there, and a
    // task of that executor sets it.
    bool woke_there = false;
    std::string set_on_old_thread;
    std::thread([&] {
        coil::executor there(coil_test::executor_options());
        auto body = [&]() -> coil::task<void> {
            auto s = coil::executor::current()->spawn(set_after(*ev, 1ms));
            woke_there = (co_await ev->wait()).ok();
            co_await s;
        };
        there.run(body());
    }).join();
    CHECK(woke_there);
    CHECK(ev->is_set());
    ev->reset();
    // Now this thread is the wrong one.
    try {
        ev->set();
    } catch (const std::logic_error& e) {
        set_on_old_thread = e.what();
    }
    CHECK_THAT(set_on_old_thread,
               Catch::Matchers::ContainsSubstring("event::set() called off the thread"));
    CHECK_FALSE(ev->is_set());
    // And a wait here takes it back.
    CHECK(here.run(wait_here()));
}
