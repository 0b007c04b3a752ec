// SPDX-License-Identifier: MIT
/// @file
/// `owned_fd`: the descriptor a socket type owns, closed when its owner is destroyed or
/// assigned over, as soon as the ops queued before have reached the kernel
/// (`detail::close_descriptor`). Move-only. It also keeps the ops made from the descriptor
/// that may arm again later (`fd_watchers`), and tells them when it closes.
#pragma once

#include <coil/net/detail/fd_watch.hpp>
#include <coil/runtime/detail/close_descriptor.hpp>

#include <utility>

namespace coil::detail {

class owned_fd {
public:
    owned_fd() noexcept = default;
    explicit owned_fd(int fd) noexcept : fd_(fd) {}
    owned_fd(owned_fd&& other) noexcept
        : fd_(std::exchange(other.fd_, -1)), watchers_(std::move(other.watchers_))
    {
    }
    owned_fd& operator=(owned_fd&& other) noexcept
    {
        if (this != &other) {
            reset();
            fd_ = std::exchange(other.fd_, -1);
            watchers_.take(other.watchers_);
        }
        return *this;
    }
    ~owned_fd() { reset(); }

    int get() const noexcept { return fd_; }
    /// Gives up ownership: the caller closes it (the ops made from it are no longer told).
    int release() noexcept
    {
        watchers_.detach();
        return std::exchange(fd_, -1);
    }
    /// Gives up ownership to a caller that is about to close it (after cancelling what is
    /// pending on it): the ops made from it are told now, so none arms again.
    int release_to_close() noexcept
    {
        watchers_.closed();
        return std::exchange(fd_, -1);
    }
    void reset() noexcept
    {
        if (fd_ >= 0) {
            watchers_.closed();
            close_descriptor(std::exchange(fd_, -1));
        }
    }

    /// Links `w`, an op made from this descriptor, so that it learns when the descriptor is
    /// closed. Nothing to link when there is no descriptor.
    void watch(fd_watch& w) const noexcept
    {
        if (fd_ >= 0)
            watchers_.add(w);
    }

private:
    int fd_ = -1;
    mutable fd_watchers watchers_; // bookkeeping: made from const sockets' receive()
};

} // namespace coil::detail
