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
///         const coil::io::buffer_piece piece = buffers.take(c);
///         consume(buffers.bytes(piece));
///         if (piece.last)
///             buffers.give_back(piece.id);
///     }
///     if (!c.more()) { /* re-arm, or stop: 0 is end of stream, -ENOBUFS ran dry */ }
/// }
/// @endcode
///
/// Ownership of each buffer goes back and forth: handed to the kernel (by the constructor and
/// `give_back`), then the caller's from the completion that reports it used (`take`, or
/// `note_used`) until it is given back. The kernel writes only into buffers it holds.
///
/// With incremental consumption (`buffer_ring_options::incremental`, Linux 6.12) a receive
/// takes only the bytes it needs from the current buffer: the next receive, on the same socket
/// or another one, continues in the same buffer where the last one stopped. A completion then
/// names a piece of a buffer (`take` says which), and the buffer is the caller's once the
/// kernel has filled it (`buffer_piece::last`): a few large buffers serve many small receives.
///
/// With receive bundles (`recv_mode::bundle`, Linux 6.10) one completion fills several
/// buffers, named by their place in the ring after the first: `take(c, pieces)` lists them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

namespace coil::io {

class ring;
struct completion;

/// Settings of a `buffer_ring`.
struct buffer_ring_options {
    /// Incremental consumption (`IOU_PBUF_RING_INC`, Linux 6.12): each receive uses only the
    /// bytes it needs from the buffer at the ring's head, and the kernel keeps that buffer
    /// until it is full. Completions then carry `buffer_more()` while the kernel keeps their
    /// buffer. A kernel without it makes the constructor throw (`ENOTSUP`).
    bool incremental = false;
    /// At most this many buffers are with the kernel at a time (0: all of them). Buffers given
    /// back beyond it wait in a reserve, the most recently given back on top, and go to the
    /// kernel one by one as it uses buffers (`take` / `note_used`), or all at once as far as
    /// `raise_publish_limit` allows. The kernel takes buffers in ring order, so a ring
    /// holding every buffer cycles through all of its memory; a limit near the number of
    /// receives that fill buffers at once keeps the buffers in use warm in the CPU caches.
    /// A receive that finds the kernel's share empty while buffers wait in the reserve ends
    /// with `-ENOBUFS` like one on an exhausted ring: raise the limit, then arm it again.
    /// Ignored (all buffers published) on an incremental ring.
    unsigned publish_limit = 0;
};

/// What one completion put into a buffer ring's memory (see `buffer_ring::take`).
struct buffer_piece {
    std::uint16_t id = 0;     ///< the buffer
    std::uint32_t offset = 0; ///< where the bytes start in it (always 0 unless incremental)
    std::uint32_t size = 0;   ///< how many bytes
    /// Whether the kernel is done with the buffer: it will write no more into it, and it may be
    /// given back once the caller is done with this piece and any earlier one from it. Always
    /// true unless incremental, where it is false while the kernel goes on filling the rest.
    bool last = true;
};

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
    ///
    /// With `options.incremental`, a kernel without incremental consumption (before 6.12)
    /// makes it throw `std::system_error` with `ENOTSUP`, naming the kernel it needs.
    buffer_ring(ring& r, std::uint16_t group, unsigned count, std::size_t buffer_size,
                buffer_ring_options options = {});

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
    /// Whether the ring consumes buffers incrementally (see `buffer_ring_options`).
    bool incremental() const noexcept { return incremental_; }

    /// The memory of buffer `id`: what a completion with `has_buffer()` and that
    /// `buffer_id()` filled, in its first `result` bytes. Empty for an id `>= count()`.
    std::span<std::byte> buffer(std::uint16_t id) noexcept;

    /// The bytes of `piece`.
    std::span<std::byte> bytes(const buffer_piece& piece) noexcept
    {
        return buffer(piece.id).subspan(piece.offset, piece.size);
    }

    /// Records what completion `c` (one with `has_buffer()`) put into the ring's memory and
    /// says where: call it once for every such completion, in the order they were reaped (an
    /// incremental ring's pieces of one buffer follow each other). When the piece is `last`,
    /// the buffer is the caller's until `give_back`. Preconditions, checked in every build (a
    /// violation aborts): `c.has_buffer()`, its buffer is with the kernel, and the piece fits
    /// in the buffer.
    buffer_piece take(const completion& c) noexcept;

    /// `take` for a receive bundle's completion (`recv_mode::bundle`), which may have filled
    /// several buffers: the one it names and those that followed it in the ring, each full
    /// but the last. Writes one piece per buffer, in data order, to `pieces` and returns how
    /// many (1 for a completion that is not a bundle). Preconditions, checked in every build
    /// (a violation aborts): as for `take`, the ring is not incremental, and `pieces` has room
    /// (at most `count()` are ever needed).
    std::size_t take(const completion& c, std::span<buffer_piece> pieces) noexcept;

    /// Hands buffer `id` back to the kernel, which may fill it from the next receive on
    /// (publishes the ring's tail with release order). Preconditions, checked in every build
    /// (a violation aborts with a message: it would corrupt the ring the kernel reads):
    /// `id < count()`, and the buffer is the caller's (taken with `last` set, or noted used),
    /// not with the kernel.
    ///
    /// The entry a give-back writes is the one the kernel consumed `count()` entries earlier.
    /// If no completion has reported that entry yet (completions taken in another order than
    /// the kernel consumed the ring), a bundle's completion could still need to read it: the
    /// buffer then waits (`pending()`) and is published by the `take` that reports the entry.
    void give_back(std::uint16_t id) noexcept;

    /// Buffers given back and waiting to be published (see `give_back`).
    unsigned pending() const noexcept { return pending_count_; }

    /// Whether buffer `id` is with the kernel (handed over, or waiting to be or in the
    /// reserve, and not yet taken as `last`).
    bool with_kernel(std::uint16_t id) const noexcept
    {
        return id < count_ && with_kernel_[id] != 0;
    }

    /// Buffers the kernel may still pick: handed over and not yet reported used. Counted by
    /// this object: each buffer published adds one and each `take` / `note_used` removes one.
    unsigned available() const noexcept { return available_; }

    /// Buffers given back and waiting in the reserve (see `buffer_ring_options::publish_limit`).
    unsigned reserved() const noexcept { return reserve_count_; }
    /// How many buffers may be with the kernel at a time (`count()` when unlimited).
    unsigned publish_limit() const noexcept { return publish_limit_; }
    /// Raises the publish limit to `limit` (at most `count()`; a lower value changes nothing)
    /// and hands reserve buffers to the kernel up to it.
    void raise_publish_limit(unsigned limit) noexcept;

    /// Records that the kernel used buffer `id`: `take` for callers that need only the id.
    /// Precondition, checked in every build (a violation aborts): the ring is not incremental
    /// (its completions need `take`, which tracks where each piece starts), `id < count()`
    /// and the buffer is with the kernel.
    void note_used(std::uint16_t id) noexcept;

private:
    // Writes buffer `id` into the entry at the tail and publishes the tail.
    void publish(std::uint16_t id) noexcept;
    // Publishes the waiting give-backs whose entry has been reported.
    void publish_pending() noexcept;
    // Records that the kernel's use of buffer `id`, in the entry at `slot`, was reported.
    void reported(std::uint16_t id, unsigned slot) noexcept;
    // Hands buffer `id` (the caller's, or from the reserve) to the kernel: published, or
    // waiting for its entry.
    void hand_over(std::uint16_t id) noexcept;
    // Hands reserve buffers over while the kernel holds fewer than the limit.
    void top_up() noexcept;

    // Set once at construction.
    ring* ring_;
    std::uint16_t group_;
    unsigned count_;
    std::size_t buffer_size_;
    std::size_t mapped_bytes_ = 0;      // the one mapping: the ring entries, then the buffers
    void* mapping_ = nullptr;
    std::byte* buffers_ = nullptr;      // buffer i starts at buffers_ + i * buffer_size_
    bool incremental_ = false;

    // Touched only by the thread using the ring.
    std::uint16_t tail_ = 0;            // the ring tail as filled; published by give_back
    // available_: buffers handed to the kernel and not reported used; never exceeds count_.
    unsigned available_ = 0;
    // Per buffer: 1 while the kernel holds it (handed over, not yet taken as last), 2 while it
    // waits in the reserve.
    std::unique_ptr<std::uint8_t[]> with_kernel_;
    // The reserve: given-back buffers beyond the publish limit, a stack (top: the most
    // recently given back, the likeliest to be in the caches).
    std::unique_ptr<std::uint16_t[]> reserve_;
    unsigned reserve_count_ = 0;
    unsigned publish_limit_ = 0;
    // Incremental rings only, per buffer: bytes the kernel filled since it was handed over
    // (where its next piece starts).
    std::unique_ptr<std::uint32_t[]> filled_;
    // Per buffer: the ring entry it was last written to. Per entry: 1 once a completion has
    // reported the buffer the kernel took from it (the entry may then be rewritten).
    std::unique_ptr<std::uint16_t[]> slot_of_;
    std::unique_ptr<std::uint8_t[]> reported_;
    // Give-backs waiting for their entry to be reported, in order: a circular queue.
    std::unique_ptr<std::uint16_t[]> pending_;
    unsigned pending_head_ = 0;
    unsigned pending_count_ = 0;
};

} // namespace coil::io
