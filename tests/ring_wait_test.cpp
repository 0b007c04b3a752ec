// SPDX-License-Identifier: MIT
// ring::wait(): timed waits that run out, waits that cannot block, and waits for more
// completions than can arrive.

#include "ring_test_support.hpp"

#include <coil/io/ring.hpp>

#include <catch2/catch_test_macros.hpp>

#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <vector>

using coil::io::completion;
using coil::io::ring;
using namespace coil_test;
using namespace std::chrono_literals;

TEST_CASE("ring: a timed wait with nothing completing returns an empty range",
          "[ring][wait][timeout]")
{
    pipe_fds pipe = make_pipe();
    ring ring(4);
    REQUIRE_FALSE(ring.add_poll(pipe.read_end.get(), POLLIN, 1));

    auto done = ring.wait(1, 20ms);
    REQUIRE(done.ok());
    CHECK(take(std::move(done)).empty());
    CHECK(ring.unsubmitted() == 0); // the wait submitted the poll
    CHECK(ring.outstanding() == 1);

    // The ring still works after the timeout: the poll completes once the pipe has data.
    REQUIRE(::write(pipe.write_end.get(), "x", 1) == 1);
    auto later = collect(ring, 1);
    REQUIRE(later.size() == 1);
    CHECK(later[0].user_data == 1);
    CHECK((later[0].result & POLLIN) != 0);
}

TEST_CASE("ring: a timed wait returns completions that arrive before the deadline",
          "[ring][wait][timeout]")
{
    ring ring(4);
    REQUIRE_FALSE(ring.add_nop(2));
    auto done = take(ring.wait(1, 10s));
    REQUIRE(done.size() == 1);
    CHECK(done[0].user_data == 2);
}

TEST_CASE("ring: wait(1) with nothing outstanding returns an empty range at once",
          "[ring][wait]")
{
    ring ring(4);
    auto done = take(ring.wait(1));
    CHECK(done.empty());
    CHECK(ring.stats().enter_calls == 0);
    // Also without a deadline far in the future holding it up.
    CHECK(take(ring.wait(1, 1h)).empty());
}

TEST_CASE("ring: wait for more completions than are outstanding returns what there is",
          "[ring][wait]")
{
    ring ring(4);
    REQUIRE_FALSE(ring.add_nop(1));
    REQUIRE_FALSE(ring.add_nop(2));
    auto done = take(ring.wait(5));
    CHECK(done.size() == 2);
    CHECK(ring.outstanding() == 0);
}

TEST_CASE("ring: wait(0) submits queued ops without blocking", "[ring][wait]")
{
    pipe_fds pipe = make_pipe();
    ring ring(4);
    REQUIRE_FALSE(ring.add_poll(pipe.read_end.get(), POLLIN, 3));
    CHECK(ring.unsubmitted() == 1);
    CHECK(take(ring.wait(0)).empty());
    CHECK(ring.unsubmitted() == 0);
    REQUIRE(::write(pipe.write_end.get(), "x", 1) == 1);
    CHECK(collect(ring, 1).at(0).user_data == 3);
}
