// SPDX-License-Identifier: MIT
// Multishot streams: a multishot poll and a repeating timer delivered through stream<Op>, with a
// consumer slower than the producer, cancellation mid-stream, and destruction while armed.

#include "runtime_test_support.hpp"
#include "test_executor.hpp"

#include <coil/coil.hpp>
#include <coil/runtime/stream.hpp>

#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

coil_test::unique_fd make_eventfd()
{
    int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    REQUIRE(fd >= 0);
    return coil_test::unique_fd(fd);
}

void add(int fd, std::uint64_t v) { REQUIRE(::write(fd, &v, sizeof(v)) == sizeof(v)); }

// Takes what the eventfd holds (0 if nothing: it is non-blocking).
std::uint64_t take(int fd)
{
    std::uint64_t v = 0;
    return ::read(fd, &v, sizeof(v)) == sizeof(v) ? v : 0;
}

bool is_canceled(const std::error_code& e) { return e == std::errc::operation_canceled; }

// Writes 1..count to `fd`, one per loop turn (a nop between), so each is its own wake-up.
coil::task<void> produce(int fd, std::uint64_t count)
{
    for (std::uint64_t i = 1; i <= count; ++i) {
        add(fd, i);
        auto n = co_await coil::nop();
        REQUIRE(n.ok());
    }
}

// Sixteen eventfd reads that complete together when `fill()` writes their counters: on an
// 8-entry CQ (coil_test::eight_entry_cq) their completions fill it and the rest overflow, so
// a multishot op's completion that comes after them finds no room.
class cq_filler {
public:
    static constexpr std::size_t reads = 16;

    cq_filler()
    {
        for (std::size_t i = 0; i < reads; ++i)
            counters_.push_back(make_eventfd());
    }
    // Spawns the reads; returns once they are in the kernel beside the `others` ops there.
    coil::task<void> arm(std::size_t others)
    {
        coil::executor& ex = *coil::executor::current();
        for (auto& c : counters_)
            reads_.push_back(ex.spawn(read_one(c.get())));
        while (ex.in_flight() < reads + others)
            co_await coil::yield();
    }
    // The reads complete (their completions are posted when the thread next enters the ring).
    void fill()
    {
        for (auto& c : counters_)
            add(c.get(), 1);
    }
    // Whether every read got its counter's 1.
    coil::task<bool> finish()
    {
        bool all = true;
        for (auto& r : reads_)
            all = (co_await r) && all;
        co_return all;
    }

private:
    static coil::task<bool> read_one(int fd)
    {
        std::uint64_t v = 0;
        auto r = co_await coil::read(fd, std::as_writable_bytes(std::span(&v, 1)));
        co_return r.ok() && v == 1;
    }

    std::vector<coil_test::unique_fd> counters_;
    std::vector<coil::join_handle<bool>> reads_;
};

} // namespace

TEST_CASE("runtime: a multishot poll stream delivers readiness until every value is read",
          "[runtime][stream][poll]")
{
    auto efd = make_eventfd();
    constexpr std::uint64_t count = 100;
    constexpr std::uint64_t total = count * (count + 1) / 2;
    coil::executor ex(coil_test::executor_options());
    std::size_t events = 0;
    std::size_t arms = 0;
    auto body = [&]() -> coil::task<std::uint64_t> {
        auto producer = ex.spawn(produce(efd.get(), count));
        std::uint64_t sum = 0;
        {
            auto ready = coil::poll_multishot(efd.get(), POLLIN);
            while (sum < total) {
                auto event = co_await ready.next();
                REQUIRE(event.has_value());
                REQUIRE(event->ok());
                CHECK((**event & POLLIN) != 0);
                ++events;
                sum += take(efd.get());
            }
            arms = ready.arms();
        } // destroyed armed: cancelled and drained
        co_await producer;
        co_return sum;
    };
    CHECK(ex.run(body()) == total);
    CHECK(events >= 1);
    CHECK(arms >= 1);
    CHECK(ex.in_flight() == 0);
}

TEST_CASE("runtime: a stream whose consumer is slower than its producer pauses, re-arms and "
          "loses nothing",
          "[runtime][stream][poll]")
{
    auto efd = make_eventfd();
    constexpr std::uint64_t count = 200;
    constexpr std::uint64_t total = count * (count + 1) / 2;
    coil::executor ex(coil_test::executor_options());
    std::size_t pauses = 0;
    std::size_t arms = 0;
    auto body = [&]() -> coil::task<std::uint64_t> {
        auto ready = coil::poll_multishot(efd.get(), POLLIN, {.bound = 2});
        auto producer = ex.spawn(produce(efd.get(), count));
        std::uint64_t sum = 0;
        while (sum < total) {
            auto event = co_await ready.next();
            REQUIRE(event.has_value());
            REQUIRE(event->ok());
            // A slow consumer: several loop turns per event, while the producer writes on.
            for (int i = 0; i < 4; ++i)
                co_await coil::yield();
            sum += take(efd.get());
        }
        co_await producer;
        pauses = ready.pauses();
        arms = ready.arms();
        co_return sum;
    };
    CHECK(ex.run(body()) == total);
    CHECK(pauses > 0);
    CHECK(arms > 1);
    CHECK(ex.in_flight() == 0);
}

TEST_CASE("runtime: a stream left armed by a consumer with a token of its own is taken over by "
          "the next consumer, whose stop request ends it, after the first consumer's scope is gone",
          "[runtime][stream][cancel][lifetime]")
{
    // The first consumer takes one event and returns, its scope with it; the multishot poll
    // stays armed, and the second consumer's next() finds it so.
    auto efd = make_eventfd();
    coil::executor ex(coil_test::executor_options());
    std::stop_source first_token;
    std::stop_source second_token;
    auto body = [&]() -> coil::task<std::pair<int, std::string>> {
        auto ready = coil::poll_multishot(efd.get(), POLLIN);
        auto first = [&]() -> coil::task<bool> {
            auto event = co_await ready.next();
            take(efd.get());
            co_return event && event->ok();
        };
        add(efd.get(), 1);
        const bool first_ok = co_await coil::with_stop_token(first_token.get_token(), first());
        REQUIRE(first_ok);
        // Stops the second consumer before any new event. The events and the stop() after it
        // only end a stream the stop request did not reach.
        auto stopper = [&]() -> coil::task<void> {
            for (int j = 0; j < 4; ++j)
                co_await coil::yield();
            second_token.request_stop();
            for (int i = 0; i < 3; ++i) {
                for (int j = 0; j < 4; ++j)
                    co_await coil::yield();
                add(efd.get(), 1);
            }
            for (int j = 0; j < 4; ++j)
                co_await coil::yield();
            ready.stop();
        };
        auto stopping = ex.spawn(stopper());
        auto second = [&]() -> coil::task<std::pair<int, std::string>> {
            int events = 0;
            while (auto event = co_await ready.next()) {
                if (!*event)
                    co_return std::pair{events, event->error().message()};
                ++events;
                take(efd.get());
            }
            co_return std::pair{events, std::string("ended")};
        };
        auto outcome = co_await coil::with_stop_token(second_token.get_token(), second());
        co_await stopping;
        first_token.request_stop(); // reaches nothing now
        co_return outcome;
    };
    const auto [events, end] = ex.run(body());
    CHECK(events == 0); // the stop request reached the stream at once
    CHECK(end == std::make_error_code(std::errc::operation_canceled).message());
    CHECK(ex.in_flight() == 0);
}

TEST_CASE("runtime: a stop request ends a stream with operation_canceled after its final "
          "completion",
          "[runtime][stream][cancel]")
{
    auto efd = make_eventfd();
    const bool from_other_thread = GENERATE(false, true);
    CAPTURE(from_other_thread);
    std::stop_source source;
    coil::executor ex(coil_test::executor_options());
    auto consumer = [&]() -> coil::task<std::pair<int, bool>> {
        auto ready = coil::poll_multishot(efd.get(), POLLIN);
        int events = 0;
        for (;;) {
            auto event = co_await ready.next();
            if (!event)
                break; // ended
            if (!event->ok()) {
                CHECK(is_canceled(event->error()));
                auto after = co_await ready.next();
                co_return std::pair{events, !after.has_value() && ready.ended()};
            }
            ++events;
            (void)take(efd.get());
            if (events == 3) {
                if (from_other_thread)
                    std::thread([&] { source.request_stop(); }).join();
                else
                    source.request_stop();
            } else {
                add(efd.get(), 1);
            }
        }
        co_return std::pair{events, false};
    };
    auto body = [&]() -> coil::task<std::pair<int, bool>> {
        add(efd.get(), 1);
        co_return co_await coil::with_stop_token(source.get_token(), consumer());
    };
    auto [events, ended_cleanly] = ex.run(body());
    CHECK(events == 3);
    CHECK(ended_cleanly);
    CHECK(ex.in_flight() == 0);
}

TEST_CASE("runtime: stream::stop ends a stream; a stream stopped before it started ends at once",
          "[runtime][stream][cancel]")
{
    auto efd = make_eventfd();
    coil::executor ex(coil_test::executor_options());
    auto body = [&]() -> coil::task<int> {
        int checks = 0;
        {
            auto unstarted = coil::poll_multishot(efd.get(), POLLIN);
            unstarted.stop();
            auto e = co_await unstarted.next();
            REQUIRE(e.has_value());
            REQUIRE_FALSE(e->ok());
            CHECK(is_canceled(e->error()));
            auto after_end = co_await unstarted.next();
            CHECK_FALSE(after_end.has_value());
            ++checks;
        }
        {
            auto ready = coil::poll_multishot(efd.get(), POLLIN);
            add(efd.get(), 1);
            auto e = co_await ready.next();
            REQUIRE(e.has_value());
            REQUIRE(e->ok());
            ready.stop();
            int errors = 0;
            while (auto more = co_await ready.next())
                errors += more->ok() ? 0 : 1;
            CHECK(errors == 1);
            CHECK(ex.in_flight() == 0);
            ++checks;
        }
        co_return checks;
    };
    CHECK(ex.run(body()) == 2);
}

TEST_CASE("runtime: a repeating timer stream delivers exactly its count of ticks, even to a slow "
          "consumer",
          "[runtime][stream][timer]")
{
    coil::executor ex(coil_test::executor_options());
    const bool slow = GENERATE(false, true);
    CAPTURE(slow);
    std::size_t pauses = 0;
    auto body = [&]() -> coil::task<int> {
        auto ticks = coil::ticks(1ms, 20, {.bound = 1});
        int n = 0;
        while (auto tick = co_await ticks.next()) {
            if (!tick->ok()) {
                if (tick->error() == std::errc::invalid_argument)
                    co_return -1; // no multishot timeouts in this kernel
                FAIL("tick failed: " << tick->error().message());
            }
            ++n;
            if (slow)
                (void)co_await coil::sleep_for(3ms);
        }
        pauses = ticks.pauses();
        co_return n;
    };
    const int ticks = ex.run(body());
    if (ticks == -1)
        SKIP("this kernel has no IORING_TIMEOUT_MULTISHOT (Linux 6.4)");
    CHECK(ticks == 20);
    if (slow)
        CHECK(pauses > 0);
    CHECK(ex.in_flight() == 0);
}

TEST_CASE("runtime: a stream with the default options buffers 64 completions for a consumer "
          "that takes none, then pauses its op",
          "[runtime][stream][timer]")
{
    coil::executor ex(coil_test::executor_options());
    struct outcome {
        bool supported = true;
        std::size_t buffered = 0, pauses = 0;
    };
    auto body = [&]() -> coil::task<outcome> {
        outcome o;
        auto ticks = coil::ticks(200us, 400); // stream_options{}: bound 64
        auto first = co_await ticks.next();
        if (first && !first->ok() && first->error() == std::errc::invalid_argument) {
            o.supported = false; // no multishot timeouts in this kernel
            co_return o;
        }
        // Taking nothing for long enough to be offered about 500 ticks.
        for (int i = 0; i < 100 && ticks.pauses() == 0; ++i)
            (void)co_await coil::sleep_for(5ms);
        (void)co_await coil::sleep_for(10ms); // the pause's cancel has landed
        o.buffered = ticks.buffered();
        o.pauses = ticks.pauses();
        ticks.stop();
        while (co_await ticks.next()) {
        }
        co_return o;
    };
    const outcome o = ex.run(body());
    if (!o.supported)
        SKIP("this kernel has no IORING_TIMEOUT_MULTISHOT (Linux 6.4)");
    CHECK(o.pauses == 1);
    // 64, and what arrived between the pause and its cancel's landing.
    CHECK(o.buffered >= 64);
    CHECK(o.buffered < 128);
    CHECK(ex.in_flight() == 0);
}

TEST_CASE("runtime: a counted timer stream whose tick found the CQ full (the kernel ends the "
          "timer then) is armed again for the rest, and delivers exactly its count",
          "[runtime][stream][timer][overflow]")
{
    // An 8-entry CQ. While the thread is away from the ring, 16 pending reads complete and
    // then a tick is due: the reads' completions fill the CQ (the rest go to the overflow
    // list), and the tick's finds no room, so the kernel ends the multishot timer with that
    // tick (-ETIME without `more`) though ticks remain.
    const bool deferred = GENERATE(true, false);
    CAPTURE(deferred);
    coil::executor ex(coil_test::executor_options(coil_test::eight_entry_cq(deferred)));
    constexpr int count = 5;
    cq_filler filler;
    std::size_t arms = 0;
    bool reads_ok = false;
    auto body = [&]() -> coil::task<int> {
        auto ticks = coil::ticks(2ms, count);
        auto first = co_await ticks.next();
        REQUIRE(first.has_value());
        if (!first->ok() && first->error() == std::errc::invalid_argument)
            co_return -1; // no multishot timeouts in this kernel
        REQUIRE(first->ok());
        co_await filler.arm(1); // beside the timer
        filler.fill();
        std::this_thread::sleep_for(10ms); // the thread is away: the next tick comes due
        int n = 1;
        while (auto tick = co_await ticks.next()) {
            REQUIRE(tick->ok());
            ++n;
        }
        arms = ticks.arms();
        reads_ok = co_await filler.finish();
        co_return n;
    };
    const int ticks = ex.run(body());
    if (ticks == -1)
        SKIP("this kernel has no IORING_TIMEOUT_MULTISHOT (Linux 6.4)");
    CHECK(ticks == count);
    CHECK(reads_ok);
    CHECK(ex.ring().stats().cq_overflows > 0);
    CHECK(arms > 1); // the kernel's early end was armed again
    CHECK(ex.in_flight() == 0);
}

TEST_CASE("runtime: a multishot poll stream the kernel ended because the CQ was full is armed "
          "again and goes on delivering",
          "[runtime][stream][poll][overflow]")
{
    // As above: 16 reads fill an 8-entry CQ, then the polled eventfd becomes readable, and
    // the poll's completion, finding no room, is its last.
    const bool deferred = GENERATE(true, false);
    CAPTURE(deferred);
    coil::executor ex(coil_test::executor_options(coil_test::eight_entry_cq(deferred)));
    cq_filler filler;
    auto signal = make_eventfd();
    std::size_t arms = 0;
    bool reads_ok = false;
    auto body = [&]() -> coil::task<int> {
        auto ready = coil::poll_multishot(signal.get(), POLLIN);
        int events = 0;
        add(signal.get(), 1);
        auto first = co_await ready.next();
        REQUIRE((first && first->ok()));
        ++events;
        REQUIRE(take(signal.get()) == 1);
        co_await filler.arm(1); // beside the poll
        filler.fill();
        add(signal.get(), 2); // its completion comes after the reads'
        auto second = co_await ready.next();
        REQUIRE((second && second->ok()));
        ++events;
        REQUIRE(take(signal.get()) == 2);
        reads_ok = co_await filler.finish();
        // Still watching: a later write is seen.
        add(signal.get(), 3);
        auto third = co_await ready.next();
        REQUIRE((third && third->ok()));
        ++events;
        CHECK(take(signal.get()) == 3);
        arms = ready.arms();
        co_return events;
    };
    CHECK(ex.run(body()) == 3);
    CHECK(reads_ok);
    CHECK(ex.ring().stats().cq_overflows > 0);
    CHECK(arms > 1); // the kernel's end was armed again
    CHECK(ex.in_flight() == 0);
}

TEST_CASE("runtime: an endless timer stream ends when stopped", "[runtime][stream][timer]")
{
    coil::executor ex(coil_test::executor_options());
    auto body = [&]() -> coil::task<int> {
        auto ticks = coil::ticks(1ms);
        int n = 0;
        while (auto tick = co_await ticks.next()) {
            if (!tick->ok()) {
                if (tick->error() == std::errc::invalid_argument)
                    co_return -1;
                CHECK(is_canceled(tick->error()));
                continue;
            }
            if (++n == 5)
                ticks.stop();
        }
        co_return n;
    };
    const int n = ex.run(body());
    if (n == -1)
        SKIP("this kernel has no IORING_TIMEOUT_MULTISHOT (Linux 6.4)");
    CHECK(n >= 5);
    CHECK(ex.in_flight() == 0);
}

TEST_CASE("runtime: an endless timer stream cancelled between two ticks still ends (dropped, "
          "stopped, or shut down with the executor)",
          "[runtime][stream][timer][cancel]")
{
    // A multishot timeout that has fired is re-armed by kernel task work, which runs when the
    // executor next enters the kernel: a cancel submitted in that same enter finds no timer
    // (-ENOENT) and the timer then goes on. The thread sleeps past a tick before each cancel,
    // so that the cancel lands there; the executor must cancel again.
    const std::string how = GENERATE("dropped", "stopped", "executor stop");
    CAPTURE(how);
    constexpr int rounds = 20;
    std::uint64_t retried = 0;
    bool unsupported = false;
    for (int round = 0; round < rounds && !unsupported; ++round) {
        coil::executor ex(coil_test::executor_options());
        auto body = [&]() -> coil::task<int> {
            int n = 0;
            {
                auto ticks = coil::ticks(1ms);
                auto first = co_await ticks.next();
                if (first && !first->ok() && first->error() == std::errc::invalid_argument)
                    co_return -1; // no multishot timeouts in this kernel
                std::this_thread::sleep_for(3ms); // a tick fires; its re-arm waits for us
                if (how == "dropped")
                    co_return 1; // ~stream cancels and waits for the final completion
                if (how == "executor stop") {
                    ex.stop(); // run() ends: cancels and drains everything in flight
                    (void)co_await ticks.next();
                    co_return 1;
                }
                ticks.stop();
                while (auto tick = co_await ticks.next())
                    if (tick->ok())
                        ++n;
                    else
                        CHECK(is_canceled(tick->error()));
            }
            co_return 1;
        };
        int got = 0;
        try {
            got = ex.run(body());
        } catch (const std::system_error& e) {
            CHECK(how == "executor stop");
            CHECK(is_canceled(e.code()));
            got = 1;
        }
        unsupported = got == -1;
        CHECK(ex.in_flight() == 0);
        retried += ex.stats().cancels_retried;
    }
    if (unsupported)
        SKIP("this kernel has no IORING_TIMEOUT_MULTISHOT (Linux 6.4)");
    // The race was really run: some cancel found the timer between two ticks.
    CHECK(retried > 0);
}

TEST_CASE("runtime: stream::stop delivers the completions already buffered, then "
          "operation_canceled, then the end",
          "[runtime][stream][cancel]")
{
    auto efd = make_eventfd();
    coil::executor ex(coil_test::executor_options());
    auto body = [&]() -> coil::task<std::vector<std::string>> {
        auto ready = coil::poll_multishot(efd.get(), POLLIN, {.bound = 8});
        std::vector<std::string> seen;
        add(efd.get(), 1); // the first event, taken: the stream is armed from here on
        auto first = co_await ready.next();
        REQUIRE((first && first->ok()));
        (void)take(efd.get());
        for (std::size_t i = 1; i <= 3; ++i) { // three more events, not taken
            add(efd.get(), 1);
            for (int turn = 0; turn < 1000 && ready.buffered() < i; ++turn)
                (void)co_await coil::nop(); // loop turns until the event's completion is in
            (void)take(efd.get());
        }
        REQUIRE(ready.buffered() == 3);
        ready.stop();
        while (auto e = co_await ready.next())
            seen.push_back(e->ok() ? "event" : e->error() == std::errc::operation_canceled
                                                  ? "canceled"
                                                  : e->error().message());
        seen.push_back("end");
        CHECK(ready.ended());
        co_return seen;
    };
    CHECK(ex.run(body()) ==
          std::vector<std::string>{"event", "event", "event", "canceled", "end"});
    CHECK(ex.in_flight() == 0);
}
