// SPDX-License-Identifier: MIT
/// @file
/// `coil::executor`: a single-threaded event loop that owns one io_uring and resumes coroutines
/// when their completions arrive.
#pragma once

#include <coil/io/ring.hpp>
#include <coil/runtime/detail/list.hpp>
#include <coil/runtime/detail/op_base.hpp>
#include <coil/runtime/detail/resumption.hpp>
#include <coil/runtime/detail/stop_scope.hpp>
#include <coil/runtime/detail/timer_heap.hpp>
#include <coil/runtime/join_handle.hpp>
#include <coil/runtime/task.hpp>

#include <chrono>
#include <coroutine>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <span>
#include <sys/types.h>
#include <thread>
#include <vector>

struct iovec;

namespace coil {

namespace detail {
class spawned_promise_base;
class run_scope;
[[noreturn]] void throw_foreign_spawn(); // runtime/executor.cpp
void close_descriptor(int fd) noexcept;   // runtime/executor.cpp
} // namespace detail
namespace net {
class buffer_pool;
} // namespace net

/// How an executor sets up its ring.
struct executor_options {
    /// Submission queue entries (rounded up to a power of two). Any size works: a full SQ is
    /// flushed and the op retried, so this only sets how many SQEs one system call can carry.
    unsigned entries = 256;
    /// Ring options. By default the executor asks for SINGLE_ISSUER + DEFER_TASKRUN (kernels
    /// without them get a ring without them) and a completion queue of 4,096 entries (16
    /// times the default SQ), for bursts; a CQ smaller than `entries` becomes twice
    /// `entries`. The CQ size does not bound how many ops may be pending: the kernel keeps
    /// completions that find the CQ full (`IORING_FEAT_NODROP`, required) and the executor
    /// flushes them (counted in `io::ring_stats::cq_overflows`). `cap_outstanding` must stay
    /// off: the executor refuses it.
    io::ring_options ring = {.cq_entries = 4096,
                             .single_issuer = true,
                             .coop_taskrun = false,
                             .sqpoll = false,
                             .sqpoll_idle = std::chrono::milliseconds(1000),
                             .sqpoll_cpu = std::nullopt,
                             .strict = false,
                             .cap_outstanding = false};
    /// Slots of the executor's registered file table (direct descriptors), which
    /// `coil::file::register_slot()` fills. Registered sparse, on first use; must not exceed
    /// `RLIMIT_NOFILE`. 0: no file table (registering a file then fails with `EMFILE`).
    unsigned file_slots = 256;
    /// Entries of the executor's registered buffer table, shared by its `fixed_buffer_pool`s.
    /// Registered sparse, on first use; at most 16384. 0: no buffer table (a pool then fails
    /// with `ENOBUFS`).
    unsigned buffer_slots = 1024;
    /// Only with `ring.sqpoll`: when the executor runs out of work, it first spins up to this
    /// long watching the completion queue, and sleeps in the kernel only if nothing arrived.
    /// The SQPOLL thread both takes the SQEs and posts the completions, so a completion that
    /// arrives within the spin costs no system call and no wake-up: the lowest latency io_uring
    /// offers, paid for with the CPU time spent spinning (on top of the SQPOLL thread's). The
    /// spin ends early for a due timer. 0 (the default): never spin. Nonzero without
    /// `ring.sqpoll` is refused (`EINVAL`): without it completions are posted only when the
    /// executor enters the kernel, so spinning would only delay them.
    std::chrono::microseconds busy_poll{0};
};

/// Counters an executor keeps (beside its ring's `io::ring_stats`).
struct executor_stats {
    std::uint64_t ops_started = 0;       ///< ops handed to the ring
    std::uint64_t ops_deferred = 0;      ///< ops that waited for room in the submission queue
    std::uint64_t cancels_submitted = 0; ///< ASYNC_CANCEL requests submitted
    /// Cancels made again because the last one found nothing (-ENOENT) while a multishot op
    /// was still in flight (between two completions). A single-shot op is cancelled once.
    std::uint64_t cancels_retried = 0;
    std::uint64_t stale_completions = 0; ///< completions whose user_data named no live op
    std::uint64_t timers_fired = 0;      ///< sleeps and deadlines that expired
    /// Results nobody could receive (a descriptor from an op whose awaiter was destroyed or
    /// shut down) that the runtime closed.
    std::uint64_t orphans_closed = 0;
    /// Waits for a completion that spinning ended (`executor_options::busy_poll`), without a
    /// system call.
    std::uint64_t busy_poll_hits = 0;
    /// Exceptions of spawned tasks nobody joined, and of posted functions (each is also
    /// reported on stderr).
    std::uint64_t unhandled_exceptions = 0;
};

/// A single-threaded executor: owns one `io::ring` and runs coroutines on the thread that
/// created it.
///
/// One loop turn resumes every ready coroutine, fires due timers, hands every SQE they
/// prepared to the kernel in one `io_uring_enter` (which also waits for completions when
/// nothing is ready, at most until the earliest timer), then dispatches each completion to the
/// op it belongs to and resumes its coroutine. How many ops may be pending at once is bounded
/// by memory only: not by the SQ, not by the CQ. A full submission queue is flushed and
/// retried here, so an awaiting coroutine never sees `no_space`.
///
/// Threading: everything but `post()` and `stop()` must be called on the executor's thread
/// (the thread that created it). Destroying the executor cancels every operation in flight,
/// waits for all of their completions, and only then destroys the coroutine frames it still
/// owns (docs/lifetimes.md).
class executor {
public:
    /// Throws `std::system_error` when the ring cannot be set up (the message names the cause
    /// and the fix), or when the options cannot work (`ring.cap_outstanding`).
    explicit executor(const executor_options& options = {});
    ~executor();

    executor(const executor&) = delete;
    executor& operator=(const executor&) = delete;

    /// Drives `t` to completion on this thread and returns its value, or rethrows what it
    /// threw. Also runs every spawned task and every posted function until none is left.
    /// Throws `std::system_error(operation_canceled)` when `stop()` ended the loop first, and
    /// `std::logic_error` when called from a thread other than the executor's or from inside
    /// one of its own tasks (a nested `run()`).
    template <class T>
    T run(task<T> t);

    /// Starts `t` as a task owned by the executor (it first runs at the next loop turn) and
    /// returns a handle that can be awaited for its result, or dropped to detach it. Throws
    /// `std::logic_error` on a thread other than the executor's (`post()` a function that
    /// spawns instead).
    template <class T>
    join_handle<T> spawn(task<T> t);

    /// Hands `fn` to the executor from any thread; it runs on the executor's thread during a
    /// loop turn of the active or the next `run()`, which does not return while posted
    /// functions are queued. A function that throws is reported on stderr and counted in
    /// `executor_stats::unhandled_exceptions`, and the loop goes on. Functions still queued
    /// when the executor is destroyed are destroyed unrun, their count reported on stderr.
    void post(std::function<void()> fn);

    /// Ends the active `run()` from any thread: it cancels and drains every operation in
    /// flight, destroys the tasks that did not finish, and throws `operation_canceled`. A
    /// `stop()` made while no `run()` is active has no effect. The drain waits for what the
    /// kernel cannot end at once: a zero-copy send's buffer until the peer has read or
    /// acknowledged it (`stream_socket::send_zero_copy`).
    void stop() noexcept;

    /// The executor running on this thread, or null.
    static executor* current() noexcept;

    /// The ring, read-only: its statistics and what the kernel supports. Ops are queued on it
    /// only through the executor (a foreign SQE would be decoded as a live op's completion).
    const io::ring& ring() const noexcept { return ring_; }
    const executor_stats& stats() const noexcept { return stats_; }

    /// Ops handed to the ring whose final completion has not arrived.
    std::size_t in_flight() const noexcept { return in_flight_; }
    /// Timers (sleeps and deadlines) armed now.
    std::size_t timers_armed() const noexcept { return timers_.size(); }

    // --- the operation protocol (used by coil's awaitables, not by applications) ---------

    /// Starts `op`, whose `owner`, `scope`, `wake` and `prepare` are set: hands it to the ring,
    /// or queues it until the SQ has room. Returns false when `op` ended at once (its scope was
    /// stopped, the executor is shutting down, the opcode is unsupported) and the caller must
    /// not suspend.
    bool start(detail::op_base& op);

    /// `start` with the common case inline: `prepare(ring, user_data)` queues the SQE
    /// directly (without the type-erased `op.prepare`); anything else takes the general path.
    template <class Prepare>
    bool start(detail::op_base& op, Prepare&& prepare)
    {
        detail::stop_scope* const scope = op.scope;
        // Not past ops already waiting for SQ room: they go first, in order.
        if (!shutting_down_ && waiting_.empty() && (scope == nullptr || !scope->stop_requested()))
            [[likely]] {
            const std::uint32_t index = free_head_;
            if (index < slots_.size()) [[likely]] {
                slot& s = slots_[index];
                if (!prepare(ring_, encode(index, s.generation, cqe_kind::op))) [[likely]] {
                    free_head_ = s.next_free;
                    s.op = &op;
                    op.slot = index;
                    op.state = detail::op_state::in_flight;
                    ++in_flight_;
                    ++stats_.ops_started;
                    if (scope != nullptr)
                        scope->add(op);
                    return true;
                }
            }
        }
        return start(op);
    }

    /// Requests cancellation of `op`: a waiting op ends now with `operation_canceled`; an op in
    /// flight gets an ASYNC_CANCEL and still ends through its own completion.
    void cancel(detail::op_base& op) noexcept;

    /// Called when an awaiter is destroyed while its op is waiting or in flight: cancels it
    /// and blocks (dispatching other completions, resuming nobody) until the kernel is done
    /// with it. Its coroutine is never resumed.
    void abandon(detail::op_base& op) noexcept;

    /// Queues `r` to be resumed during the current or next loop turn. Destroying `r` before
    /// then unlinks it.
    void schedule(detail::resumption& r) noexcept;

    /// Arms `timer` to call `fire(timer)` on this thread at `deadline` (or the first loop turn
    /// after it). Destroying or disarming the timer first revokes it.
    void arm_timer(detail::timer_entry& timer, detail::timer_heap::clock::time_point deadline,
                   detail::timer_entry::fire_fn fire)
    {
        timers_.arm(timer, deadline, fire);
    }
    void disarm_timer(detail::timer_entry& timer) noexcept { timers_.disarm(timer); }

    /// Closes `fd`, a result that arrived for nobody (the op's awaiter is gone), and counts it.
    void close_orphan(int fd) noexcept;

    // --- registered tables (runtime/fixed.cpp; used by coil::file and fixed_buffer_pool) -----
    // Each call is one io_uring_register system call, on the executor's thread. The tables are
    // registered sparse the first time they are needed; what a fixed op in flight keeps when
    // its entry is emptied is in docs/lifetimes.md.

    /// Puts `fd` into a free slot of the file table and returns the slot. The table takes its
    /// own reference to the file. Errors: `EMFILE` every slot is taken (or
    /// `executor_options::file_slots` is 0), and the kernel's errno (`EBADF`, ...).
    result<std::uint32_t> register_file(int fd);
    /// Empties `slot`. Ops in flight on it keep their file until they complete.
    void unregister_file(std::uint32_t slot) noexcept;
    /// `unregister_file` from any thread: on another one, the slot is queued and emptied at
    /// the executor's next loop turn, or given up with the table when the executor is
    /// destroyed first (a registered file closed elsewhere is not the executor's to outlive).
    void unregister_file_from_any_thread(std::uint32_t slot);
    /// Puts `buffers` into a run of free entries of the buffer table and returns the first
    /// index. Errors: `ENOBUFS` no run of that many entries is free (or
    /// `executor_options::buffer_slots` is 0), and the kernel's errno (`ENOMEM`: the
    /// locked-memory limit, `EFAULT`, `EINVAL`).
    result<std::uint16_t> register_buffers(std::span<const ::iovec> buffers);
    /// Empties entries `first..first+count-1`. Ops in flight on them keep their pages.
    void unregister_buffers(std::uint16_t first, unsigned count) noexcept;
    /// File slots and buffer entries now taken.
    std::size_t registered_files() const noexcept { return files_taken_; }
    std::size_t registered_buffers() const noexcept { return buffers_taken_; }

    /// Whether the calling thread is the executor's thread.
    /// (In a child after fork(), the forking thread's copy of the executor counts as its
    /// thread.)
    bool on_executor_thread() const noexcept
    {
        return io::detail::this_thread_serial() == thread_ || on_forked_copy_of_thread();
    }

private:
    friend class detail::spawned_promise_base;
    friend class detail::run_scope;
    friend void detail::notify_scope_stopped(executor&, detail::stop_scope&) noexcept;
    friend class detail::stop_scope;
    friend class net::buffer_pool; // registers its buffer ring with ring_
    friend void detail::close_descriptor(int fd) noexcept;

    // user_data layout: bits 0-23 the slot index, bits 24-31 what the CQE is for, bits 32-63
    // the slot's generation when the op was started (docs/architecture.md).
    enum class cqe_kind : std::uint64_t {
        op = 0,     // the op's own completion
        cancel = 2, // an ASYNC_CANCEL aimed at the op
        wake = 3,   // the executor's read of its eventfd
    };
    static constexpr std::uint64_t slot_bits = 24;
    static constexpr std::uint64_t slot_mask = (std::uint64_t{1} << slot_bits) - 1;
    static constexpr std::uint64_t encode(std::uint32_t slot, std::uint32_t generation,
                                          cqe_kind kind) noexcept
    {
        return (std::uint64_t{generation} << 32) |
               (static_cast<std::uint64_t>(kind) << slot_bits) | slot;
    }

    struct slot {
        detail::op_base* op = nullptr; // the op in flight here, or null when free
        std::uint32_t generation = 0;  // changes each time an op leaves the slot
        std::uint32_t next_free = 0;   // the free list's next slot, while free
    };

    void run_loop();
    void run_ready();
    void flush_and_wait(bool block);
    bool spin_for_completion();
    template <bool ResumeInline>
    void reap_all() noexcept;
    template <bool ResumeInline>
    void dispatch(const io::completion& c) noexcept;
    template <bool ResumeInline>
    void finish(detail::op_base& op, std::uint32_t index, const io::completion& c) noexcept;
    void dispatch_other(const io::completion& c) noexcept;
    bool grow_slots() noexcept;
    bool try_submit(detail::op_base& op) noexcept;
    void admit_waiting() noexcept;
    void submit_pending_cancels() noexcept;
    bool submit_cancel(std::uint64_t target) noexcept;
    void recancel(std::uint64_t target) noexcept;
    void fire_due_timers();
    // Submits the SQEs queued so far and, on an SQPOLL ring, waits until the kernel thread has
    // issued them: an op resolves its descriptor, fixed file and registered buffer when it is
    // issued, so this comes before a close or a table change that queued ops name (ops still
    // waiting for SQ room are not helped). False when some are not issued yet (the kernel
    // refused them for now).
    bool issue_queued() noexcept;
    void close_after_queued_ops(int fd) noexcept;
    void close_deferred_descriptors() noexcept;
    void drain_once(const char* what) noexcept;
    void shutdown() noexcept;
    void track(detail::spawned_promise_base& p) noexcept;
    void untrack(detail::spawned_promise_base& p) noexcept;
    // The list of finished tasks whose join handles are still held (so that ~executor can tell
    // them it is gone).
    void track_finished(detail::spawned_promise_base& p) noexcept;
    void untrack_finished(detail::spawned_promise_base& p) noexcept;
    static void push_front(detail::spawned_promise_base*& head,
                           detail::spawned_promise_base& p) noexcept;
    static void unlink(detail::spawned_promise_base*& head,
                       detail::spawned_promise_base& p) noexcept;
    void report_unhandled(std::exception_ptr e, const char* what) noexcept;
    // The report on stderr alone (report_unhandled also counts it).
    static void print_unhandled(std::exception_ptr e, const char* what) noexcept;

    // Cross-thread wake-up and remote work: runtime/remote.cpp.
    void arm_wakeup() noexcept;
    void wake() noexcept;
    bool take_remote_work();
    void run_remote_work();
    void queue_remote_stop(detail::stop_scope& scope) noexcept;
    void forget_remote_stop(detail::stop_scope& scope) noexcept;
    /// A provided-buffer group id not used by another pool of this executor, and its return.
    std::uint16_t allocate_buffer_group();
    void release_buffer_group(std::uint16_t group) noexcept;

    // --- set once at construction ----------------------------------------------------------
    bool on_forked_copy_of_thread() const noexcept; // runtime/executor.cpp
    friend void forget_running_executor_after_fork() noexcept; // runtime/executor.cpp
    void forget_after_fork() noexcept;
    // The creating thread: its serial (no other thread of the process has it: glibc reuses
    // std::thread::id), and its id, which names it in a child after fork() (serials renew).
    std::uint64_t thread_;
    std::thread::id thread_id_;
    pid_t pid_;                      // a forked child must not touch the parent's ring
    io::ring ring_;
    int wake_fd_ = -1;               // eventfd that other threads write (runtime/remote.cpp)

    // --- touched only on the executor's thread ---------------------------------------------
    // The slot table: slots_[i].op is the op whose SQE was queued with slot index i, while its
    // final completion is outstanding. Grows (doubling) when no slot is free; never shrinks.
    std::vector<slot> slots_;
    // The free slots, linked through slot::next_free (most recently freed first, so a new op
    // reuses a slot that is still in cache); slots_.size() when none is free.
    std::uint32_t free_head_ = 0;
    std::size_t in_flight_ = 0;      // slots holding an op
    // Ops that found the SQ full even after a flush (the kernel took nothing), in order.
    detail::list<detail::op_base, detail::waiting_tag> waiting_;
    // Cancels that found the SQ full, by the user_data of the op they target: skipped once
    // that op has left its slot (its generation moved on).
    std::vector<std::uint64_t> pending_cancels_;
    // Descriptors whose owners were destroyed while ops queued before that were not yet issued
    // (waiting for SQ room, or refused by the kernel for now): closed once those are, so that
    // the number names the same file until then (detail::close_descriptor).
    std::vector<int> closing_;
    detail::resumption_queue ready_;   // resumed at the next run_ready()
    detail::resumption_queue running_; // the batch run_ready() is resuming
    detail::timer_heap timers_;
    detail::spawned_promise_base* spawned_ = nullptr; // live spawned tasks (intrusive list)
    detail::spawned_promise_base* finished_ = nullptr; // finished, handle still held (same links)
    static constexpr std::uint64_t current_position_ = ~std::uint64_t{0};
    std::uint64_t wake_buffer_ = 0;  // the kernel writes the eventfd counter here
    bool wake_armed_ = false;        // a read of wake_fd_ is in flight
    bool remote_signalled_ = false;  // that read completed: look at the remote queue
    bool running_loop_ = false;      // inside run()
    bool forked_ = false;            // a child's copy, made inert after fork() (forget_after_fork)
    bool stop_now_ = false;          // stop() was called on this thread, or taken from remote
    bool shutting_down_ = false;
    // The registered tables: which entries are taken (true) and how many. Sized and registered
    // (sparse) with the ring on first use; the ring frees the tables with itself.
    std::vector<bool> file_slot_taken_;
    std::vector<bool> buffer_entry_taken_;
    std::size_t files_taken_ = 0;
    std::size_t buffers_taken_ = 0;
    unsigned file_slots_ = 0;    // executor_options::file_slots
    unsigned buffer_slots_ = 0;  // executor_options::buffer_slots
    std::chrono::microseconds busy_poll_{0}; // executor_options::busy_poll
    std::uint16_t next_buffer_group_ = 0;          // never handed out yet from here on
    std::vector<std::uint16_t> free_buffer_groups_; // handed out and given back
    executor_stats stats_;
    std::vector<std::function<void()>> posted_running_; // the batch being run
    std::vector<std::uint32_t> released_running_;       // file slots being emptied
    std::vector<detail::stop_scope*> stopped_running_;  // the scopes being cancelled

    // --- shared with other threads: guarded by remote_mutex_ (protocol in remote.cpp) ------
    std::mutex remote_mutex_;
    std::vector<std::function<void()>> posted_;
    std::vector<std::uint32_t> released_file_slots_; // unregister_file_from_any_thread
    detail::stop_scope* remote_stops_ = nullptr; // scopes stopped from other threads
    bool remote_stop_ = false;                   // stop() from another thread
    bool wake_owed_ = false;                     // the eventfd was written and not yet consumed
    bool accepting_remote_stop_ = false;         // a run() is active (stop() has an effect)
};

/// Runs `t` on a fresh executor with default options and returns its value.
template <class T>
T run(task<T> t)
{
    executor ex;
    return ex.run(std::move(t));
}

} // namespace coil

#include <coil/runtime/spawn.hpp>
