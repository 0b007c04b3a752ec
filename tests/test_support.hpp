// SPDX-License-Identifier: MIT
// Helpers shared by the ring and runtime tests: self-cleaning descriptors, temporary directories,
// pipes and eventfds, the page-cache state of a file range.
#pragma once

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <utility>

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
    /// Gives up ownership (for a descriptor something else will close).
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
            (std::filesystem::temp_directory_path() / "coil-test-XXXXXX").string();
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
    /// The full path of `name` in the directory.
    std::string file(const std::string& name) const { return (path_ / name).string(); }

    /// Creates (or truncates) `name` holding exactly `contents` (empty by default), opened
    /// read-write.
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

/// A blocking eventfd with its counter at zero.
inline unique_fd make_eventfd()
{
    int fd = ::eventfd(0, EFD_CLOEXEC);
    if (fd < 0)
        throw std::system_error(errno, std::generic_category(), "eventfd");
    return unique_fd(fd);
}

/// Everything `fd` yields until end of file (a child's stderr, through a pipe).
inline std::string read_to_end(int fd)
{
    std::string out;
    char chunk[512];
    for (ssize_t n; (n = ::read(fd, chunk, sizeof chunk)) > 0;)
        out.append(chunk, static_cast<std::size_t>(n));
    return out;
}

/// How many descriptors this process has open (the entries of /proc/self/fd).
inline unsigned open_descriptors()
{
    unsigned n = 0;
    for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/fd"))
        ++n;
    return n;
}

/// In a forked child: limits locked memory to `bytes` and, when running as root, becomes
/// nobody, which drops CAP_IPC_LOCK (the capability that exempts a process from the limit).
/// False if either step failed.
inline bool limit_locked_memory(rlim_t bytes)
{
    const rlimit small{bytes, bytes};
    if (::setrlimit(RLIMIT_MEMLOCK, &small) != 0)
        return false;
    return ::geteuid() != 0 ||
           (::setresgid(65534, 65534, 65534) == 0 && ::setresuid(65534, 65534, 65534) == 0);
}

/// What cachestat(2) (Linux 6.5) reports of a file range: pages in the page cache, dirty, under
/// write-back. Debian 12's kernel headers predate the call, so its layout is written out here.
struct page_cache_counts {
    std::uint64_t cached;
    std::uint64_t dirty;
    std::uint64_t writeback;
    std::uint64_t evicted;
    std::uint64_t recently_evicted;
};

/// The page-cache state of `[offset, offset + length)` of `fd`; empty without cachestat(2).
inline std::optional<page_cache_counts> page_cache_state(int fd, std::uint64_t offset,
                                                         std::uint64_t length)
{
    constexpr long cachestat_syscall = 451; // x86-64 and the architectures of the common table
    struct {
        std::uint64_t offset;
        std::uint64_t length;
    } range{offset, length};
    page_cache_counts counts{};
    if (::syscall(cachestat_syscall, fd, &range, &counts, 0) != 0)
        return std::nullopt;
    return counts;
}

/// Pages of `[offset, offset + length)` of `fd` in the page cache (cachestat(2) must exist).
inline std::uint64_t cached_pages(int fd, std::uint64_t offset, std::uint64_t length)
{
    const std::optional<page_cache_counts> state = page_cache_state(fd, offset, length);
    if (!state)
        throw std::system_error(errno, std::generic_category(), "cachestat");
    return state->cached;
}

} // namespace coil_test
