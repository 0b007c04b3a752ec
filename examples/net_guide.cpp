// SPDX-License-Identifier: MIT
// The snippets of docs/networking.md as one program, so that the guide's code is built and run.
//
//   coil_net_guide    runs every snippet over loopback and prints what each one saw

#include <coil/coil.hpp>

#include <fmt/core.h>

#include <fcntl.h>

#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

using namespace std::chrono_literals;
namespace net = coil::net;

namespace {

void check(bool ok, const char* what)
{
    if (!ok) {
        fmt::print(stderr, "coil_net_guide: {} failed\n", what);
        std::exit(1);
    }
}

std::span<const std::byte> bytes_of(std::string_view s) { return std::as_bytes(std::span(s)); }

// --- 1. Addresses -------------------------------------------------------------------------
void addresses()
{
    auto a = coil::net::address::parse("127.0.0.1:8080");      // IPv4
    auto b = coil::net::address::parse("[::1]:8080");          // IPv6: brackets required
    auto c = coil::net::address::parse("localhost:8080");      // a name: getaddrinfo
    auto d = coil::net::address::parse("unix:/run/app.sock");  // a Unix socket path
    if (!a)
        fmt::print("{}\n", a.error().message());
    check(a && b && c && d, "parsing good addresses");
    auto bad = coil::net::address::parse("127.0.0.1");
    check(!bad && bad.error() == std::errc::invalid_argument, "an address without a port");
    fmt::print("addresses: {} {} {} {}; '127.0.0.1' -> {}\n", a->to_string(), b->to_string(),
               c->to_string(), d->to_string(), bad.error().message());
}

// --- 2. Stream sockets and listeners ------------------------------------------------------
coil::task<void> sockets()
{
    auto server = coil::net::listener::bind(coil::net::address::loopback_v4(0)); // port 0: any
    check(static_cast<bool>(server), "bind");
    auto at = server->local_address();                                           // which one
    auto client = co_await coil::net::stream_socket::connect(*at);
    check(static_cast<bool>(client), "connect");
    auto conn = co_await server->accept();                   // result<stream_socket>
    check(static_cast<bool>(conn), "accept");
    const std::span<const std::byte> bytes = bytes_of("hello over TCP");
    auto sent = co_await client->send_all(bytes);
    check(static_cast<bool>(sent), "send_all");
    std::array<std::byte, 4096> buffer;
    auto n = co_await conn->receive(buffer);                 // 0: the peer closed its side
    check(n && *n > 0, "receive");
    (void)co_await client->shutdown();                       // SHUT_WR: end-of-stream
    auto end = co_await conn->receive(buffer);
    check(end && *end == 0, "end of stream after shutdown");
    (void)co_await client->close();                          // cancels what is pending, closes
    fmt::print("sockets: {} bytes through {}, then end-of-stream\n", *n, at->to_string());
}

// --- 3. The server path: multishot accept, multishot receive over a buffer pool ------------
coil::task<void> echo(coil::net::stream_socket conn, coil::net::buffer_pool& pool)
{
    auto chunks = conn.receive(pool);            // one multishot receive, armed until the end
    while (auto chunk = co_await chunks.next()) {
        if (!*chunk || (*chunk)->empty())
            break;                               // an error (reset) or the end of the stream
        if (!co_await conn.send_all((*chunk)->bytes()))
            break;
    }                                            // each received_buffer goes back to the pool
}

// The same through receive bundles: each bundle's buffers, gathered into one send.
coil::task<void> echo_bundles(coil::net::stream_socket conn, coil::net::buffer_pool& pool)
{
    std::size_t received = 0;
    auto consume = [&received](std::span<const std::byte> part) { received += part.size(); };
    auto bundles = conn.receive_bundles(pool);
    while (auto bundle = co_await bundles.next()) {
        if (!*bundle || (*bundle)->empty())
            break;
        for (std::span<const std::byte> part : **bundle)   // each buffer's bytes, in order
            consume(part);
        if (!co_await conn.send_all(**bundle))   // its buffers gathered: one sendmsg per 16
            break;
    }
}

enum class receiving { plain, bundles };

coil::task<void> accept_loop(net::listener& server, net::buffer_pool& pool, coil::nursery& nursery,
                             receiving how)
{
    auto connections = server.connections();     // multishot accept
    while (auto conn = co_await connections.next()) {
        if (!*conn) {
            if ((*conn).error() == std::errc::operation_canceled)
                break;                           // the stop request below
            (void)co_await coil::sleep_for(10ms); // EMFILE, ENFILE, ...: back off, go on
            continue;
        }
        if (how == receiving::bundles)
            nursery.spawn(echo_bundles(std::move(**conn), pool));
        else
            nursery.spawn(echo(std::move(**conn), pool));
    }
}

// A client of the echo server: `rounds` messages, each checked when it comes back.
coil::task<std::size_t> echo_client(net::address at, int rounds)
{
    auto c = co_await net::stream_socket::connect(at);
    check(static_cast<bool>(c), "client connect");
    std::size_t good = 0;
    for (int i = 0; i < rounds; ++i) {
        const std::string message = fmt::format("message {} of {}", i, rounds);
        if (!co_await c->send_all(bytes_of(message)))
            break;
        std::string back;
        std::array<std::byte, 256> buffer;
        while (back.size() < message.size()) {
            auto n = co_await c->receive(buffer).with_timeout(5s);
            if (!n || *n == 0)
                co_return good;
            back.append(reinterpret_cast<const char*>(buffer.data()), *n);
        }
        good += back == message ? 1 : 0;
    }
    co_return good;
}

coil::task<void> server_path(receiving how)
{
    coil::executor& ex = *coil::executor::current();
    auto server = net::listener::bind(net::address::loopback_v4(0));
    check(static_cast<bool>(server), "bind the echo server");
    const net::address at = *server->local_address();
    net::buffer_pool pool(ex, 64, 4096); // 64 buffers of 4 KiB, shared by every connection
    std::stop_source stop;
    std::size_t echoed = 0;
    co_await coil::with_nursery([&](coil::nursery& nursery) -> coil::task<void> {
        nursery.spawn(coil::with_stop_token(stop.get_token(), accept_loop(*server, pool, nursery, how)));
        std::vector<coil::join_handle<std::size_t>> clients;
        for (int i = 0; i < 8; ++i)
            clients.push_back(ex.spawn(echo_client(at, 20)));
        for (auto& client : clients)
            echoed += co_await client;
        stop.request_stop(); // ends the accept loop; the echo tasks end with their clients
    });
    check(echoed == 8 * 20, "every message echoed");
    fmt::print("server path ({}): {} messages echoed over 8 connections\n",
               how == receiving::bundles ? "receive bundles" : "receive", echoed);
}

// --- 4. A deadline on a whole send --------------------------------------------------------
coil::task<void> send_deadline()
{
    auto server = net::listener::bind(net::address::loopback_v4(0));
    auto client = co_await net::stream_socket::connect(*server->local_address());
    auto peer = co_await server->accept(); // accepted, and never read from
    check(client && peer, "connect for the deadline");
    const std::vector<std::byte> big(64 << 20);
    auto sent = co_await client->send_all(big).with_timeout(100ms);
    check(!sent && sent.error() == std::errc::timed_out, "send_all under a deadline");
    fmt::print("send deadline: {}\n", sent.error().message());
}

// --- 5. Datagram sockets ------------------------------------------------------------------
coil::task<void> datagrams()
{
    auto server = coil::net::datagram_socket::bind(coil::net::address::loopback_v4(0)); // any port
    auto client = coil::net::datagram_socket::open(AF_INET);     // a port at its first send
    check(server && client, "datagram sockets");
    const std::span<const std::byte> bytes = bytes_of("ping");
    auto sent = co_await client->send_to(bytes, *server->local_address()); // the address is copied
    check(sent && *sent == 4, "send_to");
    std::array<std::byte, 1500> buffer;
    auto got = co_await server->receive_from(buffer);           // result<datagram>
    check(got && got->size == 4 && !got->truncated, "receive_from");
    auto answered = co_await server->send_to(std::span(buffer).first(got->size), got->from);
    check(static_cast<bool>(answered), "answer");
    std::array<std::byte, 2> small;                              // too small for "ping"
    auto cut = co_await client->receive_from(small);
    check(cut && cut->size == 2 && cut->truncated, "a truncated datagram says so");
    fmt::print("datagrams: 'ping' from {}, answered; into 2 bytes: truncated {}\n",
               got->from.to_string(), cut->truncated);
}

// --- 5a. A datagram server over a buffer pool ---------------------------------------------
// Answers `count` datagrams, each received into a pool buffer by one multishot recvmsg.
coil::task<std::size_t> datagram_server(const net::datagram_socket& server,
                                        net::buffer_pool& pool, std::size_t count)
{
    auto datagrams = server.receive_datagrams(pool); // one armed recvmsg serves them all
    std::size_t answered = 0;
    while (answered < count) {
        auto d = co_await datagrams.next(); // optional<result<received_datagram>>
        if (!d || !*d)
            break;
        const net::received_datagram& got = **d; // got.data: the payload, in a pool buffer
        if (got.truncated)
            continue;
        auto sent = co_await server.send_to(got.data.bytes(), got.from);
        if (sent)
            ++answered;
    } // each datagram's buffer goes back to the pool when `d` goes
    co_return answered;
}

coil::task<void> datagram_pool()
{
    coil::executor& ex = *coil::executor::current();
    net::buffer_pool pool(ex, 16, 2048); // destroyed after the server's stream
    auto server = net::datagram_socket::bind(net::address::loopback_v4(0));
    auto client = net::datagram_socket::open(AF_INET);
    check(server && client, "datagram sockets for the pool server");
    auto served = ex.spawn(datagram_server(*server, pool, 3));
    std::size_t echoed = 0;
    for (const char* text : {"one", "two", "three"}) {
        auto sent = co_await client->send_to(bytes_of(text), *server->local_address());
        std::array<std::byte, 64> buffer;
        auto back = co_await client->receive_from(buffer);
        if (sent && back && std::string_view(reinterpret_cast<const char*>(buffer.data()),
                                             back->size) == text)
            ++echoed;
    }
    const std::size_t answered = co_await served;
    check(echoed == 3 && answered == 3 && pool.lent() == 0, "a datagram server over a pool");
    fmt::print("datagrams over a pool: {} answered, {} buffers lent after\n", answered,
               pool.lent());
}

// --- 6. Around a g++ 12 miscompilation (docs/runtime.md) ---------------------------------
coil::task<bool> connect_within(net::address backend, std::chrono::milliseconds timeout)
{
    coil::result<coil::net::tcp_stream> conn = coil::net::tcp_stream();
    if (timeout.count() != 0)
        conn = co_await coil::net::tcp_stream::connect(backend, timeout);
    else
        conn = co_await coil::net::tcp_stream::connect(backend);
    // Open for real: the miscompiled conditional handed out a socket already closed.
    co_return conn.ok() && ::fcntl(conn->fd(), F_GETFD) != -1;
}

coil::task<void> connect_either_way()
{
    auto server = net::listener::bind(net::address::loopback_v4(0));
    check(static_cast<bool>(server), "bind for the connects");
    const bool timed = co_await connect_within(*server->local_address(), 5s);
    const bool plain = co_await connect_within(*server->local_address(), 0ms);
    check(timed && plain, "connect with and without a deadline");
    fmt::print("connect with and without a deadline, through an if: {} {}\n", timed, plain);
}

coil::task<void> all()
{
    addresses();
    co_await sockets();
    co_await server_path(receiving::plain);
    co_await server_path(receiving::bundles);
    co_await send_deadline();
    co_await datagrams();
    co_await datagram_pool();
    co_await connect_either_way();
}

} // namespace

int main()
{
    coil::run(all());
    fmt::print("coil_net_guide: every snippet ran\n");
    return 0;
}
