// SPDX-License-Identifier: MIT
// Reason phrases, media types and dates for http_server's response heads.

#include "http/response.hpp"

#include "http/parser.hpp"

#include <array>
#include <utility>

namespace http {

std::string_view reason_phrase(int status) noexcept
{
    switch (status) {
    case 200: return "OK";
    case 206: return "Partial Content";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 416: return "Range Not Satisfiable";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

std::string_view content_type_for(std::string_view file_name) noexcept
{
    // One table: extension -> media type.
    static constexpr std::array<std::pair<std::string_view, std::string_view>, 12> types{{
        {"html", "text/html; charset=utf-8"},
        {"css", "text/css; charset=utf-8"},
        {"js", "text/javascript; charset=utf-8"},
        {"json", "application/json"},
        {"txt", "text/plain; charset=utf-8"},
        {"png", "image/png"},
        {"jpg", "image/jpeg"},
        {"jpeg", "image/jpeg"},
        {"gif", "image/gif"},
        {"svg", "image/svg+xml"},
        {"wasm", "application/wasm"},
        {"pdf", "application/pdf"},
    }};
    const std::size_t slash = file_name.rfind('/');
    const std::string_view base =
        slash == std::string_view::npos ? file_name : file_name.substr(slash + 1);
    const std::size_t dot = base.rfind('.');
    if (dot != std::string_view::npos && dot + 1 < base.size()) {
        const std::string_view extension = base.substr(dot + 1);
        for (const auto& [known, type] : types) {
            if (equal_ignoring_case(extension, known)) {
                return type;
            }
        }
    }
    return "application/octet-stream";
}

std::string imf_fixdate(std::time_t when)
{
    static constexpr std::array<std::string_view, 7> days{"Sun", "Mon", "Tue", "Wed",
                                                          "Thu", "Fri", "Sat"};
    static constexpr std::array<std::string_view, 12> months{
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    std::tm t{};
    ::gmtime_r(&when, &t);
    auto two = [](int v) {
        return std::string{static_cast<char>('0' + v / 10), static_cast<char>('0' + v % 10)};
    };
    std::string out;
    out.reserve(29);
    out.append(days[static_cast<std::size_t>(t.tm_wday)]).append(", ");
    out.append(two(t.tm_mday)).append(" ");
    out.append(months[static_cast<std::size_t>(t.tm_mon)]).append(" ");
    out.append(std::to_string(t.tm_year + 1900)).append(" ");
    out.append(two(t.tm_hour)).append(":").append(two(t.tm_min)).append(":").append(two(t.tm_sec));
    out.append(" GMT");
    return out;
}

} // namespace http
