// SPDX-License-Identifier: MIT
/// @file
/// Deadlines on the steady clock that saturate instead of overflowing.
#pragma once

#include <chrono>

namespace coil::io::detail {

/// `now() + d` on the steady clock, saturated at the clock's ends rather than overflowing: a
/// timeout of `nanoseconds::max()` means "never", one of `min()` "already passed". The
/// comparisons are made on the time since the epoch, so none of them overflows either.
inline std::chrono::steady_clock::time_point deadline_after(std::chrono::nanoseconds d) noexcept
{
    using clock = std::chrono::steady_clock;
    const clock::time_point now = clock::now();
    const auto since = now.time_since_epoch();
    const auto step = std::chrono::duration_cast<clock::duration>(d);
    if (step > clock::duration::zero() && since > clock::duration::max() - step)
        return clock::time_point::max();
    if (step < clock::duration::zero() && since < clock::duration::min() - step)
        return clock::time_point::min();
    return now + step;
}

/// `deadline - now()`, saturated likewise (a deadline of `time_point::min()` is long past).
inline std::chrono::steady_clock::duration time_left(std::chrono::steady_clock::time_point deadline) noexcept
{
    using clock = std::chrono::steady_clock;
    const auto since = clock::now().time_since_epoch();
    const auto until = deadline.time_since_epoch();
    if (since > clock::duration::zero() && until < clock::duration::min() + since)
        return clock::duration::min();
    if (since < clock::duration::zero() && until > clock::duration::max() + since)
        return clock::duration::max();
    return until - since;
}

} // namespace coil::io::detail
