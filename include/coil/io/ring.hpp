// SPDX-License-Identifier: MIT
/// @file
/// `coil::io::ring`: one io_uring instance, driven by 64-bit user_data tags.
///
/// This is coil's lowest layer. It knows nothing of coroutines: queue operations, each tagged
/// with a user_data of your choosing, `submit()` them, then `wait()` or `reap()` and iterate
/// the `(user_data, result, flags)` completions. The runtime (`coil::executor`) is built on it,
/// and it is just as usable on its own:
///
/// @code
/// coil::io::ring ring(64);
/// std::array<std::byte, 4096> buffer;
/// if (auto ec = ring.add_read(fd, buffer, 0, 7)) { /* no_space or unsupported */ }
/// auto done = ring.wait(1);                      // submits, then waits for one completion
/// for (coil::io::completion c : done.value())
///     fmt::print("op {} gave {}\n", c.user_data, c.result);
/// @endcode
///
/// Lifetimes (see docs/architecture.md): every pointer an op is queued with (buffers, iovec
/// arrays, paths, `statx` outputs, timespecs, socket addresses, msghdrs) is borrowed by the kernel until that op's final
/// completion has been reaped. The ring copies nothing.
///
/// Threading: a ring is not thread-safe. Without `ring_options::single_issuer` any one thread at
/// a time may use it: a ring may be created on one thread and handed over to another (with the
/// usual happens-before of the hand-over, e.g. a mutex or a thread start/join). With
/// `single_issuer` only the thread that created the ring may submit or wait: the kernel
/// enforces it, and any other thread's submit or wait fails with `EEXIST`.
///
/// Destruction: `~ring` cancels every op still outstanding and reaps their completions before
/// it returns (see `cancel_all()` and `drain()`), so the kernel no longer touches their memory
/// once the ring is gone. In a child process after `fork()` it touches nothing (the mappings are
/// the parent's ring): it only unmaps and closes.
#pragma once

#include <coil/io/completion.hpp>
#include <coil/io/detail/kernel_memory.hpp>
#include <coil/io/opcode.hpp>
#include <coil/io/result.hpp>
#include <coil/io/sqe.hpp>

#include <sys/socket.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <optional>
#include <span>
#include <system_error>
#include <type_traits>
#include <utility>

struct iovec;
struct statx;
struct io_uring_sqe;

namespace coil::io {

/// Per-SQE flags. Combine with `|`. The values are the kernel's `IOSQE_*` bits (checked in
/// io/ring.cpp), so they go into the SQE as they are.
enum class sqe_flags : std::uint8_t {
    none = 0,
    /// The op's `fd` is an index into the ring's registered file table, not a descriptor
    /// (`IOSQE_FIXED_FILE`; see `register_files`). The kernel skips its per-op descriptor
    /// lookup and reference count; an empty or out-of-range slot completes with `-EBADF`.
    fixed_file = 1U << 0,
    /// Start only after every earlier op has completed (`IOSQE_IO_DRAIN`).
    drain = 1U << 1,
    /// The next queued op starts only after this one succeeds (`IOSQE_IO_LINK`).
    link = 1U << 2,
    /// Like `link`, but the chain continues even if this op fails (`IOSQE_IO_HARDLINK`).
    hard_link = 1U << 3,
    /// Always go to the kernel's async worker instead of trying inline (`IOSQE_ASYNC`).
    async = 1U << 4,
};

constexpr sqe_flags operator|(sqe_flags a, sqe_flags b) noexcept
{
    return static_cast<sqe_flags>(static_cast<unsigned>(a) | static_cast<unsigned>(b));
}
constexpr bool has_flag(sqe_flags set, sqe_flags flag) noexcept
{
    return (static_cast<unsigned>(set) & static_cast<unsigned>(flag)) != 0;
}

/// `fsync` variants.
enum class fsync_mode : std::uint8_t {
    full, ///< data and metadata (`fsync(2)`)
    data, ///< data and the metadata needed to read it back (`fdatasync(2)`)
};

/// Poll arming.
enum class poll_mode : std::uint8_t {
    oneshot,   ///< one completion, then the poll is gone
    multishot, ///< a completion per event (flag `more()` set) until removed or it fails
};

// Every multishot op (poll, accept, receive, timeout) can also end early: a firing that finds
// the CQ full is kept by the kernel in its overflow list, and the kernel then ends the op with
// that completion, without `more()`, carrying an ordinary result. A final completion without
// `more()` thus does not mean the op's events are over: arm it again if more are wanted (the
// runtime's streams do), and count a multishot timeout's firings rather than trust its end.
// A CQ large enough for the bursts expected, and reaping often, keep it from happening.

/// Accept arming.
enum class accept_mode : std::uint8_t {
    single,    ///< one connection, one completion
    /// A completion per accepted connection (`more()` set) until cancelled or it fails
    /// (`IORING_ACCEPT_MULTISHOT`, Linux 5.19; an older kernel completes it with `-EINVAL`).
    multishot,
};

/// Receive arming, for receives into provided buffers.
enum class recv_mode : std::uint8_t {
    single,    ///< one completion, one buffer
    /// A completion per received chunk, each in its own provided buffer (`more()` set), until
    /// end of stream (0), an error, running out of buffers (`-ENOBUFS`) or cancellation
    /// (`IORING_RECV_MULTISHOT`, Linux 6.0; an older kernel completes it with `-EINVAL`).
    multishot,
    /// One completion that may fill several buffers (a receive bundle,
    /// `IORING_RECVSEND_BUNDLE`, Linux 6.10): `result` bytes spread over the named buffer and
    /// the ones that followed it in the ring, each full but the last. Read its pieces with
    /// `buffer_ring::take(c, pieces)`. Not for incremental rings.
    bundle,
    /// `multishot` and `bundle` together: a completion per arrival, each a bundle.
    multishot_bundle,
};

/// A timespec with the kernel's 64-bit layout (`struct __kernel_timespec`).
struct timespec64 {
    std::int64_t tv_sec = 0;
    long long tv_nsec = 0;

    /// Converts a duration; negative durations become zero.
    static timespec64 from(std::chrono::nanoseconds d) noexcept
    {
        if (d.count() < 0)
            return {};
        return {static_cast<std::int64_t>(d.count() / 1'000'000'000),
                static_cast<long long>(d.count() % 1'000'000'000)};
    }
};

/// `timeout` variants.
enum class timeout_clock : std::uint8_t {
    relative,      ///< the timespec is a duration from now (CLOCK_MONOTONIC)
    absolute,      ///< the timespec is a CLOCK_MONOTONIC time point
};

/// How a ring is set up. Every flag is a request: by default a flag the kernel does not know is
/// dropped and the ring is created without it (see `ring::single_issuer()` and friends for what
/// took effect). Set `strict` to make an unsupported flag an error instead.
struct ring_options {
    /// Completion queue size; 0 lets the kernel choose (twice the submission queue).
    unsigned cq_entries = 0;
    /// `IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN` (Linux 6.1): only the thread
    /// that created the ring may use it, and completions are posted only when that thread asks.
    bool single_issuer = false;
    /// `IORING_SETUP_COOP_TASKRUN` (Linux 5.19): fewer interrupts of the submitting task.
    bool coop_taskrun = false;
    /// `IORING_SETUP_SQPOLL`: a kernel thread polls the submission queue.
    bool sqpoll = false;
    /// With `sqpoll`: how long the kernel thread spins idle before sleeping.
    std::chrono::milliseconds sqpoll_idle{1000};
    /// With `sqpoll`: the CPU the kernel thread is bound to (`IORING_SETUP_SQ_AFF`). It must
    /// be online and allowed to this process's cpuset, else construction fails with `EINVAL`.
    /// Unset: the thread may run on any CPU the scheduler picks (from the creating thread's
    /// affinity mask).
    std::optional<unsigned> sqpoll_cpu{};
    /// Fail with `EINVAL` when a requested flag is unsupported, instead of dropping it.
    bool strict = false;
    /// Refuse to queue (with `errc::no_space`) an op that would make more ops outstanding than
    /// the completion queue has entries, so single-shot ops can never overflow the CQ. Off by
    /// default: coil requires `IORING_FEAT_NODROP`, so the kernel keeps completions that do not
    /// fit in the CQ and the ring flushes them while reaping; ops in flight are then bounded by
    /// memory, not by the CQ size.
    bool cap_outstanding = false;
};

/// Counters kept by a ring. All are totals since the ring was created.
struct ring_stats {
    /// `io_uring_enter` system calls made since construction (not the constructor's one,
    /// which checks that the call is allowed: a new ring reads 0)
    std::uint64_t enter_calls = 0;
    std::uint64_t sqes_submitted = 0;   ///< SQEs the kernel consumed
    std::uint64_t cqes_reaped = 0;      ///< CQEs handed to the caller
    std::uint64_t sq_full = 0;          ///< times an op was refused with `no_space`
    std::uint64_t sq_handovers = 0;     ///< times an `add_*` found the SQ full and submitted it
    std::uint64_t cq_overflows = 0;     ///< times the CQ-overflow flag was seen (and flushed)
    std::uint64_t submit_retries = 0;   ///< EINTR / EAGAIN / EBUSY answers retried

    friend bool operator==(const ring_stats&, const ring_stats&) = default;
};

class ring;
class buffer_ring;

namespace detail {
/// The empty error code every `add_*` that queued its op returns.
inline std::error_code success() noexcept { return {}; }
/// The kernel's limit for one read or write (MAX_RW_COUNT); longer spans are clamped, which
/// gives the short transfer read(2) and write(2) would give.
inline constexpr std::size_t max_rw_count = 0x7ffff000;
/// A number naming the calling thread that no other thread of the process has had or will
/// have: glibc hands a new thread the `std::thread::id` of one that exited, and the kernel
/// reuses thread ids. The forking thread takes a new one in a child after fork(). Names the
/// thread a ring's fd was registered in, and an executor's thread.
std::uint64_t this_thread_serial() noexcept;
} // namespace detail

/// The completions reaped by `ring::wait()` or `ring::reap()`, as an input range.
///
/// Iterating consumes: each completion is removed from the ring when the iterator moves past
/// it, so a loop that stops early leaves the rest for the next reap. A range must not outlive
/// its ring, and no other ring call may be made while one is being iterated, except queuing
/// new ops and submitting them.
class completion_range {
public:
    class iterator {
    public:
        using iterator_category = std::input_iterator_tag;
        using value_type = completion;
        using difference_type = std::ptrdiff_t;
        using pointer = const completion*;
        using reference = const completion&;

        iterator() = default;
        reference operator*() const noexcept { return current_; }
        pointer operator->() const noexcept { return &current_; }
        iterator& operator++();
        void operator++(int) { ++*this; }
        friend bool operator==(const iterator& it, std::default_sentinel_t) noexcept
        {
            return it.ring_ == nullptr;
        }

    private:
        friend class completion_range;
        explicit iterator(ring* r);
        void load();

        ring* ring_ = nullptr;
        completion current_{};
    };

    completion_range() = default;
    iterator begin() { return iterator(ring_); }
    std::default_sentinel_t end() const noexcept { return {}; }

private:
    friend class ring;
    explicit completion_range(ring* r) noexcept : ring_(r) {}
    ring* ring_ = nullptr;
};

/// One io_uring: a submission queue, a completion queue, and the bookkeeping that makes the
/// kernel's transient conditions invisible (see each member). Not copyable or movable: the
/// kernel's mappings and the completion ranges refer to it.
class ring {
public:
    /// Creates a ring with `entries` submission queue entries (rounded up to a power of two).
    ///
    /// Throws `std::system_error` when the kernel refuses, with a message that names the
    /// cause and the fix: io_uring disabled by `kernel.io_uring_disabled` or by a seccomp
    /// profile (EPERM), the locked-memory limit (ENOMEM), a kernel without io_uring or too old
    /// for coil (ENOSYS), or sizes out of range (EINVAL: entries must be 1..32768, cq_entries
    /// at least entries and at most 65536).
    /// Also throws, naming the cause, when the kernel lacks `IORING_FEAT_NODROP` (coil relies
    /// on the kernel keeping completions that overflow the CQ), or when a seccomp profile or an
    /// LSM blocks `io_uring_enter` or `io_uring_register` while allowing `io_uring_setup`.
    explicit ring(unsigned entries, const ring_options& options = {});

    /// Cancels and drains the ops still outstanding (`cancel_all()`, then `drain()`), then
    /// closes the ring: when it returns, the kernel no longer reads or writes any memory an op
    /// was queued with. With ops that cannot be cancelled (see `cancel_all()`, and its note on
    /// `sqe_flags::drain`) it waits for them to finish. Terminates the program, with a message,
    /// if it cannot wait: a `single_issuer` ring destroyed with ops in flight on a thread other
    /// than its creating one (the kernel refuses that thread), or a failure no valid ring has. In a child process after `fork()` it neither cancels nor waits: it unmaps the
    /// ring and closes the child's descriptor, leaving the parent's ops alone. From a thread
    /// other than the creating one, the creating thread's registration of the ring fd stays
    /// (the kernel keeps it per thread) and holds the ring's file open until that thread exits.
    ~ring();

    ring(const ring&) = delete;
    ring& operator=(const ring&) = delete;

    // --- queuing -------------------------------------------------------------------------
    // Each `add_*` prepares one SQE tagged with `user_data` and returns an empty error code,
    // or `errc::no_space` (nothing queued: submit and reap, then retry) or
    // `errc::unsupported_operation` (the kernel lacks the opcode). The op is not seen by the
    // kernel until `submit()` or `wait()`, unless the SQ is full: then the `add_*` submits
    // what is queued to make room (one `io_uring_enter`, counted in `stats().sq_handovers`)
    // and queues the op. `no_space` comes only when that cannot make room: the kernel took
    // nothing (it is short of memory, or an SQPOLL thread is not taking SQEs while the CQ
    // overflows: reap first), the last queued SQE links to the next (submitting would cut the
    // chain: check `space_left()` before queuing a chain), or the CQ cap
    // (`ring_options::cap_outstanding`) is reached. Arguments passed by pointer or span are
    // borrowed until the op's final completion is reaped.

    // nop, read and write are inline: they are the ops whose per-op cost benchmarks see.

    /// Queues a no-op; it completes with 0.
    std::error_code add_nop(std::uint64_t user_data, sqe_flags flags = sqe_flags::none) noexcept
    {
        sqe* s;
        if (!claim_inline_<opcode::nop>(s))
            return claim_failure_(opcode::nop);
        detail::prepare_rw(*s, kernel_opcode(opcode::nop), -1, nullptr, 0, 0,
                           static_cast<std::uint8_t>(flags), user_data);
        return detail::success();
    }
    /// Reads up to `buffer.size()` bytes from `fd` at `offset` (-1: the file position).
    /// Completes with the byte count (0 at end of file).
    std::error_code add_read(int fd, std::span<std::byte> buffer, std::uint64_t offset,
                             std::uint64_t user_data, sqe_flags flags = sqe_flags::none) noexcept
    {
        detail::check_kernel_memory(buffer.data(), clamp_length(buffer.size()), "add_read");
        sqe* s;
        if (!claim_inline_<opcode::read>(s))
            return claim_failure_(opcode::read);
        detail::prepare_rw(*s, kernel_opcode(opcode::read), fd, buffer.data(),
                           clamp_length(buffer.size()), offset, static_cast<std::uint8_t>(flags),
                           user_data);
        return detail::success();
    }
    /// Writes `buffer` to `fd` at `offset` (-1: the file position). Completes with the count.
    std::error_code add_write(int fd, std::span<const std::byte> buffer, std::uint64_t offset,
                              std::uint64_t user_data, sqe_flags flags = sqe_flags::none) noexcept
    {
        detail::check_kernel_memory(buffer.data(), clamp_length(buffer.size()), "add_write");
        sqe* s;
        if (!claim_inline_<opcode::write>(s))
            return claim_failure_(opcode::write);
        detail::prepare_rw(*s, kernel_opcode(opcode::write), fd, buffer.data(),
                           clamp_length(buffer.size()), offset, static_cast<std::uint8_t>(flags),
                           user_data);
        return detail::success();
    }
    /// Reads into part of registered buffer `buffer_index` (`IORING_OP_READ_FIXED`): `buffer`
    /// must lie inside the memory registered at that index (see `register_buffers`), else the
    /// op completes with `-EFAULT`; an index past the table, or an empty slot, completes with
    /// `-EFAULT` too (`-EINVAL` on some kernels). The kernel uses the pages it pinned at
    /// registration instead of mapping the buffer for each op. Borrowed like `add_read`.
    std::error_code add_read_fixed(int fd, std::span<std::byte> buffer, std::uint64_t offset,
                                   std::uint16_t buffer_index, std::uint64_t user_data,
                                   sqe_flags flags = sqe_flags::none) noexcept
    {
        detail::check_kernel_memory(buffer.data(), clamp_length(buffer.size()), "add_read_fixed");
        sqe* s;
        if (!claim_inline_<opcode::read_fixed>(s))
            return claim_failure_(opcode::read_fixed);
        detail::prepare_rw(*s, kernel_opcode(opcode::read_fixed), fd, buffer.data(),
                           clamp_length(buffer.size()), offset, static_cast<std::uint8_t>(flags),
                           user_data);
        s->buf_index = buffer_index;
        return detail::success();
    }
    /// Writes part of registered buffer `buffer_index` (`IORING_OP_WRITE_FIXED`); the same
    /// rules as `add_read_fixed`.
    std::error_code add_write_fixed(int fd, std::span<const std::byte> buffer,
                                    std::uint64_t offset, std::uint16_t buffer_index,
                                    std::uint64_t user_data,
                                    sqe_flags flags = sqe_flags::none) noexcept
    {
        detail::check_kernel_memory(buffer.data(), clamp_length(buffer.size()), "add_write_fixed");
        sqe* s;
        if (!claim_inline_<opcode::write_fixed>(s))
            return claim_failure_(opcode::write_fixed);
        detail::prepare_rw(*s, kernel_opcode(opcode::write_fixed), fd, buffer.data(),
                           clamp_length(buffer.size()), offset, static_cast<std::uint8_t>(flags),
                           user_data);
        s->buf_index = buffer_index;
        return detail::success();
    }
    /// Scatter read. The iovec array and every buffer it names are borrowed until completion.
    std::error_code add_readv(int fd, std::span<const ::iovec> buffers, std::uint64_t offset,
                              std::uint64_t user_data, sqe_flags flags = sqe_flags::none);
    /// Gather write. The iovec array and every buffer it names are borrowed until completion.
    std::error_code add_writev(int fd, std::span<const ::iovec> buffers, std::uint64_t offset,
                               std::uint64_t user_data, sqe_flags flags = sqe_flags::none);
    /// `fsync(2)` or `fdatasync(2)`.
    std::error_code add_fsync(int fd, fsync_mode mode, std::uint64_t user_data,
                              sqe_flags flags = sqe_flags::none);
    /// `sync_file_range(2)`: starts and/or waits for the write-out of the dirty pages of
    /// `[offset, offset + length)` (`length` 0: to the end of the file), as `range_flags`
    /// (`SYNC_FILE_RANGE_WAIT_BEFORE | _WRITE | _WAIT_AFTER`) say. Not a substitute for
    /// `fsync`: it writes no metadata and flushes no disk cache. The kernel takes the length
    /// in 32 bits: above 4 GiB - 1 this returns `std::errc::invalid_argument`, queuing
    /// nothing.
    std::error_code add_sync_file_range(int fd, std::uint64_t offset, std::uint64_t length,
                                        unsigned range_flags, std::uint64_t user_data,
                                        sqe_flags flags = sqe_flags::none);
    /// `posix_fadvise(2)`: tells the kernel how `[offset, offset + length)` will be read
    /// (`length` 0: to the end of the file); `advice` is `POSIX_FADV_*`: `DONTNEED` drops the
    /// range's clean pages from the page cache, `WILLNEED` starts reading it in, `SEQUENTIAL`
    /// and `RANDOM` set the read-ahead. Linux 5.6. A length above 4 GiB - 1 goes in the SQE's
    /// 64-bit field, which kernels before 6.11 refuse with `-EINVAL`.
    std::error_code add_fadvise(int fd, std::uint64_t offset, std::uint64_t length, int advice,
                                std::uint64_t user_data, sqe_flags flags = sqe_flags::none);
    /// `splice(2)`: moves up to `length` bytes from `in` to `out`, at least one of which is a
    /// pipe, without copying them through user space (Linux 5.7). `in_offset` / `out_offset`:
    /// where to read or write in a file (its position is not moved), or `no_offset` for a pipe,
    /// a socket, or a file at (and moving) its position. `splice_flags`: `SPLICE_F_MOVE`,
    /// `SPLICE_F_NONBLOCK`, `SPLICE_F_MORE`. Completes with the bytes moved, 0 at the end of
    /// the input. The kernel runs every splice in one of its worker threads.
    std::error_code add_splice(int in, std::uint64_t in_offset, int out, std::uint64_t out_offset,
                               std::uint32_t length, unsigned splice_flags,
                               std::uint64_t user_data, sqe_flags flags = sqe_flags::none);
    /// `tee(2)`: copies up to `length` bytes from pipe `in` to pipe `out` without consuming
    /// them from `in` (Linux 5.8). Completes with the bytes copied.
    std::error_code add_tee(int in, int out, std::uint32_t length, unsigned splice_flags,
                            std::uint64_t user_data, sqe_flags flags = sqe_flags::none);
    /// The offset argument of `add_splice` for a side with no offset of its own.
    static constexpr std::uint64_t no_offset = ~std::uint64_t{0};
    /// `fallocate(2)` with `mode` (`FALLOC_FL_*`), `offset` and `length`.
    std::error_code add_fallocate(int fd, int mode, std::uint64_t offset, std::uint64_t length,
                                  std::uint64_t user_data, sqe_flags flags = sqe_flags::none);
    /// Waits for `events` (`POLLIN`, `POLLOUT`, ...) on `fd`; completes with the revents.
    std::error_code add_poll(int fd, std::uint32_t events, std::uint64_t user_data,
                             poll_mode mode = poll_mode::oneshot,
                             sqe_flags flags = sqe_flags::none);
    /// Removes the poll queued with `target`. The poll completes with `-ECANCELED`; this op
    /// completes with 0, or `-ENOENT` when no such poll is armed.
    std::error_code add_poll_remove(std::uint64_t target, std::uint64_t user_data);
    /// Cancels the op queued with `target` (`IORING_OP_ASYNC_CANCEL`). The target completes
    /// with `-ECANCELED` (or its own result if it won the race); this op completes with 0,
    /// `-ENOENT` (not found) or `-EALREADY` (running, cancellation attempted).
    std::error_code add_cancel(std::uint64_t target, std::uint64_t user_data);
    /// `openat(2)`. `path` is borrowed until completion. Completes with the new fd.
    std::error_code add_openat(int dirfd, const char* path, int open_flags, unsigned mode,
                               std::uint64_t user_data, sqe_flags flags = sqe_flags::none);
    /// `close(2)`.
    std::error_code add_close(int fd, std::uint64_t user_data, sqe_flags flags = sqe_flags::none);
    /// `statx(2)`. `path` and `out` are borrowed until completion.
    std::error_code add_statx(int dirfd, const char* path, int statx_flags, unsigned mask,
                              struct ::statx* out, std::uint64_t user_data,
                              sqe_flags flags = sqe_flags::none);
    /// `unlinkat(2)`: removes `path` (with `AT_REMOVEDIR`, an empty directory). Linux 5.11.
    /// `path` is borrowed until completion.
    std::error_code add_unlinkat(int dirfd, const char* path, int unlink_flags,
                                 std::uint64_t user_data, sqe_flags flags = sqe_flags::none);
    /// `renameat2(2)` (`rename_flags`: `RENAME_NOREPLACE`, `RENAME_EXCHANGE`, ...). Linux 5.11.
    /// Both paths are borrowed until completion.
    std::error_code add_renameat(int old_dirfd, const char* old_path, int new_dirfd,
                                 const char* new_path, unsigned rename_flags,
                                 std::uint64_t user_data, sqe_flags flags = sqe_flags::none);
    /// `mkdirat(2)`. Linux 5.15. `path` is borrowed until completion.
    std::error_code add_mkdirat(int dirfd, const char* path, unsigned mode,
                                std::uint64_t user_data, sqe_flags flags = sqe_flags::none);
    /// `symlinkat(2)`: a symbolic link at `link_path` whose content is `target`. Linux 5.15.
    /// Both strings are borrowed until completion.
    std::error_code add_symlinkat(const char* target, int new_dirfd, const char* link_path,
                                  std::uint64_t user_data, sqe_flags flags = sqe_flags::none);
    /// `linkat(2)`: a hard link. Linux 5.15. Both paths are borrowed until completion.
    std::error_code add_linkat(int old_dirfd, const char* old_path, int new_dirfd,
                               const char* new_path, int link_flags, std::uint64_t user_data,
                               sqe_flags flags = sqe_flags::none);
    /// `ftruncate(2)`: sets the file's size to `length`. Linux 6.9 (`supports()` says);
    /// queued from coil's own SQE layout, since liburing 2.3 predates it.
    std::error_code add_ftruncate(int fd, std::uint64_t length, std::uint64_t user_data,
                                  sqe_flags flags = sqe_flags::none);
    /// A timer: completes with `-ETIME` when it fires, or with 0 once `count` other
    /// completions have been posted first (`count` 0: only the timer). `when` is borrowed.
    std::error_code add_timeout(const timespec64* when, unsigned count, timeout_clock clock,
                                std::uint64_t user_data, sqe_flags flags = sqe_flags::none);
    /// A repeating timer (`IORING_TIMEOUT_MULTISHOT`, Linux 6.4): fires every `interval`,
    /// `count` times (0: until removed with `add_timeout_remove`). Each firing completes with
    /// `-ETIME`, all but the last with `more()` set; a removed timer ends with a completion
    /// `-ECANCELED` without `more()`. The op stays outstanding until that final completion.
    /// It can end before `count` firings when the CQ overflows (see `poll_mode`).
    /// A kernel without multishot timeouts completes it at once with `-EINVAL`.
    /// `interval` is borrowed until the final completion.
    std::error_code add_multishot_timeout(const timespec64* interval, unsigned count,
                                          std::uint64_t user_data,
                                          sqe_flags flags = sqe_flags::none);
    /// A deadline for the op queued just before, which must carry `sqe_flags::link`. If it
    /// fires the op is cancelled; this completes with `-ETIME` (fired), `-ECANCELED` (the op
    /// finished first) or `-EALREADY`. `when` is borrowed until this op completes.
    /// Check `space_left() >= 2` before queuing the pair: if this call then failed, the
    /// linked op would be left linking to whatever is queued next.
    std::error_code add_link_timeout(const timespec64* when, std::uint64_t user_data);
    /// Removes the timer queued with `target`; it completes with `-ECANCELED`.
    std::error_code add_timeout_remove(std::uint64_t target, std::uint64_t user_data);

    // Sockets. Every `msg_flags` is `MSG_*` as for send(2) / recv(2); the kernel adds
    // `MSG_NOSIGNAL` to sends, so a closed peer gives `-EPIPE`, never SIGPIPE. Ops on a socket
    // wait for readiness in the kernel whether or not the socket is non-blocking.

    /// `socket(2)` (`IORING_OP_SOCKET`, Linux 5.19). `type` may carry `SOCK_CLOEXEC` and
    /// `SOCK_NONBLOCK`. Completes with the new fd.
    std::error_code add_socket(int domain, int type, int protocol, std::uint64_t user_data,
                               sqe_flags flags = sqe_flags::none);
    /// `accept4(2)` on the listening socket `fd` with `accept_flags` (`SOCK_CLOEXEC`,
    /// `SOCK_NONBLOCK`). Completes with the new connection's fd. `peer` and `peer_length` may
    /// both be null; otherwise `*peer_length` is the size of `*peer` and receives the peer's
    /// address length, and both are borrowed until the final completion. With
    /// `accept_mode::multishot` every connection completes with `more()` set and overwrites
    /// `*peer` (pass null to ignore addresses); the op ends, without `more()`, when cancelled
    /// (`add_cancel`, `add_cancel_fd`) or on an error.
    std::error_code add_accept(int fd, ::sockaddr* peer, ::socklen_t* peer_length,
                               int accept_flags, std::uint64_t user_data,
                               accept_mode mode = accept_mode::single,
                               sqe_flags flags = sqe_flags::none);
    /// `connect(2)` to `address` (`length` bytes, borrowed until completion). Completes with 0
    /// or `-errno` (`-ECONNREFUSED`, `-ENOENT` for a missing AF_UNIX path, ...).
    std::error_code add_connect(int fd, const ::sockaddr* address, ::socklen_t length,
                                std::uint64_t user_data, sqe_flags flags = sqe_flags::none);
    /// `recv(2)` into `buffer` (borrowed until completion; clamped like `add_read`). Completes
    /// with the byte count, 0 at end of stream.
    std::error_code add_recv(int fd, std::span<std::byte> buffer, int msg_flags,
                             std::uint64_t user_data, sqe_flags flags = sqe_flags::none);
    /// `recv(2)` into a buffer the kernel picks from the provided-buffer group `buffer_group`
    /// (see `buffer_ring`). Each completion with data has `has_buffer()`, names the buffer
    /// with `buffer_id()` and holds `result` bytes in it; that buffer is the caller's until it
    /// is handed back. With no buffer left the op completes with `-ENOBUFS`. With
    /// `recv_mode::multishot` (Linux 6.0) every chunk completes with `more()` set and the
    /// final completion (0 at end of stream, `-ENOBUFS`, `-ECANCELED`, an error) ends the
    /// op; `MSG_WAITALL` is refused with `-EINVAL`. Borrows nothing itself, but the group
    /// must stay registered until the final completion.
    /// The bundle modes return `errc::unsupported_operation` (nothing queued) on a kernel
    /// without receive bundles (see `has_recv_bundles`).
    std::error_code add_recv_provided(int fd, std::uint16_t buffer_group, int msg_flags,
                                      recv_mode mode, std::uint64_t user_data,
                                      sqe_flags flags = sqe_flags::none);
    /// `send(2)` of `buffer` (borrowed until completion; clamped like `add_write`). Completes
    /// with the byte count, which may be short.
    std::error_code add_send(int fd, std::span<const std::byte> buffer, int msg_flags,
                             std::uint64_t user_data, sqe_flags flags = sqe_flags::none);
    /// A zero-copy `send(2)` (`IORING_OP_SEND_ZC`, Linux 6.0): the kernel transmits from
    /// `buffer` itself instead of copying it. It usually completes twice under the same
    /// user_data: first the result (byte count or `-errno`) with `more()` set, then a
    /// notification (`is_notification()`, result 0, no `more()`) once the kernel no longer
    /// reads the buffer. `buffer` is borrowed until that final completion, not just the
    /// first. A result without `more()` is final (no notification follows). Sockets that
    /// cannot send zero-copy (AF_UNIX) fail with `-EOPNOTSUPP` (Linux 6.18 still sets
    /// `more()` on that result and posts the notification).
    std::error_code add_send_zc(int fd, std::span<const std::byte> buffer, int msg_flags,
                                std::uint64_t user_data, sqe_flags flags = sqe_flags::none);
    /// `recvmsg(2)`. `message`, its iovec array, every buffer the array names, and its name
    /// and control buffers are borrowed until completion. Completes with the byte count; the
    /// kernel updates `message->msg_namelen`, `msg_controllen` and `msg_flags`.
    std::error_code add_recvmsg(int fd, ::msghdr* message, int msg_flags,
                                std::uint64_t user_data, sqe_flags flags = sqe_flags::none);
    /// `recvmsg(2)` into a buffer the kernel picks from `buffer_group` (`IOSQE_BUFFER_SELECT`;
    /// `message->msg_iov` is not used). With `recv_mode::multishot` (Linux 6.0) a completion
    /// per message, each buffer starting with a `struct io_uring_recvmsg_out`, then
    /// `message->msg_namelen` bytes for the sender's address and `msg_controllen` for control
    /// data, then the payload; single-shot, the buffer holds the payload alone and the address
    /// goes where `msg_name` points. `message` is borrowed until the last completion. Bundles
    /// are refused (`EINVAL`).
    std::error_code add_recvmsg_provided(int fd, ::msghdr* message, std::uint16_t buffer_group,
                                         int msg_flags, recv_mode mode, std::uint64_t user_data,
                                         sqe_flags flags = sqe_flags::none);
    /// `sendmsg(2)`. `message` and everything it points to are borrowed until completion.
    std::error_code add_sendmsg(int fd, const ::msghdr* message, int msg_flags,
                                std::uint64_t user_data, sqe_flags flags = sqe_flags::none);
    /// `shutdown(2)` with `how` (`SHUT_RD`, `SHUT_WR`, `SHUT_RDWR`). Completes with 0.
    std::error_code add_shutdown(int fd, int how, std::uint64_t user_data,
                                 sqe_flags flags = sqe_flags::none);
    /// Cancels every op queued on `fd` (`IORING_ASYNC_CANCEL_FD | IORING_ASYNC_CANCEL_ALL`,
    /// Linux 5.19; an older kernel completes it with `-EINVAL`). Each cancelled op completes
    /// with `-ECANCELED` (or its own result if it won the race); this op completes with how
    /// many it cancelled, which is 0 (not `-ENOENT`: that is the answer without
    /// `IORING_ASYNC_CANCEL_ALL`) when none was found. Borrows nothing.
    std::error_code add_cancel_fd(int fd, std::uint64_t user_data);

    /// Queues an SQE for an operation coil has no `add_*` call for: any `IORING_OP_*` the
    /// running kernel supports. The ring takes a free entry, zeroes all of it, calls
    /// `fill(sqe&)` to set the opcode's fields (`fd`, `addr`, `len`, `off`, `op_flags`,
    /// `splice_fd_in`, ...; see io_uring_enter(2) for what each opcode reads), and then sets
    /// `opcode`, `user_data` and `flags` itself, overwriting whatever `fill` put there.
    ///
    /// Returns an empty error code when queued; `errc::unsupported_operation` when the probe
    /// says the kernel lacks `kernel_opcode`; `errc::no_space` when the SQ is full (or the CQ
    /// cap is reached). `fill` is called only when the op is queued, must not call the ring,
    /// and may throw (then nothing is queued). Whatever the SQE points at is borrowed until
    /// the op's final completion is reaped, as for every op. The completion is counted in
    /// `outstanding()` like any other: an opcode that posts several completions must set
    /// `IORING_CQE_F_MORE` on all but the last (multishot ops do), and SQE flags that
    /// suppress completions (`IOSQE_CQE_SKIP_SUCCESS`) are not available here.
    ///
    /// @code
    /// #include <linux/io_uring.h> // the kernel's IORING_OP_* numbers
    ///
    /// // Move up to 4096 bytes from one pipe to another inside the kernel (splice(2)).
    /// auto ec = ring.add_sqe(IORING_OP_SPLICE, 7, [&](coil::io::sqe& s) {
    ///     s.splice_fd_in = from_pipe;
    ///     s.splice_off_in = static_cast<std::uint64_t>(-1); // no offset: a pipe
    ///     s.fd = to_pipe;
    ///     s.off = static_cast<std::uint64_t>(-1);
    ///     s.len = 4096;
    /// });
    /// @endcode
    template <class Fill>
    std::error_code add_sqe(std::uint8_t kernel_opcode, std::uint64_t user_data, Fill&& fill,
                            sqe_flags flags = sqe_flags::none)
    {
        static_assert(std::is_invocable_v<Fill&, sqe&>, "fill must be callable as fill(sqe&)");
        sqe* s = nullptr;
        if (std::error_code ec = claim_raw_(kernel_opcode, s)) {
            return ec;
        }
        // Until fill returns the entry is ours alone (the kernel sees it only once the tail
        // is published by a submit), so a throwing fill can give it back.
        struct unclaim_on_throw {
            ring* owner;
            bool armed = true;
            ~unclaim_on_throw()
            {
                if (armed) {
                    owner->unclaim_last_();
                }
            }
        } guard{this};
        fill(*s);
        guard.armed = false;
        s->opcode = kernel_opcode;
        s->flags = static_cast<std::uint8_t>(flags);
        s->user_data = user_data;
        return {};
    }

    /// The user_data the ring reserves for ops it queues itself (`cancel_all()`). Their
    /// completions are swallowed: no reap, wait or loop ever delivers one. Do not queue ops
    /// with this user_data: while a `cancel_all()` is pending their completions would be
    /// swallowed too.
    static constexpr std::uint64_t internal_user_data = ~std::uint64_t{0};

    // --- submission and completion -------------------------------------------------------

    /// Hands every queued SQE to the kernel and returns how many it consumed. Partial
    /// submissions are continued, `EINTR` is retried, and `EBUSY` / `EAGAIN` (the kernel's
    /// "reap first") are met by moving ready completions into an internal backlog that the
    /// next reap delivers first, then retrying. No SQE and no completion is lost. An error
    /// leaves unconsumed SQEs queued for the next call.
    result<unsigned> submit();

    /// Submits what is queued, then blocks until at least `min_complete` completions are
    /// ready or `timeout` has passed (a timeout is not an error: the range is then shorter).
    /// `min_complete` is capped at `outstanding()` and at `cq_entries()`.
    /// Errors are those of `submit()`, and `errc::unsupported_operation` for a timeout on a
    /// kernel without `IORING_FEAT_EXT_ARG`.
    result<completion_range> wait(unsigned min_complete = 1,
                                  std::optional<std::chrono::nanoseconds> timeout = {});

    /// The completions ready now, without blocking and without submitting. Flushes completions
    /// the kernel kept aside when the CQ overflowed.
    completion_range reap() noexcept;

    /// Copies up to `out.size()` ready completions into `out` and removes them from the ring;
    /// returns how many. Non-blocking. The bulk counterpart of `reap()`.
    std::size_t reap_into(std::span<completion> out) noexcept;

    /// Calls `fn(completion)` for every ready completion, removing each from the ring before
    /// `fn` sees it; returns how many. Non-blocking, and like `reap()` it flushes overflowed
    /// completions and deferred task work. `fn` may use the ring in any way, even reap or wait
    /// itself: each completion is consumed before the call and the ring's state is read again
    /// after it, so nothing is delivered twice or skipped. This is the cheapest way to reap.
    ///
    /// It goes on while completions keep arriving, including those of ops that `fn` queues:
    /// ops that complete inline (NOPs, reads from the page cache) are completed while a full
    /// SQ is handed over, so a loop whose `fn` queues the next op of each completion may never
    /// see the CQ empty. `limit` bounds one pass (pass `ready()` to take what is there now).
    template <class F>
    std::size_t for_each_completion(F&& fn, std::size_t limit = SIZE_MAX)
    {
        return reap_each_<true>(std::forward<F>(fn), limit);
    }

    /// Like `for_each_completion()`, but only what is in the CQ (or the ring's backlog) now:
    /// it never enters the kernel. Completions the kernel still holds (deferred task work,
    /// the overflow list; `kernel_holds_completions()` says so) wait for the next
    /// `submit_and_get_events()` or `wait()`. For a loop that enters the kernel once per turn
    /// anyway: reaping that also entered would make it two system calls. At most `limit`
    /// completions, as for `for_each_completion()`.
    template <class F>
    std::size_t for_each_ready(F&& fn, std::size_t limit = SIZE_MAX)
    {
        return reap_each_<false>(std::forward<F>(fn), limit);
    }

    /// Whether the kernel holds completions that only a system call brings into the CQ:
    /// deferred task work (`IORING_SQ_TASKRUN`, on rings with `TASKRUN_FLAG`) or completions
    /// kept aside when the CQ overflowed (`IORING_SQ_CQ_OVERFLOW`). One load.
    bool kernel_holds_completions() const noexcept;

    /// Hands every queued SQE to the kernel, as `submit()` does, and in the same system call
    /// brings in the completions the kernel holds (runs deferred task work, flushes the
    /// overflow list), without waiting for any. Enters the kernel even with nothing queued,
    /// unless the kernel holds nothing either. Errors are those of `submit()`.
    result<unsigned> submit_and_get_events();

    // --- registered buffers and files ----------------------------------------------------
    // A ring has one buffer table and one file table. Registering pins buffer pages (charged to
    // RLIMIT_MEMLOCK unless the process has CAP_IPC_LOCK) and takes a reference on each file,
    // so fixed ops skip the per-op page mapping and descriptor lookup. Each call is one
    // `io_uring_register` system call, made on the thread that uses the ring (with
    // `single_issuer` the kernel refuses any other with `EEXIST`). Errors are the kernel's
    // errno values (`std::generic_category()`): `EBUSY` a table is already registered, `ENXIO`
    // none is, `EINVAL` a bad size or entry, `EFAULT` bad memory (or a buffer over 1 GiB),
    // `ENOMEM` the locked-memory limit, `EBADF` a descriptor that is not open, and
    // `errc::unsupported_operation` a kernel that has no such registration.
    //
    // Lifetimes (docs/lifetimes.md): an op queued with a buffer index or a fixed-file slot
    // holds its own reference to the buffer or file as the kernel resolves it, so updating or
    // unregistering an entry while such an op is in flight does not fail and does not disturb
    // that op. An op queued but not yet submitted finds the entry as it is when it is issued:
    // submit first. On an SQPOLL ring the update and unregister calls wait (bounded, up to a
    // second) for the kernel thread to take what was submitted, so submitted ops keep theirs.
    // Linked, drained and `async` ops are issued later, and resolve their entry then. The
    // buffer's memory itself must outlive every op queued on it, registered or not: the kernel
    // writes into the pinned pages, which the caller may not free or reuse until the op's
    // completion is reaped.

    /// Registers `buffers` as the ring's buffer table: entry `i` is buffer index `i` for
    /// `add_read_fixed` / `add_write_fixed`. At most 16384 entries (`EINVAL` past that) of at
    /// most 1 GiB each (`EFAULT` past that); a null entry of length 0 leaves that index empty.
    std::error_code register_buffers(std::span<const ::iovec> buffers) noexcept;
    /// Registers a table of `count` empty buffer entries, to be filled by `update_buffers`
    /// (`IORING_RSRC_REGISTER_SPARSE`, Linux 5.19; on 5.13..5.18 the same table is registered
    /// from null entries; older kernels give `errc::unsupported_operation`).
    std::error_code register_buffers_sparse(unsigned count);
    /// Replaces entries `first..first+buffers.size()-1` of the buffer table (a null entry of
    /// length 0 empties one). Linux 5.13; older kernels give `errc::unsupported_operation`.
    std::error_code update_buffers(unsigned first, std::span<const ::iovec> buffers) noexcept;
    /// Removes the buffer table. Ops in flight keep the buffers they resolved.
    std::error_code unregister_buffers() noexcept;
    /// Entries in the buffer table (0 when none is registered).
    unsigned registered_buffer_count() const noexcept { return registered_buffers_; }

    /// Registers `fds` as the ring's file table: slot `i` is what an op queued with
    /// `sqe_flags::fixed_file` and fd `i` works on. `-1` leaves a slot empty. The table holds
    /// its own reference to each file: closing the descriptor afterwards does not close the
    /// slot. At most `RLIMIT_NOFILE` slots.
    std::error_code register_files(std::span<const int> fds) noexcept;
    /// Registers a table of `count` empty slots (`IORING_RSRC_REGISTER_SPARSE`, Linux 5.19;
    /// older kernels get the same table from `-1` entries).
    std::error_code register_files_sparse(unsigned count);
    /// Replaces slots `first..first+fds.size()-1` (`-1` empties one).
    std::error_code update_files(unsigned first, std::span<const int> fds) noexcept;
    /// Removes the file table. Ops in flight keep the files they resolved.
    std::error_code unregister_files() noexcept;
    /// Slots in the file table (0 when none is registered).
    unsigned registered_file_count() const noexcept { return registered_files_; }

    // --- eventfd notification -------------------------------------------------------------
    // For a program whose own event loop (epoll, poll, a GUI toolkit's) must learn when the
    // ring has completions: the kernel writes to a registered eventfd when it posts them. On a
    // `single_issuer` (DEFER_TASKRUN) ring, whose completions are posted only when the ring's
    // thread enters the kernel, it signals as soon as work that will post one is pending, and
    // `reap()` runs that work. A signal is a hint: one may stand for many completions, and on a
    // DEFER_TASKRUN ring a completion signals twice (when its work is queued and when `reap()`
    // posts it), so a wake-up can find nothing to reap. A loop reads the eventfd, reaps until
    // the CQ is empty, and goes back to waiting (docs/architecture.md has the snippet). Do not
    // queue a read or poll of the registered eventfd on the same ring: each completion would
    // signal the next.

    /// Has the kernel signal `fd`, an eventfd (`eventfd(2)`), when completions are posted
    /// (`IORING_REGISTER_EVENTFD`). With `async_only`, only for completions posted by the
    /// kernel's worker threads (`IORING_REGISTER_EVENTFD_ASYNC`): not for ops that complete
    /// inline during submission. The ring holds its own reference to the eventfd until
    /// `unregister_eventfd()` or destruction. Errors: `EBUSY` one is already registered,
    /// `EBADF` `fd` is not open, `EINVAL` it is not an eventfd.
    std::error_code register_eventfd(int fd, bool async_only = false) noexcept;
    /// Stops the signalling and drops the ring's reference. `ENXIO` when none is registered.
    std::error_code unregister_eventfd() noexcept;
    /// Pauses (`false`) or resumes (`true`) the signalling without unregistering, for example
    /// while the loop is reaping anyway (`IORING_CQ_EVENTFD_DISABLED`, Linux 5.8: an older
    /// kernel gives `errc::unsupported_operation`). A registration starts enabled.
    std::error_code set_eventfd_enabled(bool enabled) noexcept;
    /// Whether the signalling is enabled (it says nothing of whether an eventfd is registered).
    bool eventfd_enabled() const noexcept;
    /// Whether an eventfd is registered.
    bool eventfd_registered() const noexcept { return eventfd_registered_; }

    // --- shutdown -------------------------------------------------------------------------

    /// Asks the kernel to cancel every op in flight: one `IORING_OP_ASYNC_CANCEL` with
    /// `IORING_ASYNC_CANCEL_ANY` (Linux 5.19), tagged `internal_user_data`, queued behind
    /// whatever is already queued and submitted at once. Each cancelled op completes with
    /// `-ECANCELED` (or its own result if it won the race); ops the kernel cannot interrupt
    /// (a running regular-file read, say) complete on their own. The cancel's own completion
    /// counts in `outstanding()` until it is reaped, and is swallowed by the ring. On a kernel
    /// without `IORING_ASYNC_CANCEL_ANY` the cancel fails with `-EINVAL`; the ring remembers
    /// it, and from then on `cancel_all()` does nothing: only `drain()` remains, which then
    /// waits for every op to finish by itself (forever, for a poll that never fires).
    /// Does nothing when no op is outstanding. Errors of the submit are not reported: the
    /// cancel then stays queued for the next submit or wait. If the last op queued asks to
    /// link to the next (`sqe_flags::link`) and the kernel has not yet taken it, that chain is
    /// ended first (on an SQPOLL ring the kernel thread is first given the queue: it ends the
    /// chain itself), so the cancel cannot be held behind it. A full SQ is handed over first
    /// (on an SQPOLL ring, waiting until the kernel thread has made room). An op queued with
    /// `sqe_flags::drain` holds back everything after it, the cancel included, until every
    /// op before it has completed (the kernel's rule): so `drain()`, and the destructor, wait
    /// until the ops before a pending drain op complete on their own, for ever if one of them
    /// is a poll that never fires.
    void cancel_all();

    /// Waits for and discards completions until `outstanding()` is 0, and returns how many
    /// completions it discarded (those of multishot ops each count; the ring's own are not
    /// counted). Call it after `cancel_all()` to take back every op. Blocks for as long as an
    /// op takes to complete. After a `cancel_all()` (and with `has_ext_arg()`) it waits in
    /// steps of 1 ms doubling to 100 ms, and cancels again when a step brings nothing: one
    /// cancel can miss an op that the kernel was handing on at that moment (an op linked behind
    /// one that completed in the same submission). Throws `std::system_error` if waiting fails.
    std::size_t drain();

    // --- introspection --------------------------------------------------------------------

    /// Whether the running kernel implements `op` (from the probe taken at construction).
    bool supports(opcode op) const noexcept { return supports_kernel_opcode(kernel_opcode(op)); }

    /// Whether the running kernel implements the raw `IORING_OP_*` number `kernel_opcode`
    /// (from the same probe), for SQEs queued with `add_sqe()`.
    bool supports_kernel_opcode(std::uint8_t kernel_opcode) const noexcept
    {
        return ((supported_[kernel_opcode >> 6] >> (kernel_opcode & 63U)) & 1U) != 0;
    }

    /// The ring's file descriptor. It polls readable when completions are ready, so an outer
    /// epoll loop can wait on it: but not on a `single_issuer` ring (`DEFER_TASKRUN`), where
    /// the kernel posts completions only when the creating thread enters the ring and does
    /// not wake this descriptor's pollers meanwhile (on Linux 6.18 `poll(2)` reports it
    /// readable but a waiting `epoll_wait` is not woken). An epoll loop wants a ring without
    /// `single_issuer`.
    int fd() const noexcept;

    unsigned sq_entries() const noexcept { return sq_entries_; }
    unsigned cq_entries() const noexcept { return cq_entries_; }

    /// Free submission queue entries (regardless of the CQ cap).
    unsigned sq_space_left() const noexcept { return sq_room_ - unsubmitted(); }

    /// Ops that can still be queued before the SQ is full: the free SQ entries, bounded with
    /// `ring_options::cap_outstanding` by the CQ entries not yet promised to an op. Past it an
    /// `add_*` submits the queue first (or, with the cap, is refused), so a link chain must fit
    /// in it whole.
    unsigned space_left() const noexcept
    {
        const unsigned sq_free = sq_room_ - unsubmitted();
        if (!cap_outstanding_) {
            return sq_free;
        }
        const unsigned cq_free = outstanding_ >= cq_entries_ ? 0 : cq_entries_ - outstanding_;
        return sq_free < cq_free ? sq_free : cq_free;
    }

    /// SQEs queued whose final completion has not yet been reaped (queued, submitted or
    /// in flight). Never exceeds `cq_entries()` with `ring_options::cap_outstanding`.
    /// Every final CQE in this ring's CQ counts as one of its own ops ending: a CQE another
    /// ring posts into this one (`IORING_OP_MSG_RING`) cannot be told apart, so it miscounts,
    /// and `drain()` and the destructor, which wait for this count to reach 0, could return
    /// while an op still runs. Do not target a coil ring with MSG_RING (not supported yet).
    unsigned outstanding() const noexcept { return outstanding_; }

    /// On an SQPOLL ring, `submit()` only shows the SQEs to the kernel thread: this waits until
    /// the thread has taken (and issued) every SQE submitted so far, waking it if it sleeps,
    /// for at most a second. Elsewhere `submit()` issued them before it returned, and this
    /// returns at once. An op resolves its descriptor, fixed file or registered buffer when it
    /// is issued: call this after `submit()` before closing a descriptor, or changing a table
    /// entry, that submitted ops name (the table changes call it themselves).
    void wait_until_issued() noexcept;

    /// In a child process after fork(), makes this copy of the ring inert. The ring's queues
    /// are memory shared with the parent (and the kernel acts for whoever enters): a child
    /// that queued, submitted or reaped through it would run its ops in the parent's ring and
    /// take the parent's completions. After this, `add_*` answer `errc::forked_copy`, nothing
    /// is published, entered or reaped (`ready()` is 0), and the parent's ring is left as it
    /// was. The executor calls it for the executor running on the forking thread; call it for
    /// a bare ring the child inherited. The table changes (`register_*`, `update_*`,
    /// `unregister_*`) answer `errc::forked_copy` in a child whether or not it was called, and
    /// the destructor touches nothing of the parent's.
    void forget_after_fork() noexcept;
    /// Whether `forget_after_fork()` was called.
    bool forgotten_after_fork() const noexcept { return forked_; }

    /// SQEs queued but not yet consumed by the kernel.
    unsigned unsubmitted() const noexcept
    {
        // The kernel advances the SQ head as it consumes entries (acquire: it has read them).
        return sq_tail_ - __atomic_load_n(sq_khead_, __ATOMIC_ACQUIRE);
    }

    /// Completions ready to reap now (including the internal backlog).
    unsigned ready() const noexcept;

    const ring_stats& stats() const noexcept { return stats_; }

    /// Whether the kernel has `IORING_FEAT_EXT_ARG` (Linux 5.11), which timed waits need.
    bool has_ext_arg() const noexcept;
    /// Whether the kernel has receive bundles (`IORING_FEAT_RECVSEND_BUNDLE`, Linux 6.10), for
    /// `recv_mode::bundle` and `recv_mode::multishot_bundle`.
    bool has_recv_bundles() const noexcept;

    /// Which setup flags took effect.
    bool single_issuer() const noexcept;
    /// The `IORING_SETUP_*` flags the ring was created with: what took effect of those
    /// `ring_options` asked for (and `IORING_SETUP_SUBMIT_ALL`, which coil asks for itself).
    unsigned setup_flags() const noexcept;
    bool coop_taskrun() const noexcept;
    bool sqpoll() const noexcept;

private:
    friend class completion_range::iterator;
    friend class buffer_ring;
    struct state;

    /// For `buffer_ring`: registers / unregisters the provided-buffer ring at `ring_memory`
    /// (`entries` entries) as group `group`, with the kernel's `IOU_PBUF_RING_*` `flags`.
    /// Return 0 or `-errno`.
    int register_buffer_ring_(void* ring_memory, unsigned entries, std::uint16_t group,
                              std::uint16_t flags = 0) noexcept;
    int unregister_buffer_ring_(std::uint16_t group) noexcept;

    inline errc claim_(opcode op, ::io_uring_sqe*& out) noexcept; // only io/ring.cpp calls it

    static std::uint32_t clamp_length(std::size_t n) noexcept
    {
        return static_cast<std::uint32_t>(n < detail::max_rw_count ? n : detail::max_rw_count);
    }

    /// Sets `out` to the next free SQE for `Op`, counted as outstanding; false when `Op` is
    /// unsupported, the SQ is full or the CQ cap is reached (then `claim_failure_` says which).
    template <opcode Op>
    bool claim_inline_(sqe*& out) noexcept
    {
        if constexpr (Op != opcode::nop) { // every io_uring kernel has NOP
            if (!supports_kernel_opcode(kernel_opcode(Op))) {
                return false;
            }
        }
        if (cap_outstanding_ && outstanding_ >= cq_entries_) {
            return false;
        }
        if (sq_tail_ == sq_tail_limit_ && !refresh_sq_limit_() && !hand_over_full_sq_())
            return false;
        const unsigned tail = sq_tail_++;
        ++outstanding_;
        out = &sqes_[tail & sq_mask_];
        return true;
    }
    std::error_code claim_failure_(opcode op) noexcept;
    void note_no_space_() noexcept;
    /// Claims a zeroed SQE for `add_sqe`, or says why not.
    std::error_code claim_raw_(std::uint8_t kernel_opcode, sqe*& out) noexcept;
    /// Gives back the SQE claimed last (not yet visible to the kernel).
    void unclaim_last_() noexcept
    {
        --sq_tail_;
        --outstanding_;
    }
    // The SQ is full: submits what is queued so that one more op finds room. False when no
    // room came of it (see the queuing comment above).
    bool hand_over_full_sq_() noexcept;
    bool refresh_sq_limit_() noexcept
    {
        if (forked_) [[unlikely]]
            return false; // the limit stays at the tail: every claim is refused
        // Acquire: the kernel has finished reading the entries it moved its head past.
        sq_tail_limit_ = __atomic_load_n(sq_khead_, __ATOMIC_ACQUIRE) + sq_room_;
        return sq_tail_ != sq_tail_limit_;
    }
    void refresh_direct_() noexcept;
    // A child's copy after fork() (forgotten or not): its table changes would be the parent's.
    bool inherited_() const noexcept;
    int enter_(unsigned to_submit, unsigned min_complete, unsigned flags, void* arg,
               std::size_t arg_size) noexcept;
    unsigned flush_() noexcept;
    // submit() and submit_and_get_events() without SQPOLL: one enter with `flags` for every
    // queued SQE (continuing partial submissions, retrying EINTR, EBUSY and EAGAIN); with
    // GETEVENTS in `flags` it enters even when nothing is queued.
    result<unsigned> enter_to_submit_(unsigned flags);
    // SQPOLL: waits (bounded) until the kernel thread has taken every published SQE.
    void await_sq_thread_() noexcept;
    void stash_ready_() noexcept;
    bool make_room_(unsigned attempt) noexcept;
    // The first completion to deliver: the backlog's, else the CQ's; with enter_kernel, when
    // both are empty and the kernel holds completions, one enter brings them in first.
    bool peek_(completion& out, bool enter_kernel = true) noexcept;
    // for_each_completion (EnterKernel) and for_each_ready (not).
    template <bool EnterKernel, class F>
    std::size_t reap_each_(F&& fn, std::size_t limit)
    {
        std::size_t n = 0;
        // Where the CQ lives never changes after construction: read it once, not after every
        // call of fn (which the compiler must assume may write anything).
        unsigned* const khead = cq_khead_;
        const unsigned* const ktail = cq_ktail_;
        const completion* const cqes = cqes_;
        const unsigned mask = cq_mask_;
        while (n != limit) {
            if (direct_cq_) {
                // The kernel writes CQEs before it moves the tail (acquire pairs with that),
                // and reuses an entry only after it sees our head move past it (release, after
                // we copied the entry out).
                const unsigned head = __atomic_load_n(khead, __ATOMIC_RELAXED);
                if (head != __atomic_load_n(ktail, __ATOMIC_ACQUIRE)) {
                    const completion c = cqes[head & mask];
                    __atomic_store_n(khead, head + 1, __ATOMIC_RELEASE);
                    ++stats_.cqes_reaped;
                    if (!c.more())
                        --outstanding_;
                    ++n;
                    fn(c);
                    continue;
                }
            }
            completion c; // the slow path: backlog, then (EnterKernel) overflow list, task work
            if (!peek_(c, EnterKernel))
                return n;
            pop_();
            ++n;
            fn(c);
        }
        return n;
    }
    void pop_() noexcept;

    // The range iterator's per-completion path, inline: read the CQ in place while the
    // backlog is empty, else (and for overflow and task work) the out-of-line peek_/pop_.
    // pop_fast_ removes what peek_fast_ returned: if a submit stashed the CQ into the backlog
    // in between, that entry is now the backlog's first, which pop_ removes.
    bool peek_fast_(completion& out) noexcept
    {
        if (direct_cq_) {
            const unsigned head = __atomic_load_n(cq_khead_, __ATOMIC_RELAXED);
            if (head != __atomic_load_n(cq_ktail_, __ATOMIC_ACQUIRE)) {
                out = cqes_[head & cq_mask_];
                return true;
            }
        }
        return peek_(out);
    }
    void pop_fast_() noexcept
    {
        if (!direct_cq_) {
            pop_();
            return;
        }
        const unsigned head = __atomic_load_n(cq_khead_, __ATOMIC_RELAXED);
        const bool more = cqes_[head & cq_mask_].more();
        __atomic_store_n(cq_khead_, head + 1, __ATOMIC_RELEASE);
        ++stats_.cqes_reaped;
        if (!more)
            --outstanding_;
    }

    std::unique_ptr<state> state_;
    // Set once at construction, copied out of the liburing state so that the hot accessors
    // above are inline: the ring sizes, and where our SQ tail and the kernel's SQ head live.
    unsigned sq_entries_ = 0;
    unsigned cq_entries_ = 0;
    bool cap_outstanding_ = false;       // ring_options::cap_outstanding
    // How many SQ entries the claims may fill: sq_entries_, or fewer when a fault plan of the
    // test build (io/fault_injection.hpp) shrinks the SQ.
    unsigned sq_room_ = 0;
    // How far the SQ tail may go: the kernel's SQ head plus the SQ size, as last read. The
    // head only moves forward, so this is never past the true limit, and a claim reads the
    // kernel's head only when the tail reaches it.
    unsigned sq_tail_limit_ = 0;
    unsigned sq_tail_ = 0;               // the SQ tail as filled; flush_ shows it to the kernel
    const unsigned* sq_khead_ = nullptr;
    sqe* sqes_ = nullptr;
    unsigned sq_mask_ = 0;
    // Bit k of word k / 64 is set when the kernel supports kernel opcode k (from the probe);
    // 256 bits cover every value an SQE's 8-bit opcode can take.
    std::uint64_t supported_[4] = {};
    // The CQ as mapped from the kernel (a CQE has the layout of `completion`, checked in
    // io/ring.cpp), for the inline reaping in for_each_completion.
    const completion* cqes_ = nullptr;
    unsigned* cq_khead_ = nullptr;
    const unsigned* cq_ktail_ = nullptr;
    unsigned cq_mask_ = 0;
    // Whether the inline reaping paths may read the CQ directly: no completion waits in the
    // internal backlog (see submit()) and none has to be routed through it (the ring's own
    // cancel_all completions, which are swallowed there; a fault plan in test builds). io/ring.cpp
    // keeps it up to date; the inline paths fall back to peek_ / pop_ when it is false.
    bool direct_cq_ = true;
    // Entries in the registered buffer and file tables; 0 when none is registered.
    unsigned registered_buffers_ = 0;
    unsigned registered_files_ = 0;
    bool eventfd_registered_ = false;
    // forget_after_fork() was called: the SQ limit is held at the tail and direct_cq_ false,
    // so the inline paths reach the out-of-line ones, which refuse.
    bool forked_ = false;
    // outstanding_: SQEs queued whose final CQE (one without IORING_CQE_F_MORE) has not been
    // handed to the caller; with cap_outstanding it never exceeds cq_entries.
    unsigned outstanding_ = 0;
    ring_stats stats_;
};

inline completion_range::iterator::iterator(ring* r) : ring_(r) { load(); }

inline void completion_range::iterator::load()
{
    if (ring_ != nullptr && !ring_->peek_fast_(current_))
        ring_ = nullptr;
}

inline completion_range::iterator& completion_range::iterator::operator++()
{
    ring_->pop_fast_();
    load();
    return *this;
}

} // namespace coil::io
