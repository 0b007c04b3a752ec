// SPDX-License-Identifier: MIT
// Poll ops through the ring core: one-shot polls on /dev/zero and on eventfds, more polls than
// the ring holds at once, and multishot polls.

#include "ring_test_support.hpp"

#include <coil/io/ring.hpp>

#include <catch2/catch_test_macros.hpp>

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <vector>

using coil::io::completion;
using coil::io::errc;
using coil::io::poll_mode;
using coil::io::ring;
using namespace coil_test;

TEST_CASE("ring: a poll on /dev/zero completes with POLLIN", "[ring][poll][seed]")
{
    // Port of crosvm's URingContext test "dev_zero_readable".
    unique_fd zero(::open("/dev/zero", O_RDONLY | O_CLOEXEC));
    REQUIRE(zero.get() >= 0);

    ring ring(4);
    REQUIRE_FALSE(ring.add_poll(zero.get(), POLLIN, 454));
    auto done = take(ring.wait(1));
    REQUIRE(done.size() == 1);
    CHECK(done[0].user_data == 454);
    INFO("revents = " << done[0].result);
    CHECK((done[0].result & POLLIN) != 0);
    // /dev/zero has no poll method, so the kernel reports its default mask (IN|OUT|RDNORM|
    // WRNORM) narrowed to what was asked for: exactly POLLIN.
    CHECK(done[0].result == POLLIN);
}

TEST_CASE("ring: 49 polls through a 16-entry ring each complete exactly once",
          "[ring][poll][sq_full]")
{
    constexpr std::size_t polls = 49;
    std::vector<unique_fd> events;
    for (std::size_t i = 0; i < polls; ++i)
        events.push_back(make_eventfd());

    ring ring(16);
    std::vector<int> seen(polls, 0);
    std::size_t armed = 0;
    std::size_t signalled = 0;
    std::size_t done = 0;
    while (done < polls) {
        while (armed < polls) {
            auto ec = ring.add_poll(events[armed].get(), POLLIN, armed);
            if (ec == errc::no_space)
                break;
            REQUIRE_FALSE(ec);
            ++armed;
        }
        REQUIRE(ring.submit().ok());
        // The polls are armed on quiet eventfds; only now do they become readable.
        for (; signalled < armed; ++signalled)
            signal_eventfd(events[signalled].get());
        for (const completion& c : take(ring.wait(1))) {
            REQUIRE(c.user_data < polls);
            ++seen[c.user_data];
            CHECK((c.result & POLLIN) != 0);
            ++done;
        }
    }
    CHECK(std::all_of(seen.begin(), seen.end(), [](int n) { return n == 1; }));
    CHECK(ring.outstanding() == 0);
    CHECK(ring.stats().sq_handovers >= 1); // the SQ did fill up, and went to the kernel
    CHECK(ring.stats().sq_full == 0);
}

TEST_CASE("ring: a multishot poll on an eventfd completes once per write with more() set",
          "[ring][poll][multishot]")
{
    unique_fd event = make_eventfd();
    ring ring(4);
    REQUIRE_FALSE(ring.add_poll(event.get(), POLLIN, 8, poll_mode::multishot));
    REQUIRE(ring.submit().ok());

    std::vector<completion> shots;
    for (int write = 0; write < 2; ++write) {
        signal_eventfd(event.get());
        auto done = take(ring.wait(1));
        REQUIRE(done.size() >= 1);
        if (done[0].result == -EINVAL)
            SKIP("this kernel has no multishot poll (IORING_POLL_ADD_MULTI, Linux 5.13)");
        // Drain the counter so that the next write is a fresh event.
        std::uint64_t value = 0;
        REQUIRE(::read(event.get(), &value, sizeof value) == static_cast<ssize_t>(sizeof value));
        shots.insert(shots.end(), done.begin(), done.end());
    }
    REQUIRE(shots.size() >= 2);
    for (const completion& c : shots) {
        CHECK(c.user_data == 8);
        CHECK((c.result & POLLIN) != 0);
        CHECK(c.more());
    }
    // A multishot op stays outstanding until its final completion.
    CHECK(ring.outstanding() == 1);

    REQUIRE_FALSE(ring.add_poll_remove(8, 9));
    auto removed = collect(ring, 2);
    REQUIRE(removed.size() == 2);
    for (const completion& c : removed) {
        if (c.user_data == 8) {
            CHECK(c.result == -ECANCELED);
            CHECK_FALSE(c.more());
        } else {
            CHECK(c.user_data == 9);
            CHECK(c.result == 0);
        }
    }
    CHECK(ring.outstanding() == 0);
}

TEST_CASE("ring: a poll for POLLOUT on an empty pipe completes at once", "[ring][poll]")
{
    pipe_fds pipe = make_pipe();
    ring ring(2);
    REQUIRE_FALSE(ring.add_poll(pipe.write_end.get(), POLLOUT, 3));
    auto done = take(ring.wait(1));
    REQUIRE(done.size() == 1);
    CHECK(done[0].user_data == 3);
    CHECK((done[0].result & POLLOUT) != 0);
}

TEST_CASE("ring: a multishot poll on a pipe completes once per write and ends when cancelled",
          "[ring][poll][multishot][cancel]")
{
    pipe_fds pipe = make_pipe();
    ring ring(4);
    REQUIRE_FALSE(ring.add_poll(pipe.read_end.get(), POLLIN, 70, poll_mode::multishot));
    REQUIRE(ring.submit().ok());

    std::size_t shots = 0;
    for (int round = 0; round < 3; ++round) {
        REQUIRE(::write(pipe.write_end.get(), "x", 1) == 1);
        auto done = take(ring.wait(1));
        REQUIRE(done.size() == 1);
        if (done[0].result == -EINVAL)
            SKIP("this kernel has no multishot poll (IORING_POLL_ADD_MULTI, Linux 5.13)");
        CHECK(done[0].user_data == 70);
        CHECK((done[0].result & POLLIN) != 0);
        CHECK(done[0].more());
        char byte = 0;
        REQUIRE(::read(pipe.read_end.get(), &byte, 1) == 1); // empty again: the next write is news
        ++shots;
    }
    CHECK(shots == 3);
    CHECK(ring.outstanding() == 1);

    REQUIRE_FALSE(ring.add_cancel(70, 71));
    auto done = collect(ring, 2);
    REQUIRE(done.size() == 2);
    CHECK(result_of(done, 71) == 0);
    for (const completion& c : done)
        if (c.user_data == 70) {
            CHECK(c.result == -ECANCELED);
            CHECK_FALSE(c.more());
        }
    CHECK(ring.outstanding() == 0);
}
