// SPDX-License-Identifier: MIT
// Datagram sockets: UDP over IPv4 and IPv6 and Unix datagram sockets carrying datagrams whole,
// with their senders; truncation into a small buffer; empty datagrams; connected sockets and
// the kernel's filter on them; cancellation, deadlines and close with a receive pending; errors
// for bad families, oversize datagrams and closed descriptors; many receives pending at once.

#include "net_test_support.hpp"
#include "runtime_test_support.hpp"
#include "test_executor.hpp"
#include "test_support.hpp"

#include <coil/coil.hpp>
#include <coil/net/datagram.hpp>

#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <memory>
#include <optional>
#include <random>
#include <stop_token>
#include <string>
#include <system_error>
#include <vector>

using coil_test::bytes_of;
namespace net = coil::net;

namespace {

// A bound address of each kind: a free port, or a fresh path in `dir`.
net::address bind_address(const std::string& kind, const coil_test::temp_dir& dir,
                          const char* name)
{
    if (kind == "ipv4")
        return net::address::loopback_v4(0);
    if (kind == "ipv6")
        return net::address::loopback_v6(0);
    return *net::address::unix_path(dir.file(name));
}

// Sends `bytes` to `to` as one datagram; the test fails unless all of it went.
coil::task<void> send_whole(const net::datagram_socket& s, std::span<const std::byte> bytes,
                            const net::address& to)
{
    auto sent = co_await s.send_to(bytes, to);
    REQUIRE(sent);
    REQUIRE(*sent == bytes.size());
}

std::vector<std::byte> message(std::size_t id, std::size_t size)
{
    std::vector<std::byte> m(size);
    for (std::size_t i = 0; i < size; ++i)
        m[i] = static_cast<std::byte>((id * 31 + i * 7) & 0xff);
    return m;
}

} // namespace

TEST_CASE("net: datagrams of every size from 0 to 1,400 bytes go both ways whole, each with "
          "its sender, over UDP and Unix datagram sockets",
          "[net][datagram]")
{
    const std::string kind = GENERATE("ipv4", "ipv6", "unix");
    CAPTURE(kind);
    coil_test::temp_dir dir;
    auto server = net::datagram_socket::bind(bind_address(kind, dir, "server"));
    auto client = net::datagram_socket::bind(bind_address(kind, dir, "client"));
    REQUIRE(server);
    REQUIRE(client);
    const net::address server_at = *server->local_address();
    const net::address client_at = *client->local_address();

    constexpr std::size_t count = 200;
    coil::executor ex(coil_test::executor_options());
    // The server echoes `count` datagrams to whoever sent each; the client sends them one at
    // a time and checks each answer.
    auto serve = [&]() -> coil::task<std::size_t> {
        std::array<std::byte, 2048> buffer;
        std::size_t good_senders = 0;
        for (std::size_t i = 0; i < count; ++i) {
            auto got = co_await server->receive_from(buffer);
            if (!got || got->truncated)
                co_return good_senders;
            if (got->from == client_at)
                ++good_senders;
            auto sent = co_await server->send_to(std::span(buffer).first(got->size), got->from);
            if (!sent || *sent != got->size)
                co_return good_senders;
        }
        co_return good_senders;
    };
    auto talk = [&]() -> coil::task<std::size_t> {
        std::array<std::byte, 2048> back;
        std::size_t good = 0;
        std::mt19937 rng(7);
        for (std::size_t i = 0; i < count; ++i) {
            const std::size_t size = i < 2 ? i : rng() % 1401; // 0 and 1 byte first
            const auto m = message(i, size);
            auto sent = co_await client->send_to(m, server_at);
            auto got = co_await client->receive_from(back);
            if (sent && *sent == size && got && got->size == size && !got->truncated &&
                got->from == server_at &&
                std::equal(m.begin(), m.end(), back.begin()))
                ++good;
        }
        co_return good;
    };
    auto body = [&]() -> coil::task<std::pair<std::size_t, std::size_t>> {
        auto server_task = ex.spawn(serve());
        const std::size_t good = co_await talk();
        co_return std::pair{good, co_await server_task};
    };
    auto [good, senders] = ex.run(body());
    CHECK(good == count);
    CHECK(senders == count);
    CHECK(ex.in_flight() == 0);
}

TEST_CASE("net: a datagram longer than the buffer arrives cut and says so, and the next one "
          "arrives whole",
          "[net][datagram]")
{
    auto a = net::datagram_socket::bind(net::address::loopback_v4(0));
    auto b = net::datagram_socket::bind(net::address::loopback_v4(0));
    REQUIRE(a);
    REQUIRE(b);
    const auto b_at = *b->local_address();
    coil::executor ex(coil_test::executor_options());
    struct seen {
        net::datagram first, second, third;
        std::string first_bytes, second_bytes;
    };
    auto body = [&]() -> coil::task<seen> {
        const auto long_one = message(1, 100);
        co_await send_whole(*a, long_one, b_at);
        co_await send_whole(*a, bytes_of("short"), b_at);
        co_await send_whole(*a, long_one, b_at);
        std::array<std::byte, 10> small;
        std::array<std::byte, 64> enough;
        seen s;
        auto first = co_await b->receive_from(small);
        REQUIRE(first);
        s.first = *first;
        s.first_bytes = coil_test::string_of(std::span(small).first(first->size));
        auto second = co_await b->receive_from(enough);
        REQUIRE(second);
        s.second = *second;
        s.second_bytes = coil_test::string_of(std::span(enough).first(second->size));
        // MSG_TRUNC: the kernel reports the whole length; the size stays the buffer's.
        auto third = co_await b->receive_from(small, MSG_TRUNC);
        REQUIRE(third);
        s.third = *third;
        co_return s;
    };
    const seen s = ex.run(body());
    CHECK(s.first.size == 10);
    CHECK(s.first.truncated);
    const auto long_one = message(1, 100);
    CHECK(s.first_bytes == coil_test::string_of(std::span(long_one).first(10)));
    CHECK(s.second.size == 5);
    CHECK_FALSE(s.second.truncated);
    CHECK(s.second_bytes == "short");
    CHECK(s.third.size == 10);
    CHECK(s.third.truncated);
}

TEST_CASE("net: send_to copies the address: the caller's may be destroyed and overwritten "
          "before the co_await, and the datagram still reaches it",
          "[net][datagram][lifetime]")
{
    coil_test::loopback_pair p;
    auto decoy = coil_test::bound_v4(); // where a stale address would send it
    coil::executor ex(coil_test::executor_options());
    auto body = [&]() -> coil::task<std::string> {
        auto to = std::make_unique<net::address>(p.server_at);
        auto op = p.client.send_to(bytes_of("copied"), *to);
        // Freed (ASan would report a read of it), then the memory handed out again.
        to.reset();
        auto reused = std::make_unique<net::address>(*decoy.local_address());
        auto sent = co_await op;
        REQUIRE(sent);
        CHECK(*sent == 6);
        std::array<std::byte, 16> buffer{};
        auto got = co_await p.server.receive_from(buffer);
        REQUIRE(got);
        co_return coil_test::string_of(std::span(buffer).first(got->size));
    };
    CHECK(ex.run(body()) == "copied");
}

TEST_CASE("net: an empty datagram is a datagram, not an end of stream", "[net][datagram]")
{
    coil_test::temp_dir dir;
    auto a = net::datagram_socket::bind(*net::address::unix_path(dir.file("a")));
    auto b = net::datagram_socket::bind(*net::address::unix_path(dir.file("b")));
    REQUIRE(a);
    REQUIRE(b);
    const auto a_at = *a->local_address();
    const auto b_at = *b->local_address();
    coil::executor ex(coil_test::executor_options());
    auto body = [&]() -> coil::task<std::vector<std::size_t>> {
        co_await send_whole(*a, {}, b_at);
        co_await send_whole(*a, bytes_of("after"), b_at);
        std::array<std::byte, 16> buffer;
        std::vector<std::size_t> sizes;
        for (int i = 0; i < 2; ++i) {
            auto got = co_await b->receive_from(buffer);
            REQUIRE(got);
            REQUIRE(got->from == a_at);
            sizes.push_back(got->size);
        }
        co_return sizes;
    };
    CHECK(ex.run(body()) == std::vector<std::size_t>{0, 5});
}

TEST_CASE("net: a connected datagram socket sends and receives without addresses, and the "
          "kernel drops datagrams from anyone else",
          "[net][datagram]")
{
    auto a = net::datagram_socket::bind(net::address::loopback_v6(0));
    auto b = net::datagram_socket::bind(net::address::loopback_v6(0));
    auto stranger = net::datagram_socket::open(AF_INET6);
    REQUIRE(a);
    REQUIRE(b);
    REQUIRE(stranger);
    CHECK(a->peer_address().error() == std::errc::not_connected);
    REQUIRE(a->connect(*b->local_address()));
    REQUIRE(b->connect(*a->local_address()));
    CHECK(a->peer_address().value() == *b->local_address());
    coil::executor ex(coil_test::executor_options());
    auto body = [&]() -> coil::task<std::string> {
        // The stranger's datagram reaches b's port first; b is connected to a, so it is dropped.
        co_await send_whole(*stranger, bytes_of("from a stranger"), *b->local_address());
        auto sent = co_await a->send(bytes_of("from a"));
        REQUIRE(sent);
        std::array<std::byte, 64> buffer;
        auto n = co_await b->receive(buffer);
        REQUIRE(n);
        auto back = co_await b->send(std::span(buffer).first(*n));
        REQUIRE(back);
        auto m = co_await a->receive(buffer);
        REQUIRE(m);
        co_return coil_test::string_of(std::span(buffer).first(*m));
    };
    CHECK(ex.run(body()) == "from a");
}

TEST_CASE("net: a pending receive_from ends with operation_canceled on a stop request, "
          "timed_out at its deadline, and through cancel() and close(); the socket goes on "
          "after the first three",
          "[net][datagram][cancel]")
{
    auto s = net::datagram_socket::bind(net::address::loopback_v4(0));
    auto peer = net::datagram_socket::open(AF_INET);
    REQUIRE(s);
    REQUIRE(peer);
    const auto at = *s->local_address();
    coil::executor ex(coil_test::executor_options());
    struct outcome {
        std::error_code stopped, deadline, cancelled, after, closed;
    };
    auto receive_error = [&](std::chrono::nanoseconds deadline) -> coil::task<std::error_code> {
        std::array<std::byte, 16> buffer;
        // An if, not a conditional of two co_awaits (g++ 12 miscompiles those: runtime.md).
        if (deadline.count() != 0) {
            auto got = co_await s->receive_from(buffer).with_timeout(deadline);
            co_return got ? std::error_code() : got.error();
        }
        auto got = co_await s->receive_from(buffer);
        co_return got ? std::error_code() : got.error();
    };
    auto body = [&]() -> coil::task<outcome> {
        outcome o;
        std::stop_source stop;
        auto stopped = ex.spawn(coil::with_stop_token(stop.get_token(), receive_error({})));
        co_await coil::yield();
        stop.request_stop();
        o.stopped = co_await stopped;

        o.deadline = co_await receive_error(std::chrono::milliseconds(20));

        auto cancelled = ex.spawn(receive_error({}));
        co_await coil::yield();
        auto found = co_await s->cancel();
        REQUIRE(found);
        o.cancelled = co_await cancelled;

        // Still usable: a datagram sent now is received.
        co_await send_whole(*peer, bytes_of("still here"), at);
        o.after = co_await receive_error({});

        auto closed = ex.spawn(receive_error({}));
        co_await coil::yield();
        auto closed_ok = co_await s->close();
        REQUIRE(closed_ok);
        o.closed = co_await closed;
        co_return o;
    };
    const outcome o = ex.run(body());
    CHECK(o.stopped == std::errc::operation_canceled);
    CHECK(o.deadline == std::errc::timed_out);
    CHECK(o.cancelled == std::errc::operation_canceled);
    CHECK_FALSE(o.after);
    CHECK(o.closed == std::errc::operation_canceled);
    CHECK_FALSE(s->is_open());
    CHECK(ex.in_flight() == 0);
}

TEST_CASE("net: datagram misuse gets clear errors: a foreign family, an oversize datagram, an "
          "unknown family, an address in use, a closed socket",
          "[net][datagram]")
{
    CHECK(net::datagram_socket::open(AF_PACKET).error() == std::errc::address_family_not_supported);
    CHECK(net::datagram_socket::bind(net::address()).error() ==
          std::errc::address_family_not_supported);
    auto a = net::datagram_socket::bind(net::address::loopback_v4(0));
    REQUIRE(a);
    CHECK(net::datagram_socket::bind(*a->local_address()).error() == std::errc::address_in_use);
    {
        // With SO_REUSEPORT on both, two sockets share a port.
        auto first = net::datagram_socket::bind(net::address::loopback_v4(0), {.reuse_port = true});
        REQUIRE(first);
        auto second = net::datagram_socket::bind(*first->local_address(), {.reuse_port = true});
        CHECK(second);
    }
    net::datagram_socket closed;
    coil::executor ex(coil_test::executor_options());
    auto body = [&]() -> coil::task<std::vector<std::error_code>> {
        std::vector<std::error_code> errors;
        const auto v6 = net::address::loopback_v6(9);
        auto foreign = co_await a->send_to(bytes_of("x"), v6); // an IPv6 address, IPv4 socket
        errors.push_back(foreign ? std::error_code() : foreign.error());
        const std::vector<std::byte> huge(70'000); // above UDP's 65,507-byte payload
        auto oversize = co_await a->send_to(huge, *a->local_address());
        errors.push_back(oversize ? std::error_code() : oversize.error());
        std::array<std::byte, 8> buffer;
        auto on_closed = co_await closed.receive_from(buffer);
        errors.push_back(on_closed ? std::error_code() : on_closed.error());
        co_return errors;
    };
    const auto errors = ex.run(body());
    REQUIRE(errors.size() == 3);
    CHECK((errors[0] == std::errc::address_family_not_supported ||
           errors[0] == std::errc::invalid_argument));
    CHECK(errors[1] == std::errc::message_size);
    CHECK(errors[2] == std::errc::bad_file_descriptor);
}

TEST_CASE("net: 300 datagram sockets each with a receive pending on a small ring all get "
          "their datagram",
          "[net][datagram]")
{
    constexpr std::size_t sockets = 300;
    std::vector<net::datagram_socket> receivers;
    std::vector<net::address> addresses;
    for (std::size_t i = 0; i < sockets; ++i) {
        auto s = net::datagram_socket::bind(net::address::loopback_v4(0));
        REQUIRE(s);
        addresses.push_back(*s->local_address());
        receivers.push_back(std::move(*s));
    }
    auto sender = net::datagram_socket::open(AF_INET);
    REQUIRE(sender);
    coil::executor_options options;
    options.entries = 16;
    coil::executor ex(coil_test::executor_options(options));
    auto receive_one = [](net::datagram_socket& s, std::size_t i) -> coil::task<bool> {
        std::array<std::byte, 64> buffer;
        auto got = co_await s.receive_from(buffer);
        const auto expected = message(i, 48);
        co_return got && got->size == expected.size() &&
            std::equal(expected.begin(), expected.end(), buffer.begin());
    };
    auto body = [&]() -> coil::task<std::size_t> {
        std::vector<coil::task<bool>> waiting;
        for (std::size_t i = 0; i < sockets; ++i)
            waiting.push_back(receive_one(receivers[i], i));
        auto all = ex.spawn(coil::when_all(std::move(waiting)));
        co_await coil::yield();
        for (std::size_t i = 0; i < sockets; ++i) {
            auto sent = co_await sender->send_to(message(i, 48), addresses[i]);
            if (!sent)
                co_return 0;
        }
        auto results = co_await all;
        co_return static_cast<std::size_t>(std::count(results.begin(), results.end(), true));
    };
    CHECK(ex.run(body()) == sockets);
    CHECK(ex.in_flight() == 0);
}

TEST_CASE("net: a datagram from a sender without an address (a socketpair's peer, an unbound "
          "Unix socket) has an empty sender, also through an op that last saw a named one",
          "[net][datagram]")
{
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, fds) == 0);
    net::datagram_socket left(fds[0]);
    net::datagram_socket right(fds[1]);
    coil_test::temp_dir dir;
    auto bound = net::datagram_socket::bind(*net::address::unix_path(dir.file("bound")));
    auto named = net::datagram_socket::bind(*net::address::unix_path(dir.file("named")));
    auto unbound = net::datagram_socket::open(AF_UNIX);
    REQUIRE(bound);
    REQUIRE(named);
    REQUIRE(unbound);
    coil::executor ex(coil_test::executor_options());
    auto body = [&]() -> coil::task<std::vector<std::string>> {
        std::vector<std::string> senders;
        std::array<std::byte, 16> buffer;
        auto sent = co_await left.send(bytes_of("pair"));
        REQUIRE(sent);
        auto from_pair = co_await right.receive_from(buffer);
        REQUIRE(from_pair);
        senders.push_back(from_pair->from.to_string());
        // One op awaited twice: first a named sender, then one without a name.
        co_await send_whole(*named, bytes_of("named"), *bound->local_address());
        co_await send_whole(*unbound, bytes_of("anonymous"), *bound->local_address());
        auto receiving = bound->receive_from(buffer);
        auto first = co_await receiving;
        REQUIRE(first);
        senders.push_back(first->from.to_string());
        auto second = co_await receiving;
        REQUIRE(second);
        REQUIRE(second->size == 9);
        senders.push_back(second->from.to_string());
        co_return senders;
    };
    const auto senders = ex.run(body());
    REQUIRE(senders.size() == 3);
    CHECK((senders[0] == "(unspecified)" || senders[0] == "unix:"));
    CHECK(senders[1] == "unix:" + dir.file("named"));
    CHECK((senders[2] == "(unspecified)" || senders[2] == "unix:"));
}

// --- receive_datagrams: one multishot recvmsg over a buffer pool ----------------------------

namespace {

// The next item of a datagram stream (one never ends by itself: an end is a failure here).
coil::task<coil::result<net::received_datagram>> next_datagram(net::datagram_stream& s)
{
    auto item = co_await s.next();
    if (!item)
        co_return std::make_error_code(std::errc::connection_aborted);
    co_return std::move(*item);
}

// A datagram stream as `receive_datagrams` makes it, or forced to single-shot receives (what a
// kernel before 6.0 gets), where the payload fills the whole buffer.
net::datagram_stream datagram_receiver(const net::datagram_socket& s, net::buffer_pool& pool,
                                       bool multishot)
{
    if (multishot)
        return s.receive_datagrams(pool);
    return net::datagram_stream(
        net::ops::receive_from_provided{{s.fd(), &pool, false}}, coil::stream_options{});
}

} // namespace

TEST_CASE("net: receive_datagrams delivers every datagram from two senders whole and in order, "
          "with its sender, over UDP and Unix datagram sockets",
          "[net][datagram][pool]")
{
    const std::string kind = GENERATE("ipv4", "ipv6", "unix");
    CAPTURE(kind);
    coil_test::temp_dir dir;
    auto server = net::datagram_socket::bind(bind_address(kind, dir, "server"));
    auto first = net::datagram_socket::bind(bind_address(kind, dir, "first"));
    auto second = net::datagram_socket::bind(bind_address(kind, dir, "second"));
    REQUIRE(server);
    REQUIRE(first);
    REQUIRE(second);
    const net::address server_at = *server->local_address();
    const std::array<net::address, 2> senders = {*first->local_address(),
                                                 *second->local_address()};

    constexpr std::size_t per_sender = 150;
    coil::executor ex(coil_test::executor_options());
    net::buffer_pool pool(ex, 16, 2048);
    // The senders stay at most 12 datagrams ahead, so that the socket's receive queue never
    // fills (UDP drops what does not fit, which is not what this test is about).
    std::size_t sent = 0;
    std::size_t received = 0;
    auto receive = [&]() -> coil::task<std::string> {
        auto datagrams = server->receive_datagrams(pool);
        std::array<std::size_t, 2> next = {0, 0};
        for (std::size_t n = 0; n < 2 * per_sender; ++n) {
            auto d = co_await next_datagram(datagrams);
            if (!d)
                co_return "error: " + d.error().message();
            const std::size_t from =
                d->from == senders[0] ? 0 : d->from == senders[1] ? 1 : 2;
            if (from == 2)
                co_return "a datagram from an unknown sender";
            const std::size_t id = next[from]++;
            ++received;
            const std::vector<std::byte> want = message(from * 1000 + id, id * 9);
            if (d->truncated || !std::ranges::equal(d->data.bytes(), want))
                co_return "datagram " + std::to_string(id) + " of sender " +
                          std::to_string(from) + " differs";
        }
        co_return "ok";
    };
    auto send = [&](const net::datagram_socket& s, std::size_t from) -> coil::task<void> {
        for (std::size_t id = 0; id < per_sender; ++id) {
            while (sent - received >= 12)
                co_await coil::yield();
            const std::vector<std::byte> m = message(from * 1000 + id, id * 9);
            ++sent;
            co_await send_whole(s, m, server_at);
        }
    };
    auto body = [&]() -> coil::task<std::string> {
        auto got = ex.spawn(receive());
        co_await coil::yield();
        co_await coil::when_all(send(*first, 0), send(*second, 1));
        co_return co_await std::move(got);
    };
    CHECK(ex.run(body()) == "ok");
    CHECK(pool.lent() == 0);
}

TEST_CASE("net: receive_datagrams marks a datagram longer than a buffer's room as truncated and "
          "delivers the next one whole",
          "[net][datagram][pool]")
{
    const bool multishot = GENERATE(true, false);
    CAPTURE(multishot);
    coil_test::loopback_pair sockets;
    const net::address client_at = *sockets.client.local_address();
    coil::executor ex(coil_test::executor_options());
    net::buffer_pool pool(ex, 4, 1024);
    const std::vector<std::byte> big = message(1, 4000);
    const std::vector<std::byte> small = message(2, 100);
    auto body = [&]() -> coil::task<std::vector<std::string>> {
        co_await send_whole(sockets.client, big, sockets.server_at);
        co_await send_whole(sockets.client, small, sockets.server_at);
        auto datagrams = datagram_receiver(sockets.server, pool, multishot);
        std::vector<std::string> seen;
        for (int i = 0; i < 2; ++i) {
            auto d = co_await next_datagram(datagrams);
            if (!d) {
                seen.push_back("error: " + d.error().message());
                continue;
            }
            const auto& want = i == 0 ? big : small;
            const std::size_t n = d->data.size();
            const bool prefix = n <= want.size() &&
                                std::equal(d->data.bytes().begin(), d->data.bytes().end(),
                                           want.begin());
            seen.push_back(std::to_string(n) + (d->truncated ? " truncated" : " whole") +
                           (prefix ? "" : " corrupt") + (d->from == client_at ? "" : " stranger"));
        }
        co_return seen;
    };
    const auto seen = ex.run(body());
    REQUIRE(seen.size() == 2);
    // Multishot, a 1,024-byte buffer holds the kernel's 16-byte header and the 128 bytes of
    // address room before the payload; single-shot, the payload alone.
    const std::size_t room = multishot ? 1024 - 16 - sizeof(sockaddr_storage) : 1024;
    CHECK(seen[0] == std::to_string(room) + " truncated");
    CHECK(seen[1] == "100 whole");
    CHECK(pool.lent() == 0);
}

TEST_CASE("net: receive_datagrams over a pool of 2 buffers gets 60 queued datagrams, none lost or "
          "reordered, and its empty datagrams too",
          "[net][datagram][pool]")
{
    coil_test::loopback_pair sockets;
    const bool multishot = GENERATE(true, false);
    CAPTURE(multishot);
    coil::executor ex(coil_test::executor_options());
    net::buffer_pool pool(ex, 2, 512);
    constexpr std::size_t count = 60;
    auto body = [&]() -> coil::task<std::size_t> {
        // Everything is queued in the socket before the receive is armed: it drains two at a
        // time, runs dry, and is armed again as each buffer comes back.
        for (std::size_t id = 0; id < count; ++id)
            co_await send_whole(sockets.client, message(id, id % 5 == 0 ? 0 : 200),
                                sockets.server_at);
        auto datagrams = datagram_receiver(sockets.server, pool, multishot);
        std::size_t right = 0;
        for (std::size_t id = 0; id < count; ++id) {
            auto d = co_await next_datagram(datagrams);
            if (d && !d->truncated && std::ranges::equal(d->data.bytes(),
                                                         message(id, id % 5 == 0 ? 0 : 200)))
                ++right;
        } // each buffer goes back here, before the next datagram is awaited
        co_return right;
    };
    CHECK(ex.run(body()) == count);
    if (multishot) // armed with all 60 queued, it fills both buffers and runs dry at once
        CHECK(pool.exhaustions() >= 1);
    CHECK(pool.lent() == 0);
}

TEST_CASE("net: receive_datagrams refuses an incremental pool and one whose buffers have no "
          "room for a payload, and a stream destroyed with datagrams buffered gives every "
          "buffer back",
          "[net][datagram][pool]")
{
    coil_test::loopback_pair sockets;
    coil::executor ex(coil_test::executor_options());

    SECTION("a stream destroyed with datagrams buffered")
    {
        net::buffer_pool pool(ex, 8, 512);
        auto body = [&]() -> coil::task<bool> {
            for (std::size_t id = 0; id < 6; ++id)
                co_await send_whole(sockets.client, message(id, 64), sockets.server_at);
            {
                auto datagrams = sockets.server.receive_datagrams(pool);
                // The rest arrive into the stream's buffer.
                auto d = co_await next_datagram(datagrams);
                if (!d || d->data.size() != 64)
                    co_return false;
                co_await coil::yield();
            } // the stream goes: its buffered datagrams' buffers go back
            co_return true;
        };
        CHECK(ex.run(body()));
        CHECK(pool.lent() == 0);
        CHECK(pool.available() == pool.count());
    }
    SECTION("an incremental pool")
    {
        std::optional<net::buffer_pool> pool;
        try {
            pool.emplace(ex, 4, 4096, net::buffer_pool_options{.incremental = true});
        } catch (const std::system_error& e) {
            SKIP("no incremental buffer rings here: " << e.what());
        }
        auto body = [&]() -> coil::task<std::error_code> {
            auto datagrams = sockets.server.receive_datagrams(*pool);
            auto d = co_await next_datagram(datagrams);
            co_return d ? std::error_code() : d.error();
        };
        CHECK(ex.run(body()) == std::errc::invalid_argument);
    }
    SECTION("buffers of 144 bytes: the header and the address room, nothing more")
    {
        net::buffer_pool pool(ex, 4, 144);
        auto body = [&]() -> coil::task<std::error_code> {
            co_await send_whole(sockets.client, message(0, 8), sockets.server_at);
            auto datagrams = sockets.server.receive_datagrams(pool);
            auto d = co_await next_datagram(datagrams);
            co_return d ? std::error_code() : d.error();
        };
        CHECK(ex.run(body()) == std::errc::invalid_argument);
        CHECK(pool.lent() == 0);
    }
    SECTION("buffers of 145 bytes carry a 1-byte payload")
    {
        net::buffer_pool pool(ex, 4, 145);
        auto body = [&]() -> coil::task<std::size_t> {
            co_await send_whole(sockets.client, message(0, 1), sockets.server_at);
            auto datagrams = sockets.server.receive_datagrams(pool);
            auto d = co_await next_datagram(datagrams);
            co_return d && !d->truncated ? d->data.size() : 0;
        };
        CHECK(ex.run(body()) == 1);
    }
}

TEST_CASE("net: an IPv6 datagram socket sends to an IPv4 address, which Linux maps",
          "[net][datagram]")
{
    auto v4 = net::datagram_socket::bind(net::address::loopback_v4(0));
    auto v6 = net::datagram_socket::open(AF_INET6);
    REQUIRE(v4);
    REQUIRE(v6);
    const auto to = v4->local_address();
    REQUIRE(to);
    auto body = [&]() -> coil::task<std::vector<std::byte>> {
        co_await send_whole(*v6, message(3, 3), *to);
        std::array<std::byte, 16> buffer{};
        auto got = co_await v4->receive_from(buffer).with_timeout(std::chrono::seconds(10));
        REQUIRE(got);
        co_return std::vector<std::byte>(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(got->size));
    };
    CHECK(coil_test::run(body()) == message(3, 3));
}

TEST_CASE("net: a datagram bind over a stale Unix socket file replaces it unless told not to, and "
          "never a live socket or a regular file",
          "[net][datagram]")
{
    coil_test::temp_dir dir;
    const std::string path = dir.file("d.sock");
    const auto at = net::address::unix_path(path);
    REQUIRE(at);
    {
        auto first = net::datagram_socket::bind(*at);
        REQUIRE(first);
    } // closed: its file stays behind, stale
    struct stat st {};
    REQUIRE(::stat(path.c_str(), &st) == 0);

    auto kept = net::datagram_socket::bind(*at, {.remove_stale_path = false});
    REQUIRE_FALSE(kept);
    CHECK(kept.error() == std::errc::address_in_use);
    {
        auto replaced = net::datagram_socket::bind(*at);
        REQUIRE(replaced);
        auto over_live = net::datagram_socket::bind(*at);
        REQUIRE_FALSE(over_live);
        CHECK(over_live.error() == std::errc::address_in_use);
    }
    REQUIRE(::unlink(path.c_str()) == 0);
    dir.create_file("d.sock", bytes_of("keep"));
    auto over_file = net::datagram_socket::bind(*at);
    REQUIRE_FALSE(over_file);
    CHECK(over_file.error() == std::errc::address_in_use);
    REQUIRE(::stat(path.c_str(), &st) == 0);
    CHECK(S_ISREG(st.st_mode));
}

TEST_CASE("net: a receive_datagrams stream the kernel ended because the CQ overflowed is armed "
          "again, and every waiting datagram arrives whole and in order",
          "[net][datagram][pool][overflow]")
{
    // 40 datagrams wait in the socket before the multishot recvmsg is armed on an 8-entry CQ:
    // the kernel posts one completion per datagram and ends the multishot at the one the CQ
    // cannot hold, that datagram in its final completion.
    const bool deferred = GENERATE(true, false);
    CAPTURE(deferred);
    constexpr std::size_t count = 40;
    coil_test::loopback_pair sockets;
    for (std::size_t id = 0; id < count; ++id) {
        const std::vector<std::byte> m = message(id, 1 + id * 7);
        REQUIRE(::sendto(sockets.client.fd(), m.data(), m.size(), 0, sockets.server_at.data(),
                         sockets.server_at.size()) == static_cast<ssize_t>(m.size()));
    }
    coil::executor ex(coil_test::executor_options(coil_test::eight_entry_cq(deferred)));
    net::buffer_pool pool(ex, 64, 512);
    std::size_t arms = 0;
    auto body = [&]() -> coil::task<std::string> {
        auto datagrams = sockets.server.receive_datagrams(pool);
        for (std::size_t id = 0; id < count; ++id) {
            auto d = co_await next_datagram(datagrams);
            if (!d)
                co_return "error: " + d.error().message();
            if (d->truncated || !std::ranges::equal(d->data.bytes(), message(id, 1 + id * 7)))
                co_return "datagram " + std::to_string(id) + " differs";
        }
        arms = datagrams.arms();
        co_return "ok";
    };
    CHECK(ex.run(body()) == "ok");
    CHECK(ex.ring().stats().cq_overflows > 0);
    CHECK(arms > 1);
    CHECK(pool.lent() == 0);
}
