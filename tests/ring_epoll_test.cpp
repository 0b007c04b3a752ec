// SPDX-License-Identifier: MIT
// The ring's file descriptor in an outer epoll loop: readable exactly when completions are ready.

#include "ring_test_support.hpp"

#include <coil/io/ring.hpp>

#include <catch2/catch_test_macros.hpp>

#include <sys/epoll.h>
#include <unistd.h>

#include <vector>

using coil::io::ring;
using namespace coil_test;

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
