// SPDX-License-Identifier: MIT
// The echo server the networking tests run in-process, built as examples/echo_server.cpp is:
// multishot accept, one multishot receive per connection over a shared buffer pool; a pair of
// datagram sockets on loopback; a connected Unix stream pair.
#pragma once

#include <coil/coil.hpp>
#include <coil/io/buffer_ring.hpp>
#include <coil/io/ring.hpp>

#include "test_support.hpp"

#include <catch2/catch_test_macros.hpp>

#include <sys/socket.h>

#include <cstddef>
#include <span>
#include <stop_token>
#include <system_error>
#include <utility>

namespace coil_test {

/// A datagram socket bound to a free IPv4 loopback port; the test fails if it cannot be.
inline coil::net::datagram_socket bound_v4()
{
    auto s = coil::net::datagram_socket::bind(coil::net::address::loopback_v4(0));
    REQUIRE(s);
    return std::move(*s);
}

/// A server and a client datagram socket on loopback, and the server's address.
struct loopback_pair {
    coil::net::datagram_socket server = bound_v4();
    coil::net::datagram_socket client = bound_v4();
    coil::net::address server_at = *server.local_address();
};

/// A connected Unix stream socket pair (socketpair(2)): one end as a coil socket, the peer's
/// as a plain descriptor the test writes to.
struct stream_pair {
    coil::net::stream_socket socket;
    unique_fd peer;
};

inline stream_pair connected_stream_pair()
{
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
    return {coil::net::stream_socket(fds[0]), unique_fd(fds[1])};
}

/// Whether this kernel has receive bundles (Linux 6.10).
inline bool recv_bundles_supported()
{
    return coil::io::ring(2).has_recv_bundles();
}

/// Whether this kernel consumes provided buffers incrementally (Linux 6.12): tries it on a
/// ring of its own.
inline bool incremental_buffers_supported()
{
    coil::io::ring r(2);
    try {
        coil::io::buffer_ring probe(r, 0, 1, 64, coil::io::buffer_ring_options{.incremental = true});
        return true;
    } catch (const std::system_error& e) {
        if (e.code() == std::errc::not_supported || e.code() == std::errc::invalid_argument)
            return false;
        throw;
    }
}

/// Echoes every chunk received on `conn` until the peer ends or an error.
inline coil::task<void> echo(coil::net::stream_socket conn, coil::net::buffer_pool& pool)
{
    auto chunks = conn.receive(pool);
    while (auto chunk = co_await chunks.next()) {
        if (!*chunk || (*chunk)->empty())
            break;
        auto sent = co_await conn.send_all((*chunk)->bytes());
        if (!sent)
            break;
    }
}

/// `echo` over receive bundles: each bundle's buffers are sent back in order.
inline coil::task<void> echo_bundles(coil::net::stream_socket conn, coil::net::buffer_pool& pool)
{
    auto bundles = conn.receive_bundles(pool);
    while (auto bundle = co_await bundles.next()) {
        if (!*bundle || (*bundle)->empty())
            co_return;
        if (!co_await conn.send_all(**bundle))   // its buffers gathered: one sendmsg per 16
            break;
    }
}

/// Serves `server` until `stop` is requested; returns how many connections it accepted.
inline coil::task<std::size_t> serve_echo(coil::net::listener& server,
                                          coil::net::buffer_pool& pool, std::stop_token stop,
                                          coil::stream_options accept_options = {},
                                          bool bundles = false)
{
    std::size_t accepted = 0;
    co_await coil::with_stop_token(
        stop, coil::with_nursery([&](coil::nursery& n) -> coil::task<void> {
            auto connections = server.connections(accept_options);
            while (auto conn = co_await connections.next()) {
                if (!*conn) {
                    if ((*conn).error() == std::errc::operation_canceled)
                        break;
                    continue; // transient (EMFILE, ECONNABORTED, ...): go on
                }
                ++accepted;
                if (bundles)
                    n.spawn(echo_bundles(std::move(**conn), pool));
                else
                    n.spawn(echo(std::move(**conn), pool));
            }
        }));
    co_return accepted;
}

} // namespace coil_test
