// SPDX-License-Identifier: MIT
// Helpers shared by the ring-core tests: a temporary directory and file descriptors that clean up
// after themselves, and loops that gather a known number of completions from a ring.
#pragma once

#include <coil/io/ring.hpp>

#include <catch2/catch_test_macros.hpp>

#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <span>
#include <string>
#include <system_error>
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
        auto base = std::filesystem::temp_directory_path() / "coil-ring-XXXXXX";
        std::string pattern = base.string();
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

    /// Creates (or truncates) `name` in the directory, opened read-write.
    unique_fd create_file(const std::string& name) const
    {
        int fd = ::open((path_ / name).c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0)
            throw std::system_error(errno, std::generic_category(), "open " + name);
        return unique_fd(fd);
    }

    /// Creates `name` holding exactly `contents`, opened read-write.
    unique_fd create_file(const std::string& name, std::span<const std::byte> contents) const
    {
        unique_fd fd = create_file(name);
        std::size_t done = 0;
        while (done < contents.size()) {
            ssize_t n = ::pwrite(fd.get(), contents.data() + done, contents.size() - done,
                                 static_cast<off_t>(done));
            if (n < 0)
                throw std::system_error(errno, std::generic_category(), "pwrite " + name);
            done += static_cast<std::size_t>(n);
        }
        return fd;
    }

private:
    std::filesystem::path path_;
};

/// The two ends of a blocking pipe (blocking, so that an io_uring read on the empty read end
/// waits instead of failing with EAGAIN).
struct pipe_fds {
    unique_fd read_end;
    unique_fd write_end;
};

inline pipe_fds make_pipe()
{
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0)
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

/// Adds one to an eventfd's counter, which makes it readable.
inline void signal_eventfd(int fd)
{
    std::uint64_t one = 1;
    REQUIRE(::write(fd, &one, sizeof one) == static_cast<ssize_t>(sizeof one));
}

/// `count` bytes, each `value`.
inline std::vector<std::byte> filled(std::size_t count, unsigned char value)
{
    return std::vector<std::byte>(count, std::byte{value});
}

/// Copies every completion of a successful wait out of the ring.
inline std::vector<coil::io::completion> take(coil::io::result<coil::io::completion_range> done)
{
    REQUIRE(done.ok());
    std::vector<coil::io::completion> out;
    for (const coil::io::completion& c : *done)
        out.push_back(c);
    return out;
}

/// Submits what is queued and blocks until exactly `count` completions have been reaped
/// (more may arrive in the last batch; they are returned too).
inline std::vector<coil::io::completion> collect(coil::io::ring& ring, std::size_t count)
{
    std::vector<coil::io::completion> out;
    while (out.size() < count) {
        // With nothing outstanding no completion can arrive: fail instead of spinning.
        REQUIRE(ring.outstanding() > 0);
        auto batch = take(ring.wait(1));
        out.insert(out.end(), batch.begin(), batch.end());
    }
    return out;
}

/// The offset argument that means "the file position" (required for pipes).
inline constexpr std::uint64_t current_position = static_cast<std::uint64_t>(-1);

} // namespace coil_test
