// SPDX-License-Identifier: MIT
// echo_client: a load generator for echo servers that verifies every byte it gets back.
//
//   echo_client --port N [--address HOST] [--connections C] [--messages M | --duration S]
//               [--size BYTES | --max-size BYTES] [--rate PER_SECOND] [--seed N] [--quiet]
//
// Each connection sends a message, reads the same number of bytes back and checks them, then
// sends the next. Message bytes depend on the connection, the message and the position, so a
// byte from the wrong place shows. Without --rate the load is closed-loop (a connection sends
// as soon as its previous echo arrived), which is what wrk does; its latency figures then hide
// the waiting a slow server causes (coordinated omission). With --rate R the connections send
// R messages per second in total on a fixed schedule, and a message's latency is counted from
// when it was due, not from when it was sent. Prints messages/s and latency percentiles; exits
// non-zero if a byte differed or a connection failed.

#include <coil/coil.hpp>

#include <fmt/core.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace net = coil::net;
using clock_type = std::chrono::steady_clock;

namespace {

struct options {
    std::string host = "127.0.0.1";
    std::uint16_t port = 0;
    bool have_port = false;
    unsigned connections = 50;
    std::uint64_t messages = 1000; // per connection
    double duration = 0;           // seconds; replaces --messages when set
    std::size_t size = 64;
    std::size_t max_size = 0;      // random sizes in 1..max_size when set
    double rate = 0;               // messages per second in total; 0: closed loop
    std::uint64_t seed = 1;
    bool quiet = false;
};

[[noreturn]] void usage(const std::string& why)
{
    if (!why.empty())
        fmt::print(stderr, "echo_client: {}\n", why);
    fmt::print(stderr,
               "usage: echo_client --port N [--address HOST] [--connections C] "
               "[--messages M | --duration SECONDS] [--size BYTES | --max-size BYTES] "
               "[--rate PER_SECOND] [--seed N] [--quiet]\n");
    std::exit(2);
}

template <class T>
T number(std::string_view text, const std::string& what)
{
    T value{};
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc{} || ptr != text.data() + text.size())
        usage(what + " needs a number, not '" + std::string(text) + "'");
    return value;
}

options parse(int argc, char** argv)
{
    options o;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        auto value = [&]() -> std::string_view {
            if (i + 1 >= argc)
                usage(arg + " needs a value");
            return argv[++i];
        };
        if (arg == "--port") {
            o.port = number<std::uint16_t>(value(), arg);
            o.have_port = true;
        } else if (arg == "--address") {
            o.host = value();
        } else if (arg == "--connections") {
            o.connections = number<unsigned>(value(), arg);
        } else if (arg == "--messages") {
            o.messages = number<std::uint64_t>(value(), arg);
        } else if (arg == "--duration") {
            o.duration = number<double>(value(), arg);
        } else if (arg == "--size") {
            o.size = number<std::size_t>(value(), arg);
        } else if (arg == "--max-size") {
            o.max_size = number<std::size_t>(value(), arg);
        } else if (arg == "--rate") {
            o.rate = number<double>(value(), arg);
        } else if (arg == "--seed") {
            o.seed = number<std::uint64_t>(value(), arg);
        } else if (arg == "--quiet") {
            o.quiet = true;
        } else if (arg == "--help" || arg == "-h") {
            usage("");
        } else {
            usage("unknown argument '" + arg + "'");
        }
    }
    if (!o.have_port)
        usage("--port is required");
    if (o.connections == 0 || o.size == 0)
        usage("--connections and --size must be at least 1");
    return o;
}

// The byte at `position` of message `message` on connection `connection`.
std::byte message_byte(unsigned connection, std::uint64_t message, std::size_t position) noexcept
{
    return static_cast<std::byte>((connection * 131 + message * 31 + position * 7 +
                                   (position >> 8)) & 0xff);
}

struct tally {
    std::uint64_t messages = 0;
    std::uint64_t bytes = 0;
    std::uint64_t mismatches = 0;
    std::uint64_t failures = 0;
    std::vector<double> latencies_us;
};

coil::task<void> run_connection(const options& o, const net::address& at, unsigned id,
                                clock_type::time_point start, clock_type::time_point end,
                                tally& t)
{
    auto conn = co_await net::stream_socket::connect(at);
    if (!conn) {
        if (!o.quiet)
            fmt::print(stderr, "echo_client: connection {}: {}\n", id, conn.error().message());
        ++t.failures;
        co_return;
    }
    (void)conn->set_no_delay();
    std::mt19937_64 rng(o.seed * 1'000'003 + id);
    const std::size_t largest = o.max_size != 0 ? o.max_size : o.size;
    std::vector<std::byte> out(largest);
    std::vector<std::byte> in(largest);
    // With --rate: this connection's messages are due every `interval`, offset by its id.
    const auto interval = o.rate > 0 ? std::chrono::duration_cast<clock_type::duration>(
                                           std::chrono::duration<double>(o.connections / o.rate))
                                     : clock_type::duration::zero();
    auto due = start + interval * id / std::max(1U, o.connections);
    for (std::uint64_t m = 0; o.duration > 0 || m < o.messages; ++m) {
        if (o.duration > 0 && clock_type::now() >= end)
            break;
        const std::size_t size =
            o.max_size != 0 ? 1 + static_cast<std::size_t>(rng() % o.max_size) : o.size;
        for (std::size_t i = 0; i < size; ++i)
            out[i] = message_byte(id, m, i);
        clock_type::time_point from;
        if (o.rate > 0) {
            if (due > clock_type::now())
                (void)co_await coil::sleep_until(due);
            from = due; // latency from when it was due: no coordinated omission
            due += interval;
        } else {
            from = clock_type::now();
        }
        if (!co_await conn->send_all(std::span(out).first(size))) {
            ++t.failures;
            co_return;
        }
        std::size_t got = 0;
        while (got < size) {
            auto n = co_await conn->receive(std::span(in).subspan(got, size - got));
            if (!n || *n == 0) {
                ++t.failures;
                co_return;
            }
            got += *n;
        }
        t.latencies_us.push_back(
            std::chrono::duration<double, std::micro>(clock_type::now() - from).count());
        if (!std::equal(in.begin(), in.begin() + static_cast<std::ptrdiff_t>(size), out.begin()))
            ++t.mismatches;
        ++t.messages;
        t.bytes += size;
    }
    (void)co_await conn->shutdown();
}

coil::task<int> run(const options& o)
{
    auto at = net::address::parse(o.host.front() == '[' ? o.host + ":" + std::to_string(o.port)
                                                         : o.host + ":" + std::to_string(o.port));
    if (!at) {
        fmt::print(stderr, "echo_client: bad address '{}': {}\n", o.host, at.error().message());
        co_return 2;
    }
    std::vector<tally> tallies(o.connections);
    const auto start = clock_type::now();
    const auto end = start + std::chrono::duration_cast<clock_type::duration>(
                                 std::chrono::duration<double>(o.duration));
    std::vector<coil::task<void>> connections;
    for (unsigned i = 0; i < o.connections; ++i)
        connections.push_back(run_connection(o, *at, i, start, end, tallies[i]));
    co_await coil::when_all(std::move(connections));
    const double seconds = std::chrono::duration<double>(clock_type::now() - start).count();

    tally all;
    for (auto& t : tallies) {
        all.messages += t.messages;
        all.bytes += t.bytes;
        all.mismatches += t.mismatches;
        all.failures += t.failures;
        all.latencies_us.insert(all.latencies_us.end(), t.latencies_us.begin(),
                                t.latencies_us.end());
    }
    std::sort(all.latencies_us.begin(), all.latencies_us.end());
    auto percentile = [&](double p) {
        if (all.latencies_us.empty())
            return 0.0;
        const auto i = static_cast<std::size_t>(p / 100.0 * double(all.latencies_us.size() - 1));
        return all.latencies_us[i];
    };
    fmt::print("echo_client: {} connections, {} messages, {} bytes verified in {:.2f} s\n",
               o.connections, all.messages, all.bytes, seconds);
    fmt::print("  {:.0f} messages/s, {:.1f} MiB/s each way\n", double(all.messages) / seconds,
               double(all.bytes) / seconds / (1 << 20));
    fmt::print("  latency us: p50 {:.1f}  p90 {:.1f}  p99 {:.1f}  max {:.1f}{}\n",
               percentile(50), percentile(90), percentile(99), percentile(100),
               o.rate > 0 ? " (from each message's due time)" : " (closed loop)");
    fmt::print("  mismatches {}  failed connections {}\n", all.mismatches, all.failures);
    co_return all.mismatches == 0 && all.failures == 0 ? 0 : 1;
}

} // namespace

int main(int argc, char** argv)
{
    const options o = parse(argc, argv);
    try {
        return coil::run(run(o));
    } catch (const std::exception& e) {
        fmt::print(stderr, "echo_client: {}\n", e.what());
        return 1;
    }
}
