// SPDX-License-Identifier: MIT
/// @file
/// `close_descriptor`: how the runtime's owning types (`coil::file`, the socket types) close
/// their descriptor when they are destroyed or assigned over.
#pragma once

namespace coil::detail {

/// Closes `fd` after every op this thread's executor queued before the call has reached the
/// kernel. The kernel looks an op's descriptor up when it issues the op, not when the op is
/// queued: a descriptor closed while an op naming it still sits in the submission queue (or
/// waits for room in it) would be looked up after the close, when the number may already name
/// a file or socket opened since, and the op would read or write that one. Ops the kernel has
/// issued hold their own reference to the file and are not disturbed by the close. Outside a
/// `run()` (or in a forked child, which must not touch its parent's ring) it closes at once.
/// Defined in runtime/executor.cpp.
void close_descriptor(int fd) noexcept;

} // namespace coil::detail
