// SPDX-License-Identifier: MIT
// echo_peer_asio: the Boost.Asio echo server bench_echo compares coil's echo_server with.
//
//   echo_peer_asio --port N
//
// Asio's own idiom for a coroutine server: C++20 coroutines (awaitable), one io_context on one
// thread, its io_uring backend (built with BOOST_ASIO_HAS_IO_URING and BOOST_ASIO_DISABLE_EPOLL,
// see meson.build), one coroutine per connection that reads some bytes into a 4 KiB buffer in
// its frame and writes them all back. Asio has no provided-buffer receive, so each connection
// owns its buffer; results come back as error codes (as_tuple), not exceptions, so a reset
// connection costs no throw. Listens on 127.0.0.1 and prints "listening on 127.0.0.1:PORT";
// SIGTERM ends it.

#include <boost/asio.hpp>

#include <array>
#include <charconv>
#include <cstdio>
#include <string_view>

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

constexpr auto no_throw = asio::as_tuple(asio::use_awaitable);

asio::awaitable<void> echo(tcp::socket socket)
{
    std::array<char, 4096> data;
    for (;;) {
        auto [read_error, n] = co_await socket.async_read_some(asio::buffer(data), no_throw);
        if (read_error)
            co_return; // end of stream or a reset
        auto [write_error, written] =
            co_await asio::async_write(socket, asio::buffer(data.data(), n), no_throw);
        if (write_error)
            co_return;
    }
}

asio::awaitable<void> accept_loop(tcp::acceptor& acceptor)
{
    for (;;) {
        auto [error, socket] = co_await acceptor.async_accept(no_throw);
        if (error) {
            if (error == asio::error::operation_aborted)
                co_return;
            continue; // out of descriptors for a moment: keep serving
        }
        asio::co_spawn(acceptor.get_executor(), echo(std::move(socket)), asio::detached);
    }
}

} // namespace

int main(int argc, char** argv)
{
    unsigned short port = 0;
    if (argc == 3 && std::string_view(argv[1]) == "--port") {
        const std::string_view text = argv[2];
        auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), port);
        if (ec != std::errc{} || ptr != text.data() + text.size()) {
            std::fprintf(stderr, "echo_peer_asio: bad port '%s'\n", argv[2]);
            return 2;
        }
    } else if (argc != 1) {
        std::fprintf(stderr, "usage: echo_peer_asio --port N\n");
        return 2;
    }
    try {
        // Concurrency hint 1: one thread runs the context, so Asio may leave out its locking.
        asio::io_context context(1);
        tcp::acceptor acceptor(context,
                               tcp::endpoint(asio::ip::make_address_v4("127.0.0.1"), port));
        // TCP_NODELAY, inherited by accepted connections, as in every server bench_echo runs.
        acceptor.set_option(tcp::no_delay(true));
        asio::signal_set signals(context, SIGINT, SIGTERM);
        signals.async_wait([&](const boost::system::error_code&, int) { context.stop(); });
        std::printf("echo_peer_asio: listening on 127.0.0.1:%u\n",
                    static_cast<unsigned>(acceptor.local_endpoint().port()));
        std::fflush(stdout);
        asio::co_spawn(context, accept_loop(acceptor), asio::detached);
        context.run();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "echo_peer_asio: %s\n", e.what());
        return 1;
    }
    return 0;
}
