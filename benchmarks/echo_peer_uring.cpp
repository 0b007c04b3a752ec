// SPDX-License-Identifier: MIT
// echo_peer_uring: the raw liburing echo server bench_echo compares coil's echo_server with.
//
//   echo_peer_uring --port N [--buffers COUNT] [--buffer-size BYTES] [--direct]
//
// The same design as coil's echo_server, written directly against liburing so that the
// difference is the runtime and nothing else: one ring (SINGLE_ISSUER | DEFER_TASKRUN), a
// multishot accept, one multishot receive per connection over a provided-buffer ring
// registered with io_uring_register_buf_ring (4096 buffers of 4 KiB, as echo_server's
// defaults), and one send per received chunk straight from the provided buffer, which goes
// back to the ring when its send has completed. A connection has at most one send in flight,
// so its chunks go back in the order they came (echo_server's send_all loop does the same).
// With --direct, accepted sockets are direct descriptors (a registered file table the kernel
// fills from the multishot accept; IOSQE_FIXED_FILE on every receive and send; closed with
// IORING_OP_CLOSE on the slot): bench_echo's "liburing-direct" row, which measures whether
// direct descriptors pay for an echo server.
// Listens on 127.0.0.1 and prints "listening on 127.0.0.1:PORT"; SIGTERM ends it.

#include <liburing.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <vector>

namespace {

constexpr int buffer_group = 0;

// user_data: the kind of op in the top byte, the connection's fd in the low 32 bits.
enum class kind : std::uint64_t { accept = 1, receive = 2, send = 3, close = 4 };

std::uint64_t tag(kind k, int fd) noexcept
{
    return (static_cast<std::uint64_t>(k) << 56) | static_cast<std::uint32_t>(fd);
}
kind kind_of(std::uint64_t data) noexcept { return static_cast<kind>(data >> 56); }
int fd_of(std::uint64_t data) noexcept { return static_cast<int>(data & 0xffffffffU); }

[[noreturn]] void die(const char* what, int error)
{
    std::fprintf(stderr, "echo_peer_uring: %s: %s\n", what, std::strerror(error));
    std::exit(1);
}

// One received chunk waiting to go back: a provided buffer, its length, how much was sent.
struct chunk {
    unsigned short buffer_id;
    unsigned length;
    unsigned sent;
};

// Touched only by the loop's thread (the only thread).
struct connection {
    bool open = false;
    bool receiving = false;  // a multishot receive is armed
    bool sending = false;    // a send is in flight: the front of `pending`
    bool closing = false;    // the peer is gone: close once nothing is in flight
    // Chunks not yet sent back, oldest at pending_head. A vector, not a std::deque: an empty
    // vector allocates nothing, so an idle connection costs this record alone.
    std::vector<chunk> pending;
    std::size_t pending_head = 0;

    bool has_pending() const noexcept { return pending_head < pending.size(); }
    chunk& front() noexcept { return pending[pending_head]; }
    void pop_front()
    {
        if (++pending_head == pending.size()) {
            pending.clear(); // keeps its capacity: the next message reuses it
            pending_head = 0;
        }
    }
};

class server {
public:
    server(int listener, unsigned buffers, unsigned buffer_size, bool direct)
        : listener_(listener), buffers_(buffers), buffer_size_(buffer_size), direct_(direct)
    {
        io_uring_params p{};
        p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
                  IORING_SETUP_SUBMIT_ALL;
        p.cq_entries = 16384;
        p.flags |= IORING_SETUP_CQSIZE;
        if (int ret = io_uring_queue_init_params(4096, &ring_, &p); ret < 0)
            die("io_uring_queue_init_params (needs Linux 6.1 for DEFER_TASKRUN)", -ret);
        (void)io_uring_register_ring_fd(&ring_);
        if (direct_) {
            // As many slots as the descriptor limit allows (the kernel caps the table there).
            rlimit files{};
            ::getrlimit(RLIMIT_NOFILE, &files);
            const unsigned slots = static_cast<unsigned>(std::min<rlim_t>(files.rlim_cur, 32768));
            if (int ret = io_uring_register_files_sparse(&ring_, slots); ret < 0)
                die("io_uring_register_files_sparse", -ret);
        }

        // The buffer ring: its entries must be page-aligned memory the kernel reads.
        const std::size_t ring_bytes = sizeof(io_uring_buf) * buffers_;
        void* mem = mmap(nullptr, ring_bytes, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (mem == MAP_FAILED)
            die("mmap", errno);
        buffer_ring_ = static_cast<io_uring_buf_ring*>(mem);
        io_uring_buf_ring_init(buffer_ring_);
        io_uring_buf_reg reg{};
        reg.ring_addr = reinterpret_cast<std::uint64_t>(buffer_ring_);
        reg.ring_entries = buffers_;
        reg.bgid = buffer_group;
        if (int ret = io_uring_register_buf_ring(&ring_, &reg, 0); ret < 0)
            die("io_uring_register_buf_ring", -ret);
        storage_.resize(std::size_t{buffers_} * buffer_size_);
        for (unsigned i = 0; i < buffers_; ++i)
            io_uring_buf_ring_add(buffer_ring_, storage_.data() + std::size_t{i} * buffer_size_,
                                  buffer_size_, static_cast<unsigned short>(i),
                                  io_uring_buf_ring_mask(buffers_), static_cast<int>(i));
        io_uring_buf_ring_advance(buffer_ring_, static_cast<int>(buffers_));
    }

    [[noreturn]] void run()
    {
        arm_accept();
        for (;;) {
            int ret = io_uring_submit_and_wait(&ring_, 1);
            if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY)
                die("io_uring_submit_and_wait", -ret);
            unsigned head = 0;
            unsigned seen = 0;
            io_uring_cqe* cqe = nullptr;
            io_uring_for_each_cqe(&ring_, head, cqe)
            {
                handle(*cqe);
                ++seen;
            }
            io_uring_cq_advance(&ring_, seen);
        }
    }

private:
    io_uring_sqe* sqe()
    {
        io_uring_sqe* s = io_uring_get_sqe(&ring_);
        while (s == nullptr) {
            // The SQ is full: hand it to the kernel and try again.
            (void)io_uring_submit(&ring_);
            s = io_uring_get_sqe(&ring_);
        }
        return s;
    }

    void arm_accept()
    {
        io_uring_sqe* s = sqe();
        if (direct_)
            io_uring_prep_multishot_accept_direct(s, listener_, nullptr, nullptr, 0);
        else
            io_uring_prep_multishot_accept(s, listener_, nullptr, nullptr, SOCK_CLOEXEC);
        io_uring_sqe_set_data64(s, tag(kind::accept, listener_));
    }

    void arm_receive(int fd)
    {
        io_uring_sqe* s = sqe();
        io_uring_prep_recv_multishot(s, fd, nullptr, 0, 0);
        s->flags |= IOSQE_BUFFER_SELECT | (direct_ ? IOSQE_FIXED_FILE : 0);
        s->buf_group = buffer_group;
        io_uring_sqe_set_data64(s, tag(kind::receive, fd));
        connections_[static_cast<std::size_t>(fd)].receiving = true;
    }

    std::byte* buffer(unsigned short id) noexcept
    {
        return storage_.data() + std::size_t{id} * buffer_size_;
    }

    void give_back(unsigned short id)
    {
        io_uring_buf_ring_add(buffer_ring_, buffer(id), buffer_size_, id,
                              io_uring_buf_ring_mask(buffers_), 0);
        io_uring_buf_ring_advance(buffer_ring_, 1);
    }

    void send_front(int fd)
    {
        connection& c = connections_[static_cast<std::size_t>(fd)];
        const chunk& front = c.front();
        io_uring_sqe* s = sqe();
        io_uring_prep_send(s, fd, buffer(front.buffer_id) + front.sent,
                           front.length - front.sent, MSG_NOSIGNAL);
        if (direct_)
            s->flags |= IOSQE_FIXED_FILE;
        io_uring_sqe_set_data64(s, tag(kind::send, fd));
        c.sending = true;
    }

    void close_if_done(int fd)
    {
        connection& c = connections_[static_cast<std::size_t>(fd)];
        if (!c.closing || c.sending || c.receiving)
            return;
        for (std::size_t i = c.pending_head; i < c.pending.size(); ++i)
            give_back(c.pending[i].buffer_id);
        c = connection{};
        if (direct_) {
            io_uring_sqe* s = sqe();
            io_uring_prep_close_direct(s, static_cast<unsigned>(fd));
            io_uring_sqe_set_data64(s, tag(kind::close, fd));
        } else {
            ::close(fd);
        }
    }

    void handle(const io_uring_cqe& cqe)
    {
        const std::uint64_t data = io_uring_cqe_get_data64(&cqe);
        const int fd = fd_of(data);
        switch (kind_of(data)) {
        case kind::close:
            return; // a direct descriptor's slot is free again
        case kind::accept:
            if (cqe.res >= 0) {
                if (static_cast<std::size_t>(cqe.res) >= connections_.size())
                    connections_.resize(static_cast<std::size_t>(cqe.res) * 2 + 16);
                connections_[static_cast<std::size_t>(cqe.res)].open = true;
                arm_receive(cqe.res);
            }
            // EMFILE and friends end nothing here; a multishot accept that stopped is re-armed.
            if ((cqe.flags & IORING_CQE_F_MORE) == 0)
                arm_accept();
            return;
        case kind::receive: {
            connection& c = connections_[static_cast<std::size_t>(fd)];
            const bool more = (cqe.flags & IORING_CQE_F_MORE) != 0;
            if (!more)
                c.receiving = false;
            if (cqe.res > 0) {
                const auto id = static_cast<unsigned short>(cqe.flags >> IORING_CQE_BUFFER_SHIFT);
                c.pending.push_back(chunk{id, static_cast<unsigned>(cqe.res), 0});
                if (!c.sending)
                    send_front(fd);
                if (!more && !c.closing)
                    arm_receive(fd); // the kernel ended the multishot (a full CQ): re-arm
                return;
            }
            if (cqe.res == -ENOBUFS && !more) {
                arm_receive(fd); // out of buffers for a moment: they come back as sends finish
                return;
            }
            // End of stream or an error: finish what is queued, then close.
            c.closing = true;
            close_if_done(fd);
            return;
        }
        case kind::send: {
            connection& c = connections_[static_cast<std::size_t>(fd)];
            c.sending = false;
            if (cqe.res < 0) {
                c.closing = true;
                close_if_done(fd);
                return;
            }
            chunk& front = c.front();
            front.sent += static_cast<unsigned>(cqe.res);
            if (front.sent == front.length) {
                give_back(front.buffer_id);
                c.pop_front();
            }
            if (c.has_pending() && !c.closing)
                send_front(fd);
            else
                close_if_done(fd);
            return;
        }
        }
    }

    io_uring ring_{};
    io_uring_buf_ring* buffer_ring_ = nullptr;
    int listener_;
    unsigned buffers_;
    unsigned buffer_size_;
    bool direct_;
    std::vector<std::byte> storage_;
    std::vector<connection> connections_ = std::vector<connection>(1024);
};

unsigned number(std::string_view text)
{
    unsigned value = 0;
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc{} || ptr != text.data() + text.size()) {
        std::fprintf(stderr, "echo_peer_uring: '%.*s' is not a number\n",
                     static_cast<int>(text.size()), text.data());
        std::exit(2);
    }
    return value;
}

} // namespace

int main(int argc, char** argv)
{
    unsigned port = 0;
    unsigned buffers = 4096;
    unsigned buffer_size = 4096;
    bool direct = false;
    for (int i = 1; i < argc; i += 2) {
        const std::string_view arg = argv[i];
        if (arg == "--direct") {
            direct = true;
            --i; // takes no value
        } else if (i + 1 >= argc) {
            std::fprintf(stderr, "echo_peer_uring: %s needs a value\n", argv[i]);
            return 2;
        } else if (arg == "--port") {
            port = number(argv[i + 1]);
        } else if (arg == "--buffers") {
            buffers = number(argv[i + 1]);
        } else if (arg == "--buffer-size") {
            buffer_size = number(argv[i + 1]);
        } else {
            std::fprintf(stderr, "usage: echo_peer_uring --port N [--buffers COUNT] "
                                 "[--buffer-size BYTES] [--direct]\n");
            return 2;
        }
    }
    if (buffers == 0 || (buffers & (buffers - 1)) != 0 || buffers > 32768) {
        std::fprintf(stderr, "echo_peer_uring: --buffers must be a power of two up to 32768\n");
        return 2;
    }
    ::signal(SIGPIPE, SIG_IGN);

    const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
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

    server s(listener, buffers, buffer_size, direct);
    std::printf("echo_peer_uring: listening on 127.0.0.1:%u\n", ntohs(at.sin_port));
    std::fflush(stdout);
    s.run();
}
