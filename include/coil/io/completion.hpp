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

    /// The error the result stands for; empty when `result >= 0`.
    std::error_code error() const noexcept { return error_from_result(result); }

    /// True when `result >= 0`.
    bool ok() const noexcept { return result >= 0; }

    friend bool operator==(const completion&, const completion&) = default;

    /// `IORING_CQE_F_MORE`, restated here so that this header needs no kernel header.
    static constexpr std::uint32_t more_flag = 1U << 1;
};

} // namespace coil::io
