// SPDX-License-Identifier: MIT
/// @file
/// coil's own error codes, and the bridge from a kernel result (`-errno`) to `std::error_code`.
#pragma once

#include <cerrno>
#include <cstdint>
#include <string>
#include <system_error>
#include <type_traits>

namespace coil::io {

/// Conditions that coil itself reports, beside the kernel's errno values.
enum class errc : int {
    /// The submission queue has no free entry, or queuing the op would let more ops be
    /// outstanding than the completion queue can hold. Call `ring::submit()` and reap
    /// completions, then queue the op again. Nothing was queued.
    no_space = 1,
    /// The running kernel's io_uring does not implement this opcode (found with the probe).
    unsupported_operation,
    /// End of file came before the requested number of bytes (`file::read_exact_at`).
    end_of_file,
    /// This copy of the ring was inherited through fork(): the ring belongs to the parent
    /// process, and the child may not queue, submit, reap or change its tables
    /// (`ring::forget_after_fork`, docs/lifetimes.md). Create a new ring in the child.
    forked_copy,
};

/// The category of `coil::io::errc` values; its name is "coil.io".
const std::error_category& error_category() noexcept;

/// Makes a `std::error_code` of coil's category.
inline std::error_code make_error_code(errc e) noexcept
{
    return {static_cast<int>(e), error_category()};
}

/// Whether `res` says a signal interrupted the op: `-EINTR`, or one of the kernel's internal
/// restart codes (`ERESTARTSYS` 512 .. `ERESTART_RESTARTBLOCK` 516) that never reach a system
/// call's caller but that io_uring lets through for some ops a kernel worker ran (a splice or
/// tee blocked on a pipe, then cancelled: the cancel signals the worker).
constexpr bool interrupted_result(std::int32_t res) noexcept
{
    const bool restart_code = res <= -512 && res >= -516;
    return res == -EINTR || restart_code;
}

/// Turns a completion result into an error code: `res < 0` is `-errno` and gives that errno
/// in `std::generic_category()` (the kernel's internal restart codes give `EINTR`, see
/// `interrupted_result`); `res >= 0` gives an empty (success) error code.
inline std::error_code error_from_result(std::int32_t res) noexcept
{
    if (res >= 0)
        return {};
    if (interrupted_result(res)) [[unlikely]]
        return {EINTR, std::generic_category()}; // -EINTR, or a restart code
    return {-res, std::generic_category()};
}

/// Shorthand for an errno value in the generic category.
inline std::error_code errno_code(int error_number) noexcept
{
    return {error_number, std::generic_category()};
}

} // namespace coil::io

template <>
struct std::is_error_code_enum<coil::io::errc> : std::true_type {};
