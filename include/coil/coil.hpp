// SPDX-License-Identifier: MIT
/// @file
/// Everything in coil: the ring core and the coroutine runtime.
#pragma once

#include <coil/io/completion.hpp>
#include <coil/io/error.hpp>
#include <coil/io/result.hpp>
#include <coil/io/ring.hpp>
#include <coil/runtime/event.hpp>
#include <coil/runtime/executor.hpp>
#include <coil/runtime/file.hpp>
#include <coil/runtime/fixed_buffer_pool.hpp>
#include <coil/runtime/join_handle.hpp>
#include <coil/runtime/operation.hpp>
#include <coil/runtime/ops.hpp>
#include <coil/runtime/spawn.hpp>
#include <coil/runtime/stream.hpp>
#include <coil/net/address.hpp>
#include <coil/net/buffer_pool.hpp>
#include <coil/net/datagram.hpp>
#include <coil/net/ops.hpp>
#include <coil/net/socket.hpp>
#include <coil/runtime/nursery.hpp>
#include <coil/runtime/task.hpp>
#include <coil/runtime/when_all.hpp>
#include <coil/runtime/when_any.hpp>
