// SPDX-License-Identifier: MIT
// Networking with faults injected at the ring's kernel boundary (the coil_faulty build): an echo
// server (multishot accept, multishot receive over a buffer pool, sends) and its clients (connect,
// send, receive) under each fault alone and all together. Every connection completes its exchange
// with every byte verified, the server accepts them all, and the fault is seen to fire. A UDP
// echo under the same faults gets every datagram back whole: short_rw never cuts a datagram.

#include "net_test_support.hpp"
#include "runtime_test_support.hpp"

#include "fault_injection.hpp"
#include "fault_plans.hpp"
#include "test_executor.hpp"

#include <coil/coil.hpp>

#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>

#include <cstdio>
#include <cstdlib>
#include <random>
#include <stop_token>
#include <vector>

namespace net = coil::net;
using coil::io::testing::scoped_faults;

namespace {

coil::task<bool> talk(net::address at, std::size_t id)
{
    auto c = co_await net::stream_socket::connect(at);
    if (!c)
        co_return false;
    std::mt19937 rng(static_cast<unsigned>(id));
    std::vector<std::byte> out(16 * 1024);
    std::vector<std::byte> back(out.size());
    for (int m = 0; m < 8; ++m) {
        const std::size_t size = 1 + rng() % out.size();
        for (std::size_t i = 0; i < size; ++i)
            out[i] = static_cast<std::byte>((id * 7 + static_cast<std::size_t>(m) * 13 + i) & 0xff);
        auto sent = co_await c->send_all(std::span(out).first(size));
        if (!sent)
            co_return false;
        std::size_t got = 0;
        while (got < size) {
            auto n = co_await c->receive(std::span(back).subspan(got, size - got));
            if (!n || *n == 0)
                co_return false;
            got += *n;
        }
        if (!std::equal(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(size), back.begin()))
            co_return false;
    }
    co_return true;
}

} // namespace

TEST_CASE("net faults: an echo server and 30 clients exchange every byte under each fault",
          "[net][faults]")
{
    for (const coil_test::named_plan& p : coil_test::all_plans()) {
        CAPTURE(p.name);
        auto server = net::listener::bind(net::address::loopback_v4(0));
        REQUIRE(server);
        const auto at = *server->local_address();
        scoped_faults faults(p.plan);
        std::size_t accepted = 0;
        std::size_t good = 0;
        {
            coil::executor ex(coil_test::executor_options());
            auto body = [&]() -> coil::task<void> {
                // A small pool, so that receives also run dry and re-arm.
                net::buffer_pool pool(ex, 8, 2048);
                std::stop_source stop;
                auto server_task = ex.spawn(coil_test::serve_echo(*server, pool, stop.get_token(), {.bound = 4}));
                std::vector<coil::task<bool>> clients;
                for (std::size_t i = 0; i < 30; ++i)
                    clients.push_back(talk(at, i));
                auto results = co_await coil::when_all(std::move(clients));
                good = static_cast<std::size_t>(std::count(results.begin(), results.end(), true));
                stop.request_stop();
                accepted = co_await server_task;
            };
            ex.run(body());
            CHECK(ex.in_flight() == 0);
        }
        CHECK(good == 30);
        CHECK(accepted == 30);
        const auto c = faults.counts();
        INFO("fired: ebusy " << c.ebusy << ", eagain " << c.eagain << ", eintr " << c.eintr
                             << ", partial " << c.partial_submits << ", sq fills " << c.sq_fills
                             << ", stalls " << c.stalls << ", shortened " << c.shortened
                             << ", reordered " << c.reordered);
        CHECK(coil_test::fired(p, c) > 0);
    }
}

namespace {

// Sends `rounds` datagrams of random sizes to `at` one at a time, checking each echo; odd
// clients connect to `at` and use send and receive, even ones send_to and receive_from.
coil::task<bool> datagram_talk(net::address at, std::size_t id, int rounds)
{
    auto s = net::datagram_socket::bind(net::address::loopback_v4(0));
    const bool connected = id % 2 == 1;
    if (!s || (connected && !s->connect(at)))
        co_return false;
    std::mt19937 rng(static_cast<unsigned>(id));
    std::vector<std::byte> out(1400);
    std::vector<std::byte> back(2048);
    for (int m = 0; m < rounds; ++m) {
        const std::size_t size = rng() % (out.size() + 1);
        for (std::size_t i = 0; i < size; ++i)
            out[i] = static_cast<std::byte>((id * 5 + static_cast<std::size_t>(m) * 11 + i) & 0xff);
        if (connected) {
            auto sent = co_await s->send(std::span(out).first(size));
            auto got = co_await s->receive(back);
            if (!sent || *sent != size || !got || *got != size ||
                !std::equal(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(size),
                            back.begin()))
                co_return false;
            continue;
        }
        auto sent = co_await s->send_to(std::span(out).first(size), at);
        auto got = co_await s->receive_from(back);
        if (!sent || *sent != size || !got || got->size != size || got->truncated ||
            !std::equal(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(size), back.begin()))
            co_return false;
    }
    co_return true;
}

// Echoes datagrams, each to its sender, until stopped; yields how many went back whole.
coil::task<std::size_t> datagram_echo(net::datagram_socket& server)
{
    std::vector<std::byte> buffer(2048);
    std::size_t echoed = 0;
    for (;;) {
        auto got = co_await server.receive_from(buffer);
        if (!got || got->truncated)
            co_return echoed;
        auto sent = co_await server.send_to(std::span(buffer).first(got->size), got->from);
        if (!sent || *sent != got->size)
            co_return echoed;
        ++echoed;
    }
}

// The same echo with every datagram received through one multishot recvmsg over `pool`.
coil::task<std::size_t> datagram_echo_pool(net::datagram_socket& server, net::buffer_pool& pool)
{
    auto datagrams = server.receive_datagrams(pool);
    std::size_t echoed = 0;
    for (;;) {
        auto d = co_await datagrams.next();
        if (!d || !*d || (*d)->truncated)
            co_return echoed;
        const net::received_datagram& got = **d;
        auto sent = co_await server.send_to(got.data.bytes(), got.from);
        if (!sent || *sent != got.data.size())
            co_return echoed;
        ++echoed;
    }
}

} // namespace

TEST_CASE("net faults: datagrams go back and forth whole under each fault, and short_rw never "
          "cuts one",
          "[net][faults][datagram]")
{
    constexpr std::size_t clients = 10;
    constexpr int rounds = 20;
    const bool over_pool = GENERATE(false, true); // receive_from, or receive_datagrams
    CAPTURE(over_pool);
    for (const coil_test::named_plan& p : coil_test::all_plans()) {
        CAPTURE(p.name);
        auto server = net::datagram_socket::bind(net::address::loopback_v4(0));
        REQUIRE(server);
        const auto at = *server->local_address();
        scoped_faults faults(p.plan);
        std::size_t echoed = 0;
        std::size_t good = 0;
        {
            coil::executor ex(coil_test::executor_options());
            net::buffer_pool pool(ex, 16, 2048); // room for 1,904-byte datagrams
            auto body = [&]() -> coil::task<void> {
                std::stop_source stop;
                coil::task<std::size_t> echo = datagram_echo(*server);
                if (over_pool)
                    echo = datagram_echo_pool(*server, pool);
                auto server_task =
                    ex.spawn(coil::with_stop_token(stop.get_token(), std::move(echo)));
                std::vector<coil::task<bool>> talking;
                for (std::size_t i = 0; i < clients; ++i)
                    talking.push_back(datagram_talk(at, i, rounds));
                auto results = co_await coil::when_all(std::move(talking));
                good = static_cast<std::size_t>(std::count(results.begin(), results.end(), true));
                stop.request_stop();
                echoed = co_await server_task;
            };
            ex.run(body());
            CHECK(ex.in_flight() == 0);
        }
        CHECK(good == clients);
        CHECK(echoed == clients * rounds);
        // A cut datagram would have failed its client: a short send or a truncated receive.
        // (short_rw may still cut the executor's own eventfd read, which it re-arms.) EINTR
        // comes only to a wait with nothing to submit, and almost every wait of this lockstep
        // exchange carries the SQE its last completion led to: under most seeds it never
        // fires here (the stream echo above meets it).
        if (p.injects != coil_test::shorten && p.injects != coil_test::eintr)
            CHECK(coil_test::fired(p, faults.counts()) > 0);
    }
}

TEST_CASE("net faults: on a kernel whose io_uring has no socket op and no receive bundles, "
          "connect falls back to socket(2) and receive_bundles yields one buffer per bundle, "
          "every byte in order",
          "[faults][net][fallback]")
{
    using coil::io::opcode;
    using coil::io::testing::fault_plan;
    using coil::io::testing::hidden;
    scoped_faults faults(fault_plan{.hide_features = 1U << 14, // IORING_FEAT_RECVSEND_BUNDLE
                                    .hide_opcodes = hidden(opcode::socket)});
    auto server = net::listener::bind(net::address::loopback_v4(0));
    REQUIRE(server);
    const auto at = *server->local_address();
    coil::executor ex(coil_test::executor_options());
    REQUIRE_FALSE(ex.ring().supports(opcode::socket));
    REQUIRE_FALSE(ex.ring().has_recv_bundles());
    const std::vector<std::byte> payload = coil_test::pattern(256 * 1024);
    auto body = [&]() -> coil::task<std::size_t> {
        net::buffer_pool pool(ex, 8, 4096);
        auto client = co_await net::stream_socket::connect(at); // through socket(2)
        REQUIRE(client);
        auto conn = co_await server->accept();
        REQUIRE(conn);
        auto writer = [&]() -> coil::task<void> {
            auto sent = co_await client->send_all(payload);
            REQUIRE(sent.ok());
            auto shut = co_await client->shutdown();
            REQUIRE(shut.ok());
        };
        auto w = ex.spawn(writer());
        std::vector<std::byte> got;
        std::size_t most_buffers = 0;
        auto bundles = conn->receive_bundles(pool);
        while (auto b = co_await bundles.next()) {
            REQUIRE(b->ok());
            if ((*b)->size() == 0)
                break; // the end
            most_buffers = std::max<std::size_t>(most_buffers, (*b)->buffers());
            for (auto part : **b)
                got.insert(got.end(), part.begin(), part.end());
        }
        co_await w;
        CHECK(got == payload);
        co_return most_buffers;
    };
    CHECK(ex.run(body()) == 1);
    CHECK(ex.in_flight() == 0);
}

TEST_CASE("net faults: on a kernel without multishot accept, receive and timeouts, servers fall "
          "back to single-shot ops and lose nothing, and a ticks stream ends with "
          "invalid_argument",
          "[faults][net][fallback]")
{
    const bool bundles = GENERATE(false, true);
    CAPTURE(bundles);
    scoped_faults faults(coil_test::before_multishot_plan().plan);
    auto server = net::listener::bind(net::address::loopback_v4(0));
    REQUIRE(server);
    auto datagrams = net::datagram_socket::bind(net::address::loopback_v4(0));
    REQUIRE(datagrams);
    const auto at = *server->local_address();
    const auto datagrams_at = *datagrams->local_address();
    constexpr std::size_t clients = 20;
    constexpr int rounds = 10;
    std::size_t accepted = 0;
    std::size_t good = 0;
    std::size_t echoed = 0;
    std::size_t datagrams_good = 0;
    std::error_code ticks_error;
    {
        coil::executor ex(coil_test::executor_options());
        auto body = [&]() -> coil::task<void> {
            net::buffer_pool pool(ex, 8, 2048);
            std::stop_source stop;
            auto stream_server = ex.spawn(
                coil_test::serve_echo(*server, pool, stop.get_token(), {}, bundles));
            auto datagram_server = ex.spawn(coil::with_stop_token(
                stop.get_token(), datagram_echo_pool(*datagrams, pool)));
            std::vector<coil::task<bool>> talking;
            for (std::size_t i = 0; i < clients; ++i)
                talking.push_back(talk(at, i));
            std::vector<coil::task<bool>> datagram_talking;
            for (std::size_t i = 0; i < clients / 2; ++i)
                datagram_talking.push_back(datagram_talk(datagrams_at, i, rounds));
            auto results = co_await coil::when_all(std::move(talking));
            auto datagram_results = co_await coil::when_all(std::move(datagram_talking));
            good = static_cast<std::size_t>(std::count(results.begin(), results.end(), true));
            datagrams_good = static_cast<std::size_t>(
                std::count(datagram_results.begin(), datagram_results.end(), true));
            stop.request_stop();
            accepted = co_await stream_server;
            echoed = co_await datagram_server;
            // No single-shot form of a repeating timer: the stream says why it cannot run.
            auto tick = coil::ticks(std::chrono::milliseconds(1), 3);
            auto first = co_await tick.next();
            REQUIRE(first.has_value());
            REQUIRE_FALSE(first->ok());
            ticks_error = first->error();
            CHECK_FALSE((co_await tick.next()).has_value());
        };
        ex.run(body());
        CHECK(ex.in_flight() == 0);
    }
    CHECK(good == clients);
    CHECK(accepted == clients);
    CHECK(datagrams_good == clients / 2);
    CHECK(echoed == clients / 2 * rounds);
    CHECK(ticks_error == std::errc::invalid_argument);
    // The accept, every connection's receive, the datagram receive and the timer.
    CHECK(faults.counts().multishot_refused >= clients + 3);
}
