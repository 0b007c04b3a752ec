// SPDX-License-Identifier: MIT
// executor_options::busy_poll: with an SQPOLL ring the executor spins on the completion queue
// before it sleeps, so completions are taken without a system call; timers and work posted from
// other threads still end the spin; and the option is refused where it cannot work.

#include "runtime_test_support.hpp"
#include "test_executor.hpp"
#include "test_support.hpp"

#include <coil/coil.hpp>

#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <array>
#include <atomic>
#include <algorithm>
#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <system_error>
#include <thread>
#include <vector>

using Catch::Matchers::ContainsSubstring;

namespace {

// An executor on an SQPOLL ring that spins up to `spin`, or null when SQPOLL is refused here.
std::unique_ptr<coil::executor> spinning_executor(std::chrono::microseconds spin)
{
    coil::executor_options options;
    options.ring.sqpoll = true;
    options.busy_poll = spin;
    try {
        return std::make_unique<coil::executor>(coil_test::executor_options(options));
    } catch (const std::system_error& e) {
        if (e.code() == std::errc::operation_not_permitted)
            return nullptr;
        throw;
    }
}

} // namespace

TEST_CASE("runtime: busy_poll without SQPOLL, or negative, is refused with EINVAL saying why",
          "[runtime][busy_poll]")
{
    for (auto spin : {std::chrono::microseconds(50), std::chrono::microseconds(-1)}) {
        coil::executor_options options;
        options.busy_poll = spin;
        options.ring.sqpoll = spin.count() < 0; // negative is refused with SQPOLL too
        try {
            coil::executor ex(options);
            FAIL("the executor accepted busy_poll = " << spin.count() << " us");
        } catch (const std::system_error& e) {
            if (e.code() == std::errc::operation_not_permitted)
                SKIP("SQPOLL is not permitted here");
            CHECK(e.code() == std::errc::invalid_argument);
            CHECK_THAT(e.what(), ContainsSubstring("busy_poll") && ContainsSubstring("sqpoll"));
        }
    }
}

TEST_CASE("runtime: with busy_poll, 2,000 file reads return the right bytes and are taken by "
          "spinning, not by entering the kernel",
          "[runtime][busy_poll]")
{
    auto ex = spinning_executor(std::chrono::milliseconds(50));
    if (!ex)
        SKIP("SQPOLL is not permitted here");
    coil_test::temp_dir dir;
    constexpr std::size_t block = 4096;
    constexpr std::size_t blocks = 64;
    const std::vector<std::byte> contents = coil_test::pattern(block * blocks);
    coil_test::unique_fd fd = dir.create_file("data", contents);

    constexpr int reads = 2000;
    const std::uint64_t enters_before = ex->ring().stats().enter_calls;
    auto body = [&]() -> coil::task<int> {
        std::vector<std::byte> buffer(block);
        int right = 0;
        for (int i = 0; i < reads; ++i) {
            const std::uint64_t offset = (static_cast<std::uint64_t>(i) * 37 % blocks) * block;
            coil::result<std::size_t> n = co_await coil::read(fd.get(), buffer, offset);
            if (n && *n == block &&
                std::equal(buffer.begin(), buffer.end(), contents.begin() + offset))
                ++right;
        }
        co_return right;
    };
    CHECK(ex->run(body()) == reads);
    const std::uint64_t enters = ex->ring().stats().enter_calls - enters_before;
    CAPTURE(enters, ex->stats().busy_poll_hits);
    // Each read's completion is met by the spin; a system call is needed only to wake an SQPOLL
    // thread that went to sleep (after a second idle) or after a spin that ran out.
    CHECK(ex->stats().busy_poll_hits >= reads / 2);
    CHECK(enters < reads / 2);
}

TEST_CASE("runtime: a due timer ends the spin (busy_poll as long as it gets)",
          "[runtime][busy_poll]")
{
    auto ex = spinning_executor(std::chrono::microseconds::max());
    if (!ex)
        SKIP("SQPOLL is not permitted here");
    auto body = []() -> coil::task<int> {
        int slept = 0;
        for (int i = 0; i < 3; ++i)
            if (coil::result<void> r = co_await coil::sleep_for(std::chrono::milliseconds(5)); r)
                ++slept;
        co_return slept;
    };
    // Had the spin ignored the timers, run() would spin for an hour (the test would time out).
    CHECK(ex->run(body()) == 3);
    CHECK(ex->stats().timers_fired == 3);
}

TEST_CASE("runtime: a function posted from another thread ends the spin (busy_poll of an hour)",
          "[runtime][busy_poll][threads]")
{
    auto ex = spinning_executor(std::chrono::hours(1));
    if (!ex)
        SKIP("SQPOLL is not permitted here");
    coil_test::event ready;
    int value = 0;
    std::thread poster([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        ex->post([&] {
            value = 42;
            ready.set(*ex);
        });
    });
    auto body = [&]() -> coil::task<int> {
        co_await ready;
        co_return value;
    };
    const int got = ex->run(body());
    poster.join();
    CHECK(got == 42);
}

TEST_CASE("runtime: stop() from another thread ends the spin and the run",
          "[runtime][busy_poll][threads]")
{
    auto ex = spinning_executor(std::chrono::hours(1));
    if (!ex)
        SKIP("SQPOLL is not permitted here");
    auto p = coil_test::make_pipe();
    std::atomic<bool> reading{false};
    std::thread stopper([&] {
        while (!reading.load())
            std::this_thread::yield();
        std::this_thread::sleep_for(std::chrono::milliseconds(10)); // let the executor spin
        ex->stop();
    });
    auto root = [&]() -> coil::task<void> {
        std::array<std::byte, 8> buffer{};
        reading.store(true);
        coil::result<std::size_t> r = co_await coil::read(p.read_end.get(), buffer);
        static_cast<void>(r);
        FAIL("the read completed although nothing was written");
    };
    try {
        ex->run(root());
        FAIL("run() returned normally after stop()");
    } catch (const std::system_error& e) {
        CHECK(e.code() == std::errc::operation_canceled);
    }
    stopper.join();
    CHECK(ex->in_flight() == 0);
}
