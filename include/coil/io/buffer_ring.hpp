// SPDX-License-Identifier: MIT
/// @file
/// `coil::io::buffer_ring`: a group of buffers the kernel picks from when data arrives
/// (a provided-buffer ring, Linux 5.19), for `ring::add_recv_provided`.
///
/// @code
/// coil::io::ring ring(64);
/// coil::io::buffer_ring buffers(ring, /*group=*/1, /*count=*/64, /*buffer_size=*/4096);
/// ring.add_recv_provided(socket, buffers.group(), 0, coil::io::recv_mode::multishot, 7);
/// for (const coil::io::completion& c : ring.wait(1).value()) {
///     if (c.has_buffer()) {
///         buffers.note_used(c.buffer_id());
///         consume(buffers.buffer(c.buffer_id()).first(c.result));
///         buffers.give_back(c.buffer_id());
///     }
///     if (!c.more()) { /* re-arm, or stop: 0 is end of stream, -ENOBUFS ran dry */ }
/// }
/// @endcode
///
/// Ownership of each buffer goes back and forth: handed to the kernel (by the constructor and
/// `give_back`), then the caller's from the completion that reports it used (`has_buffer()`)
/// until it is given back. The kernel writes only into buffers it holds.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace coil::io {

class ring;

/// A provided-buffer ring registered with one `ring` as one buffer group. Not copyable or
/// movable: the kernel holds its address. Not thread-safe: use it on the thread that uses
/// its ring.
class buffer_ring {
public:
    /// Allocates (page-aligned, with mmap) a ring of `count` buffers of `buffer_size` bytes
    /// each, registers it with `r` as buffer group `group` (`io_uring_register_buf_ring`,
    /// Linux 5.19), and hands every buffer to the kernel.
    ///
    /// Preconditions: `count` is a power of two in 1..32768, `buffer_size` is 1..2^32-1, and
    /// `r` outlives this object. Throws `std::system_error` naming cause and fix when they do
    /// not hold (EINVAL), when the memory cannot be mapped (ENOMEM), when the kernel has no
    /// provided-buffer rings (EINVAL from a kernel before 5.19), or when `group` is already
    /// registered on `r` (EEXIST).
    buffer_ring(ring& r, std::uint16_t group, unsigned count, std::size_t buffer_size);

    /// Unregisters the group and unmaps its memory. Precondition: no op that selects from
    /// this group is in flight (its final completion has been reaped, or the ring drained):
    /// otherwise the kernel could still be writing into a buffer being unmapped.
    ~buffer_ring();

    buffer_ring(const buffer_ring&) = delete;
    buffer_ring& operator=(const buffer_ring&) = delete;

    /// The buffer group id to pass to `ring::add_recv_provided`.
    std::uint16_t group() const noexcept { return group_; }
    /// How many buffers the ring holds.
    unsigned count() const noexcept { return count_; }
    /// The size of each buffer.
    std::size_t buffer_size() const noexcept { return buffer_size_; }

    /// The memory of buffer `id`: what a completion with `has_buffer()` and that
    /// `buffer_id()` filled, in its first `result` bytes. Empty for an id `>= count()`.
    std::span<std::byte> buffer(std::uint16_t id) noexcept;

    /// Hands buffer `id` back to the kernel, which may fill it from the next receive on
    /// (publishes the ring's tail with release order). Preconditions, checked in every build
    /// (a violation aborts with a message: it would corrupt the ring the kernel reads):
    /// `id < count()`, and a buffer is out (`available() < count()`).
    void give_back(std::uint16_t id) noexcept;

    /// Buffers the kernel may still pick: handed over and not yet reported used. Counted by
    /// this object: each `give_back` adds one and each `note_used` removes one.
    unsigned available() const noexcept { return available_; }

    /// Records that the kernel used buffer `id`: call it once for every completion with
    /// `has_buffer()`. Precondition, checked in every build (a violation aborts):
    /// `id < count()` and `available() > 0`.
    void note_used(std::uint16_t id) noexcept;

private:
    // Set once at construction.
    ring* ring_;
    std::uint16_t group_;
    unsigned count_;
    std::size_t buffer_size_;
    std::size_t mapped_bytes_ = 0;      // the one mapping: the ring entries, then the buffers
    void* mapping_ = nullptr;
    std::byte* buffers_ = nullptr;      // buffer i starts at buffers_ + i * buffer_size_

    // Touched only by the thread using the ring.
    std::uint16_t tail_ = 0;            // the ring tail as filled; published by give_back
    // available_: buffers handed to the kernel and not reported used; never exceeds count_.
    unsigned available_ = 0;
};

} // namespace coil::io
