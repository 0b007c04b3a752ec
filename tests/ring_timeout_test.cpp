// SPDX-License-Identifier: MIT
// Timers through the ring core: plain timeouts (relative, absolute, satisfied by a count) and
// linked timeouts that cut a read short or lose to it.

#include "ring_test_support.hpp"

#include <coil/io/ring.hpp>

#include <catch2/catch_test_macros.hpp>

#include <time.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

using coil::io::completion;
using coil::io::ring;
using coil::io::sqe_flags;
using coil::io::timeout_clock;
using coil::io::timespec64;
using namespace coil_test;
using namespace std::chrono_literals;

namespace {


} // namespace

TEST_CASE("ring: a relative timeout fires with -ETIME", "[ring][timeout]")
{
    ring ring(4);
    const timespec64 when = timespec64::from(1ms);
    REQUIRE_FALSE(ring.add_timeout(&when, 0, timeout_clock::relative, 7));
    auto done = collect(ring, 1);
    REQUIRE(done.size() == 1);
    CHECK(done[0].user_data == 7);
    CHECK(done[0].result == -ETIME);
    CHECK(done[0].error() == std::errc::stream_timeout); // ETIME
}

TEST_CASE("ring: an absolute timeout on CLOCK_MONOTONIC fires with -ETIME", "[ring][timeout]")
{
    timespec now{};
    REQUIRE(::clock_gettime(CLOCK_MONOTONIC, &now) == 0);
    timespec64 when{now.tv_sec, now.tv_nsec + 1'000'000};
    if (when.tv_nsec >= 1'000'000'000) {
        when.tv_sec += 1;
        when.tv_nsec -= 1'000'000'000;
    }
    ring ring(4);
    REQUIRE_FALSE(ring.add_timeout(&when, 0, timeout_clock::absolute, 8));
    auto done = collect(ring, 1);
    REQUIRE(done.size() == 1);
    CHECK(done[0].user_data == 8);
    CHECK(done[0].result == -ETIME);
}

TEST_CASE("ring: a timeout with a count completes with 0 once that many ops have completed",
          "[ring][timeout]")
{
    ring ring(4);
    const timespec64 hour = timespec64::from(1h);
    REQUIRE_FALSE(ring.add_timeout(&hour, 1, timeout_clock::relative, 10));
    REQUIRE_FALSE(ring.add_nop(11));
    auto done = collect(ring, 2);
    REQUIRE(done.size() == 2);
    CHECK(result_of(done, 10) == 0);
    CHECK(result_of(done, 11) == 0);
}

TEST_CASE("ring: a linked timeout cancels a read from an empty pipe", "[ring][timeout][link]")
{
    pipe_fds pipe = make_pipe();
    ring ring(4);
    std::array<std::byte, 16> buffer{};
    const timespec64 when = timespec64::from(10ms);
    REQUIRE_FALSE(ring.add_read(pipe.read_end.get(), buffer, current_position, 20,
                                sqe_flags::link));
    REQUIRE_FALSE(ring.add_link_timeout(&when, 21));
    auto done = collect(ring, 2);
    REQUIRE(done.size() == 2);
    CHECK(result_of(done, 20) == -ECANCELED);
    CHECK(result_of(done, 21) == -ETIME);
    CHECK(ring.outstanding() == 0);
}

TEST_CASE("ring: a linked timeout is cancelled when its read finishes first",
          "[ring][timeout][link]")
{
    pipe_fds pipe = make_pipe();
    REQUIRE(::write(pipe.write_end.get(), "hello", 5) == 5);
    ring ring(4);
    std::array<std::byte, 16> buffer{};
    const timespec64 hour = timespec64::from(1h);
    REQUIRE_FALSE(ring.add_read(pipe.read_end.get(), buffer, current_position, 30,
                                sqe_flags::link));
    REQUIRE_FALSE(ring.add_link_timeout(&hour, 31));
    auto done = collect(ring, 2);
    REQUIRE(done.size() == 2);
    CHECK(result_of(done, 30) == 5);
    CHECK(result_of(done, 31) == -ECANCELED);
}

TEST_CASE("ring: a failed op breaks its link and the next op completes with -ECANCELED",
          "[ring][link]")
{
    ring ring(4);
    std::array<std::byte, 16> buffer{};
    REQUIRE_FALSE(ring.add_read(-1, buffer, 0, 40, sqe_flags::link));
    REQUIRE_FALSE(ring.add_nop(41));
    auto done = collect(ring, 2);
    REQUIRE(done.size() == 2);
    CHECK(result_of(done, 40) == -EBADF);
    CHECK(result_of(done, 41) == -ECANCELED);
}

TEST_CASE("ring: a hard link keeps its chain going after the op fails", "[ring][link]")
{
    ring ring(4);
    std::array<std::byte, 16> buffer{};
    REQUIRE_FALSE(ring.add_read(-1, buffer, 0, 50, sqe_flags::hard_link));
    REQUIRE_FALSE(ring.add_nop(51, sqe_flags::hard_link));
    REQUIRE_FALSE(ring.add_nop(52));
    auto done = collect(ring, 3);
    REQUIRE(done.size() == 3);
    CHECK(result_of(done, 50) == -EBADF);
    CHECK(result_of(done, 51) == 0); // ran anyway
    CHECK(result_of(done, 52) == 0);
    // In chain order.
    CHECK(done[0].user_data == 50);
    CHECK(done[1].user_data == 51);
    CHECK(done[2].user_data == 52);
}

TEST_CASE("ring: a drain op starts only once every op queued before it has completed",
          "[ring][drain]")
{
    pipe_fds pipe = make_pipe();
    ring ring(8);
    std::array<std::byte, 16> buffer{};
    REQUIRE_FALSE(ring.add_read(pipe.read_end.get(), buffer, current_position, 60));
    REQUIRE_FALSE(ring.add_nop(61, sqe_flags::drain));
    REQUIRE(ring.submit().ok());
    // The read waits for data, so the drained nop must not have run. (A timer queued now to
    // wake the ring would wait behind the nop too: look without waiting instead.)
    for (int i = 0; i < 5; ++i) {
        std::this_thread::sleep_for(2ms);
        CHECK(take(ring.reap()).empty());
    }
    REQUIRE(::write(pipe.write_end.get(), "go", 2) == 2);
    auto done = collect(ring, 2);
    REQUIRE(done.size() == 2);
    CHECK(done[0].user_data == 60);
    CHECK(done[0].result == 2);
    CHECK(done[1].user_data == 61);
    CHECK(done[1].result == 0);
    CHECK(ring.outstanding() == 0);
}

TEST_CASE("ring: a linked timeout with no linked op before it fails with -EINVAL",
          "[ring][timeout][link]")
{
    ring ring(4);
    const timespec64 when = timespec64::from(1ms);
    REQUIRE_FALSE(ring.add_nop(70)); // not linked
    REQUIRE_FALSE(ring.add_link_timeout(&when, 71));
    auto done = collect(ring, 2);
    REQUIRE(done.size() == 2);
    CHECK(result_of(done, 70) == 0);
    CHECK(result_of(done, 71) == -EINVAL);
}

TEST_CASE("ring: timespec64 splits a duration and clamps negative ones to zero",
          "[ring][timeout][unit]")
{
    const timespec64 t = timespec64::from(2'500ms);
    CHECK(t.tv_sec == 2);
    CHECK(t.tv_nsec == 500'000'000);
    const timespec64 negative = timespec64::from(-5s);
    CHECK(negative.tv_sec == 0);
    CHECK(negative.tv_nsec == 0);
}

TEST_CASE("ring: a multishot timeout with count 5 fires exactly 5 times, the last without more()",
          "[ring][timeout][multishot]")
{
    ring ring(4);
    const timespec64 interval = timespec64::from(2ms);
    REQUIRE_FALSE(ring.add_multishot_timeout(&interval, 5, 50));
    std::vector<completion> shots;
    while (ring.outstanding() != 0) {
        for (const completion& c : take(ring.wait(1))) {
            if (c.result == -EINVAL)
                SKIP("this kernel has no multishot timeouts (IORING_TIMEOUT_MULTISHOT, 6.4)");
            shots.push_back(c);
        }
    }
    REQUIRE(shots.size() == 5);
    for (std::size_t i = 0; i < shots.size(); ++i) {
        INFO("firing " << i);
        CHECK(shots[i].user_data == 50);
        CHECK(shots[i].result == -ETIME);
        CHECK(shots[i].more() == (i + 1 < shots.size()));
    }
    CHECK(ring.stats().cqes_reaped == 5);
}

TEST_CASE("ring: an endless multishot timeout ends with a final completion when removed",
          "[ring][timeout][multishot][cancel]")
{
    ring ring(4);
    const timespec64 interval = timespec64::from(1ms);
    REQUIRE_FALSE(ring.add_multishot_timeout(&interval, 0, 60));
    std::size_t firings = 0;
    while (firings < 3) {
        for (const completion& c : take(ring.wait(1))) {
            if (c.result == -EINVAL)
                SKIP("this kernel has no multishot timeouts (IORING_TIMEOUT_MULTISHOT, 6.4)");
            REQUIRE(c.user_data == 60);
            CHECK(c.result == -ETIME);
            CHECK(c.more());
            ++firings;
        }
    }
    CHECK(ring.outstanding() == 1);

    REQUIRE_FALSE(ring.add_timeout_remove(60, 61));
    bool removed = false;
    bool ended = false;
    while (ring.outstanding() != 0) {
        for (const completion& c : take(ring.wait(1))) {
            if (c.user_data == 61) {
                CHECK(c.result == 0);
                removed = true;
            } else {
                REQUIRE(c.user_data == 60);
                REQUIRE_FALSE(ended); // nothing after the final completion
                if (!c.more()) {
                    CHECK(c.result == -ECANCELED);
                    ended = true;
                } else {
                    CHECK(c.result == -ETIME); // a firing that raced the remove
                }
            }
        }
    }
    CHECK(removed);
    CHECK(ended);
}
