// SPDX-License-Identifier: MIT
/// @file
/// `detail::sqe`: coil's own statement of the kernel's 64-byte submission queue entry, so that
/// the hottest ops (nop, read, write) are prepared inline without <liburing.h> in a public
/// header. io/ring.cpp checks every offset against `struct io_uring_sqe`.
#pragma once

#include <cstdint>

namespace coil::io::detail {

/// The `IORING_OP_*` values the inline ops use (checked in io/ring.cpp).
enum class kernel_op : std::uint8_t {
    nop = 0,
    read = 22,
    write = 23,
};

struct sqe {
    std::uint8_t opcode;
    std::uint8_t flags;
    std::uint16_t ioprio;
    std::int32_t fd;
    std::uint64_t off;
    std::uint64_t addr;
    std::uint32_t len;
    std::uint32_t op_flags;
    std::uint64_t user_data;
    std::uint16_t buf_index;
    std::uint16_t personality;
    std::int32_t file_index;
    std::uint64_t addr3;
    std::uint64_t pad;

    /// What liburing's io_uring_prep_rw does: every field the kernel reads for a plain
    /// read/write-shaped op is set, the rest zeroed.
    void prepare_rw(kernel_op op, int file, const void* address, std::uint32_t length,
                    std::uint64_t offset, std::uint8_t sqe_flags,
                    std::uint64_t data) noexcept
    {
        opcode = static_cast<std::uint8_t>(op);
        flags = sqe_flags;
        ioprio = 0;
        fd = file;
        off = offset;
        addr = reinterpret_cast<std::uintptr_t>(address);
        len = length;
        op_flags = 0;
        user_data = data;
        buf_index = 0;
        personality = 0;
        file_index = 0;
        addr3 = 0;
        pad = 0;
    }
};

static_assert(sizeof(sqe) == 64);

} // namespace coil::io::detail
