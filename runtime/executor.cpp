// SPDX-License-Identifier: MIT
// The executor's loop: the slot table that keys user_data, starting ops, completion dispatch,
// timers, abandoning and shutdown. Cross-thread work is in remote.cpp, stop scopes in
// cancellation.cpp. docs/lifetimes.md states the rules enforced here.

#include <coil/runtime/executor.hpp>
#include <coil/runtime/operation.hpp>

#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <exception>
#include <stdexcept>
#include <string>

namespace coil {
namespace {

thread_local executor* current_executor = nullptr;

// The slot table starts with room for this many ops and doubles when full.
constexpr std::size_t initial_slots = 256;

} // namespace

namespace detail {

executor* running_executor() noexcept { return current_executor; }

void throw_no_executor()
{
    throw std::logic_error("coil: co_await of a coil operation in a coroutine that no executor "
                           "runs: start it with coil::run(), executor::run() or "
                           "executor::spawn()");
}

void throw_foreign_await()
{
    throw std::logic_error("coil: co_await of a coil operation on a thread where the "
                           "coroutine's executor is not running (something resumed it on "
                           "another executor's thread or a thread of its own): a task stays on "
                           "the executor that started it; hand work to another executor with "
                           "post(), which may spawn() a task there");
}

void throw_foreign_spawn()
{
    throw std::logic_error("coil: executor::spawn() called on a thread other than the "
                           "executor's (its ready queue is not thread-safe); hand the work over "
                           "with post(), which may call spawn() there");
}

run_scope::run_scope(executor& ex) : executor_(ex), previous_(current_executor)
{
    if (::getpid() != ex.pid_)
        throw std::logic_error("coil: executor::run() of an executor this process inherited "
                               "through fork(): its ring is the parent's; create a new "
                               "executor in the child");
    if (!ex.on_executor_thread())
        throw std::logic_error("coil: executor::run() called on a thread other than the one "
                               "that created the executor; an executor runs on its own thread");
    if (ex.running_loop_)
        throw std::logic_error("coil: executor::run() called from inside a task of the same "
                               "executor (a nested run); co_await the task instead");
    if (current_executor != nullptr && current_executor->running_loop_ &&
        current_executor->pid_ == ::getpid()) // not a loop a forked child inherited
        throw std::logic_error("coil: executor::run() called from inside a task of another "
                               "executor on this thread (a nested run would stall that "
                               "executor's loop until it returned); co_await the task "
                               "instead, or run the second executor on a thread of its own");
    ex.running_loop_ = true;
    current_executor = &ex;
    {
        std::lock_guard lock(ex.remote_mutex_);
        ex.accepting_remote_stop_ = true;
        ex.remote_stop_ = false; // a stop() made while no run() was active has no effect
    }
    ex.stop_now_ = false;
}

run_scope::~run_scope()
{
    {
        std::lock_guard lock(executor_.remote_mutex_);
        executor_.accepting_remote_stop_ = false;
        executor_.remote_stop_ = false;
    }
    executor_.running_loop_ = false;
    current_executor = previous_;
}

void spawned_promise_base::on_finished() noexcept
{
    finished_ = true;
    owner_->untrack(*this);
    const bool joined = joiner_ != nullptr; // the joiner takes the result, exception included
    if (joined)
        owner_->schedule(std::exchange(joiner_, nullptr)->wake);
    if (detached_ && exception_ && !observed_ && !joined)
        owner_->report_unhandled(exception_, "a detached task");
    if (!detached_)
        owner_->track_finished(*this); // until the handle is dropped
    release();
}

void spawned_promise_base::detach() noexcept
{
    detached_ = true;
    link_ = nullptr;
    if (finished_ && owner_ != nullptr)
        owner_->untrack_finished(*this);
    // Dropped after the task finished with an exception nobody took: report it now (on stderr
    // alone once the executor, which counts them, is gone).
    if (finished_ && exception_ && !observed_) {
        observed_ = true;
        if (owner_ != nullptr)
            owner_->report_unhandled(exception_, "a detached task");
        else
            executor::print_unhandled(exception_, "a detached task");
    }
    release();
}

void spawned_promise_base::set_joiner(join_waiter& w)
{
    check_not_joined();
    if (joiner_ != nullptr)
        throw std::logic_error("coil: a join_handle is awaited by two coroutines at once");
    joiner_ = &w;
    w.counted = true; // released by the awaiter, which may outlive the handle
    ++refs_;
}

void spawned_promise_base::abandon() noexcept
{
    if (link_ != nullptr) {
        link_->promise = nullptr;
        link_->abandoned = true;
        link_ = nullptr;
    }
    if (joiner_ != nullptr)
        std::exchange(joiner_, nullptr)->promise = nullptr;
    self_.destroy();
}

void spawned_promise_base::check_awaited_here() const
{
    if (owner_ != nullptr && owner_ != current_executor)
        throw std::logic_error("coil: a join_handle is awaited in a coroutine that its task's "
                               "executor does not run (a task of another executor, or none): "
                               "await a task on the executor that runs it, and hand results "
                               "between executors with post()");
}

void spawned_promise_base::check_not_joined() const
{
    if (observed_)
        throw std::logic_error("coil: a join_handle was awaited (or get() called) twice; its "
                               "result can be taken once");
}

} // namespace detail

executor* executor::current() noexcept { return current_executor; }

namespace {

// The ring options an executor asks for: the caller's, with a CQ never smaller than the SQ
// (the kernel refuses that): a CQ below the SQ's size becomes twice the SQ, the kernel's own
// default ratio. So a large `entries` works with the default `cq_entries`.
io::ring_options ring_options_for(const executor_options& options)
{
    io::ring_options ring = options.ring;
    if (ring.cq_entries != 0 && ring.cq_entries < options.entries)
        ring.cq_entries = 2 * options.entries;
    return ring;
}

} // namespace

// In a child after fork(), on the forking thread: an executor running there (the fork was made
// inside one of its tasks) goes on running in the child, over the parent's ring. Make it inert
// before anything of the child's runs: its ops fail with io::errc::forked_copy and its loop
// stops at its next turn, without touching the ring (docs/lifetimes.md).
void forget_running_executor_after_fork() noexcept
{
    if (current_executor != nullptr && current_executor->running_loop_)
        current_executor->forget_after_fork();
}

void executor::forget_after_fork() noexcept
{
    ring_.forget_after_fork();
    forked_ = true;
    stop_now_ = true;
}

executor::executor(const executor_options& options)
    : thread_(io::detail::this_thread_serial()), thread_id_(std::this_thread::get_id()),
      pid_(::getpid()), ring_(options.entries, ring_options_for(options)),
      file_slots_(options.file_slots), buffer_slots_(options.buffer_slots),
      busy_poll_(options.busy_poll)
{
    static const bool fork_handler_installed =
        ::pthread_atfork(nullptr, nullptr, &forget_running_executor_after_fork) == 0;
    static_cast<void>(fork_handler_installed);
    if (busy_poll_.count() < 0 || (busy_poll_.count() != 0 && !ring_.sqpoll()))
        throw std::system_error(EINVAL, std::generic_category(),
                                "coil: executor_options::busy_poll needs ring.sqpoll = true (and "
                                "must not be negative): without SQPOLL the kernel posts "
                                "completions only when the executor enters it, so spinning "
                                "would only delay them");
    if (options.ring.cap_outstanding)
        throw std::system_error(EINVAL, std::generic_category(),
                                "coil: executor_options::ring.cap_outstanding must be false: the "
                                "executor keeps any number of ops pending (the kernel holds "
                                "completions that find the CQ full) and a cap would make ops "
                                "that wait on each other deadlock");
    if (!ring_.has_ext_arg())
        throw std::system_error(ENOSYS, std::generic_category(),
                                "coil: the executor needs IORING_FEAT_EXT_ARG (Linux 5.11) for "
                                "its timers: upgrade the kernel, or use coil::io::ring directly");
    // A blocking eventfd: io_uring then waits for it to become readable (an O_NONBLOCK one
    // would make the read fail with EAGAIN at once).
    wake_fd_ = ::eventfd(0, EFD_CLOEXEC);
    if (wake_fd_ < 0)
        throw std::system_error(errno, std::generic_category(),
                                "coil: the executor could not create its wake-up eventfd");
    slots_.resize(initial_slots);
    for (std::size_t i = 0; i < slots_.size(); ++i) // slot 0 first
        slots_[i].next_free = static_cast<std::uint32_t>(i + 1);
    free_head_ = 0;
    pending_cancels_.reserve(64);
}

executor::~executor()
{
    // A single-issuer ring takes system calls from its creating thread only (EEXIST from any
    // other): on another thread the ops in flight (the wake-up read, armed by the first run())
    // could be neither cancelled nor waited for, and their memory is about to go.
    if (!on_executor_thread() && ring_.single_issuer() && ring_.outstanding() != 0) {
        std::fprintf(stderr,
                     "coil: executor destroyed on a thread other than the one that created "
                     "it, with %u op(s) in its ring (after a run(), at least its wake-up "
                     "read): its single-issuer ring takes system calls from its creating "
                     "thread only, so they can be neither cancelled nor waited for. Destroy "
                     "an executor on the thread that created it (or create it with "
                     "ring.single_issuer = false)\n",
                     ring_.outstanding());
        std::terminate();
    }
    executor* previous = std::exchange(current_executor, this);
    shutdown();
    // Finished tasks whose handles outlive the executor: a handle dropped later must not
    // report through it.
    while (finished_ != nullptr) {
        detail::spawned_promise_base& p = *finished_;
        unlink(finished_, p);
        p.owner_ = nullptr;
    }
    // Functions posted after the last run() ended are destroyed unrun.
    std::vector<std::function<void()>> dropped;
    {
        std::lock_guard lock(remote_mutex_);
        dropped.swap(posted_);
        // Registered files closed on other threads since the last turn: their slots go with
        // the table, which the ring takes along.
        for (std::uint32_t slot : released_file_slots_) {
            if (slot < file_slot_taken_.size() && file_slot_taken_[slot]) {
                file_slot_taken_[slot] = false;
                --files_taken_;
            }
        }
        released_file_slots_.clear();
    }
    if (!dropped.empty()) {
        std::fprintf(stderr, "coil: %zu posted function(s) dropped unrun: the executor was "
                             "destroyed before a run() took them\n",
                     dropped.size());
    }
    dropped.clear();
    current_executor = previous;
    // A registered file or buffer pool that outlives its executor would later empty an entry
    // of a table that is gone (docs/lifetimes.md): stop here, saying which.
    if (files_taken_ != 0 || buffers_taken_ != 0) {
        std::fprintf(stderr, "coil: executor destroyed while %zu registered file slot(s) and %zu "
                             "registered buffer(s) are still in use: destroy every registered "
                             "coil::file and fixed_buffer_pool before their executor\n",
                     files_taken_, buffers_taken_);
        std::terminate();
    }
    // Nothing is in flight now: the wake-up read completed and was reaped. A post() or stop()
    // still running on another thread writes the eventfd under the mutex: taking it here
    // waits for that write, so it can never land in a descriptor that reused the number.
    std::lock_guard lock(remote_mutex_);
    ::close(std::exchange(wake_fd_, -1));
}

bool executor::on_forked_copy_of_thread() const noexcept
{
    return ::getpid() != pid_ && std::this_thread::get_id() == thread_id_;
}

void executor::schedule(detail::resumption& r) noexcept
{
    if (!r.linked())
        ready_.push_back(r);
}

// The intrusive lists of spawned promises (prev_/next_ links, one list at a time).
void executor::push_front(detail::spawned_promise_base*& head,
                          detail::spawned_promise_base& p) noexcept
{
    p.prev_ = nullptr;
    p.next_ = head;
    if (head != nullptr)
        head->prev_ = &p;
    head = &p;
}

void executor::unlink(detail::spawned_promise_base*& head,
                      detail::spawned_promise_base& p) noexcept
{
    if (p.prev_ != nullptr)
        p.prev_->next_ = p.next_;
    else
        head = p.next_;
    if (p.next_ != nullptr)
        p.next_->prev_ = p.prev_;
    p.prev_ = p.next_ = nullptr;
}

void executor::track(detail::spawned_promise_base& p) noexcept
{
    p.owner_ = this;
    push_front(spawned_, p);
}

void executor::untrack(detail::spawned_promise_base& p) noexcept { unlink(spawned_, p); }

void executor::track_finished(detail::spawned_promise_base& p) noexcept
{
    push_front(finished_, p);
}

void executor::untrack_finished(detail::spawned_promise_base& p) noexcept
{
    unlink(finished_, p);
}

std::uint16_t executor::allocate_buffer_group()
{
    if (!free_buffer_groups_.empty()) {
        const std::uint16_t group = free_buffer_groups_.back();
        free_buffer_groups_.pop_back();
        return group;
    }
    if (next_buffer_group_ == 0xffff)
        throw std::system_error(ENOSPC, std::generic_category(),
                                "coil: an executor can register at most 65535 buffer pools");
    return next_buffer_group_++;
}

void executor::release_buffer_group(std::uint16_t group) noexcept
{
    try {
        free_buffer_groups_.push_back(group);
    } catch (const std::bad_alloc&) {
        // The id is simply not reused.
    }
}

void executor::close_orphan(int fd) noexcept
{
    ::close(fd);
    ++stats_.orphans_closed;
}

// --- the loop -------------------------------------------------------------------------------

void executor::run_loop()
{
    for (;;) {
        if (stop_now_)
            break;
        run_ready();
        if (remote_signalled_)
            run_remote_work();
        if (!timers_.empty())
            fire_due_timers();
        if (!waiting_.empty())
            admit_waiting();
        if (!closing_.empty() && waiting_.empty())
            close_deferred_descriptors();
        if (stop_now_)
            break;
        if (spawned_ == nullptr && ready_.empty()) {
            // Every task ended. Posted functions still queued keep the loop alive.
            if (!take_remote_work())
                break;
            continue;
        }
        flush_and_wait(ready_.empty());
    }
    if (stop_now_) {
        stop_now_ = false;
        shutdown();
    }
}

void executor::run_ready()
{
    // Resume the batch that is ready now; what they make ready runs in the next batch, after
    // the ring has been given their SQEs. One at a time from the list: a coroutine resumed
    // here may destroy a frame whose resumption is still queued, which unlinks it.
    running_.splice_back(ready_);
    while (detail::resumption* r = running_.pop_front())
        r->handle.resume();
}

void executor::fire_due_timers()
{
    stats_.timers_fired += timers_.fire_due(detail::timer_heap::clock::now());
}

void executor::flush_and_wait(bool block)
{
    if (!wake_armed_)
        arm_wakeup();
    if (block && busy_poll_.count() != 0 && spin_for_completion())
        block = false; // a completion is in: reap it without entering the kernel
    if (block) {
        // One io_uring_enter: submit everything queued and wait for a completion, at most
        // until the earliest timer is due.
        std::optional<std::chrono::nanoseconds> timeout;
        if (!timers_.empty())
            timeout = std::max(io::detail::time_left(timers_.earliest()),
                               detail::timer_heap::clock::duration::zero());
        if (timeout && timeout->count() == 0) {
            auto submitted = ring_.submit_and_get_events();
            if (!submitted)
                throw std::system_error(submitted.error(), "coil: submitting to the ring failed");
        } else {
            auto waited = ring_.wait(1, timeout);
            if (!waited)
                throw std::system_error(waited.error(), "coil: waiting on the ring failed");
        }
    } else if (ring_.unsubmitted() != 0 || ring_.kernel_holds_completions()) {
        // Work is ready to run, so do not wait; but hand the kernel the new SQEs and bring in
        // what it holds (deferred task work, overflow) in the same system call, so that the
        // reaping below need not enter again.
        auto submitted = ring_.submit_and_get_events();
        if (!submitted)
            throw std::system_error(submitted.error(), "coil: submitting to the ring failed");
    }
    reap_all<true>();
}

// With SQPOLL, handing SQEs over is a store to the SQ tail (a system call only to wake a
// sleeping SQ thread), and that thread posts the completions: spin on the CQ until one is in,
// the budget is spent, or the earliest timer is due. Posted work also ends the spin, through
// the completion of the wake-up read.
bool executor::spin_for_completion()
{
    auto submitted = ring_.submit();
    if (!submitted)
        throw std::system_error(submitted.error(), "coil: submitting to the ring failed");
    using clock = detail::timer_heap::clock;
    const auto now = clock::now();
    // Saturating: busy_poll may be anything up to microseconds::max(), which is too long for
    // the clock's nanoseconds; compare in microseconds.
    const auto room =
        std::chrono::duration_cast<std::chrono::microseconds>(clock::time_point::max() - now);
    auto until = busy_poll_ >= room ? clock::time_point::max() : now + busy_poll_;
    if (!timers_.empty())
        until = std::min(until, timers_.earliest());
    for (unsigned turn = 0;; ++turn) {
        if (ring_.ready() != 0) {
            ++stats_.busy_poll_hits;
            return true;
        }
        // The clock is read every 64 turns: the CQ check is a load, the clock a vDSO call.
        if (turn % 64 == 63 && clock::now() >= until)
            return false;
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#elif defined(__aarch64__)
        asm volatile("yield");
#endif
    }
}

// ResumeInline: the loop proper resumes each completed op's coroutine on the spot, so that
// its next SQE is prepared while its data is still in cache. Everywhere else (draining for
// abandon() or shutdown) the coroutines are queued (and dropped at shutdown). A coroutine
// resumed inline may reap again through abandon(): the ring's for_each_ready allows it.
template <bool ResumeInline>
void executor::reap_all() noexcept
{
    // Only what the CQ holds: every caller has just entered the kernel (a wait, or a submit
    // that got events), and one system call per turn of the loop is what it costs. And only
    // what it holds now: a coroutine resumed inline queues its next op, a full SQ is handed
    // over, and ops that complete inline (NOPs, page-cache reads) refill the CQ at once, so
    // with more such coroutines than SQ entries an unbounded pass would never end, and the
    // ready queue, the timers and posted work would wait for good.
    ring_.for_each_ready([this](const io::completion& c) __attribute__((always_inline)) {
        dispatch<ResumeInline>(c);
    }, ring_.ready());
    if (!pending_cancels_.empty())
        submit_pending_cancels();
}

// The per-completion path. The low word of user_data is kind << 24 | slot, so it is below the
// table size exactly for an op's own completion.
template <bool ResumeInline>
[[gnu::always_inline]] inline void executor::dispatch(const io::completion& c) noexcept
{
    const auto low = static_cast<std::uint32_t>(c.user_data);
    if (low < slots_.size()) [[likely]] {
        slot& s = slots_[low];
        if (s.generation == static_cast<std::uint32_t>(c.user_data >> 32) && s.op != nullptr)
            [[likely]] {
            finish<ResumeInline>(*s.op, low, c);
            return;
        }
        ++stats_.stale_completions;
        return;
    }
    dispatch_other(c);
}

template <bool ResumeInline>
[[gnu::always_inline]] inline void executor::finish(detail::op_base& op, std::uint32_t index,
                                                    const io::completion& c) noexcept
{
    const bool final = !c.more();
    if (final) {
        slot& s = slots_[index];
        s.op = nullptr;
        ++s.generation;
        s.next_free = free_head_;
        free_head_ = index;
        --in_flight_;
        op.state = detail::op_state::done;
        op.detail::cancellable::unlink(); // leaves its stop scope
        if (op.armed())
            timers_.disarm(op);
    }
    bool wake;
    if (op.on_completion == nullptr) [[likely]] {
        // Single-shot: the result is the completion that is not a zero-copy notification.
        if (!(c.flags & detail::op_base::notif_flag))
            op.last = c;
        wake = final;
    } else {
        wake = op.on_completion(op, c);
    }
    if (!wake)
        return;
    if constexpr (ResumeInline) {
        // The coroutine's first act is await_resume(), which takes the result.
        op.wake.handle.resume();
    } else {
        schedule(op.wake);
    }
}

// Completions other than an op's own: cancels, the wake-up read.
void executor::dispatch_other(const io::completion& c) noexcept
{
    const auto kind = static_cast<cqe_kind>((c.user_data >> slot_bits) & 0xff);
    switch (kind) {
    case cqe_kind::wake:
        wake_armed_ = false;
        remote_signalled_ = true; // look at the remote queue at the next loop turn
        return;
    case cqe_kind::cancel:
        // Says whether the cancel found its op; the op's own CQE follows. -ENOENT is usually
        // an op that had completed already, but a multishot op between two completions (a
        // multishot timeout that has fired and is re-arming) is missed the same way and then
        // goes on for ever: cancel a multishot op again while it is still in flight. (Not a
        // single-shot one: on a DEFER_TASKRUN ring, buffered file writes that io-wq runs are
        // missed by every cancel until they end, and re-cancelling them each turn made tens
        // of thousands of cancels for 200 writes.)
        if (c.result == -ENOENT)
            recancel(c.user_data & ~(std::uint64_t{0xff} << slot_bits));
        return;
    case cqe_kind::op: // an op kind with an index beyond the table
        break;
    }
    ++stats_.stale_completions;
}

// --- starting ops ---------------------------------------------------------------------------

bool executor::grow_slots() noexcept
{
    const std::size_t old_size = slots_.size();
    const std::size_t new_size = std::min<std::size_t>(old_size * 2, slot_mask + 1);
    if (new_size == old_size)
        return false; // 16 Mi ops in flight: the user_data layout holds no more
    try {
        slots_.resize(new_size);
    } catch (const std::bad_alloc&) {
        return false;
    }
    for (std::size_t i = old_size; i < new_size; ++i)
        slots_[i].next_free = static_cast<std::uint32_t>(i + 1);
    // The free list was empty (free_head_ == old_size): it is now the new slots in order.
    free_head_ = static_cast<std::uint32_t>(old_size);
    return true;
}

bool executor::start(detail::op_base& op)
{
    op.cancel_requested = false;
    op.setup_error = {};
    if (shutting_down_ || (op.scope != nullptr && op.scope->stop_requested())) {
        op.last = io::completion{0, -ECANCELED, 0};
        op.state = detail::op_state::done;
        return false;
    }
    if (!waiting_.empty() || !try_submit(op)) {
        // The SQ is full and the kernel took nothing: wait, in order, for room.
        waiting_.push_back(op);
        op.state = detail::op_state::waiting;
        ++stats_.ops_deferred;
    }
    if (op.state == detail::op_state::done)
        return false; // a setup error
    if (op.scope != nullptr)
        op.scope->add(op);
    return true;
}

// Queues `op`'s SQE. Returns false, touching nothing, when the SQ has no room even after a
// flush; otherwise the op is in flight, or done with a setup error (unsupported opcode, no
// slot left).
bool executor::try_submit(detail::op_base& op) noexcept
{
    if (free_head_ == slots_.size() && !grow_slots()) {
        op.setup_error = std::make_error_code(std::errc::not_enough_memory);
        op.state = detail::op_state::done;
        return true;
    }
    const std::uint32_t index = free_head_;
    slot& s = slots_[index];
    const std::uint64_t user_data = encode(index, s.generation, cqe_kind::op);
    // A full SQ is handed to the kernel by the ring itself: no_space means it took nothing.
    std::error_code ec = op.prepare(op, ring_, user_data);
    if (ec && ec == io::errc::no_space)
        return false;
    if (ec) {
        op.setup_error = ec;
        op.state = detail::op_state::done;
        return true;
    }
    free_head_ = s.next_free;
    s.op = &op;
    op.slot = index;
    op.state = detail::op_state::in_flight;
    ++in_flight_;
    ++stats_.ops_started;
    return true;
}

void executor::admit_waiting() noexcept
{
    while (!waiting_.empty()) {
        detail::op_base& op = waiting_.front();
        if (!try_submit(op))
            return;
        op.detail::link<detail::waiting_tag>::unlink();
        if (op.state == detail::op_state::done) { // a setup error
            op.detail::cancellable::unlink();
            if (op.armed())
                timers_.disarm(op);
            // An operation's awaiter is suspended on it; a stream's consumer may not be (a
            // deadline on its next() resumed it meanwhile): the stream takes the error and
            // says whether to resume it, as for a completion.
            if (!op.multishot || op.on_completion(op, op.last))
                schedule(op.wake);
        }
    }
}

// --- cancellation ---------------------------------------------------------------------------

bool executor::submit_cancel(std::uint64_t target) noexcept
{
    const std::uint64_t user_data =
        (target & ~(std::uint64_t{0xff} << slot_bits)) |
        (static_cast<std::uint64_t>(cqe_kind::cancel) << slot_bits);
    if (ring_.add_cancel(target, user_data)) // no_space: the kernel took nothing
        return false;
    ++stats_.cancels_submitted;
    return true;
}

void executor::submit_pending_cancels() noexcept
{
    std::size_t kept = 0;
    for (std::size_t i = 0; i < pending_cancels_.size(); ++i) {
        const std::uint64_t target = pending_cancels_[i];
        const auto index = static_cast<std::uint32_t>(target & slot_mask);
        const slot& s = slots_[index];
        if (s.op == nullptr || s.generation != static_cast<std::uint32_t>(target >> 32))
            continue; // the op finished meanwhile
        if (!submit_cancel(target))
            pending_cancels_[kept++] = target;
    }
    pending_cancels_.resize(kept);
}

void executor::recancel(std::uint64_t target) noexcept
{
    const auto index = static_cast<std::uint32_t>(target & slot_mask);
    if (index >= slots_.size())
        return;
    const slot& s = slots_[index];
    if (s.op == nullptr || s.generation != static_cast<std::uint32_t>(target >> 32) ||
        !s.op->cancel_requested)
        return; // finished meanwhile: its final completion was reaped
    if (!s.op->multishot)
        return; // ends on its own (see dispatch_other)
    ++stats_.cancels_retried;
    pending_cancels_.push_back(target); // submitted at the end of this reaping pass
}

void executor::cancel(detail::op_base& op) noexcept
{
    switch (op.state) {
    case detail::op_state::idle:
    case detail::op_state::done:
        return;
    case detail::op_state::waiting:
        // Never reached the kernel: it ends now.
        op.detail::link<detail::waiting_tag>::unlink();
        op.detail::cancellable::unlink();
        if (op.armed())
            timers_.disarm(op);
        op.last = io::completion{0, -ECANCELED, 0};
        op.state = detail::op_state::done;
        if (op.on_completion == nullptr || op.on_completion(op, op.last))
            schedule(op.wake);
        return;
    case detail::op_state::in_flight: {
        if (op.cancel_requested)
            return;
        op.cancel_requested = true;
        const std::uint64_t target = encode(op.slot, slots_[op.slot].generation, cqe_kind::op);
        if (!submit_cancel(target))
            pending_cancels_.push_back(target);
        return;
    }
    }
}

void executor::abandon(detail::op_base& op) noexcept
{
    // The awaiter is being destroyed with its op still waiting or in flight (its coroutine
    // frame is going away). Its memory must outlive the kernel's use of it: cancel, then
    // process completions until this op's final one has been reaped. Other ops' completions
    // are dispatched as usual (their coroutines queued); this op's coroutine is never resumed.
    op.wake.unlink();
    if (op.state == detail::op_state::waiting) {
        op.detail::link<detail::waiting_tag>::unlink();
        op.detail::cancellable::unlink();
        if (op.armed())
            timers_.disarm(op);
        op.state = detail::op_state::idle; // never reached the kernel: no result to discard
        return;
    }
    cancel(op);
    while (op.state != detail::op_state::done)
        drain_once("waiting for a cancelled op");
    op.wake.unlink();
}

void executor::drain_once(const char* what) noexcept
{
    submit_pending_cancels();
    auto waited = ring_.wait(1);
    if (!waited) {
        std::fprintf(stderr, "coil: %s failed: %s\n", what, waited.error().message().c_str());
        std::terminate(); // freeing memory the kernel may still write is worse
    }
    reap_all<false>(); // resumes nobody: completed ops are marked done, their coroutines queued
}

void executor::report_unhandled(std::exception_ptr e, const char* what) noexcept
{
    ++stats_.unhandled_exceptions;
    print_unhandled(std::move(e), what);
}

void executor::print_unhandled(std::exception_ptr e, const char* what) noexcept
{
    try {
        std::rethrow_exception(std::move(e));
    } catch (const std::exception& error) {
        std::fprintf(stderr, "coil: %s ended with an exception: %s\n", what, error.what());
    } catch (...) {
        std::fprintf(stderr, "coil: %s ended with an unknown exception\n", what);
    }
}

// --- closing descriptors --------------------------------------------------------------------

bool executor::issue_queued() noexcept
{
    if (ring_.unsubmitted() != 0) {
        (void)ring_.submit(); // an error leaves them queued for the loop's own submit
        ring_.wait_until_issued();
    }
    return ring_.unsubmitted() == 0;
}

// detail::close_descriptor says why: ops queued before the close must be issued before it.
void executor::close_after_queued_ops(int fd) noexcept
{
    // A forked child must not submit on its parent's ring; its queue is not its own.
    if (::getpid() != pid_ || (issue_queued() && waiting_.empty())) {
        ::close(fd);
        return;
    }
    try {
        closing_.push_back(fd);
    } catch (...) {
        ::close(fd); // no memory to wait with: close now, as a plain close(2) would
    }
}

// Called once no op waits for SQ room: every op queued before each close has been queued.
void executor::close_deferred_descriptors() noexcept
{
    if (!issue_queued())
        return; // the kernel refused them for now: the next loop turn tries again
    for (int fd : closing_)
        ::close(fd);
    closing_.clear();
}

void detail::close_descriptor(int fd) noexcept
{
    if (fd < 0)
        return;
    if (executor* ex = executor::current(); ex != nullptr)
        ex->close_after_queued_ops(fd);
    else
        ::close(fd);
}

// --- shutdown -------------------------------------------------------------------------------

void executor::shutdown() noexcept
{
    // 1. Take no new work; ops that never reached the kernel end now.
    shutting_down_ = true;
    while (detail::op_base* op = waiting_.pop_front()) {
        op->detail::cancellable::unlink();
        op->last = io::completion{0, -ECANCELED, 0};
        op->state = detail::op_state::done;
    }

    // A forked child shares the parent's ring: it must neither cancel the parent's ops nor
    // wait for them. Its copies of the frames are its own to free.
    if (::getpid() == pid_) {
        // 2. Cancel everything in flight. The wake-up read is completed by waking it, which
        //    needs no SQE.
        for (slot& s : slots_)
            if (s.op != nullptr)
                cancel(*s.op);
        if (wake_armed_)
            wake();

        // 3. Drain until the kernel holds nothing of ours.
        while (ring_.outstanding() != 0)
            drain_once("draining the ring at shutdown");
    } else {
        // The ops in flight are the parent's: forget this copy of them, so that destroying
        // their awaiters below neither cancels nor waits (nor closes a "result" that is not).
        for (slot& s : slots_) {
            if (s.op != nullptr) {
                s.op->detail::cancellable::unlink();
                s.op->state = detail::op_state::idle;
                s.op = nullptr;
            }
        }
        in_flight_ = 0;
        pending_cancels_.clear();
    }
    wake_armed_ = false;
    // Descriptors whose close waited for ops queued before it: those ops have ended.
    for (int fd : closing_)
        ::close(fd);
    closing_.clear();

    // 4. Only now free: drop the resumptions and the frames of tasks that did not finish.
    //    Destroying a frame destroys its awaiters, which give up their timers and links.
    ready_.clear();
    running_.clear();
    //    A join handle still held does not keep the frame: the handle is told (abandoned()),
    //    and the frame goes with the rest, so no timer or awaiter of it outlives the stop.
    while (spawned_ != nullptr) {
        detail::spawned_promise_base& p = *spawned_;
        untrack(p);
        p.abandon();
    }
    remote_signalled_ = false;
    shutting_down_ = false;
}

} // namespace coil
