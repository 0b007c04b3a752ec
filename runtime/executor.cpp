// SPDX-License-Identifier: MIT
// The executor's loop: admission of ops under the CQ cap, the slot table that keys
// user_data, completion dispatch, cancellation, cross-thread wake-ups and shutdown.
// docs/lifetimes.md states the rules enforced here.

#include <coil/runtime/executor.hpp>
#include <coil/runtime/operation.hpp>

#include <sys/eventfd.h>
#include <unistd.h>

#include <cassert>
#include <cerrno>
#include <cstdio>
#include <exception>

namespace coil {
namespace {

thread_local executor* current_executor = nullptr;

// user_data (executor.hpp's encode): a slot's generation changes each time an op leaves it,
// so a completion (or a cancel) that names an earlier occupant is recognised as stale instead
// of being delivered to the wrong op.

// The executor needs the eventfd read, and room for at least one op and one cancel.
constexpr unsigned min_cq_entries = 8;

} // namespace

namespace detail {

current_executor_scope::current_executor_scope(executor* ex) noexcept
    : previous_(std::exchange(current_executor, ex))
{
}

current_executor_scope::~current_executor_scope() { current_executor = previous_; }

void spawned_promise_base::on_finished() noexcept
{
    finished_ = true;
    owner_->untrack(*this);
    if (joiner_)
        owner_->schedule(joiner_);
    if (detached_ && exception_ && !observed_)
        owner_->report_unhandled(exception_, "a detached task");
    release();
}

void spawned_promise_base::detach() noexcept
{
    detached_ = true;
    release();
}

} // namespace detail

executor* executor::current() noexcept { return current_executor; }

std::size_t executor::in_flight() const noexcept
{
    std::size_t n = 0;
    for (const slot& s : slots_)
        n += s.op != nullptr;
    return n;
}

namespace detail {

void notify_stop_requested(executor* ex) noexcept
{
    if (ex != nullptr)
        ex->notify_stop();
}

executor* running_executor() noexcept { return current_executor; }

} // namespace detail

executor::executor(const executor_options& options)
    : thread_(std::this_thread::get_id()), ring_(options.entries, options.ring)
{
    const unsigned cq = ring_.cq_entries();
    if (cq < min_cq_entries)
        throw std::system_error(EINVAL, std::generic_category(),
                                "coil: an executor's ring needs at least 8 completion queue "
                                "entries (4 submission entries); got " +
                                    std::to_string(cq));
    // A blocking eventfd: io_uring then waits for it to become readable (an O_NONBLOCK one
    // would make the read fail with EAGAIN at once).
    wake_fd_ = ::eventfd(0, EFD_CLOEXEC);
    if (wake_fd_ < 0)
        throw std::system_error(errno, std::generic_category(),
                                "coil: the executor could not create its wake-up eventfd");

    // One CQ entry for the wake-up read, the rest of the reserve for cancels.
    cqe_reserve_ = 1 + std::max(1U, cq / 16);
    op_capacity_ = cq - cqe_reserve_;
    // Slot indices take 24 bits of user_data; the kernel caps a CQ at 64 Ki entries.
    assert(op_capacity_ < slot_mask);
    slots_.resize(op_capacity_ + 1);
    op_cqe_limit_ = cq - cqe_reserve_;
    for (std::size_t i = 0; i < op_capacity_; ++i) // slot 0 first
        slots_[i].next_free = static_cast<std::uint32_t>(i + 1);
    free_head_ = 0;
    update_gate();
    pending_cancels_.reserve(op_capacity_);
    ready_.reserve(256);
    running_.reserve(256);
}

executor::~executor()
{
    detail::current_executor_scope scope(this);
    shutdown();
    // Nothing is in flight now: the wake-up read was cancelled and reaped.
    ::close(wake_fd_);
}

void executor::schedule(std::coroutine_handle<> h)
{
    assert(on_executor_thread());
    ready_.push_back(h);
}

void executor::track(detail::spawned_promise_base& p) noexcept
{
    p.owner_ = this;
    p.prev_ = nullptr;
    p.next_ = spawned_;
    if (spawned_ != nullptr)
        spawned_->prev_ = &p;
    spawned_ = &p;
}

void executor::untrack(detail::spawned_promise_base& p) noexcept
{
    if (p.prev_ != nullptr)
        p.prev_->next_ = p.next_;
    else
        spawned_ = p.next_;
    if (p.next_ != nullptr)
        p.next_->prev_ = p.prev_;
    p.prev_ = p.next_ = nullptr;
}

// --- the loop -------------------------------------------------------------------------------

void executor::run_loop()
{
    assert(on_executor_thread());
    while (spawned_ != nullptr && !stop_requested_.load(std::memory_order_relaxed)) {
        run_ready();
        if (remote_work_.load(std::memory_order_relaxed))
            process_remote();
        if (spawned_ == nullptr)
            break;
        // A stop requested during this turn must reach the kernel before we block on it.
        if (stops_pending_.load(std::memory_order_relaxed))
            cancel_stopped_ops();
        flush_and_wait(ready_.empty());
    }
    if (stop_requested_.exchange(false, std::memory_order_relaxed))
        shutdown();
}

void executor::run_ready()
{
    // Resume the batch that is ready now; what they make ready runs in the next batch, after
    // the ring has been given their SQEs.
    running_.swap(ready_);
    for (std::coroutine_handle<> h : running_)
        h.resume();
    running_.clear();
}

void executor::flush_and_wait(bool block)
{
    if (block) {
        if (!wake_armed_)
            arm_wakeup();
        // One io_uring_enter: submit everything queued and wait for a completion.
        auto waited = ring_.wait(1);
        if (!waited)
            throw std::system_error(waited.error(), "coil: waiting on the ring failed");
    } else if (ring_.unsubmitted() != 0) {
        auto submitted = ring_.submit();
        if (!submitted)
            throw std::system_error(submitted.error(), "coil: submitting to the ring failed");
    }
    reap_all<true>();
}

// ResumeInline: the loop proper resumes each completed op's coroutine on the spot, so that
// its next SQE is prepared while its data is still in cache. Everywhere else (draining for
// abandon() or shutdown) the coroutines are queued, or dropped at shutdown. A coroutine
// resumed inline may reap again through abandon(): the ring's for_each_completion allows that.
template <bool ResumeInline>
void executor::reap_all() noexcept
{
    ring_.for_each_completion([this](const io::completion& c) __attribute__((always_inline)) {
        dispatch<ResumeInline>(c);
    });
    if (!pending_cancels_.empty())
        submit_pending_cancels();
    if (waiting_head_ != nullptr)
        admit_waiting();
}

// Inlined into reap_all(): the per-completion path. The low word of user_data is
// kind << 24 | slot, so it is below op_capacity_ exactly for an op's own completion.
template <bool ResumeInline>
[[gnu::always_inline]] inline void executor::dispatch(const io::completion& c) noexcept
{
    const auto low = static_cast<std::uint32_t>(c.user_data);
    if (low < op_capacity_) [[likely]] {
        slot& s = slots_[low];
        if (s.generation == static_cast<std::uint32_t>(c.user_data >> 32) && s.op != nullptr)
            [[likely]] {
            detail::op_base& op = *s.op;
            op.result = c.result;
            if (!c.more() && --op.pending == 0)
                finish_op<ResumeInline>(op, low);
            return;
        }
        ++stats_.stale_completions;
        return;
    }
    dispatch_other<ResumeInline>(c);
}

// Completions other than an op's own: its linked timeout, cancels, the wake-up read.
template <bool ResumeInline>
void executor::dispatch_other(const io::completion& c) noexcept
{
    const auto index = static_cast<std::uint32_t>(c.user_data & slot_mask);
    const auto kind = static_cast<cqe_kind>((c.user_data >> slot_bits) & 0xff);
    switch (kind) {
    case cqe_kind::wake:
        wake_armed_ = false;
        remote_work_.store(true, std::memory_order_relaxed); // look at posted work next turn
        return;
    case cqe_kind::cancel:
        return; // says only whether the cancel found its op; the op's own CQE follows
    case cqe_kind::link_timeout:
        if (index < op_capacity_ &&
            slots_[index].generation == static_cast<std::uint32_t>(c.user_data >> 32) &&
            slots_[index].op != nullptr) {
            detail::op_base& op = *slots_[index].op;
            op.timeout_result = c.result;
            if (--op.pending == 0)
                finish_op<ResumeInline>(op, index);
            return;
        }
        break;
    case cqe_kind::op: // an op kind with an index beyond the table
        break;
    }
    ++stats_.stale_completions;
}

template <bool ResumeInline>
[[gnu::always_inline]] inline void executor::finish_op(detail::op_base& op,
                                                       std::uint32_t index) noexcept
{
    slot& s = slots_[index];
    s.op = nullptr;
    ++s.generation;
    s.next_free = free_head_;
    free_head_ = index;
    if constexpr (ResumeInline) {
        // An abandoned op (null waiter) is only ever drained by abandon() itself, which
        // reaps without resuming. The coroutine's first act is await_resume(), which marks
        // the op idle: no need to mark it done first.
        assert(op.waiter);
        op.waiter.resume();
    } else {
        op.state = detail::op_state::done;
        if (op.waiter && !shutting_down_)
            ready_.push_back(op.waiter);
    }
}

// --- starting ops ---------------------------------------------------------------------------

[[gnu::always_inline]] inline bool executor::has_room(unsigned cqes) const noexcept
{
    // Room in the CQ implies a free slot: every op holding a slot is outstanding in the ring,
    // and op_cqe_limit_ == op_capacity_.
    return ring_.outstanding() + cqes <= op_cqe_limit_;
}

bool executor::start(detail::op_base& op)
{
    assert(on_executor_thread());
    // An awaiter may be awaited again once done: forget its earlier run.
    op.flags &= detail::op_base::has_deadline;
    op.cancel_requested = false;
    if (shutting_down_) {
        op.result = -ECANCELED;
        op.state = detail::op_state::done;
        return false;
    }
    const unsigned cqes = op.timed() ? 2 : 1;
    if (waiting_head_ != nullptr || !has_room(cqes) || !submit_op(op)) {
        enqueue_waiting(op); // in order behind the ops already waiting
        return true;
    }
    return op.state != detail::op_state::done;
}

void executor::enqueue_waiting(detail::op_base& op) noexcept
{
    op.next = nullptr;
    if (waiting_tail_ != nullptr)
        waiting_tail_->next = &op;
    else
        waiting_head_ = &op;
    waiting_tail_ = &op;
    op.state = detail::op_state::waiting;
    ++stats_.ops_deferred;
    update_gate(); // closed: ops waiting go first
}

// The ring's outstanding limit is the gate of the inline start(): op_cqe_limit_ (the CQ less
// the reserve), or 0 while ops wait in the FIFO or the executor shuts down, so that the ring
// itself refuses an op that must take the general path. admit_waiting() opens it for the ops
// it admits; cancels and the wake-up read lift it to use the reserve (add_in_reserve).
void executor::update_gate() noexcept
{
    ring_.set_outstanding_limit(waiting_head_ == nullptr && !shutting_down_ ? op_cqe_limit_ : 0);
}

namespace {

// Queues one SQE with the ring's outstanding limit lifted to the whole CQ, for the ops that
// may use the entries the executor keeps in reserve; the gate is restored after.
template <class Add>
std::error_code add_in_reserve(io::ring& ring, Add&& add) noexcept
{
    const unsigned gate = ring.outstanding_limit();
    ring.set_outstanding_limit(ring.cq_entries());
    std::error_code ec = add();
    ring.set_outstanding_limit(gate);
    return ec;
}

} // namespace

// Hands `op` to the ring; has_room() said the CQ can take it. Returns false, touching
// nothing, when the SQ has no room even after a flush (the kernel refused to take more): the
// op then keeps waiting, so an awaiter never sees no_space, and an op with a deadline is never
// queued without its linked timeout. Otherwise the op is in flight, or done with a setup error.
bool executor::submit_op(detail::op_base& op) noexcept
{
    const unsigned sqes = op.timed() ? 2 : 1;
    if (op.timed() && !ring_.supports(io::opcode::link_timeout)) {
        op.fail_setup(make_error_code(io::errc::unsupported_operation));
        return true;
    }
    if (ring_.sq_space_left() < sqes) {
        (void)ring_.submit(); // an error leaves the SQEs queued; the loop submits them again
        if (ring_.sq_space_left() < sqes)
            return false;
    }

    assert(free_head_ < op_capacity_);
    const std::uint32_t index = free_head_;
    slot& s = slots_[index];
    const std::uint64_t user_data = encode(index, s.generation, cqe_kind::op);
    std::error_code ec =
        op.prepare(op, ring_, user_data,
                   op.timed() ? io::sqe_flags::link : io::sqe_flags::none);
    if (!ec && op.timed()) {
        [[maybe_unused]] std::error_code timeout_ec = ring_.add_link_timeout(
            op.deadline, encode(index, s.generation, cqe_kind::link_timeout));
        assert(!timeout_ec && "room and opcode were checked: the linked timeout must queue");
    }
    if (ec) {
        // The opcode is unsupported (room was checked above): the op ends here, never having
        // reached the kernel. A deadline's timeout is queued only after this succeeded, and
        // cannot fail: its opcode and its SQE were both checked.
        op.fail_setup(ec);
        return true;
    }
    free_head_ = s.next_free;
    s.op = &op;
    op.slot = index;
    op.pending = static_cast<std::uint8_t>(sqes);
    op.state = detail::op_state::in_flight;
    ++stats_.ops_started;
    return true;
}

void executor::admit_waiting() noexcept
{
    // The gate is closed while ops wait; open it for the ones admitted here.
    if (!shutting_down_)
        ring_.set_outstanding_limit(op_cqe_limit_);
    while (waiting_head_ != nullptr) {
        detail::op_base& op = *waiting_head_;
        if (!has_room(op.timed() ? 2 : 1) || !submit_op(op))
            break;
        waiting_head_ = op.next;
        if (waiting_head_ == nullptr)
            waiting_tail_ = nullptr;
        op.next = nullptr;
        if (op.state == detail::op_state::done && op.waiter && !shutting_down_)
            ready_.push_back(op.waiter);
    }
    update_gate();
}

std::uint32_t executor::unlink_waiting(detail::op_base& op) noexcept
{
    detail::op_base* prev = nullptr;
    for (detail::op_base* p = waiting_head_; p != nullptr; prev = p, p = p->next) {
        if (p != &op)
            continue;
        (prev != nullptr ? prev->next : waiting_head_) = op.next;
        if (waiting_tail_ == &op)
            waiting_tail_ = prev;
        op.next = nullptr;
        update_gate();
        return 1;
    }
    return 0;
}

// --- cancellation ---------------------------------------------------------------------------

bool executor::submit_cancel(std::uint32_t index) noexcept
{
    // Cancels may use the reserve, but never more than the CQ holds.
    if (ring_.outstanding() + 1 > ring_.cq_entries())
        return false;
    if (ring_.sq_space_left() < 1)
        (void)ring_.submit();
    const slot& s = slots_[index];
    if (add_in_reserve(ring_, [&] {
            return ring_.add_cancel(encode(index, s.generation, cqe_kind::op),
                                    encode(index, s.generation, cqe_kind::cancel));
        }))
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
        if (!submit_cancel(index))
            pending_cancels_[kept++] = target;
    }
    pending_cancels_.resize(kept);
}

void executor::cancel(detail::op_base& op) noexcept
{
    assert(on_executor_thread());
    switch (op.state) {
    case detail::op_state::idle:
    case detail::op_state::done:
        return;
    case detail::op_state::waiting:
        // Never reached the kernel: it ends now.
        unlink_waiting(op);
        op.result = -ECANCELED;
        op.state = detail::op_state::done;
        if (op.waiter && !shutting_down_)
            ready_.push_back(op.waiter);
        return;
    case detail::op_state::in_flight:
        if (op.cancel_requested)
            return;
        op.cancel_requested = true;
        if (!submit_cancel(op.slot))
            pending_cancels_.push_back(
                encode(op.slot, slots_[op.slot].generation, cqe_kind::op));
        return;
    }
}

void executor::notify_stop() noexcept
{
    stops_pending_.store(true, std::memory_order_release);
    if (on_executor_thread())
        bump_stop_epoch(); // ops started from now on read their tokens again
    else if (!remote_work_.exchange(true, std::memory_order_release))
        wake(); // it may be blocked in the kernel
}

void executor::bump_stop_epoch() noexcept
{
    if (++stop_epoch_ == 0) // 0 is what a promise that never looked holds
        stop_epoch_ = 1;
}

void executor::cancel_stopped_ops() noexcept
{
    // One pass over the slot table and the waiting FIFO per batch of stop requests: cheaper
    // than registering a stop callback (several atomic read-modify-writes) for every op.
    if (!stops_pending_.exchange(false, std::memory_order_acquire))
        return;
    // Ops started after this search read their tokens again; the ones started before it, in
    // the current epoch, without reading them are found below.
    bump_stop_epoch();
    auto stopped = [](const detail::op_base& op) {
        return op.stop_token != nullptr && !op.cancel_requested && op.stop_token->stop_requested();
    };
    for (slot& s : slots_)
        if (s.op != nullptr && stopped(*s.op))
            cancel(*s.op);
    for (detail::op_base* p = waiting_head_; p != nullptr;) {
        detail::op_base* next = p->next;
        if (stopped(*p))
            cancel(*p);
        p = next;
    }
}

void executor::abandon(detail::op_base& op) noexcept
{
    // The awaiter is being destroyed with its op still queued or in flight (its coroutine
    // frame is going away). Its memory must outlive the kernel's use of it: cancel, then
    // process completions until this op's last one has been reaped. Other ops' completions
    // are dispatched as usual; this op's coroutine is never resumed.
    assert(on_executor_thread());
    op.waiter = nullptr;
    if (op.state == detail::op_state::waiting) {
        unlink_waiting(op);
        op.state = detail::op_state::done;
        return;
    }
    cancel(op);
    while (op.state != detail::op_state::done)
        drain_once("waiting for a cancelled op");
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

// --- other threads --------------------------------------------------------------------------

void executor::wake() noexcept
{
    const std::uint64_t one = 1;
    // Can only fail if the counter would overflow, which needs 2^64 - 1 unread wake-ups.
    [[maybe_unused]] auto written = ::write(wake_fd_, &one, sizeof(one));
}

void executor::post(std::function<void()> fn)
{
    {
        std::lock_guard lock(posted_mutex_);
        posted_.push_back(std::move(fn));
    }
    if (!remote_work_.exchange(true, std::memory_order_release))
        wake();
}

void executor::stop() noexcept
{
    stop_requested_.store(true, std::memory_order_relaxed);
    wake();
}

void executor::arm_wakeup() noexcept
{
    // The reserve keeps a CQ entry for this read, so it only fails if the SQ is full.
    if (ring_.sq_space_left() < 1)
        (void)ring_.submit();
    auto buffer = std::as_writable_bytes(std::span(&wake_buffer_, 1));
    if (!add_in_reserve(ring_, [&] {
            return ring_.add_read(wake_fd_, buffer, current_position_,
                                  encode(0, 0, cqe_kind::wake));
        }))
        wake_armed_ = true;
}

void executor::process_remote()
{
    if (!remote_work_.exchange(false, std::memory_order_acquire))
        return;
    {
        std::lock_guard lock(posted_mutex_);
        posted_running_.swap(posted_);
    }
    // A posted function is fire-and-forget, like a detached task: an exception it throws is
    // reported and counted, and neither stops the loop nor keeps the others from running.
    for (auto& fn : posted_running_) {
        try {
            fn();
        } catch (...) {
            report_unhandled(std::current_exception(), "a posted function");
        }
    }
    posted_running_.clear();
}

void executor::report_unhandled(std::exception_ptr e, const char* what) noexcept
{
    ++stats_.unhandled_exceptions;
    try {
        std::rethrow_exception(std::move(e));
    } catch (const std::exception& error) {
        std::fprintf(stderr, "coil: %s ended with an exception: %s\n", what, error.what());
    } catch (...) {
        std::fprintf(stderr, "coil: %s ended with an unknown exception\n", what);
    }
}

// --- shutdown -------------------------------------------------------------------------------

void executor::shutdown() noexcept
{
    // 1. Take no new work; ops that never reached the kernel end now.
    shutting_down_ = true;
    update_gate();
    while (waiting_head_ != nullptr) {
        detail::op_base& op = *waiting_head_;
        waiting_head_ = op.next;
        op.next = nullptr;
        op.result = -ECANCELED;
        op.state = detail::op_state::done;
    }
    waiting_tail_ = nullptr;

    // 2. Cancel everything in flight. The wake-up read is completed by waking it, which
    //    needs no SQE and no CQ room.
    for (slot& s : slots_)
        if (s.op != nullptr)
            cancel(*s.op);
    if (wake_armed_)
        wake();

    // 3. Drain until the kernel holds nothing of ours.
    while (ring_.outstanding() != 0)
        drain_once("draining the ring at shutdown");

    // 4. Only now free: drop the resumptions and the frames of tasks that did not finish.
    ready_.clear();
    while (spawned_ != nullptr) {
        detail::spawned_promise_base& p = *spawned_;
        untrack(p);
        p.release();
    }
    shutting_down_ = false;
    update_gate();
}

} // namespace coil
