// SPDX-License-Identifier: MIT
/// @file
/// `detail::link<Tag>` and `detail::list<T, Tag>`: intrusive circular doubly linked lists.
///
/// The runtime keeps everything it will act on later (coroutines to resume, ops to cancel, ops
/// waiting for submission room) in lists of links embedded in the objects themselves, which
/// live in coroutine frames. A link unlinks itself when destroyed, so an object whose frame is
/// destroyed can never be found by the executor afterwards, and nothing is allocated to queue.
#pragma once

#include <cassert>
#include <cstddef>

namespace coil::detail {

/// A list membership. `Tag` tells the lists apart when one object sits in several.
/// Not copyable or movable: a list points at it.
template <class Tag>
class link {
public:
    link() noexcept = default;
    link(const link&) = delete;
    link& operator=(const link&) = delete;
    ~link() { unlink(); }

    /// Whether the object is in a list.
    bool linked() const noexcept { return next_ != nullptr; }

    /// Leaves whatever list holds it (no-op when in none). O(1); needs no list.
    void unlink() noexcept
    {
        if (next_ != nullptr) {
            prev_->next_ = next_;
            next_->prev_ = prev_;
            next_ = prev_ = nullptr;
        }
    }

private:
    template <class T, class U>
    friend class list;
    link* prev_ = nullptr;
    link* next_ = nullptr;
};

/// A list of `T`s through their `link<Tag>` base. Not copyable or movable (its elements point
/// at its head). Destroying a list unlinks every element.
template <class T, class Tag>
class list {
public:
    list() noexcept { head_.prev_ = head_.next_ = &head_; }
    list(const list&) = delete;
    list& operator=(const list&) = delete;
    ~list() { clear(); }

    bool empty() const noexcept { return head_.next_ == &head_; }

    /// Appends `item`. Precondition: it is in no list of this tag.
    void push_back(T& item) noexcept
    {
        link<Tag>& l = item;
        assert(!l.linked());
        l.prev_ = head_.prev_;
        l.next_ = &head_;
        head_.prev_->next_ = &l;
        head_.prev_ = &l;
    }

    /// The first element. Precondition: `!empty()`.
    T& front() noexcept { return static_cast<T&>(*head_.next_); }

    /// Unlinks and returns the first element, or null when empty.
    T* pop_front() noexcept
    {
        if (empty())
            return nullptr;
        T& item = front();
        static_cast<link<Tag>&>(item).unlink();
        return &item;
    }

    /// Moves every element of `other` to the end of this list, in order. O(1).
    void splice_back(list& other) noexcept
    {
        if (other.empty())
            return;
        link<Tag>* first = other.head_.next_;
        link<Tag>* last = other.head_.prev_;
        other.head_.prev_ = other.head_.next_ = &other.head_;
        first->prev_ = head_.prev_;
        last->next_ = &head_;
        head_.prev_->next_ = first;
        head_.prev_ = last;
    }

    /// Unlinks every element.
    void clear() noexcept
    {
        while (!empty())
            head_.next_->unlink();
    }

    /// Calls `fn(T&)` for each element; `fn` may unlink the element it is given (and only it).
    template <class F>
    void for_each(F&& fn)
    {
        for (link<Tag>* l = head_.next_; l != &head_;) {
            link<Tag>* next = l->next_;
            fn(static_cast<T&>(*l));
            l = next;
        }
    }

    /// Counts the elements. O(n): for tests and diagnostics.
    std::size_t size() const noexcept
    {
        std::size_t n = 0;
        for (const link<Tag>* l = head_.next_; l != &head_; l = l->next_)
            ++n;
        return n;
    }

private:
    link<Tag> head_;
};

} // namespace coil::detail
