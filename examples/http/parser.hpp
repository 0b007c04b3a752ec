// SPDX-License-Identifier: MIT
// The HTTP/1.x request-head parser of the http_server example: pure functions over bytes, so
// they are unit-tested without a socket (tests/http_parser_test.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace http {

/// The limits a request head must respect.
struct limits {
    /// Bytes from the first byte of the request line to the end of the empty line.
    std::size_t max_head_bytes = 8 * 1024;
    /// Header field lines.
    std::size_t max_header_lines = 100;
    /// Bytes of the request target.
    std::size_t max_target_bytes = 4 * 1024;
};

/// One header field line; `value` has its surrounding whitespace trimmed.
struct header_field {
    std::string_view name;
    std::string_view value;
};

/// A parsed request head. Every view points into the buffer given to `parse_request`, so it is
/// valid as long as those bytes are.
struct request {
    std::string_view method;
    std::string_view target;
    int version_minor = 1; ///< 0 for HTTP/1.0, 1 for HTTP/1.1 (and later 1.x)
    std::vector<header_field> headers;

    /// The value of the first field named `name` (case-insensitive), if any.
    std::optional<std::string_view> header(std::string_view name) const noexcept;
    /// Whether the connection stays open after the response: HTTP/1.1 unless a Connection
    /// field says `close`; HTTP/1.0 only if it says `keep-alive`.
    bool keep_alive() const noexcept;
    /// The body length the Content-Length field announces (0 without one; the parser has
    /// already refused invalid or conflicting values).
    std::uint64_t content_length = 0;
    /// A Transfer-Encoding other than a lone `chunked` (the server answers 501).
    bool has_transfer_encoding = false;
    /// The body is chunked (`Transfer-Encoding: chunked`): the server answers, then closes
    /// the connection rather than read the body, as for a Content-Length body.
    bool chunked = false;
};

/// What `parse_request` found.
enum class parse_status {
    complete,   ///< a whole head: `request` and `consumed` are set
    incomplete, ///< no error so far: receive more bytes and parse again
    failed,     ///< an error: answer `error_status` and close the connection
};

struct parse_result {
    parse_status status = parse_status::incomplete;
    /// On `failed`: 400, 414 or 431 (or 501 for a transfer coding other than chunked, 505
    /// for an HTTP major version other than 1).
    int error_status = 0;
    /// On `complete`: bytes of the head, including the empty line and any empty lines before
    /// the request line; the body (if any) and the next pipelined request follow.
    std::size_t consumed = 0;
    request value;
};

/// Parses the request head at the start of `input`. Lines end with CRLF (a bare LF is
/// accepted, as RFC 9112 allows); empty lines before the request line are skipped. HTTP/1.0
/// and HTTP/1.1 are accepted, a later 1.x as 1.1; HTTP/1.1 requires exactly one valid Host
/// field. Folded header lines (obs-fold), whitespace before a colon, control characters, a
/// malformed or conflicting Content-Length, Content-Length with chunked, and a malformed
/// version are errors (400); another major version is 505. An oversize target is 414, an
/// oversize head or too many header lines 431, a transfer coding other than chunked 501;
/// oversize is reported as soon as it is certain, before the head is complete.
parse_result parse_request(std::string_view input, const limits& limit = {});

/// A byte range resolved against a representation of `size` bytes: `[first, last]`.
struct byte_range {
    std::uint64_t first = 0;
    std::uint64_t last = 0;
    std::uint64_t length() const noexcept { return last - first + 1; }
};

/// What a Range field asks for, given the size of the file.
enum class range_kind {
    whole,         ///< no usable range (absent, invalid, several ranges): send everything (200)
    partial,       ///< one satisfiable range (206)
    unsatisfiable, ///< one valid range that selects nothing (416)
};

struct range_result {
    range_kind kind = range_kind::whole;
    byte_range range;
};

/// Interprets a Range field value (`bytes=a-b`, `bytes=a-`, `bytes=-n`) for a file of `size`
/// bytes. An invalid value, another unit or several ranges are ignored (`whole`), as RFC 9110
/// allows; `last` beyond the end is clamped; a suffix longer than the file selects all of it.
range_result parse_range(std::string_view value, std::uint64_t size) noexcept;

/// Why a request target maps to no file.
enum class target_error {
    none,
    bad_syntax, ///< not origin-form, or a malformed percent escape (400)
    refused,    ///< decodes to a NUL, a backslash or a `..` segment (404: reveal nothing)
};

/// A request target turned into a path relative to the served directory.
struct target_path {
    target_error error = target_error::none;
    /// Segments joined with '/', without leading slash, `.` or empty segments; "." for the
    /// root itself. A trailing '/' is kept (it makes a file name fail to open, as it should).
    std::string relative;
};

/// Percent-decodes the path of `target` (the query is dropped) and normalises it. Decoding
/// comes first, so `%2e%2e` and `%2f` cannot smuggle a `..` segment past the check.
target_path resolve_target(std::string_view target);

/// Case-insensitive ASCII comparison.
bool equal_ignoring_case(std::string_view a, std::string_view b) noexcept;

} // namespace http
