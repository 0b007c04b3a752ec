// SPDX-License-Identifier: MIT
// bench_switch's Boost.Asio peer: post round trips of C++20 coroutines on one io_context.

#include "bench_switch_asio.hpp"

#include <boost/asio.hpp>

#include <vector>

namespace coil::bench::asio_peer {

namespace asio = boost::asio;

namespace {

asio::awaitable<void> post_loop(run_clock& clock, std::uint64_t& posts)
{
    auto executor = co_await asio::this_coro::executor;
    while (clock.running()) {
        co_await asio::post(executor, asio::use_awaitable);
        ++posts;
    }
}

asio::awaitable<void> counted_posts(unsigned posts, std::uint64_t (*allocations)(),
                                    double& per_post)
{
    auto executor = co_await asio::this_coro::executor;
    for (unsigned i = 0; i < 1000; ++i) // warm-up: Asio's per-thread recycling caches fill
        co_await asio::post(executor, asio::use_awaitable);
    const std::uint64_t before = allocations();
    for (unsigned i = 0; i < posts; ++i)
        co_await asio::post(executor, asio::use_awaitable);
    per_post = static_cast<double>(allocations() - before) / posts;
}

} // namespace

std::uint64_t post_round_trips(unsigned coroutines, run_clock& clock)
{
    asio::io_context context(1);
    std::uint64_t posts = 0;
    for (unsigned i = 0; i < coroutines; ++i)
        asio::co_spawn(context, post_loop(clock, posts), asio::detached);
    context.run();
    return posts;
}

double allocations_per_post(unsigned posts, std::uint64_t (*allocations)())
{
    asio::io_context context(1);
    double per_post = -1;
    asio::co_spawn(context, counted_posts(posts, allocations, per_post), asio::detached);
    context.run();
    return per_post;
}

} // namespace coil::bench::asio_peer
