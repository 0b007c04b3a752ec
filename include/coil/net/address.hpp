// SPDX-License-Identifier: MIT
/// @file
/// `coil::net::address`: an IPv4, IPv6 or Unix socket address, parsed from text.
#pragma once

#include <coil/io/result.hpp>
#include <coil/net/error.hpp>

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace coil::net {

/// A socket address (a `sockaddr_storage` and its length). Copyable.
///
/// @code
/// auto a = coil::net::address::parse("127.0.0.1:8080");  // also "[::1]:8080",
/// auto b = coil::net::address::parse("localhost:8080");  // "unix:/run/app.sock",
/// if (!a) fmt::print("{}\n", a.error().message());       // "/run/app.sock"
/// @endcode
class address {
public:
    /// An empty address (family AF_UNSPEC).
    address() noexcept;

    /// Parses `text`:
    /// - `IPv4:port` (`127.0.0.1:8080`), `[IPv6]:port` (`[::1]:8080`, `[::]:0`), a link-local
    ///   IPv6 address with its interface (`[fe80::1%eth0]:8080`, or its index: `%2`); only an
    ///   IPv6 literal goes in brackets;
    /// - `name:port` (`localhost:8080`): resolved with getaddrinfo(3), which may block on DNS
    ///   for names other than local ones; the first IPv4 result is preferred, else the first;
    /// - `unix:PATH` or an absolute `/PATH`: a Unix stream socket path; `unix:@NAME` an
    ///   abstract one.
    /// Errors are `coil::net::errc` values whose messages say what was expected.
    static result<address> parse(std::string_view text);

    /// `ip` (a dotted IPv4 literal or an IPv6 literal without brackets, with `%interface`
    /// for a link-local one) and `port`.
    static result<address> ip(std::string_view ip, std::uint16_t port);
    /// A Unix socket path (`@NAME`: abstract).
    static result<address> unix_path(std::string_view path);
    /// 127.0.0.1:`port`.
    static address loopback_v4(std::uint16_t port) noexcept;
    /// [::1]:`port`.
    static address loopback_v6(std::uint16_t port) noexcept;
    /// From what accept(2), getsockname(2) and friends fill in.
    static address from(const ::sockaddr* data, ::socklen_t length) noexcept;

    int family() const noexcept { return storage_.ss_family; }
    bool is_ip() const noexcept { return family() == AF_INET || family() == AF_INET6; }
    /// The port (0 for a Unix address).
    std::uint16_t port() const noexcept;
    const ::sockaddr* data() const noexcept { return reinterpret_cast<const ::sockaddr*>(&storage_); }
    ::sockaddr* data() noexcept { return reinterpret_cast<::sockaddr*>(&storage_); }
    ::socklen_t size() const noexcept { return size_; }
    /// Room for the kernel to write an address into (then `resize` it).
    ::socklen_t capacity() const noexcept { return sizeof(storage_); }
    void resize(::socklen_t length) noexcept { size_ = length; }

    /// `127.0.0.1:8080`, `[::1]:8080`, `unix:/path`.
    std::string to_string() const;

    friend bool operator==(const address& a, const address& b) noexcept;

private:
    ::sockaddr_storage storage_;
    ::socklen_t size_;
};

} // namespace coil::net
