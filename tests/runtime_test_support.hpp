// SPDX-License-Identifier: MIT
// Helpers shared by the runtime tests: self-cleaning descriptors and temporary files, pipes and
// eventfds, a frame-destruction counter, and a wait for "the executor thread is blocked in the ring".
#pragma once

#include <catch2/catch_test_macros.hpp>

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <span>
#include <sstream>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

namespace coil_test {

/// Owns a file descriptor and closes it on destruction.
class unique_fd {
public:
    unique_fd() = default;
    explicit unique_fd(int fd) noexcept : fd_(fd) {}
    unique_fd(unique_fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    unique_fd& operator=(unique_fd&& other) noexcept
    {
        if (this != &other) {
            reset();
            fd_ = std::exchange(other.fd_, -1);
        }
        return *this;
    }
    unique_fd(const unique_fd&) = delete;
    unique_fd& operator=(const unique_fd&) = delete;
    ~unique_fd() { reset(); }

    int get() const noexcept { return fd_; }
    int release() noexcept { return std::exchange(fd_, -1); }
    void reset() noexcept
    {
        if (fd_ >= 0)
            ::close(fd_);
        fd_ = -1;
    }

private:
    int fd_ = -1;
};

/// A fresh directory from mkdtemp(3), removed with everything in it on destruction.
class temp_dir {
public:
    temp_dir()
    {
        std::string pattern =
            (std::filesystem::temp_directory_path() / "coil-runtime-XXXXXX").string();
        if (::mkdtemp(pattern.data()) == nullptr)
            throw std::system_error(errno, std::generic_category(), "mkdtemp");
        path_ = pattern;
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
    ~temp_dir()
    {
        std::error_code ignored;
        std::filesystem::remove_all(path_, ignored);
    }

    const std::filesystem::path& path() const noexcept { return path_; }
    std::string file(const std::string& name) const { return (path_ / name).string(); }

    /// Creates (or truncates) `name` holding exactly `contents`, opened read-write.
    unique_fd create_file(const std::string& name, std::span<const std::byte> contents = {}) const
    {
        int fd = ::open(file(name).c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0)
            throw std::system_error(errno, std::generic_category(), "open " + name);
        unique_fd owned(fd);
        std::size_t done = 0;
        while (done < contents.size()) {
            ssize_t n = ::pwrite(fd, contents.data() + done, contents.size() - done,
                                 static_cast<off_t>(done));
            if (n < 0)
                throw std::system_error(errno, std::generic_category(), "pwrite " + name);
            done += static_cast<std::size_t>(n);
        }
        return owned;
    }

private:
    std::filesystem::path path_;
};

/// The two ends of a pipe.
struct pipe_fds {
    unique_fd read_end;
    unique_fd write_end;
};

/// A pipe; blocking unless `flags` has O_NONBLOCK (a blocking read end makes an io_uring read
/// wait for data instead of failing with EAGAIN).
inline pipe_fds make_pipe(int flags = 0)
{
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC | flags) != 0)
        throw std::system_error(errno, std::generic_category(), "pipe2");
    return {unique_fd(fds[0]), unique_fd(fds[1])};
}

inline unique_fd make_eventfd()
{
    int fd = ::eventfd(0, EFD_CLOEXEC);
    if (fd < 0)
        throw std::system_error(errno, std::generic_category(), "eventfd");
    return unique_fd(fd);
}

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
