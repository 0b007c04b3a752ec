// SPDX-License-Identifier: MIT
// Symmetric transfer: a million awaits of tasks that finish at once, and a deep chain of nested
// tasks, run in constant stack.

#include "runtime_test_support.hpp"
#include "test_executor.hpp"

#include <coil/coil.hpp>

#include <catch2/catch_test_macros.hpp>

#include <cstdint>

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
