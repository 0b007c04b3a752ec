// SPDX-License-Identifier: MIT
// Taking back ops in flight: async cancel, poll remove and timeout remove, with the two
// completions each cancellation produces.

#include "ring_test_support.hpp"

#include <coil/io/ring.hpp>

#include <catch2/catch_test_macros.hpp>

#include <poll.h>

#include <chrono>
#include <cstdint>
#include <vector>

using coil::io::completion;
using coil::io::ring;
using coil::io::timeout_clock;
using coil::io::timespec64;
using namespace coil_test;

namespace {


} // namespace

TEST_CASE("ring: cancelling a pending poll completes it with -ECANCELED and the cancel with 0",
          "[ring][cancel][poll]")
{
    pipe_fds pipe = make_pipe();
    ring ring(4);
    REQUIRE_FALSE(ring.add_poll(pipe.read_end.get(), POLLIN, 100));
    REQUIRE(ring.submit().ok());
    CHECK(ring.ready() == 0); // the pipe is empty: the poll waits

    REQUIRE_FALSE(ring.add_cancel(100, 101));
    CHECK(ring.outstanding() == 2);
    auto done = collect(ring, 2);
    REQUIRE(done.size() == 2);
    CHECK(result_of(done, 100) == -ECANCELED);
    CHECK(result_of(done, 101) == 0);
    CHECK(ring.outstanding() == 0);
}

TEST_CASE("ring: removing a pending poll completes it with -ECANCELED and the remove with 0",
          "[ring][cancel][poll]")
{
    pipe_fds pipe = make_pipe();
    ring ring(4);
    REQUIRE_FALSE(ring.add_poll(pipe.read_end.get(), POLLIN, 200));
    REQUIRE(ring.submit().ok());

    REQUIRE_FALSE(ring.add_poll_remove(200, 201));
    auto done = collect(ring, 2);
    REQUIRE(done.size() == 2);
    CHECK(result_of(done, 200) == -ECANCELED);
    CHECK(result_of(done, 201) == 0);
    CHECK(ring.outstanding() == 0);
}

TEST_CASE("ring: cancelling or removing an unknown op completes with -ENOENT", "[ring][cancel]")
{
    ring ring(4);
    REQUIRE_FALSE(ring.add_cancel(12345, 1));
    REQUIRE_FALSE(ring.add_poll_remove(12345, 2));
    auto done = collect(ring, 2);
    REQUIRE(done.size() == 2);
    CHECK(result_of(done, 1) == -ENOENT);
    CHECK(result_of(done, 2) == -ENOENT);
}

TEST_CASE("ring: removing a pending timer completes it with -ECANCELED and the remove with 0",
          "[ring][cancel][timeout]")
{
    ring ring(4);
    const timespec64 hour = timespec64::from(std::chrono::hours(1));
    REQUIRE_FALSE(ring.add_timeout(&hour, 0, timeout_clock::relative, 300));
    REQUIRE(ring.submit().ok());

    REQUIRE_FALSE(ring.add_timeout_remove(300, 301));
    auto done = collect(ring, 2);
    REQUIRE(done.size() == 2);
    CHECK(result_of(done, 300) == -ECANCELED);
    CHECK(result_of(done, 301) == 0);
    CHECK(ring.outstanding() == 0);
}
