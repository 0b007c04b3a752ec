// SPDX-License-Identifier: MIT
// Networking: addresses, stream sockets and listeners over TCP (IPv4, IPv6) and Unix sockets,
// multishot accept, multishot receive over a buffer pool that runs dry, closing with ops
// pending, peers that reset, accepts at the descriptor limit, connections accepted for nobody.

#include "net_test_support.hpp"
#include "ring_test_support.hpp"
#include "runtime_test_support.hpp"
#include "test_executor.hpp"

#include <coil/coil.hpp>
#include <coil/net/address.hpp>
#include <coil/net/socket.hpp>

#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <signal.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <random>
#include <stop_token>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

using coil_test::bytes_of;
using Catch::Matchers::ContainsSubstring;
namespace net = coil::net;

namespace {

bool is_canceled(const std::error_code& e) { return e == std::errc::operation_canceled; }

// A listening address of each kind, on a free port or a fresh path.
net::address listen_address(const std::string& kind, const coil_test::temp_dir& dir)
{
    if (kind == "ipv4")
        return net::address::loopback_v4(0);
    if (kind == "ipv6")
        return net::address::loopback_v6(0);
    return *net::address::unix_path(dir.file("sock"));
}

coil::task<coil::result<std::string>> read_until_eof(net::stream_socket& s)
{
    std::string out;
    std::array<std::byte, 4096> buffer;
    for (;;) {
        auto n = co_await s.receive(buffer);
        if (!n)
            co_return n.error();
        if (*n == 0)
            co_return out;
        out.append(reinterpret_cast<const char*>(buffer.data()), *n);
    }
}

} // namespace

TEST_CASE("net: addresses parse from text, and bad ones say what was expected", "[net][address]")
{
    auto v4 = net::address::parse("127.0.0.1:8080");
    REQUIRE(v4);
    CHECK(v4->family() == AF_INET);
    CHECK(v4->port() == 8080);
    CHECK(v4->to_string() == "127.0.0.1:8080");

    auto v6 = net::address::parse("[::1]:443");
    REQUIRE(v6);
    CHECK(v6->family() == AF_INET6);
    CHECK(v6->to_string() == "[::1]:443");

    auto local = net::address::parse("localhost:80");
    REQUIRE(local);
    CHECK(local->is_ip());
    CHECK(local->family() == AF_INET); // localhost prefers IPv4 (docs/networking.md)
    CHECK(local->port() == 80);

    auto path = net::address::parse("unix:/tmp/x.sock");
    REQUIRE(path);
    CHECK(path->family() == AF_UNIX);
    CHECK(path->to_string() == "unix:/tmp/x.sock");
    CHECK(net::address::parse("/run/a.sock")->to_string() == "unix:/run/a.sock");
    CHECK(net::address::parse("unix:@abstract")->to_string() == "unix:@abstract");

    CHECK(net::address::parse("127.0.0.1").error() == net::errc::missing_port);
    CHECK(net::address::parse("127.0.0.1:99999").error() == net::errc::bad_port);
    CHECK(net::address::parse("127.0.0.1:http").error() == net::errc::bad_port);
    CHECK(net::address::parse("::1:80").error() == net::errc::bad_host);
    CHECK(net::address::parse("[::1]").error() == net::errc::missing_port);
    CHECK(net::address::parse("").error() == net::errc::empty);
    CHECK(net::address::parse("no-such-host.invalid:80").error() == net::errc::bad_host);
    CHECK(net::address::parse("unix:/" + std::string(200, 'x')).error() == net::errc::path_too_long);
    // sun_path holds 108 bytes: a path and its NUL, or an abstract name after its leading NUL.
    CHECK(net::address::parse("unix:/" + std::string(106, 'x')));
    CHECK(net::address::parse("unix:/" + std::string(107, 'x')).error() == net::errc::path_too_long);
    CHECK(net::address::parse("unix:@" + std::string(107, 'z')));
    CHECK(net::address::parse("unix:@" + std::string(108, 'z')).error() == net::errc::path_too_long);
    CHECK_THAT(net::address::parse("127.0.0.1").error().message(), ContainsSubstring("HOST:PORT"));
    CHECK(net::address::parse("x:1:2").error() == std::errc::invalid_argument);

    // Brackets hold an IPv6 literal only; a link-local one names its interface.
    CHECK(net::address::parse("[1.2.3.4]:80").error() == net::errc::bad_host);
    CHECK(net::address::parse("[localhost]:80").error() == net::errc::bad_host);
    auto link_local = net::address::parse("[fe80::1%lo]:80");
    REQUIRE(link_local);
    CHECK(reinterpret_cast<const sockaddr_in6*>(link_local->data())->sin6_scope_id ==
          ::if_nametoindex("lo"));
    CHECK(link_local->to_string() == "[fe80::1%lo]:80");
    auto by_index = net::address::parse("[fe80::1%1]:80");
    REQUIRE(by_index);
    CHECK(reinterpret_cast<const sockaddr_in6*>(by_index->data())->sin6_scope_id == 1);
    CHECK(net::address::parse("[fe80::1%no-such-if]:80").error() == net::errc::bad_host);
    CHECK(net::address::parse("[fe80::1%]:80").error() == net::errc::bad_host);
    CHECK(net::address::parse("[::1]:80")->to_string() == "[::1]:80");
    // Stray brackets are a malformed host, not a missing port.
    CHECK(net::address::parse("[[::1]]:80").error() == net::errc::bad_host);
    CHECK(net::address::parse("[::1]]:80").error() == net::errc::bad_host);
    CHECK(net::address::parse("[::1]x80").error() == net::errc::bad_host);

    // A NUL ends nothing (the C library would stop there), and inet_aton's shorthands are no
    // IPv4 literals.
    using namespace std::string_view_literals;
    CHECK(net::address::parse("127.0.0.1\0junk:80"sv).error() == net::errc::bad_host);
    CHECK(net::address::parse("[::1\0junk]:80"sv).error() == net::errc::bad_host);
    CHECK(net::address::parse("localhost\0.example.invalid:80"sv).error() == net::errc::bad_host);
    CHECK(net::address::parse("127.1:80").error() == net::errc::bad_host);
    CHECK(net::address::parse("0x7f.1:80").error() == net::errc::bad_host);
    CHECK(net::address::parse("2130706433:80").error() == net::errc::bad_host);
    CHECK(net::address::parse("1.2.3.4.5:80").error() == net::errc::bad_host); // a name, unknown
}

TEST_CASE("net: a connection over TCP and Unix sockets carries bytes both ways and ends cleanly",
          "[net][socket]")
{
    const std::string kind = GENERATE("ipv4", "ipv6", "unix");
    CAPTURE(kind);
    coil_test::temp_dir dir;
    auto server = net::listener::bind(listen_address(kind, dir));
    if (!server && kind == "ipv6" && server.error() == std::errc::address_not_available)
        SKIP("no IPv6 loopback here");
    REQUIRE(server);
    auto at = server->local_address();
    REQUIRE(at);
    const std::vector<std::byte> payload = coil_test::pattern(200'000);
    auto body = [&]() -> coil::task<std::pair<std::string, std::string>> {
        auto echo = [&]() -> coil::task<std::string> {
            auto conn = co_await server->accept();
            REQUIRE(conn);
            auto got = co_await read_until_eof(*conn);
            REQUIRE(got);
            auto sent = co_await conn->send_all(bytes_of(*got));
            REQUIRE(sent);
            auto shut = co_await conn->shutdown();
            REQUIRE(shut);
            co_return *got;
        };
        auto server_side = coil::executor::current()->spawn(echo());
        auto client = co_await net::stream_socket::connect(*at);
        REQUIRE(client);
        auto sent = co_await client->send_all(payload);
        REQUIRE(sent.ok());
        auto shut = co_await client->shutdown();
        REQUIRE(shut.ok()); // end-of-stream; keep receiving
        auto back = co_await read_until_eof(*client);
        REQUIRE(back);
        auto closed = co_await client->close();
        CHECK(closed.ok());
        CHECK_FALSE(client->is_open());
        co_return std::pair{co_await server_side, *back};
    };
    auto [seen, back] = coil_test::run(body());
    const std::string expected(reinterpret_cast<const char*>(payload.data()), payload.size());
    CHECK(seen.size() == expected.size());
    CHECK(back.size() == expected.size());
    CHECK(seen == expected);
    CHECK(back == expected);
}

TEST_CASE("net: binding a Unix path replaces a stale socket file, never a live socket or a file",
          "[net][socket]")
{
    // Found by a user trial: the "stale" socket file was unlinked whatever the path held, so a
    // second bind stole a live listener's path and a bind on a regular file deleted it.
    coil_test::temp_dir dir;
    const auto at = net::address::unix_path(dir.file("s.sock"));
    REQUIRE(at);
    {
        auto live = net::listener::bind(*at);
        REQUIRE(live);
        auto second = net::listener::bind(*at);
        REQUIRE_FALSE(second);
        CHECK(second.error() == std::errc::address_in_use);
        // The live listener still owns the path: a client reaches it.
        auto reach = [&]() -> coil::task<bool> {
            auto client = co_await net::stream_socket::connect(*at);
            if (!client)
                co_return false;
            auto conn = co_await live->accept();
            co_return conn.ok();
        };
        CHECK(coil_test::run(reach()));
        const auto datagram_at = net::address::unix_path(dir.file("d.sock"));
        auto live_datagram = net::datagram_socket::bind(*datagram_at);
        REQUIRE(live_datagram);
        auto second_datagram = net::datagram_socket::bind(*datagram_at);
        REQUIRE_FALSE(second_datagram);
        CHECK(second_datagram.error() == std::errc::address_in_use);
    }
    // Closed, the listener left its socket file behind: stale, so the next bind replaces it.
    CHECK(net::listener::bind(*at));

    // A socket bound but not yet listening refuses connections like a stale file, yet it is
    // someone's: left alone (found by a second user trial).
    {
        const auto pending_at = net::address::unix_path(dir.file("pending.sock"));
        coil_test::unique_fd owner(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        REQUIRE(owner.get() >= 0);
        REQUIRE(::bind(owner.get(), pending_at->data(), pending_at->size()) == 0);
        auto taken = net::listener::bind(*pending_at);
        REQUIRE_FALSE(taken);
        CHECK(taken.error() == std::errc::address_in_use);
        REQUIRE(::listen(owner.get(), 4) == 0);
        auto reach_owner = [&]() -> coil::task<bool> {
            auto client = co_await net::stream_socket::connect(*pending_at);
            co_return client.ok();
        };
        CHECK(coil_test::run(reach_owner()));
        const int accepted = ::accept4(owner.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        CHECK(accepted >= 0);
        if (accepted >= 0)
            ::close(accepted);
    }

    // A regular file is not a socket: refused, and the file is kept.
    static_cast<void>(dir.create_file("data", bytes_of("keep me")));
    auto on_file = net::listener::bind(*net::address::unix_path(dir.file("data")));
    REQUIRE_FALSE(on_file);
    CHECK(on_file.error() == std::errc::address_in_use);
    std::ifstream kept(dir.file("data"));
    std::string contents;
    std::getline(kept, contents);
    CHECK(contents == "keep me");
}

TEST_CASE("net: connecting to a port nobody listens on fails with connection_refused",
          "[net][socket]")
{
    // Bind a port, then close it: nobody listens there now.
    net::address free_port;
    {
        auto l = net::listener::bind(net::address::loopback_v4(0));
        REQUIRE(l);
        free_port = *l->local_address();
    }
    auto body = [&]() -> coil::task<std::error_code> {
        auto c = co_await net::stream_socket::connect(free_port);
        co_return c ? std::error_code() : c.error();
    };
    CHECK(coil_test::run(body()) == std::errc::connection_refused);
    auto in_use = net::listener::bind(net::address::loopback_v4(0));
    REQUIRE(in_use);
    auto again = net::listener::bind(*in_use->local_address(), {.reuse_address = false});
    CHECK(again.error() == std::errc::address_in_use);
}

TEST_CASE("net: a connect with a deadline to a listener whose queue is full ends timed_out, "
          "and one with room connects",
          "[net][socket][timeout]")
{
    // Backlog 0 queues one connection; Linux drops the SYNs of the next ones while nobody
    // accepts, so their handshakes wait on retransmissions.
    auto server = net::listener::bind(net::address::loopback_v4(0), {.backlog = 0});
    REQUIRE(server);
    const auto at = *server->local_address();
    const unsigned open_before = coil_test::open_descriptors();
    struct outcome {
        std::error_code first, full, after_accept;
    };
    auto body = [&]() -> coil::task<outcome> {
        outcome o;
        auto first = co_await net::stream_socket::connect(at, std::chrono::seconds(10));
        o.first = first ? std::error_code() : first.error();
        auto full = co_await net::stream_socket::connect(at, std::chrono::milliseconds(200));
        o.full = full ? std::error_code() : full.error();
        auto accepted = co_await server->accept(); // room again
        REQUIRE(accepted);
        auto after = co_await net::stream_socket::connect(at, std::chrono::seconds(10));
        o.after_accept = after ? std::error_code() : after.error();
        co_return o;
    };
    const outcome o = coil_test::run(body());
    CHECK_FALSE(o.first);
    CHECK(o.full == std::errc::timed_out);
    CHECK_FALSE(o.after_accept);
    CHECK(coil_test::open_descriptors() == open_before); // the timed-out socket was closed
}

TEST_CASE("net: a connect without a deadline to a full queue ends operation_canceled on a stop "
          "request, and its socket is closed",
          "[net][socket][cancel]")
{
    auto server = net::listener::bind(net::address::loopback_v4(0), {.backlog = 0});
    REQUIRE(server);
    const auto at = *server->local_address();
    const unsigned open_before = coil_test::open_descriptors();
    auto body = [&]() -> coil::task<std::error_code> {
        auto first = co_await net::stream_socket::connect(at, std::chrono::seconds(10));
        REQUIRE(first); // fills the queue
        std::stop_source stop;
        auto stopper = [](std::stop_source& s) -> coil::task<void> {
            (void)co_await coil::sleep_for(std::chrono::milliseconds(100));
            s.request_stop();
        };
        auto stopping = coil::executor::current()->spawn(stopper(stop));
        auto second = co_await coil::with_stop_token(stop.get_token(), net::stream_socket::connect(at));
        co_await std::move(stopping);
        co_return second ? std::error_code() : second.error();
    };
    CHECK(coil_test::run(body()) == std::errc::operation_canceled);
    CHECK(coil_test::open_descriptors() == open_before);
}

TEST_CASE("net: send_zero_copy yields each send's byte count once the kernel is done with the "
          "buffer, and the peer gets every byte",
          "[net][socket][zero_copy]")
{
    auto server = net::listener::bind(net::address::loopback_v4(0));
    REQUIRE(server);
    const auto at = *server->local_address();
    const std::vector<std::byte> data = coil_test::pattern(256 * 1024);
    struct outcome {
        std::error_code error;
        std::size_t sends = 0, zero_counts = 0;
        std::string received;
    };
    auto body = [&]() -> coil::task<outcome> {
        outcome o;
        auto client = co_await net::stream_socket::connect(at);
        auto conn = co_await server->accept();
        REQUIRE(client);
        REQUIRE(conn);
        auto reader = coil::executor::current()->spawn(read_until_eof(*conn));
        for (std::size_t sent = 0; sent < data.size() && !o.error;) {
            auto n = co_await client->send_zero_copy(std::span(data).subspan(sent));
            if (!n) {
                o.error = n.error();
            } else if (*n == 0) {
                ++o.zero_counts;
                if (o.zero_counts > 3)
                    break;
            } else {
                sent += *n;
                ++o.sends;
            }
        }
        (void)co_await client->shutdown();
        auto got = co_await std::move(reader);
        REQUIRE(got);
        o.received = std::move(*got);
        co_return o;
    };
    const outcome o = coil_test::run(body());
    if (o.error == coil::io::errc::unsupported_operation)
        SKIP("this kernel has no IORING_OP_SEND_ZC (Linux 6.0)");
    CHECK_FALSE(o.error);
    CHECK(o.zero_counts == 0); // the count is the send's, not the notification's 0
    CHECK(o.sends >= 1);
    CHECK(o.received == coil_test::string_of(data));
}

TEST_CASE("net: a zero-copy send whose deadline passes or whose task is asked to stop while the "
          "peer reads nothing resumes only once the kernel let go of its buffer: rewriting the "
          "buffer then changes no byte the peer receives",
          "[net][socket][zero_copy][lifetime]")
{
    // The deadline or the stop request cancels the send, but the kernel's notification comes
    // only when nothing references the buffer any more: over loopback, once the peer has read
    // what was sent. The awaiter must wait for it (docs/networking.md), however late.
    const std::string ending = GENERATE("deadline", "stop request");
    CAPTURE(ending);
    auto server = net::listener::bind(net::address::loopback_v4(0));
    REQUIRE(server);
    const auto at = *server->local_address();
    std::vector<std::byte> data = coil_test::pattern(4 * 1024 * 1024);
    const std::string original = coil_test::string_of(data);
    struct outcome {
        coil::result<std::size_t> sent = std::size_t{0};
        bool resumed_before_reading = false;
        std::string received;
    };
    auto body = [&]() -> coil::task<outcome> {
        outcome o;
        auto client = co_await net::stream_socket::connect(at);
        auto conn = co_await server->accept();
        REQUIRE(client);
        REQUIRE(conn);
        bool reading = false;
        bool resumed = false;
        std::stop_source stop;
        auto send = [&]() -> coil::task<coil::result<std::size_t>> {
            co_return co_await client->send_zero_copy(data);
        };
        auto sender = [&]() -> coil::task<void> {
            if (ending == "deadline")
                o.sent = co_await client->send_zero_copy(data).with_timeout(
                    std::chrono::milliseconds(10));
            else
                o.sent = co_await coil::with_stop_token(stop.get_token(), send());
            resumed = true;
            o.resumed_before_reading = !reading;
            std::fill(data.begin(), data.end(), std::byte{0xee}); // the buffer is ours again
            (void)co_await client->shutdown();
        };
        auto sending = coil::executor::current()->spawn(sender());
        (void)co_await coil::sleep_for(std::chrono::milliseconds(10));
        stop.request_stop();
        // Well past the deadline or the stop request, with nothing read. (Whether the send
        // resumed by now is the kernel's business; what is checked below is that it did not
        // resume too early.)
        (void)co_await coil::sleep_for(std::chrono::milliseconds(90));
        reading = true;
        auto got = co_await read_until_eof(*conn);
        co_await std::move(sending);
        REQUIRE(got);
        REQUIRE(resumed);
        o.received = std::move(*got);
        co_return o;
    };
    const outcome o = coil_test::run(body());
    if (!o.sent && o.sent.error() == coil::io::errc::unsupported_operation)
        SKIP("this kernel has no IORING_OP_SEND_ZC (Linux 6.0)");
    INFO("resumed before the peer read: " << o.resumed_before_reading);
    if (o.sent) {
        // Cut short by the deadline, or whole: either way every byte it counts arrived as it
        // was when the send was made.
        CHECK(*o.sent <= original.size());
        CHECK(o.received.size() == *o.sent);
        CHECK(o.received == original.substr(0, *o.sent));
    } else {
        // Nothing sent at all.
        CHECK(o.sent.error() == (ending == "deadline" ? std::errc::timed_out
                                                      : std::errc::operation_canceled));
        CHECK(o.received.empty());
    }
}

TEST_CASE("net: executor::stop() with a zero-copy send in flight returns from run() only once "
          "the kernel let go of the buffer: rewriting it then changes no byte the peer receives",
          "[net][socket][zero_copy][lifetime][shutdown]")
{
    // The peer is read by a thread that starts only after the stop, so the shutdown's drain
    // waits for the send's notification until that thread has read what was sent.
    auto server = net::listener::bind(net::address::loopback_v4(0));
    REQUIRE(server);
    const auto at = *server->local_address();
    std::vector<std::byte> data = coil_test::pattern(4 * 1024 * 1024);
    const std::string original = coil_test::string_of(data);
    std::atomic<bool> stopping{false};
    std::string received;
    std::thread reader;
    bool unsupported = false;
    {
        coil::executor ex(coil_test::executor_options());
        auto body = [&]() -> coil::task<void> {
            auto client = co_await net::stream_socket::connect(at);
            auto conn = co_await server->accept();
            REQUIRE(client);
            REQUIRE(conn);
            reader = std::thread([&, fd = conn->release()] {
                while (!stopping.load())
                    std::this_thread::sleep_for(std::chrono::milliseconds(1));
                std::this_thread::sleep_for(std::chrono::milliseconds(50));
                std::array<char, 65536> chunk;
                for (ssize_t n; (n = ::recv(fd, chunk.data(), chunk.size(), 0)) > 0;)
                    received.append(chunk.data(), static_cast<std::size_t>(n));
                ::close(fd);
            });
            auto sender = [&]() -> coil::task<void> {
                auto sent = co_await client->send_zero_copy(data);
                unsupported = !sent && sent.error() == coil::io::errc::unsupported_operation;
            };
            auto sending = coil::executor::current()->spawn(sender());
            (void)co_await coil::sleep_for(std::chrono::milliseconds(10));
            stopping = true;
            coil::executor::current()->stop();
            co_await std::move(sending);
        };
        CHECK_THROWS_AS(ex.run(body()), std::system_error);
        CHECK(ex.in_flight() == 0);
        std::fill(data.begin(), data.end(), std::byte{0xee}); // the kernel is done with it
    }
    stopping = true; // in case the body ended early
    if (reader.joinable())
        reader.join();
    if (unsupported)
        SKIP("this kernel has no IORING_OP_SEND_ZC (Linux 6.0)");
    CHECK(received.size() <= original.size());
    CHECK(received == original.substr(0, received.size()));
}

TEST_CASE("net: send_zero_copy on a Unix stream socket fails with operation_not_supported "
          "and the socket still sends",
          "[net][socket][zero_copy]")
{
    int pair[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
    net::stream_socket ours(pair[0]);
    coil_test::unique_fd peer(pair[1]);
    auto body = [&]() -> coil::task<std::pair<std::error_code, bool>> {
        auto zc = co_await ours.send_zero_copy(bytes_of("zero"));
        auto plain = co_await ours.send(bytes_of("copy"));
        co_return std::pair{zc ? std::error_code() : zc.error(), plain && *plain == 4};
    };
    const auto [zc_error, plain_sent] = coil_test::run(body());
    if (zc_error == coil::io::errc::unsupported_operation)
        SKIP("this kernel has no IORING_OP_SEND_ZC (Linux 6.0)");
    CHECK(zc_error == std::errc::operation_not_supported);
    CHECK(plain_sent);
    char got[8] = {};
    CHECK(::recv(peer.get(), got, sizeof got, MSG_DONTWAIT) == 4); // only the plain send's
    CHECK(std::string_view(got, 4) == "copy");
}

TEST_CASE("net: listen_options::no_delay gives every accepted connection TCP_NODELAY, and "
          "without it they have none",
          "[net][accept]")
{
    const bool no_delay = GENERATE(false, true);
    CAPTURE(no_delay);
    auto server = net::listener::bind(net::address::loopback_v4(0),
                                      net::listen_options{.no_delay = no_delay});
    REQUIRE(server);
    const auto at = *server->local_address();
    coil::executor ex(coil_test::executor_options());
    auto body = [&]() -> coil::task<std::vector<int>> {
        std::vector<int> flags;
        std::vector<net::stream_socket> clients;
        for (int i = 0; i < 3; ++i) {
            auto c = co_await net::stream_socket::connect(at);
            REQUIRE(c);
            clients.push_back(std::move(*c));
            auto conn = co_await server->accept();
            REQUIRE(conn);
            int value = -1;
            socklen_t length = sizeof(value);
            REQUIRE(::getsockopt(conn->fd(), IPPROTO_TCP, TCP_NODELAY, &value, &length) == 0);
            flags.push_back(value != 0 ? 1 : 0);
        }
        co_return flags;
    };
    const int expected = no_delay ? 1 : 0;
    CHECK(ex.run(body()) == std::vector<int>{expected, expected, expected});
}

TEST_CASE("net: a multishot accept stream takes 50 connections, each served", "[net][accept]")
{
    auto server = net::listener::bind(net::address::loopback_v4(0));
    REQUIRE(server);
    const auto at = *server->local_address();
    constexpr int clients = 50;
    coil::executor ex(coil_test::executor_options());
    auto serve = [](net::stream_socket conn) -> coil::task<void> {
        auto got = co_await read_until_eof(conn);
        if (got)
            (void)co_await conn.send_all(bytes_of("ack:" + *got));
    };
    auto client = [&](int i) -> coil::task<bool> {
        auto c = co_await net::stream_socket::connect(at);
        if (!c)
            co_return false;
        const std::string hello = "client " + std::to_string(i);
        if (!(co_await c->send_all(bytes_of(hello))) || !(co_await c->shutdown()))
            co_return false;
        auto back = co_await read_until_eof(*c);
        co_return back && *back == "ack:" + hello;
    };
    auto body = [&]() -> coil::task<int> {
        int good = 0;
        std::size_t arms = 0;
        co_await coil::with_nursery([&](coil::nursery& n) -> coil::task<void> {
            std::vector<coil::join_handle<bool>> clients_done;
            for (int i = 0; i < clients; ++i)
                clients_done.push_back(ex.spawn(client(i)));
            auto connections = server->connections();
            for (int accepted = 0; accepted < clients;) {
                auto conn = co_await connections.next();
                REQUIRE(conn.has_value());
                REQUIRE(conn->ok());
                n.spawn(serve(std::move(**conn)));
                ++accepted;
            }
            arms = connections.arms();
            for (auto& c : clients_done)
                good += (co_await c) ? 1 : 0;
        });
        CHECK(arms >= 1);
        co_return good;
    };
    CHECK(ex.run(body()) == clients);
    CHECK(ex.in_flight() == 0);
}

TEST_CASE("net: a receive stream over a pool far too small for the load still delivers every "
          "byte in order",
          "[net][receive][buffer_pool]")
{
    const bool incremental = GENERATE(false, true);
    CAPTURE(incremental);
    if (incremental && !coil_test::incremental_buffers_supported())
        SKIP("this kernel has no incremental buffer consumption (Linux 6.12)");
    auto server = net::listener::bind(net::address::loopback_v4(0));
    REQUIRE(server);
    const auto at = *server->local_address();
    const std::vector<std::byte> payload = coil_test::pattern(1 << 20);
    coil::executor ex(coil_test::executor_options());
    std::uint64_t exhaustions = 0;
    std::size_t chunks = 0;
    auto body = [&]() -> coil::task<std::vector<std::byte>> {
        // 4 KiB of buffers for 1 MiB of data.
        net::buffer_pool pool(ex, 4, 1024, net::buffer_pool_options{.incremental = incremental});
        auto sender = [&]() -> coil::task<void> {
            auto c = co_await net::stream_socket::connect(at);
            REQUIRE(c);
            std::mt19937 rng(7);
            std::span<const std::byte> rest(payload);
            while (!rest.empty()) {
                const std::size_t n = std::min<std::size_t>(rest.size(), 1 + rng() % 20'000);
                auto sent_chunk = co_await c->send_all(rest.first(n));
                REQUIRE(sent_chunk.ok());
                rest = rest.subspan(n);
            }
            (void)co_await c->shutdown();
        };
        auto s = ex.spawn(sender());
        auto conn = co_await server->accept();
        REQUIRE(conn);
        std::vector<std::byte> got;
        {
            auto chunks_in = conn->receive(pool);
            std::vector<net::received_buffer> held;
            while (auto chunk = co_await chunks_in.next()) {
                REQUIRE(chunk->ok());
                if ((*chunk)->empty())
                    break; // the peer closed its side
                ++chunks;
                // A slow consumer that holds up to three buffers at a time: the pool runs dry.
                held.push_back(std::move(**chunk));
                if (held.size() == 3 || chunks % 5 == 0) {
                    for (auto& b : held)
                        got.insert(got.end(), b.bytes().begin(), b.bytes().end());
                    held.clear();
                    co_await coil::yield();
                }
            }
            for (auto& b : held)
                got.insert(got.end(), b.bytes().begin(), b.bytes().end());
        }
        co_await s;
        exhaustions = pool.exhaustions();
        CHECK(pool.lent() == 0);
        co_return got;
    };
    auto got = ex.run(body());
    CHECK(got.size() == payload.size());
    CHECK(got == payload);
    CHECK(exhaustions > 0); // the pool did run dry, and nothing was lost
    CHECK(chunks >= payload.size() / 1024);
}

TEST_CASE("net: a receive stream stopped mid-flow yields what it took before operation_canceled, "
          "and receives after it continue where it stopped",
          "[net][receive][buffer_pool][cancel]")
{
    auto server = net::listener::bind(net::address::loopback_v4(0));
    REQUIRE(server);
    const auto at = *server->local_address();
    const std::vector<std::byte> payload = coil_test::pattern(256 * 1024);
    coil::executor ex(coil_test::executor_options());
    std::error_code first_end;
    std::size_t after_stop = 0;
    auto body = [&]() -> coil::task<std::vector<std::byte>> {
        net::buffer_pool pool(ex, 16, 1024);
        auto sender = [&]() -> coil::task<void> {
            auto c = co_await net::stream_socket::connect(at);
            REQUIRE(c);
            std::span<const std::byte> rest(payload);
            while (!rest.empty()) {
                const std::size_t n = std::min<std::size_t>(rest.size(), 3000);
                auto sent = co_await c->send_all(rest.first(n));
                REQUIRE(sent.ok());
                rest = rest.subspan(n);
                co_await coil::yield();
            }
            (void)co_await c->shutdown();
        };
        auto s = ex.spawn(sender());
        auto conn = co_await server->accept();
        REQUIRE(conn);
        std::vector<std::byte> got;
        auto take = [&](std::span<const std::byte> bytes) {
            got.insert(got.end(), bytes.begin(), bytes.end());
        };
        {
            // A multishot receive, stopped with chunks it took still buffered: they come
            // first, then operation_canceled.
            auto chunks = conn->receive(pool);
            bool stopped = false;
            while (auto chunk = co_await chunks.next()) {
                if (!*chunk) {
                    first_end = chunk->error();
                    break;
                }
                REQUIRE_FALSE((*chunk)->empty()); // the peer is far from done
                take((*chunk)->bytes());
                after_stop += stopped ? 1 : 0;
                if (!stopped && got.size() >= 32 * 1024) {
                    for (int i = 0; i < 1000 && chunks.buffered() == 0; ++i)
                        co_await coil::yield();
                    REQUIRE(chunks.buffered() > 0);
                    chunks.stop();
                    stopped = true;
                }
            }
            CHECK(chunks.ended());
        }
        // Plain receives into a buffer of the task's own.
        std::array<std::byte, 2000> buffer;
        for (int i = 0; i < 3; ++i) {
            auto n = co_await conn->receive(buffer);
            REQUIRE(n);
            REQUIRE(*n > 0);
            take(std::span(buffer).first(*n));
        }
        // A second stream over the same pool, to the end of the stream.
        {
            auto chunks = conn->receive(pool);
            while (auto chunk = co_await chunks.next()) {
                REQUIRE(chunk->ok());
                if ((*chunk)->empty())
                    break;
                take((*chunk)->bytes());
            }
        }
        co_await s;
        CHECK(pool.lent() == 0);
        co_return got;
    };
    const std::vector<std::byte> got = ex.run(body());
    CHECK(is_canceled(first_end));
    CHECK(after_stop > 0);
    CHECK(got.size() == payload.size());
    CHECK(got == payload);
}

TEST_CASE("net: a receive_bundles stream over a small pool carries 1 MiB in order, bundles "
          "spanning several buffers when data waits",
          "[net][receive][buffer_pool][bundle]")
{
    auto server = net::listener::bind(net::address::loopback_v4(0));
    REQUIRE(server);
    const auto at = *server->local_address();
    const std::vector<std::byte> payload = coil_test::pattern(1 << 20);
    coil::executor ex(coil_test::executor_options());
    std::size_t bundles = 0;
    std::size_t multi_buffer_bundles = 0;
    bool ran_dry = false;
    auto body = [&]() -> coil::task<std::vector<std::byte>> {
        net::buffer_pool pool(ex, 8, 1024); // 8 KiB of buffers for 1 MiB
        auto sender = [&]() -> coil::task<void> {
            auto c = co_await net::stream_socket::connect(at);
            REQUIRE(c);
            auto sent = co_await c->send_all(payload);
            REQUIRE(sent.ok());
            (void)co_await c->shutdown();
        };
        auto s = ex.spawn(sender());
        auto conn = co_await server->accept();
        REQUIRE(conn);
        std::vector<std::byte> got;
        {
            auto in = conn->receive_bundles(pool);
            std::vector<net::received_bundle> held;
            unsigned held_buffers = 0;
            while (auto bundle = co_await in.next()) {
                REQUIRE(bundle->ok());
                if ((*bundle)->empty())
                    break;
                ++bundles;
                if (bundles == 1) {
                    // Holding the first bundle, wait while the sender's megabyte arrives: the
                    // receive fills every buffer. (This kernel may end the receive with ENOBUFS
                    // or keep it waiting for buffers; either way every byte must come.)
                    (void)co_await coil::sleep_for(std::chrono::milliseconds(100));
                    ran_dry = pool.available() == 0;
                }
                REQUIRE((*bundle)->buffers() >= 1);
                REQUIRE((*bundle)->size() <= (*bundle)->buffers() * pool.buffer_size());
                if ((*bundle)->buffers() > 1)
                    ++multi_buffer_bundles;
                std::size_t in_parts = 0;
                for (std::span<const std::byte> part : **bundle)
                    in_parts += part.size();
                REQUIRE(in_parts == (*bundle)->size());
                // A consumer that holds bundles until they hold all but one buffer of the
                // pool: data waits, the pool runs dry.
                held_buffers += (*bundle)->buffers();
                held.push_back(std::move(**bundle));
                if (held_buffers >= pool.count() - 1) {
                    held_buffers = 0;
                    for (const auto& b : held)
                        for (std::span<const std::byte> part : b)
                            got.insert(got.end(), part.begin(), part.end());
                    held.clear();
                    co_await coil::yield();
                }
            }
            for (const auto& b : held)
                for (std::span<const std::byte> part : b)
                    got.insert(got.end(), part.begin(), part.end());
        }
        co_await s;
        CHECK(pool.lent() == 0);
        CHECK(pool.available() == pool.count());
        co_return got;
    };
    auto got = ex.run(body());
    CHECK(got.size() == payload.size());
    CHECK(got == payload);
    CHECK(bundles > 0);
    CHECK(ran_dry); // every buffer was in use, and the receive went on once they came back
    if (coil_test::recv_bundles_supported())
        CHECK(multi_buffer_bundles > 0);
    else
        CHECK(multi_buffer_bundles == 0);
}

TEST_CASE("net: send_all(bundle) forwards every bundle whole through a socket whose send "
          "buffer is far smaller than a bundle",
          "[net][receive][buffer_pool][bundle]")
{
    auto server = net::listener::bind(net::address::loopback_v4(0));
    REQUIRE(server);
    const auto at = *server->local_address();
    const std::vector<std::byte> payload = coil_test::pattern(1 << 20);
    coil::executor ex(coil_test::executor_options());
    auto body = [&]() -> coil::task<std::vector<std::byte>> {
        net::buffer_pool pool(ex, 32, 16 * 1024);
        // source -> middle: the bundles; middle -> sink: each bundle sent whole, through a
        // 4 KiB send buffer, so sendmsg comes back short and the rest is queued again.
        auto source = co_await net::stream_socket::connect(at);
        REQUIRE(source);
        auto middle_in = co_await server->accept();
        REQUIRE(middle_in);
        auto middle_out = co_await net::stream_socket::connect(at);
        REQUIRE(middle_out);
        auto sink = co_await server->accept();
        REQUIRE(sink);
        const int small = 4096;
        REQUIRE(::setsockopt(middle_out->fd(), SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)) == 0);

        auto send_source = [&]() -> coil::task<void> {
            auto sent = co_await source->send_all(payload);
            REQUIRE(sent.ok());
            (void)co_await source->shutdown();
        };
        auto forward = [&]() -> coil::task<std::size_t> {
            std::size_t multi = 0;
            auto in = middle_in->receive_bundles(pool);
            while (auto bundle = co_await in.next()) {
                REQUIRE(bundle->ok());
                if ((*bundle)->empty())
                    break;
                multi += (*bundle)->buffers() > 1 ? 1 : 0;
                auto sent = co_await middle_out->send_all(**bundle);
                REQUIRE(sent.ok());
            }
            (void)co_await middle_out->shutdown();
            co_return multi;
        };
        auto s = ex.spawn(send_source());
        auto f = ex.spawn(forward());
        std::vector<std::byte> got;
        std::array<std::byte, 8192> chunk;
        for (;;) {
            auto n = co_await sink->receive(chunk);
            REQUIRE(n);
            if (*n == 0)
                break;
            got.insert(got.end(), chunk.begin(), chunk.begin() + static_cast<std::ptrdiff_t>(*n));
            if (got.size() % (64 * 1024) < *n)
                (void)co_await coil::sleep_for(std::chrono::milliseconds(1)); // a slow reader
        }
        co_await s;
        const std::size_t multi = co_await f;
        if (coil_test::recv_bundles_supported())
            CHECK(multi > 0);
        CHECK(pool.lent() == 0);
        co_return got;
    };
    auto got = ex.run(body());
    CHECK(got.size() == payload.size());
    CHECK(got == payload);
}

TEST_CASE("net: receive_bundles over an incremental pool ends with invalid_argument",
          "[net][receive][buffer_pool][bundle]")
{
    if (!coil_test::incremental_buffers_supported())
        SKIP("this kernel has no incremental buffer consumption (Linux 6.12)");
    auto server = net::listener::bind(net::address::loopback_v4(0));
    REQUIRE(server);
    const auto at = *server->local_address();
    coil::executor ex(coil_test::executor_options());
    auto body = [&]() -> coil::task<std::error_code> {
        net::buffer_pool pool(ex, 4, 4096, net::buffer_pool_options{.incremental = true});
        auto c = co_await net::stream_socket::connect(at);
        REQUIRE(c);
        auto conn = co_await server->accept();
        REQUIRE(conn);
        auto in = conn->receive_bundles(pool);
        auto first = co_await in.next();
        REQUIRE(first.has_value());
        REQUIRE_FALSE(first->ok());
        const std::error_code error = first->error();
        auto after = co_await in.next();
        CHECK_FALSE(after.has_value());
        co_return error;
    };
    CHECK(ex.run(body()) == std::errc::invalid_argument);
}

TEST_CASE("net: close() cancels a receive pending on the socket", "[net][socket][cancel]")
{
    auto server = net::listener::bind(net::address::loopback_v4(0));
    REQUIRE(server);
    const auto at = *server->local_address();
    coil::executor ex(coil_test::executor_options());
    auto body = [&]() -> coil::task<std::error_code> {
        auto c = co_await net::stream_socket::connect(at);
        REQUIRE(c);
        auto peer = co_await server->accept();
        REQUIRE(peer);
        auto reader = [](net::stream_socket& s) -> coil::task<std::error_code> {
            std::array<std::byte, 16> b;
            auto n = co_await s.receive(b);
            co_return n ? std::error_code() : n.error();
        };
        auto r = ex.spawn(reader(*c));
        co_await coil::yield();
        co_await coil::yield();
        REQUIRE(ex.in_flight() == 1);
        auto closed = co_await c->close();
        REQUIRE(closed.ok());
        co_return co_await r;
    };
    CHECK(is_canceled(ex.run(body())));
    CHECK(ex.in_flight() == 0);
}

TEST_CASE("net: listener::close() ends a pending accept or connections() stream with "
          "invalid_argument, and the port refuses new connections",
          "[net][accept][cancel]")
{
    const bool as_stream = GENERATE(false, true);
    CAPTURE(as_stream);
    auto server = net::listener::bind(net::address::loopback_v4(0));
    REQUIRE(server);
    const auto at = *server->local_address();
    coil::executor ex(coil_test::executor_options());
    auto body = [&]() -> coil::task<std::vector<std::error_code>> {
        // The deadline only keeps a regression from hanging: close() must end the accept first.
        auto accept_once = [](net::listener& l) -> coil::task<std::error_code> {
            auto c = co_await l.accept().with_timeout(std::chrono::seconds(5));
            co_return c ? std::error_code() : c.error();
        };
        auto accept_stream = [](net::listener& l) -> coil::task<std::error_code> {
            auto connections = l.connections();
            std::error_code last;
            while (auto c = co_await connections.next().with_timeout(std::chrono::seconds(5))) {
                if (!*c) {
                    last = c->error();
                    if (last == std::errc::timed_out)
                        break;
                }
            }
            co_return last;
        };
        auto acceptor = ex.spawn(as_stream ? accept_stream(*server) : accept_once(*server));
        co_await coil::yield();
        co_await coil::yield();
        REQUIRE(ex.in_flight() == 1);
        server->close();
        CHECK_FALSE(server->is_open());
        std::vector<std::error_code> errors;
        errors.push_back(co_await std::move(acceptor));
        auto late = co_await net::stream_socket::connect(at);
        errors.push_back(late ? std::error_code() : late.error());
        co_return errors;
    };
    const auto errors = ex.run(body());
    REQUIRE(errors.size() == 2);
    CHECK(errors[0] == std::errc::invalid_argument);
    CHECK(errors[1] == std::errc::connection_refused);
    CHECK(ex.in_flight() == 0);
}

TEST_CASE("net: a connections() stream paused when its listener closes ends with invalid_argument "
          "and never accepts on the descriptor number again",
          "[net][accept][cancel]")
{
    const bool by_close = GENERATE(true, false);
    CAPTURE(by_close);
    auto bound = net::listener::bind(net::address::loopback_v4(0));
    REQUIRE(bound);
    std::optional<net::listener> first(std::move(*bound));
    const auto first_at = *first->local_address();
    const int number = first->fd();
    coil::executor ex(coil_test::executor_options());
    auto body = [&]() -> coil::task<void> {
        // Bound 1: the stream pauses (cancels its accept) after each connection and re-arms
        // at the next next().
        auto connections = first->connections({.bound = 1});
        auto client = co_await net::stream_socket::connect(first_at);
        REQUIRE(client);
        auto accepted = co_await connections.next();
        REQUIRE((accepted && accepted->ok()));
        (void)co_await coil::sleep_for(std::chrono::milliseconds(5)); // the pause completes
        if (by_close)
            first->close();
        else
            first.reset();
        // The next socket takes the lowest free number: the one the stream still holds.
        auto second = net::listener::bind(net::address::loopback_v4(0));
        REQUIRE(second);
        REQUIRE(second->fd() == number);
        auto other = co_await net::stream_socket::connect(*second->local_address());
        REQUIRE(other);
        auto after = co_await connections.next();
        REQUIRE(after);
        REQUIRE_FALSE(after->ok());
        CHECK(after->error() == std::errc::invalid_argument);
        CHECK_FALSE(co_await connections.next());
        // The second listener's connection is still in its backlog, for its owner.
        auto theirs = co_await second->accept().with_timeout(std::chrono::seconds(5));
        CHECK(theirs);
    };
    ex.run(body());
    CHECK(ex.in_flight() == 0);
}

TEST_CASE("net: listener::close() resets the connections still in its backlog", "[net][accept]")
{
    auto server = net::listener::bind(net::address::loopback_v4(0));
    REQUIRE(server);
    const auto at = *server->local_address();
    coil::executor ex(coil_test::executor_options());
    auto body = [&]() -> coil::task<std::error_code> {
        auto waiting = co_await net::stream_socket::connect(at); // queued, never accepted
        REQUIRE(waiting);
        server->close();
        std::array<std::byte, 8> b;
        auto n = co_await waiting->receive(b);
        co_return n ? std::error_code() : n.error();
    };
    CHECK(ex.run(body()) == std::errc::connection_reset);
}

TEST_CASE("net: a peer that resets mid-stream ends only its own connection", "[net][socket]")
{
    auto server = net::listener::bind(net::address::loopback_v4(0));
    REQUIRE(server);
    const auto at = *server->local_address();
    coil::executor ex(coil_test::executor_options());
    auto body = [&]() -> coil::task<std::pair<std::error_code, std::string>> {
        auto rude = co_await net::stream_socket::connect(at);
        auto polite = co_await net::stream_socket::connect(at);
        REQUIRE(rude);
        REQUIRE(polite);
        auto a = co_await server->accept();
        auto b = co_await server->accept();
        REQUIRE(a);
        REQUIRE(b);
        auto sent_partial = co_await rude->send_all(bytes_of("partial"));
        REQUIRE(sent_partial.ok());
        // Reset: SO_LINGER with a zero timeout makes close send RST.
        ::linger lg{1, 0};
        REQUIRE(::setsockopt(rude->fd(), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) == 0);
        rude = net::stream_socket();
        std::error_code reset;
        std::array<std::byte, 64> buffer;
        for (;;) {
            auto n = co_await a->receive(buffer);
            if (!n) {
                reset = n.error();
                break;
            }
            if (*n == 0)
                break;
        }
        auto sent_rest = co_await polite->send_all(bytes_of("still here"));
        REQUIRE(sent_rest.ok());
        auto shut_polite = co_await polite->shutdown();
        REQUIRE(shut_polite.ok());
        auto rest = co_await read_until_eof(*b);
        co_return std::pair{reset, rest ? *rest : std::string()};
    };
    auto [reset, rest] = ex.run(body());
    CHECK(reset == std::errc::connection_reset);
    CHECK(rest == "still here");
}

TEST_CASE("net: connections accepted for nobody are closed, and the peers see them end",
          "[net][accept][lifetime]")
{
    auto server = net::listener::bind(net::address::loopback_v4(0));
    REQUIRE(server);
    const auto at = *server->local_address();
    coil::executor ex(coil_test::executor_options());
    auto body = [&]() -> coil::task<int> {
        std::vector<net::stream_socket> clients;
        {
            auto connections = server->connections();
            auto c0 = co_await net::stream_socket::connect(at);
            REQUIRE(c0);
            auto first = co_await connections.next(); // armed; one connection taken
            REQUIRE(first);
            REQUIRE(first->ok());
            for (int i = 0; i < 5; ++i) {
                auto c = co_await net::stream_socket::connect(at);
                REQUIRE(c);
                clients.push_back(std::move(*c));
            }
            co_await coil::yield();
            co_await coil::yield();
        } // destroyed with accepted connections buffered: they must be closed
        int ended = 0;
        for (auto& c : clients) {
            std::array<std::byte, 8> b;
            auto n = co_await c.receive(b);
            ended += (n && *n == 0) || (!n && n.error() == std::errc::connection_reset) ? 1 : 0;
        }
        co_return ended;
    };
    CHECK(ex.run(body()) == 5);
}

TEST_CASE("net: connections a connections() stream holds or accepts when the executor stops are "
          "closed: the peers see them end and no descriptor is left open",
          "[net][accept][lifetime]")
{
    auto server = net::listener::bind(net::address::loopback_v4(0));
    REQUIRE(server);
    const auto at = *server->local_address();
    // Plain blocking clients, queued in the listener's backlog before the executor starts.
    std::vector<coil_test::unique_fd> clients;
    for (int i = 0; i < 8; ++i) {
        coil_test::unique_fd c(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        REQUIRE(c.get() >= 0);
        REQUIRE(::connect(c.get(), at.data(), at.size()) == 0);
        const timeval five{5, 0}; // a regression fails the receive below instead of hanging
        REQUIRE(::setsockopt(c.get(), SOL_SOCKET, SO_RCVTIMEO, &five, sizeof five) == 0);
        clients.push_back(std::move(c));
    }
    const std::size_t before = coil_test::open_descriptors();
    std::uint64_t closed_by_runtime = 0;
    {
        coil::executor ex(coil_test::executor_options());
        auto acceptor = [&]() -> coil::task<void> {
            auto connections = server->connections();
            auto first = co_await connections.next(); // one taken and kept here
            REQUIRE((first && first->ok()));
            net::stream_socket kept = std::move(**first);
            (void)co_await coil::sleep_for(std::chrono::hours(1)); // the rest pile up
        };
        auto body = [&]() -> coil::task<void> {
            auto handle = ex.spawn(acceptor());
            (void)co_await coil::sleep_for(std::chrono::milliseconds(20));
            ex.stop();
            co_await handle;
        };
        CHECK_THROWS_AS(ex.run(body()), std::system_error);
        closed_by_runtime = ex.stats().orphans_closed;
    }
    CHECK(coil_test::open_descriptors() == before);
    int ended = 0;
    for (auto& c : clients) {
        char b[8];
        const ::ssize_t n = ::recv(c.get(), b, sizeof b, 0);
        ended += n == 0 || (n < 0 && errno == ECONNRESET) ? 1 : 0;
    }
    CHECK(ended == 8);
    INFO("closed as orphans: " << closed_by_runtime);
}

TEST_CASE("net: accepting at the descriptor limit delivers EMFILE and the listener keeps serving",
          "[net][accept][limits]")
{
    auto server = net::listener::bind(net::address::loopback_v4(0));
    REQUIRE(server);
    const auto at = *server->local_address();
    rlimit original{};
    REQUIRE(::getrlimit(RLIMIT_NOFILE, &original) == 0);
    coil::executor ex(coil_test::executor_options());
    auto body = [&]() -> coil::task<std::pair<bool, bool>> {
        auto connections = server->connections();
        // Connect first (the client's socket needs a descriptor), then lower the limit so
        // that accepting it has none.
        auto c1 = co_await net::stream_socket::connect(at);
        REQUIRE(c1);
        const int probe = ::dup(0);
        REQUIRE(probe >= 0);
        ::close(probe);
        rlimit tight = original;
        tight.rlim_cur = static_cast<rlim_t>(probe); // every descriptor from `probe` up refused
        REQUIRE(::setrlimit(RLIMIT_NOFILE, &tight) == 0);
        auto refused = co_await connections.next();
        REQUIRE(::setrlimit(RLIMIT_NOFILE, &original) == 0);
        REQUIRE(refused.has_value());
        const bool saw_emfile = !refused->ok() && refused->error() == std::errc::too_many_files_open;
        // The stream goes on: the next connection (and the waiting one) are accepted.
        auto c2 = co_await net::stream_socket::connect(at);
        REQUIRE(c2);
        auto next = co_await connections.next();
        const bool served = next.has_value() && next->ok();
        co_return std::pair{saw_emfile, served};
    };
    auto [saw_emfile, served] = ex.run(body());
    ::setrlimit(RLIMIT_NOFILE, &original);
    CHECK(saw_emfile);
    CHECK(served);
}

TEST_CASE("net: stream_socket::cancel ends a pending receive and leaves the socket usable",
          "[net][socket][cancel]")
{
    auto server = net::listener::bind(net::address::loopback_v4(0));
    REQUIRE(server);
    const auto at = *server->local_address();
    coil::executor ex(coil_test::executor_options());
    auto body = [&]() -> coil::task<std::pair<std::error_code, std::string>> {
        auto c = co_await net::stream_socket::connect(at);
        REQUIRE(c);
        auto peer = co_await server->accept();
        REQUIRE(peer);
        auto reader = [](net::stream_socket& s) -> coil::task<std::error_code> {
            std::array<std::byte, 16> b;
            auto n = co_await s.receive(b);
            co_return n ? std::error_code() : n.error();
        };
        auto r = ex.spawn(reader(*c));
        co_await coil::yield();
        co_await coil::yield();
        auto found = co_await c->cancel();
        REQUIRE(found);
        CHECK(*found == 1);
        const std::error_code canceled = co_await r;
        auto sent = co_await peer->send_all(bytes_of("after"));
        REQUIRE(sent);
        std::array<std::byte, 16> b;
        auto n = co_await c->receive(b);
        REQUIRE(n);
        server->close();
        CHECK_FALSE(server->is_open());
        co_return std::pair{canceled, std::string(reinterpret_cast<const char*>(b.data()), *n)};
    };
    auto [canceled, after] = ex.run(body());
    CHECK(is_canceled(canceled));
    CHECK(after == "after");
}

namespace {

// A connected TCP pair on loopback: {client, the accepted peer}.
coil::task<std::pair<net::stream_socket, net::stream_socket>> tcp_pair(net::listener& server)
{
    auto c = co_await net::stream_socket::connect(*server.local_address());
    REQUIRE(c);
    auto peer = co_await server.accept();
    REQUIRE(peer);
    co_return std::pair{std::move(*c), std::move(*peer)};
}

} // namespace

TEST_CASE("net: send_all of 16 MiB to a peer that reads late takes several sends and arrives "
          "whole, in order",
          "[net][socket][send_all]")
{
    auto server = net::listener::bind(net::address::loopback_v4(0));
    REQUIRE(server);
    const std::vector<std::byte> payload = coil_test::pattern(16 << 20);
    coil::executor ex;
    std::uint64_t sends_queued = 0;
    auto body = [&]() -> coil::task<std::tuple<bool, std::string, std::uint64_t>> {
        auto [c, peer] = co_await tcp_pair(*server);
        auto sender = [&](net::stream_socket& s) -> coil::task<coil::result<void>> {
            const std::uint64_t started = ex.stats().ops_started;
            auto sent = co_await s.send_all(payload);
            if (sent) {
                auto shut = co_await s.shutdown();
                REQUIRE(shut);
            }
            sends_queued = ex.stats().ops_started - started;
            co_return sent;
        };
        auto sending = ex.spawn(sender(c));
        // The socket buffers fill long before 16 MiB: the first send comes back short.
        for (int i = 0; i < 20; ++i)
            co_await coil::yield();
        auto got = co_await read_until_eof(peer);
        REQUIRE(got);
        const coil::result<void> sent = co_await sending;
        co_return std::tuple{static_cast<bool>(sent), *got, sends_queued};
    };
    auto [sent, got, sends] = ex.run(body());
    CHECK(sent);
    REQUIRE(got.size() == payload.size());
    CHECK(std::memcmp(got.data(), payload.data(), payload.size()) == 0);
    // One co_await, more than one SQE: the rest was queued again after each short send (the
    // shutdown is one more op).
    CHECK(sends > 2);
}

TEST_CASE("net: send_all to a peer that reads nothing ends with timed_out at its deadline, and "
          "a stop request ends it with operation_canceled",
          "[net][socket][send_all][cancel]")
{
    auto server = net::listener::bind(net::address::loopback_v4(0));
    REQUIRE(server);
    const std::vector<std::byte> payload = coil_test::pattern(64 << 20); // more than any buffer
    coil::executor ex;
    auto body = [&]() -> coil::task<std::pair<std::error_code, std::error_code>> {
        auto [c, peer] = co_await tcp_pair(*server);
        auto timed = co_await c.send_all(payload).with_timeout(std::chrono::milliseconds(100));
        REQUIRE_FALSE(timed);
        const std::error_code timeout_error = timed.error();

        // Not a structured binding: clang 14 cannot capture one in a lambda.
        std::pair<net::stream_socket, net::stream_socket> second = co_await tcp_pair(*server);
        std::stop_source stop;
        auto sender = [&]() -> coil::task<std::error_code> {
            auto sent = co_await second.first.send_all(payload);
            co_return sent ? std::error_code() : sent.error();
        };
        auto sending = ex.spawn(coil::with_stop_token(stop.get_token(), sender()));
        (void)co_await coil::sleep_for(std::chrono::milliseconds(20));
        stop.request_stop();
        const std::error_code cancel_error = co_await sending;
        co_return std::pair{timeout_error, cancel_error};
    };
    auto [timeout_error, cancel_error] = ex.run(body());
    CHECK(timeout_error == std::errc::timed_out);
    CHECK(is_canceled(cancel_error));
}

TEST_CASE("net: a receive stream's next() with a deadline yields timed_out and the stream goes "
          "on: later data still arrives, in order",
          "[net][socket][stream][timeout]")
{
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
    net::stream_socket a(fds[0]);
    net::stream_socket b(fds[1]);
    coil::executor ex;
    struct seen {
        std::error_code first;      // nothing sent yet: the deadline passes
        std::string second;         // sent before this wait's deadline
        std::error_code third;      // nothing again
        std::string fourth;         // sent while nobody waited: buffered, then delivered
        std::uint64_t timers_fired; // across the waits that got data: no deadline fired
        std::size_t arms;           // the receive was armed once for all of it
    };
    auto body = [&]() -> coil::task<seen> {
        net::buffer_pool pool(ex, 8, 1024);
        auto chunks = b.receive(pool);
        auto text = [](const coil::result<net::received_buffer>& r) {
            return std::string(reinterpret_cast<const char*>((*r).bytes().data()),
                               (*r).bytes().size());
        };
        seen out{};
        auto first = co_await chunks.next().with_timeout(std::chrono::milliseconds(30));
        REQUIRE(first);
        REQUIRE_FALSE(*first);
        out.first = first->error();

        auto sender = [&]() -> coil::task<void> {
            (void)co_await coil::sleep_for(std::chrono::milliseconds(5));
            auto sent = co_await a.send_all(bytes_of("hello"));
            REQUIRE(sent);
        };
        auto sending = ex.spawn(sender());
        const std::uint64_t fired_before = ex.stats().timers_fired;
        auto second = co_await chunks.next().with_timeout(std::chrono::seconds(10));
        co_await sending;
        REQUIRE(second);
        REQUIRE(*second);
        out.second = text(*second);
        out.timers_fired = ex.stats().timers_fired - fired_before - 1; // the sender's sleep

        auto third = co_await chunks.next().with_timeout(std::chrono::milliseconds(10));
        REQUIRE(third);
        REQUIRE_FALSE(*third);
        out.third = third->error();

        auto sent = co_await a.send_all(bytes_of("later"));
        REQUIRE(sent);
        auto fourth = co_await chunks.next().with_timeout(std::chrono::seconds(10));
        REQUIRE(fourth);
        REQUIRE(*fourth);
        out.fourth = text(*fourth);
        out.arms = chunks.arms();
        co_return out;
    };
    const seen s = ex.run(body());
    CHECK(s.first == std::errc::timed_out);
    CHECK(s.second == "hello");
    CHECK(s.timers_fired == 0);
    CHECK(s.third == std::errc::timed_out);
    CHECK(s.fourth == "later");
    CHECK(s.arms == 1);
}

TEST_CASE("net: destroying a buffer pool while a receive stream over it exists stops the "
          "program with a message",
          "[net][pool][lifetime]")
{
    // In a child: the stream would otherwise re-arm on the freed pool when data arrives.
    int pair[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
    auto errors = coil_test::make_pipe();
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        ::dup2(errors.write_end.get(), STDERR_FILENO);
        coil::executor ex(coil_test::executor_options());
        auto pool = std::make_unique<net::buffer_pool>(ex, 8, 4096);
        net::stream_socket conn(pair[0]);
        auto chunks = conn.receive(*pool);
        pool.reset(); // must not return
        ::_exit(0);
    }
    ::close(pair[0]);
    ::close(pair[1]);
    errors.write_end.reset();
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    const std::string said = coil_test::read_to_end(errors.read_end.get());
    CHECK(WIFSIGNALED(status));
    CHECK_THAT(said, ContainsSubstring("receive stream(s) over it"));
}

TEST_CASE("net: destroying a buffer pool under a bundle or datagram stream, or with a "
          "received_buffer still held, stops the program with a message",
          "[net][pool][lifetime]")
{
    // The children (each a fork of this process) receive on `own` and write on `peer`.
    int pair[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
    const coil_test::unique_fd own(pair[0]), peer(pair[1]);
    SECTION("an unarmed receive_bundles stream")
    {
        const std::string said = coil_test::stopped_with([&] {
            coil::executor ex(coil_test::executor_options());
            auto pool = std::make_unique<net::buffer_pool>(ex, 4, 4096);
            net::stream_socket conn(own.get());
            auto bundles = conn.receive_bundles(*pool);
            pool.reset(); // must not return
        });
        CHECK_THAT(said, ContainsSubstring("receive stream(s) over it"));
    }
    SECTION("an unarmed receive_datagrams stream")
    {
        const std::string said = coil_test::stopped_with([] {
            coil::executor ex(coil_test::executor_options());
            auto pool = std::make_unique<net::buffer_pool>(ex, 4, 4096);
            auto socket = net::datagram_socket::bind(net::address::loopback_v4(0));
            if (!socket)
                return;
            auto datagrams = socket->receive_datagrams(*pool);
            pool.reset(); // must not return
        });
        CHECK_THAT(said, ContainsSubstring("receive stream(s) over it"));
    }
    SECTION("a received_buffer held after its stream is gone")
    {
        const std::string said = coil_test::stopped_with([&] {
            coil::executor ex(coil_test::executor_options());
            auto pool = std::make_unique<net::buffer_pool>(ex, 4, 4096);
            net::stream_socket conn(own.get());
            if (::write(peer.get(), "hello", 5) != 5)
                return;
            net::received_buffer held;
            auto take_one = [&]() -> coil::task<void> {
                auto chunks = conn.receive(*pool);
                auto chunk = co_await chunks.next();
                if (chunk && chunk->ok())
                    held = std::move(**chunk);
            };
            ex.run(take_one());
            if (held.size() != 5)
                return;
            pool.reset(); // must not return
        });
        CHECK_THAT(said, ContainsSubstring("destroyed with 1 buffer(s) still lent out as "
                                           "received_buffer"));
    }
}

TEST_CASE("net: sending to a peer that is gone gives broken_pipe and never raises SIGPIPE, even "
          "with SIGPIPE at its default action",
          "[net][send]")
{
    // In a child, so that the default action (which kills the process) is really in force.
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        ::signal(SIGPIPE, SIG_DFL);
        int pair[2];
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0)
            ::_exit(10);
        ::close(pair[1]);
        coil::executor ex(coil_test::executor_options());
        auto body = [&]() -> coil::task<int> {
            net::stream_socket conn(pair[0]);
            const std::string text = "into the void";
            auto one = co_await conn.send(std::as_bytes(std::span(text)));
            auto all = co_await conn.send_all(std::as_bytes(std::span(text)));
            const bool broken = !one && one.error() == std::errc::broken_pipe && !all &&
                                all.error() == std::errc::broken_pipe;
            co_return broken ? 0 : 11;
        };
        ::_exit(ex.run(body()));
    }
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    CHECK_FALSE(WIFSIGNALED(status)); // not killed by SIGPIPE
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("net: zero-copy sends and sends of receive bundles to a peer that is gone give an error "
          "and never raise SIGPIPE either",
          "[net][send]")
{
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        ::signal(SIGPIPE, SIG_DFL);
        coil::executor ex(coil_test::executor_options());
        auto body = [&]() -> coil::task<int> {
            auto server = net::listener::bind(net::address::loopback_v4(0));
            if (!server)
                co_return 10;
            auto client = co_await net::stream_socket::connect(*server->local_address());
            auto conn = co_await server->accept();
            if (!client || !conn)
                co_return 11;
            net::buffer_pool pool(ex, 4, 64);
            auto bundles = conn->receive_bundles(pool);
            auto sent = co_await client->send_all(coil_test::bytes_of("abc"));
            auto bundle = co_await bundles.next();
            if (!sent || !bundle || !bundle->ok())
                co_return 12;
            (void)co_await client->close(); // the peer is gone: its RST answers the next send
            // Each kind of send, until it fails with broken_pipe (the first send after the
            // peer's close may still be taken).
            const bool zero_copy = ex.ring().supports(coil::io::opcode::send_zc);
            const std::string text = "into the void";
            int kinds_failed = 0;
            for (int kind = zero_copy ? 0 : 1; kind < 2; ++kind) {
                for (int attempt = 0; attempt < 100; ++attempt) {
                    coil::result<void> r;
                    if (kind == 0) {
                        auto n = co_await conn->send_zero_copy(std::as_bytes(std::span(text)));
                        r = n ? coil::result<void>() : coil::result<void>(n.error());
                    } else {
                        r = co_await conn->send_all(**bundle);
                    }
                    // The peer's RST is reported once (connection_reset); every send after
                    // it fails with EPIPE, which raises SIGPIPE unless MSG_NOSIGNAL is set.
                    if (!r && r.error() == std::errc::broken_pipe) {
                        ++kinds_failed;
                        break;
                    }
                    if (!r && r.error() != std::errc::connection_reset)
                        co_return 13;
                    (void)co_await coil::sleep_for(std::chrono::milliseconds(1));
                }
            }
            co_return kinds_failed == (zero_copy ? 2 : 1) ? 0 : 14;
        };
        ::_exit(ex.run(body()));
    }
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    CHECK_FALSE(WIFSIGNALED(status)); // not killed by SIGPIPE
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("net: a receive over another executor's buffer pool is refused, never fed from the "
          "wrong pool",
          "[net][pool][misuse]")
{
    // Both pools get group id 0 in their own rings: a receive on executor B over A's pool
    // would take B's buffer and hand out A's buffer of the same id (zeros).
    int pair[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
    net::stream_socket mine(pair[0]);
    net::stream_socket peer(pair[1]);
    coil::executor a(coil_test::executor_options());
    coil::executor b(coil_test::executor_options());
    net::buffer_pool pool_a(a, 8, 4096);
    net::buffer_pool pool_b(b, 8, 4096);
    REQUIRE(pool_a.group() == pool_b.group());

    // Made in a task of B: refused at once.
    auto make_on_b = [&]() -> coil::task<std::string> {
        try {
            auto chunks = mine.receive(pool_a);
        } catch (const std::logic_error& e) {
            co_return e.what();
        }
        co_return "";
    };
    CHECK_THAT(b.run(make_on_b()), ContainsSubstring("another executor"));

    // Made outside any task, first awaited on B: it ends with invalid_argument, and B's own
    // pool lends nothing.
    auto chunks = mine.receive(pool_a);
    REQUIRE(::write(pair[1], "hello", 5) == 5);
    auto await_on_b = [](net::receive_stream& s) -> coil::task<std::error_code> {
        auto first = co_await s.next();
        if (!first || first->ok())
            co_return std::error_code{};
        co_return first->error();
    };
    CHECK(b.run(await_on_b(chunks)) == std::errc::invalid_argument);
    CHECK(pool_b.available() == pool_b.count());
    CHECK(pool_a.lent() == 0);

    // The pool's own executor receives the bytes, which were left in the socket.
    auto on_a = [&]() -> coil::task<std::string> {
        auto right = mine.receive(pool_a);
        auto got = co_await right.next();
        if (!got || !got->ok())
            co_return "";
        auto bytes = (*got)->bytes();
        co_return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    };
    CHECK(a.run(on_a()) == "hello");
}

TEST_CASE("net: a receive stream waiting for a buffer of a dry pool ends with operation_canceled "
          "on a stop request or stop(), and the pool is whole afterwards",
          "[net][receive][buffer_pool][cancel]")
{
    const bool by_token = GENERATE(true, false);
    CAPTURE(by_token);
    auto server = net::listener::bind(net::address::loopback_v4(0));
    REQUIRE(server);
    const auto at = *server->local_address();
    coil::executor ex(coil_test::executor_options());
    auto body = [&]() -> coil::task<void> {
        net::buffer_pool pool(ex, 1, 64); // one buffer: holding it leaves the pool dry
        auto client = co_await net::stream_socket::connect(at);
        REQUIRE(client);
        auto conn = co_await server->accept();
        REQUIRE(conn);
        const std::vector<std::byte> payload = coil_test::pattern(256);
        auto sent = co_await client->send_all(payload); // not inside REQUIRE: g++ 12 evaluates
        REQUIRE(sent.ok());                             // a co_await in it more than once

        std::stop_source stop;
        auto chunks = conn->receive(pool);
        std::optional<net::received_buffer> held;
        auto consumer = [&]() -> coil::task<std::error_code> {
            auto first = co_await chunks.next();
            REQUIRE(first);
            REQUIRE(first->ok());
            held.emplace(std::move(**first)); // the pool's only buffer
            // The rest of the payload is there, but no buffer is: the stream waits for one.
            auto second = co_await chunks.next();
            REQUIRE(second);
            REQUIRE_FALSE(second->ok());
            co_return second->error();
        };
        auto stopper = [&]() -> coil::task<void> {
            while (pool.exhaustions() == 0) // the stream asked the dry pool for a buffer
                (void)co_await coil::sleep_for(std::chrono::milliseconds(1));
            (void)co_await coil::sleep_for(std::chrono::milliseconds(5));
            if (by_token)
                stop.request_stop();
            else
                chunks.stop();
        };
        auto [error, stopped] = co_await coil::when_all(
            coil::with_stop_token(stop.get_token(), consumer()), stopper());
        (void)stopped;
        CHECK(error == std::errc::operation_canceled);
        CHECK(chunks.ended());
        held.reset();
        CHECK(pool.lent() == 0);
    };
    ex.run(body());
    CHECK(ex.in_flight() == 0);
}

TEST_CASE("net: closing a socket whose receive stream waits for a buffer ends the stream with "
          "operation_canceled, and the stream never receives on the descriptor number again",
          "[net][receive][buffer_pool][cancel]")
{
    // By close() or by destroying the socket; with the consumer waiting in next() (the stream
    // parked in the pool's queue) or not yet asking (the stream re-arms at its next next()).
    const bool by_close = GENERATE(true, false);
    const bool consumer_waits = GENERATE(true, false);
    CAPTURE(by_close, consumer_waits);
    coil::executor ex(coil_test::executor_options());
    auto body = [&]() -> coil::task<void> {
        net::buffer_pool pool(ex, 1, 64); // one buffer: holding it leaves the pool dry
        auto [socket, peer] = coil_test::connected_stream_pair();
        const int number = socket.fd();
        std::optional<net::stream_socket> conn(std::move(socket));
        auto chunks = conn->receive(pool);
        REQUIRE(::write(peer.get(), "first", 5) == 5);
        auto first = co_await chunks.next();
        REQUIRE((first && first->ok()));
        std::optional<net::received_buffer> held(std::move(**first)); // the only buffer
        REQUIRE(::write(peer.get(), "more", 4) == 4); // waits in the socket: no buffer
        while (pool.exhaustions() == 0)               // the receive found the pool dry
            (void)co_await coil::sleep_for(std::chrono::milliseconds(1));

        std::optional<std::error_code> outcome; // set when the consumer's next() returns
        auto consume = [&]() -> coil::task<void> {
            auto n = co_await chunks.next();
            if (!n)
                outcome = std::make_error_code(std::errc::no_message); // ended without error
            else if (!n->ok())
                outcome = n->error();
            else
                outcome = std::error_code(); // bytes: from whichever socket it armed on
        };
        std::optional<coil::join_handle<void>> consumer;
        if (consumer_waits) {
            consumer.emplace(ex.spawn(consume()));
            co_await coil::yield(); // in next(): parked in the pool's queue
            REQUIRE_FALSE(outcome.has_value());
        }
        if (by_close) {
            auto closed = co_await conn->close();
            REQUIRE(closed.ok());
        } else {
            conn.reset();
        }
        // The next socket takes the lowest free number: the one the stream still holds.
        int other[2];
        REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, other) == 0);
        coil_test::unique_fd other_a(other[0]);
        coil_test::unique_fd other_b(other[1]);
        const int reused = other[0] == number ? other[0] : other[1];
        REQUIRE(reused == number);
        const int reused_peer = reused == other[0] ? other[1] : other[0];
        REQUIRE(::write(reused_peer, "theirs", 6) == 6);
        if (consumer_waits) {
            co_await coil::yield();
            co_await coil::yield();
            CHECK(outcome.has_value()); // ended at the close, not when a buffer comes back
        }
        held.reset(); // the buffer comes back: a parked stream would arm now
        (void)co_await coil::sleep_for(std::chrono::milliseconds(5));
        if (consumer_waits)
            co_await *consumer;
        else
            co_await consume();
        REQUIRE(outcome.has_value());
        CHECK(*outcome == std::errc::operation_canceled);
        CHECK(chunks.ended());
        // The new socket's bytes are still there for its owner.
        char got[16];
        CHECK(::recv(reused, got, sizeof got, MSG_DONTWAIT) == 6);
        CHECK(pool.lent() == 0);
    };
    ex.run(body());
    CHECK(ex.in_flight() == 0);
}

TEST_CASE("net: a receive stream learns of its socket's close through moves of both, and not "
          "after release()",
          "[net][receive][buffer_pool][cancel]")
{
    coil::executor ex(coil_test::executor_options());
    auto body = [&]() -> coil::task<void> {
        net::buffer_pool pool(ex, 4, 64);
        {
            auto [a, peer] = coil_test::connected_stream_pair();
            auto made = a.receive(pool);
            net::stream_socket b(std::move(a)); // the socket moves (constructed)...
            net::stream_socket c;
            c = std::move(b);                   // ... and again (assigned)
            auto chunks = std::move(made);      // the stream moves before it starts
            auto closed = co_await c.close();
            REQUIRE(closed.ok());
            // Not armed on the closed descriptor (that would be bad_file_descriptor, or
            // another file's bytes): it ends as a receive pending at the close would.
            auto n = co_await chunks.next();
            REQUIRE(n);
            REQUIRE_FALSE(n->ok());
            CHECK(n->error() == std::errc::operation_canceled);
        }
        {
            // After release() the descriptor is the caller's: the stream goes on with it.
            auto [socket, peer] = coil_test::connected_stream_pair();
            std::optional<net::stream_socket> a(std::move(socket));
            auto chunks = a->receive(pool);
            coil_test::unique_fd mine(a->release());
            a.reset();
            REQUIRE(::write(peer.get(), "abc", 3) == 3);
            auto n = co_await chunks.next();
            REQUIRE((n && n->ok()));
            CHECK((*n)->bytes().size() == 3);
        }
    };
    ex.run(body());
    CHECK(ex.in_flight() == 0);
}

TEST_CASE("net: a buffer coming back to a dry pool re-arms every parked receive, not only the "
          "first, which may have no data waiting",
          "[net][receive][buffer_pool]")
{
    auto server = net::listener::bind(net::address::loopback_v4(0));
    REQUIRE(server);
    const auto at = *server->local_address();
    coil::executor ex(coil_test::executor_options());
    auto body = [&]() -> coil::task<std::string> {
        net::buffer_pool pool(ex, 1, 64); // one buffer
        auto client_a = co_await net::stream_socket::connect(at);
        auto conn_a = co_await server->accept();
        auto client_b = co_await net::stream_socket::connect(at);
        auto conn_b = co_await server->accept();
        REQUIRE((client_a && conn_a && client_b && conn_b));
        // A pauses after each completion (bound 1), so it re-arms only when its consumer asks.
        auto a = conn_a->receive(pool, {.bound = 1});
        auto b = conn_b->receive(pool);
        const std::vector<std::byte> hello = coil_test::pattern(10);
        auto sent_a = co_await client_a->send_all(hello);
        REQUIRE(sent_a.ok());
        auto first = co_await a.next(); // the pool's only buffer, held here
        REQUIRE((first && first->ok()));
        std::optional<net::received_buffer> held(std::move(**first));

        // A's consumer asks again: the pool is dry, so A parks, with no data waiting.
        std::optional<coil::result<net::received_buffer>> a_next;
        auto a_waits = [&]() -> coil::task<void> {
            auto n = co_await a.next().with_timeout(std::chrono::seconds(10));
            if (n)
                a_next.emplace(std::move(*n));
        };
        auto a_task = coil::executor::current()->spawn(a_waits());
        // A's paused op ends (its cancel completes) and the waiting consumer re-arms it:
        // parked, first in the pool's queue.
        (void)co_await coil::sleep_for(std::chrono::milliseconds(5));
        // B's consumer asks next: the pool is dry, so B parks second; then its peer sends, so
        // B has data waiting.
        auto b_first = [&]() -> coil::task<std::size_t> {
            auto n = co_await b.next().with_timeout(std::chrono::seconds(10));
            if (!n || !n->ok())
                co_return 0;
            const std::size_t size = (*n)->bytes().size();
            co_return size;
        };
        auto b_task = coil::executor::current()->spawn(b_first());
        co_await coil::yield(); // b_first runs up to its wait
        REQUIRE(pool.available() == 0);
        auto sent_b = co_await client_b->send_all(hello);
        REQUIRE(sent_b.ok());
        (void)co_await coil::sleep_for(std::chrono::milliseconds(5));

        held.reset(); // the buffer comes back: B must be armed again, not only A
        const std::size_t b_got = co_await b_task;
        (void)co_await client_a->shutdown(); // A's wait ends with the end of its stream
        co_await a_task;
        co_return b_got == hello.size() ? "b received" : "b got " + std::to_string(b_got);
    };
    CHECK(ex.run(body()) == "b received");
    CHECK(ex.in_flight() == 0);
}

TEST_CASE("net: a burst of receives larger than the kernel's share of a pool raises the pool's "
          "publish limit, and every connection is served",
          "[net][receive][buffer_pool]")
{
    auto server = net::listener::bind(net::address::loopback_v4(0));
    REQUIRE(server);
    const auto at = *server->local_address();
    coil::executor ex(coil_test::executor_options());
    constexpr std::size_t connections = 8;
    auto body = [&]() -> coil::task<std::size_t> {
        net::buffer_pool pool(ex, 16, 64, {.initial_publish_limit = 2});
        CHECK(pool.publish_limit() == 2);
        CHECK(pool.available() == 16); // two with the kernel, fourteen in reserve
        std::vector<net::stream_socket> clients, conns;
        for (std::size_t i = 0; i < connections; ++i) {
            auto c = co_await net::stream_socket::connect(at);
            auto s = co_await server->accept();
            REQUIRE((c && s));
            clients.push_back(std::move(*c));
            conns.push_back(std::move(*s));
        }
        // Data waits on every connection before the receives are armed, all in one
        // submission: the kernel has two buffers for eight receives. Each keeps its buffer
        // until all have arrived.
        for (std::size_t i = 0; i < connections; ++i) {
            auto sent = co_await clients[i].send_all(coil_test::pattern(32, i));
            REQUIRE(sent.ok());
        }
        std::vector<net::received_buffer> held;
        coil::event all_in;
        std::size_t right = 0;
        auto receive_one = [&](net::stream_socket& s, std::size_t i) -> coil::task<void> {
            auto chunks = s.receive(pool);
            auto chunk = co_await chunks.next().with_timeout(std::chrono::seconds(10));
            if (chunk && chunk->ok()) {
                const auto bytes = (*chunk)->bytes();
                right += std::vector<std::byte>(bytes.begin(), bytes.end()) == coil_test::pattern(32, i);
                held.push_back(std::move(**chunk));
            }
            if (held.size() == connections)
                all_in.set();
            else
                (void)co_await all_in.wait();
        };
        std::vector<coil::join_handle<void>> receivers;
        for (std::size_t i = 0; i < connections; ++i)
            receivers.push_back(ex.spawn(receive_one(conns[i], i)));
        std::stop_source guard_stop;
        auto guard_task = [&]() -> coil::task<void> {
            auto slept = co_await coil::sleep_for(std::chrono::seconds(10));
            if (slept.ok())
                all_in.set(); // a receiver that timed out left the rest waiting: let them end
        };
        auto guard = ex.spawn(coil::with_stop_token(guard_stop.get_token(), guard_task()));
        for (auto& r : receivers)
            co_await std::move(r);
        CHECK(held.size() == connections);
        CHECK(pool.publish_limit() >= connections);
        CHECK(pool.exhaustions() >= 1);
        held.clear();
        CHECK(pool.available() == 16);
        guard_stop.request_stop();
        co_await std::move(guard);
        co_return right;
    };
    CHECK(ex.run(body()) == connections);
    CHECK(ex.in_flight() == 0);
}

TEST_CASE("net: listeners set SO_REUSEADDR by default, so a restarted server rebinds a port whose "
          "connections wait in TIME_WAIT; reuse_address = false does not",
          "[net][socket]")
{
    coil::executor ex(coil_test::executor_options());
    auto first = net::listener::bind(net::address::loopback_v4(0));
    REQUIRE(first);
    const auto at = *first->local_address();
    int reuse = 0;
    ::socklen_t size = sizeof reuse;
    REQUIRE(::getsockopt(first->fd(), SOL_SOCKET, SO_REUSEADDR, &reuse, &size) == 0);
    CHECK(reuse != 0);
    auto body = [&]() -> coil::task<void> {
        auto client = co_await net::stream_socket::connect(at);
        REQUIRE(client);
        auto conn = co_await first->accept();
        REQUIRE(conn);
        // The server's side closes first: its end of the connection waits in TIME_WAIT.
        auto closed = co_await conn->close();
        REQUIRE(closed.ok());
        std::array<std::byte, 8> b;
        auto eof = co_await client->receive(b);
        REQUIRE((eof && *eof == 0));
        auto client_closed = co_await client->close();
        REQUIRE(client_closed.ok());
    };
    ex.run(body());
    first->close();
    auto strict = net::listener::bind(at, {.reuse_address = false});
    REQUIRE_FALSE(strict);
    CHECK(strict.error() == std::errc::address_in_use);
    auto restarted = net::listener::bind(at);
    REQUIRE(restarted);
    CHECK(restarted->local_address()->port() == at.port());
}

TEST_CASE("net: reuse_port lets several listeners share a port, and connections reach them; "
          "without it the second bind fails",
          "[net][socket]")
{
    auto first = net::listener::bind(net::address::loopback_v4(0), {.reuse_port = true});
    REQUIRE(first);
    const auto at = *first->local_address();
    auto plain = net::listener::bind(at);
    REQUIRE_FALSE(plain);
    CHECK(plain.error() == std::errc::address_in_use);
    auto second = net::listener::bind(at, {.reuse_port = true});
    REQUIRE(second);
    coil::executor ex(coil_test::executor_options());
    auto body = [&]() -> coil::task<std::size_t> {
        // The kernel spreads connections over the group by a hash of their addresses: with
        // 64 of them, each listener gets some (all on one: odds of 2^-63).
        std::vector<net::stream_socket> clients;
        for (int i = 0; i < 64; ++i) {
            auto c = co_await net::stream_socket::connect(at);
            REQUIRE(c);
            clients.push_back(std::move(*c));
        }
        std::size_t on_first = 0;
        std::size_t on_second = 0;
        auto drain = [](net::listener& l, std::size_t& count) {
            const int flags = ::fcntl(l.fd(), F_GETFL);
            ::fcntl(l.fd(), F_SETFL, flags | O_NONBLOCK);
            for (int fd; (fd = ::accept4(l.fd(), nullptr, nullptr, SOCK_CLOEXEC)) >= 0;) {
                ::close(fd);
                ++count;
            }
        };
        drain(*first, on_first);
        drain(*second, on_second);
        CHECK(on_first > 0);
        CHECK(on_second > 0);
        co_return on_first + on_second;
    };
    CHECK(ex.run(body()) == 64);
}

TEST_CASE("net: an abstract Unix address (unix:@NAME) listens, connects and carries bytes, and "
          "leaves no file behind",
          "[net][socket][unix]")
{
    const std::string name = "unix:@coil-test-" + std::to_string(::getpid()) + "-abstract";
    auto at = net::address::parse(name);
    REQUIRE(at);
    auto server = net::listener::bind(*at);
    REQUIRE(server);
    CHECK(server->local_address()->to_string() == name);
    auto again = net::listener::bind(*at); // the name is taken while the listener lives
    REQUIRE_FALSE(again);
    CHECK(again.error() == std::errc::address_in_use);
    coil::executor ex(coil_test::executor_options());
    auto body = [&]() -> coil::task<std::string> {
        auto client = co_await net::stream_socket::connect(*at);
        REQUIRE(client);
        auto conn = co_await server->accept();
        REQUIRE(conn);
        auto sent = co_await client->send_all(coil_test::bytes_of("over the abstract name"));
        REQUIRE(sent.ok());
        auto shut = co_await client->shutdown();
        REQUIRE(shut.ok());
        auto got = co_await read_until_eof(*conn);
        REQUIRE(got);
        co_return *got;
    };
    CHECK(ex.run(body()) == "over the abstract name");
    server->close();
    auto rebound = net::listener::bind(*at); // the name is free again: no file to remove
    CHECK(rebound);
}

TEST_CASE("net: a received_buffer assigned over, or release()d, goes back to its pool",
          "[net][receive][buffer_pool]")
{
    coil::executor ex(coil_test::executor_options());
    auto body = [&]() -> coil::task<void> {
        net::buffer_pool pool(ex, 2, 64);
        auto [conn, peer] = coil_test::connected_stream_pair();
        auto chunks = conn.receive(pool);
        REQUIRE(::write(peer.get(), "one", 3) == 3);
        auto a = co_await chunks.next();
        REQUIRE((a && a->ok()));
        REQUIRE(::write(peer.get(), "two", 3) == 3);
        auto b = co_await chunks.next();
        REQUIRE((b && b->ok()));
        net::received_buffer first = std::move(**a);
        net::received_buffer second = std::move(**b);
        CHECK(pool.lent() == 2);
        CHECK(pool.available() == 0);
        first = std::move(second); // the buffer "one" was in goes back
        CHECK(pool.lent() == 1);
        CHECK(pool.available() == 1);
        CHECK(std::string(reinterpret_cast<const char*>(first.bytes().data()),
                          first.bytes().size()) == "two");
        first.release();
        CHECK(first.bytes().empty());
        CHECK(pool.lent() == 0);
        CHECK(pool.available() == pool.count());
        first.release(); // twice: nothing more to give back
        CHECK(pool.available() == pool.count());
        // Both buffers serve receives again.
        REQUIRE(::write(peer.get(), "three", 5) == 5);
        auto c = co_await chunks.next();
        REQUIRE((c && c->ok()));
        CHECK((*c)->bytes().size() == 5);
    };
    ex.run(body());
    CHECK(ex.in_flight() == 0);
}

TEST_CASE("net: a multishot receive the kernel ends because the CQ overflowed is armed again, "
          "and every byte arrives in order",
          "[net][receive][buffer_pool][overflow]")
{
    // 8 KiB wait in the socket before the receive is armed, for 16-byte buffers: the kernel
    // posts a completion per buffer while it issues the receive, the ninth finds the CQ full,
    // and the kernel ends the multishot with that chunk (its completion, without `more`, kept
    // in the overflow list). The stream must take that chunk and arm again, many times over.
    const bool deferred = GENERATE(true, false);
    CAPTURE(deferred);
    coil::executor ex(coil_test::executor_options(coil_test::eight_entry_cq(deferred)));
    REQUIRE(ex.ring().cq_entries() <= 16);
    const std::vector<std::byte> payload = coil_test::pattern(8 * 1024);
    std::size_t arms = 0;
    auto body = [&]() -> coil::task<std::vector<std::byte>> {
        net::buffer_pool pool(ex, 64, 16);
        auto [socket, peer] = coil_test::connected_stream_pair();
        coil_test::write_fully(peer.get(), payload);
        REQUIRE(::shutdown(peer.get(), SHUT_WR) == 0);
        std::vector<std::byte> got;
        auto chunks = socket.receive(pool);
        while (auto chunk = co_await chunks.next()) {
            REQUIRE(chunk->ok());
            if ((*chunk)->empty())
                break; // the peer's shutdown, after every byte
            got.insert(got.end(), (*chunk)->bytes().begin(), (*chunk)->bytes().end());
        }
        arms = chunks.arms();
        CHECK(pool.lent() == 0);
        co_return got;
    };
    const auto got = ex.run(body());
    CHECK(got.size() == payload.size());
    CHECK(got == payload);
    CHECK(ex.ring().stats().cq_overflows > 0); // the CQ did overflow
    CHECK(arms > 1);                            // and the kernel's ends were armed again
    CHECK(ex.in_flight() == 0);
}

TEST_CASE("net: a multishot accept the kernel ends because the CQ overflowed is armed again, "
          "and every waiting connection is accepted once",
          "[net][accept][overflow]")
{
    // 40 connections wait in the backlog before the accept is armed: the kernel accepts them
    // all in one issue, a completion each, and ends the multishot at the one the CQ cannot
    // hold (that connection's descriptor travels in the overflowed final completion).
    const bool deferred = GENERATE(true, false);
    CAPTURE(deferred);
    constexpr int clients = 40;
    auto server = net::listener::bind(net::address::loopback_v4(0));
    REQUIRE(server);
    const auto at = *server->local_address();
    std::vector<coil_test::unique_fd> dialed;
    for (int i = 0; i < clients; ++i) {
        coil_test::unique_fd c(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        REQUIRE(c.get() >= 0);
        REQUIRE(::connect(c.get(), at.data(), at.size()) == 0); // completes into the backlog
        const auto id = static_cast<unsigned char>(i);
        REQUIRE(::write(c.get(), &id, 1) == 1);
        dialed.push_back(std::move(c));
    }
    coil::executor ex(coil_test::executor_options(coil_test::eight_entry_cq(deferred)));
    std::size_t arms = 0;
    auto body = [&]() -> coil::task<std::vector<int>> {
        std::vector<int> seen(clients, 0);
        auto connections = server->connections();
        for (int accepted = 0; accepted < clients; ++accepted) {
            auto conn = co_await connections.next();
            REQUIRE(conn.has_value());
            REQUIRE(conn->ok());
            unsigned char id = 0;
            auto n = co_await (*conn)->receive(std::as_writable_bytes(std::span(&id, 1)));
            REQUIRE(n.ok());
            REQUIRE(*n == 1);
            REQUIRE(id < clients);
            ++seen[id];
        }
        arms = connections.arms();
        co_return seen;
    };
    const auto seen = ex.run(body());
    CHECK(seen == std::vector<int>(clients, 1));
    CHECK(ex.ring().stats().cq_overflows > 0);
    CHECK(arms > 1);
    CHECK(ex.in_flight() == 0);
}

TEST_CASE("net: listener::close() stops a descriptor a forked process inherited from listening; "
          "destroying the listener leaves the child's copy listening",
          "[net][listener][fork]")
{
    const bool by_close = GENERATE(true, false);
    CAPTURE(by_close);
    auto bound = net::listener::bind(net::address::loopback_v4(0));
    REQUIRE(bound);
    std::optional<net::listener> server(std::move(*bound));
    const auto at = *server->local_address();
    const int inherited = server->fd();
    auto go = coil_test::make_pipe();
    auto report = coil_test::make_pipe();
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        // Holds its copy of the descriptor; after the parent acted, says whether it still
        // listens and, if so, accepts the parent's connection.
        char c = 0;
        if (::read(go.read_end.get(), &c, 1) != 1)
            ::_exit(2);
        const char listening = net::ops::still_listening(inherited) ? 'L' : 'N';
        if (::write(report.write_end.get(), &listening, 1) != 1)
            ::_exit(3);
        if (listening == 'L') {
            const int conn = ::accept4(inherited, nullptr, nullptr, SOCK_CLOEXEC);
            const char accepted = conn >= 0 ? 'A' : 'F';
            if (::write(report.write_end.get(), &accepted, 1) != 1)
                ::_exit(4);
        }
        ::_exit(0);
    }
    if (by_close)
        server->close();
    else
        server.reset();
    REQUIRE(::write(go.write_end.get(), "g", 1) == 1);
    char listening = 0;
    REQUIRE(::read(report.read_end.get(), &listening, 1) == 1);
    coil_test::unique_fd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(client.get() >= 0);
    const int connected = ::connect(client.get(), at.data(), at.size());
    const int connect_errno = errno;
    if (by_close) {
        CHECK(listening == 'N');
        CHECK(connected == -1);
        CHECK(connect_errno == ECONNREFUSED);
    } else {
        CHECK(listening == 'L');
        CHECK(connected == 0);
        char accepted = 0;
        REQUIRE(::read(report.read_end.get(), &accepted, 1) == 1);
        CHECK(accepted == 'A'); // the child's copy took the connection
    }
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("net: the sendmsg and recvmsg awaitables pass a descriptor (SCM_RIGHTS) with "
          "gathered bytes over a Unix socket",
          "[net][sendmsg][recvmsg]")
{
    int pair[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
    coil_test::unique_fd sender(pair[0]);
    coil_test::unique_fd receiver(pair[1]);
    auto pipe = coil_test::make_pipe();
    coil::executor ex(coil_test::executor_options());
    auto body = [&]() -> coil::task<int> {
        // Two pieces gathered into one message, with the pipe's write end attached.
        std::string first = "hello, ";
        std::string second = "descriptor";
        std::array<::iovec, 2> out{{{first.data(), first.size()}, {second.data(), second.size()}}};
        alignas(::cmsghdr) std::array<char, CMSG_SPACE(sizeof(int))> control_out{};
        ::msghdr sent{};
        sent.msg_iov = out.data();
        sent.msg_iovlen = out.size();
        sent.msg_control = control_out.data();
        sent.msg_controllen = control_out.size();
        ::cmsghdr* c = CMSG_FIRSTHDR(&sent);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        const int passed = pipe.write_end.get();
        std::memcpy(CMSG_DATA(c), &passed, sizeof passed);
        auto s = co_await net::sendmsg(sender.get(), &sent);
        REQUIRE(s.ok());
        CHECK(*s == first.size() + second.size());

        // Scattered into two buffers of other sizes.
        std::array<char, 4> head{};
        std::array<char, 32> tail{};
        std::array<::iovec, 2> in{{{head.data(), head.size()}, {tail.data(), tail.size()}}};
        alignas(::cmsghdr) std::array<char, CMSG_SPACE(sizeof(int))> control_in{};
        ::msghdr received{};
        received.msg_iov = in.data();
        received.msg_iovlen = in.size();
        received.msg_control = control_in.data();
        received.msg_controllen = control_in.size();
        auto r = co_await net::recvmsg(receiver.get(), &received, MSG_CMSG_CLOEXEC);
        REQUIRE(r.ok());
        REQUIRE(*r == first.size() + second.size());
        CHECK(std::string(head.data(), head.size()) + std::string(tail.data(), *r - head.size()) ==
              first + second);
        CHECK((received.msg_flags & MSG_CTRUNC) == 0);
        ::cmsghdr* got = CMSG_FIRSTHDR(&received);
        REQUIRE(got != nullptr);
        REQUIRE(got->cmsg_level == SOL_SOCKET);
        REQUIRE(got->cmsg_type == SCM_RIGHTS);
        int fd = -1;
        std::memcpy(&fd, CMSG_DATA(got), sizeof fd);
        co_return fd;
    };
    coil_test::unique_fd copy(ex.run(body()));
    REQUIRE(copy.get() >= 0);
    CHECK(copy.get() != pipe.write_end.get()); // a new descriptor for the same pipe
    CHECK((::fcntl(copy.get(), F_GETFD) & FD_CLOEXEC) != 0);
    pipe.write_end.reset();
    REQUIRE(::write(copy.get(), "via", 3) == 3);
    copy.reset();
    CHECK(coil_test::read_to_end(pipe.read_end.get()) == "via");
    CHECK(ex.in_flight() == 0);
}

TEST_CASE("net: after its own shutdown(SHUT_WR) a socket's send gives broken_pipe without "
          "SIGPIPE, and it still receives; receive with MSG_WAITALL gathers split sends and "
          "yields what came before the peer closed",
          "[net][shutdown][receive]")
{
    coil::executor ex(coil_test::executor_options());
    auto body = [&]() -> coil::task<void> {
        auto pair = coil_test::connected_stream_pair(); // (clang 14 captures no bindings)
        net::stream_socket& socket = pair.socket;
        coil_test::unique_fd& peer = pair.peer;
        auto shut = co_await socket.shutdown();
        REQUIRE(shut.ok());
        auto sent = co_await socket.send(bytes_of("late")); // SIGPIPE would end the test
        REQUIRE_FALSE(sent.ok());
        CHECK(sent.error() == std::errc::broken_pipe);
        // The other direction is open: MSG_WAITALL waits for all 10 bytes over three writes.
        auto writer = [&]() -> coil::task<void> {
            for (const char* piece : {"abc", "defg", "hij"}) {
                (void)co_await coil::sleep_for(std::chrono::milliseconds(2));
                REQUIRE(::write(peer.get(), piece, std::strlen(piece)) ==
                        static_cast<ssize_t>(std::strlen(piece)));
            }
        };
        auto w = coil::executor::current()->spawn(writer());
        std::array<std::byte, 10> all{};
        auto got = co_await socket.receive(all, MSG_WAITALL);
        co_await w;
        REQUIRE(got.ok());
        CHECK(*got == 10);
        CHECK(std::memcmp(all.data(), "abcdefghij", 10) == 0);
        // The peer closes after 4 of the 10 bytes: MSG_WAITALL yields those 4.
        REQUIRE(::write(peer.get(), "klmn", 4) == 4);
        peer.reset();
        auto short_read = co_await socket.receive(all, MSG_WAITALL);
        REQUIRE(short_read.ok());
        CHECK(*short_read == 4);
        CHECK(std::memcmp(all.data(), "klmn", 4) == 0);
    };
    ex.run(body());
    CHECK(ex.in_flight() == 0);
}

TEST_CASE("net: two executors on two threads, each with its own buffer pool, ping-pong over TCP "
          "through receive streams",
          "[net][buffer_pool][threads]")
{
    constexpr int rounds = 500;
    auto server = net::listener::bind(net::address::loopback_v4(0));
    REQUIRE(server);
    const auto at = *server->local_address();
    // Reads `size` bytes from a receive stream over the executor's own pool.
    auto read_exactly = [](net::receive_stream& in, std::size_t size,
                           std::string& into) -> coil::task<bool> {
        while (into.size() < size) {
            auto chunk = co_await in.next();
            if (!chunk || !chunk->ok() || (*chunk)->empty())
                co_return false;
            const auto bytes = (*chunk)->bytes();
            into.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
        }
        co_return true;
    };
    int server_rounds = 0;
    std::thread server_thread([&] {
        coil::executor ex(coil_test::executor_options());
        auto body = [&]() -> coil::task<void> {
            net::buffer_pool pool(ex, 8, 64);
            auto conn = co_await server->accept();
            if (!conn)
                co_return; // (no Catch assertions off the test's thread)
            auto in = conn->receive(pool);
            for (int i = 0; i < rounds; ++i) {
                std::string got;
                if (!co_await read_exactly(in, 4, got) || got != "ping")
                    break;
                auto sent = co_await conn->send_all(bytes_of("pong"));
                if (!sent.ok())
                    break;
                ++server_rounds;
            }
        };
        ex.run(body());
    });
    int client_rounds = 0;
    std::thread client_thread([&] {
        coil::executor ex(coil_test::executor_options());
        auto body = [&]() -> coil::task<void> {
            net::buffer_pool pool(ex, 8, 64);
            auto c = co_await net::stream_socket::connect(at);
            if (!c)
                co_return;
            auto in = c->receive(pool);
            for (int i = 0; i < rounds; ++i) {
                auto sent = co_await c->send_all(bytes_of("ping"));
                if (!sent.ok())
                    break;
                std::string got;
                if (!co_await read_exactly(in, 4, got) || got != "pong")
                    break;
                ++client_rounds;
            }
        };
        ex.run(body());
    });
    client_thread.join();
    server_thread.join();
    CHECK(client_rounds == rounds);
    CHECK(server_rounds == rounds);
}

TEST_CASE("net: a socket destroyed in the loop turn that queued a send on it closes only after "
          "the send reached the kernel: a socket made next, which reuses the number, gets "
          "nothing",
          "[net][socket][lifetime]")
{
    // The kernel looks the descriptor up when it issues the send, at the end of the loop turn;
    // a close at once would hand the number, and the send, to the socket made below (found by
    // an audit: the other connection's peer received "SECRET").
    int pair[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
    std::optional<coil::net::stream_socket> conn(std::in_place, pair[0]);
    coil_test::unique_fd intended_peer(pair[1]);
    const int number = pair[0];
    int other[2] = {-1, -1};
    coil::executor ex(coil_test::executor_options());
    auto sender = [&]() -> coil::task<coil::result<std::size_t>> {
        co_return co_await conn->send(bytes_of("SECRET"));
    };
    auto dropper = [&]() -> coil::task<void> {
        conn.reset(); // in this turn, after the send was queued
        co_return;
    };
    auto maker = [&]() -> coil::task<void> {
        REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, other) == 0);
        co_return;
    };
    auto root = [&]() -> coil::task<coil::result<std::size_t>> {
        auto sent = ex.spawn(sender()); // the three run in one loop turn, in this order
        auto dropped = ex.spawn(dropper());
        auto made = ex.spawn(maker());
        co_await std::move(dropped);
        co_await std::move(made);
        co_return co_await std::move(sent);
    };
    coil::result<std::size_t> n = ex.run(root());
    coil_test::unique_fd other_a(other[0]);
    coil_test::unique_fd other_b(other[1]);
    REQUIRE((other[0] == number || other[1] == number)); // the number was free when it ran
    REQUIRE(n.ok());
    CHECK(*n == 6);
    char got[16] = {};
    CHECK(::recv(intended_peer.get(), got, sizeof got, MSG_DONTWAIT) == 6);
    CHECK(std::string_view(got, 6) == "SECRET");
    CHECK(::recv(other[0], got, sizeof got, MSG_DONTWAIT) == -1);
    CHECK(::recv(other[1], got, sizeof got, MSG_DONTWAIT) == -1);
}

TEST_CASE("net: a received_buffer dropped on another thread goes back to its pool through the "
          "pool's executor, and the stream parked on the dry pool goes on",
          "[net][receive][buffer_pool][threads]")
{
    coil_test::stream_pair pair = coil_test::connected_stream_pair();
    net::stream_socket& conn = pair.socket;
    coil_test::unique_fd& peer = pair.peer;
    coil::executor ex(coil_test::executor_options());
    auto body = [&]() -> coil::task<std::string> {
        net::buffer_pool pool(ex, 1, 256);
        auto chunks = conn.receive(pool);
        coil_test::write_fully(peer.get(), bytes_of("one"));
        auto first = co_await chunks.next();
        REQUIRE(first);
        REQUIRE(first->ok());
        CHECK(pool.lent() == 1); // the pool is dry: the stream parks on it
        coil_test::write_fully(peer.get(), bytes_of("two"));
        net::received_buffer held = std::move(**first);
        std::thread worker([b = std::move(held)]() mutable { b.release(); });
        worker.join();
        // Released on the worker, handed back here: not yet, but at the next loop turn.
        CHECK(pool.lent() == 1);
        auto second = co_await chunks.next();
        REQUIRE(second);
        REQUIRE(second->ok());
        CHECK(pool.lent() == 1);
        std::string got = coil_test::string_of((**second).bytes());
        co_return got;
    };
    CHECK(ex.run(body()) == "two");
}

TEST_CASE("net: a buffer pool hands the kernel 64 buffers by default, and every one with an "
          "initial publish limit of 0",
          "[net][buffer_pool]")
{
    coil::executor ex(coil_test::executor_options());
    auto body = [&]() -> coil::task<std::pair<unsigned, unsigned>> {
        net::buffer_pool by_default(ex, 256, 1024);
        net::buffer_pool all(ex, 256, 1024, net::buffer_pool_options{.initial_publish_limit = 0});
        CHECK(by_default.available() == 256); // the reserve counts as available
        co_return std::pair{by_default.publish_limit(), all.publish_limit()};
    };
    const auto [by_default, all] = ex.run(body());
    CHECK(by_default == 64);
    CHECK(all == 256);
}

TEST_CASE("net: a buffer pool of 1 buffer and one of 32,768 carry a stream in order and get "
          "every buffer back; counts that are not a power of two up to 32,768 are refused",
          "[net][buffer_pool]")
{
    const unsigned count = GENERATE(1u, 32768u);
    CAPTURE(count);
    coil::executor ex(coil_test::executor_options());
    coil_test::stream_pair pair = coil_test::connected_stream_pair();
    net::stream_socket& ours = pair.socket;
    const std::vector<std::byte> data = coil_test::pattern(200 * 1024);
    const int peer_fd = pair.peer.get();
    std::thread writer([&data, peer_fd] {
        std::size_t done = 0;
        while (done < data.size()) {
            const ssize_t n = ::write(peer_fd, data.data() + done,
                                      std::min<std::size_t>(data.size() - done, 3000));
            if (n <= 0)
                return;
            done += static_cast<std::size_t>(n);
        }
        ::shutdown(peer_fd, SHUT_WR);
    });
    struct outcome {
        std::string received;
        std::error_code error;
        unsigned lent = 1, available = 0, pool_count = 0;
    };
    auto body = [&]() -> coil::task<outcome> {
        outcome o;
        net::buffer_pool pool(ex, count, 64);
        {
            auto chunks = ours.receive(pool);
            for (;;) {
                auto chunk = co_await chunks.next();
                if (!chunk)
                    break;
                if (!*chunk) {
                    o.error = chunk->error();
                    break;
                }
                if ((*chunk)->bytes().empty())
                    break; // the peer's end
                o.received.append(reinterpret_cast<const char*>((*chunk)->bytes().data()),
                                  (*chunk)->bytes().size());
            }
        }
        o.lent = pool.lent();
        o.available = pool.available();
        o.pool_count = pool.count();
        co_return o;
    };
    const outcome o = ex.run(body());
    writer.join();
    CHECK_FALSE(o.error);
    CHECK(o.received == coil_test::string_of(data));
    CHECK(o.lent == 0);
    CHECK(o.available == o.pool_count);
    CHECK(o.pool_count == count);

    for (unsigned bad : {0u, 3u, 65536u}) {
        CAPTURE(bad);
        CHECK_THROWS_WITH(net::buffer_pool(ex, bad, 64),
                          ContainsSubstring("count must be a power of two from 1 to 32768"));
    }
}
