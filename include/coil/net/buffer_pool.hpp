// SPDX-License-Identifier: MIT
/// @file
/// `coil::net::buffer_pool`: a provided-buffer ring the kernel fills receives from, and
/// `received_buffer`, the owned view of one filled buffer that returns itself when dropped.
#pragma once

#include <coil/io/completion.hpp>
#include <coil/runtime/detail/rearm_waiter.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <utility>

namespace coil {
class executor;
namespace io {
class buffer_ring;
}
} // namespace coil

namespace coil::net {

class buffer_pool;

/// One buffer the kernel filled for a receive: the first `size()` bytes of a pool buffer. It
/// belongs to the holder until destroyed (or `release()`d), then goes back to the pool for the
/// kernel to fill again. Move-only. Must not outlive its pool.
class received_buffer {
public:
    received_buffer() noexcept = default;
    received_buffer(buffer_pool& pool, std::uint16_t id, std::size_t size) noexcept;
    received_buffer(received_buffer&& other) noexcept
        : pool_(std::exchange(other.pool_, nullptr)), id_(other.id_), size_(other.size_)
    {
    }
    received_buffer& operator=(received_buffer&& other) noexcept
    {
        if (this != &other) {
            release();
            pool_ = std::exchange(other.pool_, nullptr);
            id_ = other.id_;
            size_ = other.size_;
        }
        return *this;
    }
    ~received_buffer() { release(); }

    /// The received bytes.
    std::span<const std::byte> bytes() const noexcept;
    std::size_t size() const noexcept { return size_; }
    /// True for the empty buffer that marks the end of the stream (the peer closed its side).
    bool empty() const noexcept { return size_ == 0; }
    /// Hands the buffer back to its pool now.
    void release() noexcept;

private:
    buffer_pool* pool_ = nullptr;
    std::uint16_t id_ = 0;
    std::size_t size_ = 0;
};

/// A pool of equal buffers registered with one executor's ring as a provided-buffer ring
/// (`IORING_REGISTER_PBUF_RING`, Linux 5.19). Receives over the pool do not name a buffer:
/// the kernel picks one when data arrives, so a thousand idle connections hold no buffer.
///
/// When the kernel finds the pool empty, a multishot receive ends with `-ENOBUFS`; the
/// receive stream then waits (parked here, not spinning) until a buffer comes back and arms
/// its receive again. No byte is lost or reordered: data stays in the socket meanwhile.
///
/// Lifetime: create and destroy it on the executor's thread. Every stream receiving over it
/// must be destroyed before it, and every `received_buffer` released (destroying the pool
/// with buffers still lent out terminates the program with a message: the kernel or the
/// holder would write freed memory).
class buffer_pool {
public:
    /// `count` buffers (a power of two up to 32768) of `buffer_size` bytes each. Throws
    /// `std::system_error` when the kernel cannot register the ring (the message names the
    /// cause and the fix).
    buffer_pool(executor& ex, unsigned count, std::size_t buffer_size);
    ~buffer_pool();
    buffer_pool(const buffer_pool&) = delete;
    buffer_pool& operator=(const buffer_pool&) = delete;

    std::uint16_t group() const noexcept { return group_; }
    unsigned count() const noexcept;
    std::size_t buffer_size() const noexcept;
    /// Buffers the kernel may fill now.
    unsigned available() const noexcept;
    /// Buffers lent out as `received_buffer`s.
    unsigned lent() const noexcept { return lent_; }
    /// Times a receive found the pool empty.
    std::uint64_t exhaustions() const noexcept { return exhaustions_; }

    // --- used by the receive op (not by applications) ------------------------------------
    /// The kernel used buffer `id` (a completion with `has_buffer()` arrived).
    void note_used(std::uint16_t id) noexcept;
    /// A receive ended with `-ENOBUFS`.
    void note_exhausted() noexcept { ++exhaustions_; }
    /// Lends buffer `id`, filled with `size` bytes.
    received_buffer lend(std::uint16_t id, std::size_t size) noexcept;
    /// Gives buffer `id` back to the kernel (not lent: taken from a completion nobody took).
    void give_back(std::uint16_t id) noexcept;
    /// Parks `waiter` until a buffer comes back, if none is available; returns whether it did.
    bool park(detail::rearm_waiter& waiter) noexcept;

private:
    friend class received_buffer;
    void returned(std::uint16_t id) noexcept;
    std::span<const std::byte> bytes(std::uint16_t id, std::size_t size) const noexcept;

    executor* executor_;
    std::unique_ptr<io::buffer_ring> ring_;
    std::uint16_t group_;
    unsigned lent_ = 0;
    std::uint64_t exhaustions_ = 0;
    detail::rearm_queue parked_; // streams waiting for a buffer to arm their receive again
};

inline received_buffer::received_buffer(buffer_pool& pool, std::uint16_t id,
                                        std::size_t size) noexcept
    : pool_(&pool), id_(id), size_(size)
{
}

inline std::span<const std::byte> received_buffer::bytes() const noexcept
{
    return pool_ != nullptr ? pool_->bytes(id_, size_) : std::span<const std::byte>();
}

inline void received_buffer::release() noexcept
{
    if (pool_ != nullptr)
        std::exchange(pool_, nullptr)->returned(id_);
}

} // namespace coil::net
