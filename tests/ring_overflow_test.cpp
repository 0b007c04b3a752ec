// SPDX-License-Identifier: MIT
// Completion-queue capacity: the optional outstanding-op cap that keeps the CQ from overflowing,
// and the default without it (the kernel's overflow list, which the ring flushes while reaping).

#include "ring_test_support.hpp"

#include <coil/io/ring.hpp>

#include <catch2/catch_test_macros.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>
#include <system_error>
#include <thread>
#include <vector>

using coil::io::completion;
using coil::io::errc;
using coil::io::ring;
using coil::io::ring_options;
using namespace coil_test;

namespace {

// No cap on outstanding ops and an 8-entry CQ: a few dozen NOPs overflow it.
ring_options uncapped_small_cq()
{
    ring_options options;
    options.cq_entries = 8;
    options.cap_outstanding = false;
    return options;
}

} // namespace

TEST_CASE("ring: an uncapped ring loses no completion when 200 nops overflow an 8-entry CQ",
          "[ring][overflow]")
{
    constexpr std::uint64_t nops = 200;
    ring ring(4, uncapped_small_cq());
    REQUIRE(ring.sq_entries() == 4);
    REQUIRE(ring.cq_entries() == 8);

    // Queue and submit, never reaping in between.
    for (std::uint64_t next = 0; next < nops;) {
        auto ec = ring.add_nop(next);
        if (ec == errc::no_space) {
            auto submitted = ring.submit();
            REQUIRE(submitted.ok());
            REQUIRE(ring.space_left() > 0); // only the SQ limits an uncapped ring
            continue;
        }
        REQUIRE_FALSE(ec);
        ++next;
    }
    REQUIRE(ring.submit().ok());
    CHECK(ring.unsubmitted() == 0);
    CHECK(ring.outstanding() == nops);

    // One pass of reap() delivers everything: the CQ, then what the kernel kept aside, in the
    // order the kernel posted them (NOPs complete in submission order).
    std::vector<int> seen(nops, 0);
    std::vector<std::uint64_t> order;
    std::uint64_t reaped = 0;
    for (const completion& c : ring.reap()) {
        REQUIRE(c.user_data < nops);
        ++seen[c.user_data];
        order.push_back(c.user_data);
        CHECK(c.result == 0);
        ++reaped;
    }
    CHECK(reaped == nops);
    CHECK(std::is_sorted(order.begin(), order.end()));
    CHECK(std::all_of(seen.begin(), seen.end(), [](int n) { return n == 1; }));
    CHECK(ring.outstanding() == 0);
    CHECK(ring.ready() == 0);
    CHECK(ring.stats().cqes_reaped == nops);
    // 200 completions cannot fit in 8 CQ entries: the kernel must have overflowed.
    CHECK(ring.stats().cq_overflows >= 1);
}

TEST_CASE("ring: an uncapped ring's reap_into also flushes the overflow list",
          "[ring][overflow][reap_into]")
{
    constexpr std::uint64_t nops = 64;
    ring ring(8, uncapped_small_cq());

    queue_nops_without_reaping(ring, nops);
    REQUIRE(ring.submit().ok());

    std::vector<completion> out(nops + 10);
    std::size_t n = ring.reap_into(out);
    REQUIRE(n == nops);
    std::vector<int> seen(nops, 0);
    for (std::size_t i = 0; i < n; ++i) {
        REQUIRE(out[i].user_data < nops);
        ++seen[out[i].user_data];
    }
    CHECK(std::all_of(seen.begin(), seen.end(), [](int k) { return k == 1; }));
    CHECK(ring.outstanding() == 0);
    CHECK(ring.stats().cqes_reaped == nops);
    CHECK(ring.stats().cq_overflows >= 1);
}

TEST_CASE("ring: a capped ring refuses an op once outstanding() reaches cq_entries()",
          "[ring][overflow][no_space]")
{
    ring_options options;
    options.cq_entries = 8;
    options.cap_outstanding = true;
    ring ring(4, options);
    REQUIRE(ring.cq_entries() == 8);

    std::uint64_t next = 0;
    while (ring.outstanding() < ring.cq_entries()) {
        auto ec = ring.add_nop(next);
        if (ec == errc::no_space) {
            REQUIRE(ring.submit().ok()); // the SQ filled first: hand it over
            continue;
        }
        REQUIRE_FALSE(ec);
        ++next;
    }
    REQUIRE(ring.submit().ok());
    CHECK(next == 8);
    CHECK(ring.unsubmitted() == 0); // the SQ is empty...
    CHECK(ring.space_left() == 0);  // ...but the CQ has no room for another completion
    const auto refusals = ring.stats().sq_full;
    CHECK(ring.add_nop(99) == errc::no_space);
    CHECK(ring.stats().sq_full == refusals + 1);
    CHECK(ring.outstanding() == 8);

    // Reaping one completion makes room for exactly one op.
    std::vector<completion> one(1);
    REQUIRE(ring.reap_into(one) == 1);
    CHECK(ring.space_left() == 1);
    CHECK_FALSE(ring.add_nop(100));
    CHECK(ring.add_nop(101) == errc::no_space);

    auto rest = collect(ring, 8);
    CHECK(rest.size() == 8);
    CHECK(ring.outstanding() == 0);
    CHECK(ring.stats().cq_overflows == 0);
}

TEST_CASE("ring: the outstanding cap refuses inline and out-of-line adds alike at cq_entries",
          "[ring][overflow][no_space]")
{
    ring_options options;
    options.cap_outstanding = true;
    ring ring(8, options); // 8 SQ entries, 16 CQ entries
    REQUIRE(ring.cq_entries() == 16);

    // Fill the CQ's promise with a mix of inline nops and out-of-line cancels (of nothing).
    std::uint64_t next = 0;
    while (ring.outstanding() < ring.cq_entries()) {
        auto ec = next % 2 == 0 ? ring.add_nop(next) : ring.add_cancel(9999, next);
        if (ec == errc::no_space) {
            REQUIRE(ring.unsubmitted() == ring.sq_entries()); // only the SQ may refuse here
            REQUIRE(ring.submit().ok());
            continue;
        }
        REQUIRE_FALSE(ec);
        ++next;
    }
    REQUIRE(ring.submit().ok());
    CHECK(ring.space_left() == 0);
    CHECK(ring.add_nop(100) == errc::no_space);
    CHECK(ring.add_cancel(9999, 101) == errc::no_space);
    CHECK(ring.add_sqe(0, 102, [](coil::io::sqe&) {}) == errc::no_space);
    CHECK(ring.outstanding() == 16);

    // Nothing refused was queued: exactly the 16 accepted ops complete, without overflow.
    auto done = collect(ring, 16);
    CHECK(done.size() == 16);
    for (const completion& c : done)
        CHECK(c.user_data < 16);
    CHECK(ring.outstanding() == 0);
    CHECK(ring.stats().cq_overflows == 0);
}

TEST_CASE("ring: by default a ring takes more ops than its CQ holds", "[ring][overflow]")
{
    ring ring(4); // 4 SQ entries, 8 CQ entries, no cap
    REQUIRE(ring.cq_entries() == 8);
    for (std::uint64_t i = 0; i < 12;) {
        auto ec = ring.add_nop(i);
        if (ec == errc::no_space) {
            REQUIRE(ring.submit().ok());
            continue;
        }
        REQUIRE_FALSE(ec);
        ++i;
    }
    CHECK(ring.outstanding() == 12);
    CHECK(ring.space_left() == ring.sq_space_left());
    CHECK(collect(ring, 12).size() == 12);
    CHECK(ring.outstanding() == 0);
}

TEST_CASE("ring: waiting for more completions than the CQ holds returns them all",
          "[ring][overflow][wait]")
{
    constexpr std::uint64_t nops = 40;
    ring ring(4, uncapped_small_cq());
    queue_nops_without_reaping(ring, nops);
    REQUIRE(ring.outstanding() == nops);

    // The kernel can show at most cq_entries() completions at once, so a wait for all 40 must
    // settle for a full CQ rather than re-enter the kernel until the deadline. (The deadline
    // only bounds the damage should that regress; nothing here depends on its length.)
    const auto enters_before = ring.stats().enter_calls;
    auto done = ring.wait(nops, std::chrono::seconds(10));
    REQUIRE(done.ok());
    CHECK(ring.stats().enter_calls - enters_before <= 1);

    std::vector<int> seen(nops, 0);
    for (const completion& c : *done) {
        REQUIRE(c.user_data < nops);
        ++seen[c.user_data];
    }
    CHECK(std::all_of(seen.begin(), seen.end(), [](int n) { return n == 1; }));
    CHECK(ring.outstanding() == 0);
}

TEST_CASE("ring: for_each_ready leaves the overflow list to submit_and_get_events",
          "[ring][overflow]")
{
    constexpr std::uint64_t nops = 40;
    ring ring(4, uncapped_small_cq());
    queue_nops_without_reaping(ring, nops);
    REQUIRE(ring.submit().ok());
    REQUIRE(ring.outstanding() == nops);

    // 40 completions, 8 CQ entries: the kernel holds the rest until an enter flushes them.
    CHECK(ring.kernel_holds_completions());
    std::vector<int> seen(nops, 0);
    auto record = [&](const completion& c) {
        REQUIRE(c.user_data < nops);
        ++seen[c.user_data];
    };
    const auto enters = ring.stats().enter_calls;
    const std::size_t first = ring.for_each_ready(record);
    CHECK(first >= 8); // the CQ, and whatever a refused submit moved into the backlog
    CHECK(ring.stats().enter_calls == enters); // reaping alone never entered
    // (Unless the kernel refused submissions until the backlog took everything: older kernels
    // answer EBUSY while their overflow list is not empty.)
    CHECK(ring.kernel_holds_completions() == (first < nops));

    std::size_t total = first;
    for (int round = 0; round < 100 && total < nops; ++round) {
        REQUIRE(ring.submit_and_get_events().ok());
        total += ring.for_each_ready(record);
    }
    CHECK(total == nops);
    CHECK(std::all_of(seen.begin(), seen.end(), [](int n) { return n == 1; }));
    CHECK(ring.outstanding() == 0);
    CHECK_FALSE(ring.kernel_holds_completions());
    CHECK(ring.stats().cq_overflows >= 1);
}

TEST_CASE("ring: on an SQPOLL ring submit_and_get_events flushes the overflow list too",
          "[ring][overflow][sqpoll]")
{
    // The kernel thread takes the SQEs and posts the completions, but what overflowed the CQ
    // comes back only through an enter of the ring's own: submit_and_get_events must make it.
    constexpr std::uint64_t nops = 40;
    ring_options options = uncapped_small_cq();
    options.sqpoll = true;
    std::optional<ring> maybe;
    try {
        maybe.emplace(4, options);
    } catch (const std::system_error& e) {
        if (e.code() != std::errc::operation_not_permitted)
            throw;
    }
    if (!maybe || !maybe->sqpoll())
        SKIP("no SQPOLL ring here");
    ring& ring = *maybe;
    // Bounds on waiting for the kernel thread, so that a regression fails instead of hanging;
    // nothing here depends on their length.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    for (std::uint64_t next = 0; next < nops;) {
        if (ring.add_nop(next) == errc::no_space) {
            REQUIRE(ring.submit().ok());
            REQUIRE(std::chrono::steady_clock::now() < deadline);
            std::this_thread::yield(); // the kernel thread frees SQ entries as it takes them
            continue;
        }
        ++next;
    }
    REQUIRE(ring.submit().ok());

    std::vector<int> seen(nops, 0);
    std::size_t total = 0;
    while (total < nops && std::chrono::steady_clock::now() < deadline) {
        REQUIRE(ring.submit_and_get_events().ok());
        total += ring.for_each_ready([&](const completion& c) {
            REQUIRE(c.user_data < nops);
            ++seen[c.user_data];
        });
        std::this_thread::yield();
    }
    CHECK(total == nops);
    CHECK(std::all_of(seen.begin(), seen.end(), [](int n) { return n == 1; }));
    CHECK(ring.outstanding() == 0);
}
