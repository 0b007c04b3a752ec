// SPDX-License-Identifier: MIT
// Helpers for the ring's socket tests: listening sockets and connected pairs over TCP on the IPv4
// and IPv6 loopback and over AF_UNIX stream sockets, made with plain system calls so that each
// test exercises only the ring op it is about.
#pragma once

#include "ring_test_support.hpp"

#include <catch2/catch_test_macros.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

namespace coil_test {

/// The kinds of stream socket every socket test runs over.
enum class socket_family { ipv4, ipv6, local };

inline const char* to_string(socket_family f)
{
    switch (f) {
    case socket_family::ipv4:
        return "TCP over IPv4 loopback";
    case socket_family::ipv6:
        return "TCP over IPv6 loopback";
    case socket_family::local:
        return "AF_UNIX stream";
    }
    return "?";
}

/// The socket domain (`AF_*`) of a family.
inline int domain_of(socket_family f)
{
    switch (f) {
    case socket_family::ipv4:
        return AF_INET;
    case socket_family::ipv6:
        return AF_INET6;
    case socket_family::local:
        return AF_UNIX;
    }
    return AF_UNSPEC;
}

inline bool is_tcp(socket_family f) { return f != socket_family::local; }

/// A socket address and its length.
struct endpoint {
    ::sockaddr_storage storage{};
    ::socklen_t length = 0;

    const ::sockaddr* get() const noexcept { return reinterpret_cast<const ::sockaddr*>(&storage); }
    ::sockaddr* get() noexcept { return reinterpret_cast<::sockaddr*>(&storage); }
};

/// The port of a TCP address (0 for anything else).
inline std::uint16_t port_of(const ::sockaddr_storage& a)
{
    if (a.ss_family == AF_INET)
        return ntohs(reinterpret_cast<const ::sockaddr_in&>(a).sin_port);
    if (a.ss_family == AF_INET6)
        return ntohs(reinterpret_cast<const ::sockaddr_in6&>(a).sin6_port);
    return 0;
}

/// A bound socket (listening unless asked not to) and the address clients reach it at. AF_UNIX
/// sockets live in a temporary directory that goes away with the object.
struct bound_socket {
    unique_fd fd;
    endpoint address;
    std::unique_ptr<temp_dir> dir;
};

/// A stream socket of `f` bound to the loopback (an ephemeral port) or to a fresh AF_UNIX
/// path, listening when `listen_backlog > 0`. SKIPs the test when the machine has no IPv6
/// loopback.
inline bound_socket make_bound(socket_family f, int listen_backlog = 16)
{
    bound_socket out;
    int fd = ::socket(domain_of(f), SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 && f == socket_family::ipv6 && errno == EAFNOSUPPORT)
        SKIP("this machine has no IPv6");
    REQUIRE(fd >= 0);
    out.fd = unique_fd(fd);
    endpoint& a = out.address;
    switch (f) {
    case socket_family::ipv4: {
        auto& in = reinterpret_cast<::sockaddr_in&>(a.storage);
        in.sin_family = AF_INET;
        in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.length = sizeof in;
        break;
    }
    case socket_family::ipv6: {
        auto& in6 = reinterpret_cast<::sockaddr_in6&>(a.storage);
        in6.sin6_family = AF_INET6;
        in6.sin6_addr = in6addr_loopback;
        a.length = sizeof in6;
        break;
    }
    case socket_family::local: {
        out.dir = std::make_unique<temp_dir>();
        auto& un = reinterpret_cast<::sockaddr_un&>(a.storage);
        un.sun_family = AF_UNIX;
        const std::string path = out.dir->file("socket");
        REQUIRE(path.size() < sizeof un.sun_path);
        std::memcpy(un.sun_path, path.c_str(), path.size() + 1);
        a.length = static_cast<::socklen_t>(offsetof(::sockaddr_un, sun_path) + path.size() + 1);
        break;
    }
    }
    if (::bind(fd, a.get(), a.length) != 0) {
        if (f == socket_family::ipv6 && errno == EADDRNOTAVAIL)
            SKIP("this machine has no IPv6 loopback address (::1)");
        FAIL("bind: " << std::strerror(errno));
    }
    if (is_tcp(f)) { // learn the ephemeral port
        a.length = sizeof a.storage;
        REQUIRE(::getsockname(fd, a.get(), &a.length) == 0);
    }
    if (listen_backlog > 0)
        REQUIRE(::listen(fd, listen_backlog) == 0);
    return out;
}

/// A client socket connected (blocking connect(2)) to `to`. On the loopback and on AF_UNIX the
/// connection is established in the listener's backlog before anyone accepts it.
inline unique_fd connect_to(socket_family f, const endpoint& to)
{
    unique_fd fd(::socket(domain_of(f), SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(fd.get() >= 0);
    REQUIRE(::connect(fd.get(), to.get(), to.length) == 0);
    return fd;
}

/// Two connected stream sockets: the client end and the end the listener accepted.
struct connection {
    bound_socket listener;
    unique_fd client;
    unique_fd server;
};

inline connection make_connection(socket_family f)
{
    connection c{make_bound(f), {}, {}};
    c.client = connect_to(f, c.listener.address);
    c.server = unique_fd(::accept4(c.listener.fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
    REQUIRE(c.server.get() >= 0);
    return c;
}

/// Writes all of `data` with send(2).
inline void send_all(int fd, std::span<const std::byte> data)
{
    std::size_t done = 0;
    while (done < data.size()) {
        ssize_t n = ::send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
        REQUIRE(n > 0);
        done += static_cast<std::size_t>(n);
    }
}

/// Reads exactly `count` bytes with recv(2) (fails the test at an early end of stream).
inline std::vector<std::byte> recv_exactly(int fd, std::size_t count)
{
    std::vector<std::byte> out(count);
    std::size_t done = 0;
    while (done < count) {
        ssize_t n = ::recv(fd, out.data() + done, count - done, 0);
        REQUIRE(n > 0);
        done += static_cast<std::size_t>(n);
    }
    return out;
}

/// `count` bytes that differ from position to position (and with `seed`), so that a
/// reordered or repeated chunk shows.
inline std::vector<std::byte> pattern(std::size_t count, unsigned seed = 0)
{
    std::vector<std::byte> out(count);
    for (std::size_t i = 0; i < count; ++i)
        out[i] = static_cast<std::byte>((i * 31 + i / 251 + seed * 7) & 0xff);
    return out;
}

} // namespace coil_test
