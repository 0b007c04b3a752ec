// SPDX-License-Identifier: MIT
// Awaiting an op allocates nothing: this program replaces the global operator new and counts the
// allocations made across 10,000 awaited file reads, 10,000 fixed reads with leased registered
// buffers, 10,000 socket round trips with send_all and receive, and 10,000 datagram round trips
// with send_to and receive_from, after a warm-up.

#include "net_test_support.hpp"
#include "runtime_test_support.hpp"
#include "test_executor.hpp"

#include <coil/coil.hpp>

#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>

#include <sys/socket.h>

#include <array>
#include <chrono>
#include <atomic>
#include <cstdlib>
#include <new>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

// The replacement also works under AddressSanitizer: ASan intercepts malloc and free, which these
// functions call, so its checks stay on (only its new/delete type-mismatch check is lost).

namespace {

std::atomic<bool> counting{false};
std::atomic<std::size_t> allocations{0};
void* volatile probe = nullptr; // volatile: the probe allocation below cannot be optimised away

/// Counts allocations while it lives, if `on`: a helper's measured loop.
class counted_section {
public:
    explicit counted_section(bool on) noexcept : on_(on)
    {
        if (on_)
            counting.store(true, std::memory_order_relaxed);
    }
    ~counted_section()
    {
        if (on_)
            counting.store(false, std::memory_order_relaxed);
    }
    counted_section(const counted_section&) = delete;
    counted_section& operator=(const counted_section&) = delete;

private:
    bool on_;
};

} // namespace

namespace {

void* counted_alloc(std::size_t size)
{
    if (counting.load(std::memory_order_relaxed))
        allocations.fetch_add(1, std::memory_order_relaxed);
    if (void* p = std::malloc(size == 0 ? 1 : size))
        return p;
    throw std::bad_alloc();
}

void* counted_aligned_alloc(std::size_t size, std::align_val_t alignment)
{
    if (counting.load(std::memory_order_relaxed))
        allocations.fetch_add(1, std::memory_order_relaxed);
    const auto align = static_cast<std::size_t>(alignment);
    const std::size_t rounded = (size + align - 1) / align * align;
    if (void* p = std::aligned_alloc(align, rounded == 0 ? align : rounded))
        return p;
    throw std::bad_alloc();
}

} // namespace

void* operator new(std::size_t size) { return counted_alloc(size); }
void* operator new[](std::size_t size) { return counted_alloc(size); }
void* operator new(std::size_t size, const std::nothrow_t&) noexcept
{
    try {
        return counted_alloc(size);
    } catch (...) {
        return nullptr;
    }
}
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept
{
    try {
        return counted_alloc(size);
    } catch (...) {
        return nullptr;
    }
}
void* operator new(std::size_t size, std::align_val_t a) { return counted_aligned_alloc(size, a); }
void* operator new[](std::size_t size, std::align_val_t a) { return counted_aligned_alloc(size, a); }
void* operator new(std::size_t size, std::align_val_t a, const std::nothrow_t&) noexcept
{
    try {
        return counted_aligned_alloc(size, a);
    } catch (...) {
        return nullptr;
    }
}
void* operator new[](std::size_t size, std::align_val_t a, const std::nothrow_t&) noexcept
{
    try {
        return counted_aligned_alloc(size, a);
    } catch (...) {
        return nullptr;
    }
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }

namespace {

constexpr std::size_t slice = 256;
constexpr std::size_t slices = 64;

/// Runs `loop(100, false)` as a warm-up, zeroes the allocation count, then
/// `loop(10'000, true)`, whose frame is allocated before its loop starts counting. Yields how
/// many of each came out right.
template <class Loop>
coil::task<std::pair<std::size_t, std::size_t>> warm_then_measure(Loop loop)
{
    const std::size_t warm = co_await loop(100, false);
    allocations.store(0);
    coil::task<std::size_t> measured = loop(10'000, true);
    const std::size_t good = co_await std::move(measured);
    co_return std::pair{warm, good};
}

/// Reads `count` slices of the file in turn, checking each; counts allocations only around the
/// measured loop.
coil::task<std::size_t> read_many(int fd, std::size_t count, bool measure)
{
    std::array<std::byte, slice> buffer{};
    std::size_t good = 0;
    const counted_section counted(measure);
    for (std::size_t i = 0; i < count; ++i) {
        const std::uint64_t offset = (i % slices) * slice;
        coil::result<std::size_t> n = co_await coil::read(fd, buffer, offset);
        if (n.ok() && *n == slice && buffer[0] == coil_test::pattern_byte(offset) &&
            buffer[slice - 1] == coil_test::pattern_byte(offset + slice - 1))
            ++good;
    }
    co_return good;
}

} // namespace

TEST_CASE("runtime: 10,000 awaited file reads allocate nothing after a warm-up", "[runtime][alloc]")
{
    coil_test::temp_dir dir;
    auto fd = dir.create_file("pattern", coil_test::pattern(slice * slices));
    coil::executor ex(coil_test::executor_options());
    // The measured loop runs inside one coroutine frame (allocated before counting).
    auto [warm, good] = ex.run(warm_then_measure(
        [&](std::size_t count, bool measure) { return read_many(fd.get(), count, measure); }));
    const std::size_t counted = allocations.load();
    CHECK(warm == 100);
    CHECK(good == 10'000);
    CHECK(counted == 0);

    // The counter works: an allocation while counting is seen.
    counting.store(true);
    probe = ::operator new(16);
    counting.store(false);
    ::operator delete(probe);
    CHECK(allocations.load() == 1);
}

namespace {

/// Reads `count` slices through a registered file slot into a leased registered buffer,
/// acquiring and dropping the lease around every read; counts allocations only when `measure`.
coil::task<std::size_t> read_many_fixed(const coil::file& f, coil::fixed_buffer_pool& pool,
                                        std::size_t count, bool measure)
{
    std::size_t good = 0;
    const counted_section counted(measure);
    for (std::size_t i = 0; i < count; ++i) {
        const std::uint64_t offset = (i % slices) * slice;
        coil::fixed_buffer lease = pool.try_acquire();
        coil::result<std::size_t> n = co_await f.read_fixed_at(lease.view(0, slice), offset);
        if (n.ok() && *n == slice && lease.bytes()[0] == coil_test::pattern_byte(offset) &&
            lease.bytes()[slice - 1] == coil_test::pattern_byte(offset + slice - 1))
            ++good;
    }
    co_return good;
}

} // namespace

TEST_CASE("runtime: 10,000 fixed reads through a registered slot, each with a fresh lease, "
          "allocate nothing after a warm-up",
          "[runtime][alloc][fixed]")
{
    coil_test::temp_dir dir;
    auto fd = dir.create_file("pattern", coil_test::pattern(slice * slices));
    coil::executor ex;
    coil::fixed_buffer_pool pool(ex, 4, 4096);
    coil::file f(fd.release());
    auto body = [&]() -> coil::task<std::pair<std::size_t, std::size_t>> {
        coil::result<void> registered = f.register_slot();
        if (!registered)
            co_return std::pair{std::size_t{0}, std::size_t{0}};
        auto counts = co_await warm_then_measure([&](std::size_t count, bool measure) {
            return read_many_fixed(f, pool, count, measure);
        });
        f.unregister_slot();
        co_return counts;
    };
    auto [warm, good] = ex.run(body());
    CHECK(warm == 100);
    CHECK(good == 10'000);
    CHECK(allocations.load() == 0);
}

namespace {

/// `count` round trips over a connected socket pair, all in this one frame: send_all on one
/// end, receive on the other, send_all back, receive; counts allocations around the loop.
coil::task<std::size_t> round_trips(coil::net::stream_socket& a, coil::net::stream_socket& b,
                                    std::size_t count, bool measure)
{
    std::array<std::byte, 512> message{};
    std::array<std::byte, 512> received{};
    std::size_t good = 0;
    const counted_section counted(measure);
    for (std::size_t i = 0; i < count; ++i) {
        message[0] = static_cast<std::byte>(i);
        auto there = co_await a.send_all(message);
        auto n = co_await b.receive(received);
        auto back = co_await b.send_all(std::span(received).first(n ? *n : 0));
        auto m = co_await a.receive(received);
        if (there && back && n && m && *n == message.size() && *m == message.size() &&
            received[0] == message[0])
            ++good;
    }
    co_return good;
}

} // namespace

namespace {

/// `count` datagrams from `a` to `b` and back with send_to and receive_from (each carrying
/// the peer's address in its op), all in this one frame; counts allocations around the loop.
coil::task<std::size_t> datagram_round_trips(coil::net::datagram_socket& a,
                                             coil::net::datagram_socket& b,
                                             const coil::net::address& b_at, std::size_t count,
                                             bool measure)
{
    std::array<std::byte, 512> message{};
    std::array<std::byte, 512> received{};
    std::size_t good = 0;
    const counted_section counted(measure);
    for (std::size_t i = 0; i < count; ++i) {
        message[0] = static_cast<std::byte>(i);
        auto there = co_await a.send_to(message, b_at);
        auto got = co_await b.receive_from(received);
        auto back = co_await b.send_to(std::span(received).first(got ? got->size : 0),
                                       got ? got->from : b_at);
        auto returned = co_await a.receive_from(received);
        if (there && got && back && returned && got->size == message.size() &&
            returned->size == message.size() && received[0] == message[0])
            ++good;
    }
    co_return good;
}

} // namespace

TEST_CASE("runtime: 10,000 datagram round trips with send_to and receive_from allocate nothing "
          "after a warm-up",
          "[runtime][alloc][net]")
{
    coil_test::loopback_pair sockets; // the client sends, the server receives
    coil::executor ex;
    auto [warm, good] = ex.run(warm_then_measure([&](std::size_t count, bool measure) {
        return datagram_round_trips(sockets.client, sockets.server, sockets.server_at, count,
                                    measure);
    }));
    CHECK(warm == 100);
    CHECK(good == 10'000);
    CHECK(allocations.load() == 0);
}

TEST_CASE("runtime: 10,000 socket round trips with send_all and receive allocate nothing after "
          "a warm-up",
          "[runtime][alloc][net]")
{
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
    coil::net::stream_socket a(fds[0]);
    coil::net::stream_socket b(fds[1]);
    coil::executor ex;
    auto [warm, good] = ex.run(warm_then_measure(
        [&](std::size_t count, bool measure) { return round_trips(a, b, count, measure); }));
    CHECK(warm == 100);
    CHECK(good == 10'000);
    CHECK(allocations.load() == 0);
}

namespace {

/// `count` messages from `a` to `b`, read through `b`'s pool receive stream `in` (plain or
/// bundles), each released before the next; counts allocations around the loop.
template <class Stream>
coil::task<std::size_t> pool_messages(coil::net::stream_socket& a, Stream& in, std::size_t count,
                                      bool measure)
{
    std::array<std::byte, 256> message{};
    std::size_t good = 0;
    const counted_section counted(measure);
    for (std::size_t i = 0; i < count; ++i) {
        message[0] = static_cast<std::byte>(i);
        auto sent = co_await a.send_all(message);
        std::size_t got = 0;
        bool first_right = false;
        while (sent && got < message.size()) {
            auto next = co_await in.next();
            if (!next || !*next || (*next)->empty())
                break;
            if constexpr (std::is_same_v<Stream, coil::net::receive_bundle_stream>) {
                for (std::span<const std::byte> part : **next) {
                    if (got == 0)
                        first_right = part[0] == message[0];
                    got += part.size();
                }
            } else {
                if (got == 0)
                    first_right = (*next)->bytes()[0] == message[0];
                got += (*next)->size();
            }
        }
        if (got == message.size() && first_right)
            ++good;
    }
    co_return good;
}

} // namespace

TEST_CASE("runtime: 10,000 messages through a pool receive stream, plain or bundles, allocate "
          "nothing after a warm-up",
          "[runtime][alloc][net][buffer_pool]")
{
    const bool bundles = GENERATE(false, true);
    CAPTURE(bundles);
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
    coil::net::stream_socket a(fds[0]);
    coil::net::stream_socket b(fds[1]);
    coil::executor ex;
    auto body = [&]() -> coil::task<std::pair<std::size_t, std::size_t>> {
        coil::net::buffer_pool pool(ex, 16, 4096);
        auto measure = [&](auto in) -> coil::task<std::pair<std::size_t, std::size_t>> {
            co_return co_await warm_then_measure([&](std::size_t count, bool counted) {
                return pool_messages(a, in, count, counted);
            });
        };
        if (bundles)
            co_return co_await measure(b.receive_bundles(pool));
        co_return co_await measure(b.receive(pool));
    };
    auto [warm, good] = ex.run(body());
    CHECK(warm == 100);
    CHECK(good == 10'000);
    CHECK(allocations.load() == 0);
}

namespace {

/// `count` datagrams from `a` to `to`, read through the datagram stream `in`, each released
/// before the next; counts allocations around the loop.
coil::task<std::size_t> pool_datagrams(const coil::net::datagram_socket& a,
                                       const coil::net::address& to,
                                       coil::net::datagram_stream& in, std::size_t count,
                                       bool measure)
{
    std::array<std::byte, 256> message{};
    const coil::net::address a_at = *a.local_address();
    std::size_t good = 0;
    const counted_section counted(measure);
    for (std::size_t i = 0; i < count; ++i) {
        message[0] = static_cast<std::byte>(i);
        auto sent = co_await a.send_to(message, to);
        auto next = co_await in.next();
        if (sent && next && *next && (*next)->data.size() == message.size() &&
            (*next)->data.bytes()[0] == message[0] && (*next)->from == a_at)
            ++good;
    }
    co_return good;
}

} // namespace

TEST_CASE("runtime: 10,000 datagrams through receive_datagrams allocate nothing after a warm-up",
          "[runtime][alloc][net][buffer_pool]")
{
    coil_test::loopback_pair sockets; // the client sends, the server receives
    coil::executor ex;
    auto body = [&]() -> coil::task<std::pair<std::size_t, std::size_t>> {
        coil::net::buffer_pool pool(ex, 16, 2048);
        auto in = sockets.server.receive_datagrams(pool);
        co_return co_await warm_then_measure([&](std::size_t count, bool counted) {
            return pool_datagrams(sockets.client, sockets.server_at, in, count, counted);
        });
    };
    auto [warm, good] = ex.run(body());
    CHECK(warm == 100);
    CHECK(good == 10'000);
    CHECK(allocations.load() == 0);
}

namespace {

/// Wakes a partner through `ping` and waits for its answer on `pong`, `count` times; counts
/// allocations only around the loop.
coil::task<std::size_t> ping_pong(coil::event& ping, coil::event& pong, std::size_t count,
                                  bool measure)
{
    std::size_t good = 0;
    const counted_section counted(measure);
    for (std::size_t i = 0; i < count; ++i) {
        pong.reset();
        ping.set();
        if (co_await pong.wait().with_timeout(std::chrono::seconds(30)))
            ++good;
    }
    co_return good;
}

coil::task<void> answer(coil::event& ping, coil::event& pong, std::size_t count)
{
    for (std::size_t i = 0; i < count; ++i) {
        if (!co_await ping.wait())
            co_return;
        ping.reset();
        pong.set();
    }
}

} // namespace

TEST_CASE("runtime: 10,000 event wake-ups between two tasks allocate nothing after a warm-up",
          "[runtime][alloc][event]")
{
    coil::executor ex;
    coil::event ping, pong;
    auto body = [&]() -> coil::task<std::pair<std::size_t, std::size_t>> {
        auto answering = ex.spawn(answer(ping, pong, 10'100));
        auto counts = co_await warm_then_measure([&](std::size_t count, bool counted) {
            return ping_pong(ping, pong, count, counted);
        });
        co_await answering;
        co_return counts;
    };
    auto [warm, good] = ex.run(body());
    CHECK(warm == 100);
    CHECK(good == 10'000);
    CHECK(allocations.load() == 0);
}
