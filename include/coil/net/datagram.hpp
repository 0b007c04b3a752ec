// SPDX-License-Identifier: MIT
/// @file
/// `coil::net::datagram_socket`: UDP over IPv4 and IPv6, and Unix datagram sockets, with
/// awaitable `send_to` / `receive_from` (and `send` / `receive` once connected).
///
/// @code
/// auto server = coil::net::datagram_socket::bind(coil::net::address::loopback_v4(5353));
/// std::array<std::byte, 1500> buffer;
/// auto got = co_await server->receive_from(buffer);   // result<datagram>
/// if (got && !got->truncated)
///     co_await server->send_to(std::span(buffer).first(got->size), got->from);
/// @endcode
#pragma once

#include <coil/io/completion.hpp>
#include <coil/io/result.hpp>
#include <coil/io/ring.hpp>
#include <coil/net/address.hpp>
#include <coil/net/detail/owned_fd.hpp>
#include <coil/net/ops.hpp>
#include <coil/net/socket.hpp>
#include <coil/runtime/operation.hpp>
#include <coil/runtime/stream.hpp>
#include <coil/runtime/task.hpp>

#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

namespace coil::net {

/// What `datagram_socket::receive_from` yields.
struct datagram {
    /// Bytes of the datagram written into the buffer (0 is a valid, empty datagram: a datagram
    /// socket has no end-of-stream).
    std::size_t size = 0;
    /// The sender (empty for an unbound Unix datagram sender).
    address from;
    /// The datagram was longer than the buffer: `size` bytes arrived, the rest is discarded by
    /// the kernel (a datagram is read whole or not at all).
    bool truncated = false;
};

namespace ops {

/// `sendmsg(2)` of one buffer to one address. The address is copied into the op, so the
/// caller's need not outlive the call; the buffer is borrowed until the `co_await` completes.
/// The message header and its iovec live in the op (in the awaiter): nothing is allocated.
struct send_to {
    int fd;
    std::span<const std::byte> buffer;
    address to;
    int flags;
    ::iovec iov{};
    ::msghdr message{};

    std::error_code prepare(io::ring& r, std::uint64_t ud) noexcept
    {
        iov = {const_cast<std::byte*>(buffer.data()), buffer.size()};
        message = {};
        message.msg_name = to.data();
        message.msg_namelen = to.size();
        message.msg_iov = &iov;
        message.msg_iovlen = 1;
        return r.add_sendmsg(fd, &message, flags, ud);
    }
    result<std::size_t> complete(const io::completion& c) const noexcept { return byte_count(c); }
};

/// `recvmsg(2)` of one datagram into one buffer, with the sender's address. The kernel writes
/// the address and the message flags into the op's own header, read back on completion.
struct receive_from {
    int fd;
    std::span<std::byte> buffer;
    int flags;
    address from{};
    ::iovec iov{};
    ::msghdr message{};

    std::error_code prepare(io::ring& r, std::uint64_t ud) noexcept
    {
        iov = {buffer.data(), buffer.size()};
        message = {};
        message.msg_name = from.data();
        message.msg_namelen = from.capacity();
        message.msg_iov = &iov;
        message.msg_iovlen = 1;
        return r.add_recvmsg(fd, &message, flags, ud);
    }
    result<datagram> complete(const io::completion& c) noexcept
    {
        if (c.result < 0)
            return io::error_from_result(c.result);
        datagram d;
        // With MSG_TRUNC in `flags` the kernel reports the datagram's whole length.
        const auto length = static_cast<std::size_t>(c.result);
        d.size = length < buffer.size() ? length : buffer.size();
        d.truncated = (message.msg_flags & MSG_TRUNC) != 0 || length > buffer.size();
        // A sender without an address (a socketpair's peer) leaves the name unwritten.
        if (message.msg_namelen == 0)
            from = address();
        else
            from.resize(message.msg_namelen < from.capacity() ? message.msg_namelen
                                                              : from.capacity());
        d.from = from;
        return d;
    }
};

} // namespace ops

/// What `datagram_socket::receive_datagrams(pool)` yields: one datagram in a pool buffer, with
/// its sender. `data` goes back to the pool when released, like any `received_buffer`.
struct received_datagram {
    /// The payload (may be empty: a datagram of 0 bytes).
    received_buffer data;
    /// The sender (empty for an unbound Unix datagram sender).
    address from;
    /// The datagram was longer than the room a pool buffer left for it: the rest is lost.
    bool truncated = false;
};

namespace ops {

/// Multishot `recvmsg` over a buffer pool (Linux 6.0): each completion is one datagram in its
/// own pool buffer, behind a header and the sender's address (single-shot receives, still over
/// the pool, where the kernel refuses multishot). Not for incremental pools (`EINVAL`).
/// What a pool buffer of a multishot datagram receive holds before the payload: the kernel's
/// `io_uring_recvmsg_out` (16 bytes); the sender's address room (128 bytes) follows it.
inline constexpr std::size_t datagram_header_room = 16;

struct receive_from_provided : pool_receive_base {
    // The kernel takes the name and control lengths from here when the op is armed, and (in
    // single-shot mode) writes the sender into `sender`. Set up again at each arming.
    ::msghdr message{};
    address sender{};

    std::error_code prepare(io::ring& r, std::uint64_t ud) noexcept
    {
        // A multishot receive puts a 16-byte header and the address room before the payload,
        // and the kernel ends it with EFAULT when a buffer has no room left for a payload:
        // refused here, on every kernel alike.
        if (auto error = unusable(r))
            return error;
        if (pool->incremental() ||
            pool->buffer_size() <= datagram_header_room + sender.capacity())
            return std::make_error_code(std::errc::invalid_argument);
        message = {};
        message.msg_namelen = sender.capacity();
        if (!multishot)
            message.msg_name = sender.data();
        return r.add_recvmsg_provided(fd, &message, pool->group(), 0,
                                      multishot ? io::recv_mode::multishot
                                                : io::recv_mode::single,
                                      ud);
    }
    /// An empty datagram is data, not an end: only errors end the stream.
    bool rearm_after(const io::completion& c) const noexcept { return c.result >= 0; }

    result<received_datagram> complete(const io::completion& c) noexcept
    {
        if (c.result < 0) {
            if (c.has_buffer())
                pool->drop(c.buffer_id());
            return io::error_from_result(c.result);
        }
        const auto length = static_cast<std::size_t>(c.result);
        received_datagram d;
        if (!multishot) {
            // The payload alone (an empty datagram may take no buffer); the sender and
            // MSG_TRUNC in `message`.
            if (message.msg_namelen != 0) {
                d.from = sender;
                d.from.resize(std::min<std::size_t>(message.msg_namelen, sender.capacity()));
            }
            d.truncated = (message.msg_flags & MSG_TRUNC) != 0;
            if (c.has_buffer())
                d.data = pool->lend(c.buffer_id(), 0, length);
            return d;
        }
        if (!c.has_buffer()) // cannot happen: every multishot completion carries its header
            return std::make_error_code(std::errc::bad_message);
        const std::uint16_t id = c.buffer_id();
        // io_uring_recvmsg_out, then msg_namelen bytes of name, then the payload.
        struct header {
            std::uint32_t namelen, controllen, payloadlen, flags;
        } h{};
        const std::size_t name_at = sizeof h;
        const std::size_t payload_at = name_at + message.msg_namelen + message.msg_controllen;
        const std::span<const std::byte> raw = pool->held(id, length);
        if (length < payload_at) { // cannot happen: the kernel always writes the header
            pool->drop(id);
            return std::make_error_code(std::errc::bad_message);
        }
        std::memcpy(&h, raw.data(), sizeof h);
        const std::size_t name_length = std::min<std::size_t>(h.namelen, message.msg_namelen);
        if (name_length != 0) {
            std::memcpy(d.from.data(), raw.data() + name_at, name_length);
            d.from.resize(name_length);
        }
        d.truncated = (h.flags & MSG_TRUNC) != 0;
        d.data = pool->lend(id, static_cast<std::uint32_t>(payload_at), length - payload_at);
        return d;
    }
};

} // namespace ops

/// The stream `datagram_socket::receive_datagrams(pool)` returns: `co_await s.next()` yields
/// `result<received_datagram>`, one per datagram, in arrival order. A pool that runs dry pauses
/// the receive until a buffer comes back (the kernel queues datagrams in the socket's receive
/// buffer meanwhile, and drops what does not fit there, as it would for any UDP receiver).
using datagram_stream = stream<ops::receive_from_provided>;

/// Options for `datagram_socket::bind`.
struct datagram_options {
    /// SO_REUSEADDR.
    bool reuse_address = false;
    /// SO_REUSEPORT: several sockets (one per executor) share the port, the kernel spreading
    /// datagrams between them by flow.
    bool reuse_port = false;
    /// SO_BROADCAST: `send_to` may name a broadcast address.
    bool broadcast = false;
    /// For a Unix path: remove a stale socket file at the path first (nobody is bound to it:
    /// a connect is refused and /proc/net/unix names no socket there). A live socket, one
    /// bound but not yet listening, and a file of any other kind are left, and the bind fails
    /// with `address_in_use`.
    bool remove_stale_path = true;
};

/// A datagram socket (UDP over IPv4 or IPv6, or a Unix datagram socket). Owns its descriptor
/// (closed by the destructor once the ops queued on the executor have reached the kernel;
/// `close()` first cancels the ops pending on it).
/// Move-only. Every datagram is sent and received whole: a send never sends part of one, a
/// receive into a buffer too small for one says so (`datagram::truncated`).
class datagram_socket {
public:
    datagram_socket() noexcept = default;
    /// Takes ownership of `fd`.
    explicit datagram_socket(int fd) noexcept : fd_(fd) {}

    /// A socket bound to `at` (port 0: the kernel picks one, see `local_address`).
    static result<datagram_socket> bind(const address& at, datagram_options options = {});
    /// An unbound socket of `family` (AF_INET, AF_INET6 or AF_UNIX). An IP socket gets a port
    /// at its first send; an unbound Unix socket can send but not be answered.
    static result<datagram_socket> open(int family);

    /// Sets the default peer: `send` and `receive` then need no address, and datagrams from
    /// other addresses are dropped by the kernel. Immediate (a datagram socket has no
    /// handshake), so not awaited.
    result<void> connect(const address& to) const noexcept;

    int fd() const noexcept { return fd_.get(); }
    bool is_open() const noexcept { return fd_.get() >= 0; }
    /// Gives up ownership of the descriptor.
    int release() noexcept { return fd_.release(); }

    /// Sends `buffer` as one datagram to `to`; yields the count (all of it, or an error such
    /// as `message_size` for a datagram too large for the protocol).
    operation<ops::send_to> send_to(std::span<const std::byte> buffer, const address& to,
                                    int flags = MSG_NOSIGNAL) const noexcept
    {
        return operation<ops::send_to>({fd_.get(), buffer, to, flags});
    }
    /// Receives one datagram into `buffer`, with its sender. `flags`: `MSG_PEEK` leaves it
    /// queued.
    operation<ops::receive_from> receive_from(std::span<std::byte> buffer,
                                              int flags = 0) const noexcept
    {
        return operation<ops::receive_from>({fd_.get(), buffer, flags});
    }
    /// Receives datagrams into buffers of `pool`, one completion each, with their senders:
    /// one armed multishot `recvmsg` serves the socket until the stream is destroyed (Linux
    /// 6.0; single-shot receives over the pool before). A datagram longer than a buffer less
    /// the header (16 bytes) and the address room (128 bytes) is cut and marked `truncated`.
    /// The pool must not be incremental, must have buffers larger than 144 bytes, and must
    /// outlive the stream; the stream's first `next()` yields `invalid_argument` otherwise.
    datagram_stream receive_datagrams(buffer_pool& pool, stream_options options = {}) const
    {
        pool.check_used_here();
        ops::receive_from_provided op{{fd_.get(), &pool}};
        fd_.watch(op.watch);
        return datagram_stream(std::move(op), options);
    }
    /// Sends one datagram to the connected peer.
    operation<ops::send> send(std::span<const std::byte> buffer) const noexcept
    {
        return net::send(fd_.get(), buffer);
    }
    /// Receives one datagram from the connected peer; yields the bytes written into `buffer`
    /// (a longer datagram is cut to the buffer; use `receive_from` to learn that it was).
    operation<ops::recv> receive(std::span<std::byte> buffer, int flags = 0) const noexcept
    {
        return net::recv(fd_.get(), buffer, flags);
    }
    /// Cancels every op pending on the socket without closing it (see `stream_socket`).
    operation<ops::cancel_fd> cancel() const noexcept { return net::cancel_fd(fd_.get()); }
    /// Cancels every op pending on the socket, waits for that, then closes it.
    task<result<void>> close();

    result<address> local_address() const;
    /// The connected peer (`not_connected` before `connect`).
    result<address> peer_address() const;

private:
    detail::owned_fd fd_;
};

using udp_socket = datagram_socket;
using unix_datagram_socket = datagram_socket;

} // namespace coil::net
