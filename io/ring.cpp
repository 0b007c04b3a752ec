// SPDX-License-Identifier: MIT
// The ring core: setup, queuing, submission with retry, and completion reaping with overflow
// flushing. This file and its siblings in io/ are the only ones that include <liburing.h>.

#include <coil/io/ring.hpp>
#include <coil/io/detail/deadline.hpp>

#include <liburing.h>

#if COIL_FAULT_INJECTION
#include "fault_injection.hpp"
#endif

#include <pthread.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <exception>
#include <limits>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace coil::io {

static_assert(sizeof(timespec64) == sizeof(__kernel_timespec));
static_assert(offsetof(timespec64, tv_nsec) == offsetof(__kernel_timespec, tv_nsec));
static_assert(completion::more_flag == IORING_CQE_F_MORE);
static_assert(completion::buffer_flag == IORING_CQE_F_BUFFER);
static_assert(completion::notification_flag == IORING_CQE_F_NOTIF);
static_assert(completion::buffer_id_shift == IORING_CQE_BUFFER_SHIFT);
// add_sqe and the inline ops in ring.hpp write SQEs through coil's own statement of the layout.
static_assert(sizeof(sqe) == sizeof(io_uring_sqe));
static_assert(offsetof(sqe, opcode) == offsetof(io_uring_sqe, opcode));
static_assert(offsetof(sqe, flags) == offsetof(io_uring_sqe, flags));
static_assert(offsetof(sqe, ioprio) == offsetof(io_uring_sqe, ioprio));
static_assert(offsetof(sqe, fd) == offsetof(io_uring_sqe, fd));
static_assert(offsetof(sqe, off) == offsetof(io_uring_sqe, off));
static_assert(offsetof(sqe, addr2) == offsetof(io_uring_sqe, addr2));
static_assert(offsetof(sqe, addr) == offsetof(io_uring_sqe, addr));
static_assert(offsetof(sqe, splice_off_in) == offsetof(io_uring_sqe, splice_off_in));
static_assert(offsetof(sqe, len) == offsetof(io_uring_sqe, len));
static_assert(offsetof(sqe, op_flags) == offsetof(io_uring_sqe, rw_flags));
static_assert(offsetof(sqe, poll32_events) == offsetof(io_uring_sqe, poll32_events));
static_assert(offsetof(sqe, timeout_flags) == offsetof(io_uring_sqe, timeout_flags));
static_assert(offsetof(sqe, splice_flags) == offsetof(io_uring_sqe, splice_flags));
static_assert(offsetof(sqe, user_data) == offsetof(io_uring_sqe, user_data));
static_assert(offsetof(sqe, buf_index) == offsetof(io_uring_sqe, buf_index));
static_assert(offsetof(sqe, buf_group) == offsetof(io_uring_sqe, buf_group));
static_assert(offsetof(sqe, personality) == offsetof(io_uring_sqe, personality));
static_assert(offsetof(sqe, file_index) == offsetof(io_uring_sqe, file_index));
static_assert(offsetof(sqe, splice_fd_in) == offsetof(io_uring_sqe, splice_fd_in));
static_assert(offsetof(sqe, addr3) == offsetof(io_uring_sqe, addr3));
// The kernel numbers in coil's opcode table (include/coil/io/opcode.hpp), checked against the
// kernel's own: a wrong number in the table fails here, so the table stays the one list.
static_assert(kernel_opcode(opcode::nop) == IORING_OP_NOP);
static_assert(kernel_opcode(opcode::read) == IORING_OP_READ);
static_assert(kernel_opcode(opcode::write) == IORING_OP_WRITE);
static_assert(kernel_opcode(opcode::readv) == IORING_OP_READV);
static_assert(kernel_opcode(opcode::writev) == IORING_OP_WRITEV);
static_assert(kernel_opcode(opcode::fsync) == IORING_OP_FSYNC);
static_assert(kernel_opcode(opcode::fallocate) == IORING_OP_FALLOCATE);
static_assert(kernel_opcode(opcode::poll_add) == IORING_OP_POLL_ADD);
static_assert(kernel_opcode(opcode::poll_remove) == IORING_OP_POLL_REMOVE);
static_assert(kernel_opcode(opcode::async_cancel) == IORING_OP_ASYNC_CANCEL);
static_assert(kernel_opcode(opcode::openat) == IORING_OP_OPENAT);
static_assert(kernel_opcode(opcode::close) == IORING_OP_CLOSE);
static_assert(kernel_opcode(opcode::statx) == IORING_OP_STATX);
static_assert(kernel_opcode(opcode::timeout) == IORING_OP_TIMEOUT);
static_assert(kernel_opcode(opcode::link_timeout) == IORING_OP_LINK_TIMEOUT);
static_assert(kernel_opcode(opcode::timeout_remove) == IORING_OP_TIMEOUT_REMOVE);
static_assert(kernel_opcode(opcode::accept) == IORING_OP_ACCEPT);
static_assert(kernel_opcode(opcode::connect) == IORING_OP_CONNECT);
static_assert(kernel_opcode(opcode::recv) == IORING_OP_RECV);
static_assert(kernel_opcode(opcode::send) == IORING_OP_SEND);
static_assert(kernel_opcode(opcode::socket) == IORING_OP_SOCKET);
static_assert(kernel_opcode(opcode::recvmsg) == IORING_OP_RECVMSG);
static_assert(kernel_opcode(opcode::sendmsg) == IORING_OP_SENDMSG);
static_assert(kernel_opcode(opcode::shutdown) == IORING_OP_SHUTDOWN);
static_assert(kernel_opcode(opcode::send_zc) == IORING_OP_SEND_ZC);
static_assert(kernel_opcode(opcode::read_fixed) == IORING_OP_READ_FIXED);
static_assert(kernel_opcode(opcode::write_fixed) == IORING_OP_WRITE_FIXED);
static_assert(kernel_opcode(opcode::unlinkat) == IORING_OP_UNLINKAT);
static_assert(kernel_opcode(opcode::renameat) == IORING_OP_RENAMEAT);
static_assert(kernel_opcode(opcode::mkdirat) == IORING_OP_MKDIRAT);
static_assert(kernel_opcode(opcode::symlinkat) == IORING_OP_SYMLINKAT);
static_assert(kernel_opcode(opcode::linkat) == IORING_OP_LINKAT);
// IORING_OP_FTRUNCATE (55, Linux 6.9) is newer than liburing 2.3's header: its number is
// checked against the kernel by tests/ring_file_ops_test.cpp (a truncate that takes effect).
static_assert(kernel_opcode(opcode::sync_file_range) == IORING_OP_SYNC_FILE_RANGE);
static_assert(kernel_opcode(opcode::fadvise) == IORING_OP_FADVISE);
static_assert(kernel_opcode(opcode::splice) == IORING_OP_SPLICE);
static_assert(kernel_opcode(opcode::tee) == IORING_OP_TEE);
static_assert(opcode_count == 37, "a new opcode needs its kernel number checked above");
// ring::for_each_completion reads CQEs in place as coil::io::completion.
static_assert(sizeof(completion) == sizeof(io_uring_cqe));
static_assert(offsetof(completion, user_data) == offsetof(io_uring_cqe, user_data));
static_assert(offsetof(completion, result) == offsetof(io_uring_cqe, res));
static_assert(offsetof(completion, flags) == offsetof(io_uring_cqe, flags));

// Which thread this is, as a number no other thread of the process has had or will have.
// std::thread::id and gettid() will not do: glibc hands a new thread the id of one that has
// exited (a ring handed over with a thread start and join would see its creator's id), and
// the kernel reuses thread ids. In a child after fork() the forking thread takes a new one,
// as its io_uring context is not inherited. Used for the registered ring fd, which is valid in
// the registering thread's io_uring context only (see ring::enter_).
namespace {

std::atomic<std::uint64_t> next_thread_serial{1};
thread_local std::uint64_t thread_serial = 0;

void renew_thread_serial() noexcept
{
    thread_serial = next_thread_serial.fetch_add(1, std::memory_order_relaxed);
}

} // namespace

std::uint64_t detail::this_thread_serial() noexcept
{
    if (thread_serial == 0) [[unlikely]] {
        static const bool renewed_after_fork =
            ::pthread_atfork(nullptr, nullptr, renew_thread_serial) == 0;
        static_cast<void>(renewed_after_fork);
        renew_thread_serial();
    }
    return thread_serial;
}

namespace {

using detail::this_thread_serial;

// The kernel's limits for io_uring_setup without IORING_SETUP_CLAMP.
constexpr unsigned max_sq_entries = 32768;
constexpr unsigned max_cq_entries = 2 * max_sq_entries;

using detail::max_rw_count;

// Flags newer than some liburing headers: the kernel's values, checked where the header has them.
constexpr unsigned async_cancel_any = 1U << 2; // IORING_ASYNC_CANCEL_ANY, Linux 5.19
#ifdef IORING_ASYNC_CANCEL_ANY
static_assert(async_cancel_any == IORING_ASYNC_CANCEL_ANY);
#endif
constexpr unsigned timeout_multishot = 1U << 6; // IORING_TIMEOUT_MULTISHOT, Linux 6.4
#ifdef IORING_TIMEOUT_MULTISHOT
static_assert(timeout_multishot == IORING_TIMEOUT_MULTISHOT);
#endif

// Socket-op flags, restated so the SQEs below are coil's own; each checked against the header.
constexpr std::uint16_t accept_multishot = 1U << 0; // IORING_ACCEPT_MULTISHOT, Linux 5.19
static_assert(accept_multishot == IORING_ACCEPT_MULTISHOT);
constexpr std::uint16_t recv_multishot = 1U << 1; // IORING_RECV_MULTISHOT, Linux 6.0
static_assert(recv_multishot == IORING_RECV_MULTISHOT);
// IORING_RECVSEND_BUNDLE and IORING_FEAT_RECVSEND_BUNDLE (Linux 6.10), which liburing 2.3's
// header does not have.
constexpr std::uint16_t recvsend_bundle = 1U << 4;
constexpr std::uint32_t feat_recvsend_bundle = 1U << 14;
constexpr unsigned async_cancel_all = 1U << 0; // IORING_ASYNC_CANCEL_ALL, Linux 5.19
static_assert(async_cancel_all == IORING_ASYNC_CANCEL_ALL);
constexpr unsigned async_cancel_fd = 1U << 1; // IORING_ASYNC_CANCEL_FD, Linux 5.19
static_assert(async_cancel_fd == IORING_ASYNC_CANCEL_FD);
constexpr std::uint8_t buffer_select = 1U << 5; // IOSQE_BUFFER_SELECT, Linux 5.7
static_assert(buffer_select == IOSQE_BUFFER_SELECT);
// sqe_flags must never be able to set it by accident: only add_recv_provided does.
static_assert((static_cast<unsigned>(sqe_flags::drain | sqe_flags::link | sqe_flags::hard_link |
                                     sqe_flags::async) &
               buffer_select) == 0);

static_assert(static_cast<unsigned>(sqe_flags::fixed_file) == IOSQE_FIXED_FILE);
static_assert(static_cast<unsigned>(sqe_flags::drain) == IOSQE_IO_DRAIN);
static_assert(static_cast<unsigned>(sqe_flags::link) == IOSQE_IO_LINK);
static_assert(static_cast<unsigned>(sqe_flags::hard_link) == IOSQE_IO_HARDLINK);
static_assert(static_cast<unsigned>(sqe_flags::async) == IOSQE_ASYNC);

// Every add_* that queued its op returns a copy of this.
using detail::success;

constexpr std::uint8_t kernel_sqe_flags(sqe_flags f) noexcept
{
    return static_cast<std::uint8_t>(f);
}

std::string describe_flags(unsigned flags)
{
    std::string out;
    auto add = [&](unsigned bit, const char* name) {
        if (flags & bit) {
            if (!out.empty())
                out += '|';
            out += name;
        }
    };
    add(IORING_SETUP_SQPOLL, "SQPOLL");
    add(IORING_SETUP_SQ_AFF, "SQ_AFF");
    add(IORING_SETUP_CQSIZE, "CQSIZE");
    add(IORING_SETUP_SUBMIT_ALL, "SUBMIT_ALL");
    add(IORING_SETUP_COOP_TASKRUN, "COOP_TASKRUN");
    add(IORING_SETUP_TASKRUN_FLAG, "TASKRUN_FLAG");
    add(IORING_SETUP_SINGLE_ISSUER, "SINGLE_ISSUER");
    add(IORING_SETUP_DEFER_TASKRUN, "DEFER_TASKRUN");
    return out.empty() ? "none" : out;
}

// Builds the exception for a failed io_uring_setup: what happened, and what to do about it.
std::system_error setup_error(int error, unsigned entries, unsigned cq_entries, unsigned flags)
{
    std::string what = "coil: io_uring_setup(entries=" + std::to_string(entries) +
                       ", cq_entries=" + std::to_string(cq_entries) +
                       ", flags=" + describe_flags(flags) + ") failed: ";
    switch (error) {
    case EPERM:
        what += "io_uring is disabled for this process. Either the sysctl "
                "kernel.io_uring_disabled is set (check it with 'sysctl "
                "kernel.io_uring_disabled'; 0 enables io_uring for all, 1 only for members "
                "of the group in kernel.io_uring_group), or a seccomp profile (a container "
                "runtime's default, systemd's SystemCallFilter=) blocks io_uring_setup: run "
                "with a profile that allows the io_uring_* system calls";
        if (flags & IORING_SETUP_SQPOLL)
            what += ". SQPOLL also needs CAP_SYS_NICE on kernels before 5.11";
        break;
    case ENOMEM: {
        rlimit limit{};
        std::string current = "unknown";
        if (getrlimit(RLIMIT_MEMLOCK, &limit) == 0)
            current = limit.rlim_cur == RLIM_INFINITY ? "unlimited"
                                                      : std::to_string(limit.rlim_cur / 1024) +
                                                            " KiB";
        // The SQEs, the SQ index array and the CQEs, at the sizes the kernel rounds to (powers
        // of two; a CQ twice the SQ unless asked); it rounds each region up to pages as well.
        const std::uint64_t sq = std::bit_ceil(entries);
        const std::uint64_t cq = cq_entries != 0 ? std::bit_ceil(cq_entries) : 2 * sq;
        const std::uint64_t needed_kib =
            (sq * (sizeof(io_uring_sqe) + sizeof(std::uint32_t)) + cq * sizeof(io_uring_cqe) +
             1023) /
            1024;
        what += "the kernel could not allocate the ring's memory (at least " +
                std::to_string(needed_kib) +
                " KiB). For a process without CAP_IPC_LOCK the kernel charges it to the "
                "locked-memory limit (RLIMIT_MEMLOCK, now " +
                current +
                "; kernels before 5.12 did, and recent ones do again): raise it ('ulimit -l', "
                "LimitMEMLOCK= in a systemd unit, memlock in /etc/security/limits.conf) or "
                "create the ring with fewer entries";
        break;
    }
    case ENOSYS:
        what += "this kernel has no io_uring (it needs Linux 5.6 or newer built with "
                "CONFIG_IO_URING), or a seccomp filter hides the system call: upgrade the "
                "kernel or allow the io_uring_* system calls";
        break;
    case EINVAL:
        what += "the kernel rejected the parameters. entries must be 1.." +
                std::to_string(max_sq_entries) + ", cq_entries 0 or at least entries and at most " +
                std::to_string(max_cq_entries) +
                ", and every setup flag must be known to this kernel (set "
                "ring_options::strict = false to drop unknown flags)";
        if (flags & IORING_SETUP_SQ_AFF)
            what += "; ring_options::sqpoll_cpu must name an online CPU that this process's "
                    "cpuset allows (see /sys/devices/system/cpu/online)";
        break;
    case EMFILE:
    case ENFILE:
        what += "too many open files: close some, or raise the limit ('ulimit -n')";
        break;
    default:
        what += "unexpected error";
        break;
    }
    return std::system_error(error, std::generic_category(), what);
}

// Loads and stores on the rings' shared indices. The kernel publishes CQEs before it moves the
// CQ tail (so an acquire load of the tail sees them) and reads SQEs after it sees the SQ tail
// (so a release store of the tail publishes our writes to them).
unsigned load_acquire(const unsigned* p) noexcept { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
unsigned load_relaxed(const unsigned* p) noexcept { return __atomic_load_n(p, __ATOMIC_RELAXED); }
void store_release(unsigned* p, unsigned v) noexcept { __atomic_store_n(p, v, __ATOMIC_RELEASE); }

} // namespace

struct ring::state {
    io_uring uring{};
    bool ext_arg = false;        // IORING_FEAT_EXT_ARG: timed waits need no timeout SQE
    bool recv_bundles = false;   // IORING_FEAT_RECVSEND_BUNDLE (Linux 6.10)
    // The process that created the ring. After a fork the child shares the ring's mappings
    // with the parent (an SQE the child wrote would be the parent's), so a ring object in a
    // child only unmaps and closes (see ~ring).
    pid_t owner_pid = 0;
    // The ring fd registered with the ring itself (Linux 5.18): io_uring_enter then skips the
    // file-table lookup. The registration lives in the registering thread's io_uring context,
    // so only that thread may use it (see enter_); every other thread enters with the fd.
    bool registered = false;
    unsigned registered_index = 0;
    std::uint64_t registered_thread = 0; // this_thread_serial() of the registering thread

    // Completions moved out of the CQ before the caller asked for them: when the kernel
    // answered a submit with EBUSY or EAGAIN, and whenever completions are routed (below).
    // Delivered before the CQ. Reserved to the CQ size at construction, so filling it does not
    // allocate in the common case.
    std::vector<completion> backlog;
    std::size_t backlog_head = 0;

    // Ops the ring queued for itself (cancel_all), tagged internal_user_data, whose completion
    // has not been reaped. While any is pending every CQE goes through the backlog, where
    // those completions are swallowed.
    unsigned internal_pending = 0;
    // IORING_ASYNC_CANCEL_ANY answered -EINVAL (before Linux 5.19): cancel_all cannot help.
    bool cancel_any_unsupported = false;
    // cancel_all() was called and drain() has not yet seen outstanding_ reach 0: drain()
    // cancels again what one cancel missed.
    bool cancel_all_requested = false;

#if COIL_FAULT_INJECTION
    // The plan this ring obeys (the thread's scoped_faults at construction), or null. With a
    // plan every CQE is routed through the backlog, where stalls and reordering happen.
    std::shared_ptr<testing::detail::fault_state> faults;
    unsigned stall_left = 0; // reaping passes that still see an empty CQ
#endif

    unsigned sq_flags() const noexcept { return load_relaxed(uring.sq.kflags); }
    unsigned cq_in_ring() const noexcept
    {
        return load_acquire(uring.cq.ktail) - load_relaxed(uring.cq.khead);
    }
    std::size_t backlog_size() const noexcept { return backlog.size() - backlog_head; }
    // Whether every CQE must pass through the backlog before it is delivered.
    bool routed() const noexcept
    {
#if COIL_FAULT_INJECTION
        if (faults)
            return true;
#endif
        return internal_pending != 0;
    }
};

namespace {

// Unmaps a ring and closes its fd without any io_uring system call: what io_uring_queue_exit
// does, less the unregistering of the ring fd, which only the registering thread of the
// creating process may do (~ring does it first when it can).
void unmap_and_close(io_uring& u) noexcept
{
    ::munmap(u.sq.sqes, sizeof(io_uring_sqe) * u.sq.ring_entries);
    ::munmap(u.sq.ring_ptr, u.sq.ring_sz);
    if (u.cq.ring_ptr != nullptr && u.cq.ring_ptr != u.sq.ring_ptr)
        ::munmap(u.cq.ring_ptr, u.cq.ring_sz);
    ::close(u.ring_fd);
}

// The error for a ring whose io_uring_register failed with `error` while taking the probe.
std::system_error probe_error(int error)
{
    std::string what = "coil: io_uring_register(IORING_REGISTER_PROBE) failed: ";
    switch (error) {
    case EINVAL:
        what += "this kernel cannot report which io_uring operations it supports "
                "(IORING_REGISTER_PROBE needs Linux 5.6); coil needs Linux 5.6 or newer: "
                "upgrade the kernel";
        break;
    case EPERM:
    case EACCES:
    case ENOSYS:
        what += "io_uring_register is blocked (seccomp or an LSM): allow the io_uring_* "
                "system calls (io_uring_setup, io_uring_enter and io_uring_register) in the "
                "seccomp profile or security policy this process runs under";
        break;
    default:
        what += "unexpected error";
        break;
    }
    return std::system_error(error, std::generic_category(), what);
}

// The error for a ring whose first io_uring_enter failed with `error`.
std::system_error enter_error(int error)
{
    std::string what = "coil: io_uring_enter failed on a new ring: ";
    switch (error) {
    case EPERM:
    case EACCES:
    case ENOSYS:
        what += "io_uring_enter is blocked (seccomp or an LSM) although io_uring_setup is "
                "allowed: allow the io_uring_* system calls (io_uring_setup, io_uring_enter "
                "and io_uring_register) in the seccomp profile or security policy this "
                "process runs under";
        break;
    default:
        what += "unexpected error";
        break;
    }
    return std::system_error(error, std::generic_category(), what);
}

} // namespace

ring::ring(unsigned entries, const ring_options& options)
{
    if (entries == 0 || entries > max_sq_entries ||
        (options.cq_entries != 0 &&
         (options.cq_entries < entries || options.cq_entries > max_cq_entries)))
        throw setup_error(EINVAL, entries, options.cq_entries, 0);

    state_ = std::make_unique<state>();

    io_uring_params params{};
    unsigned flags = 0;
    if (options.cq_entries != 0) {
        flags |= IORING_SETUP_CQSIZE;
        params.cq_entries = options.cq_entries;
    }
    if (options.sqpoll) {
        flags |= IORING_SETUP_SQPOLL;
        params.sq_thread_idle = static_cast<unsigned>(options.sqpoll_idle.count());
        if (options.sqpoll_cpu) {
            flags |= IORING_SETUP_SQ_AFF;
            params.sq_thread_cpu = *options.sqpoll_cpu;
        }
    }
    // Requested features, in the order they are given up when the kernel does not know them:
    // the newest first (DEFER_TASKRUN 6.1, SINGLE_ISSUER 6.0, COOP_TASKRUN and TASKRUN_FLAG
    // 5.19, SUBMIT_ALL 5.18). The kernel answers EINVAL without saying which flag it does not
    // know, and a kernel that lacks one lacks every newer one: so each flag goes only when a
    // newer one could not have been the reason. SUBMIT_ALL is coil's own choice (a bad SQE
    // does not stop the rest of a batch) and is always optional.
    // With SQPOLL the kernel thread runs the task work, and the kernel refuses the flags that
    // steer it (DEFER_TASKRUN, COOP_TASKRUN, TASKRUN_FLAG): they are not asked for, so that
    // dropping them does not cost SUBMIT_ALL too.
    const bool taskrun_flags = !options.sqpoll;
    const unsigned optional_steps[] = {
        options.single_issuer && taskrun_flags ? IORING_SETUP_DEFER_TASKRUN : 0U,
        options.single_issuer ? IORING_SETUP_SINGLE_ISSUER : 0U,
        options.coop_taskrun && taskrun_flags ? IORING_SETUP_COOP_TASKRUN : 0U,
        (options.single_issuer || options.coop_taskrun) && taskrun_flags
            ? IORING_SETUP_TASKRUN_FLAG
            : 0U,
        IORING_SETUP_SUBMIT_ALL,
    };
    unsigned requested = flags;
    for (unsigned step : optional_steps)
        requested |= step;
    unsigned wanted = requested;
    std::size_t dropped = 0;
    for (;;) {
        io_uring_params attempt = params;
        attempt.flags = wanted;
#if COIL_FAULT_INJECTION
        const auto faults = testing::detail::current_faults();
        int ret = faults && (wanted & faults->plan.refuse_setup_flags) != 0
                      ? -EINVAL
                      : io_uring_queue_init_params(entries, &state_->uring, &attempt);
#else
        int ret = io_uring_queue_init_params(entries, &state_->uring, &attempt);
#endif
        if (ret == 0) {
            params = attempt;
            break;
        }
        if (ret == -EINVAL && options.strict && (wanted & IORING_SETUP_SUBMIT_ALL)) {
            // Strict refuses a flag the caller asked for; SUBMIT_ALL is coil's own choice.
            wanted &= ~static_cast<unsigned>(IORING_SETUP_SUBMIT_ALL);
            continue;
        }
        if (ret == -EINVAL && !options.strict && dropped < std::size(optional_steps)) {
            // Drop the next optional flag (TASKRUN_FLAG goes together with whatever is left of
            // COOP_TASKRUN and DEFER_TASKRUN, which the kernel requires).
            wanted &= ~optional_steps[dropped++];
            if (!(wanted & (IORING_SETUP_COOP_TASKRUN | IORING_SETUP_DEFER_TASKRUN)))
                wanted &= ~static_cast<unsigned>(IORING_SETUP_TASKRUN_FLAG);
            continue;
        }
        throw setup_error(-ret, entries, options.cq_entries, wanted);
    }

    io_uring& u = state_->uring;
#if COIL_FAULT_INJECTION
    state_->faults = testing::detail::current_faults();
    if (state_->faults)
        params.features &= ~state_->faults->plan.hide_features;
#endif
    if (!(params.features & IORING_FEAT_NODROP)) {
        unmap_and_close(u);
        throw std::system_error(
            ENOTSUP, std::generic_category(),
            "coil: this kernel's io_uring lacks IORING_FEAT_NODROP (Linux 5.5): it would drop "
            "completions that do not fit in the completion queue, and coil relies on the kernel "
            "keeping them. Upgrade to Linux 5.6 or newer");
    }
    state_->ext_arg = (params.features & IORING_FEAT_EXT_ARG) != 0;
    state_->recv_bundles = (params.features & feat_recvsend_bundle) != 0;
    state_->owner_pid = ::getpid();

    // One cheap enter, so that a policy that allows io_uring_setup but blocks io_uring_enter
    // is reported here, naming the cause, rather than as a failed submit later.
    if (int ret = io_uring_enter(static_cast<unsigned>(u.ring_fd), 0, 0, 0, nullptr); ret < 0) {
        unmap_and_close(u);
        throw enter_error(-ret);
    }

    // The probe, registered by hand so that its errno tells a kernel too old for it from a
    // policy that blocks io_uring_register.
    {
        constexpr unsigned probe_ops = 256;
        std::vector<std::byte> storage(sizeof(io_uring_probe) +
                                       probe_ops * sizeof(io_uring_probe_op));
        auto* probe = reinterpret_cast<io_uring_probe*>(storage.data());
        if (int ret = io_uring_register_probe(&u, probe, probe_ops); ret < 0) {
            unmap_and_close(u);
            throw probe_error(-ret);
        }
        for (unsigned op = 0; op <= probe->last_op && op < probe_ops; ++op) {
            if (io_uring_opcode_supported(probe, static_cast<int>(op))) {
                supported_[op >> 6] |= std::uint64_t{1} << (op & 63U);
            }
        }
    }

#if COIL_FAULT_INJECTION
    if (state_->faults) {
        for (std::size_t i = 0; i < opcode_count; ++i) {
            if (state_->faults->plan.hide_opcodes & (std::uint64_t{1} << i)) {
                const unsigned op = opcode_table[i].kernel_opcode;
                supported_[op >> 6] &= ~(std::uint64_t{1} << (op & 63U));
            }
        }
    }
#endif

    // An optimisation only (Linux 5.18): a kernel or a policy that refuses it costs nothing.
    if (io_uring_register_ring_fd(&u) == 1) {
        state_->registered = true;
        state_->registered_index = static_cast<unsigned>(u.enter_ring_fd);
        state_->registered_thread = this_thread_serial();
    }

    state_->backlog.reserve(u.cq.ring_entries);
    sq_entries_ = u.sq.ring_entries;
    sq_room_ = sq_entries_;
    cq_entries_ = u.cq.ring_entries;
    cap_outstanding_ = options.cap_outstanding;
    sq_tail_ = u.sq.sqe_tail;
    sq_khead_ = u.sq.khead;
    // coil never asks for IORING_SETUP_CQE32, so CQEs are 16 bytes, laid out as `completion`.
    cqes_ = reinterpret_cast<const completion*>(u.cq.cqes);
    cq_khead_ = u.cq.khead;
    cq_ktail_ = u.cq.ktail;
    cq_mask_ = u.cq.ring_mask;
    sqes_ = reinterpret_cast<sqe*>(u.sq.sqes); // 64-byte SQEs: no SQE128
    sq_mask_ = u.sq.ring_mask;
#if COIL_FAULT_INJECTION
    if (state_->faults) {
        const unsigned shrunk = state_->faults->plan.sq_entries;
        if (shrunk != 0 && shrunk < sq_entries_)
            sq_room_ = shrunk;
        direct_cq_ = false; // the inline paths take peek_ / pop_, where the faults are
    }
#endif
}

ring::~ring()
{
    state& s = *state_;
    if (::getpid() == s.owner_pid) {
        // The kernel may still write into the buffers of ops in flight, and closing the ring
        // does not wait for it (the kernel's teardown runs asynchronously). So take them back
        // and reap them all before returning (docs/lifetimes.md).
        if (outstanding_ != 0) {
            cancel_all();
            try {
                drain();
            } catch (const std::system_error& e) {
                // Returning now could let the kernel write into memory the caller frees next:
                // stop here, saying why.
                if (e.code() == std::errc::file_exists && single_issuer()) {
                    std::fprintf(stderr,
                                 "coil: a single_issuer ring was destroyed on a thread other "
                                 "than the one that created it, with %u op(s) in flight: the "
                                 "kernel lets only the creating thread submit and wait on it "
                                 "(EEXIST), so they can neither be cancelled nor drained here. "
                                 "Destroy the ring on its creating thread, or reap or drain() "
                                 "its ops there first.\n",
                                 outstanding_ - s.internal_pending);
                } else {
                    // Waiting on our own ring failed, which no valid ring does.
                    std::fprintf(stderr, "coil: ~ring could not drain its ops: %s\n", e.what());
                }
                std::terminate();
            }
        }
        if (s.registered && this_thread_serial() == s.registered_thread)
            io_uring_unregister_ring_fd(&s.uring);
        // On another thread the registration stays in the registering thread's io_uring
        // context, holding the ring's file (not its ops: none is left) until that thread exits.
    }
    // A child after fork: the mappings are shared with the parent, whose ring this is. Touch
    // nothing in them; unmapping and closing affects this process alone.
    unmap_and_close(s.uring);
}

bool ring::has_ext_arg() const noexcept { return state_->ext_arg; }
bool ring::has_recv_bundles() const noexcept { return state_->recv_bundles; }

int ring::fd() const noexcept { return state_->uring.ring_fd; }
unsigned ring::setup_flags() const noexcept { return state_->uring.flags; }

bool ring::single_issuer() const noexcept
{
    return (state_->uring.flags & IORING_SETUP_SINGLE_ISSUER) != 0;
}
bool ring::coop_taskrun() const noexcept
{
    return (state_->uring.flags & IORING_SETUP_COOP_TASKRUN) != 0;
}
bool ring::sqpoll() const noexcept { return (state_->uring.flags & IORING_SETUP_SQPOLL) != 0; }


unsigned ring::ready() const noexcept
{
    if (forked_)
        return 0;
    const state& s = *state_;
    unsigned in_ring = s.cq_in_ring();
    if (s.internal_pending != 0) {
        // cancel_all's own completion may be among them: it is swallowed, never delivered, so
        // it is not counted (stash_ready_ below decides the same way).
        const io_uring& u = s.uring;
        unsigned internal = 0;
        for (unsigned head = load_relaxed(u.cq.khead), i = 0;
             i < in_ring && internal < s.internal_pending; ++i) {
            if (u.cq.cqes[(head + i) & u.cq.ring_mask].user_data == internal_user_data)
                ++internal;
        }
        in_ring -= internal;
    }
    return static_cast<unsigned>(s.backlog_size()) + in_ring;
}

// --- queuing --------------------------------------------------------------------------------

// Takes an SQE for `op` or returns why not; the add_* body then fills it and `finish` tags it.
#define COIL_CLAIM_SQE(op)                                                                     \
    io_uring_sqe* sqe = nullptr;                                                               \
    if (errc why = claim_(op, sqe); why != errc{})                                             \
        return make_error_code(why);

namespace {

void finish(io_uring_sqe* sqe, std::uint64_t user_data, sqe_flags flags) noexcept
{
    sqe->user_data = user_data;
    sqe->flags |= kernel_sqe_flags(flags);
}

} // namespace

// Counts an op refused for want of room.
void ring::note_no_space_() noexcept
{
    ++stats_.sq_full;
#if COIL_FAULT_INJECTION
    if (state_->faults && sq_room_ < sq_entries_ && unsubmitted() >= sq_room_)
        ++state_->faults->counts.sq_fills;
#endif
}

bool ring::hand_over_full_sq_() noexcept
{
    if (forked_)
        return false;
    // Submitting ends every link chain open at the end of the queue: a chain the caller is
    // still queuing stays whole, and the op that does not fit is refused instead.
    const io_uring_sqe& last = state_->uring.sq.sqes[(sq_tail_ - 1) & sq_mask_];
    if ((last.flags & (IOSQE_IO_LINK | IOSQE_IO_HARDLINK)) != 0)
        return false;
#if COIL_FAULT_INJECTION
    if (state_->faults && sq_room_ < sq_entries_)
        ++state_->faults->counts.sq_fills;
#endif
    ++stats_.sq_handovers;
    if (sqpoll()) {
        // Publish and wake the kernel thread, then give it a moment (1 ms at most: a thread
        // that has stopped taking SQEs, as while the CQ overflows, must not stall every add)
        // to take some.
        static_cast<void>(submit());
        const auto give_up = std::chrono::steady_clock::now() + std::chrono::milliseconds(1);
        while (!refresh_sq_limit_() && std::chrono::steady_clock::now() < give_up) {
            if (state_->sq_flags() & IORING_SQ_NEED_WAKEUP)
                enter_(0, 0, IORING_ENTER_SQ_WAKEUP, nullptr, 0);
            std::this_thread::yield();
        }
        // Still full: the thread is slow, not stopped (it waits for its CPU, which other
        // processes share): wait in the kernel until it has taken some (IORING_ENTER_SQ_WAIT,
        // Linux 5.10; an older kernel refuses the flag and the op is refused below), again if
        // the wait ends early (a signal), for a second at most. Not while the CQ overflows,
        // when a kernel may stop taking SQEs until the caller reaps.
        const auto wait_until = std::chrono::steady_clock::now() + std::chrono::seconds(1);
        while (!refresh_sq_limit_() && (state_->sq_flags() & IORING_SQ_CQ_OVERFLOW) == 0 &&
               std::chrono::steady_clock::now() < wait_until) {
            const int ret =
                enter_(0, 0, IORING_ENTER_SQ_WAKEUP | IORING_ENTER_SQ_WAIT, nullptr, 0);
            if (ret < 0 && ret != -EINTR)
                break;
        }
    } else {
        // Retries EINTR, and EBUSY / EAGAIN after moving ready completions aside; an error
        // leaves the SQEs queued, and the op is refused below.
        static_cast<void>(enter_to_submit_(0));
    }
    return refresh_sq_limit_();
}

// Why claim_inline_ refused: the opcode, or else a full SQ or the CQ cap.
std::error_code ring::claim_failure_(opcode op) noexcept
{
    if (forked_)
        return make_error_code(errc::forked_copy);
    if (!supports(op))
        return make_error_code(errc::unsupported_operation);
    note_no_space_();
    return make_error_code(errc::no_space);
}

std::error_code ring::claim_raw_(std::uint8_t kernel_opcode, sqe*& out) noexcept
{
    if (!supports_kernel_opcode(kernel_opcode))
        return make_error_code(errc::unsupported_operation);
    if ((cap_outstanding_ && outstanding_ >= cq_entries_) ||
        (sq_tail_ == sq_tail_limit_ && !refresh_sq_limit_() && !hand_over_full_sq_())) {
        if (forked_)
            return make_error_code(errc::forked_copy);
        note_no_space_();
        return make_error_code(errc::no_space);
    }
    out = &sqes_[sq_tail_ & sq_mask_];
    *out = sqe{};
    ++sq_tail_;
    ++outstanding_;
    return success();
}

// Inlined into every out-of-line add_*.
[[gnu::always_inline]] inline errc ring::claim_(opcode op, io_uring_sqe*& out) noexcept
{
    if (!supports(op))
        return errc::unsupported_operation;
    if ((cap_outstanding_ && outstanding_ >= cq_entries_) ||
        (sq_tail_ == sq_tail_limit_ && !refresh_sq_limit_() && !hand_over_full_sq_())) {
        if (forked_)
            return errc::forked_copy;
        note_no_space_();
        return errc::no_space;
    }
    io_uring_sq& sq = state_->uring.sq;
    out = &sq.sqes[sq_tail_ & sq.ring_mask];
    ++sq_tail_;
    ++outstanding_;
    return errc{};
}

namespace {
// An iovec count for an SQE's 32-bit length field. A larger count is clamped, not truncated:
// the kernel then refuses it (EINVAL, above UIO_MAXIOV) as readv(2) would, where the low 32
// bits could name a small, valid count and turn the call into a silent partial transfer.
unsigned iovec_count(std::size_t count) noexcept
{
    return static_cast<unsigned>(std::min<std::size_t>(count, std::numeric_limits<unsigned>::max()));
}
} // namespace

std::error_code ring::add_readv(int fd, std::span<const ::iovec> buffers, std::uint64_t offset,
                                std::uint64_t user_data, sqe_flags flags)
{
    detail::check_kernel_iovecs(buffers.data(), buffers.size(), "add_readv");
    COIL_CLAIM_SQE(opcode::readv);
    io_uring_prep_readv(sqe, fd, buffers.data(), iovec_count(buffers.size()), offset);
    finish(sqe, user_data, flags);
    return success();
}

std::error_code ring::add_writev(int fd, std::span<const ::iovec> buffers, std::uint64_t offset,
                                 std::uint64_t user_data, sqe_flags flags)
{
    detail::check_kernel_iovecs(buffers.data(), buffers.size(), "add_writev");
    COIL_CLAIM_SQE(opcode::writev);
    io_uring_prep_writev(sqe, fd, buffers.data(), iovec_count(buffers.size()), offset);
    finish(sqe, user_data, flags);
    return success();
}

std::error_code ring::add_fsync(int fd, fsync_mode mode, std::uint64_t user_data,
                                sqe_flags flags)
{
    COIL_CLAIM_SQE(opcode::fsync);
    io_uring_prep_fsync(sqe, fd, mode == fsync_mode::data ? IORING_FSYNC_DATASYNC : 0U);
    finish(sqe, user_data, flags);
    return success();
}

std::error_code ring::add_sync_file_range(int fd, std::uint64_t offset, std::uint64_t length,
                                          unsigned range_flags, std::uint64_t user_data,
                                          sqe_flags flags)
{
    if (length > std::numeric_limits<std::uint32_t>::max())
        return std::make_error_code(std::errc::invalid_argument);
    COIL_CLAIM_SQE(opcode::sync_file_range);
    io_uring_prep_sync_file_range(sqe, fd, static_cast<unsigned>(length), offset,
                                  static_cast<int>(range_flags));
    finish(sqe, user_data, flags);
    return success();
}

std::error_code ring::add_fadvise(int fd, std::uint64_t offset, std::uint64_t length, int advice,
                                  std::uint64_t user_data, sqe_flags flags)
{
    COIL_CLAIM_SQE(opcode::fadvise);
    // The 32-bit `len` where it fits (every kernel); a longer length in `addr`, which kernels
    // that take 64-bit lengths read first and older ones refuse (nonzero `addr`: -EINVAL).
    const bool fits = length <= std::numeric_limits<std::uint32_t>::max();
    io_uring_prep_rw(IORING_OP_FADVISE, sqe, fd, nullptr,
                     fits ? static_cast<unsigned>(length) : 0U, offset);
    if (!fits)
        sqe->addr = length;
    sqe->fadvise_advice = static_cast<std::uint32_t>(advice);
    finish(sqe, user_data, flags);
    return success();
}

std::error_code ring::add_splice(int in, std::uint64_t in_offset, int out,
                                 std::uint64_t out_offset, std::uint32_t length,
                                 unsigned splice_flags, std::uint64_t user_data, sqe_flags flags)
{
    COIL_CLAIM_SQE(opcode::splice);
    io_uring_prep_splice(sqe, in, static_cast<std::int64_t>(in_offset), out,
                         static_cast<std::int64_t>(out_offset), length, splice_flags);
    finish(sqe, user_data, flags);
    return success();
}

std::error_code ring::add_tee(int in, int out, std::uint32_t length, unsigned splice_flags,
                              std::uint64_t user_data, sqe_flags flags)
{
    COIL_CLAIM_SQE(opcode::tee);
    io_uring_prep_tee(sqe, in, out, length, splice_flags);
    finish(sqe, user_data, flags);
    return success();
}

std::error_code ring::add_fallocate(int fd, int mode, std::uint64_t offset, std::uint64_t length,
                                    std::uint64_t user_data, sqe_flags flags)
{
    COIL_CLAIM_SQE(opcode::fallocate);
    io_uring_prep_fallocate(sqe, fd, mode, static_cast<off_t>(offset),
                            static_cast<off_t>(length));
    finish(sqe, user_data, flags);
    return success();
}

std::error_code ring::add_poll(int fd, std::uint32_t events, std::uint64_t user_data,
                               poll_mode mode, sqe_flags flags)
{
    COIL_CLAIM_SQE(opcode::poll_add);
    if (mode == poll_mode::multishot)
        io_uring_prep_poll_multishot(sqe, fd, events);
    else
        io_uring_prep_poll_add(sqe, fd, events);
    finish(sqe, user_data, flags);
    return success();
}

std::error_code ring::add_poll_remove(std::uint64_t target, std::uint64_t user_data)
{
    COIL_CLAIM_SQE(opcode::poll_remove);
    io_uring_prep_poll_remove(sqe, target);
    finish(sqe, user_data, sqe_flags::none);
    return success();
}

std::error_code ring::add_cancel(std::uint64_t target, std::uint64_t user_data)
{
    COIL_CLAIM_SQE(opcode::async_cancel);
    io_uring_prep_cancel64(sqe, target, 0);
    finish(sqe, user_data, sqe_flags::none);
    return success();
}

std::error_code ring::add_openat(int dirfd, const char* path, int open_flags, unsigned mode,
                                 std::uint64_t user_data, sqe_flags flags)
{
    detail::check_kernel_string(path, "add_openat");
    COIL_CLAIM_SQE(opcode::openat);
    io_uring_prep_openat(sqe, dirfd, path, open_flags, mode);
    finish(sqe, user_data, flags);
    return success();
}

std::error_code ring::add_close(int fd, std::uint64_t user_data, sqe_flags flags)
{
    COIL_CLAIM_SQE(opcode::close);
    io_uring_prep_close(sqe, fd);
    finish(sqe, user_data, flags);
    return success();
}

std::error_code ring::add_statx(int dirfd, const char* path, int statx_flags, unsigned mask,
                                struct ::statx* out, std::uint64_t user_data, sqe_flags flags)
{
    detail::check_kernel_string(path, "add_statx");
    detail::check_kernel_memory(out, sizeof(struct ::statx), "add_statx");
    COIL_CLAIM_SQE(opcode::statx);
    io_uring_prep_statx(sqe, dirfd, path, statx_flags, mask, out);
    finish(sqe, user_data, flags);
    return success();
}

std::error_code ring::add_unlinkat(int dirfd, const char* path, int unlink_flags,
                                  std::uint64_t user_data, sqe_flags flags)
{
    detail::check_kernel_string(path, "add_unlinkat");
    COIL_CLAIM_SQE(opcode::unlinkat);
    io_uring_prep_unlinkat(sqe, dirfd, path, unlink_flags);
    finish(sqe, user_data, flags);
    return success();
}

std::error_code ring::add_renameat(int old_dirfd, const char* old_path, int new_dirfd,
                                  const char* new_path, unsigned rename_flags,
                                  std::uint64_t user_data, sqe_flags flags)
{
    detail::check_kernel_string(old_path, "add_renameat");
    detail::check_kernel_string(new_path, "add_renameat");
    COIL_CLAIM_SQE(opcode::renameat);
    io_uring_prep_renameat(sqe, old_dirfd, old_path, new_dirfd, new_path, rename_flags);
    finish(sqe, user_data, flags);
    return success();
}

std::error_code ring::add_mkdirat(int dirfd, const char* path, unsigned mode,
                                 std::uint64_t user_data, sqe_flags flags)
{
    detail::check_kernel_string(path, "add_mkdirat");
    COIL_CLAIM_SQE(opcode::mkdirat);
    io_uring_prep_mkdirat(sqe, dirfd, path, mode);
    finish(sqe, user_data, flags);
    return success();
}

std::error_code ring::add_symlinkat(const char* target, int new_dirfd, const char* link_path,
                                   std::uint64_t user_data, sqe_flags flags)
{
    detail::check_kernel_string(target, "add_symlinkat");
    detail::check_kernel_string(link_path, "add_symlinkat");
    COIL_CLAIM_SQE(opcode::symlinkat);
    io_uring_prep_symlinkat(sqe, target, new_dirfd, link_path);
    finish(sqe, user_data, flags);
    return success();
}

std::error_code ring::add_linkat(int old_dirfd, const char* old_path, int new_dirfd,
                                const char* new_path, int link_flags, std::uint64_t user_data,
                                sqe_flags flags)
{
    detail::check_kernel_string(old_path, "add_linkat");
    detail::check_kernel_string(new_path, "add_linkat");
    COIL_CLAIM_SQE(opcode::linkat);
    io_uring_prep_linkat(sqe, old_dirfd, old_path, new_dirfd, new_path, link_flags);
    finish(sqe, user_data, flags);
    return success();
}

std::error_code ring::add_ftruncate(int fd, std::uint64_t length, std::uint64_t user_data,
                                   sqe_flags flags)
{
    COIL_CLAIM_SQE(opcode::ftruncate);
    // The kernel reads only the fd and the length (in `off`); every other field must be 0.
    io_uring_prep_rw(kernel_opcode(opcode::ftruncate), sqe, fd, nullptr, 0, length);
    finish(sqe, user_data, flags);
    return success();
}

std::error_code ring::add_timeout(const timespec64* when, unsigned count, timeout_clock clock,
                                  std::uint64_t user_data, sqe_flags flags)
{
    detail::check_kernel_memory(when, sizeof(timespec64), "add_timeout");
    COIL_CLAIM_SQE(opcode::timeout);
    // The kernel only reads the timespec; liburing's prototype is not const-correct.
    io_uring_prep_timeout(sqe,
                          reinterpret_cast<__kernel_timespec*>(const_cast<timespec64*>(when)),
                          count, clock == timeout_clock::absolute ? IORING_TIMEOUT_ABS : 0U);
    finish(sqe, user_data, flags);
    return success();
}

std::error_code ring::add_multishot_timeout(const timespec64* interval, unsigned count,
                                            std::uint64_t user_data, sqe_flags flags)
{
    detail::check_kernel_memory(interval, sizeof(timespec64), "add_multishot_timeout");
    COIL_CLAIM_SQE(opcode::timeout);
    // For a multishot timeout the kernel reads `off` as the number of firings, not as a
    // completion count.
    io_uring_prep_timeout(sqe,
                          reinterpret_cast<__kernel_timespec*>(const_cast<timespec64*>(interval)),
                          count, timeout_multishot);
    finish(sqe, user_data, flags);
    return success();
}

std::error_code ring::add_link_timeout(const timespec64* when, std::uint64_t user_data)
{
    detail::check_kernel_memory(when, sizeof(timespec64), "add_link_timeout");
    COIL_CLAIM_SQE(opcode::link_timeout);
    io_uring_prep_link_timeout(
        sqe, reinterpret_cast<__kernel_timespec*>(const_cast<timespec64*>(when)), 0);
    finish(sqe, user_data, sqe_flags::none);
    return success();
}

std::error_code ring::add_timeout_remove(std::uint64_t target, std::uint64_t user_data)
{
    COIL_CLAIM_SQE(opcode::timeout_remove);
    io_uring_prep_timeout_remove(sqe, target, 0);
    finish(sqe, user_data, sqe_flags::none);
    return success();
}

// --- sockets --------------------------------------------------------------------------------
// These SQEs are written through coil's own `sqe` (its layout is checked above): prepare_rw
// zeroes every field the opcode does not use, which the kernel requires (it answers -EINVAL
// to a stray `len`, `addr3` or `buf_index` on several of them).

namespace {

sqe& as_sqe(io_uring_sqe* raw) noexcept { return *reinterpret_cast<sqe*>(raw); }

std::uint64_t address_of(const void* p) noexcept { return reinterpret_cast<std::uintptr_t>(p); }

} // namespace

std::error_code ring::add_socket(int domain, int type, int protocol, std::uint64_t user_data,
                                 sqe_flags flags)
{
    COIL_CLAIM_SQE(opcode::socket);
    // IORING_OP_SOCKET reads the domain from `fd`, the type from `off`, the protocol from `len`.
    detail::prepare_rw(as_sqe(sqe), kernel_opcode(opcode::socket), domain, nullptr,
                       static_cast<std::uint32_t>(protocol), static_cast<std::uint32_t>(type),
                       kernel_sqe_flags(flags), user_data);
    return success();
}

std::error_code ring::add_accept(int fd, ::sockaddr* peer, ::socklen_t* peer_length,
                                 int accept_flags, std::uint64_t user_data, accept_mode mode,
                                 sqe_flags flags)
{
    detail::check_kernel_memory(peer_length, sizeof(::socklen_t), "add_accept");
    if (peer_length != nullptr)
        detail::check_kernel_memory(peer, *peer_length, "add_accept");
    COIL_CLAIM_SQE(opcode::accept);
    io::sqe& s = as_sqe(sqe);
    // The address goes in `addr`, the pointer to its length in `addr2`.
    detail::prepare_rw(s, kernel_opcode(opcode::accept), fd, peer, 0, address_of(peer_length),
                       kernel_sqe_flags(flags), user_data);
    s.accept_flags = static_cast<std::uint32_t>(accept_flags);
    if (mode == accept_mode::multishot)
        s.ioprio = accept_multishot;
    return success();
}

std::error_code ring::add_connect(int fd, const ::sockaddr* address, ::socklen_t length,
                                  std::uint64_t user_data, sqe_flags flags)
{
    detail::check_kernel_memory(address, length, "add_connect");
    COIL_CLAIM_SQE(opcode::connect);
    // The address length goes in `off`, by value.
    detail::prepare_rw(as_sqe(sqe), kernel_opcode(opcode::connect), fd, address, 0, length,
                       kernel_sqe_flags(flags), user_data);
    return success();
}

std::error_code ring::add_recv(int fd, std::span<std::byte> buffer, int msg_flags,
                               std::uint64_t user_data, sqe_flags flags)
{
    detail::check_kernel_memory(buffer.data(), clamp_length(buffer.size()), "add_recv");
    COIL_CLAIM_SQE(opcode::recv);
    io::sqe& s = as_sqe(sqe);
    detail::prepare_rw(s, kernel_opcode(opcode::recv), fd, buffer.data(),
                       clamp_length(buffer.size()), 0, kernel_sqe_flags(flags), user_data);
    s.msg_flags = static_cast<std::uint32_t>(msg_flags);
    return success();
}

std::error_code ring::add_recv_provided(int fd, std::uint16_t buffer_group, int msg_flags,
                                        recv_mode mode, std::uint64_t user_data,
                                        sqe_flags flags)
{
    const bool bundle = mode == recv_mode::bundle || mode == recv_mode::multishot_bundle;
    if (bundle && !state_->recv_bundles)
        return make_error_code(errc::unsupported_operation);
    COIL_CLAIM_SQE(opcode::recv);
    io::sqe& s = as_sqe(sqe);
    // No address and length 0: the kernel takes the buffer, and its whole size, from the group.
    detail::prepare_rw(s, kernel_opcode(opcode::recv), fd, nullptr, 0, 0,
                       static_cast<std::uint8_t>(kernel_sqe_flags(flags) | buffer_select),
                       user_data);
    s.msg_flags = static_cast<std::uint32_t>(msg_flags);
    s.buf_group = buffer_group;
    if (mode == recv_mode::multishot || mode == recv_mode::multishot_bundle)
        s.ioprio |= recv_multishot;
    if (bundle)
        s.ioprio |= recvsend_bundle;
    return success();
}

std::error_code ring::add_send(int fd, std::span<const std::byte> buffer, int msg_flags,
                               std::uint64_t user_data, sqe_flags flags)
{
    detail::check_kernel_memory(buffer.data(), clamp_length(buffer.size()), "add_send");
    COIL_CLAIM_SQE(opcode::send);
    io::sqe& s = as_sqe(sqe);
    // `addr2` (a destination address, Linux 6.0) stays 0: the socket's peer.
    detail::prepare_rw(s, kernel_opcode(opcode::send), fd, buffer.data(),
                       clamp_length(buffer.size()), 0, kernel_sqe_flags(flags), user_data);
    s.msg_flags = static_cast<std::uint32_t>(msg_flags);
    return success();
}

std::error_code ring::add_send_zc(int fd, std::span<const std::byte> buffer, int msg_flags,
                                  std::uint64_t user_data, sqe_flags flags)
{
    detail::check_kernel_memory(buffer.data(), clamp_length(buffer.size()), "add_send_zc");
    COIL_CLAIM_SQE(opcode::send_zc);
    io::sqe& s = as_sqe(sqe);
    // ioprio (the IORING_RECVSEND_* flags) stays 0: no fixed buffer, no poll first.
    detail::prepare_rw(s, kernel_opcode(opcode::send_zc), fd, buffer.data(),
                       clamp_length(buffer.size()), 0, kernel_sqe_flags(flags), user_data);
    s.msg_flags = static_cast<std::uint32_t>(msg_flags);
    return success();
}

std::error_code ring::add_recvmsg(int fd, ::msghdr* message, int msg_flags,
                                  std::uint64_t user_data, sqe_flags flags)
{
    detail::check_kernel_message(message, "add_recvmsg");
    COIL_CLAIM_SQE(opcode::recvmsg);
    io::sqe& s = as_sqe(sqe);
    // `len` counts messages: one.
    detail::prepare_rw(s, kernel_opcode(opcode::recvmsg), fd, message, 1, 0,
                       kernel_sqe_flags(flags), user_data);
    s.msg_flags = static_cast<std::uint32_t>(msg_flags);
    return success();
}

std::error_code ring::add_recvmsg_provided(int fd, ::msghdr* message,
                                           std::uint16_t buffer_group, int msg_flags,
                                           recv_mode mode, std::uint64_t user_data,
                                           sqe_flags flags)
{
    if (mode != recv_mode::single && mode != recv_mode::multishot)
        return std::make_error_code(std::errc::invalid_argument);
    detail::check_kernel_memory(message, sizeof(::msghdr), "add_recvmsg_provided");
    detail::check_kernel_memory(message->msg_name, message->msg_namelen, "add_recvmsg_provided");
    detail::check_kernel_memory(message->msg_control, message->msg_controllen,
                                "add_recvmsg_provided");
    COIL_CLAIM_SQE(opcode::recvmsg);
    io::sqe& s = as_sqe(sqe);
    detail::prepare_rw(s, kernel_opcode(opcode::recvmsg), fd, message, 1, 0,
                       static_cast<std::uint8_t>(kernel_sqe_flags(flags) | buffer_select),
                       user_data);
    s.msg_flags = static_cast<std::uint32_t>(msg_flags);
    s.buf_group = buffer_group;
    if (mode == recv_mode::multishot)
        s.ioprio |= recv_multishot;
    return success();
}

std::error_code ring::add_sendmsg(int fd, const ::msghdr* message, int msg_flags,
                                  std::uint64_t user_data, sqe_flags flags)
{
    detail::check_kernel_message(message, "add_sendmsg");
    COIL_CLAIM_SQE(opcode::sendmsg);
    io::sqe& s = as_sqe(sqe);
    detail::prepare_rw(s, kernel_opcode(opcode::sendmsg), fd, message, 1, 0,
                       kernel_sqe_flags(flags), user_data);
    s.msg_flags = static_cast<std::uint32_t>(msg_flags);
    return success();
}

std::error_code ring::add_shutdown(int fd, int how, std::uint64_t user_data, sqe_flags flags)
{
    COIL_CLAIM_SQE(opcode::shutdown);
    // `how` goes in `len`.
    detail::prepare_rw(as_sqe(sqe), kernel_opcode(opcode::shutdown), fd, nullptr,
                       static_cast<std::uint32_t>(how), 0, kernel_sqe_flags(flags), user_data);
    return success();
}

std::error_code ring::add_cancel_fd(int fd, std::uint64_t user_data)
{
    COIL_CLAIM_SQE(opcode::async_cancel);
    io::sqe& s = as_sqe(sqe);
    // Matches by file, not by user_data: `addr` is unused.
    detail::prepare_rw(s, kernel_opcode(opcode::async_cancel), fd, nullptr, 0, 0,
                       kernel_sqe_flags(sqe_flags::none), user_data);
    s.cancel_flags = async_cancel_fd | async_cancel_all;
    return success();
}

// --- provided-buffer rings (for buffer_ring, io/buffer_ring.cpp) ----------------------------

int ring::register_buffer_ring_(void* ring_memory, unsigned entries, std::uint16_t group,
                                std::uint16_t flags) noexcept
{
    if (inherited_())
        return -EPERM;
    io_uring_buf_reg registration{};
    registration.ring_addr = reinterpret_cast<std::uintptr_t>(ring_memory);
    registration.ring_entries = entries;
    registration.bgid = group;
    // liburing 2.3 names the field `pad`; the kernel has read it as `flags` since 6.4
    // (IOU_PBUF_RING_MMAP, IOU_PBUF_RING_INC), and refused non-zero values before.
    registration.pad = flags;
    return io_uring_register_buf_ring(&state_->uring, &registration, 0);
}

int ring::unregister_buffer_ring_(std::uint16_t group) noexcept
{
    if (inherited_())
        return -EPERM;
    return io_uring_unregister_buf_ring(&state_->uring, group);
}

// --- registered buffers and files -----------------------------------------------------------

namespace {

std::error_code register_result(int ret) noexcept
{
    if (ret >= 0)
        return success();
    return std::error_code(-ret, std::generic_category());
}

// The sparse registration first (one system call, no array); a kernel before 5.19 refuses the
// flag with EINVAL, and then `fallback` registers the same empty table from placeholder entries.
template <class Fallback>
std::error_code register_sparse(int sparse_ret, Fallback&& fallback)
{
    if (sparse_ret != -EINVAL)
        return register_result(sparse_ret);
    const int ret = fallback();
    if (ret == -EINVAL)
        return make_error_code(errc::unsupported_operation);
    return register_result(ret);
}

// An update answers how many entries it replaced; it stops at the first entry it cannot take
// and answers the count before it (or the error, if that was the first). The rest is asked
// again, so the caller gets the error of the entry that failed.
template <class Update>
std::error_code update_entries(std::size_t count, Update&& update) noexcept
{
    if (count > std::numeric_limits<unsigned>::max())
        return std::make_error_code(std::errc::invalid_argument);
    unsigned done = 0;
    while (done < count) {
        const int ret = update(done);
        if (ret < 0)
            return register_result(ret);
        if (ret == 0)
            return std::make_error_code(std::errc::invalid_argument);
        done += static_cast<unsigned>(ret);
    }
    return success();
}

} // namespace

std::error_code ring::register_buffers(std::span<const ::iovec> buffers) noexcept
{
    if (inherited_())
        return make_error_code(errc::forked_copy);
    if (buffers.size() > std::numeric_limits<unsigned>::max())
        return std::make_error_code(std::errc::invalid_argument);
    std::error_code ec = register_result(io_uring_register_buffers(
        &state_->uring, buffers.data(), static_cast<unsigned>(buffers.size())));
    if (!ec)
        registered_buffers_ = static_cast<unsigned>(buffers.size());
    return ec;
}

std::error_code ring::register_buffers_sparse(unsigned count)
{
    if (inherited_())
        return make_error_code(errc::forked_copy);
    std::error_code ec =
        register_sparse(io_uring_register_buffers_sparse(&state_->uring, count), [&] {
            // Linux 5.13..5.18: IORING_REGISTER_BUFFERS2 takes null entries as empty ones.
            std::vector<::iovec> empty(count, ::iovec{nullptr, 0});
            std::vector<__u64> tags(count, 0);
            return io_uring_register_buffers_tags(&state_->uring, empty.data(), tags.data(),
                                                  count);
        });
    if (!ec)
        registered_buffers_ = count;
    return ec;
}

std::error_code ring::update_buffers(unsigned first, std::span<const ::iovec> buffers) noexcept
{
    if (inherited_())
        return make_error_code(errc::forked_copy);
    wait_until_issued();
    return update_entries(buffers.size(), [&](unsigned done) {
        return io_uring_register_buffers_update_tag(&state_->uring, first + done,
                                                    buffers.data() + done, nullptr,
                                                    static_cast<unsigned>(buffers.size() - done));
    });
}

std::error_code ring::unregister_buffers() noexcept
{
    if (inherited_())
        return make_error_code(errc::forked_copy);
    wait_until_issued();
    std::error_code ec = register_result(io_uring_unregister_buffers(&state_->uring));
    if (!ec)
        registered_buffers_ = 0;
    return ec;
}

std::error_code ring::register_files(std::span<const int> fds) noexcept
{
    if (inherited_())
        return make_error_code(errc::forked_copy);
    if (fds.size() > std::numeric_limits<unsigned>::max())
        return std::make_error_code(std::errc::invalid_argument);
    std::error_code ec = register_result(
        io_uring_register_files(&state_->uring, fds.data(), static_cast<unsigned>(fds.size())));
    if (!ec)
        registered_files_ = static_cast<unsigned>(fds.size());
    return ec;
}

std::error_code ring::register_files_sparse(unsigned count)
{
    if (inherited_())
        return make_error_code(errc::forked_copy);
    std::error_code ec =
        register_sparse(io_uring_register_files_sparse(&state_->uring, count), [&] {
            std::vector<int> empty(count, -1);
            return io_uring_register_files(&state_->uring, empty.data(), count);
        });
    if (!ec)
        registered_files_ = count;
    return ec;
}

std::error_code ring::update_files(unsigned first, std::span<const int> fds) noexcept
{
    if (inherited_())
        return make_error_code(errc::forked_copy);
    wait_until_issued();
    return update_entries(fds.size(), [&](unsigned done) {
        return io_uring_register_files_update(&state_->uring, first + done,
                                              fds.data() + done,
                                              static_cast<unsigned>(fds.size() - done));
    });
}

std::error_code ring::unregister_files() noexcept
{
    if (inherited_())
        return make_error_code(errc::forked_copy);
    wait_until_issued();
    std::error_code ec = register_result(io_uring_unregister_files(&state_->uring));
    if (!ec)
        registered_files_ = 0;
    return ec;
}

// --- eventfd notification ------------------------------------------------------------------

std::error_code ring::register_eventfd(int fd, bool async_only) noexcept
{
    if (inherited_())
        return make_error_code(errc::forked_copy);
    std::error_code ec = register_result(async_only
                                             ? io_uring_register_eventfd_async(&state_->uring, fd)
                                             : io_uring_register_eventfd(&state_->uring, fd));
    if (!ec)
        eventfd_registered_ = true;
    return ec;
}

std::error_code ring::unregister_eventfd() noexcept
{
    if (inherited_())
        return make_error_code(errc::forked_copy);
    std::error_code ec = register_result(io_uring_unregister_eventfd(&state_->uring));
    if (!ec)
        eventfd_registered_ = false;
    return ec;
}

std::error_code ring::set_eventfd_enabled(bool enabled) noexcept
{
    if (inherited_())
        return make_error_code(errc::forked_copy);
    // The CQ ring has a flags word only from Linux 5.8; liburing answers -EOPNOTSUPP without it.
    const int ret = io_uring_cq_eventfd_toggle(&state_->uring, enabled);
    if (ret == -EOPNOTSUPP)
        return make_error_code(errc::unsupported_operation);
    return register_result(ret);
}

bool ring::eventfd_enabled() const noexcept
{
    return io_uring_cq_eventfd_enabled(&state_->uring);
}

#undef COIL_CLAIM_SQE

// --- submission -----------------------------------------------------------------------------

int ring::enter_(unsigned to_submit, unsigned min_complete, unsigned flags, void* arg,
                 std::size_t arg_size) noexcept
{
    if (forked_)
        return -EPERM; // the kernel would act on the parent's ring
    const state& s = *state_;
#if COIL_FAULT_INJECTION
    if (s.faults) {
        // Only answers a real io_uring_enter may give: EBUSY and EAGAIN refuse a submission
        // before anything is consumed, EINTR interrupts a wait, and a partial submission
        // consumes a prefix of the SQ.
        testing::detail::fault_state& f = *s.faults;
        if (to_submit != 0 && (f.refusing || f.roll(f.plan.enter_ebusy))) {
            ++f.counts.ebusy;
            return -EBUSY;
        }
        if (to_submit != 0 && f.roll(f.plan.enter_eagain)) {
            ++f.counts.eagain;
            return -EAGAIN;
        }
        if (to_submit == 0 && min_complete != 0 && (flags & IORING_ENTER_GETEVENTS) &&
            f.roll(f.plan.enter_eintr)) {
            ++f.counts.eintr;
            return -EINTR;
        }
        if (to_submit > 1 && f.roll(f.plan.partial_submit)) {
            to_submit = 1 + f.below(to_submit - 1);
            // A kernel that consumes fewer SQEs than it was given returns at once, without
            // waiting for completions (io_uring_enter skips its wait when the submission came
            // up short), so the caller can hand over the rest: the completions it waits for
            // may depend on them.
            min_complete = 0;
            ++f.counts.partial_submits;
        }
    }
#endif
    ++stats_.enter_calls;
    // The registered index means this ring only in the registering thread's io_uring context;
    // any other thread (a ring handed over between threads) must name the ring by its fd.
    if (s.registered && this_thread_serial() == s.registered_thread)
        return io_uring_enter2(s.registered_index, to_submit, min_complete,
                               flags | IORING_ENTER_REGISTERED_RING,
                               static_cast<sigset_t*>(arg), arg_size);
    return io_uring_enter2(static_cast<unsigned>(s.uring.ring_fd), to_submit, min_complete,
                           flags, static_cast<sigset_t*>(arg), arg_size);
}

#if COIL_FAULT_INJECTION
namespace {

// Whether a short transfer is one the kernel could really give this SQE. Files, pipes and
// stream sockets move any prefix; a datagram or seqpacket socket moves whole messages, so a cut
// there would drop the rest of one, which the kernel never does on its own. (A fixed-file
// SQE's fd is a table slot, which says nothing about its type: left alone.)
bool may_cut(const io_uring_sqe& e) noexcept
{
    const bool on_socket = e.opcode == IORING_OP_SEND || e.opcode == IORING_OP_RECV ||
                           e.opcode == IORING_OP_SENDMSG || e.opcode == IORING_OP_RECVMSG;
    if (!on_socket)
        return true;
    if (e.flags & IOSQE_FIXED_FILE)
        return false;
    int type = 0;
    ::socklen_t length = sizeof(type);
    if (::getsockopt(e.fd, SOL_SOCKET, SO_TYPE, &type, &length) != 0)
        return true; // not a socket: the op fails on its own
    return type == SOCK_STREAM;
}

// Marks a multishot accept, receive or timeout SQE with a flag bit no kernel knows, so that
// the kernel refuses it with -EINVAL at preparation, as kernels before each multishot flag do
// (they refuse the flag itself). Whether it marked one.
bool refuse_multishot(io_uring_sqe& e) noexcept
{
    constexpr std::uint16_t unknown_ioprio_bit = 1U << 15;
    constexpr std::uint32_t unknown_timeout_bit = 1U << 31;
    const bool accept = e.opcode == IORING_OP_ACCEPT && (e.ioprio & accept_multishot) != 0;
    const bool receive = (e.opcode == IORING_OP_RECV || e.opcode == IORING_OP_RECVMSG) &&
                         (e.ioprio & recv_multishot) != 0;
    if (accept || receive) {
        e.ioprio |= unknown_ioprio_bit;
        return true;
    }
    if (e.opcode == IORING_OP_TIMEOUT && (e.timeout_flags & timeout_multishot) != 0) {
        e.timeout_flags |= unknown_timeout_bit;
        return true;
    }
    return false;
}

} // namespace
#endif

unsigned ring::flush_() noexcept
{
    if (forked_)
        return 0; // publishes nothing: the SQ is the parent's
    // liburing's sqe_head serves as the tail the kernel has been shown.
    io_uring_sq& sq = state_->uring.sq;
    if (sq.sqe_head != sq_tail_) {
#if COIL_FAULT_INJECTION
        if (state_->faults) {
            // Cut reads, writes, sends, receives and splices the kernel has not seen yet: a
            // genuinely short transfer. (A receive into a provided buffer has length 0: left
            // alone.) Have the kernel refuse multishot flags, as an older one does.
            testing::detail::fault_state& f = *state_->faults;
            for (unsigned i = sq.sqe_head; i != sq_tail_; ++i) {
                io_uring_sqe& e = sq.sqes[i & sq.ring_mask];
                if (f.plan.refuse_multishot && refuse_multishot(e))
                    ++f.counts.multishot_refused;
                if (f.plan.short_rw == 0 || !may_cut(e))
                    continue;
                const bool rw = e.opcode == IORING_OP_READ || e.opcode == IORING_OP_WRITE ||
                                e.opcode == IORING_OP_READV || e.opcode == IORING_OP_WRITEV ||
                                e.opcode == IORING_OP_SEND || e.opcode == IORING_OP_RECV ||
                                e.opcode == IORING_OP_SPLICE;
                if (rw && e.len > 1 && f.roll(f.plan.short_rw)) {
                    e.len = 1 + f.below(e.len - 1);
                    ++f.counts.shortened;
                }
                // A message's iovec count is in its header, the caller's memory: cut there.
                const bool msg = e.opcode == IORING_OP_SENDMSG || e.opcode == IORING_OP_RECVMSG;
                auto* header = msg ? reinterpret_cast<::msghdr*>(e.addr) : nullptr;
                if (header != nullptr && header->msg_iovlen > 1 && f.roll(f.plan.short_rw)) {
                    header->msg_iovlen =
                        1 + f.below(static_cast<unsigned>(header->msg_iovlen - 1));
                    ++f.counts.shortened;
                }
            }
        }
#endif
        sq.sqe_head = sq_tail_;
        store_release(sq.ktail, sq_tail_);
    }
    return sq_tail_ - load_acquire(sq.khead);
}

void ring::refresh_direct_() noexcept
{
    direct_cq_ = !forked_ && state_->backlog_size() == 0 && !state_->routed();
}

void ring::stash_ready_() noexcept
{
    state& s = *state_;
    io_uring& u = s.uring;
    unsigned head = load_relaxed(u.cq.khead);
    unsigned tail = load_acquire(u.cq.ktail);
    for (; head != tail; ++head) {
        const io_uring_cqe& cqe = u.cq.cqes[head & u.cq.ring_mask];
        if (cqe.user_data == internal_user_data && s.internal_pending != 0) {
            // The completion of cancel_all's cancel: never delivered.
            if (cqe.res == -EINVAL)
                s.cancel_any_unsupported = true;
            --s.internal_pending;
            --outstanding_;
            continue;
        }
        s.backlog.push_back({cqe.user_data, cqe.res, cqe.flags});
#if COIL_FAULT_INJECTION
        // Hold the previous completion back behind this one. Never the backlog's first (a
        // range may be standing on it), and never behind a completion of the same op (a
        // multishot op's final completion must stay its last).
        const std::size_t last = s.backlog.size() - 1;
        if (s.faults && last > s.backlog_head + 1 &&
            s.backlog[last - 1].user_data != s.backlog[last].user_data &&
            s.faults->roll(s.faults->plan.reorder)) {
            std::swap(s.backlog[last - 1], s.backlog[last]);
            ++s.faults->counts.reordered;
        }
#endif
    }
    store_release(u.cq.khead, tail);
    refresh_direct_();
}

bool ring::make_room_(unsigned attempt) noexcept
{
    // The kernel asked us to reap before it takes more SQEs (EBUSY: its overflow list is not
    // empty; EAGAIN: it is short of resources until something completes). Move what is ready
    // aside, pull the overflowed completions in, and if nothing at all was ready give the
    // kernel a moment. Never block for a completion here: the ops in flight may be waiting for
    // the very SQEs this submit is trying to hand over (a poll and its remove), so an unbounded
    // wait could never return.
    ++stats_.submit_retries;
    if (attempt > 64) {
#if COIL_FAULT_INJECTION
        if (state_->faults)
            state_->faults->refusing = false; // refuse_next_submission: the episode ends here
#endif
        return false; // the kernel keeps refusing: report it, leaving the SQEs queued
    }
    unsigned before = static_cast<unsigned>(state_->backlog_size());
    stash_ready_();
    if (state_->sq_flags() & IORING_SQ_CQ_OVERFLOW) {
        ++stats_.cq_overflows;
        enter_(0, 0, IORING_ENTER_GETEVENTS, nullptr, 0);
        stash_ready_();
    }
    if (state_->backlog_size() > before)
        return true;
    if (state_->ext_arg) {
        // Up to a millisecond for one completion to arrive, then retry regardless.
        __kernel_timespec ts{0, 1'000'000};
        io_uring_getevents_arg arg{};
        arg.sigmask_sz = _NSIG / 8;
        arg.ts = reinterpret_cast<std::uint64_t>(&ts);
        enter_(0, 1, IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG, &arg, sizeof arg);
        stash_ready_();
    } else {
        std::this_thread::yield();
    }
    return true;
}

result<unsigned> ring::submit()
{
    if (sqpoll()) {
        const unsigned handed_over = sq_tail_ - state_->uring.sq.sqe_head;
        const unsigned pending = flush_();
        // The kernel thread consumes the queue; it only needs a nudge when it went to sleep.
        if (pending != 0 && (state_->sq_flags() & IORING_SQ_NEED_WAKEUP))
            enter_(0, 0, IORING_ENTER_SQ_WAKEUP, nullptr, 0);
        // Count what this call handed over, not what the thread has yet to pick up: SQEs an
        // earlier call published would otherwise be counted (and reported) again.
        stats_.sqes_submitted += handed_over;
        return handed_over;
    }
    return enter_to_submit_(0);
}

bool ring::kernel_holds_completions() const noexcept
{
    return !forked_ && (state_->sq_flags() & (IORING_SQ_CQ_OVERFLOW | IORING_SQ_TASKRUN)) != 0;
}

result<unsigned> ring::submit_and_get_events()
{
    const unsigned flags = state_->sq_flags();
    if (!(flags & (IORING_SQ_CQ_OVERFLOW | IORING_SQ_TASKRUN)))
        return submit(); // the kernel holds nothing
    if (flags & IORING_SQ_CQ_OVERFLOW)
        ++stats_.cq_overflows;
    if (sqpoll()) {
        // The kernel thread takes the SQEs (and runs the task work), but only an enter of our
        // own flushes the overflow list.
        auto submitted = submit();
        enter_(0, 0, IORING_ENTER_GETEVENTS, nullptr, 0);
        return submitted;
    }
    // GETEVENTS with no minimum: the kernel runs the task work and flushes the overflow list
    // into the CQ as far as it has room, then returns.
    return enter_to_submit_(IORING_ENTER_GETEVENTS);
}

result<unsigned> ring::enter_to_submit_(unsigned flags)
{
    unsigned pending = flush_();
    if (pending == 0 && flags == 0)
        return 0U;
    unsigned consumed = 0;
    for (unsigned attempt = 0;;) {
        int ret = enter_(pending, 0, flags, nullptr, 0);
        if (ret >= 0) {
            consumed += static_cast<unsigned>(ret);
            stats_.sqes_submitted += static_cast<unsigned>(ret);
            const unsigned left = unsubmitted();
            if (left == 0 || left == pending)
                return consumed; // all in, or the kernel took nothing: the rest stays queued
            pending = left;      // a partial submission leaves the rest queued: go on
            continue;
        }
        if (ret == -EINTR) {
            ++stats_.submit_retries;
            continue;
        }
        if ((ret == -EBUSY || ret == -EAGAIN) && make_room_(attempt++))
            continue;
        if (consumed != 0)
            return consumed; // the rest stays queued for the next call
        return error_from_result(ret);
    }
}

result<completion_range> ring::wait(unsigned min_complete,
                                    std::optional<std::chrono::nanoseconds> timeout)
{
    if (timeout && !state_->ext_arg)
        return make_error_code(errc::unsupported_operation);

    // Never wait for more completions than can still arrive, nor for more than the CQ can hold
    // at once (possible without cap_outstanding): the kernel clamps its wait to the CQ size, so
    // asking for more would spin here forever. The range still delivers the overflowed rest.
    min_complete = std::min(min_complete, cq_entries());

    using clock = std::chrono::steady_clock;
    const auto deadline = timeout ? detail::deadline_after(*timeout) : clock::time_point::max();
    unsigned handed_over = sq_tail_ - state_->uring.sq.sqe_head; // for SQPOLL
    unsigned pending = flush_();
    for (unsigned attempt = 0;;) {
        if (state_->internal_pending != 0)
            stash_ready_(); // swallow the ring's own completions: count only what is delivered
        // Never wait for more completions than can still arrive (ops the ring swallows, or the
        // caller reaped meanwhile, are no longer outstanding).
        const unsigned wanted = std::min(min_complete, outstanding_);
        unsigned backlog = static_cast<unsigned>(state_->backlog_size());
        unsigned in_ring = state_->cq_in_ring();
        bool enough = backlog + in_ring >= wanted;
        if (enough && pending == 0)
            return completion_range(this);

        unsigned flags = IORING_ENTER_GETEVENTS;
        unsigned kernel_min = enough ? 0 : wanted - backlog;
        if (sqpoll()) {
            if (pending != 0 && (state_->sq_flags() & IORING_SQ_NEED_WAKEUP))
                flags |= IORING_ENTER_SQ_WAKEUP;
            stats_.sqes_submitted += std::exchange(handed_over, 0U);
            pending = 0;
        }
        __kernel_timespec ts{};
        io_uring_getevents_arg arg{};
        void* arg_ptr = nullptr;
        std::size_t arg_size = 0;
        if (timeout && kernel_min != 0) {
            auto left = std::max(detail::time_left(deadline), clock::duration::zero());
            auto t = timespec64::from(std::chrono::duration_cast<std::chrono::nanoseconds>(left));
            ts.tv_sec = t.tv_sec;
            ts.tv_nsec = t.tv_nsec;
            arg.sigmask_sz = _NSIG / 8;
            arg.ts = reinterpret_cast<std::uint64_t>(&ts);
            flags |= IORING_ENTER_EXT_ARG;
            arg_ptr = &arg;
            arg_size = sizeof(arg);
        }
        if (state_->sq_flags() & IORING_SQ_CQ_OVERFLOW)
            ++stats_.cq_overflows;
        unsigned to_submit = sqpoll() ? 0 : pending;
        int ret = enter_(to_submit, kernel_min, flags, arg_ptr, arg_size);
        if (ret >= 0) {
            stats_.sqes_submitted += static_cast<unsigned>(ret);
            if (!sqpoll())
                pending = unsubmitted();
            if (pending != 0 && ret == 0)
                return completion_range(this); // the kernel took nothing: leave it queued
            if (pending != 0)
                continue; // a partial submission: hand over the rest
            if (ready() >= std::min(min_complete, outstanding_) ||
                (timeout && clock::now() >= deadline))
                return completion_range(this);
            continue; // woken before enough completions arrived (task work): wait again
        }
        if (ret == -ETIME)
            return completion_range(this);
        if (ret == -EINTR) {
            ++stats_.submit_retries;
            if (timeout && clock::now() >= deadline)
                return completion_range(this);
            continue;
        }
        if ((ret == -EBUSY || ret == -EAGAIN) && make_room_(attempt++))
            continue;
        return error_from_result(ret);
    }
}

completion_range ring::reap() noexcept { return completion_range(this); }

// --- shutdown -------------------------------------------------------------------------------

void ring::cancel_all()
{
    state& s = *state_;
    if (s.cancel_any_unsupported || outstanding_ == s.internal_pending)
        return;
    // Asked for even if no cancel can be queued below: drain() then waits in bounded steps
    // and calls again, rather than waiting for ever on ops nobody cancelled.
    s.cancel_all_requested = true;
    // One SQE whatever the CQ cap: cancelling is what frees the CQ. If the SQ is full, hand
    // it over first (an SQPOLL ring's kernel thread takes it in its own time: wait until it
    // has taken it, which IORING_ENTER_SQ_WAIT does not promise: it may return before the
    // head we read has moved); if it stays full, drain() will call again.
    if (sq_tail_ == sq_tail_limit_ && !refresh_sq_limit_()) {
        static_cast<void>(submit());
        if (sqpoll())
            await_sq_thread_();
        if (!refresh_sq_limit_())
            return;
    }
    // A chain the caller left open (its last queued SQE links to whatever comes next) would
    // take the cancel in, and the kernel would start the cancel only once that op completed:
    // never, for a poll that never fires (found by fuzz/ring_ops_fuzz.cpp). The kernel ends an
    // open chain at the end of every submission anyway, so ending it here changes nothing
    // else. An SQPOLL ring's kernel thread may be reading an SQE it has been shown, so there
    // only an SQE not yet published is changed; for a published one, the thread is left to
    // take the queue first (ending the chain itself), so that the cancel comes in a later
    // submission.
    if (unsubmitted() != 0) {
        io_uring_sqe& last = s.uring.sq.sqes[(sq_tail_ - 1) & sq_mask_];
        if ((last.flags & (IOSQE_IO_LINK | IOSQE_IO_HARDLINK)) != 0) {
            if (!sqpoll() || s.uring.sq.sqe_head != sq_tail_)
                last.flags &= static_cast<std::uint8_t>(~(IOSQE_IO_LINK | IOSQE_IO_HARDLINK));
            else
                await_sq_thread_();
        }
    }
    io_uring_sqe* sqe = &s.uring.sq.sqes[sq_tail_ & sq_mask_];
    io_uring_prep_cancel64(sqe, 0, static_cast<int>(async_cancel_any));
    sqe->user_data = internal_user_data;
    ++sq_tail_;
    ++outstanding_;
    ++s.internal_pending;
    s.cancel_all_requested = true;
    direct_cq_ = false; // route every CQE through the backlog until the cancel's is swallowed
    static_cast<void>(submit());
}

void ring::await_sq_thread_() noexcept
{
    // The kernel thread consumes what it has been shown as soon as it is awake, and moves the
    // head only after it has issued the whole batch it took. A bound all the same, as a kernel
    // that stops consuming (an SQPOLL thread that has exited) must not hang the caller: the
    // cancel is then queued anyway and drain() goes on cancelling. SQEs queued but not yet
    // published are not waited for: the thread cannot see them.
    const unsigned shown = state_->uring.sq.sqe_head;
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    while (__atomic_load_n(sq_khead_, __ATOMIC_ACQUIRE) != shown &&
           std::chrono::steady_clock::now() < give_up) {
        if (state_->sq_flags() & IORING_SQ_NEED_WAKEUP)
            enter_(0, 0, IORING_ENTER_SQ_WAKEUP, nullptr, 0);
        std::this_thread::yield();
    }
}

// An op resolves its descriptor, fixed file or registered buffer when the kernel first issues
// it. A submit() on an SQPOLL ring only shows the SQEs to the kernel thread, which issues them
// in its own time: changing a table right after it would empty an entry under ops the caller
// already submitted. So the table changes wait for the thread to take what it has been shown
// (on other rings submit() issued them before it returned).
void ring::forget_after_fork() noexcept
{
    forked_ = true;
    direct_cq_ = false;
    sq_tail_limit_ = sq_tail_;
}

bool ring::inherited_() const noexcept { return forked_ || ::getpid() != state_->owner_pid; }

void ring::wait_until_issued() noexcept
{
    if (sqpoll() && !forked_)
        await_sq_thread_();
}

std::size_t ring::drain()
{
    state& s = *state_;
    // One cancel_all() can miss an op: an op linked behind one that completed in the same
    // submission is still being handed on (kernel task work) when the cancel looks for it, so
    // nothing finds it, and a read of an empty pipe then waits for ever (found by
    // fuzz/ring_ops_fuzz.cpp). So after a cancel_all(), drain() waits in bounded steps, and
    // when a step brings no completion and the last cancel has completed, it cancels again.
    // An op the kernel cannot interrupt only costs a cancel per step while it runs.
    std::chrono::milliseconds step{1};
    std::size_t discarded = 0;
    while (outstanding_ != 0) {
        const bool recancel = s.cancel_all_requested && !s.cancel_any_unsupported && s.ext_arg;
        auto done = recancel ? wait(1, step) : wait(1);
        if (!done)
            throw std::system_error(done.error(), "coil: ring::drain: waiting failed");
        std::size_t got = 0;
        for (const completion& c : *done) {
            static_cast<void>(c);
            ++got;
        }
        discarded += got;
        if (recancel && got == 0 && s.internal_pending == 0 && outstanding_ != 0) {
            cancel_all();
            step = std::min(2 * step, std::chrono::milliseconds(100));
        }
    }
    s.cancel_all_requested = false;
    return discarded;
}

// --- reaping --------------------------------------------------------------------------------

bool ring::peek_(completion& out, bool enter_kernel) noexcept
{
    if (forked_)
        return false; // the CQ is the parent's
    state& s = *state_;
    io_uring& u = s.uring;
    for (int round = 0; round < 2; ++round) {
#if COIL_FAULT_INJECTION
        if (s.faults && s.backlog_size() == 0) {
            // A stall: this reaping pass sees an empty CQ, and so do up to 7 more, while the
            // kernel goes on posting (and overflowing, once the CQ is full).
            if (s.stall_left == 0 && s.cq_in_ring() != 0 && s.faults->roll(s.faults->plan.stall_reap)) {
                s.stall_left = 1 + s.faults->below(8);
                ++s.faults->counts.stalls;
            }
            if (s.stall_left != 0) {
                --s.stall_left;
                return false;
            }
        }
#endif
        if (s.routed())
            stash_ready_(); // every CQE passes through the backlog
        if (s.backlog_head < s.backlog.size()) {
            out = s.backlog[s.backlog_head];
            return true;
        }
        unsigned head = load_relaxed(u.cq.khead);
        if (!s.routed() && head != load_acquire(u.cq.ktail)) {
            const io_uring_cqe& cqe = u.cq.cqes[head & u.cq.ring_mask];
            out = {cqe.user_data, cqe.res, cqe.flags};
            return true;
        }
        // Nothing to deliver. Completions may still be waiting: in the kernel's overflow list
        // (the CQ filled up), or as deferred task work (DEFER_TASKRUN / COOP_TASKRUN with
        // TASKRUN_FLAG). One enter with GETEVENTS brings both in.
        unsigned flags = s.sq_flags();
        if (!enter_kernel || !(flags & (IORING_SQ_CQ_OVERFLOW | IORING_SQ_TASKRUN)))
            return false;
        if (flags & IORING_SQ_CQ_OVERFLOW)
            ++stats_.cq_overflows;
        enter_(0, 0, IORING_ENTER_GETEVENTS, nullptr, 0);
    }
    return false;
}

void ring::pop_() noexcept
{
    state& s = *state_;
    std::uint32_t flags = 0;
    if (s.backlog_head < s.backlog.size()) {
        flags = s.backlog[s.backlog_head].flags;
        if (++s.backlog_head == s.backlog.size()) {
            s.backlog.clear();
            s.backlog_head = 0;
            refresh_direct_();
        }
    } else {
        io_uring& u = s.uring;
        unsigned head = load_relaxed(u.cq.khead);
        flags = u.cq.cqes[head & u.cq.ring_mask].flags;
        store_release(u.cq.khead, head + 1);
    }
    ++stats_.cqes_reaped;
    if (!(flags & IORING_CQE_F_MORE))
        --outstanding_;
}

std::size_t ring::reap_into(std::span<completion> out) noexcept
{
    state& s = *state_;
    std::size_t n = 0;
    while (n < out.size() && s.backlog_head < s.backlog.size()) {
        out[n++] = s.backlog[s.backlog_head];
        pop_();
    }
    if (s.routed()) {
        completion c;
        while (n < out.size() && peek_(c)) {
            out[n++] = c;
            pop_();
        }
        return n;
    }
    io_uring& u = s.uring;
    while (n < out.size()) {
        unsigned head = load_relaxed(u.cq.khead);
        unsigned tail = load_acquire(u.cq.ktail);
        if (head == tail) {
            completion c;
            if (!peek_(c)) // flushes overflow / task work, then looks again
                break;
            continue;
        }
        unsigned finals = 0;
        std::size_t start = n;
        for (; head != tail && n < out.size(); ++head, ++n) {
            const io_uring_cqe& cqe = u.cq.cqes[head & u.cq.ring_mask];
            out[n] = {cqe.user_data, cqe.res, cqe.flags};
            finals += (cqe.flags & IORING_CQE_F_MORE) ? 0U : 1U;
        }
        store_release(u.cq.khead, head);
        stats_.cqes_reaped += n - start;
        outstanding_ -= finals;
    }
    return n;
}

} // namespace coil::io
