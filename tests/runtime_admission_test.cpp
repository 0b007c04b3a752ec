// SPDX-License-Identifier: MIT
// No admission deadlock: how many ops may be pending is bounded by memory, not by the SQ or the
// CQ. Idle reads by the thousand on a small ring, ops that wait on each other, completions that
// overflow the CQ, and option checks.

#include "runtime_test_support.hpp"
#include "test_executor.hpp"

#include <coil/coil.hpp>

#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using coil_test::bytes_of;

namespace {

coil::executor_options small_ring(unsigned entries, unsigned cq_entries)
{
    coil::executor_options options;
    options.entries = entries;
    options.ring.cq_entries = cq_entries;
    return options;
}

coil::task<std::uint64_t> read_counter(int fd)
{
    std::uint64_t value = 0;
    auto n = co_await coil::read(fd, std::as_writable_bytes(std::span(&value, 1)));
    co_return n ? value : 0;
}

} // namespace

TEST_CASE("runtime: 10,000 idle reads on a 64-entry ring leave another task free to work, then "
          "all complete through a CQ overflow",
          "[runtime][admission]")
{
    constexpr std::size_t idle = 10'000;
    REQUIRE(coil_test::ensure_fd_limit(idle + 256));
    std::vector<coil_test::unique_fd> counters;
    counters.reserve(idle);
    for (std::size_t i = 0; i < idle; ++i) {
        int fd = ::eventfd(0, EFD_CLOEXEC);
        REQUIRE(fd >= 0);
        counters.emplace_back(fd);
    }
    auto busy = coil_test::make_pipe();
    // With DEFER_TASKRUN the kernel may post completions only as the CQ drains; without it
    // they are posted as the writes happen, and most must overflow.
    const bool deferred = GENERATE(true, false);
    CAPTURE(deferred);
    coil::executor_options options = small_ring(64, 128);
    options.ring.single_issuer = deferred;
    coil::executor ex(coil_test::executor_options(options));

    auto body = [&]() -> coil::task<std::uint64_t> {
        std::vector<coil::join_handle<std::uint64_t>> readers;
        readers.reserve(idle);
        for (std::size_t i = 0; i < idle; ++i)
            readers.push_back(ex.spawn(read_counter(counters[i].get())));
        co_await coil::yield();
        co_await coil::yield();
        REQUIRE(ex.in_flight() >= idle); // every idle read reached the kernel
        // Meanwhile, another task makes progress: 200 pipe round trips.
        std::array<std::byte, 8> buffer{};
        for (int i = 0; i < 200; ++i) {
            auto w = co_await coil::write(busy.write_end.get(), bytes_of("ping"));
            REQUIRE(w.ok());
            auto r = co_await coil::read(busy.read_end.get(), buffer);
            REQUIRE(r.ok());
            REQUIRE(*r == 4);
        }
        // Now wake every idle read at once: 10,000 completions into a 128-entry CQ.
        for (std::size_t i = 0; i < idle; ++i) {
            const std::uint64_t value = i + 1;
            REQUIRE(::write(counters[i].get(), &value, sizeof(value)) == sizeof(value));
        }
        std::uint64_t sum = 0;
        for (std::size_t i = 0; i < idle; ++i) {
            const std::uint64_t v = co_await readers[i];
            REQUIRE(v == i + 1); // each read got its own counter's value
            sum += v;
        }
        co_return sum;
    };
    CHECK(ex.run(body()) == idle * (idle + 1) / 2);
    CHECK(ex.in_flight() == 0);
    if (!ex.ring().single_issuer())
        CHECK(ex.ring().stats().cq_overflows > 0); // the kernel kept what the CQ could not hold
}

TEST_CASE("runtime: 5,000 ops that wait on each other in a chain all complete on a small ring",
          "[runtime][admission]")
{
    // Task i reads pipe i, then writes pipe i + 1: every read is pending before the first
    // write. A cap on pending ops below 5,000 would deadlock here.
    constexpr std::size_t links = 5'000;
    REQUIRE(coil_test::ensure_fd_limit(2 * links + 256));
    std::vector<coil_test::pipe_fds> pipes;
    pipes.reserve(links + 1);
    for (std::size_t i = 0; i <= links; ++i)
        pipes.push_back(coil_test::make_pipe());
    coil::executor ex(coil_test::executor_options(small_ring(8, 16)));

    auto relay = [&](std::size_t i) -> coil::task<bool> {
        std::array<std::byte, 1> b{};
        auto r = co_await coil::read(pipes[i].read_end.get(), b);
        if (!r || *r != 1)
            co_return false;
        auto w = co_await coil::write(pipes[i + 1].write_end.get(), b);
        co_return w.ok() && *w == 1;
    };
    auto body = [&]() -> coil::task<std::size_t> {
        std::vector<coil::join_handle<bool>> relays;
        for (std::size_t i = 0; i < links; ++i)
            relays.push_back(ex.spawn(relay(i)));
        co_await coil::yield();
        co_await coil::yield();
        REQUIRE(ex.in_flight() >= links);
        auto kick = co_await coil::write(pipes[0].write_end.get(), bytes_of("x"));
        REQUIRE(kick.ok());
        std::array<std::byte, 1> last{};
        auto end = co_await coil::read(pipes[links].read_end.get(), last);
        REQUIRE(end.ok());
        std::size_t good = 0;
        for (auto& r : relays)
            good += (co_await r) ? 1 : 0;
        co_return good;
    };
    CHECK(ex.run(body()) == links);
    CHECK(ex.in_flight() == 0);
}

TEST_CASE("runtime: a 1-entry submission queue runs ops with deadlines and sleeps",
          "[runtime][admission][timeout]")
{
    coil::executor ex(coil_test::executor_options(small_ring(1, 0)));
    auto p = coil_test::make_pipe();
    auto body = [&]() -> coil::task<int> {
        int ok = 0;
        std::array<std::byte, 4> b{};
        for (int i = 0; i < 20; ++i) {
            auto r = co_await coil::read(p.read_end.get(), b).with_timeout(1ms);
            if (!r && r.error() == std::errc::timed_out)
                ++ok;
            auto n = co_await coil::nop();
            ok += n.ok() ? 1 : 0;
        }
        (void)co_await coil::sleep_for(1ms);
        co_return ok;
    };
    CHECK(ex.run(body()) == 40);
    CHECK(ex.in_flight() == 0);
}

TEST_CASE("runtime: an executor refuses a ring that caps pending ops, naming the reason",
          "[runtime][admission][setup]")
{
    coil::executor_options options;
    options.ring.cap_outstanding = true;
    try {
        coil::executor ex(coil_test::executor_options(options));
        FAIL("the executor accepted cap_outstanding");
    } catch (const std::system_error& e) {
        CHECK(std::string(e.what()).find("cap_outstanding") != std::string::npos);
    }
}

TEST_CASE("runtime: an executor's CQ is never smaller than its SQ: a large SQ works with the "
          "default CQ size",
          "[runtime][admission][setup]")
{
    for (unsigned entries : {8u, 256u, 8192u}) {
        CAPTURE(entries);
        coil::executor ex(coil::executor_options{.entries = entries});
        CHECK(ex.ring().sq_entries() == entries);
        CHECK(ex.ring().cq_entries() == std::max(4096u, 2 * entries));
        auto nop_ok = []() -> coil::task<bool> { co_return (co_await coil::nop()).ok(); };
        CHECK(ex.run(nop_ok()));
    }
}
