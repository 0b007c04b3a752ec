// SPDX-License-Identifier: MIT
// coil::file: the composed operations (open, exact reads and writes, stat).

#include <coil/runtime/detail/close_descriptor.hpp>
#include <coil/runtime/executor.hpp>
#include <coil/runtime/file.hpp>

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits> // IOV_MAX
#include <cstdio>
#include <exception>
#include <limits>
#include <new>

namespace coil {

file& file::operator=(file&& other) noexcept
{
    if (this != &other) {
        unregister_slot();
        detail::close_descriptor(fd_);
        fd_ = std::exchange(other.fd_, -1);
        slot_ = std::exchange(other.slot_, -1);
        registered_with_ = std::exchange(other.registered_with_, nullptr);
    }
    return *this;
}

file::~file()
{
    unregister_slot();
    detail::close_descriptor(fd_); // after the ops queued on it (detail/close_descriptor.hpp)
}

task<result<void>> file::close()
{
    unregister_slot();
    const int fd = std::exchange(fd_, -1);
    if (fd < 0)
        co_return io::errno_code(EBADF);
    (void)co_await coil::cancel_fd(fd); // 0 found, or a kernel without it: nothing to wait for
    result<void> closed = co_await coil::close(fd);
    if (!closed && closed.error() == std::errc::operation_canceled) {
        // The ring never ran the close (the task was stopped, or the executor is shutting
        // down): the descriptor is still open, and nobody else will close it.
        if (::close(fd) != 0)
            co_return io::errno_code(errno);
        co_return result<void>();
    }
    co_return closed;
}

result<void> file::register_slot()
{
    executor* ex = executor::current();
    if (ex == nullptr)
        detail::throw_no_executor();
    if (slot_ >= 0)
        return {};
    if (fd_ < 0)
        return std::make_error_code(std::errc::bad_file_descriptor);
    result<std::uint32_t> slot = ex->register_file(fd_);
    if (!slot)
        return slot.error();
    slot_ = static_cast<int>(*slot);
    registered_with_ = ex;
    return {};
}

void file::unregister_slot() noexcept
{
    if (slot_ < 0)
        return;
    executor* owner = std::exchange(registered_with_, nullptr);
    const auto slot = static_cast<std::uint32_t>(std::exchange(slot_, -1));
    if (owner->on_executor_thread()) {
        owner->unregister_file(slot);
        return;
    }
    // A file handed to another thread: the slot's table and ring belong to the owner's thread
    // (a single-issuer ring refuses this one), so the owner empties it at its next loop turn
    // (or gives it up with its table if it is destroyed first). Until then the slot keeps the
    // file open; the owner outlives the registration anyway (register_slot's contract).
    try {
        owner->unregister_file_from_any_thread(slot);
    } catch (const std::bad_alloc&) {
        std::fputs("coil: file: out of memory handing a registered slot back to its "
                   "executor\n",
                   stderr);
        std::terminate();
    }
}

task<result<file>> file::open(std::string path, int flags, unsigned mode)
{
    // `path` lives in this coroutine's frame until the openat completes.
    result<int> fd = co_await coil::openat(AT_FDCWD, path.c_str(), flags, mode);
    if (!fd)
        co_return fd.error();
    co_return file(*fd);
}

task<result<file>> file::create(std::string path, unsigned mode)
{
    return open(std::move(path), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
}

namespace {

// The loops below keep their own offset and never lean on the file position between ops: when
// an op moves some bytes and then fails (a write that meets RLIMIT_FSIZE or a full disk), the
// kernel reports the bytes but leaves the position where it was (seen on Linux 6.18), and the
// next op at the position would overwrite them. So `current_position` on a seekable file
// becomes an explicit offset, the position read once at the start and set once at the end.
class position_cursor {
public:
    position_cursor(int fd, std::uint64_t offset, bool writing) noexcept : fd_(fd), offset_(offset)
    {
        if (offset != current_position)
            return;
        // A pipe, socket or terminal has no position (ESPIPE): the kernel's own handling.
        const off_t at = ::lseek(fd, 0, SEEK_CUR);
        if (at < 0)
            return;
        if (writing && (::fcntl(fd, F_GETFL) & O_APPEND)) {
            // Each write goes to the end whatever the offset; the position ends at the end, as
            // write(2) leaves it (the kernel's own update is lost on the same partial writes).
            at_end_ = true;
            return;
        }
        offset_ = static_cast<std::uint64_t>(at);
        owns_position_ = true;
    }
    position_cursor(const position_cursor&) = delete;
    position_cursor& operator=(const position_cursor&) = delete;
    // Also when the loop fails: the position ends after the bytes that moved, as read(2) and
    // write(2) leave it. When the loop's task is destroyed with an op in flight, that op's
    // bytes are not known here (its result went to nobody): the position ends after the ops
    // that completed before.
    ~position_cursor()
    {
        if (owns_position_)
            (void)::lseek(fd_, static_cast<off_t>(offset_), SEEK_SET);
        else if (at_end_)
            (void)::lseek(fd_, 0, SEEK_END);
    }

    std::uint64_t offset() const noexcept { return offset_; }
    void advance(std::size_t count) noexcept
    {
        if (offset_ != current_position)
            offset_ += count;
    }

private:
    int fd_;
    std::uint64_t offset_;
    bool owns_position_ = false;
    bool at_end_ = false;
};

bool retry_after(const std::error_code& ec) noexcept
{
    return ec == std::errc::interrupted || ec == std::errc::resource_unavailable_try_again;
}

// Drops `count` transferred bytes from the front of `buffers`, in place: entries done (and
// empty ones) leave the span, a partly done one starts later. Called only after the op that
// borrowed the array has completed.
void consume(std::span<::iovec>& buffers, std::size_t count) noexcept
{
    while (!buffers.empty() && count >= buffers.front().iov_len) {
        count -= buffers.front().iov_len;
        buffers = buffers.subspan(1);
    }
    if (count > 0) {
        ::iovec& partly = buffers.front();
        partly.iov_base = static_cast<std::byte*>(partly.iov_base) + count;
        partly.iov_len -= count;
    }
}

// The first IOV_MAX entries: what one readv or writev takes.
std::span<const ::iovec> one_op(std::span<::iovec> buffers) noexcept
{
    return buffers.first(std::min<std::size_t>(buffers.size(), IOV_MAX));
}

} // namespace

task<result<void>> file::read_exact_at(std::span<std::byte> buffer, std::uint64_t offset) const
{
    position_cursor at(fd_, offset, false);
    while (!buffer.empty()) {
        result<std::size_t> n = co_await read_at(buffer, at.offset());
        if (!n) {
            if (retry_after(n.error()))
                continue;
            co_return n.error();
        }
        if (*n == 0)
            co_return make_error_code(io::errc::end_of_file);
        buffer = buffer.subspan(*n);
        at.advance(*n);
    }
    co_return result<void>();
}

task<result<void>> file::write_all_at(std::span<const std::byte> buffer,
                                      std::uint64_t offset) const
{
    position_cursor at(fd_, offset, true);
    while (!buffer.empty()) {
        result<std::size_t> n = co_await write_at(buffer, at.offset());
        if (!n) {
            if (retry_after(n.error()))
                continue;
            co_return n.error();
        }
        if (*n == 0) // no progress and no error: the device is full in all but name
            co_return std::make_error_code(std::errc::no_space_on_device);
        buffer = buffer.subspan(*n);
        at.advance(*n);
    }
    co_return result<void>();
}

task<result<void>> file::readv_exact_at(std::span<::iovec> buffers, std::uint64_t offset) const
{
    position_cursor at(fd_, offset, false);
    consume(buffers, 0); // leading empty entries
    while (!buffers.empty()) {
        result<std::size_t> n = co_await readv_at(one_op(buffers), at.offset());
        if (!n) {
            if (retry_after(n.error()))
                continue;
            co_return n.error();
        }
        if (*n == 0)
            co_return make_error_code(io::errc::end_of_file);
        consume(buffers, *n);
        at.advance(*n);
    }
    co_return result<void>();
}

task<result<void>> file::writev_all_at(std::span<::iovec> buffers, std::uint64_t offset) const
{
    position_cursor at(fd_, offset, true);
    consume(buffers, 0);
    while (!buffers.empty()) {
        result<std::size_t> n = co_await writev_at(one_op(buffers), at.offset());
        if (!n) {
            if (retry_after(n.error()))
                continue;
            co_return n.error();
        }
        if (*n == 0)
            co_return std::make_error_code(std::errc::no_space_on_device);
        consume(buffers, *n);
        at.advance(*n);
    }
    co_return result<void>();
}

operation<ops::fallocate> file::punch_hole(std::uint64_t offset, std::uint64_t length) const noexcept
{
    return coil::fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length);
}

operation<ops::fallocate> file::zero_range(std::uint64_t offset, std::uint64_t length) const noexcept
{
    return coil::fallocate(fd_, FALLOC_FL_ZERO_RANGE, offset, length);
}

task<result<void>> file::truncate(std::uint64_t length) const
{
    executor* ex = executor::current();
    if (ex != nullptr && ex->ring().supports(io::opcode::ftruncate)) {
        const target_fd t = target();
        co_return co_await operation<ops::ftruncate>({t.fd, length, t.flags});
    }
    if (length > static_cast<std::uint64_t>(std::numeric_limits<off_t>::max()))
        co_return io::errno_code(EINVAL); // what the ring answers: a negative length
    if (::ftruncate(fd_, static_cast<off_t>(length)) != 0)
        co_return io::errno_code(errno);
    co_return result<void>();
}

task<result<struct ::statx>> file::stat() const
{
    struct ::statx out {};
    result<void> done = co_await coil::statx(fd_, "", AT_EMPTY_PATH, STATX_BASIC_STATS, &out);
    if (!done)
        co_return done.error();
    co_return out;
}

task<result<std::uint64_t>> file::size() const
{
    result<struct ::statx> st = co_await stat();
    if (!st)
        co_return st.error();
    co_return static_cast<std::uint64_t>(st->stx_size);
}

} // namespace coil
