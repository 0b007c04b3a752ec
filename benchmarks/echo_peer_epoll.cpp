// SPDX-License-Identifier: MIT
// echo_peer_epoll: the epoll echo server bench_echo compares coil's echo_server with.
//
//   echo_peer_epoll --port N
//
// One thread, non-blocking sockets, level-triggered epoll: the classic readiness loop, written
// the way a careful C programmer would. Each readable connection gets one read(2) into a shared
// 64 KiB buffer and one write(2) of what came; only when the write is short does the rest go
// into a per-connection backlog, the connection waits for EPOLLOUT and stops reading until the
// backlog has drained. An idle connection therefore costs its fd, its epoll entry and a small
// record. Level-triggered (rather than edge-triggered) saves the read that would otherwise be
// needed to see EAGAIN after each message. Listens on 127.0.0.1 and prints
// "listening on 127.0.0.1:PORT"; SIGTERM ends it.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <vector>

namespace {

[[noreturn]] void die(const char* what, int error)
{
    std::fprintf(stderr, "echo_peer_epoll: %s: %s\n", what, std::strerror(error));
    std::exit(1);
}

// Bytes received but not yet sent back (only after a short write).
struct connection {
    std::vector<std::byte> backlog;
    std::size_t backlog_sent = 0;
};

class server {
public:
    explicit server(int listener) : listener_(listener)
    {
        epoll_ = ::epoll_create1(EPOLL_CLOEXEC);
        if (epoll_ < 0)
            die("epoll_create1", errno);
        watch(listener_, EPOLLIN, EPOLL_CTL_ADD);
    }

    [[noreturn]] void run()
    {
        std::array<epoll_event, 256> events{};
        for (;;) {
            const int n = ::epoll_wait(epoll_, events.data(), static_cast<int>(events.size()), -1);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                die("epoll_wait", errno);
            }
            for (int i = 0; i < n; ++i) {
                const int fd = events[static_cast<std::size_t>(i)].data.fd;
                const std::uint32_t what = events[static_cast<std::size_t>(i)].events;
                if (fd == listener_)
                    accept_all();
                else if ((what & EPOLLOUT) != 0)
                    drain(fd);
                else
                    echo(fd);
            }
        }
    }

private:
    void watch(int fd, std::uint32_t events, int op)
    {
        epoll_event e{};
        e.events = events;
        e.data.fd = fd;
        if (::epoll_ctl(epoll_, op, fd, &e) != 0)
            die("epoll_ctl", errno);
    }

    void accept_all()
    {
        for (;;) {
            const int fd = ::accept4(listener_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd < 0)
                return; // EAGAIN: all taken; EMFILE and friends: try again on the next event
            if (static_cast<std::size_t>(fd) >= connections_.size())
                connections_.resize(static_cast<std::size_t>(fd) * 2 + 16);
            watch(fd, EPOLLIN, EPOLL_CTL_ADD);
        }
    }

    void close_connection(int fd)
    {
        connections_[static_cast<std::size_t>(fd)] = connection{};
        ::close(fd); // also leaves the epoll set: nothing else holds this file
    }

    void echo(int fd)
    {
        const ssize_t got = ::read(fd, buffer_.data(), buffer_.size());
        if (got <= 0) {
            if (got < 0 && (errno == EAGAIN || errno == EINTR))
                return;
            close_connection(fd);
            return;
        }
        const auto length = static_cast<std::size_t>(got);
        std::size_t sent = 0;
        while (sent < length) {
            const ssize_t n = ::send(fd, buffer_.data() + sent, length - sent, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                if (errno != EAGAIN) {
                    close_connection(fd);
                    return;
                }
                break;
            }
            sent += static_cast<std::size_t>(n);
        }
        if (sent < length) {
            // The peer is slow: keep the rest and stop reading until it has gone.
            connection& c = connections_[static_cast<std::size_t>(fd)];
            c.backlog.assign(buffer_.begin() + static_cast<std::ptrdiff_t>(sent),
                             buffer_.begin() + static_cast<std::ptrdiff_t>(length));
            c.backlog_sent = 0;
            watch(fd, EPOLLOUT, EPOLL_CTL_MOD);
        }
    }

    void drain(int fd)
    {
        connection& c = connections_[static_cast<std::size_t>(fd)];
        while (c.backlog_sent < c.backlog.size()) {
            const ssize_t n = ::send(fd, c.backlog.data() + c.backlog_sent,
                                     c.backlog.size() - c.backlog_sent, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN)
                    return;
                close_connection(fd);
                return;
            }
            c.backlog_sent += static_cast<std::size_t>(n);
        }
        c.backlog.clear();
        c.backlog.shrink_to_fit();
        c.backlog_sent = 0;
        watch(fd, EPOLLIN, EPOLL_CTL_MOD);
    }

    int listener_;
    int epoll_ = -1;
    std::array<std::byte, 65536> buffer_{};
    std::vector<connection> connections_ = std::vector<connection>(1024);
};

} // namespace

int main(int argc, char** argv)
{
    unsigned port = 0;
    if (argc == 3 && std::string_view(argv[1]) == "--port") {
        const std::string_view text = argv[2];
        auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), port);
        if (ec != std::errc{} || ptr != text.data() + text.size() || port > 65535) {
            std::fprintf(stderr, "echo_peer_epoll: bad port '%s'\n", argv[2]);
            return 2;
        }
    } else if (argc != 1) {
        std::fprintf(stderr, "usage: echo_peer_epoll --port N\n");
        return 2;
    }
    ::signal(SIGPIPE, SIG_IGN);

    const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (listener < 0)
        die("socket", errno);
    const int on = 1;
    (void)::setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    // TCP_NODELAY, inherited by accepted connections, as in every server bench_echo runs.
    (void)::setsockopt(listener, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    sockaddr_in at{};
    at.sin_family = AF_INET;
    at.sin_port = htons(static_cast<std::uint16_t>(port));
    at.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(listener, reinterpret_cast<sockaddr*>(&at), sizeof(at)) != 0)
        die("bind", errno);
    if (::listen(listener, 4096) != 0)
        die("listen", errno);
    socklen_t length = sizeof(at);
    (void)::getsockname(listener, reinterpret_cast<sockaddr*>(&at), &length);

    // Built on the heap: it holds the 64 KiB receive buffer.
    auto* s = new server(listener);
    std::printf("echo_peer_epoll: listening on 127.0.0.1:%u\n", ntohs(at.sin_port));
    std::fflush(stdout);
    s->run();
}
