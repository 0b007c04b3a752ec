// SPDX-License-Identifier: MIT
// The ring's counters after known sequences of calls: every system call, SQE, CQE and refusal
// is accounted for exactly.

#include "ring_test_support.hpp"

#include <coil/io/ring.hpp>

#include <catch2/catch_test_macros.hpp>

#include <array>
#include <system_error>
#include <vector>

using coil::io::completion;
using coil::io::errc;
using coil::io::ring;
using coil::io::ring_stats;
using namespace coil_test;

namespace {

// Evaluated during static initialisation, in an order relative to io/ring.cpp's own that the
// language leaves open: success() must not depend on any other dynamically initialised object.
const bool success_was_empty_at_static_init = [] {
    const std::error_code ec = coil::io::detail::success();
    return !ec && ec == std::error_code{} && &ec.category() == &std::system_category();
}();

} // namespace

TEST_CASE("ring: detail::success() is an empty error code even during static initialisation",
          "[ring][error][unit]")
{
    CHECK(success_was_empty_at_static_init);
    CHECK(coil::io::detail::success() == std::error_code{});
}

TEST_CASE("ring: statistics count exactly the syscalls, SQEs, CQEs and refusals of a sequence",
          "[ring][stats]")
{
    ring ring(4); // 4 SQ entries, 8 CQ entries
    CHECK(ring.stats() == ring_stats{});

    // Nothing queued: submit() and wait() make no system call.
    auto nothing = ring.submit();
    REQUIRE(nothing.ok());
    CHECK(*nothing == 0);
    CHECK(take(ring.wait(1)).empty());
    CHECK(ring.stats() == ring_stats{});

    // Fill the SQ: queuing is not a system call.
    for (std::uint64_t i = 0; i < 4; ++i)
        REQUIRE_FALSE(ring.add_nop(i));
    CHECK(ring.stats().enter_calls == 0);
    // One more: the add hands the full SQ to the kernel (one io_uring_enter) and queues it.
    REQUIRE_FALSE(ring.add_nop(4));
    CHECK(ring.stats() == ring_stats{.enter_calls = 1, .sqes_submitted = 4, .sq_handovers = 1});
    CHECK(ring.unsubmitted() == 1);

    // One io_uring_enter hands over the fifth; nops complete during submission, so waiting
    // for all five needs no further system call.
    auto submitted = ring.submit();
    REQUIRE(submitted.ok());
    CHECK(*submitted == 1);
    auto first = take(ring.wait(5));
    REQUIRE(first.size() == 5);
    for (std::uint64_t i = 0; i < 5; ++i)
        CHECK(first[i].user_data == i); // nops complete in submission order
    CHECK(ring.stats() == ring_stats{.enter_calls = 2,
                                     .sqes_submitted = 5,
                                     .cqes_reaped = 5,
                                     .sq_full = 0,
                                     .sq_handovers = 1,
                                     .cq_overflows = 0,
                                     .submit_retries = 0});

    // A full SQ ending in an open link chain cannot be handed over: refused, and counted.
    for (std::uint64_t i = 10; i < 13; ++i)
        REQUIRE_FALSE(ring.add_nop(i));
    REQUIRE_FALSE(ring.add_nop(13, coil::io::sqe_flags::link));
    CHECK(ring.add_nop(14) == errc::no_space);
    CHECK(ring.stats().sq_full == 1);
    CHECK(ring.stats().enter_calls == 2);
    auto chain = take(ring.wait(4));
    CHECK(chain.size() == 4);

    // wait() submits and waits in a single io_uring_enter.
    REQUIRE_FALSE(ring.add_nop(5));
    auto second = take(ring.wait(1));
    REQUIRE(second.size() == 1);
    CHECK(second[0].user_data == 5);

    // Reaping an empty ring costs nothing.
    CHECK(take(ring.wait(0)).empty());
    std::array<completion, 4> none{};
    CHECK(ring.reap_into(none) == 0);
    CHECK(ring.stats() == ring_stats{.enter_calls = 4,
                                     .sqes_submitted = 10,
                                     .cqes_reaped = 10,
                                     .sq_full = 1,
                                     .sq_handovers = 1,
                                     .cq_overflows = 0,
                                     .submit_retries = 0});
}

TEST_CASE("ring: reap_into counts what it copies out and can stop part way", "[ring][stats]")
{
    ring ring(8);
    for (std::uint64_t i = 0; i < 6; ++i)
        REQUIRE_FALSE(ring.add_nop(i));
    REQUIRE(ring.submit().ok());
    CHECK(ring.ready() == 6);

    std::array<completion, 4> out{};
    REQUIRE(ring.reap_into(out) == 4);
    CHECK(ring.stats().cqes_reaped == 4);
    CHECK(ring.outstanding() == 2);
    CHECK(ring.ready() == 2);
    for (std::size_t i = 0; i < 4; ++i)
        CHECK(out[i].user_data == i); // nops complete in submission order
    REQUIRE(ring.reap_into(out) == 2);
    CHECK(out[0].user_data == 4);
    CHECK(out[1].user_data == 5);
    CHECK(ring.stats().cqes_reaped == 6);
    CHECK(ring.outstanding() == 0);
    CHECK(ring.stats().enter_calls == 1);
}

TEST_CASE("ring: a completion loop that stops early leaves the rest for the next reap",
          "[ring][reap]")
{
    ring ring(8);
    for (std::uint64_t i = 0; i < 3; ++i)
        REQUIRE_FALSE(ring.add_nop(i));
    REQUIRE(ring.submit().ok());

    for (const completion& c : ring.reap()) {
        CHECK(c.user_data == 0);
        break; // the completion the iterator stands on is not consumed
    }
    CHECK(ring.ready() == 3);
    CHECK(ring.stats().cqes_reaped == 0);

    std::vector<std::uint64_t> seen;
    for (const completion& c : ring.reap())
        seen.push_back(c.user_data);
    CHECK(seen == std::vector<std::uint64_t>{0, 1, 2});
    CHECK(ring.stats().cqes_reaped == 3);
}
