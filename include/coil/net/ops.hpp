// SPDX-License-Identifier: MIT
/// @file
/// The awaitable socket operations: socket, accept, connect, recv, send, send_zc, recvmsg,
/// sendmsg, shutdown, and cancelling every op on a descriptor.
///
/// Each yields a `result<T>` (no exceptions for I/O results), is cancellable through the
/// awaiting task's `std::stop_token`, takes `with_timeout(d)`, and borrows its buffers,
/// addresses and message headers until the `co_await` completes. `stream_socket` and
/// `listener` (`<coil/net/socket.hpp>`) wrap them for everyday use.
#pragma once

#include <coil/io/completion.hpp>
#include <coil/io/result.hpp>
#include <coil/io/ring.hpp>
#include <coil/runtime/operation.hpp>
#include <coil/runtime/ops.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <span>

namespace coil::net {

namespace ops {

inline result<std::size_t> byte_count(const io::completion& c) noexcept
{
    if (c.result < 0)
        return io::error_from_result(c.result);
    return static_cast<std::size_t>(c.result);
}

inline result<int> descriptor(const io::completion& c) noexcept
{
    if (c.result < 0)
        return io::error_from_result(c.result);
    return c.result;
}

/// `socket(2)` through the ring (Linux 5.19); yields the new descriptor.
struct socket {
    static constexpr bool yields_descriptor = true;
    int domain;
    int type;
    int protocol;
    std::error_code prepare(io::ring& r, std::uint64_t ud) noexcept
    {
        return r.add_socket(domain, type, protocol, ud);
    }
    result<int> complete(const io::completion& c) const noexcept { return descriptor(c); }
};

/// `accept4(2)`; yields the new descriptor. `peer` / `peer_length` may be null.
struct accept {
    static constexpr bool yields_descriptor = true;
    int fd;
    ::sockaddr* peer;
    ::socklen_t* peer_length;
    int flags;
    std::error_code prepare(io::ring& r, std::uint64_t ud) noexcept
    {
        return r.add_accept(fd, peer, peer_length, flags, ud);
    }
    result<int> complete(const io::completion& c) const noexcept { return descriptor(c); }
};

/// `connect(2)`.
struct connect {
    int fd;
    const ::sockaddr* address;
    ::socklen_t length;
    std::error_code prepare(io::ring& r, std::uint64_t ud) noexcept
    {
        return r.add_connect(fd, address, length, ud);
    }
    result<void> complete(const io::completion& c) const noexcept
    {
        if (c.result < 0)
            return io::error_from_result(c.result);
        return {};
    }
};

/// `recv(2)` into a buffer; yields the count (0: the peer closed its side, when `buffer` is
/// not empty; an empty one waits for data and yields 0, as `recv(2)` does).
struct recv {
    int fd;
    std::span<std::byte> buffer;
    int flags;
    std::error_code prepare(io::ring& r, std::uint64_t ud) noexcept
    {
        return r.add_recv(fd, buffer, flags, ud);
    }
    result<std::size_t> complete(const io::completion& c) const noexcept { return byte_count(c); }
};

/// `send(2)`; yields the count (maybe short).
struct send {
    int fd;
    std::span<const std::byte> buffer;
    int flags;
    std::error_code prepare(io::ring& r, std::uint64_t ud) noexcept
    {
        return r.add_send(fd, buffer, flags, ud);
    }
    result<std::size_t> complete(const io::completion& c) const noexcept { return byte_count(c); }
};

/// Sends the whole of `rest`: after a short send the rest is queued again from the completion
/// handler (`resubmitting_op`), so the awaiting coroutine wakes once, when everything is sent or
/// a send failed, and nothing is allocated. A peer that stops reading keeps it waiting: give it
/// a deadline with `with_timeout`, which covers the whole transfer.
struct send_all {
    int fd;
    std::span<const std::byte> rest; ///< what is still to send; advanced after each short send
    int flags;
    std::error_code prepare(io::ring& r, std::uint64_t ud) noexcept
    {
        return r.add_send(fd, rest, flags, ud);
    }
    bool resubmit_after(const io::completion& c) noexcept
    {
        if (c.result <= 0 || static_cast<std::size_t>(c.result) >= rest.size())
            return false;
        rest = rest.subspan(static_cast<std::size_t>(c.result));
        return true;
    }
    result<void> complete(const io::completion& c) const noexcept
    {
        if (c.result < 0)
            return io::error_from_result(c.result);
        if (c.result == 0 && !rest.empty())
            return io::errno_code(EPIPE); // the socket took nothing: it is closed for sending
        return {};
    }
};

/// A zero-copy send (`IORING_OP_SEND_ZC`, Linux 6.0): yields the count once the kernel's
/// notification says it no longer reads the buffer, so the buffer is borrowed until then.
struct send_zc {
    int fd;
    std::span<const std::byte> buffer;
    int flags;
    std::error_code prepare(io::ring& r, std::uint64_t ud) noexcept
    {
        return r.add_send_zc(fd, buffer, flags, ud);
    }
    result<std::size_t> complete(const io::completion& c) const noexcept { return byte_count(c); }
};

/// `recvmsg(2)`. The header, its iovecs and buffers are borrowed until completion.
struct recvmsg {
    int fd;
    ::msghdr* message;
    int flags;
    std::error_code prepare(io::ring& r, std::uint64_t ud) noexcept
    {
        return r.add_recvmsg(fd, message, flags, ud);
    }
    result<std::size_t> complete(const io::completion& c) const noexcept { return byte_count(c); }
};

/// `sendmsg(2)`. The header, its iovecs and buffers are borrowed until completion.
struct sendmsg {
    int fd;
    const ::msghdr* message;
    int flags;
    std::error_code prepare(io::ring& r, std::uint64_t ud) noexcept
    {
        return r.add_sendmsg(fd, message, flags, ud);
    }
    result<std::size_t> complete(const io::completion& c) const noexcept { return byte_count(c); }
};

/// `shutdown(2)`.
struct shutdown {
    int fd;
    int how;
    std::error_code prepare(io::ring& r, std::uint64_t ud) noexcept
    {
        return r.add_shutdown(fd, how, ud);
    }
    result<void> complete(const io::completion& c) const noexcept
    {
        if (c.result < 0)
            return io::error_from_result(c.result);
        return {};
    }
};

using coil::ops::cancel_fd; // closing a descriptor does not cancel its ops (runtime/ops.hpp)

} // namespace ops

inline operation<ops::accept> accept(int fd, ::sockaddr* peer = nullptr,
                                     ::socklen_t* peer_length = nullptr,
                                     int flags = SOCK_CLOEXEC) noexcept
{
    return operation<ops::accept>({fd, peer, peer_length, flags});
}
inline operation<ops::connect> connect(int fd, const ::sockaddr* address,
                                       ::socklen_t length) noexcept
{
    return operation<ops::connect>({fd, address, length});
}
inline operation<ops::recv> recv(int fd, std::span<std::byte> buffer, int flags = 0) noexcept
{
    return operation<ops::recv>({fd, buffer, flags});
}
inline operation<ops::send> send(int fd, std::span<const std::byte> buffer,
                                 int flags = MSG_NOSIGNAL) noexcept
{
    return operation<ops::send>({fd, buffer, flags});
}
/// Sends all of `buffer` (see `ops::send_all`); yields an empty result or the first error.
inline operation<ops::send_all> send_all(int fd, std::span<const std::byte> buffer,
                                         int flags = MSG_NOSIGNAL) noexcept
{
    return operation<ops::send_all>({fd, buffer, flags});
}
inline operation<ops::send_zc> send_zc(int fd, std::span<const std::byte> buffer,
                                       int flags = MSG_NOSIGNAL) noexcept
{
    return operation<ops::send_zc>({fd, buffer, flags});
}
inline operation<ops::recvmsg> recvmsg(int fd, ::msghdr* message, int flags = 0) noexcept
{
    return operation<ops::recvmsg>({fd, message, flags});
}
inline operation<ops::sendmsg> sendmsg(int fd, const ::msghdr* message,
                                       int flags = MSG_NOSIGNAL) noexcept
{
    return operation<ops::sendmsg>({fd, message, flags});
}
inline operation<ops::shutdown> shutdown(int fd, int how) noexcept
{
    return operation<ops::shutdown>({fd, how});
}
using coil::cancel_fd;

} // namespace coil::net
