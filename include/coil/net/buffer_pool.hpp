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
class ring;
class buffer_ring;
struct buffer_piece;
} // namespace io
} // namespace coil

namespace coil::net {

class buffer_pool;

/// Bytes the kernel received into a pool buffer: `size()` bytes of it (all of a buffer's
/// start, or with an incremental pool a piece of a buffer other receives share). They belong
/// to the holder until destroyed (or `release()`d); the buffer goes back to the pool for the
/// kernel to fill again once every piece of it is released. Move-only. Must not outlive its
/// pool. It may be handed to another thread and dropped there: it then goes back to the pool
/// through the pool's executor (`post()`), at that executor's next loop turn.
class received_buffer {
public:
    received_buffer() noexcept = default;
    received_buffer(buffer_pool& pool, std::uint16_t id, std::uint32_t offset,
                    std::size_t size) noexcept;
    received_buffer(received_buffer&& other) noexcept
        : pool_(std::exchange(other.pool_, nullptr)), id_(other.id_), offset_(other.offset_),
          size_(other.size_)
    {
    }
    received_buffer& operator=(received_buffer&& other) noexcept
    {
        if (this != &other) {
            release();
            pool_ = std::exchange(other.pool_, nullptr);
            id_ = other.id_;
            offset_ = other.offset_;
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
    std::uint32_t offset_ = 0;
    std::size_t size_ = 0;
};

/// The bytes one receive bundle brought (see `stream_socket::receive_bundles`): `buffers()`
/// pool buffers in order, each full but the last, `size()` bytes in all. Iterating yields each
/// buffer's bytes. Like `received_buffer` it belongs to the holder until destroyed (or
/// `release()`d), then every buffer goes back to the pool. Move-only. Must not outlive its
/// pool.
class received_bundle {
public:
    received_bundle() noexcept = default;
    received_bundle(buffer_pool& pool, std::uint16_t first, unsigned buffers,
                    std::size_t size) noexcept
        : pool_(&pool), first_(first), buffers_(buffers), size_(size)
    {
    }
    received_bundle(received_bundle&& other) noexcept
        : pool_(std::exchange(other.pool_, nullptr)), first_(other.first_),
          buffers_(other.buffers_), size_(other.size_)
    {
    }
    received_bundle& operator=(received_bundle&& other) noexcept
    {
        if (this != &other) {
            release();
            pool_ = std::exchange(other.pool_, nullptr);
            first_ = other.first_;
            buffers_ = other.buffers_;
            size_ = other.size_;
        }
        return *this;
    }
    ~received_bundle() { release(); }

    /// The bytes received, in all.
    std::size_t size() const noexcept { return size_; }
    /// True for the empty bundle that marks the end of the stream (the peer closed its side).
    bool empty() const noexcept { return size_ == 0; }
    /// How many pool buffers hold them.
    unsigned buffers() const noexcept { return buffers_; }

    /// Walks the buffers in order; `*it` is one buffer's bytes.
    class iterator {
    public:
        using value_type = std::span<const std::byte>;
        using difference_type = std::ptrdiff_t;
        iterator() noexcept = default;
        value_type operator*() const noexcept;
        iterator& operator++() noexcept;
        iterator operator++(int) noexcept
        {
            iterator before = *this;
            ++*this;
            return before;
        }
        friend bool operator==(const iterator& a, const iterator& b) noexcept
        {
            return a.left_ == b.left_;
        }

    private:
        friend class received_bundle;
        iterator(const buffer_pool* pool, std::uint16_t id, unsigned left,
                 std::size_t bytes) noexcept
            : pool_(pool), id_(id), left_(left), bytes_(bytes)
        {
        }
        const buffer_pool* pool_ = nullptr;
        std::uint16_t id_ = 0;
        unsigned left_ = 0;     // buffers from this one to the end
        std::size_t bytes_ = 0; // bytes from this buffer to the end
    };
    iterator begin() const noexcept { return {pool_, first_, pool_ ? buffers_ : 0, size_}; }
    iterator end() const noexcept { return {}; }

    /// Hands every buffer back to its pool now.
    void release() noexcept;

private:
    buffer_pool* pool_ = nullptr;
    std::uint16_t first_ = 0;
    unsigned buffers_ = 0;
    std::size_t size_ = 0;
};

/// Settings of a `buffer_pool`.
struct buffer_pool_options {
    /// Incremental consumption (Linux 6.12, `IOU_PBUF_RING_INC`): a receive takes only the bytes
    /// it needs from the buffer the kernel is filling, so a few large buffers serve many
    /// connections' small messages; a buffer goes back to the kernel once it is full and every
    /// piece of it is released. On an older kernel the pool's constructor throws
    /// `std::system_error` (`ENOTSUP`) naming the kernel it needs.
    bool incremental = false;
    /// How many buffers the kernel is given to start with (0: all of them; ignored with
    /// `incremental`). The kernel takes buffers in ring order, so with every buffer in its
    /// ring it cycles through the whole pool's memory. Here the others wait in a reserve, the
    /// most recently returned first, and the number doubles each time a receive finds the
    /// kernel's buffers used up while others wait: it settles near the number of receives
    /// holding buffers at once, and the buffers in use stay warm in the CPU caches. It never
    /// shrinks.
    unsigned initial_publish_limit = 64;
};

/// A pool of equal buffers registered with one executor's ring as a provided-buffer ring
/// (`IORING_REGISTER_PBUF_RING`, Linux 5.19). Receives over the pool do not name a buffer:
/// the kernel picks one when data arrives, so a thousand idle connections hold no buffer.
///
/// When the kernel finds the pool empty, a multishot receive ends with `-ENOBUFS`; the
/// receive stream then waits (parked here, not spinning) until a buffer comes back and arms
/// its receive again. No byte is lost or reordered: data stays in the socket meanwhile.
///
/// With `buffer_pool_options::incremental` a buffer is shared: each receive gets the next
/// piece of the buffer the kernel is filling, whatever socket it came from, and the buffer
/// returns to the kernel when it is full and all its pieces are released. Size such a pool by
/// bytes in flight, not by connections: a received_buffer held long keeps its whole buffer out.
///
/// Lifetime: create and destroy it on the executor's thread, and receive over it only in that
/// executor's tasks (elsewhere `receive` throws `std::logic_error`: each executor needs a pool
/// of its own). Every stream receiving over it
/// must be destroyed before it, and every `received_buffer` released (destroying the pool
/// with buffers still lent out terminates the program with a message: the kernel or the
/// holder would write freed memory).
class buffer_pool {
public:
    /// `count` buffers (a power of two up to 32768) of `buffer_size` bytes each. Throws
    /// `std::system_error` (`EINVAL`, saying so) for another count, and when the kernel cannot
    /// register the ring (the message names the cause and the fix).
    buffer_pool(executor& ex, unsigned count, std::size_t buffer_size,
                buffer_pool_options options = {});
    ~buffer_pool();
    buffer_pool(const buffer_pool&) = delete;
    buffer_pool& operator=(const buffer_pool&) = delete;

    std::uint16_t group() const noexcept { return group_; }
    unsigned count() const noexcept;
    std::size_t buffer_size() const noexcept;
    /// Buffers not lent out: with the kernel, or in reserve for it (see
    /// `buffer_pool_options::initial_publish_limit`).
    unsigned available() const noexcept;
    /// How many buffers the kernel may hold at a time now (see
    /// `buffer_pool_options::initial_publish_limit`).
    unsigned publish_limit() const noexcept;
    /// Whether buffers are consumed incrementally (see `buffer_pool_options`).
    bool incremental() const noexcept;
    /// `received_buffer`s lent out (with an incremental pool, several may share a buffer).
    unsigned lent() const noexcept { return lent_; }
    /// Times a receive found the pool empty.
    std::uint64_t exhaustions() const noexcept { return exhaustions_; }

    // --- used by the receive op (not by applications) ------------------------------------
    /// Whether the pool's buffers are registered with `r` (its executor's ring): a receive on
    /// another ring would name the same group id in a table where it means another pool, or
    /// none.
    bool registered_with(const io::ring& r) const noexcept;
    /// Throws `std::logic_error` when a receive over the pool is made in a task of another
    /// executor.
    void check_used_here() const;
    /// A completion with `has_buffer()` arrived (call it in the order they are reaped): the
    /// piece it names is held until `lend` or `drop`. Returns the piece's offset in its buffer.
    std::uint32_t arrived(const io::completion& c) noexcept;
    /// A receive ended with `-ENOBUFS`: with buffers in reserve, the kernel gets twice as many.
    void note_exhausted() noexcept;
    /// The first `size` bytes of held buffer `id` (non-incremental pools), for an op that reads
    /// a header the kernel wrote before it lends the rest.
    std::span<const std::byte> held(std::uint16_t id, std::size_t size) const noexcept
    {
        return bytes(id, 0, size);
    }
    /// Lends the held piece of buffer `id` at `offset`, `size` bytes.
    received_buffer lend(std::uint16_t id, std::uint32_t offset, std::size_t size) noexcept;
    /// Lets go of a held piece of buffer `id` that nobody takes (a completion discarded).
    void drop(std::uint16_t id) noexcept;
    /// `arrived` for a receive bundle's completion: holds every buffer it filled, chained in
    /// order from the one it names. Returns how many. Not for incremental pools.
    unsigned arrived_bundle(const io::completion& c) noexcept;
    /// Lends the held bundle of `buffers` buffers from `first`, `size` bytes.
    received_bundle lend_bundle(std::uint16_t first, unsigned buffers, std::size_t size) noexcept;
    /// Lets go of a held bundle nobody takes.
    void drop_bundle(std::uint16_t first, unsigned buffers) noexcept;
    /// Parks `waiter` until a buffer comes back, if none is available; returns whether it did.
    bool park(detail::rearm_waiter& waiter) noexcept;
    /// A receive op's reference to its pool, counted, so that destroying a pool under a
    /// stream that receives over it stops the program with a message instead of letting the
    /// stream use freed memory later.
    class user {
    public:
        explicit user(buffer_pool* pool) noexcept : pool_(pool)
        {
            if (pool_ != nullptr)
                ++pool_->users_;
        }
        user(const user& other) noexcept : user(other.pool_) {}
        user(user&& other) noexcept : pool_(std::exchange(other.pool_, nullptr)) {}
        user& operator=(const user&) = delete;
        user& operator=(user&&) = delete;
        ~user()
        {
            if (pool_ != nullptr)
                --pool_->users_;
        }

    private:
        buffer_pool* pool_;
    };

private:
    friend class received_buffer;
    friend class received_bundle;
    friend class received_bundle::iterator;
    void returned(std::uint16_t id) noexcept;
    void returned_bundle(std::uint16_t first, unsigned buffers) noexcept;
    template <class Return>
    bool hand_back_on_executor(Return&& give_back) noexcept;
    void wake_parked() noexcept;
    std::span<const std::byte> bytes(std::uint16_t id, std::uint32_t offset,
                                     std::size_t size) const noexcept;

    executor* executor_;
    std::unique_ptr<io::buffer_ring> ring_;
    std::uint16_t group_;
    // Per buffer: pieces held (arrived, not yet released or dropped). A buffer goes back to
    // the kernel when the kernel is done with it and this falls to 0.
    std::unique_ptr<std::uint32_t[]> pieces_;
    // Per buffer: the buffer after it in the bundle it arrived in.
    std::unique_ptr<std::uint16_t[]> next_in_bundle_;
    // Room for one completion's pieces, for buffer_ring::take.
    std::unique_ptr<io::buffer_piece[]> taken_;
    unsigned lent_ = 0;
    unsigned users_ = 0; // receive ops over the pool (buffer_pool::user)
    std::uint64_t exhaustions_ = 0;
    detail::rearm_queue parked_; // streams waiting for a buffer to arm their receive again
};

inline received_buffer::received_buffer(buffer_pool& pool, std::uint16_t id,
                                        std::uint32_t offset, std::size_t size) noexcept
    : pool_(&pool), id_(id), offset_(offset), size_(size)
{
}

inline std::span<const std::byte> received_buffer::bytes() const noexcept
{
    return pool_ != nullptr ? pool_->bytes(id_, offset_, size_) : std::span<const std::byte>();
}

inline void received_buffer::release() noexcept
{
    if (pool_ != nullptr)
        std::exchange(pool_, nullptr)->returned(id_);
}

inline void received_bundle::release() noexcept
{
    if (pool_ != nullptr)
        std::exchange(pool_, nullptr)->returned_bundle(first_, buffers_);
}

inline received_bundle::iterator::value_type received_bundle::iterator::operator*() const noexcept
{
    const std::size_t size = bytes_ < pool_->buffer_size() ? bytes_ : pool_->buffer_size();
    return pool_->bytes(id_, 0, size);
}

inline received_bundle::iterator& received_bundle::iterator::operator++() noexcept
{
    bytes_ -= bytes_ < pool_->buffer_size() ? bytes_ : pool_->buffer_size();
    if (--left_ != 0)
        id_ = pool_->next_in_bundle_[id_];
    return *this;
}

} // namespace coil::net
