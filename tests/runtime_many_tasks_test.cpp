// SPDX-License-Identifier: MIT
// 10,000 concurrent tasks, each reading its own slice of one file, every byte verified.

#include "runtime_test_support.hpp"
#include "test_executor.hpp"

#include <coil/coil.hpp>

#include <catch2/catch_test_macros.hpp>

#include <algorithm>
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
