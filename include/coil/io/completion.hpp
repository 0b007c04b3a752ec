// SPDX-License-Identifier: MIT
/// @file
/// `completion`: one reaped completion queue entry, copied out of the ring.
#pragma once

#include <coil/io/error.hpp>

#include <cstdint>
#include <system_error>

namespace coil::io {

/// A completion: the user_data the op was queued with, the kernel's result and the CQE flags.
///
/// `result` keeps the kernel's sign: `>= 0` is the op's value (bytes moved, a new fd, poll
/// revents, ...), `< 0` is `-errno`. `error()` turns it into a `std::error_code`.
struct completion {
    std::uint64_t user_data = 0;
    std::int32_t result = 0;
    std::uint32_t flags = 0;

    /// True when the kernel will post more completions for the same op (multishot ops).
    bool more() const noexcept { return (flags & more_flag) != 0; }

    /// True when the op picked a buffer from a provided-buffer group (`IORING_CQE_F_BUFFER`):
    /// `buffer_id()` names it, and its first `result` bytes hold the data. The buffer is the
    /// caller's again until it is handed back (see `buffer_ring::give_back`).
    bool has_buffer() const noexcept { return (flags & buffer_flag) != 0; }

    /// The id of the provided buffer the op used; meaningful only when `has_buffer()`.
    std::uint16_t buffer_id() const noexcept
    {
        return static_cast<std::uint16_t>(flags >> buffer_id_shift);
    }

    /// True when the buffer `buffer_id()` names stays with the kernel after this completion,
    /// which goes on filling its rest (`IORING_CQE_F_BUF_MORE`): only from a buffer ring with
    /// incremental consumption (Linux 6.12, see `buffer_ring_options::incremental`).
    bool buffer_more() const noexcept { return (flags & buffer_more_flag) != 0; }

    /// True for the notification of a zero-copy send (`IORING_CQE_F_NOTIF`): it follows the
    /// op's result completion (which has `more()` set) and says that the kernel no longer
    /// reads the buffer. Its `result` is 0 and it carries the op's user_data.
    bool is_notification() const noexcept { return (flags & notification_flag) != 0; }

    /// The error the result stands for; empty when `result >= 0`.
    std::error_code error() const noexcept { return error_from_result(result); }

    /// True when `result >= 0`.
    bool ok() const noexcept { return result >= 0; }

    friend bool operator==(const completion&, const completion&) = default;

    /// `IORING_CQE_F_MORE`, restated here so that this header needs no kernel header.
    static constexpr std::uint32_t more_flag = 1U << 1;
    /// `IORING_CQE_F_BUFFER`, restated likewise.
    static constexpr std::uint32_t buffer_flag = 1U << 0;
    /// `IORING_CQE_F_NOTIF`, restated likewise.
    static constexpr std::uint32_t notification_flag = 1U << 3;
    /// `IORING_CQE_F_BUF_MORE` (Linux 6.12), which liburing 2.3's header does not have.
    static constexpr std::uint32_t buffer_more_flag = 1U << 4;
    /// `IORING_CQE_BUFFER_SHIFT`: the buffer id sits in the flags' upper 16 bits.
    static constexpr unsigned buffer_id_shift = 16;
};

} // namespace coil::io
