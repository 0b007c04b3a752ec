// SPDX-License-Identifier: MIT
// A user-defined op: an SQE coil has not wrapped, queued through ring::add_sqe and awaited with
// operation<Op>. IORING_OP_SEND_ZC shows the two-completion protocol: its result comes first
// (flagged more), its notification last, and the coroutine resumes only after the notification,
// when the kernel no longer reads the buffer.

#include "runtime_test_support.hpp"
#include "test_executor.hpp"

#include <coil/coil.hpp>

#include <catch2/catch_test_macros.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <vector>

namespace {

constexpr std::uint8_t op_send_zc = 47;  // IORING_OP_SEND_ZC (Linux 6.0)
constexpr std::uint8_t op_fadvise = 24;  // IORING_OP_FADVISE (Linux 5.6; coil::fadvise wraps it too)

/// What the SEND_ZC op yields: the byte count, and whether a notification was announced.
struct zc_outcome {
    std::size_t sent = 0;
    bool notification_followed = false;
};

struct send_zc {
    int fd;
    std::span<const std::byte> buffer;
    std::error_code prepare(coil::io::ring& r, std::uint64_t user_data) noexcept
    {
        return r.add_sqe(op_send_zc, user_data, [&](coil::io::sqe& s) {
            s.fd = fd;
            s.addr = reinterpret_cast<std::uintptr_t>(buffer.data());
            s.len = static_cast<std::uint32_t>(buffer.size());
            s.msg_flags = MSG_NOSIGNAL;
        });
    }
    coil::result<zc_outcome> complete(const coil::io::completion& c) const noexcept
    {
        if (c.result < 0)
            return coil::io::error_from_result(c.result);
        // The result's own CQE carries `more` when a notification follows it.
        return zc_outcome{static_cast<std::size_t>(c.result), c.more()};
    }
};

struct fadvise {
    int fd;
    std::error_code prepare(coil::io::ring& r, std::uint64_t user_data) noexcept
    {
        return r.add_sqe(op_fadvise, user_data, [&](coil::io::sqe& s) {
            s.fd = fd;
            s.off = 0;
            s.len = 0;
            s.fadvise_advice = 2; // POSIX_FADV_SEQUENTIAL
        });
    }
    coil::result<void> complete(const coil::io::completion& c) const noexcept
    {
        if (c.result < 0)
            return coil::io::error_from_result(c.result);
        return {};
    }
};

// A connected TCP pair over loopback.
std::pair<coil_test::unique_fd, coil_test::unique_fd> tcp_pair()
{
    coil_test::unique_fd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(listener.get() >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
    REQUIRE(::listen(listener.get(), 1) == 0);
    socklen_t len = sizeof(addr);
    REQUIRE(::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    coil_test::unique_fd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(::connect(client.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
    coil_test::unique_fd server(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    REQUIRE(server.get() >= 0);
    return {std::move(client), std::move(server)};
}

} // namespace

TEST_CASE("runtime: a user-defined op queued with add_sqe is awaitable like coil's own",
          "[runtime][custom_op]")
{
    coil::executor ex(coil_test::executor_options());
    if (!ex.ring().supports_kernel_opcode(op_fadvise))
        SKIP("this kernel has no IORING_OP_FADVISE");
    coil_test::temp_dir dir;
    auto fd = dir.create_file("f", coil_test::bytes_of("contents"));
    auto body = [&]() -> coil::task<bool> {
        auto ok = co_await coil::operation<fadvise>({fd.get()});
        auto bad = co_await coil::operation<fadvise>({-1});
        co_return ok.ok() && !bad.ok() && bad.error() == std::errc::bad_file_descriptor;
    };
    CHECK(ex.run(body()));
}

TEST_CASE("runtime: a zero-copy send resumes its coroutine only after its notification",
          "[runtime][custom_op][send_zc]")
{
    coil::executor ex(coil_test::executor_options());
    if (!ex.ring().supports_kernel_opcode(op_send_zc))
        SKIP("this kernel has no IORING_OP_SEND_ZC (Linux 6.0)");
    // Not a structured binding: clang 14 cannot capture one in a lambda.
    auto pair = tcp_pair();
    auto& client = pair.first;
    auto& server = pair.second;
    const std::vector<std::byte> data = coil_test::pattern(64 * 1024);
    std::vector<std::byte> received(data.size());
    auto receiver = [&]() -> coil::task<std::size_t> {
        std::size_t got = 0;
        while (got < received.size()) {
            auto n = co_await coil::read(server.get(), std::span(received).subspan(got));
            if (!n || *n == 0)
                break;
            got += *n;
        }
        co_return got;
    };
    auto body = [&]() -> coil::task<std::pair<zc_outcome, std::size_t>> {
        auto r = ex.spawn(receiver());
        zc_outcome total;
        std::span<const std::byte> rest(data);
        while (!rest.empty()) {
            auto sent = co_await coil::operation<send_zc>({client.get(), rest});
            REQUIRE(sent.ok());
            REQUIRE(sent->sent > 0);
            total.sent += sent->sent;
            total.notification_followed = total.notification_followed || sent->notification_followed;
            rest = rest.subspan(sent->sent);
        }
        co_return std::pair{total, co_await r};
    };
    auto [outcome, got] = ex.run(body());
    CHECK(outcome.sent == data.size());
    CHECK(outcome.notification_followed); // two completions, and the op waited for both
    CHECK(got == data.size());
    CHECK(received == data);
    CHECK(ex.in_flight() == 0);
}
