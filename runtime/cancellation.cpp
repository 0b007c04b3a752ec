// SPDX-License-Identifier: MIT
// Stop scopes: a stop request cancels the pending entries of the scope whose token was
// stopped, and nothing else (docs/lifetimes.md, "Cancellation").

#include <coil/runtime/detail/stop_scope.hpp>
#include <coil/runtime/executor.hpp>

namespace coil::detail {

stop_scope::~stop_scope()
{
    // Destroying the callback waits for one running on another thread to return; after that
    // no thread can queue this scope, and it is unlinked from the executor's queue if it was.
    callback_.reset();
    executor_->forget_remote_stop(*this);
    while (cancellable* entry = pending_.pop_front())
        if (entry->scope_gone != nullptr)
            entry->scope_gone(*entry);
}

void notify_scope_stopped(executor& ex, stop_scope& scope) noexcept
{
    if (ex.on_executor_thread())
        scope.cancel_pending(); // at once: each cancel queues an SQE or a resumption
    else
        ex.queue_remote_stop(scope);
}

} // namespace coil::detail
