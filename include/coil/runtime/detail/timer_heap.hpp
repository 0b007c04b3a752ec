// SPDX-License-Identifier: MIT
/// @file
/// `detail::timer_heap`: the executor's deadlines and sleeps, one binary heap under one kernel
/// wait timeout.
///
/// Arming or cancelling a timer is a heap insertion or removal (O(log n), no system call and,
/// once the heap's array has grown to the most timers ever armed at once, no allocation). The
/// executor passes the earliest deadline as the timeout of its blocking `io_uring_enter`, and
/// fires every due timer at each loop turn.
#pragma once

#include <coil/io/detail/deadline.hpp>

#include <cassert>
#include <chrono>
#include <cstddef>
#include <vector>

namespace coil::detail {

class timer_heap;

using io::detail::deadline_after;

/// One timer. Lives in the awaiter that armed it; destroying it disarms it.
class timer_entry {
public:
    using clock = std::chrono::steady_clock;
    using fire_fn = void (*)(timer_entry&) noexcept;

    timer_entry() noexcept = default;
    timer_entry(const timer_entry&) = delete;
    timer_entry& operator=(const timer_entry&) = delete;
    ~timer_entry();

    bool armed() const noexcept { return heap_ != nullptr; }
    clock::time_point deadline() const noexcept { return deadline_; }

private:
    friend class timer_heap;
    clock::time_point deadline_{};
    fire_fn fire_ = nullptr;
    timer_heap* heap_ = nullptr;  // the heap holding it, or null when disarmed
    std::size_t index_ = 0;       // its position in heap_->entries_
};

/// A min-heap of timers by deadline. Executor thread only.
class timer_heap {
public:
    using clock = timer_entry::clock;

    timer_heap() = default;
    timer_heap(const timer_heap&) = delete;
    timer_heap& operator=(const timer_heap&) = delete;
    ~timer_heap()
    {
        for (timer_entry* e : entries_)
            e->heap_ = nullptr;
    }

    bool empty() const noexcept { return entries_.empty(); }
    std::size_t size() const noexcept { return entries_.size(); }

    /// The earliest deadline. Precondition: `!empty()`.
    clock::time_point earliest() const noexcept { return entries_.front()->deadline_; }

    /// Arms `e` to call `fire(e)` at `deadline`. Precondition: `e` is disarmed.
    void arm(timer_entry& e, clock::time_point deadline, timer_entry::fire_fn fire)
    {
        assert(!e.armed());
        e.deadline_ = deadline;
        e.fire_ = fire;
        e.heap_ = this;
        e.index_ = entries_.size();
        entries_.push_back(&e);
        sift_up(e.index_);
    }

    /// Disarms `e` if armed; it will not fire.
    void disarm(timer_entry& e) noexcept
    {
        if (e.heap_ != this)
            return;
        const std::size_t i = e.index_;
        e.heap_ = nullptr;
        timer_entry* last = entries_.back();
        entries_.pop_back();
        if (last == &e)
            return;
        entries_[i] = last;
        last->index_ = i;
        sift_down(i);
        sift_up(last->index_);
    }

    /// Fires (after disarming) every timer whose deadline is at or before `now`; returns how
    /// many. A fired timer's callback may arm or disarm timers.
    std::size_t fire_due(clock::time_point now) noexcept
    {
        std::size_t n = 0;
        while (!entries_.empty() && entries_.front()->deadline_ <= now) {
            timer_entry& e = *entries_.front();
            disarm(e);
            e.fire_(e);
            ++n;
        }
        return n;
    }

private:
    bool before(std::size_t a, std::size_t b) const noexcept
    {
        return entries_[a]->deadline_ < entries_[b]->deadline_;
    }
    void swap_entries(std::size_t a, std::size_t b) noexcept
    {
        std::swap(entries_[a], entries_[b]);
        entries_[a]->index_ = a;
        entries_[b]->index_ = b;
    }
    void sift_up(std::size_t i) noexcept
    {
        while (i > 0) {
            const std::size_t parent = (i - 1) / 2;
            if (!before(i, parent))
                return;
            swap_entries(i, parent);
            i = parent;
        }
    }
    void sift_down(std::size_t i) noexcept
    {
        for (;;) {
            const std::size_t left = 2 * i + 1;
            if (left >= entries_.size())
                return;
            std::size_t child = left;
            if (left + 1 < entries_.size() && before(left + 1, left))
                child = left + 1;
            if (!before(child, i))
                return;
            swap_entries(i, child);
            i = child;
        }
    }

    std::vector<timer_entry*> entries_; // a binary min-heap by deadline
};

inline timer_entry::~timer_entry()
{
    if (heap_ != nullptr)
        heap_->disarm(*this);
}

} // namespace coil::detail
