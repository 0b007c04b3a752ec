// SPDX-License-Identifier: MIT
// The HTTP/1.x request-head parser, Range interpretation and target decoding of http_server.

#include "http/parser.hpp"

#include <algorithm>
#include <cctype>
#include <limits>

namespace http {

namespace {

// tchar (RFC 9110 5.6.2): the characters of a method or a field name.
bool is_token_char(unsigned char c) noexcept
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
        return true;
    }
    return std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
}

bool is_token(std::string_view s) noexcept
{
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
        return is_token_char(static_cast<unsigned char>(c));
    });
}

// A field value may hold visible characters, obs-text, spaces and tabs: no other control.
bool is_field_value_char(unsigned char c) noexcept
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

// A request target may hold visible ASCII only (anything else must be percent-encoded).
bool is_target_char(unsigned char c) noexcept { return c > 0x20 && c < 0x7f; }

bool is_hex(unsigned char c) noexcept
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// A Host field value (RFC 9112 section 3.2): uri-host [ ":" port ], where uri-host is an
// IP-literal in brackets or a reg-name (unreserved, sub-delims, percent escapes; an IPv4
// address is one too). Empty is allowed (a target without authority).
bool is_valid_host(std::string_view v) noexcept
{
    std::size_t i = 0;
    if (!v.empty() && v.front() == '[') {
        const std::size_t close = v.find(']');
        if (close == std::string_view::npos || close == 1)
            return false;
        // IPv6address (hex digits, ':', '.') or IPvFuture: "v" 1*HEXDIG "." 1*( unreserved /
        // sub-delims / ":" ).
        const std::string_view literal = v.substr(1, close - 1);
        if (literal.front() == 'v' || literal.front() == 'V') {
            const std::size_t dot = literal.find('.');
            if (dot == std::string_view::npos || dot == 1 || dot + 1 == literal.size())
                return false;
            for (const char ch : literal.substr(1, dot - 1))
                if (!is_hex(static_cast<unsigned char>(ch)))
                    return false;
            static constexpr std::string_view extra = "-._~!$&'()*+,;=:";
            for (const char ch : literal.substr(dot + 1))
                if (!std::isalnum(static_cast<unsigned char>(ch)) &&
                    extra.find(ch) == std::string_view::npos)
                    return false;
        } else {
            for (const char ch : literal) {
                const auto c = static_cast<unsigned char>(ch);
                if (!is_hex(c) && c != ':' && c != '.')
                    return false;
            }
        }
        i = close + 1;
    } else {
        static constexpr std::string_view allowed = "-._~!$&'()*+,;=";
        for (; i < v.size() && v[i] != ':'; ++i) {
            const auto c = static_cast<unsigned char>(v[i]);
            if (c == '%') {
                if (i + 2 >= v.size() || !is_hex(static_cast<unsigned char>(v[i + 1])) ||
                    !is_hex(static_cast<unsigned char>(v[i + 2])))
                    return false;
                i += 2;
            } else if (!std::isalnum(c) && allowed.find(v[i]) == std::string_view::npos) {
                return false;
            }
        }
    }
    if (i == v.size())
        return true;
    if (v[i] != ':')
        return false;
    for (const char c : v.substr(i + 1))
        if (c < '0' || c > '9')
            return false;
    return true;
}

std::string_view trim(std::string_view s) noexcept
{
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
        s.remove_prefix(1);
    }
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
        s.remove_suffix(1);
    }
    return s;
}

// Decimal digits only, saturating at the largest value instead of wrapping.
std::optional<std::uint64_t> parse_decimal(std::string_view s) noexcept
{
    if (s.empty()) {
        return std::nullopt;
    }
    std::uint64_t value = 0;
    for (char c : s) {
        if (c < '0' || c > '9') {
            return std::nullopt;
        }
        const auto digit = static_cast<std::uint64_t>(c - '0');
        if (value > (std::numeric_limits<std::uint64_t>::max() - digit) / 10) {
            value = std::numeric_limits<std::uint64_t>::max();
        } else {
            value = value * 10 + digit;
        }
    }
    return value;
}

parse_result failure(int status)
{
    parse_result r;
    r.status = parse_status::failed;
    r.error_status = status;
    return r;
}

// A line of `input` starting at `from`: its content (without CRLF or LF) and where the next
// line starts; nullopt when its end has not arrived yet.
struct line {
    std::string_view text;
    std::size_t next;
};

std::optional<line> next_line(std::string_view input, std::size_t from) noexcept
{
    const std::size_t newline = input.find('\n', from);
    if (newline == std::string_view::npos) {
        return std::nullopt;
    }
    std::string_view text = input.substr(from, newline - from);
    if (!text.empty() && text.back() == '\r') {
        text.remove_suffix(1);
    }
    return line{text, newline + 1};
}

// Errors certain before the request line is complete: a method that is not a token, a target
// already longer than allowed. Lets the server refuse garbage (a TLS handshake, a binary
// protocol) and huge targets without waiting for more bytes.
int early_request_line_error(std::string_view partial, const limits& limit) noexcept
{
    const std::size_t space = partial.find(' ');
    const std::string_view method = partial.substr(0, space);
    if (!std::all_of(method.begin(), method.end(),
                     [](char c) { return is_token_char(static_cast<unsigned char>(c)); })) {
        return 400;
    }
    if (space == std::string_view::npos) {
        return 0;
    }
    const std::string_view rest = partial.substr(space + 1);
    const std::size_t target_length = std::min(rest.find(' '), rest.size());
    return target_length > limit.max_target_bytes ? 414 : 0;
}

} // namespace

bool equal_ignoring_case(std::string_view a, std::string_view b) noexcept
{
    if (a.size() != b.size()) {
        return false;
    }
    for (std::size_t i = 0; i < a.size(); ++i) {
        auto lower = [](char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; };
        if (lower(a[i]) != lower(b[i])) {
            return false;
        }
    }
    return true;
}

std::optional<std::string_view> request::header(std::string_view name) const noexcept
{
    for (const header_field& h : headers) {
        if (equal_ignoring_case(h.name, name)) {
            return h.value;
        }
    }
    return std::nullopt;
}

bool request::keep_alive() const noexcept
{
    bool close = false;
    bool keep = false;
    for (const header_field& h : headers) {
        if (!equal_ignoring_case(h.name, "connection")) {
            continue;
        }
        std::string_view list = h.value;
        while (!list.empty()) {
            const std::size_t comma = list.find(',');
            const std::string_view option = trim(list.substr(0, comma));
            close = close || equal_ignoring_case(option, "close");
            keep = keep || equal_ignoring_case(option, "keep-alive");
            list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
        }
    }
    if (close) {
        return false;
    }
    return version_minor >= 1 || keep;
}

parse_result parse_request(std::string_view input, const limits& limit)
{
    // Empty lines before the request line are skipped (RFC 9112 2.2); they count toward the
    // head's size, so a stream of them cannot grow without bound.
    std::size_t start = 0;
    while (start < input.size() && (input[start] == '\r' || input[start] == '\n')) {
        if (input[start] == '\r' && start + 1 < input.size() && input[start + 1] != '\n') {
            return failure(400);
        }
        ++start;
    }
    auto incomplete = [&](int early_error) {
        if (early_error != 0) {
            return failure(early_error);
        }
        if (input.size() >= limit.max_head_bytes) {
            return failure(431);
        }
        return parse_result{};
    };

    const auto request_line = next_line(input, start);
    if (!request_line) {
        return incomplete(early_request_line_error(input.substr(start), limit));
    }

    parse_result out;
    request& req = out.value;
    {
        const std::string_view text = request_line->text;
        const std::size_t first_space = text.find(' ');
        const std::size_t second_space =
            first_space == std::string_view::npos ? first_space : text.find(' ', first_space + 1);
        if (second_space == std::string_view::npos) {
            return failure(early_request_line_error(text, limit) == 414 ? 414 : 400);
        }
        req.method = text.substr(0, first_space);
        req.target = text.substr(first_space + 1, second_space - first_space - 1);
        const std::string_view version = text.substr(second_space + 1);
        if (req.target.size() > limit.max_target_bytes) {
            return failure(414);
        }
        if (!is_token(req.method) || req.target.empty() ||
            !std::all_of(req.target.begin(), req.target.end(),
                         [](char c) { return is_target_char(static_cast<unsigned char>(c)); })) {
            return failure(400);
        }
        // HTTP-version = "HTTP/" DIGIT "." DIGIT (RFC 9112 2.3). A later 1.x is answered as
        // 1.1, the highest this server speaks (RFC 9110 2.5); another major version is 505.
        const auto digit = [](char c) { return c >= '0' && c <= '9'; };
        if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || !digit(version[5]) ||
            version[6] != '.' || !digit(version[7])) {
            return failure(400);
        }
        if (version[5] != '1') {
            return failure(505);
        }
        req.version_minor = version[7] == '0' ? 0 : 1;
    }

    std::size_t position = request_line->next;
    for (;;) {
        const auto field_line = next_line(input, position);
        if (!field_line) {
            return incomplete(0);
        }
        position = field_line->next;
        const std::string_view text = field_line->text;
        if (text.empty()) {
            break;
        }
        if (req.headers.size() == limit.max_header_lines) {
            return failure(431);
        }
        // obs-fold (a line starting with whitespace) is refused, as RFC 9112 5.2 allows.
        if (text.front() == ' ' || text.front() == '\t') {
            return failure(400);
        }
        const std::size_t colon = text.find(':');
        if (colon == std::string_view::npos || !is_token(text.substr(0, colon))) {
            return failure(400);
        }
        const std::string_view value = trim(text.substr(colon + 1));
        if (!std::all_of(value.begin(), value.end(),
                         [](char c) { return is_field_value_char(static_cast<unsigned char>(c)); })) {
            return failure(400);
        }
        req.headers.push_back({text.substr(0, colon), value});
    }
    if (position > limit.max_head_bytes) {
        return failure(431);
    }

    std::size_t hosts = 0;
    std::optional<std::uint64_t> length;
    for (const header_field& h : req.headers) {
        if (equal_ignoring_case(h.name, "host")) {
            ++hosts;
            if (!is_valid_host(h.value)) {
                return failure(400);
            }
        } else if (equal_ignoring_case(h.name, "content-length")) {
            const auto value = parse_decimal(h.value);
            if (!value || (length && *length != *value)) {
                return failure(400);
            }
            length = value;
        } else if (equal_ignoring_case(h.name, "transfer-encoding")) {
            // chunked alone is a body this server can frame (and skips, closing after the
            // answer); any other coding it does not understand (RFC 9112 6.1).
            if (req.chunked || !equal_ignoring_case(h.value, "chunked")) {
                req.has_transfer_encoding = true;
            }
            req.chunked = true;
        }
    }
    if (hosts > 1 || (req.version_minor == 1 && hosts == 0)) {
        return failure(400);
    }
    if (req.has_transfer_encoding) {
        return failure(501);
    }
    if (req.chunked && length) {
        return failure(400); // both framings: refused, as RFC 9112 6.3 allows
    }
    req.content_length = length.value_or(0);
    out.status = parse_status::complete;
    out.consumed = position;
    return out;
}

range_result parse_range(std::string_view value, std::uint64_t size) noexcept
{
    const range_result whole;
    value = trim(value);
    const std::size_t equals = value.find('=');
    if (equals == std::string_view::npos || !equal_ignoring_case(trim(value.substr(0, equals)), "bytes")) {
        return whole;
    }
    const std::string_view spec = trim(value.substr(equals + 1));
    if (spec.find(',') != std::string_view::npos) {
        return whole; // several ranges: a multipart answer this server does not make
    }
    const std::size_t dash = spec.find('-');
    if (dash == std::string_view::npos) {
        return whole;
    }
    const std::string_view first_text = spec.substr(0, dash);
    const std::string_view last_text = spec.substr(dash + 1);
    range_result out;
    if (first_text.empty()) {
        // A suffix: the last n bytes.
        const auto n = parse_decimal(last_text);
        if (!n) {
            return whole;
        }
        if (*n == 0 || size == 0) {
            out.kind = range_kind::unsatisfiable;
            return out;
        }
        out.kind = range_kind::partial;
        out.range = {size - std::min(*n, size), size - 1};
        return out;
    }
    const auto first = parse_decimal(first_text);
    if (!first) {
        return whole;
    }
    std::uint64_t last = std::numeric_limits<std::uint64_t>::max();
    if (!last_text.empty()) {
        const auto parsed = parse_decimal(last_text);
        if (!parsed || *parsed < *first) {
            return whole; // invalid: ignored
        }
        last = *parsed;
    }
    if (*first >= size) {
        out.kind = range_kind::unsatisfiable;
        return out;
    }
    out.kind = range_kind::partial;
    out.range = {*first, std::min(last, size - 1)};
    return out;
}

target_path resolve_target(std::string_view target)
{
    target_path out;
    std::string_view path;
    if (!target.empty() && target.front() == '/') {
        path = target;
    } else {
        // absolute-form (RFC 9112 3.2.2): a server must accept it; only its path matters here.
        std::size_t scheme_end = std::string_view::npos;
        if (target.size() > 7 && equal_ignoring_case(target.substr(0, 7), "http://")) {
            scheme_end = 7;
        } else if (target.size() > 8 && equal_ignoring_case(target.substr(0, 8), "https://")) {
            scheme_end = 8;
        }
        if (scheme_end == std::string_view::npos) {
            out.error = target_error::bad_syntax;
            return out;
        }
        // The authority ends at the first '/', '?' or '#' (RFC 3986 3.2): a '/' in the query
        // of "http://host?q=/a" is not the path's, which is empty there, meaning "/".
        const std::size_t end = target.find_first_of("/?#", scheme_end);
        path = end == std::string_view::npos || target[end] != '/' ? std::string_view("/")
                                                                   : target.substr(end);
    }
    path = path.substr(0, path.find_first_of("?#"));

    std::string decoded;
    decoded.reserve(path.size());
    auto hex = [](char c) -> int {
        if (c >= '0' && c <= '9') {
            return c - '0';
        }
        if (c >= 'a' && c <= 'f') {
            return c - 'a' + 10;
        }
        if (c >= 'A' && c <= 'F') {
            return c - 'A' + 10;
        }
        return -1;
    };
    for (std::size_t i = 0; i < path.size(); ++i) {
        char c = path[i];
        if (c == '%') {
            if (i + 2 >= path.size()) {
                out.error = target_error::bad_syntax;
                return out;
            }
            const int high = hex(path[i + 1]);
            const int low = hex(path[i + 2]);
            if (high < 0 || low < 0) {
                out.error = target_error::bad_syntax;
                return out;
            }
            c = static_cast<char>(high * 16 + low);
            i += 2;
        }
        if (c == '\0' || c == '\\') {
            out.error = target_error::refused;
            return out;
        }
        decoded.push_back(c);
    }

    std::string_view rest = decoded;
    while (!rest.empty()) {
        const std::size_t slash = rest.find('/');
        const std::string_view segment = rest.substr(0, slash);
        rest = slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1);
        if (segment.empty() || segment == ".") {
            continue;
        }
        if (segment == "..") {
            out.error = target_error::refused;
            return out;
        }
        if (!out.relative.empty()) {
            out.relative.push_back('/');
        }
        out.relative.append(segment);
    }
    if (out.relative.empty()) {
        out.relative.push_back('.'); // (not = ".": GCC 12 warns falsely, -Wrestrict)
    } else if (decoded.back() == '/') {
        out.relative.push_back('/');
    }
    return out;
}

} // namespace http
