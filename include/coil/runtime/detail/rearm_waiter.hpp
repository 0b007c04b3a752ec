// SPDX-License-Identifier: MIT
/// @file
/// `detail::rearm_waiter`: a stream waiting for a resource before its op can be armed again
/// (a buffer pool that ran dry), as a link the stream revokes when destroyed.
#pragma once

#include <coil/runtime/detail/list.hpp>

namespace coil::detail {

struct rearm_tag;

/// Held by whoever will provide the resource; `ready(waiter)` is called (on the executor's
/// thread, after the waiter was unlinked) once it is there.
class rearm_waiter : public link<rearm_tag> {
public:
    void (*ready)(rearm_waiter&) noexcept = nullptr;
};

using rearm_queue = list<rearm_waiter, rearm_tag>;

} // namespace coil::detail
