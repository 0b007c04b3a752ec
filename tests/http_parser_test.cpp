// SPDX-License-Identifier: MIT
// The http_server example's parser without a socket: request heads (valid, pipelined, each
// malformed or oversize case), Range values, target decoding and confinement, media types,
// dates.

#include "http/parser.hpp"
#include "http/response.hpp"

#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>

#include <string>

using http::parse_status;

namespace {

int error_of(const std::string& input, const http::limits& limit = {})
{
    const auto r = http::parse_request(input, limit);
    return r.status == parse_status::failed ? r.error_status : 0;
}

} // namespace

TEST_CASE("http parser: a complete GET head yields method, target, version and fields", "[http]")
{
    const std::string input = "GET /index.html?q=1 HTTP/1.1\r\nHost: example\r\n"
                              "Accept:  text/html  \r\nX-Empty:\r\n\r\n";
    const auto r = http::parse_request(input);
    REQUIRE(r.status == parse_status::complete);
    CHECK(r.consumed == input.size());
    CHECK(r.value.method == "GET");
    CHECK(r.value.target == "/index.html?q=1");
    CHECK(r.value.version_minor == 1);
    REQUIRE(r.value.headers.size() == 3);
    CHECK(r.value.header("accept") == "text/html");
    CHECK(r.value.header("ACCEPT") == "text/html");
    CHECK(r.value.header("x-empty") == "");
    CHECK(!r.value.header("range"));
    CHECK(r.value.keep_alive());
    CHECK(r.value.content_length == 0);
}

TEST_CASE("http parser: bare LF line ends and empty lines before the request are accepted",
          "[http]")
{
    const std::string input = "\r\n\nHEAD / HTTP/1.0\nConnection: keep-alive\n\n";
    const auto r = http::parse_request(input);
    REQUIRE(r.status == parse_status::complete);
    CHECK(r.consumed == input.size());
    CHECK(r.value.method == "HEAD");
    CHECK(r.value.version_minor == 0);
    CHECK(r.value.keep_alive());
}

TEST_CASE("http parser: keep-alive follows the version and the Connection options", "[http]")
{
    auto keep = [](const std::string& input) {
        const auto r = http::parse_request(input);
        REQUIRE(r.status == parse_status::complete);
        return r.value.keep_alive();
    };
    CHECK(keep("GET / HTTP/1.1\r\nHost: h\r\n\r\n"));
    CHECK(!keep("GET / HTTP/1.1\r\nHost: h\r\nConnection: Close\r\n\r\n"));
    CHECK(!keep("GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade, close\r\n\r\n"));
    CHECK(!keep("GET / HTTP/1.0\r\n\r\n"));
    CHECK(keep("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
}

TEST_CASE("http parser: pipelined requests are parsed one after the other", "[http]")
{
    const std::string first = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n";
    const std::string second = "GET /b HTTP/1.1\r\nHost: h\r\n\r\n";
    const std::string third_part = "GET /c HTTP/1.1\r\nHo";
    const std::string input = first + second + third_part;

    auto r = http::parse_request(input);
    REQUIRE(r.status == parse_status::complete);
    CHECK(r.value.target == "/a");
    CHECK(r.consumed == first.size());
    const std::string rest = input.substr(r.consumed);
    r = http::parse_request(rest);
    REQUIRE(r.status == parse_status::complete);
    CHECK(r.value.target == "/b");
    CHECK(r.consumed == second.size());
    r = http::parse_request(rest.substr(r.consumed));
    CHECK(r.status == parse_status::incomplete);
}

TEST_CASE("http parser: a head cut anywhere is incomplete, never an error", "[http]")
{
    const std::string input = "GET /x HTTP/1.1\r\nHost: h\r\nRange: bytes=0-1\r\n\r\n";
    for (std::size_t n = 0; n < input.size(); ++n) {
        INFO("prefix of " << n << " bytes");
        CHECK(http::parse_request(input.substr(0, n)).status == parse_status::incomplete);
    }
    CHECK(http::parse_request(input).status == parse_status::complete);
}

TEST_CASE("http parser: Content-Length is read, and bad or conflicting ones are refused", "[http]")
{
    const auto r = http::parse_request("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 42\r\n\r\n");
    REQUIRE(r.status == parse_status::complete);
    CHECK(r.value.content_length == 42);
    CHECK(http::parse_request("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
                              "Content-Length: 5\r\n\r\n").status == parse_status::complete);
    CHECK(error_of("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n") == 400);
    CHECK(error_of("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n") == 400);
    CHECK(error_of("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1x\r\n\r\n") == 400);
    CHECK(error_of("GET / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n") == 400);
}

TEST_CASE("http parser: each malformed head is a 400", "[http]")
{
    const std::string bad = GENERATE(as<std::string>{},
        "GET\r\n\r\n",                                   // no target, no version
        "GET /\r\n\r\n",                                 // no version
        "GET  / HTTP/1.1\r\nHost: h\r\n\r\n",            // two spaces
        "GET / HTTP/1.1 \r\nHost: h\r\n\r\n",            // trailing space
        "G(T / HTTP/1.1\r\nHost: h\r\n\r\n",             // method not a token
        "\x16\x03\x01\x02\x00",                          // a TLS handshake: refused at once
        "GET / HTTP/1\r\nHost: h\r\n\r\n",                 // malformed versions
        "GET / HTTP/1.10\r\nHost: h\r\n\r\n",
        "GET / HTTP/x.1\r\nHost: h\r\n\r\n",
        "GET / http/1.1\r\nHost: h\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n",                        // HTTP/1.1 without Host
        "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",  // two Hosts
        "GET / HTTP/1.1\r\nHost: a b/c@@\r\n\r\n",       // not a host (RFC 9112 3.2)
        "GET / HTTP/1.1\r\nHost: h:80x\r\n\r\n",          // a port that is not digits
        "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n",           // an unclosed IP literal
        "GET / HTTP/1.1\r\nHost: [v.x]\r\n\r\n",          // IPvFuture without a version
        "GET / HTTP/1.1\r\nHost: [zz]\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h%zz\r\n\r\n",           // a bad percent escape
        "GET / HTTP/1.1\r\nHost: h\r\nBad Name: x\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nName : x\r\n\r\n", // whitespace before the colon
        "GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\n: empty name\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n folded\r\n\r\n", // obs-fold
        "GET / HTTP/1.1\r\nHost: h\r\nX: a\x01b\r\n\r\n",       // a control character
        "GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n",         // a bare CR
        "GET /a\x7f HTTP/1.1\r\nHost: h\r\n\r\n",               // DEL in the target
        "GET /\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n",            // raw UTF-8 in the target
        "\rGET / HTTP/1.1\r\nHost: h\r\n\r\n");
    INFO(bad);
    CHECK(error_of(bad) == 400);
}

TEST_CASE("http parser: Host values of every valid form are accepted", "[http]")
{
    const std::string host = GENERATE(as<std::string>{}, "", "example.com", "example.com:8080",
                                      "127.0.0.1:80", "[::1]:8080", "[fe80::1]", "[v1.x]", "[vF.a:b]:1",
                                      "a-b_c~d.e",
                                      "x%41y", "sub!$&'()*+,;=delims");
    INFO(host);
    const auto r = http::parse_request("GET / HTTP/1.1\r\nHost: " + host + "\r\n\r\n");
    CHECK(r.status == http::parse_status::complete);
}

TEST_CASE("http parser: versions: a later 1.x is 1.1, another major version is 505", "[http]")
{
    const auto later = http::parse_request("GET / HTTP/1.2\r\nHost: h\r\n\r\n");
    REQUIRE(later.status == http::parse_status::complete);
    CHECK(later.value.version_minor == 1);
    CHECK(later.value.keep_alive());
    CHECK(error_of("GET / HTTP/2.0\r\nHost: h\r\n\r\n") == 505);
    CHECK(error_of("GET / HTTP/0.9\r\nHost: h\r\n\r\n") == 505);
}

TEST_CASE("http parser: a chunked body is framed, other transfer codings are 501", "[http]")
{
    const auto chunked =
        http::parse_request("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n");
    REQUIRE(chunked.status == http::parse_status::complete);
    CHECK(chunked.value.chunked);
    CHECK(error_of("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n") == 501);
    CHECK(error_of("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
                   "Transfer-Encoding: chunked\r\n\r\n") == 501);
    CHECK(error_of("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
                   "Content-Length: 3\r\n\r\n") == 400);
}

TEST_CASE("http parser: oversize targets are 414 and oversize heads 431, before they end",
          "[http]")
{
    const http::limits limit; // 8 KiB head, 100 lines, 4 KiB target
    const std::string long_target = "/" + std::string(limit.max_target_bytes, 'a');
    CHECK(error_of("GET " + long_target + " HTTP/1.1\r\nHost: h\r\n\r\n") == 414);
    CHECK(error_of("GET " + long_target) == 414); // the line has not ended yet
    const std::string fitting_target = "/" + std::string(limit.max_target_bytes - 1, 'a');
    CHECK(http::parse_request("GET " + fitting_target + " HTTP/1.1\r\nHost: h\r\n\r\n").status ==
          parse_status::complete);

    std::string many = "GET / HTTP/1.1\r\nHost: h\r\n";
    for (int i = 0; i < 100; ++i) {
        many += "X-" + std::to_string(i) + ": v\r\n";
    }
    CHECK(error_of(many + "\r\n") == 431);
    CHECK(error_of(many) == 431); // certain before the head ends

    const std::string big_field = "GET / HTTP/1.1\r\nHost: h\r\nX: " + std::string(9000, 'v');
    CHECK(error_of(big_field) == 431);
    CHECK(error_of(big_field + "\r\n\r\n") == 431);
    CHECK(error_of(std::string(limit.max_head_bytes, '\n')) == 431);
}

TEST_CASE("http range: single ranges, suffixes, clamping and the unsatisfiable", "[http]")
{
    using http::range_kind;
    auto check = [](std::string_view value, std::uint64_t size, range_kind kind,
                    std::uint64_t first = 0, std::uint64_t last = 0) {
        INFO(value << " of " << size);
        const auto r = http::parse_range(value, size);
        CHECK(r.kind == kind);
        if (kind == range_kind::partial) {
            CHECK(r.range.first == first);
            CHECK(r.range.last == last);
        }
    };
    check("bytes=0-9", 100, range_kind::partial, 0, 9);
    check("bytes=10-", 100, range_kind::partial, 10, 99);
    check("bytes=-10", 100, range_kind::partial, 90, 99);
    check("bytes=-1000", 100, range_kind::partial, 0, 99);
    check("bytes=50-1000", 100, range_kind::partial, 50, 99);
    check("bytes=99-99", 100, range_kind::partial, 99, 99);
    check(" bytes = 1-2 ", 100, range_kind::partial, 1, 2);
    check("bytes=0-99999999999999999999999", 100, range_kind::partial, 0, 99);
    check("bytes=100-", 100, range_kind::unsatisfiable);
    check("bytes=100-200", 100, range_kind::unsatisfiable);
    check("bytes=-0", 100, range_kind::unsatisfiable);
    check("bytes=0-", 0, range_kind::unsatisfiable);
    check("bytes=-5", 0, range_kind::unsatisfiable);
    check("bytes=5-1", 100, range_kind::whole);   // invalid: ignored
    check("bytes=0-1,5-6", 100, range_kind::whole); // several: ignored
    check("items=0-1", 100, range_kind::whole);
    check("bytes=a-b", 100, range_kind::whole);
    check("bytes=-", 100, range_kind::whole);
    check("bytes=1", 100, range_kind::whole);
}

TEST_CASE("http target: decoding comes first, then `..`, NUL and backslashes are refused",
          "[http]")
{
    auto relative = [](std::string_view target) {
        const auto r = http::resolve_target(target);
        REQUIRE(r.error == http::target_error::none);
        return r.relative;
    };
    CHECK(relative("/") == ".");
    CHECK(relative("/index.html") == "index.html");
    CHECK(relative("/a//b/./c.txt?x=../..") == "a/b/c.txt");
    CHECK(relative("/dir/") == "dir/");
    CHECK(relative("/with%20space.txt") == "with space.txt");
    CHECK(relative("/%41%62") == "Ab");
    CHECK(relative("http://example.com/a/b") == "a/b");
    CHECK(relative("HTTP://example.com") == ".");
    // In absolute-form the authority ends at '/', '?' or '#': a '/' in the query is not the
    // path's.
    CHECK(relative("http://x?/a.txt") == ".");
    CHECK(relative("http://x?q=/ten.txt") == ".");
    CHECK(relative("http://x:80?/sub/index.html") == ".");
    CHECK(relative("http://x#/a.txt") == ".");
    CHECK(relative("http://x/?/a.txt") == ".");
    CHECK(relative("http://x/b.txt?/a.txt") == "b.txt");
    CHECK(relative("/a..b/..c") == "a..b/..c");

    const std::string refused = GENERATE(as<std::string>{}, "/../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd", "/%2E%2E/x", "/a/%2f../..", "/a/..%2f..%2fetc",
        "/..", "/a/../../b", "/%00", "/a%00.txt", "/..%5c..%5cetc", "/a\\b");
    INFO(refused);
    CHECK(http::resolve_target(refused).error == http::target_error::refused);

    const std::string bad = GENERATE(as<std::string>{}, "/%", "/%2", "/%zz", "/%2g", "*",
                                     "example.com:80", "ftp://x/y");
    INFO(bad);
    CHECK(http::resolve_target(bad).error == http::target_error::bad_syntax);
}

TEST_CASE("http response: media types by extension, dates in IMF-fixdate", "[http]")
{
    CHECK(http::content_type_for("index.html") == "text/html; charset=utf-8");
    CHECK(http::content_type_for("dir/app.JS") == "text/javascript; charset=utf-8");
    CHECK(http::content_type_for("a.css") == "text/css; charset=utf-8");
    CHECK(http::content_type_for("a.json") == "application/json");
    CHECK(http::content_type_for("a.txt") == "text/plain; charset=utf-8");
    CHECK(http::content_type_for("a.png") == "image/png");
    CHECK(http::content_type_for("a.jpg") == "image/jpeg");
    CHECK(http::content_type_for("a.gif") == "image/gif");
    CHECK(http::content_type_for("a.svg") == "image/svg+xml");
    CHECK(http::content_type_for("a.wasm") == "application/wasm");
    CHECK(http::content_type_for("a.pdf") == "application/pdf");
    CHECK(http::content_type_for("archive.tar.gz") == "application/octet-stream");
    CHECK(http::content_type_for("no_extension") == "application/octet-stream");
    CHECK(http::content_type_for("dir.html/file") == "application/octet-stream");
    CHECK(http::content_type_for("trailing.") == "application/octet-stream");

    CHECK(http::imf_fixdate(784111777) == "Sun, 06 Nov 1994 08:49:37 GMT");
    CHECK(http::imf_fixdate(0) == "Thu, 01 Jan 1970 00:00:00 GMT");
    CHECK(http::reason_phrase(404) == "Not Found");
    CHECK(http::reason_phrase(431) == "Request Header Fields Too Large");
}
