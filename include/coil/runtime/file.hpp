// SPDX-License-Identifier: MIT
/// @file
/// `coil::file`: an owned file descriptor with asynchronous I/O through the executor's ring.
#pragma once

#include <coil/io/result.hpp>
#include <coil/runtime/ops.hpp>
#include <coil/runtime/task.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>

namespace coil {

/// An open file. Owns its descriptor: the destructor closes it (`close(2)`) if `close()` was
/// not awaited, after emptying its registered slot if it has one, and after the ops queued on
/// the executor have reached the kernel, which then holds its own reference (so none of them
/// can find the number reused: `detail::close_descriptor`, docs/runtime.md). Move-only. All
/// operations run on the current executor; each borrows its buffer until the `co_await`
/// completes. A registered file's ops use its slot on the executor that registered it, and
/// its descriptor on any other.
///
/// @code
/// auto f = co_await coil::file::open("data.bin");
/// if (!f) co_return f.error();
/// std::vector<std::byte> buf(4096);
/// auto done = co_await f->read_exact_at(buf, 0);
/// @endcode
class file {
public:
    file() noexcept = default;
    /// Takes ownership of `fd`.
    explicit file(int fd) noexcept : fd_(fd) {}
    file(file&& other) noexcept
        : fd_(std::exchange(other.fd_, -1)), slot_(std::exchange(other.slot_, -1)),
          registered_with_(std::exchange(other.registered_with_, nullptr))
    {
    }
    file& operator=(file&& other) noexcept;
    file(const file&) = delete;
    file& operator=(const file&) = delete;
    ~file();

    /// Opens `path` (relative to the working directory) with `open(2)` flags. `mode` is used
    /// when the flags create the file (`O_CREAT`, `O_TMPFILE`); the default is `create`'s, less
    /// the umask (`open(2)` itself has no default, and a mode of 0 makes a file nobody but root
    /// can open).
    static task<result<file>> open(std::string path, int flags = O_RDONLY | O_CLOEXEC,
                                   unsigned mode = 0644);
    /// Creates (or truncates) `path` for reading and writing.
    static task<result<file>> create(std::string path, unsigned mode = 0644);

    /// Cancels the ops still pending on the descriptor (a read waiting on a pipe or eventfd
    /// ends with `operation_canceled`: closing alone would not end it, the kernel holds its own
    /// reference; its awaiter may resume after `close()` returns), then closes it through the
    /// ring, emptying its
    /// registered slot first if it has one. The file no longer owns the descriptor afterwards,
    /// even if close reports an error (as with `close(2)`, it is gone either way); a close a
    /// stop request or shutdown kept from the ring is made with `close(2)`, so none is leaked.
    /// `bad_file_descriptor` if the file is not open. Cancelling needs Linux 5.19; before,
    /// the pending ops are left to complete on their own.
    task<result<void>> close();

    // --- a registered file slot (a direct descriptor) --------------------------------------

    /// Puts the file into a slot of the current executor's registered file table
    /// (`executor_options::file_slots`). From then on every read and write of this object
    /// names the slot with `IOSQE_FIXED_FILE`, so the kernel skips its per-op descriptor
    /// lookup and reference counting; the descriptor stays open and owned as before. Call it
    /// in a task on the executor the file's ops will run on. Errors: `EMFILE` every slot is
    /// taken, `EBADF` the file is not open; registering twice is a no-op. Throws
    /// `std::logic_error` outside an executor. The file must be closed or destroyed (or
    /// `unregister_slot()` called) before that executor is destroyed (docs/lifetimes.md).
    result<void> register_slot();
    /// Empties the file's slot; its ops go through the descriptor again. Ops in flight on the
    /// slot keep the file until they complete. A no-op when not registered. On a thread other
    /// than the registering executor's (also from close() and the destructor there), the
    /// slot is emptied by that executor at its next loop turn, or given up with its table if
    /// the executor is destroyed first: until then its table still holds the file open.
    void unregister_slot() noexcept;
    /// The file's slot in its executor's file table, or -1.
    int registered_slot() const noexcept { return slot_; }

    /// One read at `offset`; may return fewer bytes than asked (0 at end of file).
    operation<ops::read> read_at(std::span<std::byte> buffer, std::uint64_t offset) const noexcept
    {
        const target_fd t = target();
        return operation<ops::read>({t.fd, buffer, offset, t.flags});
    }
    /// One write at `offset`; may write fewer bytes than given.
    operation<ops::write> write_at(std::span<const std::byte> buffer,
                                   std::uint64_t offset) const noexcept
    {
        const target_fd t = target();
        return operation<ops::write>({t.fd, buffer, offset, t.flags});
    }
    /// One scatter read at `offset` into `buffers` (in order); may return fewer bytes than
    /// they hold. The iovec array and the buffers are borrowed until the op completes.
    operation<ops::readv> readv_at(std::span<const ::iovec> buffers,
                                   std::uint64_t offset) const noexcept
    {
        const target_fd t = target();
        return operation<ops::readv>({t.fd, buffers, offset, t.flags});
    }
    /// One gather write at `offset` from `buffers` (in order); may write fewer bytes.
    operation<ops::writev> writev_at(std::span<const ::iovec> buffers,
                                     std::uint64_t offset) const noexcept
    {
        const target_fd t = target();
        return operation<ops::writev>({t.fd, buffers, offset, t.flags});
    }
    /// One read at `offset` into registered memory (`coil::read_fixed`; see
    /// `fixed_buffer_pool`), through the file's slot when it has one. With both, the kernel
    /// neither looks up the file nor maps the buffer: the cheapest read coil has.
    operation<ops::read_fixed> read_fixed_at(fixed_buffer_view buffer,
                                             std::uint64_t offset) const noexcept
    {
        const target_fd t = target();
        return operation<ops::read_fixed>({t.fd, buffer.bytes, offset, buffer.index, t.flags});
    }
    /// One write at `offset` from registered memory; as `read_fixed_at`.
    operation<ops::write_fixed> write_fixed_at(fixed_buffer_view buffer,
                                               std::uint64_t offset) const noexcept
    {
        const target_fd t = target();
        return operation<ops::write_fixed>({t.fd, buffer.bytes, offset, buffer.index, t.flags});
    }
    /// Reads exactly `buffer.size()` bytes at `offset`, looping over short reads. Fails with
    /// `io::errc::end_of_file` if the file ends first. With `offset = current_position` it
    /// reads from the file position on and leaves the position after the bytes read (it reads
    /// the position once at the start and sets it once at the end, so two loops at the
    /// position at once read the same bytes). On an error the bytes before it have been read,
    /// and the position (if used) moved past them; if the task is destroyed with a read in
    /// flight, the position ends after the reads that completed before it.
    task<result<void>> read_exact_at(std::span<std::byte> buffer, std::uint64_t offset) const;
    /// Writes all of `buffer` at `offset`, looping over short writes; `current_position` and
    /// errors as for `read_exact_at` (the bytes before an error have been written). On an
    /// `O_APPEND` file every write goes to the end, and with `current_position` the position
    /// ends at the end, as after `write(2)`.
    task<result<void>> write_all_at(std::span<const std::byte> buffer, std::uint64_t offset) const;
    /// Fills every buffer of `buffers` in order from `offset` on, looping over short reads as
    /// `read_exact_at` does (`end_of_file` if the file ends first, `current_position` the
    /// same). The loop consumes `buffers` in place, moving the start of a partly filled entry
    /// and dropping full ones, so the caller's iovecs are scratch until the task completes and
    /// say nothing afterwards. At most `IOV_MAX` entries go into one op; no allocation.
    task<result<void>> readv_exact_at(std::span<::iovec> buffers, std::uint64_t offset) const;
    /// Writes every byte of `buffers` in order from `offset` on, looping over short writes as
    /// `write_all_at` does; `buffers` is consumed in place, as for `readv_exact_at`.
    task<result<void>> writev_all_at(std::span<::iovec> buffers, std::uint64_t offset) const;

    operation<ops::fsync> fsync() const noexcept { return coil::fsync(fd_); }
    operation<ops::fsync> fdatasync() const noexcept { return coil::fdatasync(fd_); }
    /// Starts (and with `SYNC_FILE_RANGE_WAIT_AFTER` in `flags`, waits for) the write-out of
    /// `[offset, offset + length)`; see `coil::sync_file_range`. Not durability: `fdatasync`.
    operation<ops::sync_file_range> sync_range(std::uint64_t offset, std::uint64_t length,
                                               unsigned flags = SYNC_FILE_RANGE_WRITE) const noexcept
    {
        return coil::sync_file_range(fd_, offset, length, flags);
    }
    /// Advice on how `[offset, offset + length)` will be read (`POSIX_FADV_*`); see
    /// `coil::fadvise`.
    operation<ops::fadvise> advise(std::uint64_t offset, std::uint64_t length,
                                   int advice) const noexcept
    {
        return coil::fadvise(fd_, offset, length, advice);
    }
    /// Reserves `length` bytes at `offset` (the file grows if needed).
    operation<ops::fallocate> allocate(std::uint64_t offset, std::uint64_t length) const noexcept
    {
        return coil::fallocate(fd_, 0, offset, length);
    }
    /// Deallocates `[offset, offset + length)`; it reads back as zeros and the size stays.
    operation<ops::fallocate> punch_hole(std::uint64_t offset, std::uint64_t length) const noexcept;
    /// Zeroes `[offset, offset + length)` (`FALLOC_FL_ZERO_RANGE`). A range past the end of
    /// the file grows it to `offset + length` (`punch_hole` never changes the size). Not every
    /// filesystem has it: tmpfs, for one, answers `operation_not_supported`.
    operation<ops::fallocate> zero_range(std::uint64_t offset, std::uint64_t length) const noexcept;

    /// Sets the file's size to `length`: shorter drops the end, longer reads back as zeros.
    /// Through the ring where the kernel has it (Linux 6.9), else `ftruncate(2)` on this
    /// thread. `invalid_argument` for a file not open for writing.
    task<result<void>> truncate(std::uint64_t length) const;

    /// `statx` of the open file.
    task<result<struct ::statx>> stat() const;
    /// The file's size in bytes.
    task<result<std::uint64_t>> size() const;

    int native_handle() const noexcept { return fd_; }
    bool is_open() const noexcept { return fd_ >= 0; }
    explicit operator bool() const noexcept { return is_open(); }
    /// Gives up ownership of the descriptor (emptying its registered slot first, if any).
    int release() noexcept
    {
        unregister_slot();
        return std::exchange(fd_, -1);
    }

private:
    // How an op names the file: by its slot on the executor that registered it; on another
    // executor (a file handed between threads) the same number would name some other file
    // in that executor's table, so by its descriptor.
    struct target_fd {
        int fd;
        io::sqe_flags flags;
    };
    target_fd target() const noexcept
    {
        if (slot_ >= 0 && registered_with_ == detail::running_executor())
            return {slot_, io::sqe_flags::fixed_file};
        return {fd_, io::sqe_flags::none};
    }

    int fd_ = -1;
    int slot_ = -1;                        // the registered slot, or -1
    executor* registered_with_ = nullptr;  // whose file table holds slot_
};

} // namespace coil
