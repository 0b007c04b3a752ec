// SPDX-License-Identifier: MIT
// Taking every op back: cancel_all() and drain() on a live ring, a destructor that cancels and
// drains before it returns, and a child process after fork() that leaves the parent's ops alone.

#include "ring_test_support.hpp"

#include <coil/io/ring.hpp>

#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>

#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

using coil::io::completion;
using coil::io::ring;
using coil::io::ring_options;
using coil::io::timeout_clock;
using coil::io::timespec64;
using namespace coil_test;

namespace {

// A ring with `entries` entries, with SQPOLL when `sqpoll`; SKIPs when SQPOLL is refused.
std::unique_ptr<ring> make_ring(unsigned entries, bool sqpoll)
{
    ring_options options;
    options.sqpoll = sqpoll;
    options.sqpoll_idle = std::chrono::milliseconds(10);
    try {
        return std::make_unique<ring>(entries, options);
    } catch (const std::system_error& e) {
        if (sqpoll && e.code() == std::errc::operation_not_permitted)
            SKIP("SQPOLL is not permitted here: " << e.what());
        throw;
    }
}

} // namespace

TEST_CASE("ring: cancel_all and drain take back 100 pending reads, polls and a timeout",
          "[ring][shutdown][cancel]")
{
    const bool sqpoll = GENERATE(false, true);
    INFO("sqpoll = " << sqpoll);
    auto owner = make_ring(256, sqpoll);
    ring& ring = *owner;
    pipe_fds pipe = make_pipe();
    std::vector<std::vector<std::byte>> buffers;
    for (std::uint64_t i = 0; i < 50; ++i) {
        buffers.push_back(filled(16, 0xee));
        REQUIRE_FALSE(ring.add_read(pipe.read_end.get(), buffers.back(), current_position, i));
    }
    for (std::uint64_t i = 50; i < 99; ++i)
        REQUIRE_FALSE(ring.add_poll(pipe.read_end.get(), POLLIN, i));
    const timespec64 hour = timespec64::from(std::chrono::hours(1));
    REQUIRE_FALSE(ring.add_timeout(&hour, 0, timeout_clock::relative, 99));
    REQUIRE(ring.submit().ok());
    CHECK(take(ring.wait(0)).empty()); // nothing can complete: the pipe is empty
    REQUIRE(ring.outstanding() == 100);

    ring.cancel_all();
    CHECK(ring.drain() == 100);
    CHECK(ring.outstanding() == 0);
    CHECK(ring.ready() == 0);

    // Nothing is left to consume what the pipe now gets, and no buffer changed.
    REQUIRE(::write(pipe.write_end.get(), "late", 4) == 4);
    CHECK(take(ring.wait(0)).empty());
    for (const auto& buffer : buffers)
        CHECK(buffer == filled(16, 0xee));
    std::array<char, 8> rest{};
    CHECK(::read(pipe.read_end.get(), rest.data(), rest.size()) == 4);

    // The ring works on, and cancel_all with nothing outstanding does nothing.
    ring.cancel_all();
    CHECK(ring.outstanding() == 0);
    REQUIRE_FALSE(ring.add_nop(500));
    auto done = collect(ring, 1);
    REQUIRE(done.size() == 1);
    CHECK(done[0] == completion{500, 0, 0});
}

TEST_CASE("ring: cancel_all takes back a poll whose link chain was left open",
          "[ring][shutdown][cancel]")
{
    // The poll asks to link to the next SQE, and none follows before cancel_all. Had the
    // ring's own cancel joined that chain, the kernel would start it only after the poll
    // completed, which it never does: drain() would block for ever. (Found by the ring fuzz
    // target.) Once submitted, with or without more SQEs after it, the same holds. On an SQPOLL
    // ring too, where the kernel thread may be reading a published SQE (found by a user trial:
    // the chain was left open there, and destroying the ring hung).
    const bool submitted_first = GENERATE(false, true);
    const bool sqpoll = GENERATE(false, true);
    INFO("submitted first = " << submitted_first << ", sqpoll = " << sqpoll);
    auto owner = make_ring(8, sqpoll);
    ring& ring = *owner;
    pipe_fds pipe = make_pipe();
    REQUIRE_FALSE(ring.add_poll(pipe.read_end.get(), POLLIN, 1, coil::io::poll_mode::oneshot,
                                coil::io::sqe_flags::link));
    if (submitted_first)
        REQUIRE(ring.submit().ok());
    ring.cancel_all();
    // A bounded wait rather than drain(), so that a regression fails instead of hanging.
    const auto done = take(ring.wait(1, std::chrono::seconds(10)));
    REQUIRE(done.size() == 1);
    CHECK(done[0].user_data == 1);
    CHECK(done[0].result == -ECANCELED);
    CHECK(ring.drain() == 0); // only the ring's own cancel was left, and it is swallowed
    CHECK(ring.outstanding() == 0);
}

TEST_CASE("ring: cancel_all on an SQPOLL ring whose full SQ was never submitted takes every read back",
          "[ring][shutdown][cancel][sqpoll]")
{
    // cancel_all hands a full SQ over first; the kernel thread takes it in its own time, so
    // cancel_all must wait for room rather than give up (found by a user trial: the cancel
    // was never queued, and ~ring then waited for ever).
    auto owner = make_ring(8, true);
    ring& ring = *owner;
    pipe_fds pipe = make_pipe();
    std::array<std::array<std::byte, 16>, 8> buffers{};
    for (std::uint64_t i = 0; i < 8; ++i)
        REQUIRE_FALSE(ring.add_read(pipe.read_end.get(), buffers[i], current_position, i));
    REQUIRE(ring.sq_space_left() == 0);
    ring.cancel_all();
    // drain() as ~ring calls it: a regression hangs here, and the test's timeout fails it.
    CHECK(ring.drain() == 8);
    CHECK(ring.outstanding() == 0);
    // No read is armed any more: the bytes stay in the pipe and no buffer was written.
    REQUIRE(::write(pipe.write_end.get(), "01234567", 8) == 8);
    std::array<char, 16> out{};
    CHECK(::read(pipe.read_end.get(), out.data(), out.size()) == 8);
    for (const auto& b : buffers)
        CHECK(b == std::array<std::byte, 16>{});
}

TEST_CASE("ring: cancel_all and drain take back a read linked behind a nop of the same submission",
          "[ring][shutdown][cancel]")
{
    // The nop completes while the submission is processed and hands its linked read on as
    // kernel task work; the cancel of that same submission runs before the read is armed and
    // finds nothing. drain() must cancel again rather than wait for ever (found by the ring
    // fuzz target). A regression would hang: the alarm turns that into a failure.
    ring ring(8);
    if (!ring.has_ext_arg())
        SKIP("drain() re-cancels in timed steps, which need IORING_FEAT_EXT_ARG (Linux 5.11)");
    pipe_fds pipe = make_pipe();
    std::array<std::byte, 16> buffer{};
    REQUIRE_FALSE(ring.add_nop(1, coil::io::sqe_flags::link));
    REQUIRE_FALSE(ring.add_read(pipe.read_end.get(), buffer, current_position, 2));
    ring.cancel_all();
    ::alarm(20);
    CHECK(ring.drain() == 2);
    ::alarm(0);
    CHECK(ring.outstanding() == 0);
    // The ring works on.
    REQUIRE_FALSE(ring.add_nop(3));
    auto done = collect(ring, 1);
    REQUIRE(done.size() == 1);
    CHECK(done[0] == completion{3, 0, 0});
}

TEST_CASE("ring: completions reaped around a cancel_all are delivered, the ring's own never",
          "[ring][shutdown][cancel]")
{
    ring ring(16);
    pipe_fds pipe = make_pipe();
    std::array<std::byte, 8> buffer{};
    REQUIRE_FALSE(ring.add_read(pipe.read_end.get(), buffer, current_position, 1));
    for (std::uint64_t i = 2; i < 6; ++i)
        REQUIRE_FALSE(ring.add_nop(i));
    ring.cancel_all(); // queued behind the nops, submitted with them
    std::vector<completion> seen;
    while (ring.outstanding() != 0)
        for (const completion& c : take(ring.wait(1)))
            seen.push_back(c);
    REQUIRE(seen.size() == 5);
    for (const completion& c : seen)
        CHECK(c.user_data != ring::internal_user_data);
    CHECK(result_of(seen, 1) == -ECANCELED);
    for (std::uint64_t i = 2; i < 6; ++i)
        CHECK(result_of(seen, i) == 0);
}

TEST_CASE("ring: after cancel_all, ready() and wait() count only what will be delivered",
          "[ring][shutdown][cancel]")
{
    const bool sqpoll = GENERATE(false, true);
    INFO("sqpoll = " << sqpoll);
    auto owner = make_ring(16, sqpoll);
    ring& ring = *owner;
    pipe_fds pipe = make_pipe();
    std::array<std::byte, 8> buffer{};
    REQUIRE_FALSE(ring.add_read(pipe.read_end.get(), buffer, current_position, 1));
    REQUIRE(ring.submit().ok());
    ring.cancel_all();
    // Both the read's completion and the cancel's own are posted by now (an SQPOLL thread
    // takes the cancel in its own time: give it that).
    for (int i = 0; i < 200 && ring.ready() == 0; ++i)
        ::poll(nullptr, 0, 5);
    ::poll(nullptr, 0, 10);
    // The cancel's completion is swallowed, so it is not counted as ready ...
    CHECK(ring.ready() == 1);
    // ... and a wait for one delivers the read, never an empty range.
    auto got = take(ring.wait(1));
    REQUIRE(got.size() == 1);
    CHECK(got[0].user_data == 1);
    CHECK(got[0].result == -ECANCELED);
    CHECK(ring.ready() == 0);
    CHECK(ring.outstanding() == 0);
}

TEST_CASE("ring: a single_issuer ring destroyed with ops in flight on another thread stops the "
          "program, saying why",
          "[ring][shutdown][misuse]")
{
    // The kernel lets only the creating thread submit and wait on the ring (EEXIST), so the
    // destructor can neither cancel nor drain; returning would let the kernel write freed
    // memory.
    if (!ring(8, ring_options{.single_issuer = true}).single_issuer())
        SKIP("this kernel has no IORING_SETUP_SINGLE_ISSUER");
    const std::string said = stopped_with([] {
        pipe_fds pipe = make_pipe();
        std::array<std::byte, 8> buffer{};
        std::optional<ring> r;
        r.emplace(8, ring_options{.single_issuer = true});
        if (r->add_read(pipe.read_end.get(), buffer, current_position, 1) || !r->submit().ok())
            return;
        std::thread([&] { r.reset(); }).join();
    });
    CHECK(said.find("single_issuer ring was destroyed on a thread other than the one that "
                    "created it, with 1 op(s) in flight") != std::string::npos);
}

TEST_CASE("ring: destroying a ring with reads in flight cancels them before it returns",
          "[ring][shutdown]")
{
    const bool sqpoll = GENERATE(false, true);
    INFO("sqpoll = " << sqpoll);
    pipe_fds pipe = make_pipe();
    auto buffers = std::make_unique<std::array<std::byte, 4>[]>(10);
    {
        auto owner = make_ring(16, sqpoll);
        for (std::uint64_t i = 0; i < 10; ++i)
            REQUIRE_FALSE(owner->add_read(pipe.read_end.get(), buffers[i], current_position, i));
        REQUIRE(owner->submit().ok());
        CHECK(take(owner->wait(0)).empty());
    } // ~ring: cancel_all, drain
    // No read is armed any more: the bytes stay in the pipe and no buffer is written.
    REQUIRE(::write(pipe.write_end.get(), "0123456789", 10) == 10);
    std::array<char, 16> out{};
    CHECK(::read(pipe.read_end.get(), out.data(), out.size()) == 10);
    for (std::size_t i = 0; i < 10; ++i)
        CHECK(buffers[i] == std::array<std::byte, 4>{});
}

TEST_CASE("ring: a child that destroys its copy of the ring after fork leaves the parent's "
          "read in flight",
          "[ring][shutdown][fork]")
{
    const bool sqpoll = GENERATE(false, true);
    INFO("sqpoll = " << sqpoll);
    auto owner = make_ring(8, sqpoll);
    pipe_fds pipe = make_pipe();
    std::array<std::byte, 8> buffer{};
    REQUIRE_FALSE(owner->add_read(pipe.read_end.get(), buffer, current_position, 42));
    REQUIRE(owner->submit().ok());
    CHECK(take(owner->wait(0)).empty());

    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        owner.reset(); // must neither cancel nor wait: the ops are the parent's
        ::_exit(0);
    }
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);

    REQUIRE(::write(pipe.write_end.get(), "parent", 6) == 6);
    auto done = collect(*owner, 1);
    REQUIRE(done.size() == 1);
    CHECK(done[0].user_data == 42);
    CHECK(done[0].result == 6);
    CHECK(buffer[0] == std::byte{'p'});
}
