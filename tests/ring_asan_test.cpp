// SPDX-License-Identifier: MIT
// In AddressSanitizer builds the ring checks, when an op is queued, that the memory it lends
// the kernel is addressable (include/coil/io/detail/kernel_memory.hpp): the kernel's writes are
// invisible to ASan. Each case queues an op in a forked child and expects the child to abort
// with coil's report; a valid buffer must pass. Without ASan every case SKIPs.

#include "ring_test_support.hpp"

#include <coil/io/detail/kernel_memory.hpp>
#include <coil/io/ring.hpp>

#include <catch2/catch_test_macros.hpp>

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <csignal>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#if COIL_ASAN
#include <sanitizer/asan_interface.h>
#endif

using coil::io::ring;
using namespace coil_test;

namespace {

struct child_outcome {
    bool aborted = false;
    int exit_code = -1;
    std::string stderr_text;
};

/// Runs `body` in a forked child with its stderr captured; the child exits 0 if `body` returns.
child_outcome in_child(const std::function<void()>& body)
{
    int err[2];
    REQUIRE(::pipe(err) == 0);
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ::dup2(err[1], 2);
        ::close(err[0]);
        body();
        ::_exit(0);
    }
    ::close(err[1]);
    child_outcome out;
    std::array<char, 4096> chunk{};
    for (;;) {
        const ssize_t n = ::read(err[0], chunk.data(), chunk.size());
        if (n <= 0)
            break;
        out.stderr_text.append(chunk.data(), static_cast<std::size_t>(n));
    }
    ::close(err[0]);
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    out.aborted = WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
    out.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return out;
}

/// `p`, hidden from the compiler's use-after-free analysis: these tests hand freed memory to
/// the ring on purpose.
template <class T>
T* opaque(T* p) noexcept
{
    asm volatile("" : "+r"(p));
    return p;
}

void require_asan()
{
    if (!COIL_ASAN)
        SKIP("not an AddressSanitizer build: the ring checks kernel memory only under ASan");
}

void check_reported(const child_outcome& out, const std::string& op)
{
    INFO(out.stderr_text);
    CHECK(out.aborted);
    CHECK(out.stderr_text.find("coil: " + op + ": memory handed to the kernel is not addressable") !=
          std::string::npos);
}

} // namespace

TEST_CASE("ring (ASan): queueing a read into freed memory is reported when it is queued",
          "[ring][asan]")
{
    require_asan();
    pipe_fds pipe = make_pipe();
    const auto out = in_child([&] {
        ring r(4);
        auto* buffer = opaque(new std::byte[64]);
        delete[] buffer;
        buffer = opaque(buffer);
        (void)r.add_read(pipe.read_end.get(), std::span(buffer, 64), current_position, 1);
    });
    check_reported(out, "add_read");
    // ASan's own description of the address follows coil's line.
    CHECK(out.stderr_text.find("freed") != std::string::npos);
}

TEST_CASE("ring (ASan): a fixed read or write naming freed memory is reported when it is queued",
          "[ring][asan]")
{
    require_asan();
    pipe_fds pipe = make_pipe();
    for (const bool write : {false, true}) {
        CAPTURE(write);
        const auto out = in_child([&] {
            ring r(4);
            auto* buffer = opaque(new std::byte[4096]);
            const ::iovec registered{buffer, 4096};
            if (r.register_buffers(std::span(&registered, 1)))
                std::_Exit(3);
            delete[] buffer; // still registered: the kernel would write into it
            buffer = opaque(buffer);
            if (write)
                (void)r.add_write_fixed(pipe.write_end.get(), std::span(buffer, 64),
                                        current_position, 0, 1);
            else
                (void)r.add_read_fixed(pipe.read_end.get(), std::span(buffer, 64),
                                       current_position, 0, 1);
        });
        check_reported(out, write ? "add_write_fixed" : "add_read_fixed");
    }
}

TEST_CASE("ring (ASan): a receive into a buffer that runs past its allocation is reported",
          "[ring][asan]")
{
    require_asan();
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    const auto out = in_child([&] {
        ring r(4);
        auto buffer = std::make_unique<std::byte[]>(32);
        (void)r.add_recv(sv[0], std::span(buffer.get(), 33), 0, 1);
    });
    ::close(sv[0]);
    ::close(sv[1]);
    check_reported(out, "add_recv");
}

TEST_CASE("ring (ASan): a readv whose second iovec names poisoned memory is reported",
          "[ring][asan]")
{
    require_asan();
    pipe_fds pipe = make_pipe();
    const auto out = in_child([&] {
        ring r(4);
        std::array<std::byte, 64> good{};
        std::array<std::byte, 64> bad{};
#if COIL_ASAN
        ASAN_POISON_MEMORY_REGION(bad.data(), bad.size());
#endif
        const std::array<::iovec, 2> iov{{{good.data(), good.size()}, {bad.data(), bad.size()}}};
        (void)r.add_readv(pipe.read_end.get(), iov, current_position, 1);
    });
    check_reported(out, "add_readv");
}

TEST_CASE("ring (ASan): a connect to a freed address and a timeout of a freed timespec are reported",
          "[ring][asan]")
{
    require_asan();
    const auto connect = in_child([] {
        ring r(4);
        auto* to = opaque(new ::sockaddr_in{});
        delete to;
        to = opaque(to);
        (void)r.add_connect(-1, reinterpret_cast<const ::sockaddr*>(to), sizeof(::sockaddr_in), 1);
    });
    check_reported(connect, "add_connect");
    const auto timeout = in_child([] {
        ring r(4);
        auto* when = opaque(new coil::io::timespec64{});
        delete when;
        when = opaque(when);
        (void)r.add_timeout(when, 0, coil::io::timeout_clock::relative, 1);
    });
    check_reported(timeout, "add_timeout");
}

TEST_CASE("ring (ASan): ops with valid memory pass the check and complete", "[ring][asan]")
{
    require_asan();
    pipe_fds pipe = make_pipe();
    const auto out = in_child([&] {
        ring r(4);
        std::array<std::byte, 8> out_bytes{std::byte{1}};
        std::array<std::byte, 8> in_bytes{};
        if (r.add_write(pipe.write_end.get(), out_bytes, current_position, 1) ||
            r.add_read(pipe.read_end.get(), in_bytes, current_position, 2))
            ::_exit(3);
        auto done = collect(r, 2);
        ::_exit(done.size() == 2 && in_bytes == out_bytes ? 0 : 4);
    });
    INFO(out.stderr_text);
    CHECK_FALSE(out.aborted);
    CHECK(out.exit_code == 0);
}
