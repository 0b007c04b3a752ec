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
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <optional>
#include <string>
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
                                          std::size_t size,
                                          coil::io::buffer_ring_options options = {})
{
    try {
        return std::make_unique<buffer_ring>(r, group, count, size, options);
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

namespace {

// An incrementally consumed buffer ring, or a SKIP when the kernel has none (Linux 6.12).
std::unique_ptr<buffer_ring> make_incremental(ring& r, std::uint16_t group, unsigned count,
                                              std::size_t size)
{
    try {
        return std::make_unique<buffer_ring>(r, group, count, size,
                                             coil::io::buffer_ring_options{.incremental = true});
    } catch (const std::system_error& e) {
        if (e.code() == std::errc::not_supported) {
            CHECK_THAT(e.what(), Catch::Matchers::ContainsSubstring("Linux 6.12"));
            SKIP("this kernel has no incremental buffer consumption (Linux 6.12): " << e.what());
        }
        if (e.code() == std::errc::invalid_argument &&
            std::string_view(e.what()).find("need Linux 5.19") != std::string_view::npos)
            SKIP("this kernel has no provided buffer rings (Linux 5.19): " << e.what());
        throw;
    }
}

// The data completions of a multishot recv, one at a time, taken from `buffers` in the order
// they were reaped (a wait may reap several).
struct piece_reader {
    ring& r;
    buffer_ring& buffers;
    std::vector<std::byte>& into;
    std::vector<completion> reaped{};
    std::size_t next = 0;

    coil::io::buffer_piece operator()()
    {
        while (next == reaped.size()) {
            reaped = collect(r, 1);
            next = 0;
        }
        const completion d = reaped[next++];
        skip_without_multishot_recv(d);
        REQUIRE(d.result > 0);
        REQUIRE(d.more());
        REQUIRE(d.has_buffer());
        const coil::io::buffer_piece piece = buffers.take(d);
        CHECK(piece.last == !d.buffer_more());
        CHECK(piece.size == static_cast<std::uint32_t>(d.result));
        auto bytes = buffers.bytes(piece);
        into.insert(into.end(), bytes.begin(), bytes.end());
        return piece;
    }
};

} // namespace

TEST_CASE("ring: an incremental buffer ring puts small receives one after another in the same "
          "buffer, and hands the buffer over once the kernel has filled it",
          "[ring][buffer_ring][recv][incremental]")
{
    connection c = make_connection(socket_family::ipv4);
    ring ring(8);
    auto buffers = make_incremental(ring, 9, 2, 256);
    CHECK(buffers->incremental());
    REQUIRE_FALSE(ring.add_recv_provided(c.server.get(), buffers->group(), 0,
                                         recv_mode::multishot, 1));
    REQUIRE(ring.submit().ok());

    std::vector<std::byte> expected;
    std::vector<std::byte> received;
    piece_reader next_piece{ring, *buffers, received};
    auto send = [&](std::size_t n, unsigned seed) {
        const std::vector<std::byte> chunk = pattern(n, seed);
        expected.insert(expected.end(), chunk.begin(), chunk.end());
        send_all(c.client.get(), chunk);
    };

    send(100, 1);
    const coil::io::buffer_piece first = next_piece();
    CHECK(first.offset == 0);
    CHECK(first.size == 100);
    CHECK_FALSE(first.last); // 156 bytes of the buffer are left: the kernel keeps it
    CHECK(buffers->with_kernel(first.id));
    CHECK(buffers->available() == 2);

    // The piece expected next: buffer `id`, `size` bytes at `offset`, `last` or not.
    auto expect_piece = [&](std::uint16_t id, std::uint32_t offset, std::uint32_t size,
                            bool last) {
        const coil::io::buffer_piece p = next_piece();
        CHECK(p.id == id);
        CHECK(p.offset == offset);
        CHECK(p.size == size);
        CHECK(p.last == last);
    };

    send(100, 2);
    expect_piece(first.id, 100, 100, false);

    // 100 more bytes: the first buffer takes 56 and is full, the other one takes the rest.
    send(100, 3);
    expect_piece(first.id, 200, 56, true);
    CHECK_FALSE(buffers->with_kernel(first.id));
    CHECK(buffers->available() == 1);
    const coil::io::buffer_piece fourth = next_piece();
    CHECK(fourth.id != first.id);
    CHECK(fourth.offset == 0);
    CHECK(fourth.size == 44);
    CHECK_FALSE(fourth.last);
    CHECK(received == expected);

    // The full buffer goes back and is filled from its start again after the other one.
    buffers->give_back(first.id);
    CHECK(buffers->available() == 2);
    send(212, 4); // fills the second buffer exactly
    std::uint32_t in_second = 0;
    while (in_second < 212) {
        const coil::io::buffer_piece p = next_piece();
        CHECK(p.id == fourth.id);
        in_second += p.size;
        CHECK(p.last == (in_second == 212));
    }
    send(10, 5);
    const coil::io::buffer_piece again = next_piece();
    CHECK(again.id == first.id);
    CHECK(again.offset == 0);
    CHECK(received == expected);

    CHECK(next_piece.next == next_piece.reaped.size());
    c.client.reset();
    for (bool ended = false; !ended;)
        for (const completion& d : collect(ring, 1)) {
            if (d.has_buffer())
                static_cast<void>(buffers->take(d));
            ended = !d.more();
            CHECK(d.result == 0);
        }
}

TEST_CASE("ring: receives on two sockets share an incremental buffer, each piece where the "
          "previous one ended",
          "[ring][buffer_ring][recv][incremental]")
{
    connection a = make_connection(socket_family::ipv4);
    connection b = make_connection(socket_family::local);
    ring ring(8);
    auto buffers = make_incremental(ring, 10, 1, 4096);
    REQUIRE_FALSE(ring.add_recv_provided(a.server.get(), buffers->group(), 0, recv_mode::single, 1));
    REQUIRE_FALSE(ring.add_recv_provided(b.server.get(), buffers->group(), 0, recv_mode::single, 2));
    REQUIRE(ring.submit().ok());

    const std::vector<std::byte> to_a = pattern(300, 11);
    const std::vector<std::byte> to_b = pattern(500, 12);
    send_all(a.client.get(), to_a);
    auto done = collect(ring, 1);
    REQUIRE(done.size() == 1);
    CHECK(done[0].user_data == 1);
    REQUIRE(done[0].has_buffer());
    CHECK(done[0].buffer_more());
    const coil::io::buffer_piece pa = buffers->take(done[0]);
    send_all(b.client.get(), to_b);
    done = collect(ring, 1);
    REQUIRE(done.size() == 1);
    CHECK(done[0].user_data == 2);
    REQUIRE(done[0].has_buffer());
    const coil::io::buffer_piece pb = buffers->take(done[0]);

    CHECK(pa.id == pb.id);
    CHECK(pa.offset == 0);
    CHECK(pb.offset == 300);
    auto got_a = buffers->bytes(pa);
    auto got_b = buffers->bytes(pb);
    CHECK(std::vector<std::byte>(got_a.begin(), got_a.end()) == to_a);
    CHECK(std::vector<std::byte>(got_b.begin(), got_b.end()) == to_b);
    CHECK(buffers->with_kernel(pa.id)); // 3,296 bytes left in it
}

namespace {

// Skips when the kernel has no receive bundles (Linux 6.10).
void require_bundles(const ring& r)
{
    if (!r.has_recv_bundles())
        SKIP("this kernel has no receive bundles (IORING_FEAT_RECVSEND_BUNDLE, Linux 6.10)");
}

// Queues a single-shot bundle receive on `fd` and takes its one completion into `pieces`.
std::vector<coil::io::buffer_piece> receive_bundle(ring& r, buffer_ring& buffers, int fd,
                                                   std::uint64_t user_data)
{
    REQUIRE_FALSE(r.add_recv_provided(fd, buffers.group(), 0, recv_mode::bundle, user_data));
    auto done = collect(r, 1);
    REQUIRE(done.size() == 1);
    CHECK(done[0].user_data == user_data);
    REQUIRE(done[0].result > 0);
    REQUIRE(done[0].has_buffer());
    std::vector<coil::io::buffer_piece> pieces(buffers.count());
    pieces.resize(buffers.take(done[0], pieces));
    return pieces;
}

std::vector<std::byte> bytes_of(buffer_ring& buffers, const std::vector<coil::io::buffer_piece>& pieces)
{
    std::vector<std::byte> out;
    for (const coil::io::buffer_piece& p : pieces) {
        auto b = buffers.bytes(p);
        out.insert(out.end(), b.begin(), b.end());
    }
    return out;
}

} // namespace

TEST_CASE("ring: a receive bundle fills several buffers in ring order, each full but the last, "
          "and buffers given back in any order are used again in ring order",
          "[ring][buffer_ring][recv][bundle]")
{
    connection c = make_connection(socket_family::ipv4);
    ring ring(8);
    require_bundles(ring);
    auto buffers = make_buffers(ring, 11, 8, 64);

    // Receives bundles until `data` has arrived; returns the buffers in the order they were
    // filled, checking that each bundle's pieces are full but the last.
    auto receive_all = [&](const std::vector<std::byte>& data, std::uint64_t user_data) {
        std::vector<std::byte> received;
        std::vector<coil::io::buffer_piece> all;
        while (received.size() < data.size()) {
            REQUIRE(all.size() < buffers->count());
            const auto more = receive_bundle(ring, *buffers, c.server.get(), user_data++);
            for (std::size_t k = 0; k < more.size(); ++k) {
                CHECK(more[k].offset == 0);
                CHECK(more[k].last);
                CHECK_FALSE(buffers->with_kernel(more[k].id));
                if (k + 1 < more.size())
                    CHECK(more[k].size == 64);
            }
            const auto b = bytes_of(*buffers, more);
            received.insert(received.end(), b.begin(), b.end());
            all.insert(all.end(), more.begin(), more.end());
        }
        CHECK(received == data);
        return all;
    };

    // The kernel decides how many buffers one bundle maps (here at least 4 at once), so
    // bundles are received until all the data is in.
    const std::vector<std::byte> first = pattern(300, 21);
    send_all(c.client.get(), first);
    const auto pieces = receive_all(first, 1);
    REQUIRE(pieces.size() == 5);
    for (std::size_t k = 0; k < pieces.size(); ++k)
        CHECK(pieces[k].id == k); // a fresh ring hands out its entries in order
    CHECK(buffers->available() == 3);

    for (auto it = pieces.rbegin(); it != pieces.rend(); ++it)
        buffers->give_back(it->id);
    CHECK(buffers->available() == 8);
    CHECK(buffers->pending() == 0);

    // 500 bytes: the three entries left, then the five given back in reverse order.
    const std::vector<std::byte> second = pattern(500, 22);
    send_all(c.client.get(), second);
    std::vector<std::uint16_t> ids;
    for (const auto& p : receive_all(second, 10))
        ids.push_back(p.id);
    CHECK(ids == std::vector<std::uint16_t>{5, 6, 7, 4, 3, 2, 1, 0});
    CHECK(buffers->available() == 0);
}

TEST_CASE("ring: a give-back that would rewrite a ring entry no completion has reported yet waits "
          "until it is reported",
          "[ring][buffer_ring][recv][bundle]")
{
    connection a = make_connection(socket_family::ipv4);
    connection b = make_connection(socket_family::ipv4);
    ring ring(8);
    require_bundles(ring);
    auto buffers = make_buffers(ring, 12, 4, 64);

    // A's receive takes entries 0 and 1, B's entries 2 and 3; both completions are read, but
    // only B's is taken at first, as if the kernel had posted them in the other order.
    const std::vector<std::byte> to_a = pattern(128, 31);
    const std::vector<std::byte> to_b = pattern(128, 32);
    send_all(a.client.get(), to_a);
    REQUIRE_FALSE(ring.add_recv_provided(a.server.get(), buffers->group(), 0, recv_mode::bundle, 1));
    auto done_a = collect(ring, 1);
    REQUIRE(done_a.size() == 1);
    REQUIRE(done_a[0].result == 128);
    send_all(b.client.get(), to_b);
    const auto from_b = receive_bundle(ring, *buffers, b.server.get(), 2);
    REQUIRE(from_b.size() == 2);
    CHECK(from_b[0].id == 2);
    CHECK(from_b[1].id == 3);
    CHECK(bytes_of(*buffers, from_b) == to_b);

    // Publishing buffer 2 would rewrite entry 0, which A's completion still names.
    buffers->give_back(2);
    CHECK(buffers->pending() == 1);
    CHECK(buffers->available() == 2); // A's two count as the kernel's until reported
    CHECK(buffers->with_kernel(2));

    std::vector<coil::io::buffer_piece> from_a(4);
    from_a.resize(buffers->take(done_a[0], from_a));
    REQUIRE(from_a.size() == 2);
    CHECK(from_a[0].id == 0);
    CHECK(from_a[1].id == 1);
    CHECK(bytes_of(*buffers, from_a) == to_a);
    CHECK(buffers->pending() == 0); // entry 0 reported: buffer 2 published there
    CHECK(buffers->available() == 1);

    buffers->give_back(3);
    buffers->give_back(0);
    buffers->give_back(1);
    CHECK(buffers->available() == 4);
    CHECK(buffers->pending() == 0);

    const std::vector<std::byte> again = pattern(256, 33);
    send_all(a.client.get(), again);
    std::vector<std::byte> received;
    std::vector<std::uint16_t> ids;
    for (std::uint64_t ud = 3; received.size() < again.size(); ++ud) {
        REQUIRE(ud < 10);
        const auto more = receive_bundle(ring, *buffers, a.server.get(), ud);
        const auto bytes = bytes_of(*buffers, more);
        received.insert(received.end(), bytes.begin(), bytes.end());
        for (const auto& p : more)
            ids.push_back(p.id);
    }
    CHECK(received == again);
    CHECK(ids == std::vector<std::uint16_t>{2, 3, 0, 1});
}

TEST_CASE("ring: buffer_ring refuses a bad give_back or note_used in every build, naming the "
          "mistake",
          "[ring][buffer_ring][misuse]")
{
    using Catch::Matchers::ContainsSubstring;
    auto with_ring = [](auto misuse) {
        return [misuse] {
            ring r(8);
            buffer_ring pool(r, 1, 4, 64);
            misuse(pool);
        };
    };
    CHECK_THAT(stopped_with(with_ring([](buffer_ring& p) { p.give_back(4); })),
               ContainsSubstring("give_back: buffer id out of range"));
    CHECK_THAT(stopped_with(with_ring([](buffer_ring& p) { p.give_back(0); })),
               ContainsSubstring("give_back: the buffer is with the kernel"));
    CHECK_THAT(stopped_with(with_ring([](buffer_ring& p) { p.note_used(9); })),
               ContainsSubstring("note_used: buffer id out of range"));
    CHECK_THAT(stopped_with(with_ring([](buffer_ring& p) {
                   p.note_used(1);
                   p.note_used(1);
               })),
               ContainsSubstring("note_used: the buffer is not with the kernel"));
}

TEST_CASE("ring: with a publish limit the kernel cycles through limit + 1 buffers, most recently "
          "given back first, and a raised limit hands the reserve over",
          "[ring][buffer_ring][recv]")
{
    connection c = make_connection(socket_family::local);
    ring ring(8);
    auto buffers = make_buffers(ring, 3, 16, 256, {.publish_limit = 4});
    CHECK(buffers->publish_limit() == 4);
    CHECK(buffers->available() == 4);
    CHECK(buffers->reserved() == 12);

    // One message at a time, each buffer given back as soon as it is read: every consumption
    // brings the reserve's top (the buffer given back last) into the ring.
    std::vector<unsigned> used;
    for (unsigned i = 0; i < 30; ++i) {
        const std::vector<std::byte> chunk = pattern(64, i);
        send_all(c.client.get(), chunk);
        REQUIRE_FALSE(ring.add_recv_provided(c.server.get(), buffers->group(), 0,
                                             recv_mode::single, i));
        REQUIRE(ring.submit().ok());
        auto done = collect(ring, 1);
        REQUIRE(done.size() == 1);
        REQUIRE(done[0].result == 64);
        REQUIRE(done[0].has_buffer());
        const coil::io::buffer_piece piece = buffers->take(done[0]);
        const auto bytes = buffers->bytes(piece);
        CHECK(std::vector<std::byte>(bytes.begin(), bytes.end()) == chunk);
        used.push_back(piece.id);
        CHECK(buffers->available() == 4); // the reserve refilled the kernel's share
        buffers->give_back(piece.id);
        CHECK(buffers->available() == 4);
        CHECK(buffers->reserved() == 12);
    }
    // Buffers 0..3 first, then 4 from the reserve; after that the same five in turn.
    for (unsigned i = 0; i < used.size(); ++i)
        CHECK(used[i] == i % 5);

    buffers->raise_publish_limit(8);
    CHECK(buffers->publish_limit() == 8);
    CHECK(buffers->available() == 8);
    CHECK(buffers->reserved() == 8);
    buffers->raise_publish_limit(2); // lower: nothing changes
    CHECK(buffers->publish_limit() == 8);
    buffers->raise_publish_limit(1000); // at most count()
    CHECK(buffers->publish_limit() == 16);
    CHECK(buffers->available() == 16);
    CHECK(buffers->reserved() == 0);
}

TEST_CASE("ring: a receive that finds the kernel's share used up ends with -ENOBUFS while the "
          "reserve holds buffers, and succeeds once the limit is raised",
          "[ring][buffer_ring][recv]")
{
    connection a = make_connection(socket_family::local);
    connection b = make_connection(socket_family::local);
    ring ring(8);
    auto buffers = make_buffers(ring, 5, 8, 64, {.publish_limit = 1});
    const std::vector<std::byte> to_a = pattern(40, 1);
    const std::vector<std::byte> to_b = pattern(40, 2);
    send_all(a.client.get(), to_a);
    send_all(b.client.get(), to_b);
    // Both in one submission: the kernel has one buffer for two receives.
    REQUIRE_FALSE(ring.add_recv_provided(a.server.get(), buffers->group(), 0, recv_mode::single, 1));
    REQUIRE_FALSE(ring.add_recv_provided(b.server.get(), buffers->group(), 0, recv_mode::single, 2));
    REQUIRE(ring.submit().ok());
    auto done = collect(ring, 2);
    REQUIRE(done.size() == 2);
    const completion got = done[0].result > 0 ? done[0] : done[1];
    const completion dry = done[0].result > 0 ? done[1] : done[0];
    REQUIRE(got.result == 40);
    CHECK(dry.result == -ENOBUFS);
    CHECK(buffers->reserved() == 7);

    buffers->raise_publish_limit(2);
    CHECK(buffers->available() == 2); // the used buffer is not counted until taken
    const coil::io::buffer_piece first = buffers->take(got);
    CHECK(buffers->available() == 2); // and its place was refilled from the reserve
    CHECK(buffers->reserved() == 5);
    const int again = got.user_data == 1 ? b.server.get() : a.server.get();
    REQUIRE_FALSE(ring.add_recv_provided(again, buffers->group(), 0, recv_mode::single, 3));
    REQUIRE(ring.submit().ok());
    done = collect(ring, 1);
    REQUIRE(done.size() == 1);
    REQUIRE(done[0].result == 40);
    const coil::io::buffer_piece second = buffers->take(done[0]);
    CHECK(second.id != first.id);
    const auto first_bytes = buffers->bytes(first);
    const auto second_bytes = buffers->bytes(second);
    const auto& first_expected = got.user_data == 1 ? to_a : to_b;
    const auto& second_expected = got.user_data == 1 ? to_b : to_a;
    CHECK(std::vector<std::byte>(first_bytes.begin(), first_bytes.end()) == first_expected);
    CHECK(std::vector<std::byte>(second_bytes.begin(), second_bytes.end()) == second_expected);
    buffers->give_back(first.id);
    buffers->give_back(second.id);
    CHECK(buffers->available() + buffers->reserved() == 8);
}
