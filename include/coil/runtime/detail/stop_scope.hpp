// SPDX-License-Identifier: MIT
/// @file
/// `detail::stop_scope`: the set of pending operations one stop token can cancel.
///
/// A stop request costs work proportional to what it stops. Every coroutine runs under at
/// most one scope (its own `with_stop_token` token, its child group's, or its awaiter's); each
/// op or sleep it awaits links itself into that scope while pending. When the scope's token is
/// stopped, a `std::stop_callback` (one per scope, not one per op) cancels exactly the entries
/// in that scope's list: at once when the request comes from the executor's thread, and at the
/// executor's next loop turn when it comes from another thread (docs/lifetimes.md).
#pragma once

#include <coil/runtime/detail/list.hpp>

#include <optional>
#include <stop_token>

namespace coil {
class executor;
} // namespace coil

namespace coil::detail {

struct cancel_tag;

/// Something pending that a stop request can cancel: an op, a sleep. Lives in an awaiter.
class cancellable : public link<cancel_tag> {
public:
    using cancel_fn = void (*)(cancellable&) noexcept;
    /// Cancels the entry. Called on the executor's thread, after the entry left its scope.
    cancel_fn cancel = nullptr;
    /// Called, if set, when the scope is destroyed with the entry still linked: an entry that
    /// outlives the coroutine that linked it (a stream whose consumer ended while its op stays
    /// armed) forgets the scope here.
    cancel_fn scope_gone = nullptr;
};

class stop_scope;

/// Tells `ex` that `scope`'s token was stopped. Safe from any thread; defined in
/// runtime/cancellation.cpp.
void notify_scope_stopped(executor& ex, stop_scope& scope) noexcept;

/// The pending entries of one stop token on one executor. Created and destroyed on the
/// executor's thread; not movable (entries and the executor point at it).
class stop_scope {
public:
    stop_scope(executor& ex, std::stop_token token) : token_(std::move(token)), executor_(&ex)
    {
        if (token_.stop_possible())
            callback_.emplace(token_, on_stop{this});
    }
    stop_scope(const stop_scope&) = delete;
    stop_scope& operator=(const stop_scope&) = delete;
    ~stop_scope(); // runtime/cancellation.cpp

    bool stop_requested() const noexcept { return token_.stop_requested(); }
    const std::stop_token& token() const noexcept { return token_; }
    executor& owner() const noexcept { return *executor_; }

    /// Links a pending entry; it unlinks itself when it completes or is destroyed.
    void add(cancellable& entry) noexcept { pending_.push_back(entry); }

    /// Cancels every entry now linked. Executor thread only.
    void cancel_pending() noexcept
    {
        while (cancellable* entry = pending_.pop_front())
            entry->cancel(*entry);
    }

    /// Entries linked now (O(n); for tests).
    std::size_t pending() const noexcept { return pending_.size(); }

private:
    friend class coil::executor;
    struct on_stop {
        stop_scope* scope;
        void operator()() const noexcept { notify_scope_stopped(*scope->executor_, *scope); }
    };

    std::stop_token token_;
    executor* executor_;
    list<cancellable, cancel_tag> pending_; // executor thread only
    // Guarded by the executor's remote mutex: queued for the executor after a stop request
    // from another thread.
    stop_scope* remote_next_ = nullptr;
    bool remote_queued_ = false;
    // Last member: destroyed first, so no callback runs into a half-destroyed scope.
    std::optional<std::stop_callback<on_stop>> callback_;
};

} // namespace coil::detail
