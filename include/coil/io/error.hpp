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
};

/// The category of `coil::io::errc` values; its name is "coil.io".
const std::error_category& error_category() noexcept;

/// Makes a `std::error_code` of coil's category.
inline std::error_code make_error_code(errc e) noexcept
{
    return {static_cast<int>(e), error_category()};
}

/// Turns a completion result into an error code: `res < 0` is `-errno` and gives that errno
/// in `std::generic_category()`; `res >= 0` gives an empty (success) error code.
inline std::error_code error_from_result(std::int32_t res) noexcept
{
    if (res >= 0)
        return {};
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
