// SPDX-License-Identifier: MIT
// Helpers shared by the runtime tests: byte buffers and patterns, a frame-destruction counter, and
// a wait for "the executor thread is blocked in the ring". Descriptors and temporary files come
// from test_support.hpp.
#pragma once

#include "test_support.hpp"

#include <catch2/catch_test_macros.hpp>

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <span>
#include <sstream>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

namespace coil_test {

/// Writes all of `bytes` with write(2); throws on failure.
inline void write_fully(int fd, std::span<const std::byte> bytes)
{
    while (!bytes.empty()) {
        ssize_t n = ::write(fd, bytes.data(), bytes.size());
        if (n < 0) {
            if (errno == EINTR)
                continue;
            throw std::system_error(errno, std::generic_category(), "write");
        }
        bytes = bytes.subspan(static_cast<std::size_t>(n));
    }
}

inline std::span<const std::byte> bytes_of(std::string_view s) noexcept
{
    return std::as_bytes(std::span(s.data(), s.size()));
}

inline std::string string_of(std::span<const std::byte> b)
{
    return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

/// The byte at `offset` of the tests' known pattern: varies with every position, so a read
/// from the wrong offset or a stale buffer shows.
inline std::byte pattern_byte(std::uint64_t offset) noexcept
{
    return static_cast<std::byte>((offset * 131 + (offset >> 8) * 7 + 13) & 0xff);
}

inline std::vector<std::byte> pattern(std::size_t size, std::uint64_t from = 0)
{
    std::vector<std::byte> out(size);
    for (std::size_t i = 0; i < size; ++i)
        out[i] = pattern_byte(from + i);
    return out;
}

/// Counts constructions and destructions of objects that live in coroutine frames; each
/// guard also records its own destruction in `destroyed_per_index`, so "every frame was destroyed
/// exactly once" can be checked per task, not only in total.
struct frame_census {
    explicit frame_census(std::size_t tasks) : destroyed_per_index(tasks, 0) {}
    std::size_t constructed = 0;
    std::size_t destroyed = 0;
    std::vector<int> destroyed_per_index;

    bool each_destroyed_once() const
    {
        for (int d : destroyed_per_index)
            if (d != 1)
                return false;
        return true;
    }
};

/// An RAII object for a coroutine frame: pass it by value as a coroutine parameter (it then
/// lives exactly as long as the frame, even if the coroutine never starts) or declare it as a
/// local.
class frame_guard {
public:
    frame_guard(frame_census& census, std::size_t index) noexcept : census_(&census), index_(index)
    {
        ++census_->constructed;
    }
    frame_guard(frame_guard&& other) noexcept
        : census_(std::exchange(other.census_, nullptr)), index_(other.index_)
    {
    }
    frame_guard(const frame_guard&) = delete;
    frame_guard& operator=(const frame_guard&) = delete;
    frame_guard& operator=(frame_guard&&) = delete;
    ~frame_guard()
    {
        if (census_ != nullptr) {
            ++census_->destroyed;
            ++census_->destroyed_per_index[index_];
        }
    }

private:
    frame_census* census_;
    std::size_t index_;
};

/// The calling thread's kernel thread id.
inline pid_t current_tid() noexcept { return static_cast<pid_t>(::syscall(SYS_gettid)); }

/// Blocks the calling thread until thread `tid` of this process sits in io_uring_enter(2)
/// (read from /proc/self/task/<tid>/syscall). An executor thread blocked there has handed every
/// SQE it prepared to the kernel, so its ops are in flight. Returns false if the state cannot
/// be observed (no /proc) within a generous bound; polling, not timing, decides the outcome.
inline bool wait_until_blocked_in_ring(pid_t tid)
{
    const std::string path = "/proc/self/task/" + std::to_string(tid) + "/syscall";
    // A thread must be seen blocked twice in a row, so a transient entry is not mistaken for the wait.
    int seen = 0;
    for (int attempt = 0; attempt < 60'000; ++attempt) {
        std::ifstream in(path);
        if (!in)
            return false;
        long number = -1;
        in >> number;
        if (in && number == SYS_io_uring_enter) {
            if (++seen == 2)
                return true;
        } else {
            seen = 0;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return false;
}

/// Raises the soft RLIMIT_NOFILE to at least `wanted` descriptors (up to the hard limit).
/// Returns whether the limit is now at least `wanted`.
inline bool ensure_fd_limit(rlim_t wanted)
{
    rlimit lim{};
    if (::getrlimit(RLIMIT_NOFILE, &lim) != 0)
        return false;
    if (lim.rlim_cur >= wanted)
        return true;
    if (lim.rlim_max != RLIM_INFINITY && lim.rlim_max < wanted)
        return false;
    lim.rlim_cur = wanted;
    return ::setrlimit(RLIMIT_NOFILE, &lim) == 0;
}

} // namespace coil_test
