// SPDX-License-Identifier: MIT
// bench_files' Boost.Asio peer: random_access_file reads from C++20 coroutines on io_uring.

#include "bench_files_asio.hpp"

#include "bench_data.hpp"

#include <boost/asio.hpp>

#include <fmt/core.h>

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <system_error>

namespace coil::bench::asio_files {

namespace asio = boost::asio;

namespace {

constexpr std::size_t read_size = 4096;

asio::awaitable<void> read_loop(asio::random_access_file& file, std::uint64_t file_size,
                                std::uint64_t seed, std::span<std::byte> buffer,
                                round_clock& rounds, bool leader, std::uint64_t& ops)
{
    splitmix64 rng(seed);
    while (rounds.check(leader)) {
        const std::uint64_t offset = random_page_offset(rng, file_size);
        const bool timed = rounds.clock.sample_latency();
        const auto start = timed ? std::chrono::steady_clock::now()
                                 : std::chrono::steady_clock::time_point{};
        auto [ec, n] = co_await file.async_read_some_at(
            offset, asio::buffer(buffer.data(), buffer.size()),
            asio::as_tuple(asio::use_awaitable));
        if (ec || n != read_size)
            fail(fmt::format("Boost.Asio: a {}-byte read at {} gave {}", read_size, offset,
                             ec ? ec.message() : std::to_string(n)));
        if (timed)
            rounds.clock.record_latency(std::chrono::steady_clock::now() - start);
        ++ops;
    }
}

} // namespace

std::uint64_t reads(const char* path, int open_flags, std::uint64_t file_size, unsigned depth,
                    std::uint64_t seed, std::span<std::byte> buffers, run_clock& clock)
{
    asio::io_context context(1);
    std::vector<asio::random_access_file> files;
    files.reserve(depth);
    for (unsigned i = 0; i < depth; ++i) {
        const int fd = ::open(path, open_flags | O_CLOEXEC);
        if (fd < 0)
            fail(fmt::format("Boost.Asio: open {}: {}", path,
                             std::generic_category().message(errno)));
        files.emplace_back(context, fd);
    }
    round_clock rounds{clock};
    std::uint64_t ops = 0;
    for (unsigned i = 0; i < depth; ++i)
        asio::co_spawn(context,
                       read_loop(files[i], file_size, seed + i,
                                 buffers.subspan(i * read_size, read_size), rounds, i == 0, ops),
                       asio::detached);
    context.run();
    return ops;
}

} // namespace coil::bench::asio_files
