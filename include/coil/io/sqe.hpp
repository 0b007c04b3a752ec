// SPDX-License-Identifier: MIT
/// @file
/// `sqe`: coil's own statement of the kernel's 64-byte submission queue entry, for ops that
/// `ring::add_sqe()` queues without a dedicated `add_*` call, and for the inline nop, read and
/// write. io/ring.cpp checks every offset against liburing's `struct io_uring_sqe`.
#pragma once

#include <cstdint>

namespace coil::io {

/// A submission queue entry, laid out as the kernel's `struct io_uring_sqe` (64 bytes, no
/// SQE128). Several fields mean different things to different opcodes; each alias the kernel
/// uses is a member of an anonymous union, so an SQE is filled with the names the kernel's
/// documentation (io_uring_enter(2)) gives. A field an opcode does not read must stay zero.
struct sqe {
    std::uint8_t opcode;   ///< `IORING_OP_*`; set by the ring
    std::uint8_t flags;    ///< `IOSQE_*`; set by the ring from `sqe_flags`
    std::uint16_t ioprio;  ///< I/O priority, or opcode flags (send/recv, accept: `IORING_*`)
    std::int32_t fd;       ///< the file descriptor the op works on
    union {
        std::uint64_t off;           ///< file offset; `-1` for the file position
        std::uint64_t addr2;         ///< a second address (sockets, xattr values)
        std::uint32_t cmd_op;        ///< `IORING_OP_URING_CMD` sub-command
    };
    union {
        std::uint64_t addr;          ///< buffer, iovec array, path or timespec address
        std::uint64_t splice_off_in; ///< `IORING_OP_SPLICE`: offset in the input (`-1`: none)
    };
    std::uint32_t len;               ///< buffer length, iovec count, or a count
    union {
        /// The opcode's own flags word, under the kernel's names: `rw_flags` (`RWF_*`),
        /// `fsync_flags`, `poll32_events`, `timeout_flags`, `accept_flags`, `cancel_flags`,
        /// `open_flags`, `statx_flags`, `fadvise_advice`, `splice_flags`, `msg_flags`, ...
        std::uint32_t op_flags;
        std::uint32_t rw_flags;
        std::uint32_t fsync_flags;
        std::uint32_t poll32_events;
        std::uint32_t timeout_flags;
        std::uint32_t accept_flags;
        std::uint32_t cancel_flags;
        std::uint32_t open_flags;
        std::uint32_t statx_flags;
        std::uint32_t fadvise_advice;
        std::uint32_t splice_flags;
        std::uint32_t msg_flags;
    };
    std::uint64_t user_data;         ///< set by the ring
    union {
        std::uint16_t buf_index;     ///< registered buffer index (`*_FIXED` ops)
        std::uint16_t buf_group;     ///< provided-buffer group (`IOSQE_BUFFER_SELECT`)
    };
    std::uint16_t personality;       ///< registered credentials, 0 for the caller's
    union {
        std::int32_t file_index;     ///< fixed-file slot for direct open/accept (+1)
        std::int32_t splice_fd_in;   ///< `IORING_OP_SPLICE` / `IORING_OP_TEE`: input fd
    };
    std::uint64_t addr3;             ///< a third address (xattr, send_zc destination)
    std::uint64_t pad;               ///< reserved: zero
};

static_assert(sizeof(sqe) == 64);

namespace detail {

/// The name the inline ops used before `sqe` became public.
using sqe = io::sqe;

/// What liburing's io_uring_prep_rw does: every field the kernel reads for a plain
/// read/write-shaped op is set, the rest zeroed.
inline void prepare_rw(sqe& s, std::uint8_t kernel_opcode, int file, const void* address,
                       std::uint32_t length, std::uint64_t offset, std::uint8_t sqe_flags,
                       std::uint64_t data) noexcept
{
    s.opcode = kernel_opcode;
    s.flags = sqe_flags;
    s.ioprio = 0;
    s.fd = file;
    s.off = offset;
    s.addr = reinterpret_cast<std::uintptr_t>(address);
    s.len = length;
    s.op_flags = 0;
    s.user_data = data;
    s.buf_index = 0;
    s.personality = 0;
    s.file_index = 0;
    s.addr3 = 0;
    s.pad = 0;
}

} // namespace detail
} // namespace coil::io
