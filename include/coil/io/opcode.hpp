// SPDX-License-Identifier: MIT
/// @file
/// `opcode`: the operations the ring core wraps, with their kernel opcode numbers and names in
/// one table.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iterator>

namespace coil::io {

/// The operations the ring core can queue with a dedicated `add_*` call. `ring::supports()`
/// tells which the running kernel has. Any other kernel opcode can still be queued with
/// `ring::add_sqe()`.
enum class opcode : std::uint8_t {
    nop,
    read,
    write,
    readv,
    writev,
    fsync,
    fallocate,
    poll_add,
    poll_remove,
    async_cancel,
    openat,
    close,
    statx,
    timeout,
    link_timeout,
    timeout_remove,
    accept,
    connect,
    recv,
    send,
    socket,
    recvmsg,
    sendmsg,
    shutdown,
    send_zc,
    read_fixed,
    write_fixed,
    unlinkat,
    renameat,
    mkdirat,
    symlinkat,
    linkat,
    ftruncate,
    sync_file_range,
    fadvise,
    splice,
    tee,
};

/// One row of the opcode table: coil's opcode, the kernel's `IORING_OP_*` number for it
/// (io/ring.cpp checks each against <liburing.h>), and its name.
struct opcode_info {
    opcode op;
    std::uint8_t kernel_opcode;
    const char* name;
};

/// The one place that maps coil's opcodes to the kernel's and to names. Row `i` describes the
/// opcode whose value is `i` (checked below), so lookups are an index.
inline constexpr opcode_info opcode_table[] = {
    {opcode::nop, 0, "nop"},
    {opcode::read, 22, "read"},
    {opcode::write, 23, "write"},
    {opcode::readv, 1, "readv"},
    {opcode::writev, 2, "writev"},
    {opcode::fsync, 3, "fsync"},
    {opcode::fallocate, 17, "fallocate"},
    {opcode::poll_add, 6, "poll_add"},
    {opcode::poll_remove, 7, "poll_remove"},
    {opcode::async_cancel, 14, "async_cancel"},
    {opcode::openat, 18, "openat"},
    {opcode::close, 19, "close"},
    {opcode::statx, 21, "statx"},
    {opcode::timeout, 11, "timeout"},
    {opcode::link_timeout, 15, "link_timeout"},
    {opcode::timeout_remove, 12, "timeout_remove"},
    {opcode::accept, 13, "accept"},
    {opcode::connect, 16, "connect"},
    {opcode::recv, 27, "recv"},
    {opcode::send, 26, "send"},
    {opcode::socket, 45, "socket"},
    {opcode::recvmsg, 10, "recvmsg"},
    {opcode::sendmsg, 9, "sendmsg"},
    {opcode::shutdown, 34, "shutdown"},
    {opcode::send_zc, 47, "send_zc"},
    {opcode::read_fixed, 4, "read_fixed"},
    {opcode::write_fixed, 5, "write_fixed"},
    {opcode::unlinkat, 36, "unlinkat"},
    {opcode::renameat, 35, "renameat"},
    {opcode::mkdirat, 37, "mkdirat"},
    {opcode::symlinkat, 38, "symlinkat"},
    {opcode::linkat, 39, "linkat"},
    {opcode::ftruncate, 55, "ftruncate"}, // Linux 6.9; liburing 2.3 has no name for it
    {opcode::sync_file_range, 8, "sync_file_range"},
    {opcode::fadvise, 24, "fadvise"},
    {opcode::splice, 30, "splice"},
    {opcode::tee, 33, "tee"},
};

/// How many opcodes coil wraps.
inline constexpr std::size_t opcode_count = std::size(opcode_table);

namespace detail {
constexpr bool opcode_table_is_indexed() noexcept
{
    for (std::size_t i = 0; i < opcode_count; ++i) {
        if (static_cast<std::size_t>(opcode_table[i].op) != i) {
            return false;
        }
    }
    return true;
}
} // namespace detail

static_assert(detail::opcode_table_is_indexed(),
              "opcode_table must list the opcodes in the order of their enum values");
static_assert(static_cast<std::size_t>(opcode::tee) + 1 == opcode_count,
              "every opcode needs a row in opcode_table");

/// The kernel's `IORING_OP_*` number for `op`.
constexpr std::uint8_t kernel_opcode(opcode op) noexcept
{
    return opcode_table[static_cast<std::size_t>(op)].kernel_opcode;
}

/// Human-readable name of an opcode ("read", "poll_add", ...). The string is static.
constexpr const char* to_string(opcode op) noexcept
{
    const auto index = static_cast<std::size_t>(op);
    return index < opcode_count ? opcode_table[index].name : "unknown";
}

} // namespace coil::io
