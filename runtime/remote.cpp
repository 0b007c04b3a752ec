// SPDX-License-Identifier: MIT
// Work that reaches the executor from other threads: post(), stop(), and stop requests on
// scopes made from another thread.
//
// The protocol, in one place
// --------------------------
// Everything another thread hands to the executor goes into state guarded by one mutex,
// `remote_mutex_`: the posted functions, the list of stop scopes stopped from that thread, and
// the stop flag. No atomic variable takes part; the mutex orders every access, so there is no
// memory-order argument to make.
//
// The only signal is the eventfd `wake_fd_`. The executor keeps one read of it in flight in its
// ring at (almost) all times: armed before every `io_uring_enter` that may block, re-armed at
// the first loop turn after it completes. A producer, holding the mutex, adds its work and sets
// `wake_owed_` if it was clear; if it was the one to set it, it writes the eventfd, still
// holding the mutex. (The executor may take the work without that write, finish and be
// destroyed while the producer is on its way to the write; ~executor closes the eventfd under
// the mutex, so the write never lands in a descriptor that reused the number.) The executor,
// when the read completes (`remote_signalled_`), takes the mutex, moves every piece of work out
// and clears `wake_owed_` in the same critical section, then runs the work without the lock.
//
// Why no request is lost: work added before the executor's critical section is taken by it.
// Work added after it finds `wake_owed_` clear, so its producer writes the eventfd; the counter
// stays non-zero until a read consumes it, so the executor's armed read (or the next one it
// arms) completes, and the executor takes the mutex again. Why the executor never sleeps with
// work queued: it blocks only in `io_uring_enter` with the read armed. Extra eventfd writes
// (a producer that wrote just before the executor cleared `wake_owed_`) cost one spurious loop
// turn, nothing more.
//
// After `run()` has seen every task end it takes the mutex once more, without waiting for the
// eventfd, so that functions posted meanwhile still run before it returns.
//
// Lifetimes: a stop scope lives on the executor's thread; its destructor first destroys its
// `std::stop_callback` (which waits for a callback running on another thread to return), then
// unlinks itself from `remote_stops_` under the mutex, so the executor never reads a scope that
// is gone.

#include <coil/runtime/executor.hpp>

#include <unistd.h>

#include <cerrno>
#include <cstdio>

namespace coil {

void executor::wake() noexcept
{
    const std::uint64_t one = 1;
    // Can only fail if the counter would overflow, which needs 2^64 - 2 unread wake-ups.
    [[maybe_unused]] auto written = ::write(wake_fd_, &one, sizeof(one));
}

void executor::arm_wakeup() noexcept
{
    auto buffer = std::as_writable_bytes(std::span(&wake_buffer_, 1));
    // A full SQ is handed to the kernel by add_read itself; no_space means it took nothing.
    std::error_code ec = ring_.add_read(wake_fd_, buffer, current_position_,
                                        encode(0, 0, cqe_kind::wake));
    wake_armed_ = !ec; // else tried again before the next blocking wait
}

void executor::post(std::function<void()> fn)
{
    std::lock_guard lock(remote_mutex_);
    posted_.push_back(std::move(fn));
    if (!std::exchange(wake_owed_, true))
        wake();
}

void executor::unregister_file_from_any_thread(std::uint32_t slot)
{
    if (on_executor_thread()) {
        unregister_file(slot);
        return;
    }
    std::lock_guard lock(remote_mutex_);
    released_file_slots_.push_back(slot);
    if (!std::exchange(wake_owed_, true))
        wake();
}

void executor::stop() noexcept
{
    if (on_executor_thread()) {
        if (running_loop_)
            stop_now_ = true;
        return;
    }
    std::lock_guard lock(remote_mutex_);
    if (accepting_remote_stop_) {
        remote_stop_ = true;
        if (!std::exchange(wake_owed_, true))
            wake();
    }
}

void executor::queue_remote_stop(detail::stop_scope& scope) noexcept
{
    std::lock_guard lock(remote_mutex_);
    if (scope.remote_queued_)
        return;
    scope.remote_queued_ = true;
    scope.remote_next_ = remote_stops_;
    remote_stops_ = &scope;
    if (!std::exchange(wake_owed_, true))
        wake();
}

void executor::forget_remote_stop(detail::stop_scope& scope) noexcept
{
    std::lock_guard lock(remote_mutex_);
    if (!scope.remote_queued_)
        return;
    for (detail::stop_scope** p = &remote_stops_; *p != nullptr; p = &(*p)->remote_next_) {
        if (*p == &scope) {
            *p = scope.remote_next_;
            break;
        }
    }
    scope.remote_queued_ = false;
    scope.remote_next_ = nullptr;
}

// Moves the remote work out under the mutex and runs it. Returns whether there was any.
bool executor::take_remote_work()
{
    bool stop = false;
    {
        std::lock_guard lock(remote_mutex_);
        posted_running_.swap(posted_);
        released_running_.swap(released_file_slots_);
        // Copied out: once unqueued, another thread may queue a scope again (relinking it).
        for (detail::stop_scope* s = std::exchange(remote_stops_, nullptr); s != nullptr;
             s = std::exchange(s->remote_next_, nullptr)) {
            s->remote_queued_ = false;
            stopped_running_.push_back(s);
        }
        stop = std::exchange(remote_stop_, false);
        wake_owed_ = false;
    }
    const bool any = !stopped_running_.empty() || stop || !posted_running_.empty() ||
                     !released_running_.empty();
    for (std::uint32_t slot : released_running_)
        unregister_file(slot);
    released_running_.clear();
    // Scopes first: nothing runs in between that could destroy one (scopes are destroyed on
    // this thread only). Each cancel only queues resumptions.
    for (detail::stop_scope* s : stopped_running_)
        s->cancel_pending();
    stopped_running_.clear();
    if (stop)
        stop_now_ = true;
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
    return any;
}

void executor::run_remote_work()
{
    remote_signalled_ = false;
    take_remote_work();
}

} // namespace coil
