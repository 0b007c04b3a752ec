// SPDX-License-Identifier: MIT
// The example servers' graceful shutdown: SIGINT and SIGTERM blocked and read through a
// signalfd (so a coroutine can co_await them), SIGPIPE ignored.
#pragma once

#include <fmt/core.h>

#include <signal.h>
#include <sys/signalfd.h>

#include <cerrno>
#include <cstring>

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

} // namespace coil_examples
