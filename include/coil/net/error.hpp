// SPDX-License-Identifier: MIT
/// @file
/// coil's networking error codes (category "coil.net"): what is wrong with an address.
#pragma once

#include <system_error>
#include <type_traits>

namespace coil::net {

/// Why an address could not be parsed or resolved. Each message says what was expected.
enum class errc : int {
    missing_port = 1,  ///< "host" without ":port"
    bad_port,          ///< not a number in 0..65535
    bad_host,          ///< not an IPv4 or bracketed IPv6 literal, nor a name that resolves
    path_too_long,     ///< a Unix socket path longer than sockaddr_un allows
    empty,             ///< an empty address
};

/// The category of `coil::net::errc`; its name is "coil.net".
const std::error_category& error_category() noexcept;

inline std::error_code make_error_code(errc e) noexcept
{
    return {static_cast<int>(e), error_category()};
}

} // namespace coil::net

template <>
struct std::is_error_code_enum<coil::net::errc> : std::true_type {};
