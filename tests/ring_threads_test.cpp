// SPDX-License-Identifier: MIT
// Handing a ring between threads: the registered ring fd belongs to the registering thread, so
// other threads must enter with the plain fd; a single-issuer ring refuses other threads.

#include "ring_test_support.hpp"

#include <coil/io/ring.hpp>

#include <catch2/catch_test_macros.hpp>

#include <memory>
#include <optional>
#include <system_error>
#include <thread>
#include <vector>

using coil::io::completion;
using coil::io::ring;
using coil::io::ring_options;
using namespace coil_test;

namespace {

// Queues a nop tagged `user_data` and waits for it; true when it came back with result 0.
bool round_trip(ring& ring, std::uint64_t user_data)
{
    if (ring.add_nop(user_data))
        return false;
    auto done = ring.wait(1);
    if (!done)
        return false;
    std::vector<completion> seen;
    for (const completion& c : *done)
        seen.push_back(c);
    return seen.size() == 1 && seen[0] == completion{user_data, 0, 0};
}

} // namespace

TEST_CASE("ring: a ring created on one thread submits and waits on another, then back",
          "[ring][threads]")
{
    ring ring(4);
    REQUIRE(round_trip(ring, 1));
    bool other_ok = false;
    std::optional<std::error_code> other_error;
    std::thread other([&] {
        // No Catch2 assertion on this thread: they are not thread-safe.
        if (ring.add_nop(2))
            return;
        auto done = ring.wait(1);
        if (!done) {
            other_error = done.error();
            return;
        }
        for (const completion& c : *done)
            other_ok = c == completion{2, 0, 0};
    });
    other.join();
    INFO("error on the other thread: " << (other_error ? other_error->message() : "none"));
    CHECK(other_ok);
    CHECK(round_trip(ring, 3));
    CHECK(ring.outstanding() == 0);
}

TEST_CASE("ring: destroying a ring created on another thread leaves this thread's ring working",
          "[ring][threads]")
{
    ring mine(4);
    REQUIRE(round_trip(mine, 1));

    // The other thread creates a ring (registering its fd in its own context, likely at the
    // same index as ours in this thread's) and stays alive while this thread destroys it.
    std::unique_ptr<ring> theirs;
    bool theirs_ok = false;
    std::thread other([&] {
        theirs = std::make_unique<ring>(4);
        theirs_ok = round_trip(*theirs, 7);
    });
    other.join();
    REQUIRE(theirs != nullptr);
    CHECK(theirs_ok);
    CHECK(round_trip(*theirs, 8)); // handed over: used here with the plain fd
    theirs.reset();
    CHECK(round_trip(mine, 2));
}

TEST_CASE("ring: a ring whose creating thread has exited works on a thread that took its id",
          "[ring][threads]")
{
    // glibc hands a new thread the id of one that has exited, so the thread the ring is handed
    // to usually has its creator's std::thread::id, but not its io_uring context: the ring's
    // registered fd means nothing there, or, once that thread has registered a ring of its
    // own, that other ring (found by a user trial: EINVAL, then ops queued on one ring and
    // waited for on the other).
    std::unique_ptr<ring> handed;
    std::thread::id creator;
    std::thread([&] {
        handed = std::make_unique<ring>(4);
        creator = std::this_thread::get_id();
        static_cast<void>(round_trip(*handed, 1));
    }).join();
    REQUIRE(handed != nullptr);

    bool same_id = false, before_own = false, own_ok = false, after_own = false, again = false;
    std::thread([&] {
        same_id = std::this_thread::get_id() == creator;
        before_own = round_trip(*handed, 2);
        ring own(4);
        own_ok = round_trip(own, 3);
        after_own = round_trip(*handed, 4);
        again = round_trip(own, 5) && own.outstanding() == 0;
    }).join();
    INFO("the second thread had the creator's id: " << same_id);
    CHECK(before_own);
    CHECK(own_ok);
    CHECK(after_own);
    CHECK(again);
    CHECK(handed->outstanding() == 0);
}

TEST_CASE("ring: a single-issuer ring refuses another thread's submit with EEXIST",
          "[ring][threads][single_issuer]")
{
    ring_options options;
    options.single_issuer = true;
    ring ring(4, options);
    if (!ring.single_issuer())
        SKIP("this kernel has no IORING_SETUP_SINGLE_ISSUER (Linux 6.1)");
    REQUIRE(round_trip(ring, 1));
    std::optional<std::error_code> other_error;
    bool queued = false;
    std::thread other([&] {
        queued = !ring.add_nop(2);
        auto submitted = ring.submit();
        if (!submitted)
            other_error = submitted.error();
    });
    other.join();
    REQUIRE(queued);
    REQUIRE(other_error.has_value());
    CHECK(*other_error == std::errc::file_exists);
    // The nop stayed queued; the creating thread submits it.
    auto done = collect(ring, 1);
    REQUIRE(done.size() == 1);
    CHECK(done[0] == completion{2, 0, 0});
}
