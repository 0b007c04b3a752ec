// SPDX-License-Identifier: MIT
/// @file
/// `detail::resumption`: a coroutine queued to be resumed, as a link its owner can revoke.
#pragma once

#include <coil/runtime/detail/list.hpp>

#include <coroutine>

namespace coil::detail {

struct ready_tag;

/// A coroutine the executor is to resume. It lives in whatever suspends the coroutine (an
/// awaiter, a promise), so destroying that object (with the coroutine's frame) unlinks it from
/// the executor's ready queue: the executor can never resume a frame that is gone.
class resumption : public link<ready_tag> {
public:
    resumption() noexcept = default;
    explicit resumption(std::coroutine_handle<> h) noexcept : handle(h) {}

    /// The coroutine to resume.
    std::coroutine_handle<> handle;
};

using resumption_queue = list<resumption, ready_tag>;

} // namespace coil::detail
