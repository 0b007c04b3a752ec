// SPDX-License-Identifier: MIT
// Stream sockets, listeners and datagram sockets: connecting, binding, closing after
// cancelling what is pending on the descriptor.

#include <coil/net/datagram.hpp>
#include <coil/net/socket.hpp>
#include <coil/runtime/executor.hpp>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <string_view>

namespace coil::net {
namespace {

result<address> name_of(int fd, bool peer)
{
    address a;
    ::socklen_t length = a.capacity();
    const int r = peer ? ::getpeername(fd, a.data(), &length) : ::getsockname(fd, a.data(), &length);
    if (r != 0)
        return io::errno_code(errno);
    a.resize(length);
    return a;
}

// Closing alone does not cancel a receive pending on the descriptor (the kernel holds its own
// reference to the file): cancel first, then close.
task<result<void>> cancel_then_close(int fd)
{
    executor* ex = executor::current();
    if (ex != nullptr && ex->ring().supports(io::opcode::async_cancel))
        (void)co_await net::cancel_fd(fd); // ENOENT (nothing pending) is success here
    if (::close(fd) != 0)
        co_return io::errno_code(errno);
    co_return result<void>();
}

// A boolean socket option a bind sets when `on`.
struct socket_flag {
    bool on;
    int level;
    int name;
};

// Whether some socket of this network namespace is bound to `path` (/proc/net/unix lists each
// with the path it was bound to, last on its line). Unknown (no /proc) counts as not bound.
bool bound_in_proc(const char* path)
{
    std::FILE* table = std::fopen("/proc/net/unix", "re");
    if (table == nullptr)
        return false;
    const std::string_view wanted(path);
    bool found = false;
    char* line = nullptr;
    std::size_t capacity = 0;
    ::ssize_t length;
    while (!found && (length = ::getline(&line, &capacity, table)) > 0) {
        std::string_view entry(line, static_cast<std::size_t>(length));
        if (entry.back() == '\n')
            entry.remove_suffix(1);
        found = entry.size() > wanted.size() && entry.ends_with(wanted) &&
                entry[entry.size() - wanted.size() - 1] == ' ';
    }
    std::free(line);
    std::fclose(table);
    return found;
}

// Whether the file at Unix address `at` is a stale socket: a socket file nobody is bound to,
// which a connect of `fd`'s socket type is refused by and no socket in /proc/net/unix names.
// A live socket (even one whose backlog is full, or one bound but not yet listening), a socket
// of another type, any other kind of file and a missing path are not.
bool stale_socket_file(int fd, const address& at)
{
    const auto* un = reinterpret_cast<const sockaddr_un*>(at.data());
    struct ::stat st {};
    if (::lstat(un->sun_path, &st) != 0 || !S_ISSOCK(st.st_mode))
        return false;
    int type = 0;
    ::socklen_t type_size = sizeof(type);
    if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &type_size) != 0)
        return false;
    const int probe = ::socket(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (probe < 0)
        return false;
    const bool refused = ::connect(probe, at.data(), at.size()) != 0 && errno == ECONNREFUSED;
    ::close(probe);
    return refused && !bound_in_proc(un->sun_path);
}

// Binds `fd` to `at`: for an IP address first sets every flag that is on; for a Unix path
// first removes a stale socket file an earlier run left there, when asked (never a live
// socket's, nor a file of another kind: the bind then fails with address_in_use).
result<void> bind_with(int fd, const address& at, std::initializer_list<socket_flag> flags,
                       bool remove_stale_path)
{
    if (at.is_ip()) {
        const int one = 1;
        for (const socket_flag& f : flags)
            if (f.on && ::setsockopt(fd, f.level, f.name, &one, sizeof(one)) != 0)
                return io::errno_code(errno);
    } else if (at.family() == AF_UNIX && remove_stale_path) {
        const auto* un = reinterpret_cast<const sockaddr_un*>(at.data());
        if (un->sun_path[0] != '\0' && stale_socket_file(fd, at))
            ::unlink(un->sun_path);
    }
    if (::bind(fd, at.data(), at.size()) != 0)
        return io::errno_code(errno);
    return {};
}

} // namespace

task<result<stream_socket>> stream_socket::connect(address to)
{
    return connect(std::move(to), std::chrono::nanoseconds::max());
}

task<result<stream_socket>> stream_socket::connect(address to, std::chrono::nanoseconds timeout)
{
    const int type = SOCK_STREAM | SOCK_CLOEXEC;
    const int protocol = to.is_ip() ? IPPROTO_TCP : 0;
    int fd = -1;
    executor* ex = executor::current();
    if (ex != nullptr && ex->ring().supports(io::opcode::socket)) {
        auto made = co_await operation<ops::socket>({to.family(), type, protocol});
        if (!made)
            co_return made.error();
        fd = *made;
    } else {
        fd = ::socket(to.family(), type, protocol);
        if (fd < 0)
            co_return io::errno_code(errno);
    }
    stream_socket s(fd);
    result<void> connected;
    if (timeout == std::chrono::nanoseconds::max())
        connected = co_await net::connect(s.fd(), to.data(), to.size());
    else
        connected = co_await net::connect(s.fd(), to.data(), to.size()).with_timeout(timeout);
    if (!connected)
        co_return connected.error();
    co_return std::move(s);
}

task<result<void>> stream_socket::close()
{
    if (!is_open())
        co_return result<void>();
    co_return co_await cancel_then_close(fd_.release_to_close());
}

result<void> stream_socket::set_no_delay(bool on) const noexcept
{
    const int value = on ? 1 : 0;
    if (::setsockopt(fd_.get(), IPPROTO_TCP, TCP_NODELAY, &value, sizeof(value)) != 0)
        return io::errno_code(errno);
    return {};
}

result<address> stream_socket::local_address() const { return name_of(fd_.get(), false); }
result<address> stream_socket::peer_address() const { return name_of(fd_.get(), true); }

result<listener> listener::bind(const address& at, listen_options options)
{
    const int fd = ::socket(at.family(), SOCK_STREAM | SOCK_CLOEXEC, at.is_ip() ? IPPROTO_TCP : 0);
    if (fd < 0)
        return io::errno_code(errno);
    listener l(fd);
    auto bound = bind_with(fd, at,
                           {{options.reuse_address, SOL_SOCKET, SO_REUSEADDR},
                            {options.reuse_port, SOL_SOCKET, SO_REUSEPORT},
                            {options.no_delay, IPPROTO_TCP, TCP_NODELAY}},
                           options.remove_stale_path);
    if (!bound)
        return bound.error();
    if (::listen(fd, options.backlog) != 0)
        return io::errno_code(errno);
    return l;
}

result<address> listener::local_address() const { return name_of(fd_.get(), false); }

void listener::close() noexcept
{
    if (fd_.get() >= 0)
        static_cast<void>(::shutdown(fd_.get(), SHUT_RDWR)); // ends pending accepts (EINVAL)
    fd_.reset();
}

bool ops::still_listening(int fd) noexcept
{
    int accepting = 0;
    socklen_t size = sizeof accepting;
    return ::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &size) == 0 && accepting != 0;
}

result<datagram_socket> datagram_socket::open(int family)
{
    if (family != AF_INET && family != AF_INET6 && family != AF_UNIX)
        return io::errno_code(EAFNOSUPPORT);
    const int fd = ::socket(family, SOCK_DGRAM | SOCK_CLOEXEC, family == AF_UNIX ? 0 : IPPROTO_UDP);
    if (fd < 0)
        return io::errno_code(errno);
    return datagram_socket(fd);
}

result<datagram_socket> datagram_socket::bind(const address& at, datagram_options options)
{
    auto s = open(at.family());
    if (!s)
        return s;
    auto bound = bind_with(s->fd(), at,
                           {{options.reuse_address, SOL_SOCKET, SO_REUSEADDR},
                            {options.reuse_port, SOL_SOCKET, SO_REUSEPORT},
                            {options.broadcast, SOL_SOCKET, SO_BROADCAST}},
                           options.remove_stale_path);
    if (!bound)
        return bound.error();
    return s;
}

result<void> datagram_socket::connect(const address& to) const noexcept
{
    if (::connect(fd_.get(), to.data(), to.size()) != 0)
        return io::errno_code(errno);
    return {};
}

task<result<void>> datagram_socket::close()
{
    if (!is_open())
        co_return result<void>();
    co_return co_await cancel_then_close(fd_.release_to_close());
}

result<address> datagram_socket::local_address() const { return name_of(fd_.get(), false); }
result<address> datagram_socket::peer_address() const { return name_of(fd_.get(), true); }

} // namespace coil::net
