// SPDX-License-Identifier: MIT
// http_server: a static-file HTTP/1.1 server (GET and HEAD, keep-alive, pipelining, single byte
// ranges) confined to one directory, with one executor.
//
//   http_server --port N --root DIR [--address HOST] [--access-log]
//               [--header-timeout-ms MS] [--idle-timeout-ms MS] [--send-timeout-ms MS]
//               [--confine openat2|realpath] [--large-file sendfile|splice|read]
//
// A multishot accept hands over connections; each connection is one coroutine that receives
// into its own buffer, parses the request heads in it (examples/http/parser.hpp) and answers
// them in order. A small file is read through the ring and sent with its head in one send; a
// large one goes out with sendfile(2) called from the loop (or, by option, spliced through a
// pipe or read and sent in chunks; docs/benchmarks.md has the figures that chose sendfile). SIGINT or SIGTERM (read through a signalfd)
// stops accepting, lets the responses in flight finish, closes idle connections and exits 0;
// a second signal ends the responses still in flight at once.
// docs/networking.md describes the limits, the timeouts and how paths are confined.

#include "http/parser.hpp"
#include "http/response.hpp"

#include <coil/coil.hpp>

#include "shutdown_signals.hpp"

#include <fmt/core.h>

#include <fcntl.h>
#include <linux/io_uring.h> // IORING_OP_OPENAT2 only: the SQE itself is coil::io::sqe
#include <linux/openat2.h>
#include <signal.h>
#include <poll.h>
#include <sys/sendfile.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <optional>
#include <span>
#include <stop_token>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

namespace net = coil::net;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

namespace {

// --- options ------------------------------------------------------------------------------

enum class confinement { openat2, realpath };
enum class large_file_method { sendfile, splice, read };

struct options {
    std::string host = "127.0.0.1";
    std::uint16_t port = 0;
    bool have_port = false;
    std::string root;
    bool access_log = false;
    std::chrono::milliseconds header_timeout{10'000};
    std::chrono::milliseconds idle_timeout{30'000};
    std::chrono::milliseconds send_timeout{30'000};
    confinement confine = confinement::openat2;
    large_file_method large_file = large_file_method::sendfile;
};

[[noreturn]] void usage(const char* why)
{
    if (why != nullptr) {
        fmt::print(stderr, "http_server: {}\n", why);
    }
    fmt::print(stderr,
               "usage: http_server --port N --root DIR [--address HOST] [--access-log]\n"
               "                   [--header-timeout-ms MS] [--idle-timeout-ms MS]\n"
               "                   [--send-timeout-ms MS] [--confine openat2|realpath]\n"
               "                   [--large-file sendfile|splice|read]\n"
               "  --port N               TCP port to listen on (0: any free port, printed)\n"
               "  --root DIR             directory whose files are served (never anything outside)\n"
               "  --address HOST         address to bind (default 127.0.0.1; [::1] for IPv6)\n"
               "  --access-log           one line per request on stdout\n"
               "  --header-timeout-ms    time to receive a whole request head (10000)\n"
               "  --idle-timeout-ms      time a connection may wait for a request (30000)\n"
               "  --send-timeout-ms      time one response's send (or, for large files, one\n"
               "                         wait for room in the socket) may take (30000)\n"
               "  --confine MODE         openat2 (default: RESOLVE_BENEATH, Linux 5.6) or\n"
               "                         realpath (the fallback for older kernels)\n"
               "  --large-file METHOD    how files over 64 KiB are sent: sendfile (default,\n"
               "                         sendfile(2) from the loop), splice (through a pipe,\n"
               "                         in the kernel's workers) or read (ring reads + sends)\n");
    std::exit(2);
}

template <class T>
T number(std::string_view text, const char* what)
{
    T value{};
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc{} || ptr != text.data() + text.size()) {
        usage((std::string(what) + " needs a number, not '" + std::string(text) + "'").c_str());
    }
    return value;
}

options parse_options(int argc, char** argv)
{
    options o;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        auto value = [&]() -> std::string_view {
            if (i + 1 >= argc) {
                usage((std::string(arg) + " needs a value").c_str());
            }
            return argv[++i];
        };
        if (arg == "--port") {
            o.port = number<std::uint16_t>(value(), "--port");
            o.have_port = true;
        } else if (arg == "--root") {
            o.root = value();
        } else if (arg == "--address") {
            o.host = value();
        } else if (arg == "--access-log") {
            o.access_log = true;
        } else if (arg == "--header-timeout-ms") {
            o.header_timeout = std::chrono::milliseconds(number<unsigned>(value(), "--header-timeout-ms"));
        } else if (arg == "--idle-timeout-ms") {
            o.idle_timeout = std::chrono::milliseconds(number<unsigned>(value(), "--idle-timeout-ms"));
        } else if (arg == "--send-timeout-ms") {
            o.send_timeout = std::chrono::milliseconds(number<unsigned>(value(), "--send-timeout-ms"));
        } else if (arg == "--confine") {
            const std::string_view mode = value();
            if (mode == "openat2") {
                o.confine = confinement::openat2;
            } else if (mode == "realpath") {
                o.confine = confinement::realpath;
            } else {
                usage("--confine takes openat2 or realpath");
            }
        } else if (arg == "--large-file") {
            const std::string_view method = value();
            if (method == "sendfile") {
                o.large_file = large_file_method::sendfile;
            } else if (method == "splice") {
                o.large_file = large_file_method::splice;
            } else if (method == "read") {
                o.large_file = large_file_method::read;
            } else {
                usage("--large-file takes sendfile, splice or read");
            }
        } else if (arg == "--help" || arg == "-h") {
            usage(nullptr);
        } else {
            usage(("unknown argument '" + std::string(arg) + "'").c_str());
        }
    }
    if (!o.have_port) {
        usage("--port is required");
    }
    if (o.root.empty()) {
        usage("--root is required");
    }
    if (o.header_timeout.count() == 0 || o.idle_timeout.count() == 0 || o.send_timeout.count() == 0) {
        usage("timeouts must be at least 1 ms");
    }
    return o;
}

// --- opening files beneath the root --------------------------------------------------------

// openat2(2) through the ring (IORING_OP_OPENAT2, Linux 5.6), which coil does not wrap: the
// kernel resolves `path` relative to `dirfd` and refuses, with EXDEV or ELOOP, any resolution
// that leaves it (`..`, an absolute symlink, a symlink pointing outside, a magic link).
// `path` and `how` are borrowed until the co_await completes.
struct openat2_op {
    static constexpr bool yields_descriptor = true;
    int dirfd;
    const char* path;
    const ::open_how* how;
    std::error_code prepare(coil::io::ring& r, std::uint64_t user_data) noexcept
    {
        return r.add_sqe(IORING_OP_OPENAT2, user_data, [&](coil::io::sqe& s) {
            s.fd = dirfd;
            s.addr = reinterpret_cast<std::uintptr_t>(path);
            s.len = sizeof(::open_how);
            s.off = reinterpret_cast<std::uintptr_t>(how); // the kernel reads `how` from addr2
        });
    }
    coil::result<int> complete(const coil::io::completion& c) const noexcept
    {
        if (c.result < 0) {
            return coil::io::error_from_result(c.result);
        }
        return c.result;
    }
};

// Shared by every connection; touched only on the executor's thread.
struct server_state {
    // --- set once at start-up ---
    options opts;
    http::limits limit;
    int root_fd = -1;          // O_PATH | O_DIRECTORY descriptor of --root
    std::string root_realpath; // for --confine realpath: every file must resolve beneath it
    // --- changed by the signal watcher, read by connections ---
    bool stopping = false;
    // Connections waiting for the first byte of a request (their receive is the only op they
    // have pending). At shutdown each gets shutdown(SHUT_RD), which completes that receive
    // with 0 (end of stream), so the connection ends without a response cut short.
    std::unordered_set<int> idle;
    // --- the Date field, formatted once per second ---
    std::time_t date_second = 0;
    std::string date_text;

    const std::string& date()
    {
        const std::time_t now = std::time(nullptr);
        if (now != date_second) {
            date_second = now;
            date_text = http::imf_fixdate(now);
        }
        return date_text;
    }
};

// Opens `relative` (already decoded and free of `..` segments) beneath the root for reading.
// O_NONBLOCK: opening a FIFO someone left in the root must not hang the worker that opens it;
// the caller clears it once it knows the file is a regular one.
coil::task<coil::result<coil::file>> open_beneath(server_state& srv, std::string relative)
{
    constexpr int flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY;
    if (srv.opts.confine == confinement::openat2) {
        ::open_how how{};
        how.flags = flags;
        how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
        auto fd = co_await coil::operation<openat2_op>({srv.root_fd, relative.c_str(), &how});
        if (!fd) {
            co_return fd.error();
        }
        co_return coil::file(*fd);
    }
    // The fallback: resolve every symlink, then require the result to lie beneath the root's
    // own resolved path. A symlink swapped in between the check and the open could still
    // escape (a race openat2 does not have); this mode is for kernels before 5.6.
    char resolved[PATH_MAX];
    const std::string full = srv.root_realpath + "/" + relative;
    if (::realpath(full.c_str(), resolved) == nullptr) {
        co_return std::error_code(errno, std::generic_category());
    }
    const std::string_view path(resolved);
    const std::string_view root = srv.root_realpath;
    const bool beneath = path == root || (path.size() > root.size() && path.starts_with(root) &&
                                          (root == "/" || path[root.size()] == '/'));
    if (!beneath) {
        co_return std::make_error_code(std::errc::permission_denied);
    }
    auto fd = co_await coil::openat(AT_FDCWD, resolved, flags);
    if (!fd) {
        co_return fd.error();
    }
    co_return coil::file(*fd);
}

// --- sending ----------------------------------------------------------------------------

// Sends all of `data` (one awaitable: coil re-queues the rest after a short send); the whole
// transfer may take at most `timeout`, so a client that reads nothing cannot hold the
// connection forever.
coil::task<bool> send_all(const net::stream_socket& conn, std::span<const std::byte> data,
                          std::chrono::milliseconds timeout, int flags = 0)
{
    auto sent = co_await net::send_all(conn.fd(), data, flags | MSG_NOSIGNAL).with_timeout(timeout);
    co_return static_cast<bool>(sent);
}

// Sends all of `data` one send at a time, `timeout` bounding each wait for room in the socket
// rather than the whole: a client that keeps reading is never cut off, however slowly it reads
// a large response (as with sendfile and splice, which wait for POLLOUT the same way).
coil::task<bool> send_steadily(const net::stream_socket& conn, std::span<const std::byte> data,
                               std::chrono::milliseconds timeout)
{
    while (!data.empty()) {
        auto sent = co_await net::send(conn.fd(), data, MSG_NOSIGNAL).with_timeout(timeout);
        if (!sent || *sent == 0)
            co_return false;
        data = data.subspan(*sent);
    }
    co_return true;
}

// Files larger than this go out by the --large-file method; smaller ones are read into the
// response's buffer behind the head and leave in one send.
constexpr std::uint64_t small_file_bytes = 64 * 1024;

// Bytes handed to one sendfile(2) or splice: a bound on how long one connection holds the loop
// (sendfile runs on the executor's thread) before others get a turn.
constexpr std::size_t large_file_step_bytes = 256 * 1024;

// sendfile(2) from the loop, on the connection's non-blocking socket (made so when the
// connection started): the kernel moves page-cache pages to the socket without a copy into
// user memory. When the socket is full, the connection waits for POLLOUT through the ring; a
// file page that is not cached is read synchronously, on the loop, as nginx does without aio.
coil::task<bool> sendfile_all(const net::stream_socket& conn, int file_fd, std::uint64_t first,
                              std::uint64_t length, std::chrono::milliseconds timeout)
{
    auto offset = static_cast<off_t>(first);
    while (length > 0) {
        const ssize_t n = ::sendfile(conn.fd(), file_fd, &offset,
                                     std::min<std::uint64_t>(length, large_file_step_bytes));
        if (n > 0) {
            length -= static_cast<std::uint64_t>(n);
            if (length > 0) {
                co_await coil::yield();
            }
            continue;
        }
        if (n == 0) {
            co_return false; // the file shrank: the promised length cannot be kept
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno != EAGAIN) {
            co_return false; // the client went away
        }
        auto ready = co_await coil::poll(conn.fd(), POLLOUT).with_timeout(timeout);
        if (!ready) {
            co_return false; // the client reads nothing: the send timeout
        }
    }
    co_return true;
}

// splice(2) through the ring: file -> a pipe of this response's own -> socket. Each splice runs
// in one of the kernel's workers, and every response in flight holds a pipe (two descriptors,
// counted against the per-user pipe limit).
coil::task<bool> splice_all(const net::stream_socket& conn, int file_fd, std::uint64_t first,
                            std::uint64_t length, std::chrono::milliseconds timeout)
{
    int pipe_fds[2];
    if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
        co_return false;
    }
    coil::file pipe_out(pipe_fds[0]); // closed on every path out
    coil::file pipe_in(pipe_fds[1]);
    std::uint64_t offset = first;
    while (length > 0) {
        const auto step = static_cast<std::uint32_t>(std::min<std::uint64_t>(length, 64 * 1024));
        auto in = co_await coil::splice(file_fd, offset, pipe_fds[1], coil::current_position, step,
                                        SPLICE_F_MOVE);
        if (!in || *in == 0) {
            co_return false;
        }
        offset += *in;
        length -= *in;
        for (std::size_t left = *in; left > 0;) {
            auto out = co_await coil::splice(pipe_fds[0], coil::current_position, conn.fd(),
                                             coil::current_position,
                                             static_cast<std::uint32_t>(left), SPLICE_F_MOVE)
                           .with_timeout(timeout);
            if (!out || *out == 0) {
                co_return false;
            }
            left -= *out;
        }
    }
    co_return true;
}

std::span<const std::byte> bytes_of(std::string_view s) noexcept
{
    return std::as_bytes(std::span(s.data(), s.size()));
}

// Starts a response head: status line, Date, Server, Connection when it is not the default.
std::string head_start(server_state& srv, int status, bool keep_alive, int version_minor)
{
    std::string head;
    head.reserve(256);
    head.append("HTTP/1.1 ").append(std::to_string(status)).append(" ");
    head.append(http::reason_phrase(status)).append("\r\n");
    head.append("Date: ").append(srv.date()).append("\r\n");
    head.append("Server: coil-http_server\r\n");
    if (!keep_alive) {
        head.append("Connection: close\r\n");
    } else if (version_minor == 0) {
        head.append("Connection: keep-alive\r\n");
    }
    return head;
}

struct response_outcome {
    int status = 0;
    std::uint64_t bytes = 0; // body bytes sent
    bool sent = false;       // false: the connection broke (or timed out) mid-response
    bool close = false;      // the answer said Connection: close although the request had not
};

// A short text response for an error (or 405, 416), whose body is its status line.
coil::task<response_outcome> send_error(const net::stream_socket& conn, server_state& srv,
                                        int status, bool keep_alive, int version_minor,
                                        bool head_only, std::string_view extra_fields = {})
{
    const std::string body =
        std::to_string(status) + " " + std::string(http::reason_phrase(status)) + "\n";
    std::string message = head_start(srv, status, keep_alive, version_minor);
    message.append("Content-Type: text/plain; charset=utf-8\r\n");
    message.append("Content-Length: ").append(std::to_string(body.size())).append("\r\n");
    message.append(extra_fields);
    message.append("\r\n");
    if (!head_only) {
        message.append(body);
    }
    const bool sent = co_await send_all(conn, bytes_of(message), srv.opts.send_timeout);
    co_return response_outcome{status, head_only ? 0 : body.size(), sent};
}

// Bytes read from the file per send for large files (a small file goes out in the same send
// as the head).
constexpr std::size_t file_chunk_bytes = 256 * 1024;

// Answers one parsed request. `keep_alive` is already false when the connection will close.
coil::task<response_outcome> respond(const net::stream_socket& conn, server_state& srv,
                                     const http::request& req, bool keep_alive)
{
    const int version = req.version_minor;
    const bool is_head = req.method == "HEAD";
    if (req.method != "GET" && !is_head) {
        co_return co_await send_error(conn, srv, 405, keep_alive, version, false,
                                      "Allow: GET, HEAD\r\n");
    }
    const http::target_path target = http::resolve_target(req.target);
    if (target.error == http::target_error::bad_syntax) {
        // Like every 400, it ends the connection: what follows a malformed request is not
        // to be trusted as the next one.
        response_outcome out = co_await send_error(conn, srv, 400, false, version, is_head);
        out.close = true;
        co_return out;
    }
    if (target.error == http::target_error::refused) {
        co_return co_await send_error(conn, srv, 404, keep_alive, version, is_head);
    }

    // Every refusal below is a plain 404: a client learns nothing about what lies outside
    // the root, nor why a name was refused.
    std::string name = target.relative;
    auto opened = co_await open_beneath(srv, name);
    if (!opened) {
        co_return co_await send_error(conn, srv, 404, keep_alive, version, is_head);
    }
    coil::file f = std::move(*opened);
    // fstat(2) from the loop rather than IORING_OP_STATX: the kernel runs every STATX in one of
    // its workers (a thread hop per request), while an open descriptor's metadata is in memory.
    struct ::stat info {};
    bool have_info = ::fstat(f.native_handle(), &info) == 0;
    if (have_info && S_ISDIR(info.st_mode)) {
        name = (name == "." ? std::string() : (name.back() == '/' ? name : name + "/")) + "index.html";
        opened = co_await open_beneath(srv, name);
        if (!opened) {
            co_return co_await send_error(conn, srv, 404, keep_alive, version, is_head);
        }
        f = std::move(*opened);
        have_info = ::fstat(f.native_handle(), &info) == 0;
    }
    if (!have_info || !S_ISREG(info.st_mode)) {
        co_return co_await send_error(conn, srv, 404, keep_alive, version, is_head);
    }
    // A regular file: reads may block in the kernel's worker as usual (with O_NONBLOCK a
    // read of an uncached page would fail with EAGAIN instead).
    const int fl = ::fcntl(f.native_handle(), F_GETFL);
    if (fl < 0 || ::fcntl(f.native_handle(), F_SETFL, fl & ~O_NONBLOCK) < 0) {
        response_outcome failed = co_await send_error(conn, srv, 500, false, version, is_head);
        failed.sent = false; // said Connection: close: end the connection
        co_return failed;
    }

    const std::uint64_t size = static_cast<std::uint64_t>(info.st_size);
    http::range_result range;
    // Range applies to GET only (RFC 9110 14.2); with If-Range this server, which sends no
    // validators, cannot tell whether the client's copy is current, so it sends everything.
    if (auto value = req.header("range"); value && !is_head && !req.header("if-range")) {
        range = http::parse_range(*value, size);
    }
    if (range.kind == http::range_kind::unsatisfiable) {
        co_return co_await send_error(conn, srv, 416, keep_alive, version, false,
                                      "Content-Range: bytes */" + std::to_string(size) + "\r\n");
    }
    const bool partial = range.kind == http::range_kind::partial;
    const std::uint64_t first = partial ? range.range.first : 0;
    const std::uint64_t length = partial ? range.range.length() : size;
    const int status = partial ? 206 : 200;

    std::string head = head_start(srv, status, keep_alive, version);
    head.append("Content-Type: ").append(http::content_type_for(name)).append("\r\n");
    head.append("Content-Length: ").append(std::to_string(length)).append("\r\n");
    head.append("Accept-Ranges: bytes\r\n");
    if (partial) {
        head.append(fmt::format("Content-Range: bytes {}-{}/{}\r\n", range.range.first,
                                range.range.last, size));
    }
    head.append("\r\n");
    if (is_head || length == 0) {
        const bool sent = co_await send_all(conn, bytes_of(head), srv.opts.send_timeout);
        co_return response_outcome{status, 0, sent};
    }

    if (length > small_file_bytes && srv.opts.large_file != large_file_method::read) {
        response_outcome out{status, 0, false};
        if (!co_await send_all(conn, bytes_of(head), srv.opts.send_timeout, MSG_MORE)) {
            co_return out;
        }
        // An if, not a conditional of two co_awaits (g++ 12 miscompiles those: runtime.md).
        if (srv.opts.large_file == large_file_method::sendfile)
            out.sent = co_await sendfile_all(conn, f.native_handle(), first, length,
                                             srv.opts.send_timeout);
        else
            out.sent = co_await splice_all(conn, f.native_handle(), first, length,
                                           srv.opts.send_timeout);
        out.bytes = out.sent ? length : 0;
        co_return out;
    }

    // The head and the first chunk share one buffer and one send; a small file is one send.
    // Left uninitialised (the reads fill what is sent): zeroing it cost more user-space
    // instructions than the rest of a 4 KiB response together.
    const std::size_t buffer_size = head.size() + std::min<std::uint64_t>(length, file_chunk_bytes);
    const std::unique_ptr<std::byte[]> storage(new std::byte[buffer_size]);
    const std::span<std::byte> buffer(storage.get(), buffer_size);
    std::memcpy(buffer.data(), head.data(), head.size());
    std::size_t used = head.size();
    std::uint64_t offset = first;
    std::uint64_t remaining = length;
    response_outcome out{status, 0, false};
    while (remaining > 0) {
        const std::size_t want = static_cast<std::size_t>(
            std::min<std::uint64_t>(remaining, buffer.size() - used));
        const std::size_t fill_to = used + want;
        while (used < fill_to) {
            auto n = co_await f.read_at(buffer.subspan(used, fill_to - used), offset);
            if (!n || *n == 0) {
                // The file shrank under us: the promised Content-Length cannot be kept, so
                // the connection must end (the caller closes it: `sent` stays false).
                co_return out;
            }
            used += *n;
            offset += *n;
            remaining -= *n;
        }
        if (!co_await send_steadily(conn, buffer.first(used), srv.opts.send_timeout)) {
            co_return out;
        }
        out.bytes += want;
        used = 0;
    }
    out.sent = true;
    co_return out;
}

// --- connections --------------------------------------------------------------------------

// The per-connection receive buffer. Each connection receives into its own buffer rather than
// through a shared buffer_pool stream: a request head may span several receives and must be
// kept whole until parsed, so pooled buffers would be copied into a per-connection buffer
// anyway; and a plain receive takes `with_timeout`, which is how the header and idle timeouts
// are enforced (a stream's `next()` has no deadline). The price is this buffer per open
// connection, idle or not.
constexpr std::size_t receive_buffer_bytes = 16 * 1024;
static_assert(receive_buffer_bytes > http::limits{}.max_head_bytes,
              "a head at the size limit must fit, with room to see that it is too large");

void write_access_log(std::string_view method, std::string_view target, int status,
                      std::uint64_t bytes, clock_type::duration took)
{
    // The parser admits only visible ASCII in a target; quote and escape what would break
    // the line's syntax.
    std::string quoted;
    for (char c : target) {
        if (c == '"' || c == '\\') {
            quoted.push_back('\\');
        }
        quoted.push_back(c);
    }
    fmt::print("access method={} target=\"{}\" status={} bytes={} us={}\n",
               method.empty() ? "-" : method, quoted, status, bytes,
               std::chrono::duration_cast<std::chrono::microseconds>(took).count());
    std::fflush(stdout);
}

// Ends a connection. With `drain`, the server's side is shut first and what the client still
// sends is read and dropped for a moment: closing a socket with unread bytes makes the kernel
// send a reset, which may destroy the response before the client has read it.
coil::task<void> finish(net::stream_socket& conn, bool drain)
{
    if (drain) {
        (void)co_await conn.shutdown(SHUT_WR);
        std::array<std::byte, 4096> scratch;
        const auto until = clock_type::now() + 1s;
        for (std::size_t dropped = 0; dropped < 256 * 1024;) {
            const auto left = until - clock_type::now();
            if (left <= clock_type::duration::zero()) {
                break;
            }
            auto n = co_await conn.receive(scratch).with_timeout(left);
            if (!n || *n == 0) {
                break;
            }
            dropped += *n;
        }
    }
    (void)co_await conn.close();
}

coil::task<void> serve_connection(net::stream_socket conn, server_state& srv)
{
    (void)conn.set_no_delay();
    if (srv.opts.large_file == large_file_method::sendfile) {
        // sendfile(2) runs on the loop: it must never wait for room in the socket. The ring's
        // own sends and receives are unaffected by O_NONBLOCK.
        const int fl = ::fcntl(conn.fd(), F_GETFL);
        if (fl < 0 || ::fcntl(conn.fd(), F_SETFL, fl | O_NONBLOCK) < 0) {
            co_return; // out of resources: the connection ends (closed by its destructor)
        }
    }
    std::vector<char> buffer(receive_buffer_bytes);
    std::size_t filled = 0;
    clock_type::time_point head_deadline{};
    bool drain = false; // at the end: unread bytes may remain, or an error was answered

    for (;;) {
        const http::parse_result parsed =
            http::parse_request(std::string_view(buffer.data(), filled), srv.limit);

        if (parsed.status == http::parse_status::incomplete) {
            if (filled == 0) {
                // Between requests: the idle timeout applies, and shutdown may end the wait.
                if (srv.stopping) {
                    break;
                }
                srv.idle.insert(conn.fd());
                auto n = co_await conn.receive(std::as_writable_bytes(std::span(buffer)))
                             .with_timeout(srv.opts.idle_timeout);
                srv.idle.erase(conn.fd());
                if (!n || *n == 0) {
                    break; // idle timeout, the client left, an error, or shutdown
                }
                filled = *n;
                head_deadline = clock_type::now() + srv.opts.header_timeout;
                continue;
            }
            // Inside a head: the whole head must arrive before its deadline, however slowly
            // the bytes trickle in.
            const auto left = head_deadline - clock_type::now();
            auto n = co_await conn.receive(std::as_writable_bytes(std::span(buffer).subspan(filled)))
                         .with_timeout(std::max<clock_type::duration>(left, 1ms));
            if (!n && n.error() == std::errc::timed_out) {
                const auto started = clock_type::now();
                auto out = co_await send_error(conn, srv, 408, false, 1, false);
                if (srv.opts.access_log) {
                    write_access_log("-", "-", 408, out.bytes, clock_type::now() - started);
                }
                drain = true;
                break;
            }
            if (!n || *n == 0) {
                break;
            }
            filled += *n;
            continue;
        }

        const auto started = clock_type::now();
        if (parsed.status == http::parse_status::failed) {
            auto out = co_await send_error(conn, srv, parsed.error_status, false, 1, false);
            if (srv.opts.access_log) {
                write_access_log("-", "-", parsed.error_status, out.bytes,
                                 clock_type::now() - started);
            }
            drain = true;
            break;
        }

        const http::request& req = parsed.value;
        // This server reads no request bodies: a request with one is answered, and the
        // connection closed instead of reading past the body to the next request.
        const bool has_body = req.content_length > 0 || req.chunked;
        const bool keep_alive = req.keep_alive() && !has_body && !srv.stopping;
        const response_outcome out = co_await respond(conn, srv, req, keep_alive);
        if (srv.opts.access_log) {
            write_access_log(req.method, req.target, out.status, out.bytes,
                             clock_type::now() - started);
        }
        if (!out.sent) {
            break; // the connection broke, or a response was cut short: nothing more on it
        }
        if (!keep_alive || out.close || srv.stopping) {
            drain = has_body || filled > parsed.consumed;
            break;
        }
        // Pipelining: what follows this head is the next request, answered next, in order.
        std::memmove(buffer.data(), buffer.data() + parsed.consumed, filled - parsed.consumed);
        filled -= parsed.consumed;
        if (filled > 0) {
            head_deadline = clock_type::now() + srv.opts.header_timeout;
        }
    }
    co_await finish(conn, drain);
}

// --- the server ---------------------------------------------------------------------------

coil::task<void> accept_connections(net::listener& server, coil::nursery& n, server_state& srv)
{
    auto connections = server.connections();
    while (auto conn = co_await connections.next()) {
        if (!*conn) {
            if ((*conn).error() == std::errc::operation_canceled) {
                break;
            }
            // Out of descriptors or memory: back off a little, keep serving.
            (void)co_await coil::sleep_for(10ms);
            continue;
        }
        n.spawn(serve_connection(std::move(**conn), srv));
    }
}

// Waits for SIGINT or SIGTERM, then starts the graceful shutdown; a second signal (an operator
// who will not wait for a slow download) stops every connection.
coil::task<void> watch_signals(int fd, server_state& srv, std::stop_source& accepting,
                               std::stop_source& connections)
{
    auto signal = co_await coil_examples::next_shutdown_signal(fd);
    if (!signal) {
        co_return; // cancelled: the server ended on its own
    }
    fmt::print(stderr,
               "http_server: signal {}, finishing responses in flight (a second signal ends "
               "them now)\n",
               *signal);
    srv.stopping = true;
    accepting.request_stop();
    for (int fd_of_idle : srv.idle) {
        ::shutdown(fd_of_idle, SHUT_RD);
    }
    signal = co_await coil_examples::next_shutdown_signal(fd);
    if (!signal) {
        co_return; // cancelled: the last response finished
    }
    fmt::print(stderr, "http_server: signal {} again, ending every connection now\n", *signal);
    connections.request_stop();
}

coil::task<int> serve(server_state& srv, int signal_fd)
{
    coil::executor& ex = *coil::executor::current();
    const options& o = srv.opts;
    auto at = net::address::parse(o.host + ":" + std::to_string(o.port));
    if (!at) {
        fmt::print(stderr, "http_server: bad address '{}': {}\n", o.host, at.error().message());
        co_return 2;
    }
    auto server = net::listener::bind(*at);
    if (!server) {
        fmt::print(stderr, "http_server: cannot listen on {}: {}{}\n", at->to_string(),
                   server.error().message(),
                   server.error() == std::errc::address_in_use
                       ? " (another process uses the port: pick another with --port)"
                       : "");
        co_return 1;
    }
    fmt::print("http_server: listening on {}, serving {}\n", server->local_address()->to_string(),
               o.root);
    std::fflush(stdout);

    std::stop_source accepting;
    std::stop_source connections;
    std::stop_source watching;
    auto watcher = ex.spawn(coil::with_stop_token(
        watching.get_token(), watch_signals(signal_fd, srv, accepting, connections)));
    // Connections live in the nursery, outside the accept loop's stop token: stopping the
    // accepts leaves the responses in flight alone; stopping the nursery ends them.
    co_await coil::with_stop_token(
        connections.get_token(), coil::with_nursery([&](coil::nursery& n) -> coil::task<void> {
            co_await coil::with_stop_token(accepting.get_token(),
                                           accept_connections(*server, n, srv));
            *server = net::listener(); // closed: new connections are refused from now on
        }));
    watching.request_stop();
    co_await watcher;
    fmt::print(stderr, "http_server: stopped\n");
    co_return 0;
}

} // namespace

int main(int argc, char** argv)
{
    server_state srv;
    srv.opts = parse_options(argc, argv);

    srv.root_fd = ::open(srv.opts.root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (srv.root_fd < 0) {
        const int error = errno;
        if (error == ENOENT) {
            fmt::print(stderr, "http_server: --root '{}' does not exist\n", srv.opts.root);
        } else if (error == ENOTDIR) {
            fmt::print(stderr, "http_server: --root '{}' is not a directory\n", srv.opts.root);
        } else {
            fmt::print(stderr, "http_server: cannot open --root '{}': {}\n", srv.opts.root,
                       std::strerror(error));
        }
        return 1;
    }
    char resolved[PATH_MAX];
    if (::realpath(srv.opts.root.c_str(), resolved) == nullptr) {
        fmt::print(stderr, "http_server: cannot resolve --root '{}': {}\n", srv.opts.root,
                   std::strerror(errno));
        return 1;
    }
    srv.root_realpath = resolved;

    const int signal_fd = coil_examples::open_shutdown_signals("http_server");
    if (signal_fd < 0)
        return 1;
    try {
        return coil::run(serve(srv, signal_fd));
    } catch (const std::exception& e) {
        fmt::print(stderr, "http_server: {}\n", e.what());
        return 1;
    }
}
