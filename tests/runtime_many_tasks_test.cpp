// SPDX-License-Identifier: MIT
// 10,000 concurrent tasks, each reading its own slice of one file, every byte verified.

#include "runtime_test_support.hpp"
#include "test_executor.hpp"

#include <coil/coil.hpp>

#include <catch2/catch_test_macros.hpp>

#include <algorithm>
#include <chrono>
#include <thread>
#include <vector>

namespace {

constexpr std::size_t task_count = 10'000;
constexpr std::size_t slice = 512;

/// Reads this task's slice after a yield, so that all tasks are alive at once.
coil::task<bool> read_slice(int fd, std::size_t index)
{
    co_await coil::yield();
    std::vector<std::byte> buffer(slice);
    const std::uint64_t offset = index * slice;
    coil::result<std::size_t> n = co_await coil::read(fd, buffer, offset);
    if (!n || *n != slice)
        co_return false;
    for (std::size_t i = 0; i < slice; ++i)
        if (buffer[i] != coil_test::pattern_byte(offset + i))
            co_return false;
    co_return true;
}

} // namespace

TEST_CASE("runtime: 10,000 concurrent tasks each read and verify their own slice of a file",
          "[runtime][many]")
{
    coil_test::temp_dir dir;
    auto fd = dir.create_file("pattern", coil_test::pattern(task_count * slice));
    coil::executor ex(coil_test::executor_options());

    SECTION("as a when_all of 10,000 tasks")
    {
        auto body = [&]() -> coil::task<std::vector<bool>> {
            std::vector<coil::task<bool>> tasks;
            tasks.reserve(task_count);
            for (std::size_t i = 0; i < task_count; ++i)
                tasks.push_back(read_slice(fd.get(), i));
            co_return co_await coil::when_all(std::move(tasks));
        };
        std::vector<bool> ok = ex.run(body());
        REQUIRE(ok.size() == task_count);
        CHECK(std::count(ok.begin(), ok.end(), true) == static_cast<long>(task_count));
    }
    SECTION("as 10,000 spawned tasks")
    {
        auto body = [&]() -> coil::task<std::size_t> {
            std::vector<coil::join_handle<bool>> handles;
            handles.reserve(task_count);
            // Spawned in reverse, so completion order differs from offset order.
            for (std::size_t i = task_count; i-- > 0;)
                handles.push_back(ex.spawn(read_slice(fd.get(), i)));
            std::size_t good = 0;
            for (auto& h : handles)
                good += (co_await h) ? 1 : 0;
            co_return good;
        };
        CHECK(ex.run(body()) == task_count);
    }
    CHECK(ex.stats().ops_started == task_count);
    CHECK(ex.in_flight() == 0);
}

namespace {

// Loops on an op that completes inline (a NOP) until `done`, at most `cap` times.
coil::task<void> nop_until(const bool& done, unsigned cap, unsigned& capped)
{
    for (unsigned i = 0; i < cap; ++i) {
        if (done) // set by another task while this one is suspended
            co_return;
        auto done_nop = co_await coil::nop();
        REQUIRE(done_nop);
    }
    ++capped;
}

} // namespace

TEST_CASE("runtime: more tasks than SQ entries looping on inline-completing ops still let a "
          "yield, a sleep and a stop through",
          "[runtime][fairness]")
{
    // Each NOP completes while the full SQ is handed over, so the CQ never drains while the
    // loop reaps; one reaping pass must still end, else the flag setter below never runs and
    // every looper spins to its cap.
    coil::executor ex(coil_test::executor_options({.entries = 64}));
    const unsigned tasks = 4 * ex.ring().sq_entries() + 1;
    constexpr unsigned cap = 20'000;
    bool done = false;
    unsigned capped = 0;
    std::vector<coil::join_handle<void>> loops;
    for (unsigned i = 0; i < tasks; ++i)
        loops.push_back(ex.spawn(nop_until(done, cap, capped)));

    SECTION("a yield")
    {
        auto setter = [&]() -> coil::task<void> {
            co_await coil::yield();
            done = true;
        };
        ex.run(setter());
    }
    SECTION("a sleep")
    {
        auto setter = [&]() -> coil::task<void> {
            (void)co_await coil::sleep_for(std::chrono::milliseconds(1));
            done = true;
        };
        ex.run(setter());
    }
    SECTION("a function posted from another thread")
    {
        std::thread stopper([&] { ex.post([&] { done = true; }); });
        auto wait_for_loops = [&]() -> coil::task<void> {
            for (auto& h : loops)
                co_await h;
        };
        ex.run(wait_for_loops());
        stopper.join();
    }
    // run() returned: every spawned looper has ended too.
    CHECK(capped == 0);
    CHECK(ex.in_flight() == 0);
}
