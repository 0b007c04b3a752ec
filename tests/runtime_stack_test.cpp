// SPDX-License-Identifier: MIT
// Symmetric transfer: a million awaits of tasks that finish at once, and a deep chain of nested
// tasks, run in constant stack.

#include "runtime_test_support.hpp"
#include "test_executor.hpp"

#include <coil/coil.hpp>

#include <catch2/catch_test_macros.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <system_error>

namespace {

coil::task<int> immediate(int i) { co_return i & 1; }

coil::task<void> immediate_void() { co_return; }

coil::task<std::uint64_t> nested(int depth)
{
    if (depth == 0)
        co_return 0;
    co_return 1 + co_await nested(depth - 1);
}

} // namespace

TEST_CASE("runtime: a million awaits of tasks that complete at once do not overflow the stack",
          "[runtime][stack]")
{
    auto body = []() -> coil::task<std::uint64_t> {
        std::uint64_t sum = 0;
        for (int i = 0; i < 1'000'000; ++i)
            sum += static_cast<std::uint64_t>(co_await immediate(i));
        for (int i = 0; i < 1'000'000; ++i)
            co_await immediate_void();
        co_return sum;
    };
    CHECK(coil_test::run(body()) == 500'000);
}

TEST_CASE("runtime: a chain of 100,000 nested tasks does not overflow the stack", "[runtime][stack]")
{
    CHECK(coil_test::run(nested(100'000)) == 100'000);
}

namespace {

coil::task<std::uint64_t> nested_read(int depth, int fd, std::uint64_t& reads_done)
{
    if (depth == 0) {
        std::array<std::byte, 8> buffer{};
        coil::result<std::size_t> r = co_await coil::read(fd, buffer, coil::current_position);
        if (r)
            ++reads_done;
        co_return 0;
    }
    co_return 1 + co_await nested_read(depth - 1, fd, reads_done);
}

} // namespace

TEST_CASE("runtime: stopping an executor destroys a suspended chain of 300,000 nested tasks "
          "without overflowing the stack",
          "[runtime][stack][shutdown]")
{
    // Found by a user trial: each frame destroyed the task it awaited from inside its own
    // destruction, one nested call per level, and a chain that ran fine overflowed the stack
    // when stop() destroyed it (g++ -O2 crashed from about 150,000 levels).
    auto p = coil_test::make_pipe();
    std::uint64_t reads_done = 0;
    coil::executor ex(coil_test::executor_options());
    auto body = [&]() -> coil::task<void> {
        auto chain = ex.spawn(nested_read(300'000, p.read_end.get(), reads_done));
        co_await coil::yield(); // the chain runs down to its read, which waits on the empty pipe
        CHECK(ex.in_flight() == 1);
        ex.stop();
        co_await coil::yield();
    };
    CHECK_THROWS_AS(ex.run(body()), std::system_error);
    CHECK(ex.in_flight() == 0);
    CHECK(reads_done == 0);
}
