// SPDX-License-Identifier: MIT
// Admission under the CQ cap: more ops than max_in_flight() are awaited at once; the surplus waits
// its turn in order, and every op still completes with its own result.

#include "runtime_test_support.hpp"

#include <coil/coil.hpp>

#include <catch2/catch_test_macros.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using coil_test::bytes_of;

TEST_CASE("runtime: 200 concurrent nops on an 8-entry ring all complete, some after waiting",
          "[runtime][admission]")
{
    coil::executor ex(coil::executor_options{.entries = 8});
    const std::size_t capacity = ex.max_in_flight();
    REQUIRE(capacity < 200);
    std::size_t most_in_flight = 0;
    auto one = [&]() -> coil::task<bool> {
        coil::result<void> r = co_await coil::nop();
        most_in_flight = std::max(most_in_flight, ex.in_flight());
        co_return r.ok();
    };
    auto body = [&]() -> coil::task<std::vector<bool>> {
        std::vector<coil::task<bool>> tasks;
        for (int i = 0; i < 200; ++i)
            tasks.push_back(one());
        co_return co_await coil::when_all(std::move(tasks));
    };
    std::vector<bool> ok = ex.run(body());
    REQUIRE(ok.size() == 200);
    CHECK(std::all_of(ok.begin(), ok.end(), [](bool b) { return b; }));
    CHECK(ex.stats().ops_deferred > 0);
    CHECK(ex.stats().ops_started == 200);
    CHECK(most_in_flight <= capacity);
    CHECK(ex.in_flight() == 0);
    CHECK(ex.ring().stats().cq_overflows == 0);
}

TEST_CASE("runtime: 200 concurrent pipe reads on an 8-entry ring each get their own pipe's bytes",
          "[runtime][admission]")
{
    constexpr std::size_t count = 200;
    REQUIRE(coil_test::ensure_fd_limit(2 * count + 256));
    std::vector<coil_test::pipe_fds> pipes;
    for (std::size_t i = 0; i < count; ++i)
        pipes.push_back(coil_test::make_pipe());
    coil::executor ex(coil::executor_options{.entries = 8});
    const std::size_t capacity = ex.max_in_flight();

    auto reader = [](int fd) -> coil::task<std::string> {
        std::array<char, 32> buffer{};
        coil::result<std::size_t> n =
            co_await coil::read(fd, std::as_writable_bytes(std::span(buffer)), coil::current_position);
        if (!n)
            throw std::system_error(n.error());
        co_return std::string(buffer.data(), *n);
    };
    auto body = [&]() -> coil::task<std::vector<std::string>> {
        std::vector<coil::join_handle<std::string>> handles;
        for (std::size_t i = 0; i < count; ++i)
            handles.push_back(ex.spawn(reader(pipes[i].read_end.get())));
        co_await coil::yield(); // every reader has started: `capacity` in the kernel, the rest queued
        REQUIRE(ex.in_flight() == capacity);
        // A write from an awaited op would queue behind the blocked reads, so write directly.
        for (std::size_t i = 0; i < count; ++i)
            coil_test::write_fully(pipes[i].write_end.get(), bytes_of("pipe-" + std::to_string(i)));
        std::vector<std::string> out;
        for (auto& h : handles)
            out.push_back(co_await h);
        co_return out;
    };
    std::vector<std::string> got = ex.run(body());
    REQUIRE(got.size() == count);
    for (std::size_t i = 0; i < count; ++i)
        CHECK(got[i] == "pipe-" + std::to_string(i));
    CHECK(ex.stats().ops_deferred >= count - capacity);
    CHECK(ex.in_flight() == 0);
}

TEST_CASE("runtime: ops with deadlines (two completions each) are admitted under the cap",
          "[runtime][admission][timeout]")
{
    coil_test::temp_dir dir;
    auto fd = dir.create_file("data", coil_test::pattern(100 * 64));
    coil::executor ex(coil::executor_options{.entries = 8});
    auto reader = [&](std::size_t i) -> coil::task<bool> {
        std::array<std::byte, 64> buffer{};
        coil::result<std::size_t> n =
            co_await coil::with_timeout(coil::read(fd.get(), buffer, i * 64), 1h);
        co_return n.ok() && *n == 64 &&
            std::equal(buffer.begin(), buffer.end(), coil_test::pattern(64, i * 64).begin());
    };
    auto body = [&]() -> coil::task<std::vector<bool>> {
        std::vector<coil::task<bool>> tasks;
        for (std::size_t i = 0; i < 100; ++i)
            tasks.push_back(reader(i));
        co_return co_await coil::when_all(std::move(tasks));
    };
    std::vector<bool> ok = ex.run(body());
    CHECK(std::count(ok.begin(), ok.end(), true) == 100);
    CHECK(ex.stats().ops_deferred > 0);
    CHECK(ex.in_flight() == 0);
    CHECK(ex.ring().stats().cq_overflows == 0);
}
