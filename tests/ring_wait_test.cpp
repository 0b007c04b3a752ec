// SPDX-License-Identifier: MIT
// ring::wait(): timed waits that run out, waits that cannot block, and waits for more
// completions than can arrive.

#include "ring_test_support.hpp"

#include <coil/io/ring.hpp>

#include <catch2/catch_test_macros.hpp>

#include <linux/io_uring.h>
#include <poll.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <vector>

using coil::io::completion;
using coil::io::ring;
using coil::io::ring_options;
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

TEST_CASE("ring: for_each_ready leaves deferred task work for submit_and_get_events",
          "[ring][wait][taskrun]")
{
    ring_options options;
    options.single_issuer = true; // DEFER_TASKRUN: completions wait as task work until an enter
    options.coop_taskrun = true;  // with TASKRUN_FLAG, which says they are waiting
    ring ring(4, options);
    pipe_fds pipe = make_pipe();
    std::array<std::byte, 8> buffer{};
    REQUIRE_FALSE(ring.add_read(pipe.read_end.get(), buffer, 0, 7));
    REQUIRE(ring.submit().ok());
    REQUIRE(::write(pipe.write_end.get(), "ab", 2) == 2);

    const unsigned deferred = IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
    std::vector<completion> seen;
    auto record = [&](const completion& c) { seen.push_back(c); };
    if ((ring.setup_flags() & deferred) == deferred) {
        // The read's completion is the kernel's to post; reaping alone must not enter for it.
        CHECK(ring.kernel_holds_completions());
        CHECK(ring.ready() == 0);
        const auto enters = ring.stats().enter_calls;
        CHECK(ring.for_each_ready(record) == 0);
        CHECK(ring.stats().enter_calls == enters);
        auto got = ring.submit_and_get_events();
        REQUIRE(got.ok());
        CHECK(*got == 0); // nothing was queued
        CHECK(ring.stats().enter_calls == enters + 1);
        CHECK_FALSE(ring.kernel_holds_completions());
        CHECK(ring.ready() == 1);
    } else {
        // Without deferred task work the kernel may post the completion at any time: only
        // the end result is certain.
        REQUIRE(ring.submit_and_get_events().ok());
        if (ring.ready() == 0)
            REQUIRE(ring.wait(1).ok());
    }
    CHECK(ring.for_each_ready(record) == 1);
    REQUIRE(seen.size() == 1);
    CHECK(seen[0].user_data == 7);
    CHECK(seen[0].result == 2);
    CHECK(ring.outstanding() == 0);
}

TEST_CASE("ring: submit_and_get_events submits what is queued and returns without waiting",
          "[ring][wait]")
{
    ring ring(4);
    pipe_fds pipe = make_pipe();
    REQUIRE_FALSE(ring.add_poll(pipe.read_end.get(), POLLIN, 1));
    REQUIRE_FALSE(ring.add_nop(2));
    auto got = ring.submit_and_get_events();
    REQUIRE(got.ok());
    CHECK(*got == 2);
    CHECK(ring.unsubmitted() == 0);
    // The nop completed; the poll waits for data that never came, and nothing blocked.
    std::vector<std::uint64_t> seen;
    if (ring.ready() == 0)
        REQUIRE(ring.wait(1).ok());
    ring.for_each_ready([&](const completion& c) { seen.push_back(c.user_data); });
    CHECK(seen == std::vector<std::uint64_t>{2});
    CHECK(ring.outstanding() == 1);
    // With nothing queued and nothing held, it does not enter the kernel.
    const auto enters = ring.stats().enter_calls;
    if (!ring.kernel_holds_completions()) {
        CHECK(*ring.submit_and_get_events() == 0);
        CHECK(ring.stats().enter_calls == enters);
    }
}

TEST_CASE("ring: for_each_ready and for_each_completion take at most their limit, and a pass "
          "limited to ready() ends although its callback queues ops that complete at once",
          "[ring][wait]")
{
    ring ring(4);
    for (std::uint64_t i = 0; i < 4; ++i)
        REQUIRE_FALSE(ring.add_nop(i));
    REQUIRE(ring.wait(4).ok());
    REQUIRE(ring.ready() == 4);
    std::vector<std::uint64_t> seen;
    auto record = [&](const completion& c) { seen.push_back(c.user_data); };
    CHECK(ring.for_each_ready(record, 1) == 1);
    CHECK(ring.for_each_completion(record, 2) == 2);
    CHECK(ring.ready() == 1);
    CHECK(ring.for_each_ready(record, 0) == 0);
    CHECK(ring.for_each_ready(record) == 1);
    CHECK(seen == std::vector<std::uint64_t>{0, 1, 2, 3});

    // Each completion queues two NOPs; the 4-entry SQ fills and is handed over, and the NOPs
    // complete inline, so an unlimited pass would not end.
    for (std::uint64_t i = 0; i < 4; ++i)
        REQUIRE_FALSE(ring.add_nop(i));
    REQUIRE(ring.wait(4).ok());
    std::uint64_t next = 4;
    const unsigned now = ring.ready();
    const std::size_t taken = ring.for_each_ready(
        [&](const completion&) {
            REQUIRE_FALSE(ring.add_nop(next++));
            REQUIRE_FALSE(ring.add_nop(next++));
        },
        now);
    CHECK(taken == now);
    CHECK(ring.outstanding() == 2 * now);
    ring.drain();
}
