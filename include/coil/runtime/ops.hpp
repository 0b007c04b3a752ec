// SPDX-License-Identifier: MIT
/// @file
/// The awaitable file and descriptor operations: read, write, readv, writev, fsync, fdatasync,
/// fallocate, poll, nop, openat, close, statx, and the timers behind sleep_for / sleep_until.
///
/// Each function returns an `operation<...>` to `co_await`; it yields a `result<T>` holding the
/// value or a `std::error_code` (`std::generic_category()` errno values). No I/O error throws.
/// Arguments passed by span or pointer are borrowed until the `co_await` completes.
///
/// @code
/// std::array<std::byte, 4096> buf;
/// coil::result<std::size_t> n = co_await coil::read(fd, buf, 0);
/// if (!n) fmt::print("read failed: {}\n", n.error().message());
/// @endcode
#pragma once

#include <coil/io/error.hpp>
#include <coil/io/result.hpp>
#include <coil/io/ring.hpp>
#include <coil/runtime/operation.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <system_error>

struct iovec;
struct statx;

namespace coil {

/// An offset meaning "the file's current position" (for pipes, sockets and other streams).
inline constexpr std::uint64_t current_position = ~std::uint64_t{0};

namespace ops {

inline result<std::size_t> size_result(std::int32_t res) noexcept
{
    if (res < 0)
        return io::error_from_result(res);
    return static_cast<std::size_t>(res);
}

inline result<void> void_result(std::int32_t res) noexcept
{
    if (res < 0)
        return io::error_from_result(res);
    return {};
}

struct nop {
    std::error_code prepare(io::ring& r, std::uint64_t ud, io::sqe_flags f) noexcept
    {
        return r.add_nop(ud, f);
    }
    result<void> complete(std::int32_t res) const noexcept { return void_result(res); }
};

struct read {
    int fd;
    std::span<std::byte> buffer;
    std::uint64_t offset;
    std::error_code prepare(io::ring& r, std::uint64_t ud, io::sqe_flags f) noexcept
    {
        return r.add_read(fd, buffer, offset, ud, f);
    }
    result<std::size_t> complete(std::int32_t res) const noexcept { return size_result(res); }
};

struct write {
    int fd;
    std::span<const std::byte> buffer;
    std::uint64_t offset;
    std::error_code prepare(io::ring& r, std::uint64_t ud, io::sqe_flags f) noexcept
    {
        return r.add_write(fd, buffer, offset, ud, f);
    }
    result<std::size_t> complete(std::int32_t res) const noexcept { return size_result(res); }
};

struct readv {
    int fd;
    std::span<const ::iovec> buffers;
    std::uint64_t offset;
    std::error_code prepare(io::ring& r, std::uint64_t ud, io::sqe_flags f) noexcept
    {
        return r.add_readv(fd, buffers, offset, ud, f);
    }
    result<std::size_t> complete(std::int32_t res) const noexcept { return size_result(res); }
};

struct writev {
    int fd;
    std::span<const ::iovec> buffers;
    std::uint64_t offset;
    std::error_code prepare(io::ring& r, std::uint64_t ud, io::sqe_flags f) noexcept
    {
        return r.add_writev(fd, buffers, offset, ud, f);
    }
    result<std::size_t> complete(std::int32_t res) const noexcept { return size_result(res); }
};

struct fsync {
    int fd;
    io::fsync_mode mode;
    std::error_code prepare(io::ring& r, std::uint64_t ud, io::sqe_flags f) noexcept
    {
        return r.add_fsync(fd, mode, ud, f);
    }
    result<void> complete(std::int32_t res) const noexcept { return void_result(res); }
};

struct fallocate {
    int fd;
    int mode;
    std::uint64_t offset;
    std::uint64_t length;
    std::error_code prepare(io::ring& r, std::uint64_t ud, io::sqe_flags f) noexcept
    {
        return r.add_fallocate(fd, mode, offset, length, ud, f);
    }
    result<void> complete(std::int32_t res) const noexcept { return void_result(res); }
};

struct poll {
    int fd;
    std::uint32_t events;
    std::error_code prepare(io::ring& r, std::uint64_t ud, io::sqe_flags f) noexcept
    {
        return r.add_poll(fd, events, ud, io::poll_mode::oneshot, f);
    }
    result<std::uint32_t> complete(std::int32_t res) const noexcept
    {
        if (res < 0)
            return io::error_from_result(res);
        return static_cast<std::uint32_t>(res);
    }
};

struct openat {
    int dirfd;
    const char* path;
    int flags;
    unsigned mode;
    std::error_code prepare(io::ring& r, std::uint64_t ud, io::sqe_flags f) noexcept
    {
        return r.add_openat(dirfd, path, flags, mode, ud, f);
    }
    result<int> complete(std::int32_t res) const noexcept
    {
        if (res < 0)
            return io::error_from_result(res);
        return res;
    }
};

struct close {
    int fd;
    std::error_code prepare(io::ring& r, std::uint64_t ud, io::sqe_flags f) noexcept
    {
        return r.add_close(fd, ud, f);
    }
    result<void> complete(std::int32_t res) const noexcept { return void_result(res); }
};

struct statx {
    int dirfd;
    const char* path;
    int flags;
    unsigned mask;
    struct ::statx* out;
    std::error_code prepare(io::ring& r, std::uint64_t ud, io::sqe_flags f) noexcept
    {
        return r.add_statx(dirfd, path, flags, mask, out, ud, f);
    }
    result<void> complete(std::int32_t res) const noexcept { return void_result(res); }
};

/// A timer. It lives in the awaiter, so the timespec the kernel reads stays put.
struct timer {
    io::timespec64 when;
    io::timeout_clock clock;
    std::error_code prepare(io::ring& r, std::uint64_t ud, io::sqe_flags f) noexcept
    {
        return r.add_timeout(&when, 0, clock, ud, f);
    }
    result<void> complete(std::int32_t res) const noexcept
    {
        return res == -ETIME ? result<void>() : void_result(res); // -ETIME: the timer fired
    }
};

} // namespace ops

/// Reads up to `buffer.size()` bytes at `offset` (or `current_position`). Yields the count;
/// 0 at end of file. `buffer` must stay valid until the co_await completes.
inline operation<ops::read> read(int fd, std::span<std::byte> buffer,
                                 std::uint64_t offset = current_position) noexcept
{
    return operation<ops::read>({fd, buffer, offset});
}

/// Writes `buffer` at `offset` (or `current_position`). Yields the count (maybe short).
inline operation<ops::write> write(int fd, std::span<const std::byte> buffer,
                                   std::uint64_t offset = current_position) noexcept
{
    return operation<ops::write>({fd, buffer, offset});
}

/// Scatter read. The iovec array and its buffers must stay valid until completion.
inline operation<ops::readv> readv(int fd, std::span<const ::iovec> buffers,
                                   std::uint64_t offset = current_position) noexcept
{
    return operation<ops::readv>({fd, buffers, offset});
}

/// Gather write. The iovec array and its buffers must stay valid until completion.
inline operation<ops::writev> writev(int fd, std::span<const ::iovec> buffers,
                                     std::uint64_t offset = current_position) noexcept
{
    return operation<ops::writev>({fd, buffers, offset});
}

/// `fsync(2)`: data and metadata reach stable storage.
inline operation<ops::fsync> fsync(int fd) noexcept
{
    return operation<ops::fsync>({fd, io::fsync_mode::full});
}

/// `fdatasync(2)`: data (and the metadata needed to read it) reach stable storage.
inline operation<ops::fsync> fdatasync(int fd) noexcept
{
    return operation<ops::fsync>({fd, io::fsync_mode::data});
}

/// `fallocate(2)`: `mode` is 0 or a combination of `FALLOC_FL_*`.
inline operation<ops::fallocate> fallocate(int fd, int mode, std::uint64_t offset,
                                           std::uint64_t length) noexcept
{
    return operation<ops::fallocate>({fd, mode, offset, length});
}

/// Waits until `fd` is ready for `events` (`POLLIN`, `POLLOUT`, ...); yields the revents.
inline operation<ops::poll> poll(int fd, std::uint32_t events) noexcept
{
    return operation<ops::poll>({fd, events});
}

/// A round trip through the ring that does nothing.
inline operation<ops::nop> nop() noexcept { return operation<ops::nop>({}); }

/// `openat(2)`; yields the new descriptor. `path` must stay valid until completion.
inline operation<ops::openat> openat(int dirfd, const char* path, int flags,
                                     unsigned mode = 0) noexcept
{
    return operation<ops::openat>({dirfd, path, flags, mode});
}

/// `close(2)`.
inline operation<ops::close> close(int fd) noexcept { return operation<ops::close>({fd}); }

/// `statx(2)` into `*out`. `path` and `out` must stay valid until completion.
inline operation<ops::statx> statx(int dirfd, const char* path, int flags, unsigned mask,
                                   struct ::statx* out) noexcept
{
    return operation<ops::statx>({dirfd, path, flags, mask, out});
}

/// Suspends the task for `d` (an `IORING_OP_TIMEOUT`). Yields success when the time has
/// passed, `operation_canceled` when cancelled first.
inline operation<ops::timer> sleep_for(std::chrono::nanoseconds d) noexcept
{
    return operation<ops::timer>({io::timespec64::from(d), io::timeout_clock::relative});
}

/// Suspends the task until `t` on the steady (CLOCK_MONOTONIC) clock.
inline operation<ops::timer> sleep_until(std::chrono::steady_clock::time_point t) noexcept
{
    return operation<ops::timer>(
        {io::timespec64::from(t.time_since_epoch()), io::timeout_clock::absolute});
}

/// Lets every other ready task run before this one continues. Does not enter the kernel.
struct yield_awaiter {
    bool await_ready() const noexcept { return false; }
    template <class Promise>
    void await_suspend(std::coroutine_handle<Promise> h) const
    {
        detail::executor_of(h)->schedule(h);
    }
    void await_resume() const noexcept {}
};
inline yield_awaiter yield() noexcept { return {}; }

} // namespace coil
