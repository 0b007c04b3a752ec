// SPDX-License-Identifier: MIT
/// @file
/// The awaitable file and descriptor operations: read, write, read_fixed, write_fixed, readv,
/// writev, fsync, fdatasync, fallocate, poll, nop, openat, close, statx; sleep_for /
/// sleep_until (the executor's timer heap) and yield.
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

#include <fcntl.h>
#include <poll.h>     // POLLIN, POLLOUT for coil::poll
#include <stdio.h>    // renameat2
#include <sys/stat.h> // mkdirat
#include <unistd.h>   // unlinkat, symlinkat, linkat

#include <cerrno>
#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <span>
#include <system_error>

struct iovec;
struct statx;

namespace coil {

/// Registered memory an op can name: `bytes` lies inside the buffer registered at `index` of
/// the executor's buffer table (`fixed_buffer_pool` hands these out). A non-owning view:
/// whoever owns the buffer keeps it alive until the op completes.
struct fixed_buffer_view {
    std::span<std::byte> bytes;
    std::uint16_t index = 0;
};

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
    std::error_code prepare(io::ring& r, std::uint64_t ud) noexcept
    {
        return r.add_nop(ud);
    }
    result<void> complete(const io::completion& c) const noexcept { return void_result(c.result); }
};

// `flags` is `io::sqe_flags::fixed_file` when `fd` is a slot of the executor's file table.
struct read {
    int fd;
    std::span<std::byte> buffer;
    std::uint64_t offset;
    io::sqe_flags flags;
    std::error_code prepare(io::ring& r, std::uint64_t ud) noexcept
    {
        return r.add_read(fd, buffer, offset, ud, flags);
    }
    result<std::size_t> complete(const io::completion& c) const noexcept { return size_result(c.result); }
};

struct write {
    int fd;
    std::span<const std::byte> buffer;
    std::uint64_t offset;
    io::sqe_flags flags;
    std::error_code prepare(io::ring& r, std::uint64_t ud) noexcept
    {
        return r.add_write(fd, buffer, offset, ud, flags);
    }
    result<std::size_t> complete(const io::completion& c) const noexcept { return size_result(c.result); }
};

struct read_fixed {
    int fd;
    std::span<std::byte> buffer;
    std::uint64_t offset;
    std::uint16_t buffer_index;
    io::sqe_flags flags;
    std::error_code prepare(io::ring& r, std::uint64_t ud) noexcept
    {
        return r.add_read_fixed(fd, buffer, offset, buffer_index, ud, flags);
    }
    result<std::size_t> complete(const io::completion& c) const noexcept { return size_result(c.result); }
};

struct write_fixed {
    int fd;
    std::span<const std::byte> buffer;
    std::uint64_t offset;
    std::uint16_t buffer_index;
    io::sqe_flags flags;
    std::error_code prepare(io::ring& r, std::uint64_t ud) noexcept
    {
        return r.add_write_fixed(fd, buffer, offset, buffer_index, ud, flags);
    }
    result<std::size_t> complete(const io::completion& c) const noexcept { return size_result(c.result); }
};

struct readv {
    int fd;
    std::span<const ::iovec> buffers;
    std::uint64_t offset;
    io::sqe_flags sqe_flags = io::sqe_flags::none;
    std::error_code prepare(io::ring& r, std::uint64_t ud) noexcept
    {
        return r.add_readv(fd, buffers, offset, ud, sqe_flags);
    }
    result<std::size_t> complete(const io::completion& c) const noexcept { return size_result(c.result); }
};

struct writev {
    int fd;
    std::span<const ::iovec> buffers;
    std::uint64_t offset;
    io::sqe_flags sqe_flags = io::sqe_flags::none;
    std::error_code prepare(io::ring& r, std::uint64_t ud) noexcept
    {
        return r.add_writev(fd, buffers, offset, ud, sqe_flags);
    }
    result<std::size_t> complete(const io::completion& c) const noexcept { return size_result(c.result); }
};

struct fsync {
    int fd;
    io::fsync_mode mode;
    std::error_code prepare(io::ring& r, std::uint64_t ud) noexcept
    {
        return r.add_fsync(fd, mode, ud);
    }
    result<void> complete(const io::completion& c) const noexcept { return void_result(c.result); }
};

struct sync_file_range {
    int fd;
    std::uint64_t offset;
    std::uint64_t length;
    unsigned flags;
    std::error_code prepare(io::ring& r, std::uint64_t ud) noexcept
    {
        return r.add_sync_file_range(fd, offset, length, flags, ud);
    }
    result<void> complete(const io::completion& c) const noexcept { return void_result(c.result); }
};

struct fadvise {
    int fd;
    std::uint64_t offset;
    std::uint64_t length;
    int advice;
    std::error_code prepare(io::ring& r, std::uint64_t ud) noexcept
    {
        return r.add_fadvise(fd, offset, length, advice, ud);
    }
    result<void> complete(const io::completion& c) const noexcept { return void_result(c.result); }
};

struct splice {
    int in;
    std::uint64_t in_offset;
    int out;
    std::uint64_t out_offset;
    std::uint32_t length;
    unsigned flags;
    std::error_code prepare(io::ring& r, std::uint64_t ud) noexcept
    {
        return r.add_splice(in, in_offset, out, out_offset, length, flags, ud);
    }
    result<std::size_t> complete(const io::completion& c) const noexcept { return size_result(c.result); }
};

struct tee {
    int in;
    int out;
    std::uint32_t length;
    unsigned flags;
    std::error_code prepare(io::ring& r, std::uint64_t ud) noexcept
    {
        return r.add_tee(in, out, length, flags, ud);
    }
    result<std::size_t> complete(const io::completion& c) const noexcept { return size_result(c.result); }
};

struct fallocate {
    int fd;
    int mode;
    std::uint64_t offset;
    std::uint64_t length;
    std::error_code prepare(io::ring& r, std::uint64_t ud) noexcept
    {
        return r.add_fallocate(fd, mode, offset, length, ud);
    }
    result<void> complete(const io::completion& c) const noexcept { return void_result(c.result); }
};

struct poll {
    int fd;
    std::uint32_t events;
    std::error_code prepare(io::ring& r, std::uint64_t ud) noexcept
    {
        return r.add_poll(fd, events, ud, io::poll_mode::oneshot);
    }
    result<std::uint32_t> complete(const io::completion& c) const noexcept
    {
        if (c.result < 0)
            return io::error_from_result(c.result);
        return static_cast<std::uint32_t>(c.result);
    }
};

struct openat {
    static constexpr bool yields_descriptor = true;
    int dirfd;
    const char* path;
    int flags;
    unsigned mode;
    std::error_code prepare(io::ring& r, std::uint64_t ud) noexcept
    {
        return r.add_openat(dirfd, path, flags, mode, ud);
    }
    result<int> complete(const io::completion& c) const noexcept
    {
        if (c.result < 0)
            return io::error_from_result(c.result);
        return c.result;
    }
};

struct close {
    int fd;
    std::error_code prepare(io::ring& r, std::uint64_t ud) noexcept
    {
        return r.add_close(fd, ud);
    }
    result<void> complete(const io::completion& c) const noexcept { return void_result(c.result); }
    int fallback() const noexcept { return ::close(fd) == 0 ? 0 : -errno; } // before Linux 5.6
};

/// Cancels every op queued on `fd` (`IORING_ASYNC_CANCEL_FD`, Linux 5.19); yields how many
/// were found. Closing a descriptor does not cancel the ops pending on it: the kernel holds
/// its own reference to the open file.
struct cancel_fd {
    int fd;
    std::error_code prepare(io::ring& r, std::uint64_t ud) noexcept
    {
        return r.add_cancel_fd(fd, ud);
    }
    result<std::size_t> complete(const io::completion& c) const noexcept
    {
        if (c.result == -ENOENT)
            return std::size_t{0};
        if (c.result < 0)
            return io::error_from_result(c.result);
        return static_cast<std::size_t>(c.result);
    }
};

struct statx {
    int dirfd;
    const char* path;
    int flags;
    unsigned mask;
    struct ::statx* out;
    std::error_code prepare(io::ring& r, std::uint64_t ud) noexcept
    {
        return r.add_statx(dirfd, path, flags, mask, out, ud);
    }
    result<void> complete(const io::completion& c) const noexcept { return void_result(c.result); }
};

struct unlinkat {
    int dirfd;
    const char* path;
    int flags;
    std::error_code prepare(io::ring& r, std::uint64_t ud) noexcept
    {
        return r.add_unlinkat(dirfd, path, flags, ud);
    }
    result<void> complete(const io::completion& c) const noexcept { return void_result(c.result); }
    int fallback() const noexcept
    {
        return ::unlinkat(dirfd, path, flags) == 0 ? 0 : -errno;
    }
};

struct renameat {
    int old_dirfd;
    const char* old_path;
    int new_dirfd;
    const char* new_path;
    unsigned flags;
    std::error_code prepare(io::ring& r, std::uint64_t ud) noexcept
    {
        return r.add_renameat(old_dirfd, old_path, new_dirfd, new_path, flags, ud);
    }
    result<void> complete(const io::completion& c) const noexcept { return void_result(c.result); }
    int fallback() const noexcept
    {
        return ::renameat2(old_dirfd, old_path, new_dirfd, new_path, flags) == 0 ? 0
                                                                                    : -errno;
    }
};

struct mkdirat {
    int dirfd;
    const char* path;
    unsigned mode;
    std::error_code prepare(io::ring& r, std::uint64_t ud) noexcept
    {
        return r.add_mkdirat(dirfd, path, mode, ud);
    }
    result<void> complete(const io::completion& c) const noexcept { return void_result(c.result); }
    int fallback() const noexcept
    {
        return ::mkdirat(dirfd, path, static_cast<::mode_t>(mode)) == 0 ? 0 : -errno;
    }
};

struct symlinkat {
    const char* target;
    int new_dirfd;
    const char* link_path;
    std::error_code prepare(io::ring& r, std::uint64_t ud) noexcept
    {
        return r.add_symlinkat(target, new_dirfd, link_path, ud);
    }
    result<void> complete(const io::completion& c) const noexcept { return void_result(c.result); }
    int fallback() const noexcept
    {
        return ::symlinkat(target, new_dirfd, link_path) == 0 ? 0 : -errno;
    }
};

struct linkat {
    int old_dirfd;
    const char* old_path;
    int new_dirfd;
    const char* new_path;
    int flags;
    std::error_code prepare(io::ring& r, std::uint64_t ud) noexcept
    {
        return r.add_linkat(old_dirfd, old_path, new_dirfd, new_path, flags, ud);
    }
    result<void> complete(const io::completion& c) const noexcept { return void_result(c.result); }
    int fallback() const noexcept
    {
        return ::linkat(old_dirfd, old_path, new_dirfd, new_path, flags) == 0 ? 0 : -errno;
    }
};

struct ftruncate {
    int fd;
    std::uint64_t length;
    io::sqe_flags sqe_flags;
    std::error_code prepare(io::ring& r, std::uint64_t ud) noexcept
    {
        return r.add_ftruncate(fd, length, ud, sqe_flags);
    }
    result<void> complete(const io::completion& c) const noexcept { return void_result(c.result); }
};

} // namespace ops

/// Reads up to `buffer.size()` bytes at `offset` (or `current_position`). Yields the count;
/// 0 at end of file. `buffer` must stay valid until the co_await completes.
inline operation<ops::read> read(int fd, std::span<std::byte> buffer,
                                 std::uint64_t offset = current_position) noexcept
{
    return operation<ops::read>({fd, buffer, offset, io::sqe_flags::none});
}

/// Writes `buffer` at `offset` (or `current_position`). Yields the count (maybe short).
inline operation<ops::write> write(int fd, std::span<const std::byte> buffer,
                                   std::uint64_t offset = current_position) noexcept
{
    return operation<ops::write>({fd, buffer, offset, io::sqe_flags::none});
}

/// Reads up to `buffer.bytes.size()` bytes at `offset` into registered memory
/// (`IORING_OP_READ_FIXED`; see `fixed_buffer_pool`): the kernel uses the pages pinned at
/// registration instead of mapping the buffer per op. Yields the count; 0 at end of file.
/// Memory outside the registered buffer `buffer.index`, or an empty entry, yields `EFAULT`.
/// The buffer must stay valid (its lease held) until the co_await completes.
inline operation<ops::read_fixed> read_fixed(int fd, fixed_buffer_view buffer,
                                             std::uint64_t offset = current_position) noexcept
{
    return operation<ops::read_fixed>(
        {fd, buffer.bytes, offset, buffer.index, io::sqe_flags::none});
}

/// Writes registered memory at `offset` (`IORING_OP_WRITE_FIXED`); as `read_fixed`. Yields the
/// count (maybe short).
inline operation<ops::write_fixed> write_fixed(int fd, fixed_buffer_view buffer,
                                               std::uint64_t offset = current_position) noexcept
{
    return operation<ops::write_fixed>(
        {fd, buffer.bytes, offset, buffer.index, io::sqe_flags::none});
}

/// Scatter read. The iovec array and its buffers must stay valid until completion. At most
/// `IOV_MAX` (1024) iovecs, as for readv(2): a longer array ends with `invalid_argument`.
inline operation<ops::readv> readv(int fd, std::span<const ::iovec> buffers,
                                   std::uint64_t offset = current_position) noexcept
{
    return operation<ops::readv>({fd, buffers, offset});
}

/// Gather write. The iovec array and its buffers must stay valid until completion. At most
/// `IOV_MAX` (1024) iovecs, as for writev(2): a longer array ends with `invalid_argument`. A
/// short write is the caller's to continue (as with writev(2)).
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

/// `close(2)` through the ring (the system call itself before Linux 5.6). Ops still pending on
/// `fd` are not cancelled by it (see `cancel_fd`, and `file::close()`, which does both). A
/// close that a stop request, a deadline or shutdown ended before the kernel ran it yields
/// `operation_canceled` / `timed_out` and leaves `fd` open: the caller still owns it.
inline operation<ops::close> close(int fd) noexcept { return operation<ops::close>({fd}); }

/// Cancels every op pending on `fd`; yields how many it found (0 when none). It does not wait
/// for their completions: the kernel posts each cancelled op's completion on its own, often
/// after this one, and each awaiter then resumes with `operation_canceled`. An op a kernel
/// worker is already running is interrupted instead (a `splice` blocked on a pipe resumes with
/// `interrupted`) or ends with its real result, and the count may leave it out. Linux 5.19
/// (`invalid_argument` before).
inline operation<ops::cancel_fd> cancel_fd(int fd) noexcept
{
    return operation<ops::cancel_fd>({fd});
}

/// `statx(2)` into `*out`. `path` and `out` must stay valid until completion.
inline operation<ops::statx> statx(int dirfd, const char* path, int flags, unsigned mask,
                                   struct ::statx* out) noexcept
{
    return operation<ops::statx>({dirfd, path, flags, mask, out});
}

// --- the directory tree ---------------------------------------------------------------------
// Each yields an empty result or the errno of its system call. Paths are borrowed until the
// `co_await` completes (a `std::string` temporary's `c_str()` in the same expression is fine).
// A kernel whose io_uring lacks the op (unlinkat and renameat need Linux 5.11, the others
// 5.15) gets the system call instead, made on the executor's thread (`fallback()`).

/// `unlinkat(2)`: removes `path`, relative to `dirfd` (`AT_REMOVEDIR`: an empty directory).
inline operation<ops::unlinkat> unlinkat(int dirfd, const char* path, int flags = 0) noexcept
{
    return operation<ops::unlinkat>({dirfd, path, flags});
}
/// Removes the file (or symbolic link) `path`.
inline operation<ops::unlinkat> remove_file(const char* path) noexcept
{
    return unlinkat(AT_FDCWD, path, 0);
}
/// Removes the empty directory `path`.
inline operation<ops::unlinkat> remove_directory(const char* path) noexcept
{
    return unlinkat(AT_FDCWD, path, AT_REMOVEDIR);
}

/// `renameat2(2)`; `flags`: `RENAME_NOREPLACE` (fail with `file_exists` rather than replace),
/// `RENAME_EXCHANGE` (swap the two).
inline operation<ops::renameat> renameat(int old_dirfd, const char* old_path, int new_dirfd,
                                         const char* new_path, unsigned flags = 0) noexcept
{
    return operation<ops::renameat>({old_dirfd, old_path, new_dirfd, new_path, flags});
}
/// Renames `from` to `to`, atomically replacing `to` if it exists (the last step of writing a
/// file durably: write a temporary, `fdatasync` it, rename it over the old one).
inline operation<ops::renameat> rename(const char* from, const char* to,
                                       unsigned flags = 0) noexcept
{
    return renameat(AT_FDCWD, from, AT_FDCWD, to, flags);
}

/// `mkdirat(2)`.
inline operation<ops::mkdirat> mkdirat(int dirfd, const char* path, unsigned mode = 0777) noexcept
{
    return operation<ops::mkdirat>({dirfd, path, mode});
}
/// Creates the directory `path` (`file_exists` if something is there already).
inline operation<ops::mkdirat> create_directory(const char* path, unsigned mode = 0777) noexcept
{
    return mkdirat(AT_FDCWD, path, mode);
}

/// `symlinkat(2)`: a symbolic link at `link_path` (relative to `new_dirfd`) that reads `target`.
inline operation<ops::symlinkat> symlinkat(const char* target, int new_dirfd,
                                           const char* link_path) noexcept
{
    return operation<ops::symlinkat>({target, new_dirfd, link_path});
}
/// A symbolic link at `link_path` that reads `target`.
inline operation<ops::symlinkat> create_symlink(const char* target, const char* link_path) noexcept
{
    return symlinkat(target, AT_FDCWD, link_path);
}

/// `linkat(2)`: a hard link; `flags`: `AT_SYMLINK_FOLLOW`.
inline operation<ops::linkat> linkat(int old_dirfd, const char* old_path, int new_dirfd,
                                     const char* new_path, int flags = 0) noexcept
{
    return operation<ops::linkat>({old_dirfd, old_path, new_dirfd, new_path, flags});
}
/// A hard link `to` naming the file `from` names.
inline operation<ops::linkat> create_hard_link(const char* from, const char* to) noexcept
{
    return linkat(AT_FDCWD, from, AT_FDCWD, to, 0);
}

/// `sync_file_range(2)`: starts (`SYNC_FILE_RANGE_WRITE`, the default) and/or waits for
/// (`SYNC_FILE_RANGE_WAIT_BEFORE`, `SYNC_FILE_RANGE_WAIT_AFTER`) the write-out of the dirty
/// pages of `[offset, offset + length)`; `length` 0 runs to the end of the file. It writes no
/// metadata and flushes no disk cache, so it does not make data durable (`fdatasync` does); it
/// lets a writer push out what it wrote in steady steps instead of one large `fsync` at the end.
/// A length above 4 GiB - 1 ends with `invalid_argument` (the kernel takes 32 bits).
inline operation<ops::sync_file_range> sync_file_range(int fd, std::uint64_t offset,
                                                       std::uint64_t length,
                                                       unsigned flags = SYNC_FILE_RANGE_WRITE) noexcept
{
    return operation<ops::sync_file_range>({fd, offset, length, flags});
}

/// `posix_fadvise(2)`: how `[offset, offset + length)` will be read (`length` 0: to the end of
/// the file). `POSIX_FADV_DONTNEED` drops the range's clean pages from the page cache (after
/// streaming through a file once), `POSIX_FADV_WILLNEED` starts reading it in,
/// `POSIX_FADV_SEQUENTIAL` / `POSIX_FADV_RANDOM` set the read-ahead. Linux 5.6. Lengths above
/// 4 GiB - 1 need Linux 6.11 (`invalid_argument` before); 0 covers any length.
inline operation<ops::fadvise> fadvise(int fd, std::uint64_t offset, std::uint64_t length,
                                       int advice) noexcept
{
    return operation<ops::fadvise>({fd, offset, length, advice});
}

/// `splice(2)`: moves up to `length` bytes from `in` to `out` (one of them a pipe) inside the
/// kernel; yields the count, 0 at the end of the input. `in_offset` / `out_offset`: a file
/// offset, or `coil::current_position` for a pipe, a socket, or a file at its position.
/// `flags`: `SPLICE_F_MOVE`, `SPLICE_F_MORE`, ... Linux 5.7. The kernel runs each splice in
/// one of its worker threads, and a pipe holds 64 KiB by default: a file reaches a socket in
/// two splices per pipeful, file -> pipe -> socket.
///
/// A splice blocked in its worker (on an empty pipe, a full socket) ends like any op at its
/// deadline (`timed_out`), at a stop request or as a `when_any` loser (`operation_canceled`).
/// Cancelling by descriptor (`cancel_fd`, `file::close()`, `stream_socket::close()`) finds a
/// splice by its output descriptor only (the kernel matches the op's file, `out`), and ends
/// it with `interrupted`, the signal that stops the worker.
inline operation<ops::splice> splice(int in, std::uint64_t in_offset, int out,
                                     std::uint64_t out_offset, std::uint32_t length,
                                     unsigned flags = 0) noexcept
{
    return operation<ops::splice>({in, in_offset, out, out_offset, length, flags});
}

/// `tee(2)`: copies up to `length` bytes from pipe `in` to pipe `out`, leaving them in `in`;
/// yields the count. Linux 5.8. Runs in a kernel worker and ends on cancellation as `splice`
/// does.
inline operation<ops::tee> tee(int in, int out, std::uint32_t length, unsigned flags = 0) noexcept
{
    return operation<ops::tee>({in, out, length, flags});
}

/// `ftruncate(2)` through the ring (Linux 6.9; `unsupported_operation` before). Prefer
/// `file::truncate`, which falls back to the system call.
inline operation<ops::ftruncate> ftruncate(int fd, std::uint64_t length) noexcept
{
    return operation<ops::ftruncate>({fd, length, io::sqe_flags::none});
}

namespace detail {

/// The state every cancellable wait that is not a ring op (a sleep, a pool's `acquire`) keeps:
/// its executor, the coroutine to resume, and whether a stop request ended it.
class cancellable_wait : protected cancellable {
protected:
    /// Starts the wait of `h`: finds its executor (throws `std::logic_error` outside one) and
    /// its stop scope, and links the wait into the scope so that a stop request calls
    /// `on_cancel`. Returns false, with `cancelled_` set, when the scope was stopped already:
    /// the wait then ends at once.
    template <class Promise>
    bool begin_wait(std::coroutine_handle<Promise> h, cancel_fn on_cancel)
    {
        executor* ex = awaiting_executor(h);
        executor_ = ex;
        stop_scope* scope = scope_of(h);
        cancelled_ = scope != nullptr && scope->stop_requested();
        if (cancelled_)
            return false;
        wake_.handle = h;
        cancel = on_cancel;
        if (scope != nullptr)
            scope->add(*this);
        return true;
    }

    executor* executor_ = nullptr;
    resumption wake_;
    bool cancelled_ = false;
};

} // namespace detail

/// The awaiter of `sleep_for` / `sleep_until`: a timer in the executor's timer heap (no SQE,
/// no system call). Yields success when the time has come, `operation_canceled` when a stop
/// request came first. Destroying it disarms the timer. Kept in a variable, it may be awaited
/// again once its `co_await` has completed: a `sleep_for` then sleeps its duration anew, from
/// that `co_await`; a `sleep_until` waits for the same time point. One awaiter at a time.
class [[nodiscard]] sleep_awaiter : private detail::cancellable_wait, private detail::timer_entry {
public:
    using clock = std::chrono::steady_clock;
    /// Until `when`.
    explicit sleep_awaiter(clock::time_point when) noexcept : when_(when) {}
    /// For `d`, counted from each `co_await`.
    explicit sleep_awaiter(std::chrono::nanoseconds d) noexcept : duration_(d), relative_(true) {}
    sleep_awaiter(sleep_awaiter&& other) noexcept
        : when_(other.when_), duration_(other.duration_), relative_(other.relative_)
    {
    }

    bool await_ready() const noexcept { return false; }

    template <class Promise>
    bool await_suspend(std::coroutine_handle<Promise> h)
    {
        if (pending_) [[unlikely]]
            throw std::logic_error("coil: a sleep awaited while its previous co_await is still "
                                   "pending (one awaiter at a time)");
        if (!begin_wait(h, &cancel_thunk))
            return false;
        pending_ = true;
        executor_->arm_timer(*this, relative_ ? detail::deadline_after(duration_) : when_,
                             &fire_thunk);
        return true;
    }

    result<void> await_resume() noexcept
    {
        pending_ = false;
        if (cancelled_)
            return std::make_error_code(std::errc::operation_canceled);
        return {};
    }

private:
    static void fire_thunk(detail::timer_entry& t) noexcept
    {
        auto& self = static_cast<sleep_awaiter&>(t);
        self.detail::cancellable::unlink();
        self.executor_->schedule(self.wake_);
    }
    static void cancel_thunk(detail::cancellable& c) noexcept
    {
        auto& self = static_cast<sleep_awaiter&>(c);
        self.executor_->disarm_timer(self);
        self.cancelled_ = true;
        self.executor_->schedule(self.wake_);
    }

    clock::time_point when_{};
    std::chrono::nanoseconds duration_{};
    bool relative_ = false;
    bool pending_ = false; // suspended in a co_await, not yet resumed
};

/// Suspends the task for `d`, counted from the `co_await`. Yields success when the time has
/// passed, `operation_canceled` when cancelled first.
inline sleep_awaiter sleep_for(std::chrono::nanoseconds d) noexcept { return sleep_awaiter(d); }

/// Suspends the task until `t` on the steady (CLOCK_MONOTONIC) clock.
inline sleep_awaiter sleep_until(std::chrono::steady_clock::time_point t) noexcept
{
    return sleep_awaiter(t);
}

/// Lets every other ready task run before this one continues. Does not enter the kernel.
class [[nodiscard]] yield_awaiter {
public:
    yield_awaiter() noexcept = default;
    yield_awaiter(yield_awaiter&&) noexcept {}
    bool await_ready() const noexcept { return false; }
    template <class Promise>
    void await_suspend(std::coroutine_handle<Promise> h)
    {
        executor* ex = detail::awaiting_executor(h);
        wake_.handle = h;
        ex->schedule(wake_);
    }
    void await_resume() const noexcept {}

private:
    detail::resumption wake_;
};
inline yield_awaiter yield() noexcept { return {}; }

} // namespace coil
