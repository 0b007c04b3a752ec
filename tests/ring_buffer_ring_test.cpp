// SPDX-License-Identifier: MIT
// Provided-buffer rings (coil::io::buffer_ring) with receives that let the kernel pick the
// buffer: multishot receives of several sends, a ring too small for the data (-ENOBUFS, then
// re-arming), end of stream, and the constructor's checks.

#include "ring_socket_support.hpp"

#include <coil/io/buffer_ring.hpp>
#include <coil/io/ring.hpp>

#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <optional>
#include <string_view>
#include <system_error>
#include <vector>

using coil::io::buffer_ring;
using coil::io::completion;
using coil::io::recv_mode;
using coil::io::ring;
using namespace coil_test;

namespace {

socket_family any_family()
{
    return GENERATE(socket_family::ipv4, socket_family::ipv6, socket_family::local);
}

// A buffer ring, or a SKIP when the kernel has none (Linux 5.19).
std::unique_ptr<buffer_ring> make_buffers(ring& r, std::uint16_t group, unsigned count,
                                          std::size_t size)
{
    try {
        return std::make_unique<buffer_ring>(r, group, count, size);
    } catch (const std::system_error& e) {
        // Only the kernel's refusal is a SKIP; a refusal of the arguments is a failure.
        if (e.code() == std::errc::invalid_argument &&
            std::string_view(e.what()).find("need Linux 5.19") != std::string_view::npos)
            SKIP("this kernel has no provided buffer rings (Linux 5.19): " << e.what());
        throw;
    }
}

void skip_without_multishot_recv(const completion& c)
{
    if (c.result == -EINVAL && !c.more())
        SKIP("this kernel has no multishot recv (IORING_RECV_MULTISHOT, Linux 6.0)");
}

} // namespace

TEST_CASE("ring: a multishot recv into provided buffers delivers several sends in order, with "
          "more() set until end of stream",
          "[ring][buffer_ring][recv][multishot]")
{
    const socket_family f = any_family();
    CAPTURE(to_string(f));
    connection c = make_connection(f);
    ring ring(8);
    auto buffers = make_buffers(ring, 7, 8, 256);
    CHECK(buffers->group() == 7);
    CHECK(buffers->count() == 8);
    CHECK(buffers->buffer_size() == 256);
    CHECK(buffers->available() == 8);

    REQUIRE_FALSE(ring.add_recv_provided(c.server.get(), buffers->group(), 0,
                                         recv_mode::multishot, 1));
    REQUIRE(ring.submit().ok());

    std::vector<std::byte> expected;
    std::vector<std::byte> received;
    std::size_t data_completions = 0;
    constexpr unsigned sends = 6;
    for (unsigned i = 0; i < sends; ++i) {
        // Each send waits until the previous one has been received, so each arrives on its
        // own (a send may still be split across completions, never merged with the next).
        const std::vector<std::byte> chunk = pattern(100 + 20 * i, i);
        expected.insert(expected.end(), chunk.begin(), chunk.end());
        send_all(c.client.get(), chunk);
        while (received.size() < expected.size()) {
            auto done = collect(ring, 1);
            for (const completion& d : done) {
                skip_without_multishot_recv(d);
                CHECK(d.user_data == 1);
                REQUIRE(d.result > 0);
                CHECK(d.more());
                REQUIRE(d.has_buffer());
                REQUIRE(d.buffer_id() < buffers->count());
                buffers->note_used(d.buffer_id());
                auto data = buffers->buffer(d.buffer_id()).first(static_cast<std::size_t>(d.result));
                received.insert(received.end(), data.begin(), data.end());
                buffers->give_back(d.buffer_id());
                ++data_completions;
            }
        }
    }
    CHECK(received == expected);
    CHECK(data_completions >= sends);
    CHECK(buffers->available() == 8);
    CHECK(ring.outstanding() == 1); // still armed

    c.client.reset(); // end of stream
    auto done = collect(ring, 1);
    REQUIRE(done.size() == 1);
    CHECK(done[0].user_data == 1);
    CHECK(done[0].result == 0);
    CHECK_FALSE(done[0].more());
    if (done[0].has_buffer()) // an empty completion may still have taken a buffer
        buffers->note_used(done[0].buffer_id());
    CHECK(ring.outstanding() == 0);
}

TEST_CASE("ring: a multishot recv that runs out of provided buffers ends with -ENOBUFS, and "
          "after giving them back and re-arming every byte arrives in order",
          "[ring][buffer_ring][recv][multishot][enobufs]")
{
    const socket_family f = any_family();
    CAPTURE(to_string(f));
    connection c = make_connection(f);
    ring ring(8);
    // Two 64-byte buffers against 4 KiB already waiting: each arming can take 128 bytes.
    auto buffers = make_buffers(ring, 3, 2, 64);
    const std::vector<std::byte> data = pattern(4096, 9);
    send_all(c.client.get(), data);
    c.client.reset(); // the end of stream comes after all the data

    std::vector<std::byte> received;
    std::vector<std::uint16_t> held; // used buffers, given back only when the recv has ended
    unsigned armings = 0;
    unsigned out_of_buffers = 0;
    bool ended = false;
    while (!ended) {
        REQUIRE(armings < 1000);
        REQUIRE_FALSE(ring.add_recv_provided(c.server.get(), buffers->group(), 0,
                                             recv_mode::multishot, 100 + armings));
        ++armings;
        for (bool final_seen = false; !final_seen;) {
            for (const completion& d : collect(ring, 1)) {
                skip_without_multishot_recv(d);
                CHECK(d.user_data == 100 + armings - 1);
                if (d.has_buffer()) {
                    REQUIRE(d.buffer_id() < buffers->count());
                    buffers->note_used(d.buffer_id());
                    held.push_back(d.buffer_id());
                    auto chunk = buffers->buffer(d.buffer_id()).first(
                        static_cast<std::size_t>(std::max(d.result, 0)));
                    received.insert(received.end(), chunk.begin(), chunk.end());
                }
                if (d.more()) {
                    CHECK(d.result > 0);
                    continue;
                }
                final_seen = true;
                if (d.result == -ENOBUFS) {
                    ++out_of_buffers;
                    CHECK(buffers->available() == 0);
                } else {
                    CHECK(d.result == 0); // end of stream: all the data came first
                    ended = true;
                }
            }
        }
        for (std::uint16_t id : held)
            buffers->give_back(id);
        held.clear();
        CHECK(buffers->available() == buffers->count());
    }
    CHECK(out_of_buffers >= 1);
    CHECK(received.size() == data.size());
    CHECK(received == data);
    CHECK(ring.outstanding() == 0);
}

TEST_CASE("ring: a single recv into a provided buffer takes one buffer, and -ENOBUFS when "
          "there is none",
          "[ring][buffer_ring][recv]")
{
    const socket_family f = any_family();
    CAPTURE(to_string(f));
    connection c = make_connection(f);
    ring ring(4);
    auto buffers = make_buffers(ring, 0, 1, 128);
    const std::vector<std::byte> data = pattern(50, 1);
    send_all(c.client.get(), data);

    REQUIRE_FALSE(ring.add_recv_provided(c.server.get(), buffers->group(), 0, recv_mode::single, 1));
    auto done = collect(ring, 1);
    REQUIRE(done.size() == 1);
    REQUIRE(done[0].result == 50);
    CHECK_FALSE(done[0].more());
    REQUIRE(done[0].has_buffer());
    CHECK(done[0].buffer_id() == 0);
    buffers->note_used(done[0].buffer_id());
    auto got = buffers->buffer(0).first(50);
    CHECK(std::vector<std::byte>(got.begin(), got.end()) == data);
    CHECK(buffers->available() == 0);

    // The only buffer is out: the next recv has nowhere to go.
    send_all(c.client.get(), data);
    REQUIRE_FALSE(ring.add_recv_provided(c.server.get(), buffers->group(), 0, recv_mode::single, 2));
    done = collect(ring, 1);
    CHECK(done.at(0).result == -ENOBUFS);
    CHECK_FALSE(done.at(0).has_buffer());

    buffers->give_back(0);
    REQUIRE_FALSE(ring.add_recv_provided(c.server.get(), buffers->group(), 0, recv_mode::single, 3));
    done = collect(ring, 1);
    REQUIRE(done.at(0).result == 50);
    REQUIRE(done.at(0).has_buffer());
    buffers->note_used(done.at(0).buffer_id());
}

TEST_CASE("ring: buffer_ring refuses a count that is not a power of two, naming the rule",
          "[ring][buffer_ring][error]")
{
    ring ring(4);
    try {
        buffer_ring bad(ring, 1, 3, 64);
        FAIL("a count of 3 was accepted");
    } catch (const std::system_error& e) {
        CHECK(e.code() == std::errc::invalid_argument);
        CHECK_THAT(e.what(), Catch::Matchers::ContainsSubstring("power of two"));
    }
    CHECK_THROWS_AS(buffer_ring(ring, 1, 0, 64), std::system_error);
    CHECK_THROWS_AS(buffer_ring(ring, 1, 65536, 64), std::system_error);
    CHECK_THROWS_AS(buffer_ring(ring, 1, 4, 0), std::system_error);
}

TEST_CASE("ring: a buffer group can be registered once per ring, and again once freed",
          "[ring][buffer_ring][error]")
{
    ring ring(4);
    {
        auto first = make_buffers(ring, 5, 4, 64);
        try {
            buffer_ring second(ring, 5, 4, 64);
            FAIL("group 5 was registered twice");
        } catch (const std::system_error& e) {
            CHECK(e.code() == std::errc::file_exists);
            CHECK_THAT(e.what(), Catch::Matchers::ContainsSubstring("already registered"));
        }
        buffer_ring other_group(ring, 6, 4, 64);
        CHECK(other_group.available() == 4);
    }
    buffer_ring again(ring, 5, 16, 4096);
    CHECK(again.buffer(15).size() == 4096);
    CHECK(again.buffer(16).empty());
    // The buffers do not overlap.
    CHECK(again.buffer(1).data() == again.buffer(0).data() + 4096);
}
