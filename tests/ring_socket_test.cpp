// SPDX-License-Identifier: MIT
// The ring's socket ops against the real kernel, each over TCP on the IPv4 and IPv6 loopback and
// over AF_UNIX stream sockets: socket, accept (single and multishot), connect, send and recv,
// sendmsg and recvmsg, shutdown, zero-copy send, cancelling by descriptor, and the errors.

#include "ring_socket_support.hpp"

#include <coil/io/ring.hpp>

#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <vector>

using coil::io::accept_mode;
using coil::io::completion;
using coil::io::opcode;
using coil::io::ring;
using namespace coil_test;

namespace {

socket_family any_family()
{
    return GENERATE(socket_family::ipv4, socket_family::ipv6, socket_family::local);
}

int socket_option(int fd, int option)
{
    int value = 0;
    ::socklen_t length = sizeof value;
    REQUIRE(::getsockopt(fd, SOL_SOCKET, option, &value, &length) == 0);
    return value;
}

bool close_on_exec(int fd) { return (::fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0; }

// The completion tagged `user_data` in `done` (fails the test unless there is exactly one).
completion completion_of(const std::vector<completion>& done, std::uint64_t user_data)
{
    const auto n = std::count_if(done.begin(), done.end(),
                                 [&](const completion& c) { return c.user_data == user_data; });
    REQUIRE(n == 1);
    return *std::find_if(done.begin(), done.end(),
                         [&](const completion& c) { return c.user_data == user_data; });
}

// Each client sends its index; each accepted socket must read one of them, and answer it
// (index + 100) to that client alone: the accepted sockets are the clients' peers, one each.
// Returns, for each accepted socket, the index of its client.
std::vector<std::size_t> pair_up(std::vector<unique_fd>& clients, std::vector<unique_fd>& accepted)
{
    REQUIRE(clients.size() == accepted.size());
    for (std::size_t i = 0; i < clients.size(); ++i) {
        const std::byte tag{static_cast<unsigned char>(i)};
        send_all(clients[i].get(), std::span(&tag, 1));
    }
    std::vector<std::size_t> client_of;
    for (unique_fd& a : accepted) {
        const auto index = static_cast<std::size_t>(recv_exactly(a.get(), 1)[0]);
        REQUIRE(index < clients.size());
        client_of.push_back(index);
        const std::byte answer{static_cast<unsigned char>(index + 100)};
        send_all(a.get(), std::span(&answer, 1));
    }
    for (std::size_t i = 0; i < clients.size(); ++i)
        CHECK(recv_exactly(clients[i].get(), 1)[0] == std::byte{static_cast<unsigned char>(i + 100)});
    std::vector<std::size_t> sorted = client_of;
    std::sort(sorted.begin(), sorted.end());
    CHECK(std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end());
    return client_of;
}

} // namespace

TEST_CASE("ring: a socket op creates a stream socket of the asked domain, close-on-exec",
          "[ring][socket]")
{
    const socket_family f = any_family();
    CAPTURE(to_string(f));
    ring ring(4);
    if (!ring.supports(opcode::socket))
        SKIP("this kernel has no IORING_OP_SOCKET (Linux 5.19)");
    REQUIRE_FALSE(ring.add_socket(domain_of(f), SOCK_STREAM | SOCK_CLOEXEC, 0, 1));
    auto done = collect(ring, 1);
    REQUIRE(done.size() == 1);
    CHECK(done[0].user_data == 1);
    REQUIRE(done[0].result >= 0);
    unique_fd fd(done[0].result);
    CHECK(socket_option(fd.get(), SO_DOMAIN) == domain_of(f));
    CHECK(socket_option(fd.get(), SO_TYPE) == SOCK_STREAM);
    CHECK(close_on_exec(fd.get()));
}

TEST_CASE("ring: a socket op with an unknown domain completes with -EAFNOSUPPORT",
          "[ring][socket][error]")
{
    ring ring(4);
    if (!ring.supports(opcode::socket))
        SKIP("this kernel has no IORING_OP_SOCKET (Linux 5.19)");
    REQUIRE_FALSE(ring.add_socket(AF_MAX + 5, SOCK_STREAM, 0, 2));
    CHECK(collect(ring, 1).at(0).result == -EAFNOSUPPORT);
}

TEST_CASE("ring: single accepts take three waiting clients, report their addresses, and each "
          "accepted socket talks to its own client",
          "[ring][accept]")
{
    const socket_family f = any_family();
    CAPTURE(to_string(f));
    bound_socket listener = make_bound(f);
    constexpr std::size_t count = 3;
    std::vector<unique_fd> clients;
    for (std::size_t i = 0; i < count; ++i)
        clients.push_back(connect_to(f, listener.address));

    ring ring(8);
    std::array<endpoint, count> peers{};
    for (std::size_t i = 0; i < count; ++i) {
        peers[i].length = sizeof peers[i].storage;
        REQUIRE_FALSE(ring.add_accept(listener.fd.get(), peers[i].get(), &peers[i].length,
                                      SOCK_CLOEXEC, 10 + i));
    }
    auto done = collect(ring, count);
    REQUIRE(done.size() == count);
    std::vector<unique_fd> accepted;
    for (std::size_t i = 0; i < count; ++i) {
        const completion c = completion_of(done, 10 + i);
        REQUIRE(c.result >= 0);
        CHECK_FALSE(c.more());
        accepted.emplace_back(c.result);
        CHECK(close_on_exec(c.result));
        CHECK(peers[i].storage.ss_family == domain_of(f));
    }
    std::vector<std::size_t> client_of = pair_up(clients, accepted);
    if (is_tcp(f)) {
        // The address each accept reported is its client's own.
        for (std::size_t i = 0; i < count; ++i) {
            endpoint local;
            local.length = sizeof local.storage;
            REQUIRE(::getsockname(clients[client_of[i]].get(), local.get(), &local.length) == 0);
            CHECK(peers[i].length == local.length);
            CHECK(port_of(peers[i].storage) == port_of(local.storage));
        }
    } else {
        // An unbound AF_UNIX client has an unnamed address: just the family.
        for (const endpoint& p : peers)
            CHECK(p.length == sizeof(::sa_family_t));
    }
    CHECK(ring.outstanding() == 0);
}

TEST_CASE("ring: a multishot accept takes every client with more() set until it is cancelled",
          "[ring][accept][multishot]")
{
    const socket_family f = any_family();
    CAPTURE(to_string(f));
    bound_socket listener = make_bound(f);
    ring ring(8);
    REQUIRE_FALSE(ring.add_accept(listener.fd.get(), nullptr, nullptr, SOCK_CLOEXEC, 1,
                                  accept_mode::multishot));
    REQUIRE(ring.submit().ok());

    constexpr std::size_t count = 4;
    std::vector<unique_fd> clients;
    std::vector<unique_fd> accepted;
    for (std::size_t i = 0; i < count; ++i) {
        clients.push_back(connect_to(f, listener.address));
        auto done = collect(ring, 1);
        REQUIRE(done.size() == 1);
        CHECK(done[0].user_data == 1);
        if (done[0].result == -EINVAL && !done[0].more())
            SKIP("this kernel has no multishot accept (IORING_ACCEPT_MULTISHOT, Linux 5.19)");
        REQUIRE(done[0].result >= 0);
        CHECK(done[0].more());
        accepted.emplace_back(done[0].result);
        CHECK(close_on_exec(done[0].result));
    }
    CHECK(ring.outstanding() == 1); // the accept is still armed
    pair_up(clients, accepted);

    REQUIRE_FALSE(ring.add_cancel(1, 2));
    auto done = collect(ring, 2);
    REQUIRE(done.size() == 2);
    CHECK(completion_of(done, 2).result == 0);
    const completion last = completion_of(done, 1);
    CHECK(last.result == -ECANCELED);
    CHECK_FALSE(last.more());
    CHECK(ring.outstanding() == 0);
}

TEST_CASE("ring: connect reaches a listening socket, and the connection carries data",
          "[ring][connect]")
{
    const socket_family f = any_family();
    CAPTURE(to_string(f));
    bound_socket listener = make_bound(f);
    unique_fd client(::socket(domain_of(f), SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(client.get() >= 0);

    ring ring(4);
    REQUIRE_FALSE(ring.add_connect(client.get(), listener.address.get(), listener.address.length, 3));
    auto done = collect(ring, 1);
    REQUIRE(done.size() == 1);
    CHECK(done[0].user_data == 3);
    REQUIRE(done[0].result == 0);

    unique_fd server(::accept4(listener.fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
    REQUIRE(server.get() >= 0);
    const std::vector<std::byte> data = pattern(300);
    send_all(client.get(), data);
    CHECK(recv_exactly(server.get(), data.size()) == data);
}

TEST_CASE("ring: connect to a socket that does not listen completes with -ECONNREFUSED",
          "[ring][connect][error]")
{
    const socket_family f = any_family();
    CAPTURE(to_string(f));
    // Bound but not listening, and kept open so that nothing else takes the port or the path.
    bound_socket closed = make_bound(f, 0);
    unique_fd client(::socket(domain_of(f), SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(client.get() >= 0);

    ring ring(4);
    REQUIRE_FALSE(ring.add_connect(client.get(), closed.address.get(), closed.address.length, 4));
    auto done = collect(ring, 1);
    REQUIRE(done.size() == 1);
    CHECK(done[0].result == -ECONNREFUSED);
    CHECK(done[0].error() == std::errc::connection_refused);
}

TEST_CASE("ring: a recv waiting for data gets what a send sends, in both directions",
          "[ring][send][recv]")
{
    const socket_family f = any_family();
    CAPTURE(to_string(f));
    connection c = make_connection(f);
    ring ring(8);
    const std::vector<std::byte> to_server = pattern(1000, 1);
    const std::vector<std::byte> to_client = pattern(700, 2);

    // The recvs go first, so they wait in the kernel for the sends' data.
    std::vector<std::byte> at_server(4096);
    std::vector<std::byte> at_client(4096);
    REQUIRE_FALSE(ring.add_recv(c.server.get(), at_server, 0, 1));
    REQUIRE_FALSE(ring.add_recv(c.client.get(), at_client, 0, 2));
    REQUIRE(ring.submit().ok());
    REQUIRE_FALSE(ring.add_send(c.client.get(), to_server, 0, 3));
    REQUIRE_FALSE(ring.add_send(c.server.get(), to_client, 0, 4));
    auto done = collect(ring, 4);
    REQUIRE(done.size() == 4);
    CHECK(result_of(done, 3) == static_cast<int>(to_server.size()));
    CHECK(result_of(done, 4) == static_cast<int>(to_client.size()));

    // A stream may deliver a send in pieces: read the rest with the ring too.
    auto finish = [&](int fd, std::vector<std::byte>& buffer, std::size_t got, std::size_t want) {
        while (got < want) {
            REQUIRE_FALSE(ring.add_recv(fd, std::span(buffer).subspan(got), 0, 9));
            const int n = collect(ring, 1).at(0).result;
            REQUIRE(n > 0);
            got += static_cast<std::size_t>(n);
        }
        buffer.resize(want);
    };
    const int server_got = result_of(done, 1);
    const int client_got = result_of(done, 2);
    REQUIRE(server_got > 0);
    REQUIRE(client_got > 0);
    finish(c.server.get(), at_server, static_cast<std::size_t>(server_got), to_server.size());
    finish(c.client.get(), at_client, static_cast<std::size_t>(client_got), to_client.size());
    CHECK(at_server == to_server);
    CHECK(at_client == to_client);
}

TEST_CASE("ring: recv, send and accept on non-blocking sockets wait in the kernel for data, "
          "room and a client, never completing with -EAGAIN",
          "[ring][send][recv][accept]")
{
    // ring.hpp says socket ops wait for readiness whether or not the socket is non-blocking:
    // each op below is submitted before what it waits for exists, so a kernel that honoured
    // O_NONBLOCK would complete it at once with -EAGAIN.
    const socket_family f = any_family();
    CAPTURE(to_string(f));
    connection c = make_connection(f);
    for (int fd : {c.listener.fd.get(), c.client.get(), c.server.get()})
        REQUIRE(::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK) == 0);
    ring ring(8);

    // A recv on an empty socket, and an accept on an empty backlog.
    std::vector<std::byte> received(64);
    REQUIRE_FALSE(ring.add_recv(c.server.get(), received, 0, 1));
    REQUIRE_FALSE(ring.add_accept(c.listener.fd.get(), nullptr, nullptr, SOCK_CLOEXEC, 2));
    REQUIRE(ring.submit().ok());
    const std::vector<std::byte> hello = pattern(40, 3);
    send_all(c.client.get(), hello);
    unique_fd late = connect_to(f, c.listener.address);
    auto done = collect(ring, 2);
    REQUIRE(result_of(done, 1) == static_cast<int>(hello.size()));
    CHECK(std::equal(hello.begin(), hello.end(), received.begin()));
    const int accepted = result_of(done, 2);
    REQUIRE(accepted >= 0);
    unique_fd accepted_fd(accepted);

    // A send on a socket whose send buffer is full: it waits for the peer to read.
    const std::vector<std::byte> filler = pattern(65536, 4);
    std::size_t queued = 0;
    for (;;) {
        const ssize_t n = ::send(c.client.get(), filler.data(), filler.size(), MSG_NOSIGNAL);
        if (n < 0) {
            REQUIRE(errno == EAGAIN);
            break;
        }
        queued += static_cast<std::size_t>(n);
    }
    const std::vector<std::byte> last = pattern(4096, 5);
    REQUIRE_FALSE(ring.add_send(c.client.get(), last, 0, 3));
    REQUIRE(ring.submit().ok());
    // The peer reads everything: the filler, then the send's bytes, whole and in order.
    REQUIRE(::fcntl(c.server.get(), F_SETFL, ::fcntl(c.server.get(), F_GETFL) & ~O_NONBLOCK) == 0);
    const std::vector<std::byte> drained = recv_exactly(c.server.get(), queued);
    CHECK(drained.size() == queued);
    auto sent = collect(ring, 1);
    REQUIRE(sent.size() == 1);
    REQUIRE(sent[0].result > 0);
    std::vector<std::byte> tail = recv_exactly(c.server.get(), static_cast<std::size_t>(sent[0].result));
    CHECK(std::equal(tail.begin(), tail.end(), last.begin()));
    CHECK(ring.outstanding() == 0);
}

TEST_CASE("ring: sendmsg with two iovecs arrives whole through recvmsg into two iovecs",
          "[ring][sendmsg][recvmsg]")
{
    const socket_family f = any_family();
    CAPTURE(to_string(f));
    connection c = make_connection(f);
    ring ring(4);

    std::array<char, 6> head{'h', 'e', 'l', 'l', 'o', ' '};
    std::array<char, 5> tail{'w', 'o', 'r', 'l', 'd'};
    std::array<::iovec, 2> out{::iovec{head.data(), head.size()}, ::iovec{tail.data(), tail.size()}};
    ::msghdr sent{};
    sent.msg_iov = out.data();
    sent.msg_iovlen = out.size();

    // Split differently on the way in, and ask for the whole message (MSG_WAITALL).
    std::array<char, 4> first{};
    std::array<char, 7> second{};
    std::array<::iovec, 2> in{::iovec{first.data(), first.size()}, ::iovec{second.data(), second.size()}};
    ::msghdr received{};
    received.msg_iov = in.data();
    received.msg_iovlen = in.size();

    REQUIRE_FALSE(ring.add_recvmsg(c.server.get(), &received, MSG_WAITALL, 1));
    REQUIRE(ring.submit().ok());
    REQUIRE_FALSE(ring.add_sendmsg(c.client.get(), &sent, 0, 2));
    auto done = collect(ring, 2);
    REQUIRE(done.size() == 2);
    CHECK(result_of(done, 2) == 11);
    CHECK(result_of(done, 1) == 11);
    CHECK(std::string(first.data(), first.size()) == "hell");
    CHECK(std::string(second.data(), second.size()) == "o world");
    CHECK((received.msg_flags & MSG_TRUNC) == 0);
}

TEST_CASE("ring: shutdown(SHUT_WR) makes the peer read end of stream after the data",
          "[ring][shutdown]")
{
    const socket_family f = any_family();
    CAPTURE(to_string(f));
    connection c = make_connection(f);
    ring ring(4);
    if (!ring.supports(opcode::shutdown))
        SKIP("this kernel has no IORING_OP_SHUTDOWN (Linux 5.11)");
    const std::vector<std::byte> data = pattern(10);
    send_all(c.client.get(), data);
    REQUIRE_FALSE(ring.add_shutdown(c.client.get(), SHUT_WR, 1));
    auto done = collect(ring, 1);
    REQUIRE(done.size() == 1);
    CHECK(done[0].result == 0);

    CHECK(recv_exactly(c.server.get(), data.size()) == data);
    std::array<std::byte, 16> buffer{};
    REQUIRE_FALSE(ring.add_recv(c.server.get(), buffer, 0, 2));
    CHECK(collect(ring, 1).at(0).result == 0);
    // Only the client's sending side is shut: it still reads.
    const std::vector<std::byte> back = pattern(5, 3);
    send_all(c.server.get(), back);
    CHECK(recv_exactly(c.client.get(), back.size()) == back);
}

TEST_CASE("ring: a zero-copy send completes with its result (more() set), then a notification",
          "[ring][send_zc]")
{
    const socket_family f = any_family();
    CAPTURE(to_string(f));
    connection c = make_connection(f);
    ring ring(4);
    if (!ring.supports(opcode::send_zc))
        SKIP("this kernel has no IORING_OP_SEND_ZC (Linux 6.0)");
    const std::vector<std::byte> data = pattern(16384, 4);
    REQUIRE_FALSE(ring.add_send_zc(c.client.get(), data, 0, 5));
    // Both completions, in the order the kernel posted them (often reaped in one batch).
    std::vector<completion> done;
    while (ring.outstanding() != 0) {
        auto batch = take(ring.wait(1));
        done.insert(done.end(), batch.begin(), batch.end());
    }
    REQUIRE_FALSE(done.empty());
    const completion& result = done[0];
    CHECK(result.user_data == 5);
    CHECK_FALSE(result.is_notification());
    if (!is_tcp(f)) {
        // AF_UNIX cannot send zero-copy; the op still ends with a final completion, and a
        // notification follows exactly when the result says so (more()).
        CHECK(result.result == -EOPNOTSUPP);
        CHECK(done.size() == (result.more() ? 2U : 1U));
        CHECK_FALSE(done.back().more());
        return;
    }
    REQUIRE(result.result > 0);
    CHECK(result.more());
    REQUIRE(done.size() == 2);
    const completion& notification = done[1];
    CHECK(notification.user_data == 5);
    CHECK(notification.is_notification());
    CHECK(notification.result == 0);
    CHECK_FALSE(notification.more());

    const auto sent = static_cast<std::size_t>(result.result);
    CHECK(recv_exactly(c.server.get(), sent) ==
          std::vector<std::byte>(data.begin(), data.begin() + static_cast<std::ptrdiff_t>(sent)));
}

TEST_CASE("ring: cancel by descriptor cancels every recv waiting on a socket and an accept "
          "waiting on a listener",
          "[ring][cancel_fd]")
{
    const socket_family f = any_family();
    CAPTURE(to_string(f));
    connection c = make_connection(f);
    ring ring(8);
    std::array<std::byte, 64> first{};
    std::array<std::byte, 64> second{};
    REQUIRE_FALSE(ring.add_recv(c.server.get(), first, 0, 1));
    REQUIRE_FALSE(ring.add_recv(c.server.get(), second, 0, 2));
    REQUIRE_FALSE(ring.add_accept(c.listener.fd.get(), nullptr, nullptr, 0, 3));
    REQUIRE(ring.submit().ok());
    // A recv on the client end must survive: cancelling is by descriptor.
    std::array<std::byte, 64> other{};
    REQUIRE_FALSE(ring.add_recv(c.client.get(), other, 0, 4));
    REQUIRE(ring.submit().ok());

    REQUIRE_FALSE(ring.add_cancel_fd(c.server.get(), 10));
    auto done = collect(ring, 3);
    REQUIRE(done.size() == 3);
    if (result_of(done, 10) == -EINVAL)
        SKIP("this kernel cannot cancel by descriptor (IORING_ASYNC_CANCEL_FD, Linux 5.19)");
    CHECK(result_of(done, 10) == 2);
    CHECK(result_of(done, 1) == -ECANCELED);
    CHECK(result_of(done, 2) == -ECANCELED);

    REQUIRE_FALSE(ring.add_cancel_fd(c.listener.fd.get(), 11));
    done = collect(ring, 2);
    REQUIRE(done.size() == 2);
    CHECK(result_of(done, 11) == 1);
    CHECK(result_of(done, 3) == -ECANCELED);

    // Nothing is left on the server end: with IORING_ASYNC_CANCEL_ALL the kernel answers the
    // count, 0, rather than -ENOENT.
    REQUIRE_FALSE(ring.add_cancel_fd(c.server.get(), 12));
    CHECK(collect(ring, 1).at(0).result == 0);

    // The client's recv was untouched: it still gets data.
    const std::byte ping{0x42};
    send_all(c.server.get(), std::span(&ping, 1));
    done = collect(ring, 1);
    REQUIRE(done.size() == 1);
    CHECK(done[0].user_data == 4);
    CHECK(done[0].result == 1);
    CHECK(other[0] == ping);
    CHECK(ring.outstanding() == 0);
}

TEST_CASE("ring: accept on a descriptor that is not a socket completes with -ENOTSOCK",
          "[ring][accept][error]")
{
    pipe_fds p = make_pipe();
    ring ring(4);
    REQUIRE_FALSE(ring.add_accept(p.read_end.get(), nullptr, nullptr, 0, 1));
    auto done = collect(ring, 1);
    REQUIRE(done.size() == 1);
    CHECK(done[0].result == -ENOTSOCK);
}

TEST_CASE("ring: recv and send on a bad descriptor complete with -EBADF", "[ring][recv][error]")
{
    ring ring(4);
    std::array<std::byte, 16> buffer{};
    REQUIRE_FALSE(ring.add_recv(-1, buffer, 0, 1));
    REQUIRE_FALSE(ring.add_send(-1, buffer, 0, 2));
    auto done = collect(ring, 2);
    CHECK(result_of(done, 1) == -EBADF);
    CHECK(result_of(done, 2) == -EBADF);
}

TEST_CASE("ring: a recv longer than the kernel's per-op limit is clamped, not rejected",
          "[ring][recv][limits]")
{
    if (COIL_ASAN)
        SKIP("the span is longer than its buffer on purpose, which ASan builds report when the op "
             "is queued (tests/ring_asan_test.cpp)");
    // A span far longer than the SQE's 32-bit length over a small buffer: clamped as recv(2)
    // clamps it, and the 100 bytes waiting end the recv long before the buffer does.
    const socket_family f = any_family();
    CAPTURE(to_string(f));
    connection c = make_connection(f);
    const std::vector<std::byte> data = pattern(100, 5);
    send_all(c.client.get(), data);

    ring ring(4);
    std::vector<std::byte> buffer(4096);
    std::span<std::byte> huge(buffer.data(), std::size_t{5} << 30);
    REQUIRE_FALSE(ring.add_recv(c.server.get(), huge, 0, 1));
    auto done = collect(ring, 1);
    REQUIRE(done.size() == 1);
    REQUIRE(done[0].result == 100);
    CHECK(std::equal(data.begin(), data.end(), buffer.begin()));
    CHECK(std::all_of(buffer.begin() + 100, buffer.end(), [](std::byte b) { return b == std::byte{0}; }));
}
