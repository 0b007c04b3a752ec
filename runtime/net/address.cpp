// SPDX-License-Identifier: MIT
// Socket addresses: parsing, resolution of names, printing; the "coil.net" error category.

#include <coil/net/address.hpp>

#include <arpa/inet.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <charconv>
#include <cstddef>
#include <cstring>
#include <memory>

namespace coil::net {
namespace {

class net_category final : public std::error_category {
public:
    const char* name() const noexcept override { return "coil.net"; }
    std::string message(int value) const override
    {
        switch (static_cast<errc>(value)) {
        case errc::missing_port:
            return "the address has no port: expected HOST:PORT (127.0.0.1:8080, [::1]:8080, "
                   "localhost:8080) or a Unix path (unix:/path or /path)";
        case errc::bad_port:
            return "the port is not a number from 0 to 65535";
        case errc::bad_host:
            return "the host is neither an IPv4 literal, a bracketed IPv6 literal ([::1]) nor a "
                   "name that resolves";
        case errc::path_too_long:
            return "the Unix socket path is longer than sockaddr_un allows (107 bytes)";
        case errc::empty:
            return "the address is empty";
        }
        return "unknown coil.net error " + std::to_string(value);
    }
    // Every address error is, generically, an invalid argument.
    std::error_condition default_error_condition(int) const noexcept override
    {
        return std::errc::invalid_argument;
    }
};

result<std::uint16_t> parse_port(std::string_view text)
{
    unsigned value = 0;
    const char* end = text.data() + text.size();
    auto [ptr, ec] = std::from_chars(text.data(), end, value);
    if (text.empty() || ec != std::errc{} || ptr != end || value > 65535)
        return make_error_code(errc::bad_port);
    return static_cast<std::uint16_t>(value);
}

} // namespace

const std::error_category& error_category() noexcept
{
    static const net_category category;
    return category;
}

address::address() noexcept : storage_{}, size_(0) { storage_.ss_family = AF_UNSPEC; }

address address::from(const ::sockaddr* data, ::socklen_t length) noexcept
{
    address a;
    if (length > sizeof(a.storage_))
        length = sizeof(a.storage_);
    std::memcpy(&a.storage_, data, length);
    a.size_ = length;
    return a;
}

address address::loopback_v4(std::uint16_t port) noexcept
{
    address a;
    auto* in = reinterpret_cast<sockaddr_in*>(&a.storage_);
    in->sin_family = AF_INET;
    in->sin_port = htons(port);
    in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.size_ = sizeof(sockaddr_in);
    return a;
}

address address::loopback_v6(std::uint16_t port) noexcept
{
    address a;
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&a.storage_);
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(port);
    in6->sin6_addr = in6addr_loopback;
    a.size_ = sizeof(sockaddr_in6);
    return a;
}

namespace {

// One to four parts separated by dots, each decimal, octal or 0x-hexadecimal digits: what
// inet_aton(3) reads as an IPv4 address.
bool inet_aton_shorthand(std::string_view host)
{
    int parts = 0;
    while (true) {
        const auto dot = host.find('.');
        std::string_view part = host.substr(0, dot);
        const bool hex = part.size() > 2 && part[0] == '0' && (part[1] == 'x' || part[1] == 'X');
        if (hex)
            part.remove_prefix(2);
        if (part.empty() ||
            part.find_first_not_of(hex ? "0123456789abcdefABCDEF" : "0123456789") !=
                std::string_view::npos)
            return false;
        if (++parts > 4)
            return false;
        if (dot == std::string_view::npos)
            return true;
        host.remove_prefix(dot + 1);
    }
}

} // namespace

result<address> address::ip(std::string_view ip, std::uint16_t port)
{
    // The C library would stop at a NUL and take what comes before it for the whole address.
    if (ip.find('\0') != std::string_view::npos)
        return make_error_code(errc::bad_host);
    const std::string text(ip);
    address a;
    auto* in = reinterpret_cast<sockaddr_in*>(&a.storage_);
    if (::inet_pton(AF_INET, text.c_str(), &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons(port);
        a.size_ = sizeof(sockaddr_in);
        return a;
    }
    a = address();
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&a.storage_);
    // A link-local address names its interface after a '%': a name (fe80::1%eth0) or an
    // index (fe80::1%2).
    const auto percent = text.find('%');
    const std::string literal = text.substr(0, percent);
    if (::inet_pton(AF_INET6, literal.c_str(), &in6->sin6_addr) != 1)
        return make_error_code(errc::bad_host);
    if (percent != std::string::npos) {
        const std::string zone = text.substr(percent + 1);
        unsigned index = ::if_nametoindex(zone.c_str());
        if (index == 0) {
            const auto [end, error] = std::from_chars(zone.data(), zone.data() + zone.size(), index);
            if (zone.empty() || error != std::errc() || end != zone.data() + zone.size() ||
                index == 0)
                return make_error_code(errc::bad_host);
        }
        in6->sin6_scope_id = index;
    }
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(port);
    a.size_ = sizeof(sockaddr_in6);
    return a;
}

result<address> address::unix_path(std::string_view path)
{
    if (path.empty())
        return make_error_code(errc::empty);
    address a;
    auto* un = reinterpret_cast<sockaddr_un*>(&a.storage_);
    // A path needs its terminating NUL in sun_path; an abstract name ('@' stands for its
    // leading NUL) fills it: 107 bytes either way.
    const bool abstract = path.front() == '@';
    if (path.size() > sizeof(un->sun_path) - (abstract ? 0 : 1))
        return make_error_code(errc::path_too_long);
    un->sun_family = AF_UNIX;
    std::memcpy(un->sun_path, path.data(), path.size());
    if (abstract)
        un->sun_path[0] = '\0'; // the kernel's abstract namespace; no terminating NUL counted
    a.size_ = static_cast<::socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() +
                                       (abstract ? 0 : 1));
    return a;
}

result<address> address::parse(std::string_view text)
{
    if (text.empty())
        return make_error_code(errc::empty);
    if (text.starts_with("unix:"))
        return unix_path(text.substr(5));
    if (text.front() == '/')
        return unix_path(text);
    std::string_view host;
    std::string_view port_text;
    if (text.front() == '[') {
        const auto close = text.find(']');
        if (close == std::string_view::npos)
            return make_error_code(errc::bad_host);
        host = text.substr(1, close - 1);
        if (host.find('[') != std::string_view::npos)
            return make_error_code(errc::bad_host);
        if (close + 1 == text.size())
            return make_error_code(errc::missing_port);
        if (text[close + 1] != ':')
            return make_error_code(errc::bad_host); // "[::1]]:80", "[::1]x80"
        port_text = text.substr(close + 2);
    } else {
        const auto colon = text.rfind(':');
        if (colon == std::string_view::npos)
            return make_error_code(errc::missing_port);
        host = text.substr(0, colon);
        port_text = text.substr(colon + 1);
        if (host.find(':') != std::string_view::npos)
            return make_error_code(errc::bad_host); // an IPv6 literal needs brackets
    }
    auto port = parse_port(port_text);
    if (!port)
        return port.error();
    if (host.empty())
        return make_error_code(errc::bad_host);
    if (text.front() == '[') { // brackets hold an IPv6 literal, nothing else
        auto literal = ip(host, *port);
        if (!literal || literal->family() != AF_INET6)
            return make_error_code(errc::bad_host);
        return literal;
    }
    if (auto literal = ip(host, *port))
        return literal;
    // getaddrinfo would take inet_aton's shorthands ("127.1", "0x7f.1", "2130706433") for
    // IPv4 addresses: an IPv4 literal is the four decimal parts inet_pton takes, nothing else.
    // A NUL ends no name.
    if (inet_aton_shorthand(host) || host.find('\0') != std::string_view::npos)
        return make_error_code(errc::bad_host);

    // A name: ask the resolver for stream sockets; prefer IPv4 (what "localhost" servers
    // usually bind), else take the first answer.
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_family = AF_UNSPEC;
    addrinfo* found = nullptr;
    const std::string name(host);
    if (::getaddrinfo(name.c_str(), nullptr, &hints, &found) != 0 || found == nullptr)
        return make_error_code(errc::bad_host);
    std::unique_ptr<addrinfo, void (*)(addrinfo*)> owner(found, ::freeaddrinfo);
    const addrinfo* pick = found;
    for (const addrinfo* i = found; i != nullptr; i = i->ai_next)
        if (i->ai_family == AF_INET) {
            pick = i;
            break;
        }
    address a = from(pick->ai_addr, pick->ai_addrlen);
    if (a.family() == AF_INET)
        reinterpret_cast<sockaddr_in*>(&a.storage_)->sin_port = htons(*port);
    else if (a.family() == AF_INET6)
        reinterpret_cast<sockaddr_in6*>(&a.storage_)->sin6_port = htons(*port);
    else
        return make_error_code(errc::bad_host);
    return a;
}

std::uint16_t address::port() const noexcept
{
    if (family() == AF_INET)
        return ntohs(reinterpret_cast<const sockaddr_in*>(&storage_)->sin_port);
    if (family() == AF_INET6)
        return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_port);
    return 0;
}

std::string address::to_string() const
{
    char text[INET6_ADDRSTRLEN] = {};
    if (family() == AF_INET) {
        const auto* in = reinterpret_cast<const sockaddr_in*>(&storage_);
        ::inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text));
        std::string out(text);
        out += ':';
        out += std::to_string(port());
        return out;
    }
    if (family() == AF_INET6) {
        const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&storage_);
        ::inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof(text));
        // Appended, not built with operator+: g++ 12 at -O3 warns (-Wrestrict) about
        // "[" + std::string, wrongly.
        std::string out = "[";
        out += text;
        if (in6->sin6_scope_id != 0) {
            char name[IF_NAMESIZE] = {};
            out += '%';
            out += ::if_indextoname(in6->sin6_scope_id, name) != nullptr
                       ? std::string(name)
                       : std::to_string(in6->sin6_scope_id);
        }
        out += "]:";
        out += std::to_string(port());
        return out;
    }
    if (family() == AF_UNIX) {
        const auto* un = reinterpret_cast<const sockaddr_un*>(&storage_);
        const std::size_t length = size_ > offsetof(sockaddr_un, sun_path)
                                       ? size_ - offsetof(sockaddr_un, sun_path)
                                       : 0;
        if (length == 0)
            return "unix:";
        if (un->sun_path[0] == '\0')
            return "unix:@" + std::string(un->sun_path + 1, length - 1);
        return "unix:" + std::string(un->sun_path, ::strnlen(un->sun_path, length));
    }
    return "(unspecified)";
}

bool operator==(const address& a, const address& b) noexcept
{
    return a.size_ == b.size_ && std::memcmp(&a.storage_, &b.storage_, a.size_) == 0;
}

} // namespace coil::net
