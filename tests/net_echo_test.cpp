// SPDX-License-Identifier: MIT
// An echo server built the way examples/echo_server.cpp is (multishot accept, one multishot
// receive per connection over a shared buffer pool), under load: 10,000 idle connections
// while 10 active ones are echoed, many concurrent connections with random message sizes,
// half-closes, and peers that reset mid-stream.

#include "net_test_support.hpp"
#include "runtime_test_support.hpp"
#include "test_executor.hpp"

#include <coil/coil.hpp>

#include <catch2/catch_test_macros.hpp>

#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include <random>
#include <stop_token>
#include <vector>

namespace net = coil::net;
using coil_test::bytes_of;

namespace {


std::vector<std::byte> message(std::size_t connection, std::size_t index, std::size_t size)
{
    std::vector<std::byte> m(size);
    for (std::size_t i = 0; i < size; ++i)
        m[i] = static_cast<std::byte>((connection * 7 + index * 13 + i) & 0xff);
    return m;
}

// Sends `count` messages of random sizes up to `max_size` and checks each echo.
coil::task<bool> talk(net::address at, std::size_t id, std::size_t count, std::size_t max_size)
{
    auto c = co_await net::stream_socket::connect(at);
    if (!c)
        co_return false;
    std::mt19937 rng(static_cast<unsigned>(id));
    std::vector<std::byte> back(max_size);
    for (std::size_t i = 0; i < count; ++i) {
        const auto m = message(id, i, 1 + rng() % max_size);
        auto sent = co_await c->send_all(m);
        if (!sent)
            co_return false;
        std::size_t got = 0;
        while (got < m.size()) {
            auto n = co_await c->receive(std::span(back).subspan(got, m.size() - got));
            if (!n || *n == 0)
                co_return false;
            got += *n;
        }
        if (!std::equal(m.begin(), m.end(), back.begin()))
            co_return false;
    }
    auto shut = co_await c->shutdown();
    std::array<std::byte, 16> rest;
    auto end = co_await c->receive(rest); // the server ends its side after our half-close
    co_return shut.ok() && end.ok() && *end == 0;
}

bool raise_fd_limit(rlim_t wanted)
{
    rlimit lim{};
    if (::getrlimit(RLIMIT_NOFILE, &lim) != 0)
        return false;
    if (lim.rlim_cur >= wanted)
        return true;
    if (lim.rlim_max < wanted)
        lim.rlim_max = wanted; // needs CAP_SYS_RESOURCE
    lim.rlim_cur = wanted;
    return ::setrlimit(RLIMIT_NOFILE, &lim) == 0;
}

} // namespace

namespace {

/// How an echo load runs: the pool the server receives over, how it receives, the clients.
struct echo_load {
    unsigned buffers;
    std::size_t buffer_size;
    net::buffer_pool_options pool_options{};
    bool bundles = false;
    std::size_t clients = 100;
    std::size_t max_message = 64 * 1024;
    std::size_t first_seed = 0;
};

/// What an echo load saw: clients whose every byte came back, and the pool afterwards.
struct echo_outcome {
    std::size_t good_clients = 0;
    std::size_t accepted = 0;
    unsigned lent_after = 1;
    unsigned available_after = 0;
    std::size_t in_flight_after = 1;
};

/// Runs the in-process echo server against `load.clients` clients, each sending 20 messages
/// of random sizes, and reports what came back.
echo_outcome run_echo_load(const echo_load& load)
{
    REQUIRE(raise_fd_limit(2048));
    auto server = net::listener::bind(net::address::loopback_v4(0));
    REQUIRE(server);
    const auto at = *server->local_address();
    coil::executor ex(coil_test::executor_options());
    echo_outcome out;
    auto body = [&]() -> coil::task<std::size_t> {
        net::buffer_pool pool(ex, load.buffers, load.buffer_size, load.pool_options);
        std::stop_source stop;
        auto server_task = ex.spawn(
            coil_test::serve_echo(*server, pool, stop.get_token(), {}, load.bundles));
        std::vector<coil::task<bool>> clients;
        for (std::size_t i = 0; i < load.clients; ++i)
            clients.push_back(talk(at, load.first_seed + i, 20, load.max_message));
        auto results = co_await coil::when_all(std::move(clients));
        stop.request_stop();
        out.accepted = co_await server_task;
        out.lent_after = pool.lent();
        out.available_after = pool.available();
        co_return static_cast<std::size_t>(std::count(results.begin(), results.end(), true));
    };
    out.good_clients = ex.run(body());
    out.in_flight_after = ex.in_flight();
    return out;
}

/// Every client got every byte back, every connection was accepted, and afterwards the pool
/// has every buffer back with the kernel (none lent, none lost) and nothing is in flight.
void check_all_echoed(const echo_outcome& out, std::size_t clients, unsigned buffers)
{
    CHECK(out.good_clients == clients);
    CHECK(out.accepted == clients);
    CHECK(out.lent_after == 0);
    CHECK(out.available_after == buffers);
    CHECK(out.in_flight_after == 0);
}

} // namespace

TEST_CASE("net: 200 concurrent connections, each sending 20 messages of random sizes up to 64 "
          "KiB, get every byte back",
          "[net][echo]")
{
    const echo_outcome out = run_echo_load({.buffers = 256, .buffer_size = 16 * 1024,
                                            .clients = 200});
    check_all_echoed(out, 200, 256);
}

TEST_CASE("net: 100 connections' messages share the buffers of an incremental pool (8 x 64 "
          "KiB) and every byte comes back",
          "[net][echo][incremental]")
{
    if (!coil_test::incremental_buffers_supported())
        SKIP("this kernel has no incremental buffer consumption (Linux 6.12)");
    const echo_outcome out = run_echo_load({.buffers = 8, .buffer_size = 64 * 1024,
                                            .pool_options = {.incremental = true},
                                            .max_message = 16 * 1024, .first_seed = 1000});
    // Every buffer is back with the kernel, still filling or full and given back.
    check_all_echoed(out, 100, 8);
}

TEST_CASE("net: 100 connections echoed through receive bundles get every byte back",
          "[net][echo][bundle]")
{
    // On a kernel without bundles each bundle holds one buffer: the same test, still valid.
    const echo_outcome out = run_echo_load({.buffers = 256, .buffer_size = 4096,
                                            .bundles = true, .first_seed = 2000});
    check_all_echoed(out, 100, 256);
}

TEST_CASE("net: 10,000 idle connections stay open while 10 active ones are echoed, on a 64-entry "
          "ring",
          "[net][echo][scale]")
{
    // The idle clients live in a child process: a process may hold 20,000 descriptors here, and
    // the server's 10,000 plus the clients' 10,000 would not fit in one.
    constexpr std::size_t idle = 10'000;
    if (!raise_fd_limit(idle + 512))
        SKIP("cannot raise RLIMIT_NOFILE to " << idle + 512);
    auto server = net::listener::bind(net::address::loopback_v4(0), {.backlog = 16384});
    REQUIRE(server);
    const auto at = *server->local_address();
    auto to_child = coil_test::make_pipe();
    auto from_child = coil_test::make_pipe();
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        // Plain blocking sockets: connect them all, report, ping a sample on request.
        std::vector<int> fds;
        for (std::size_t i = 0; i < idle; ++i) {
            const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            if (fd < 0 || ::connect(fd, at.data(), at.size()) != 0)
                ::_exit(2);
            fds.push_back(fd);
        }
        char c = 'R';
        if (::write(from_child.write_end.get(), &c, 1) != 1 ||
            ::read(to_child.read_end.get(), &c, 1) != 1)
            ::_exit(3);
        unsigned char answered = 0;
        for (std::size_t i = 0; i < idle; i += 1000) {
            char back[4];
            std::size_t got = 0;
            if (::write(fds[i], "ping", 4) == 4)
                while (got < 4) {
                    const ssize_t n = ::read(fds[i], back + got, 4 - got);
                    if (n <= 0)
                        break;
                    got += static_cast<std::size_t>(n);
                }
            answered += got == 4 && std::memcmp(back, "ping", 4) == 0 ? 1 : 0;
        }
        if (::write(from_child.write_end.get(), &answered, 1) != 1)
            ::_exit(4);
        ::_exit(::read(to_child.read_end.get(), &c, 1) == 1 ? 0 : 5); // until told to go
    }
    // A small ring (64 SQ, 128 CQ entries): 10,000 pending receives are bounded by memory, not
    // by the ring, while the server accepts and answers on the same ring.
    coil::executor_options small;
    small.entries = 64;
    small.ring.cq_entries = 128;
    coil::executor ex(coil_test::executor_options(small));
    std::size_t in_flight_with_idle = 0;
    unsigned char idle_answered = 0;
    auto body = [&]() -> coil::task<std::size_t> {
        // Few buffers: idle connections hold none, only a pending receive each.
        net::buffer_pool pool(ex, 64, 4096);
        std::stop_source stop;
        auto server_task = ex.spawn(coil_test::serve_echo(*server, pool, stop.get_token()));
        char ready = 0;
        auto r = co_await coil::read(from_child.read_end.get(), std::as_writable_bytes(std::span(&ready, 1)));
        REQUIRE(r);
        REQUIRE(ready == 'R');
        // Let the server accept them all and arm a receive on each.
        while (ex.in_flight() < idle)
            co_await coil::yield();
        in_flight_with_idle = ex.in_flight();
        std::vector<coil::task<bool>> active;
        for (std::size_t i = 0; i < 10; ++i)
            active.push_back(talk(at, i, 50, 8 * 1024));
        auto results = co_await coil::when_all(std::move(active));
        // The idle ones still answer.
        coil_test::write_fully(to_child.write_end.get(), bytes_of("P"));
        auto a = co_await coil::read(from_child.read_end.get(),
                                     std::as_writable_bytes(std::span(&idle_answered, 1)));
        REQUIRE(a);
        coil_test::write_fully(to_child.write_end.get(), bytes_of("Q"));
        int status = 0;
        REQUIRE(::waitpid(child, &status, 0) == child);
        CHECK(WIFEXITED(status));
        CHECK(WEXITSTATUS(status) == 0);
        stop.request_stop();
        auto accepted = co_await server_task;
        CHECK(accepted == idle + 10);
        co_return static_cast<std::size_t>(std::count(results.begin(), results.end(), true));
    };
    CHECK(ex.run(body()) == 10);
    CHECK(in_flight_with_idle >= idle); // one pending receive per idle connection, at once
    CHECK(idle_answered == idle / 1000);
    CHECK(ex.in_flight() == 0);
}

TEST_CASE("net: peers that reset mid-stream end their own connections; the others are served",
          "[net][echo]")
{
    auto server = net::listener::bind(net::address::loopback_v4(0));
    REQUIRE(server);
    const auto at = *server->local_address();
    coil::executor ex(coil_test::executor_options());
    auto rude = [&](std::size_t i) -> coil::task<void> {
        auto c = co_await net::stream_socket::connect(at);
        if (!c)
            co_return;
        const auto m = message(i, 0, 100'000);
        auto sent = co_await c->send(m); // part of it, maybe
        (void)sent;
        ::linger lg{1, 0};
        ::setsockopt(c->fd(), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        // The destructor closes with RST while the server may be mid-echo.
    };
    auto body = [&]() -> coil::task<std::size_t> {
        net::buffer_pool pool(ex, 64, 4096);
        std::stop_source stop;
        auto server_task = ex.spawn(coil_test::serve_echo(*server, pool, stop.get_token()));
        std::vector<coil::task<bool>> polite;
        for (std::size_t i = 0; i < 20; ++i) {
            ex.spawn(rude(100 + i)).detach();
            polite.push_back(talk(at, i, 10, 32 * 1024));
        }
        auto results = co_await coil::when_all(std::move(polite));
        stop.request_stop();
        (void)co_await server_task;
        co_return static_cast<std::size_t>(std::count(results.begin(), results.end(), true));
    };
    CHECK(ex.run(body()) == 20);
    CHECK(ex.in_flight() == 0);
}
