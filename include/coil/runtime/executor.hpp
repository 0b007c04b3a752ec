// SPDX-License-Identifier: MIT
/// @file
/// `coil::executor`: a single-threaded event loop that owns one io_uring and resumes coroutines
/// when their completions arrive.
#pragma once

#include <coil/io/ring.hpp>
#include <coil/runtime/join_handle.hpp>
#include <coil/runtime/op_base.hpp>
#include <coil/runtime/task.hpp>

#include <atomic>
#include <cassert>
#include <coroutine>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace coil {

namespace detail {
class spawned_promise_base;
} // namespace detail

/// How an executor sets up its ring.
struct executor_options {
    /// Submission queue entries (rounded up to a power of two).
    unsigned entries = 256;
    /// Ring options. By default the executor asks for SINGLE_ISSUER + DEFER_TASKRUN and
    /// COOP_TASKRUN; kernels without them get a ring without them.
    io::ring_options ring = {.cq_entries = 0,
                             .single_issuer = true,
                             .coop_taskrun = false,
                             .sqpoll = false,
                             .sqpoll_idle = std::chrono::milliseconds(1000),
                             .strict = false,
                             .cap_outstanding = true};
};

/// Counters an executor keeps (beside its ring's `io::ring_stats`).
struct executor_stats {
    std::uint64_t ops_started = 0;       ///< ops handed to the ring
    std::uint64_t ops_deferred = 0;      ///< ops that waited for CQ room before starting
    std::uint64_t cancels_submitted = 0; ///< ASYNC_CANCEL requests submitted
    std::uint64_t stale_completions = 0; ///< completions whose user_data named no live op
    /// Exceptions of spawned tasks nobody joined, and of posted functions (each is also
    /// reported on stderr).
    std::uint64_t unhandled_exceptions = 0;
};

/// A single-threaded executor: owns one `io::ring` and runs coroutines on the thread that
/// calls `run()`.
///
/// One loop turn resumes every ready coroutine, hands every SQE they prepared to the kernel
/// in one `io_uring_enter` (which also waits for completions when nothing is ready), then
/// dispatches each completion to the operation it belongs to and makes its coroutine ready.
/// Operations beyond the completion queue's capacity wait their turn in order; a full
/// submission queue is flushed and retried here, so an awaiting coroutine never sees
/// `no_space`.
///
/// Threading: everything but `post()` and `stop()` must be called on the executor's thread
/// (the thread that created it). Destroying the executor cancels every operation in flight,
/// waits for all of their completions, and only then destroys the coroutine frames it still
/// owns (docs/lifetimes.md).
class executor {
public:
    explicit executor(const executor_options& options = {});
    ~executor();

    executor(const executor&) = delete;
    executor& operator=(const executor&) = delete;

    /// Drives `t` to completion on this thread and returns its value, or rethrows what it
    /// threw. Also runs every spawned task until all have ended. Throws
    /// `std::system_error(operation_canceled)` when `stop()` ended the loop first.
    template <class T>
    T run(task<T> t);

    /// Starts `t` as a task owned by the executor (it first runs at the next loop turn) and
    /// returns a handle that can be awaited for its result, or dropped to detach it.
    template <class T>
    join_handle<T> spawn(task<T> t);

    /// Hands `fn` to the executor from any thread; it runs on the executor's thread during a
    /// later loop turn, waking the executor if it is blocked in the kernel. Each posted
    /// function runs exactly once; one that throws is reported on stderr and counted in
    /// `executor_stats::unhandled_exceptions`, and the loop goes on.
    void post(std::function<void()> fn);

    /// Ends the loop from any thread: `run()` cancels and drains every operation in flight,
    /// destroys the tasks that did not finish, and throws `operation_canceled`.
    void stop() noexcept;

    /// The executor running on this thread, or null.
    static executor* current() noexcept;

    io::ring& ring() noexcept { return ring_; }
    const executor_stats& stats() const noexcept { return stats_; }

    /// Ops handed to the ring whose final completion has not arrived. Counted by a walk over
    /// the slot table: meant for tests and diagnostics, not for a hot loop.
    std::size_t in_flight() const noexcept;

    /// The most operations that may be in flight at once (the rest wait their turn).
    std::size_t max_in_flight() const noexcept { return op_capacity_; }

    // --- the operation protocol (used by coil's awaitables, not by applications) ---------

    /// Starts `op`: hands it to the ring, or queues it until there is room. Returns false
    /// when `op` completed at once (shutdown, unsupported, cancelled before start) and the
    /// caller must not suspend. `op.prepare` must be set.
    bool start(detail::op_base& op);

    /// `start` with the common case inline: no deadline (`timed` is `op.timed()`).
    /// `prepare(ring, user_data, flags)` queues the op's SQE; it is called directly, without
    /// the op record's type-erased `prepare`. The ring's outstanding limit is the gate (see
    /// update_gate()): when it refuses (no CQ room for another op, ops waiting ahead, the
    /// executor shutting down), or the SQ is full or the opcode unsupported, nothing was
    /// queued and the general path takes over.
    template <class Prepare>
    bool start(detail::op_base& op, bool timed, detail::op_base::prepare_fn general,
               Prepare&& prepare)
    {
        if (!timed) [[likely]] {
            // With no slot free this is the spare entry past the end, and the ring refuses:
            // every op holding a slot is outstanding, so the gate is reached.
            const std::uint32_t index = free_head_;
            slot& s = slots_[index];
            if (!prepare(ring_, encode(index, s.generation, cqe_kind::op), io::sqe_flags::none))
                [[likely]] {
                assert(index < op_capacity_ && "the ring took an op while no slot was free");
                free_head_ = s.next_free;
                s.op = &op;
                op.slot = index;
                // The whole state word (one store): no deadline, and nothing left over from
                // an earlier run of the same awaiter.
                op.state = detail::op_state::in_flight;
                op.pending = 1;
                op.flags = 0;
                op.cancel_requested = false;
                ++stats_.ops_started;
                return true;
            }
        }
        op.prepare = general;
        return start(op); // the general path: waits, deadlines, errors, shutdown
    }
    /// Requests cancellation of `op` from the executor thread. The op still completes
    /// through its own completion.
    void cancel(detail::op_base& op) noexcept;
    /// Says that a stop source was triggered: at its next loop turn the executor cancels every
    /// pending op whose stop token reports `stop_requested()`. Safe from any thread.
    void notify_stop() noexcept;
    /// Changes whenever the executor learns of a stop request: at once for one made on its own
    /// thread, else when it searches for stopped ops. A coroutine that found its token
    /// unstopped during the current epoch need not read it again before its next op.
    std::uint32_t stop_epoch() const noexcept { return stop_epoch_; }
    /// Called when an awaiter is destroyed while its op is queued or in flight: cancels it
    /// and blocks (processing other completions) until the kernel is done with it.
    void abandon(detail::op_base& op) noexcept;
    /// Makes `h` ready: it is resumed during the current or next loop turn.
    void schedule(std::coroutine_handle<> h);

    /// Whether the calling thread is the executor's thread.
    bool on_executor_thread() const noexcept { return std::this_thread::get_id() == thread_; }

private:
    friend class detail::spawned_promise_base;

    // user_data layout: bits 0-23 the slot index, bits 24-31 what the CQE is for, bits 32-63
    // the slot's generation when the op was started (docs/architecture.md).
    enum class cqe_kind : std::uint64_t {
        op = 0,           // the op's own completion
        link_timeout = 1, // the deadline linked to the op
        cancel = 2,       // an ASYNC_CANCEL aimed at the op
        wake = 3,         // the executor's read of its eventfd
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
    template <bool ResumeInline>
    void dispatch(const io::completion& c) noexcept;
    template <bool ResumeInline>
    void dispatch_other(const io::completion& c) noexcept;
    template <bool ResumeInline>
    void finish_op(detail::op_base& op, std::uint32_t index) noexcept;
    bool submit_op(detail::op_base& op) noexcept;
    bool has_room(unsigned cqes) const noexcept;
    void admit_waiting() noexcept;
    void submit_pending_cancels() noexcept;
    bool submit_cancel(std::uint32_t slot_index) noexcept;
    void arm_wakeup() noexcept;
    void wake() noexcept;
    void process_remote();
    void cancel_stopped_ops() noexcept;
    void bump_stop_epoch() noexcept;
    void report_unhandled(std::exception_ptr e, const char* what) noexcept;
    void shutdown() noexcept;
    void track(detail::spawned_promise_base& p) noexcept;
    void untrack(detail::spawned_promise_base& p) noexcept;
    template <bool ResumeInline>
    void reap_all() noexcept;
    // Submits pending cancels, waits for one completion and dispatches what came in, without
    // resuming anyone. Terminates if the ring itself fails: see docs/lifetimes.md.
    void drain_once(const char* what) noexcept;
    std::uint32_t unlink_waiting(detail::op_base& op) noexcept;
    void enqueue_waiting(detail::op_base& op) noexcept;
    void update_gate() noexcept;

    // --- set once at construction ----------------------------------------------------------
    std::thread::id thread_;
    io::ring ring_;
    int wake_fd_ = -1;               // eventfd that post() and remote cancels write
    std::size_t op_capacity_ = 0;    // slots_.size(): ops that may be in flight at once
    unsigned cqe_reserve_ = 0;       // CQ entries kept free for cancels and the wake-up read
    unsigned op_cqe_limit_ = 0;      // ops start only while ring outstanding + their CQEs <= this

    // --- touched only on the executor thread ---------------------------------------------
    // op_capacity_ slots, and one spare past the end that no op ever holds (start() may read
    // its generation when none is free).
    std::vector<slot> slots_;
    // The free slots, linked through slot::next_free (most recently freed first, so a new op
    // reuses a slot that is still in cache); op_capacity_ when none is free.
    std::uint32_t free_head_ = 0;
    // Cancels that await CQ room, by the user_data of the op they target: stale (skipped)
    // once the op has left its slot.
    std::vector<std::uint64_t> pending_cancels_;
    detail::op_base* waiting_head_ = nullptr;   // FIFO of ops waiting for CQ room
    detail::op_base* waiting_tail_ = nullptr;
    std::vector<std::coroutine_handle<>> ready_;   // resumed at the next run_ready()
    std::vector<std::coroutine_handle<>> running_; // the batch run_ready() is resuming
    detail::spawned_promise_base* spawned_ = nullptr; // live spawned tasks (intrusive list)
    static constexpr std::uint64_t current_position_ = ~std::uint64_t{0};
    std::uint64_t wake_buffer_ = 0;  // the kernel writes the eventfd counter here
    bool wake_armed_ = false;        // a read of wake_fd_ is in flight
    bool shutting_down_ = false;
    std::uint32_t stop_epoch_ = 1;   // see stop_epoch(); promises start at 0
    executor_stats stats_;

    // --- touched from any thread ---------------------------------------------------------
    std::atomic<bool> stop_requested_{false};  // relaxed: polled once per loop turn
    // remote_work_ is set (release) after posted_ is written or a stop is notified, and
    // exchanged (acquire) by the executor before it reads them.
    std::atomic<bool> remote_work_{false};
    std::mutex posted_mutex_;
    std::vector<std::function<void()>> posted_; // guarded by posted_mutex_
    // A stop source was triggered since the last search for stopped ops. Written with release
    // by notify_stop() after the stop state changed; exchanged with acquire before the search.
    std::atomic<bool> stops_pending_{false};
    std::vector<std::function<void()>> posted_running_; // executor thread: the batch being run
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
