// SPDX-License-Identifier: MIT
// The ring in an outer event loop: its own file descriptor, readable exactly when completions
// are ready, and a registered eventfd the kernel signals when it posts them.

#include "ring_test_support.hpp"

#include <coil/io/ring.hpp>

#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>

#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <system_error>
#include <vector>

using coil::io::ring;
using coil::io::ring_options;
using namespace coil_test;

namespace {

// A non-blocking eventfd with its counter at zero.
unique_fd make_nonblocking_eventfd()
{
    int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0)
        throw std::system_error(errno, std::generic_category(), "eventfd");
    return unique_fd(fd);
}

// Reads the eventfd's counter (resetting it to zero); 0 when it was not signalled.
std::uint64_t take_signals(int fd)
{
    std::uint64_t value = 0;
    if (::read(fd, &value, sizeof value) == static_cast<ssize_t>(sizeof value))
        return value;
    REQUIRE(errno == EAGAIN);
    return 0;
}

// Blocks until the eventfd is readable, as an outer loop would; false after 10 s (a guard
// against a hang, not a timing check).
bool wait_readable(int fd)
{
    pollfd p{fd, POLLIN, 0};
    int ready = 0;
    do // io_uring's own task work (starting a worker thread, say) can interrupt a wait
        ready = ::poll(&p, 1, 10'000);
    while (ready < 0 && errno == EINTR);
    return ready == 1 && (p.revents & POLLIN) != 0;
}

std::vector<coil::io::completion> reap_now(ring& ring)
{
    std::vector<coil::io::completion> done;
    for (const coil::io::completion& c : ring.reap())
        done.push_back(c);
    return done;
}

} // namespace

TEST_CASE("ring: the ring fd polls readable through epoll once a write has completed",
          "[ring][epoll][seed]")
{
    // Port of crosvm's URingContext test "write_one_submit_poll".
    temp_dir dir;
    unique_fd file = dir.create_file("epoll");
    std::vector<std::byte> data = filled(4096, 0x3c);

    ring ring(8);
    unique_fd epoll(::epoll_create1(EPOLL_CLOEXEC));
    REQUIRE(epoll.get() >= 0);
    epoll_event interest{};
    interest.events = EPOLLIN;
    interest.data.u64 = 0xfeed;
    REQUIRE(::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, ring.fd(), &interest) == 0);

    // Nothing has been posted yet: a zero-timeout epoll_wait finds nothing.
    epoll_event event{};
    CHECK(::epoll_wait(epoll.get(), &event, 1, 0) == 0);

    REQUIRE_FALSE(ring.add_write(file.get(), data, 0, 77));
    // Queued but not submitted: still nothing.
    CHECK(::epoll_wait(epoll.get(), &event, 1, 0) == 0);
    auto submitted = ring.submit();
    REQUIRE(submitted.ok());
    CHECK(*submitted == 1);

    int ready = 0;
    for (int attempt = 0; attempt < 100 && ready == 0; ++attempt) {
        ready = ::epoll_wait(epoll.get(), &event, 1, 100);
        REQUIRE(ready >= 0);
    }
    REQUIRE(ready == 1);
    CHECK((event.events & EPOLLIN) != 0);
    CHECK(event.data.u64 == 0xfeed);

    std::vector<coil::io::completion> done;
    for (const coil::io::completion& c : ring.reap())
        done.push_back(c);
    REQUIRE(done.size() == 1);
    CHECK(done[0].user_data == 77);
    CHECK(done[0].result == 4096);

    // Reaped: the fd is quiet again.
    CHECK(::epoll_wait(epoll.get(), &event, 1, 0) == 0);
}

TEST_CASE("ring: a registered eventfd is signalled when completions are posted, and not before",
          "[ring][eventfd]")
{
    // Both kinds of ring: on a single_issuer (DEFER_TASKRUN) ring completions are posted only
    // when the ring's thread enters the kernel, and the eventfd must still wake the outer loop.
    const bool single_issuer = GENERATE(false, true);
    CAPTURE(single_issuer);
    ring ring(8, ring_options{.single_issuer = single_issuer});
    unique_fd efd = make_nonblocking_eventfd();
    CHECK_FALSE(ring.eventfd_registered());
    REQUIRE_FALSE(ring.register_eventfd(efd.get()));
    CHECK(ring.eventfd_registered());
    CHECK(ring.eventfd_enabled());

    // A read of an empty pipe is queued and submitted: nothing completes, nothing is signalled.
    pipe_fds pipe = make_pipe();
    std::byte byte{};
    REQUIRE_FALSE(ring.add_read(pipe.read_end.get(), {&byte, 1}, current_position, 5));
    REQUIRE(ring.submit().ok());
    CHECK(take_signals(efd.get()) == 0);

    // The pipe is written from outside the ring: the read completes and the loop, waiting on
    // the eventfd alone, wakes up and finds it by reaping.
    const char x = 'x';
    REQUIRE(::write(pipe.write_end.get(), &x, 1) == 1);
    REQUIRE(wait_readable(efd.get()));
    CHECK(take_signals(efd.get()) >= 1);
    std::vector<coil::io::completion> done = reap_now(ring);
    REQUIRE(done.size() == 1);
    CHECK(done[0].user_data == 5);
    CHECK(done[0].result == 1);
    CHECK(byte == std::byte{'x'});
    // Whatever the reap itself signalled (DEFER_TASKRUN signals again as it posts), the CQ is
    // empty now: a loop woken by that finds nothing, and goes back to waiting.
    take_signals(efd.get());
    CHECK(reap_now(ring).empty());

    // Inline completions signal too: a NOP is posted during the submit itself.
    take_signals(efd.get());
    REQUIRE_FALSE(ring.add_nop(6));
    REQUIRE(ring.submit().ok());
    REQUIRE(wait_readable(efd.get()));
    done = reap_now(ring);
    REQUIRE(done.size() == 1);
    CHECK(done[0].user_data == 6);
    CHECK(ring.outstanding() == 0);
}

TEST_CASE("ring: eventfd signalling can be paused and resumed, and is gone once unregistered",
          "[ring][eventfd]")
{
    ring ring(8);
    unique_fd efd = make_nonblocking_eventfd();
    REQUIRE_FALSE(ring.register_eventfd(efd.get()));

    // Paused: completions are posted and reaped, the eventfd stays quiet.
    REQUIRE_FALSE(ring.set_eventfd_enabled(false));
    CHECK_FALSE(ring.eventfd_enabled());
    REQUIRE_FALSE(ring.add_nop(1));
    CHECK(collect(ring, 1).at(0).user_data == 1);
    CHECK(take_signals(efd.get()) == 0);

    // Resumed: the next completion signals.
    REQUIRE_FALSE(ring.set_eventfd_enabled(true));
    CHECK(ring.eventfd_enabled());
    REQUIRE_FALSE(ring.add_nop(2));
    CHECK(collect(ring, 1).at(0).user_data == 2);
    CHECK(take_signals(efd.get()) >= 1);

    // Unregistered: no more signals, and a second unregister says there is none.
    REQUIRE_FALSE(ring.unregister_eventfd());
    CHECK_FALSE(ring.eventfd_registered());
    REQUIRE_FALSE(ring.add_nop(3));
    CHECK(collect(ring, 1).at(0).user_data == 3);
    CHECK(take_signals(efd.get()) == 0);
    CHECK(ring.unregister_eventfd() == std::errc::no_such_device_or_address);

    // Registered again, it works again.
    REQUIRE_FALSE(ring.register_eventfd(efd.get()));
    REQUIRE_FALSE(ring.add_nop(4));
    CHECK(collect(ring, 1).at(0).user_data == 4);
    CHECK(take_signals(efd.get()) >= 1);
}

TEST_CASE("ring: registering an eventfd refuses a second one, a closed fd and a non-eventfd",
          "[ring][eventfd]")
{
    ring ring(8);
    unique_fd efd = make_nonblocking_eventfd();
    unique_fd other = make_nonblocking_eventfd();

    // A descriptor number that is not open.
    unique_fd closed = make_nonblocking_eventfd();
    const int closed_number = closed.get();
    closed.reset();
    CHECK(ring.register_eventfd(closed_number) == std::errc::bad_file_descriptor);
    CHECK_FALSE(ring.eventfd_registered());

    // A pipe is not an eventfd.
    pipe_fds pipe = make_pipe();
    CHECK(ring.register_eventfd(pipe.read_end.get()) == std::errc::invalid_argument);
    CHECK_FALSE(ring.eventfd_registered());

    REQUIRE_FALSE(ring.register_eventfd(efd.get()));
    CHECK(ring.register_eventfd(other.get()) == std::errc::device_or_resource_busy);
    CHECK(ring.register_eventfd(efd.get(), true) == std::errc::device_or_resource_busy);

    // The first registration is intact: it signals, the refused one does not.
    REQUIRE_FALSE(ring.add_nop(1));
    CHECK(collect(ring, 1).size() == 1);
    CHECK(take_signals(efd.get()) >= 1);
    CHECK(take_signals(other.get()) == 0);
}

TEST_CASE("ring: the ring keeps its own reference to the registered eventfd",
          "[ring][eventfd]")
{
    // Closing the caller's descriptor does not end the registration: the same eventfd,
    // reached through a duplicate, is still signalled.
    ring ring(8);
    unique_fd efd = make_nonblocking_eventfd();
    unique_fd dup(::fcntl(efd.get(), F_DUPFD_CLOEXEC, 0));
    REQUIRE(dup.get() >= 0);
    REQUIRE_FALSE(ring.register_eventfd(efd.get()));
    efd.reset();
    REQUIRE_FALSE(ring.add_nop(1));
    CHECK(collect(ring, 1).size() == 1);
    CHECK(take_signals(dup.get()) >= 1);
}

TEST_CASE("ring: an async-only eventfd is signalled for a worker's completion, not an inline one",
          "[ring][eventfd]")
{
    ring ring(8);
    unique_fd efd = make_nonblocking_eventfd();
    REQUIRE_FALSE(ring.register_eventfd(efd.get(), true));

    // A NOP completes inline, during the submit: no signal.
    REQUIRE_FALSE(ring.add_nop(1));
    CHECK(collect(ring, 1).at(0).user_data == 1);
    CHECK(take_signals(efd.get()) == 0);

    // One forced to the kernel's worker thread (IOSQE_ASYNC) is signalled.
    REQUIRE_FALSE(ring.add_nop(2, coil::io::sqe_flags::async));
    CHECK(collect(ring, 1).at(0).user_data == 2);
    CHECK(take_signals(efd.get()) >= 1);
}

TEST_CASE("ring: the outer-loop pattern of docs/architecture.md: epoll on the eventfd, read, reap",
          "[ring][eventfd]")
{
    const bool single_issuer = GENERATE(false, true);
    CAPTURE(single_issuer);
    ring ring(8, ring_options{.single_issuer = single_issuer});
    int efd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    REQUIRE(efd >= 0);
    unique_fd owned(efd);
    if (auto ec = ring.register_eventfd(efd)) // EBUSY: one is registered already
        throw std::system_error(ec, "register_eventfd");
    unique_fd epoll(::epoll_create1(EPOLL_CLOEXEC));
    REQUIRE(epoll.get() >= 0);
    epoll_event interest{};
    interest.events = EPOLLIN;
    interest.data.fd = efd;
    REQUIRE(::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, efd, &interest) == 0);

    // Three reads of three pipes, written to one at a time from outside the ring; the loop
    // knows of the ring only through epoll, and must see each read complete.
    std::vector<pipe_fds> pipes;
    std::vector<std::byte> bytes(3);
    for (std::uint64_t i = 0; i < 3; ++i) {
        pipes.push_back(make_pipe());
        REQUIRE_FALSE(ring.add_read(pipes.back().read_end.get(), {&bytes[i], 1}, current_position,
                                    100 + i));
    }
    REQUIRE(ring.submit().ok());
    std::vector<std::uint64_t> seen;
    auto handle = [&](const coil::io::completion& c) {
        CHECK(c.result == 1);
        seen.push_back(c.user_data);
    };
    for (std::size_t i = 0; i < 3; ++i) {
        const char b = static_cast<char>('a' + i);
        REQUIRE(::write(pipes[i].write_end.get(), &b, 1) == 1);
        while (seen.size() < i + 1) {
            epoll_event event{};
            const int ready = ::epoll_wait(epoll.get(), &event, 1, 10'000); // a guard, not a timing check
            if (ready < 0 && errno == EINTR)
                continue; // as in any event loop (io_uring's own task work can interrupt it)
            CAPTURE(errno);
            REQUIRE(ready == 1);
            CHECK(event.data.fd == efd);
            // ... efd joins the loop's epoll set; each time it polls readable:
            std::uint64_t signals = 0;
            (void)::read(efd, &signals, sizeof signals); // resets the count; its value means nothing
            for (const coil::io::completion& c : ring.reap())
                handle(c);
        }
    }
    CHECK(seen == std::vector<std::uint64_t>{100, 101, 102});
    CHECK(bytes == std::vector<std::byte>{std::byte{'a'}, std::byte{'b'}, std::byte{'c'}});
    CHECK(ring.outstanding() == 0);
}
