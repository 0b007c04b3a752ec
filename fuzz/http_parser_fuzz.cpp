// SPDX-License-Identifier: MIT
// Fuzz target: the http_server example's request parser (examples/http/parser.hpp). The first
// byte picks the limits (default or tiny); the rest is a request stream. Beyond "no crash, no
// out-of-bounds read" (ASan), it checks what the server relies on: every view lies inside the
// input; `consumed` is within it; a failure names 400, 414, 431, 501 or 505; the answer does not
// depend on how the bytes arrived (a prefix shorter than the head is incomplete, a prefix fails
// only if the whole input fails, and a prefix that holds the whole head gives the same result);
// Range values resolve inside the file; resolved targets never hold a `..` segment.
// docs/reliability.md, "Fuzzing".

#include "fuzz_input.hpp"
#include "http/parser.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace {

[[noreturn]] void broken(const char* what)
{
    std::fprintf(stderr, "http_parser fuzz: %s\n", what);
    std::abort();
}

void check(bool ok, const char* what)
{
    if (!ok)
        broken(what);
}

bool inside(std::string_view part, std::string_view whole)
{
    return part.empty() ||
           (part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size());
}

void check_request(const http::parse_result& r, std::string_view input)
{
    switch (r.status) {
    case http::parse_status::complete:
        check(r.consumed > 0 && r.consumed <= input.size(), "consumed outside the input");
        check(inside(r.value.method, input.substr(0, r.consumed)), "method outside the head");
        check(inside(r.value.target, input.substr(0, r.consumed)), "target outside the head");
        check(!r.value.method.empty() && !r.value.target.empty(), "an empty method or target");
        check(r.value.version_minor == 0 || r.value.version_minor == 1, "a version not 1.0/1.1");
        for (const auto& h : r.value.headers) {
            check(inside(h.name, input.substr(0, r.consumed)) &&
                      inside(h.value, input.substr(0, r.consumed)),
                  "a header outside the head");
            check(!h.name.empty(), "an empty header name");
        }
        (void)r.value.keep_alive();
        break;
    case http::parse_status::failed:
        check(r.error_status == 400 || r.error_status == 414 || r.error_status == 431 ||
                  r.error_status == 501 || r.error_status == 505,
              "a failure with an unexpected status");
        break;
    case http::parse_status::incomplete:
        break;
    }
}

void check_target(std::string_view target)
{
    const http::target_path p = http::resolve_target(target);
    if (p.error != http::target_error::none)
        return;
    const std::string_view rel = p.relative;
    check(!rel.empty() && rel.front() != '/', "a resolved path that is empty or absolute");
    std::size_t start = 0;
    while (start <= rel.size()) {
        const std::size_t end = rel.find('/', start);
        const std::string_view segment =
            rel.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
        check(segment != "..", "a resolved path with a .. segment");
        check(segment.find('\0') == std::string_view::npos, "a resolved path with a NUL");
        if (end == std::string_view::npos)
            break;
        start = end + 1;
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    coil_fuzz::fuzz_input in(data, size);
    const std::uint8_t mode = in.byte();
    http::limits limit;
    if (mode & 1) {
        limit.max_head_bytes = 64 + (mode >> 1);
        limit.max_header_lines = 1 + (mode >> 5);
        limit.max_target_bytes = 8 + (mode >> 2);
    }
    const std::string_view input = in.rest();

    const http::parse_result whole = http::parse_request(input, limit);
    check_request(whole, input);

    // Arrival in two pieces: the parser sees a prefix first.
    const std::size_t cut = input.empty() ? 0 : static_cast<std::size_t>(mode) * 131 % input.size();
    const std::string_view prefix = input.substr(0, cut);
    const http::parse_result early = http::parse_request(prefix, limit);
    check_request(early, prefix);
    // Which error is certain first may depend on how much has arrived (a request line
    // that is both malformed and too long is 400 early, 414 once the target's length shows),
    // so only the failure itself must not depend on it.
    if (early.status == http::parse_status::failed && whole.status != http::parse_status::failed) {
        std::fprintf(stderr, "prefix of %zu bytes: %d; whole (%zu bytes): status %d, %d\n", cut,
                     early.error_status, input.size(), static_cast<int>(whole.status),
                     whole.error_status);
        broken("a prefix fails but the whole input does not");
    }
    if (whole.status == http::parse_status::complete) {
        if (cut < whole.consumed)
            check(early.status == http::parse_status::incomplete,
                  "a prefix shorter than the head is not incomplete");
        else
            check(early.status == http::parse_status::complete && early.consumed == whole.consumed,
                  "a prefix that holds the head parses differently");
    }

    if (whole.status == http::parse_status::complete) {
        check_target(whole.value.target);
        if (auto range = whole.value.header("range")) {
            const std::uint64_t file_size = mode * 37u;
            const http::range_result rr = http::parse_range(*range, file_size);
            if (rr.kind == http::range_kind::partial)
                check(rr.range.first <= rr.range.last && rr.range.last < file_size,
                      "a partial range outside the file");
        }
    }
    // The range and target parsers on raw bytes too.
    const http::range_result raw = http::parse_range(input, 1000);
    if (raw.kind == http::range_kind::partial)
        check(raw.range.first <= raw.range.last && raw.range.last < 1000,
              "a partial range outside the file");
    check_target(input);
    return 0;
}
