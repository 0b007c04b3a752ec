// SPDX-License-Identifier: MIT
/// @file
/// `coil::net::stream_socket` and `coil::net::listener`: RAII stream sockets (TCP over IPv4
/// and IPv6, Unix) with awaitable connect, accept, receive and send, multishot accept as a
/// stream of connections, and multishot receive over a provided-buffer pool.
///
/// @code
/// auto server = coil::net::listener::bind(*coil::net::address::parse("127.0.0.1:8080"));
/// auto connections = server->connections();           // multishot accept
/// while (auto conn = co_await connections.next()) {
///     if (!*conn) continue;                              // EMFILE and friends: back off, go on
///     nursery.spawn(serve(std::move(**conn)));
/// }
/// @endcode
#pragma once

#include <coil/io/completion.hpp>
#include <coil/io/result.hpp>
#include <coil/io/ring.hpp>
#include <coil/net/address.hpp>
#include <coil/net/buffer_pool.hpp>
#include <coil/net/detail/owned_fd.hpp>
#include <coil/net/ops.hpp>
#include <coil/runtime/operation.hpp>
#include <coil/runtime/stream.hpp>
#include <coil/runtime/task.hpp>

#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>

namespace coil::net {

namespace ops {

/// Sends every byte of a `received_bundle`, gathering its buffers with `sendmsg(2)` (up to
/// `max_iovecs` per call); after a short send the rest is queued again from the completion
/// handler, like `send_all`. The iovec array and the message header live in the op (in the
/// awaiter), so nothing is allocated; the bundle is borrowed until the `co_await` completes.
struct send_all_bundle {
    static constexpr std::size_t max_iovecs = 16;

    int fd;
    received_bundle::iterator at; ///< the first buffer not wholly sent
    std::size_t offset;           ///< bytes of `*at` already sent
    std::size_t left;             ///< bytes still to send
    int flags;
    std::array<::iovec, max_iovecs> iov{};
    ::msghdr message{};

    std::error_code prepare(io::ring& r, std::uint64_t ud) noexcept
    {
        std::size_t count = 0;
        std::size_t skip = offset;
        std::size_t bytes = 0;
        for (auto it = at; count < max_iovecs && bytes < left; ++it) {
            const std::span<const std::byte> part = (*it).subspan(skip);
            skip = 0;
            iov[count++] = {const_cast<std::byte*>(part.data()), part.size()};
            bytes += part.size();
        }
        message = {};
        message.msg_iov = iov.data();
        message.msg_iovlen = count;
        return r.add_sendmsg(fd, &message, flags, ud);
    }
    bool resubmit_after(const io::completion& c) noexcept
    {
        if (c.result <= 0 || static_cast<std::size_t>(c.result) >= left)
            return false;
        auto sent = static_cast<std::size_t>(c.result);
        left -= sent;
        while (sent > 0) {
            const std::size_t in_this = (*at).size() - offset;
            if (sent < in_this) {
                offset += sent;
                break;
            }
            sent -= in_this;
            offset = 0;
            ++at;
        }
        return true;
    }
    result<void> complete(const io::completion& c) const noexcept
    {
        if (c.result < 0)
            return io::error_from_result(c.result);
        if (c.result == 0 && left != 0)
            return io::errno_code(EPIPE); // the socket took nothing: it is closed for sending
        return {};
    }
};

} // namespace ops

/// A connected stream socket. Owns its descriptor (closed by the destructor, once the ops
/// queued on the executor have reached the kernel, so none finds the number reused;
/// `close()` first cancels the ops pending on it). Move-only.
class stream_socket {
public:
    stream_socket() noexcept = default;
    /// Takes ownership of `fd`.
    explicit stream_socket(int fd) noexcept : fd_(fd) {}

    /// Connects to `to` (a socket of its family, then `connect`). The socket op goes through
    /// the ring where the kernel has it (Linux 5.19), else through socket(2).
    static task<result<stream_socket>> connect(address to);
    /// The same with a deadline on the handshake: `timed_out` if the peer has not answered
    /// within `timeout` (a host that drops SYNs otherwise keeps a connect waiting for about
    /// two minutes of retransmissions).
    static task<result<stream_socket>> connect(address to, std::chrono::nanoseconds timeout);

    int fd() const noexcept { return fd_.get(); }
    bool is_open() const noexcept { return fd_.get() >= 0; }
    /// Gives up ownership of the descriptor.
    int release() noexcept { return fd_.release(); }

    /// Receives up to `buffer.size()` bytes; 0 means the peer closed its side. Not for an
    /// empty buffer: as with `recv(2)`, that waits until data arrives (or the peer closes) and
    /// then yields 0 without taking any, which is no end of stream.
    operation<ops::recv> receive(std::span<std::byte> buffer, int flags = 0) const noexcept
    {
        return net::recv(fd_.get(), buffer, flags);
    }
    /// Sends some of `buffer` (maybe short); never raises SIGPIPE.
    operation<ops::send> send(std::span<const std::byte> buffer) const noexcept
    {
        return net::send(fd_.get(), buffer);
    }
    /// Sends all of `buffer`, queueing the rest again after a short send (one awaitable,
    /// nothing allocated); `buffer` is borrowed until the `co_await` completes.
    /// `.with_timeout(d)` bounds the whole transfer; a stop request or the deadline that
    /// interrupts it yields `operation_canceled` / `timed_out`, however much was sent.
    operation<ops::send_all> send_all(std::span<const std::byte> buffer) const noexcept
    {
        return net::send_all(fd_.get(), buffer);
    }
    /// Sends all of a receive bundle's bytes, its buffers gathered into `sendmsg(2)` calls
    /// (one for up to 16 buffers) instead of one send per buffer; otherwise as `send_all`.
    operation<ops::send_all_bundle> send_all(const received_bundle& bundle) const noexcept
    {
        return operation<ops::send_all_bundle>(
            {fd_.get(), bundle.begin(), 0, bundle.size(), MSG_NOSIGNAL});
    }
    /// A zero-copy send (Linux 6.0): `buffer` is borrowed until the kernel's notification,
    /// which the `co_await` waits for. Worth it for large buffers. The notification comes
    /// when nothing references the buffer any more: once the peer acknowledged the bytes (over
    /// loopback: read them) or the connection ended. A deadline, a stop request or
    /// `executor::stop()` cancels the send itself, but the op still ends only then, with the
    /// count it sent: towards a peer that stops reading it waits as long as the peer does, and
    /// so does a shutdown. Use `send` where the peer is not trusted to read. TCP only: a Unix
    /// socket answers `operation_not_supported`.
    operation<ops::send_zc> send_zero_copy(std::span<const std::byte> buffer) const noexcept
    {
        return net::send_zc(fd_.get(), buffer);
    }
    /// Every chunk the peer sends, in order, as buffers the kernel picked from `pool` (see
    /// `receive_stream`).
    auto receive(buffer_pool& pool, stream_options options = {}) const;
    /// The same as receive bundles (Linux 6.10): each completion may fill several buffers,
    /// yielded together as one `received_bundle` (see `receive_bundle_stream`). Fewer
    /// completions when data arrives faster than it is read. On an older kernel each bundle
    /// holds one buffer. Not over an incremental pool (the stream ends with
    /// `invalid_argument`).
    auto receive_bundles(buffer_pool& pool, stream_options options = {}) const;
    /// `shutdown(2)`: `SHUT_WR` (the default) sends end-of-stream, keeps receiving.
    operation<ops::shutdown> shutdown(int how = SHUT_WR) const noexcept
    {
        return net::shutdown(fd_.get(), how);
    }
    /// Cancels every op pending on the socket, without closing it: their awaiters resume with
    /// `operation_canceled` (or their real result, if they completed first). Yields how many
    /// ops it found.
    operation<ops::cancel_fd> cancel() const noexcept { return net::cancel_fd(fd_.get()); }
    /// Cancels every op pending on the socket (closing alone would not: the kernel holds its
    /// own reference), waits for that, then closes it. A receive stream made from it that is
    /// not in the kernel at that moment (waiting for a pool buffer, paused) ends with
    /// `operation_canceled` instead of arming again on the old descriptor number; so does
    /// one when the socket is destroyed.
    task<result<void>> close();

    /// TCP_NODELAY.
    result<void> set_no_delay(bool on = true) const noexcept;
    result<address> local_address() const;
    result<address> peer_address() const;

private:
    detail::owned_fd fd_;
};

/// Options for `listener::bind`.
struct listen_options {
    int backlog = 4096;
    /// SO_REUSEADDR (TCP): rebind at once after a restart.
    bool reuse_address = true;
    /// SO_REUSEPORT (TCP): several listeners (one per executor) share the port.
    bool reuse_port = false;
    /// TCP_NODELAY on the listener, which Linux copies to every connection it accepts: small
    /// writes go out at once instead of waiting for the peer's ACK (Nagle's algorithm). For
    /// request/response protocols that answer with several sends.
    bool no_delay = false;
    /// For a Unix path: remove a stale socket file at the path first (nobody is bound to it:
    /// a connect is refused and /proc/net/unix names no socket there). A live socket, one
    /// bound but not yet listening, and a file of any other kind are left, and the bind fails
    /// with `address_in_use`.
    bool remove_stale_path = true;
};

namespace ops {

/// `accept4(2)` yielding a `stream_socket`.
struct accept_socket {
    static constexpr bool yields_descriptor = true;
    int fd;
    std::error_code prepare(io::ring& r, std::uint64_t ud) noexcept
    {
        return r.add_accept(fd, nullptr, nullptr, SOCK_CLOEXEC, ud);
    }
    result<stream_socket> complete(const io::completion& c) const noexcept
    {
        if (c.result < 0)
            return io::error_from_result(c.result);
        return stream_socket(c.result);
    }
};

/// Errors after which an accept stream goes on (the listener is fine; the moment is not):
/// out of descriptors or memory, a connection aborted before it was accepted.
inline bool transient_accept_error(int error) noexcept
{
    switch (error) {
    case EMFILE:
    case ENFILE:
    case ENOBUFS:
    case ENOMEM:
    case ECONNABORTED:
    case EPROTO:
    case EPERM:
    case EINTR:
    case EAGAIN:
        return true;
    default:
        return false;
    }
}

/// Whether `fd` is a socket in the listening state (`SO_ACCEPTCONN`).
bool still_listening(int fd) noexcept;

/// Multishot accept (Linux 5.19; single-shot accepts re-armed after each connection where the
/// kernel refuses multishot): a connection per completion.
struct accept_multishot {
    int fd;
    bool multishot = true;
    /// Linked to the listener the stream was made from (`listener::connections()`): once it
    /// is closed, `fd` may name another file, and the stream arms no accept on it again.
    detail::fd_watch watch{};
    std::error_code prepare(io::ring& r, std::uint64_t ud) noexcept
    {
        if (watch.closed()) // what an accept pending at the close got too
            return std::make_error_code(std::errc::invalid_argument);
        return r.add_accept(fd, nullptr, nullptr, SOCK_CLOEXEC, ud,
                            multishot ? io::accept_mode::multishot : io::accept_mode::single);
    }
    result<stream_socket> complete(const io::completion& c) const noexcept
    {
        if (c.result < 0)
            return io::error_from_result(c.result);
        return stream_socket(c.result);
    }
    /// Goes on after a connection (single-shot, or the kernel ended the multishot) and after
    /// a transient error, which is delivered first so that the server can back off.
    bool rearm_after(const io::completion& c) const noexcept
    {
        return c.result >= 0 || transient_accept_error(-c.result);
    }
    /// A kernel without multishot accept answers EINVAL: fall back to single-shot accepts. A
    /// socket that stopped listening (`listener::close()`) answers EINVAL too: that ends the
    /// stream.
    bool retry_after(const io::completion& c) noexcept
    {
        if (c.result == -EINVAL && multishot && !watch.closed() && still_listening(fd)) {
            multishot = false;
            return true;
        }
        return false;
    }
    /// A connection accepted for nobody (the stream was destroyed first) is closed: the peer
    /// sees it end.
    void discard(const io::completion& c) const noexcept
    {
        if (c.result >= 0)
            ::close(c.result);
    }
};

/// What receives over a buffer pool share: when to arm again, running dry, falling back from
/// multishot.
struct pool_receive_base {
    int fd;
    buffer_pool* pool;
    bool multishot = true;
    buffer_pool::user user{pool}; // the pool checks, when destroyed, that no receive is left
    /// Linked to the socket the stream was made from (`receive(pool)`, ...): once it is
    /// closed, `fd` may name another file, and the stream arms no receive on it again.
    detail::fd_watch watch{};

    /// Data without `more` (the kernel ended the multishot, or single-shot mode): go on. The
    /// end of the stream (0) and errors end it.
    bool rearm_after(const io::completion& c) const noexcept { return c.result > 0; }
    /// The pool ran dry (ENOBUFS): arm again once a buffer is back (see `park`). A kernel
    /// without multishot receive (EINVAL): fall back to single-shot receives.
    bool retry_after(const io::completion& c) noexcept
    {
        if (c.result == -ENOBUFS)
            return true;
        if (c.result == -EINVAL && multishot) {
            multishot = false;
            return true;
        }
        return false;
    }
    /// Waits in the pool's queue for a buffer; not once the socket is closed (the stream then
    /// ends: `prepare` refuses).
    bool park(detail::rearm_waiter& waiter) noexcept
    {
        if (watch.closed() || !pool->park(waiter))
            return false;
        watch.parked_at(waiter);
        return true;
    }
    /// Why the receive cannot be armed on `r`, if it cannot: the socket was closed
    /// (`operation_canceled`, as for a receive pending at the close), or the ring is not the
    /// pool's (see `foreign`).
    std::error_code unusable(const io::ring& r) const noexcept
    {
        if (watch.closed())
            return std::make_error_code(std::errc::operation_canceled);
        if (foreign(r))
            return std::make_error_code(std::errc::invalid_argument);
        return {};
    }
    /// A receive started on a ring the pool is not registered with (a stream made on one
    /// executor and first awaited on another) ends with EINVAL instead of taking buffers
    /// from whatever that ring has under the same group id.
    bool foreign(const io::ring& r) const noexcept { return !pool->registered_with(r); }
    /// Takes the piece a completion names from the pool, in arrival order, and keeps its
    /// offset (an incremental pool's pieces start where the last one ended) in the stream's
    /// copy of the completion.
    void arrived(io::completion& c) noexcept
    {
        if (c.has_buffer())
            c.user_data = pool->arrived(c);
        if (c.result == -ENOBUFS)
            pool->note_exhausted();
    }
    /// A buffer nobody took goes back.
    void discard(const io::completion& c) const noexcept
    {
        if (c.has_buffer())
            pool->drop(c.buffer_id());
    }
};

/// Multishot receive over a buffer pool (Linux 6.0; single-shot receives, still over the
/// pool, where the kernel refuses multishot).
struct receive_provided : pool_receive_base {
    std::error_code prepare(io::ring& r, std::uint64_t ud) noexcept
    {
        if (auto error = unusable(r))
            return error;
        return r.add_recv_provided(fd, pool->group(), 0,
                                   multishot ? io::recv_mode::multishot : io::recv_mode::single,
                                   ud);
    }
    /// A buffer of received bytes; an empty one at the end of the stream.
    result<received_buffer> complete(const io::completion& c) noexcept
    {
        if (c.result <= 0 || !c.has_buffer()) {
            if (c.has_buffer())
                pool->drop(c.buffer_id()); // a buffer with no bytes in it
            if (c.result < 0)
                return io::error_from_result(c.result);
            return received_buffer();
        }
        return pool->lend(c.buffer_id(), static_cast<std::uint32_t>(c.user_data),
                          static_cast<std::size_t>(c.result));
    }
};

/// Multishot receive bundles over a buffer pool (Linux 6.10): each completion may fill several
/// buffers. Where the kernel has no bundles, plain receives (each a bundle of one buffer).
struct receive_bundles_provided : pool_receive_base {
    std::error_code prepare(io::ring& r, std::uint64_t ud) noexcept
    {
        if (auto error = unusable(r))
            return error;
        if (pool->incremental())
            return std::make_error_code(std::errc::invalid_argument);
        io::recv_mode mode = multishot ? io::recv_mode::multishot : io::recv_mode::single;
        if (r.has_recv_bundles())
            mode = multishot ? io::recv_mode::multishot_bundle : io::recv_mode::bundle;
        return r.add_recv_provided(fd, pool->group(), 0, mode, ud);
    }
    /// Takes every buffer the completion filled, in arrival order; the stream's copy of the
    /// completion keeps how many.
    void arrived(io::completion& c) noexcept
    {
        if (c.has_buffer())
            c.user_data = pool->arrived_bundle(c);
        if (c.result == -ENOBUFS)
            pool->note_exhausted();
    }
    /// The bytes received; an empty bundle at the end of the stream.
    result<received_bundle> complete(const io::completion& c) noexcept
    {
        const auto buffers = static_cast<unsigned>(c.user_data);
        if (c.result <= 0 || !c.has_buffer()) {
            if (c.has_buffer())
                pool->drop_bundle(c.buffer_id(), buffers);
            if (c.result < 0)
                return io::error_from_result(c.result);
            return received_bundle();
        }
        return pool->lend_bundle(c.buffer_id(), buffers, static_cast<std::size_t>(c.result));
    }
    void discard(const io::completion& c) const noexcept
    {
        if (c.has_buffer())
            pool->drop_bundle(c.buffer_id(), static_cast<unsigned>(c.user_data));
    }
};

} // namespace ops

/// The stream `stream_socket::receive(pool)` returns: `co_await s.next()` yields
/// `result<received_buffer>`; an empty buffer marks the end (the peer closed its side), then
/// the stream ends. A pool that runs dry pauses the receive until a buffer comes back: no
/// byte is lost or reordered.
using receive_stream = stream<ops::receive_provided>;

inline auto stream_socket::receive(buffer_pool& pool, stream_options options) const
{
    pool.check_used_here();
    ops::receive_provided op{{fd_.get(), &pool}};
    fd_.watch(op.watch);
    return receive_stream(std::move(op), options);
}

/// The stream `stream_socket::receive_bundles(pool)` returns: `co_await s.next()` yields
/// `result<received_bundle>`; an empty bundle marks the end.
using receive_bundle_stream = stream<ops::receive_bundles_provided>;

inline auto stream_socket::receive_bundles(buffer_pool& pool, stream_options options) const
{
    pool.check_used_here();
    ops::receive_bundles_provided op{{fd_.get(), &pool}};
    fd_.watch(op.watch);
    return receive_bundle_stream(std::move(op), options);
}

/// A listening stream socket. Owns its descriptor. Move-only.
class listener {
public:
    listener() noexcept = default;

    /// socket + bind + listen at `at` (synchronous: setup, not I/O). Port 0 picks a free
    /// port (see `local_address`). Errors are errno values, e.g. `address_in_use`.
    static result<listener> bind(const address& at, listen_options options = {});

    int fd() const noexcept { return fd_.get(); }
    bool is_open() const noexcept { return fd_.get() >= 0; }
    result<address> local_address() const;
    /// Stops listening now: shuts the socket down, then closes the descriptor. Every accept
    /// pending on it (an `accept()` awaited, a `connections()` stream) ends with
    /// `invalid_argument`, connections still in the backlog are reset, and new ones are
    /// refused. Closing alone would do none of that while an accept is pending: the kernel
    /// holds its own reference, and the socket would go on listening (and accepting).
    ///
    /// The shutdown reaches every holder of the socket: a descriptor inherited by a forked
    /// process stops listening there too. Destroying a listener only closes its descriptor.
    /// Either way a `connections()` stream that is not in the kernel (paused, or after a
    /// transient error) ends with `invalid_argument` at its next `next()` instead of arming
    /// an accept on the old descriptor number.
    void close() noexcept;

    /// Accepts one connection.
    operation<ops::accept_socket> accept() const noexcept
    {
        return operation<ops::accept_socket>({fd_.get()});
    }
    /// Every incoming connection, as a stream (multishot accept). Transient errors (EMFILE,
    /// ENFILE, ECONNABORTED, ...) are delivered and the stream goes on.
    stream<ops::accept_multishot> connections(stream_options options = {}) const
    {
        ops::accept_multishot op{fd_.get()};
        fd_.watch(op.watch);
        return stream<ops::accept_multishot>(std::move(op), options);
    }

private:
    explicit listener(int fd) noexcept : fd_(fd) {}
    detail::owned_fd fd_;
};

using tcp_listener = listener;
using unix_listener = listener;
using tcp_stream = stream_socket;
using unix_stream = stream_socket;

} // namespace coil::net
