// SPDX-License-Identifier: MIT
// The pieces of an HTTP response head the http_server example writes: reason phrases, media
// types by file extension, and the Date field's IMF-fixdate. Pure functions, unit-tested.
#pragma once

#include <ctime>
#include <string>
#include <string_view>

namespace http {

/// The reason phrase of `status` ("Not Found"); "Unknown" for a code this server never sends.
std::string_view reason_phrase(int status) noexcept;

/// The media type for a file name, by its extension (case-insensitive):
/// html, css, js, json, txt, png, jpg/jpeg, gif, svg, wasm, pdf; else application/octet-stream.
std::string_view content_type_for(std::string_view file_name) noexcept;

/// `when` as an IMF-fixdate (RFC 9110 5.6.7), e.g. "Sun, 06 Nov 1994 08:49:37 GMT". Written
/// from fixed English tables, so the locale does not matter.
std::string imf_fixdate(std::time_t when);

} // namespace http
