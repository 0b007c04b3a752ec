// SPDX-License-Identifier: MIT
// The example servers' graceful shutdown: SIGINT and SIGTERM blocked and read through a
// signalfd (so a coroutine can co_await them), SIGPIPE ignored.
#pragma once

#include <coil/coil.hpp>

#include <fmt/core.h>

#include <signal.h>
#include <sys/signalfd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <span>
#include <system_error>

namespace coil_examples {

/// Blocks SIGINT and SIGTERM for this thread (and the threads it starts), ignores SIGPIPE, and
/// returns a signalfd that reads them; -1 after printing why, prefixed by `program`.
inline int open_shutdown_signals(const char* program)
{
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    ::signal(SIGPIPE, SIG_IGN);
    if (::pthread_sigmask(SIG_BLOCK, &signals, nullptr) != 0) {
        fmt::print(stderr, "{}: cannot block SIGINT/SIGTERM\n", program);
        return -1;
    }
    const int fd = ::signalfd(-1, &signals, SFD_CLOEXEC);
    if (fd < 0)
        fmt::print(stderr, "{}: signalfd: {}\n", program, std::strerror(errno));
    return fd;
}

/// Waits for SIGINT or SIGTERM on `fd` (from `open_shutdown_signals`) and yields its number;
/// nullopt when the wait was cancelled or the signalfd failed for good (EBADF, ...). A read
/// that the kernel refuses without consuming a signal (EINVAL for a cut length, EINTR, EAGAIN)
/// is issued again: before, one such failure ended the wait as if a signal had come, which
/// stopped echo_server at once and left http_server deaf to SIGTERM (found by running them on
/// the fault-injecting ring, docs/reliability.md).
inline coil::task<std::optional<int>> next_shutdown_signal(int fd)
{
    for (;;) {
        signalfd_siginfo info{};
        auto n = co_await coil::read(fd, std::as_writable_bytes(std::span(&info, 1)));
        if (n && *n == sizeof(info))
            co_return static_cast<int>(info.ssi_signo);
        if (n)
            continue; // short: nothing a signalfd gives, but nothing was consumed either
        const std::error_code e = n.error();
        if (e != std::errc::invalid_argument && e != std::errc::interrupted &&
            e != std::errc::resource_unavailable_try_again)
            co_return std::nullopt;
    }
}

} // namespace coil_examples
