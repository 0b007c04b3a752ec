// SPDX-License-Identifier: MIT
// Networking with faults injected at the ring's kernel boundary (the coil_faulty build): an echo
// server (multishot accept, multishot receive over a buffer pool, sends) and its clients (connect,
// send, receive) under each fault alone and all together. Every connection completes its exchange
// with every byte verified, the server accepts them all, and the fault is seen to fire.

#include "net_test_support.hpp"
#include "runtime_test_support.hpp"

#include "fault_injection.hpp"
#include "fault_plans.hpp"
#include "test_executor.hpp"

#include <coil/coil.hpp>

#include <catch2/catch_test_macros.hpp>

#include <cstdio>
#include <cstdlib>
#include <random>
#include <stop_token>
#include <vector>

namespace net = coil::net;
using coil::io::testing::scoped_faults;

namespace {

// Every fault the plan injects, summed: the echo meets all of them.
std::uint64_t fired(const coil_test::named_plan& p, const coil_test::fault_counts& c)
{
    std::uint64_t n = 0;
    for (unsigned bit = 1; bit < coil_test::every_fault; bit <<= 1)
        if (p.injects & bit)
            n += coil_test::counter_of(c, static_cast<coil_test::fault_bit>(bit));
    return n;
}

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
        CHECK(fired(p, c) > 0);
    }
}
