// SPDX-License-Identifier: MIT
/// @file
/// `owned_fd`: the descriptor a socket type owns, closed synchronously when its owner is
/// destroyed or assigned over. Move-only.
#pragma once

#include <unistd.h>

#include <utility>

namespace coil::detail {

class owned_fd {
public:
    owned_fd() noexcept = default;
    explicit owned_fd(int fd) noexcept : fd_(fd) {}
    owned_fd(owned_fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    owned_fd& operator=(owned_fd&& other) noexcept
    {
        if (this != &other) {
            reset();
            fd_ = std::exchange(other.fd_, -1);
        }
        return *this;
    }
    ~owned_fd() { reset(); }

    int get() const noexcept { return fd_; }
    /// Gives up ownership: the caller closes it.
    int release() noexcept { return std::exchange(fd_, -1); }
    void reset() noexcept
    {
        if (fd_ >= 0)
            ::close(std::exchange(fd_, -1));
    }

private:
    int fd_ = -1;
};

} // namespace coil::detail
