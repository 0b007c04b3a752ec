// SPDX-License-Identifier: MIT
// echo_server: echoes every byte back, on any number of connections, with one executor.
//
//   echo_server --port N [--address HOST] [--buffers COUNT] [--buffer-size BYTES]
//               [--incremental | --bundles] [--publish-limit N] [--send-timeout-ms MS]
//
// The server path io_uring was made for: a multishot accept hands over connections, and each
// connection has one multishot receive pending over a shared provided-buffer pool, so an idle
// connection holds no buffer. Each received buffer is sent back and returned to the pool.
// SIGINT or SIGTERM (read through a signalfd) stops accepting, ends every connection and
// exits 0 once the kernel holds nothing of ours.

#include <coil/coil.hpp>

#include "shutdown_signals.hpp"

#include <fmt/core.h>

#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <span>
#include <stop_token>
#include <string>
#include <string_view>

namespace net = coil::net;
using namespace std::chrono_literals;

namespace {

struct options {
    std::string host = "127.0.0.1";
    std::uint16_t port = 0;
    bool have_port = false;
    unsigned buffers = 4096;
    std::size_t buffer_size = 4096;
    bool incremental = false;
    bool bundles = false;
    unsigned publish_limit = 64; // buffer_pool_options::initial_publish_limit
    std::chrono::milliseconds send_timeout{0}; // 0: sends wait as long as the peer does
};

[[noreturn]] void usage(const char* why)
{
    if (why != nullptr)
        fmt::print(stderr, "echo_server: {}\n", why);
    fmt::print(stderr, "usage: echo_server --port N [--address HOST] [--buffers COUNT] "
                       "[--buffer-size BYTES] [--incremental | --bundles]\n"
                       "                   [--publish-limit N] [--send-timeout-ms MS]\n"
                       "  --port N          TCP port to listen on (0: any free port, printed)\n"
                       "  --address HOST    address to bind (default 127.0.0.1; [::1] for IPv6)\n"
                       "  --buffers COUNT   provided receive buffers, a power of two (4096)\n"
                       "  --buffer-size N   bytes per receive buffer (4096)\n"
                       "  --incremental     receives take only the bytes they need from a buffer\n"
                       "                    (Linux 6.12): use fewer, larger buffers\n"
                       "  --bundles         one receive completion may fill several buffers\n"
                       "                    (Linux 6.10; plain receives on older kernels)\n"
                       "  --publish-limit N buffers the kernel holds at first (64; 0: all); it\n"
                       "                    doubles whenever receives find them used up\n"
                       "  --send-timeout-ms MS  end a connection whose peer has not made room\n"
                       "                    for its echo in MS (default 0: wait for ever). The\n"
                       "                    pool is shared: a peer that sends but never reads\n"
                       "                    holds buffers while its echo waits\n");
    std::exit(2);
}

template <class T>
T number(std::string_view text, const char* what)
{
    T value{};
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc{} || ptr != text.data() + text.size())
        usage((std::string(what) + " needs a number, not '" + std::string(text) + "'").c_str());
    return value;
}

options parse(int argc, char** argv)
{
    options o;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        auto value = [&]() -> std::string_view {
            if (i + 1 >= argc)
                usage((std::string(arg) + " needs a value").c_str());
            return argv[++i];
        };
        if (arg == "--port") {
            o.port = number<std::uint16_t>(value(), "--port");
            o.have_port = true;
        } else if (arg == "--address") {
            o.host = value();
        } else if (arg == "--buffers") {
            o.buffers = number<unsigned>(value(), "--buffers");
        } else if (arg == "--buffer-size") {
            o.buffer_size = number<std::size_t>(value(), "--buffer-size");
        } else if (arg == "--incremental") {
            o.incremental = true;
        } else if (arg == "--bundles") {
            o.bundles = true;
        } else if (arg == "--publish-limit") {
            o.publish_limit = number<unsigned>(value(), "--publish-limit");
        } else if (arg == "--send-timeout-ms") {
            o.send_timeout = std::chrono::milliseconds(number<unsigned>(value(), "--send-timeout-ms"));
        } else if (arg == "--help" || arg == "-h") {
            usage(nullptr);
        } else {
            usage(("unknown argument '" + std::string(arg) + "'").c_str());
        }
    }
    if (!o.have_port)
        usage("--port is required");
    if (o.buffers == 0 || (o.buffers & (o.buffers - 1)) != 0 || o.buffers > 32768)
        usage("--buffers must be a power of two from 1 to 32768");
    if (o.buffer_size == 0)
        usage("--buffer-size must be at least 1");
    if (o.incremental && o.bundles)
        usage("--incremental and --bundles do not go together (bundles need whole buffers)");
    return o;
}

// `op` with a deadline `d` from its co_await, or none when `d` is 0. Made in a statement of its
// own and then awaited, it keeps one operation in the coroutine frame: `cond ? co_await a :
// co_await b.with_timeout(d)` kept two, and so does `co_await with_optional_timeout(a, d)`
// (the argument is a temporary of the full expression that suspends). Every idle
// connection's frame paid for the second.
template <class Op>
coil::operation<Op> with_optional_timeout(coil::operation<Op>&& op, std::chrono::milliseconds d)
{
    if (d.count() == 0)
        return std::move(op);
    return std::move(op).with_timeout(d);
}

// One connection: every chunk received is sent back, in order. With a send timeout, a peer that
// leaves its echo unread that long loses its connection (and the buffers it held).
coil::task<void> echo(net::stream_socket conn, net::buffer_pool& pool,
                      std::chrono::milliseconds send_timeout)
{
    auto chunks = conn.receive(pool);
    while (auto chunk = co_await chunks.next()) {
        if (!*chunk || (*chunk)->empty())
            break; // an error (the peer reset) or the end: this connection only
        const auto bytes = (*chunk)->bytes();
        auto send = with_optional_timeout(conn.send_all(bytes), send_timeout);
        if (!co_await send)
            break;
    }
}

// The same through receive bundles: each bundle's buffers are sent back in order.
coil::task<void> echo_bundles(net::stream_socket conn, net::buffer_pool& pool,
                              std::chrono::milliseconds send_timeout)
{
    auto bundles = conn.receive_bundles(pool);
    while (auto bundle = co_await bundles.next()) {
        if (!*bundle || (*bundle)->empty())
            break;
        // Its buffers gathered: one sendmsg per 16.
        auto send = with_optional_timeout(conn.send_all(**bundle), send_timeout);
        if (!co_await send)
            break;
    }
}

// Waits for SIGINT or SIGTERM, then asks everything to stop.
coil::task<void> watch_signals(int fd, std::stop_source& stop)
{
    if (const auto signal = co_await coil_examples::next_shutdown_signal(fd))
        fmt::print(stderr, "echo_server: signal {}, shutting down\n", *signal);
    stop.request_stop();
}

coil::task<int> serve(const options& o, int signal_fd)
{
    coil::executor& ex = *coil::executor::current();
    auto at = net::address::parse(o.host.front() == '[' ? o.host + ":" + std::to_string(o.port)
                                                         : o.host + ":" + std::to_string(o.port));
    if (!at) {
        fmt::print(stderr, "echo_server: bad address '{}': {}\n", o.host, at.error().message());
        co_return 2;
    }
    // TCP_NODELAY for every connection: a message that arrived in several chunks goes back in
    // several sends, and Nagle's algorithm would hold each later one until the peer's ACK.
    auto server = net::listener::bind(*at, net::listen_options{.no_delay = true});
    if (!server) {
        fmt::print(stderr, "echo_server: cannot listen on {}: {}{}\n", at->to_string(),
                   server.error().message(),
                   server.error() == std::errc::address_in_use
                       ? " (another process uses the port: pick another with --port)"
                       : "");
        co_return 1;
    }
    net::buffer_pool pool(ex, o.buffers, o.buffer_size,
                          net::buffer_pool_options{.incremental = o.incremental,
                                                   .initial_publish_limit = o.publish_limit});
    fmt::print("echo_server: listening on {}\n", server->local_address()->to_string());
    std::fflush(stdout);
    std::stop_source stop;
    auto watcher = ex.spawn(watch_signals(signal_fd, stop));
    co_await coil::with_stop_token(stop.get_token(), coil::with_nursery([&](coil::nursery& n)
                                                                             -> coil::task<void> {
        auto connections = server->connections();
        while (auto conn = co_await connections.next()) {
            if (!*conn) {
                if ((*conn).error() == std::errc::operation_canceled)
                    break;
                // Out of descriptors or memory: back off a little, keep serving.
                (void)co_await coil::sleep_for(10ms);
                continue;
            }
            if (o.bundles)
                n.spawn(echo_bundles(std::move(**conn), pool, o.send_timeout));
            else
                n.spawn(echo(std::move(**conn), pool, o.send_timeout));
        }
    }));
    co_await watcher;
    co_return 0;
}

} // namespace

int main(int argc, char** argv)
{
    const options o = parse(argc, argv);
    const int signal_fd = coil_examples::open_shutdown_signals("echo_server");
    if (signal_fd < 0)
        return 1;
    try {
        return coil::run(serve(o, signal_fd));
    } catch (const std::exception& e) {
        fmt::print(stderr, "echo_server: {}\n", e.what());
        return 1;
    }
}
