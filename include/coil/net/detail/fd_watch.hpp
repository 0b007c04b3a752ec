// SPDX-License-Identifier: MIT
/// @file
/// `fd_watch` and `fd_watchers`: how a socket tells the streams made from it that it closed.
///
/// A stream keeps its socket's descriptor number to arm its op again later: after a pause,
/// after its buffer pool ran dry, after a transient accept error. Once the socket is closed,
/// that number may already name another file (the next accept or socket gets the lowest free
/// number), and a receive armed on it would take another connection's bytes. So the socket
/// keeps a list of the ops made from it, and closing it (`close()`, destruction, assignment
/// over it) marks each one closed, never to be armed again; a stream parked in a pool's queue
/// is taken out and ends at once instead of waiting for a buffer. Both ends are movable (a
/// socket and a stream not yet started move), and each fixes the list up when it moves.
/// Everything here runs on the executor's thread, as the sockets and streams do.
#pragma once

#include <coil/runtime/detail/rearm_waiter.hpp>

#include <utility>

namespace coil::detail {

class fd_watchers;

/// An op's membership in its socket's `fd_watchers`. Not copyable; moving hands the
/// membership over.
class fd_watch {
public:
    fd_watch() noexcept = default;
    fd_watch(const fd_watch&) = delete;
    fd_watch& operator=(const fd_watch&) = delete;
    fd_watch(fd_watch&& other) noexcept
        : parked_(std::exchange(other.parked_, nullptr)), closed_(other.closed_)
    {
        take_place_of(other);
    }
    fd_watch& operator=(fd_watch&&) = delete;
    ~fd_watch() { unlink(); }

    /// Whether the socket this op was made from has been closed (its descriptor number may
    /// name another file by now).
    bool closed() const noexcept { return closed_; }

    /// Records `waiter` as the stream's place in a resource's queue, so that a close can take
    /// the stream out of it. Called each time the stream parks.
    void parked_at(rearm_waiter& waiter) noexcept { parked_ = &waiter; }

private:
    friend class fd_watchers;

    bool linked() const noexcept { return prev_ != nullptr; }
    void unlink() noexcept
    {
        if (prev_ == nullptr)
            return;
        *prev_ = next_;
        if (next_ != nullptr)
            next_->prev_ = prev_;
        next_ = nullptr;
        prev_ = nullptr;
    }
    void take_place_of(fd_watch& other) noexcept
    {
        if (!other.linked())
            return;
        next_ = std::exchange(other.next_, nullptr);
        prev_ = std::exchange(other.prev_, nullptr);
        *prev_ = this;
        if (next_ != nullptr)
            next_->prev_ = &next_;
    }

    fd_watch* next_ = nullptr;
    fd_watch** prev_ = nullptr; // the pointer to this one: the list's head or the previous next_
    rearm_waiter* parked_ = nullptr;
    bool closed_ = false;
};

/// The ops made from one descriptor. Moves with the descriptor.
class fd_watchers {
public:
    fd_watchers() noexcept = default;
    fd_watchers(const fd_watchers&) = delete;
    fd_watchers& operator=(const fd_watchers&) = delete;
    fd_watchers(fd_watchers&& other) noexcept { take(other); }
    fd_watchers& operator=(fd_watchers&&) = delete;
    ~fd_watchers() { detach(); }

    /// Adds `w` (in no list yet, and not closed).
    void add(fd_watch& w) noexcept
    {
        w.next_ = head_;
        if (head_ != nullptr)
            head_->prev_ = &w.next_;
        w.prev_ = &head_;
        head_ = &w;
    }

    /// Takes over `other`'s ops; this list must be empty.
    void take(fd_watchers& other) noexcept
    {
        head_ = std::exchange(other.head_, nullptr);
        if (head_ != nullptr)
            head_->prev_ = &head_;
    }

    /// The descriptor is being closed: marks every op closed and unlinks it; a stream parked
    /// in a resource's queue leaves it and is told it may go on, which ends it (its op will
    /// not arm on a closed socket).
    void closed() noexcept
    {
        while (head_ != nullptr) {
            fd_watch& w = *head_;
            w.unlink();
            w.closed_ = true;
            if (rearm_waiter* waiter = std::exchange(w.parked_, nullptr);
                waiter != nullptr && waiter->linked()) {
                waiter->unlink();
                waiter->ready(*waiter);
            }
        }
    }

    /// The descriptor changes hands without being closed (`release()`): unlinks every op,
    /// leaving them as they are.
    void detach() noexcept
    {
        while (head_ != nullptr)
            head_->unlink();
    }

private:
    fd_watch* head_ = nullptr;
};

} // namespace coil::detail
