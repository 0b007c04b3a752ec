// SPDX-License-Identifier: MIT
/// @file
/// `coil::fixed_buffer_pool`: equal buffers registered with one executor's ring (registered,
/// or "fixed", buffers), lent out as `fixed_buffer` leases that return themselves when dropped.
///
/// A read or write through a registered buffer (`coil::read_fixed`, `file::read_fixed_at`)
/// skips the kernel's per-op work of mapping and pinning the buffer's pages: they were pinned
/// once, at registration. For small reads from the page cache that is most of what separates
/// io_uring from a blocking `pread` (docs/benchmarks.md).
///
/// @code
/// coil::fixed_buffer_pool pool(ex, 64, 4096);          // on the executor's thread
/// // ... in a task on `ex`:
/// coil::fixed_buffer buf = pool.try_acquire();         // empty when all 64 are lent
/// if (!buf) buf = std::move(co_await pool.acquire()).value(); // or wait for one
/// auto n = co_await f.read_fixed_at(buf, 0);           // reads into all 4096 bytes
/// @endcode
#pragma once

#include <coil/io/result.hpp>
#include <coil/runtime/detail/op_base.hpp>
#include <coil/runtime/detail/rearm_waiter.hpp>
#include <coil/runtime/detail/resumption.hpp>
#include <coil/runtime/detail/stop_scope.hpp>
#include <coil/runtime/executor.hpp>
#include <coil/runtime/operation.hpp>
#include <coil/runtime/ops.hpp>

#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <span>
#include <system_error>
#include <stdexcept>
#include <utility>
#include <vector>

namespace coil {

class fixed_buffer_pool;

/// A lease on one buffer of a `fixed_buffer_pool`: the holder may read and write its bytes
/// and hand them to fixed ops until the lease is destroyed or `release()`d, when the buffer
/// goes back to the pool (to the first task waiting in `acquire()`, if any). Move-only. An
/// empty lease (default-constructed, moved from, or from an exhausted `try_acquire()`) holds
/// nothing and converts to false. A lease must not outlive its pool, and must not be released
/// while a fixed op on it is in flight (an op awaited in the same coroutine is always done
/// by the time the coroutine can drop the lease). Dropped on a thread other than its pool's
/// executor's, it goes back through that executor's `post()`, at its next loop turn.
class fixed_buffer {
public:
    fixed_buffer() noexcept = default;
    fixed_buffer(fixed_buffer&& other) noexcept
        : pool_(std::exchange(other.pool_, nullptr)), bytes_(other.bytes_), index_(other.index_)
    {
    }
    fixed_buffer& operator=(fixed_buffer&& other) noexcept
    {
        if (this != &other) {
            release();
            pool_ = std::exchange(other.pool_, nullptr);
            bytes_ = other.bytes_;
            index_ = other.index_;
        }
        return *this;
    }
    fixed_buffer(const fixed_buffer&) = delete;
    fixed_buffer& operator=(const fixed_buffer&) = delete;
    ~fixed_buffer() { release(); }

    /// The whole buffer (empty for an empty lease).
    std::span<std::byte> bytes() const noexcept { return bytes_; }
    std::size_t size() const noexcept { return bytes_.size(); }
    /// The buffer's index in the executor's buffer table.
    std::uint16_t index() const noexcept { return index_; }
    explicit operator bool() const noexcept { return pool_ != nullptr; }

    /// The whole buffer, as ops take it.
    fixed_buffer_view view() const noexcept { return {bytes_, index_}; }
    operator fixed_buffer_view() const noexcept { return view(); }
    /// `count` bytes from `offset` (clamped to the buffer), as ops take them.
    fixed_buffer_view view(std::size_t offset, std::size_t count) const noexcept
    {
        offset = offset < bytes_.size() ? offset : bytes_.size();
        count = count < bytes_.size() - offset ? count : bytes_.size() - offset;
        return {bytes_.subspan(offset, count), index_};
    }

    /// Returns the buffer to its pool now; the lease is empty afterwards.
    void release() noexcept;

private:
    friend class fixed_buffer_pool;
    fixed_buffer(fixed_buffer_pool& pool, std::span<std::byte> bytes, std::uint16_t index) noexcept
        : pool_(&pool), bytes_(bytes), index_(index)
    {
    }

    fixed_buffer_pool* pool_ = nullptr;
    std::span<std::byte> bytes_;
    std::uint16_t index_ = 0;
};

/// `count` buffers of `buffer_size` bytes, registered with one executor's ring as a run of
/// entries of its buffer table (`executor_options::buffer_slots`). They lie back to back in
/// one page-aligned mapping, buffer `i` at `i * buffer_size`: every buffer is page-aligned when
/// `buffer_size` is a multiple of the page size, and as aligned as its size allows otherwise
/// (O_DIRECT needs the device's logical block size: pick a multiple of it).
///
/// Exhaustion is defined: `try_acquire()` never waits and returns an empty lease when every
/// buffer is lent; `co_await acquire()` waits (first come, first served) until a lease is
/// returned, and yields `operation_canceled` if the task is stopped first. Nothing is
/// allocated per lease.
///
/// Lifetime: create, use and destroy it on its executor's thread, before the executor is
/// destroyed (the executor terminates the program with a message otherwise). Destroying the
/// pool while a lease is out terminates the program with a message too: the holder, or a
/// fixed op in flight, would use freed memory.
class fixed_buffer_pool {
public:
    /// Throws `std::system_error`: `EINVAL` for a zero count or size or a size over 1 GiB,
    /// `ENOMEM` when the memory cannot be mapped, `ENOBUFS` when the executor's buffer table
    /// has no run of `count` free entries, and the kernel's errors from registration
    /// (`ENOMEM`: pinned pages count against RLIMIT_MEMLOCK without CAP_IPC_LOCK). The
    /// message names the cause and the fix.
    fixed_buffer_pool(executor& ex, unsigned count, std::size_t buffer_size);
    ~fixed_buffer_pool();
    fixed_buffer_pool(const fixed_buffer_pool&) = delete;
    fixed_buffer_pool& operator=(const fixed_buffer_pool&) = delete;

    unsigned count() const noexcept { return count_; }
    std::size_t buffer_size() const noexcept { return buffer_size_; }
    /// Buffers not lent out now.
    unsigned available() const noexcept { return static_cast<unsigned>(free_.size()); }
    /// Times `try_acquire()` or `acquire()` found no buffer free.
    std::uint64_t exhaustions() const noexcept { return exhaustions_; }
    /// The index of buffer 0 in the executor's buffer table; buffer `i` is `first_index() + i`.
    std::uint16_t first_index() const noexcept { return first_index_; }

    /// A free buffer, or an empty lease when all are lent. Never waits.
    fixed_buffer try_acquire() noexcept;

    class acquire_awaiter;
    /// Waits for a free buffer: yields a lease, or `operation_canceled` when the awaiting
    /// task is stopped first. Waiters are served in the order they came.
    acquire_awaiter acquire() noexcept;

private:
    friend class fixed_buffer;
    void returned(std::uint16_t index) noexcept; // a lease on table entry `index` was dropped
    fixed_buffer lend(std::uint16_t buffer) noexcept;

    executor* executor_;
    unsigned count_;
    std::size_t buffer_size_;
    std::size_t mapped_bytes_ = 0;
    std::byte* memory_ = nullptr;         // buffer i at memory_ + i * buffer_size_
    std::uint16_t first_index_ = 0;
    std::vector<std::uint16_t> free_;     // buffers not lent, the last returned on top
    std::uint64_t exhaustions_ = 0;
    detail::rearm_queue waiting_;         // acquire() awaiters, in arrival order
};

/// The awaiter of `fixed_buffer_pool::acquire()`.
class [[nodiscard]] fixed_buffer_pool::acquire_awaiter : private detail::cancellable_wait,
                                                         private detail::rearm_waiter {
public:
    explicit acquire_awaiter(fixed_buffer_pool& pool) noexcept : pool_(&pool) {}
    acquire_awaiter(acquire_awaiter&& other) noexcept : pool_(other.pool_) {}

    bool await_ready() noexcept
    {
        lease_ = pool_->try_acquire();
        return static_cast<bool>(lease_);
    }

    template <class Promise>
    bool await_suspend(std::coroutine_handle<Promise> h)
    {
        if (detail::awaiting_executor(h) != pool_->executor_)
            throw std::logic_error("coil: fixed_buffer_pool::acquire() awaited in a task of "
                                   "another executor than the pool's (its buffers are "
                                   "registered with that executor's ring)");
        if (!begin_wait(h, &cancel_thunk))
            return false;
        ready = &ready_thunk;
        pool_->waiting_.push_back(*this);
        return true;
    }

    result<fixed_buffer> await_resume() noexcept
    {
        if (cancelled_)
            return std::make_error_code(std::errc::operation_canceled);
        return std::move(lease_);
    }

private:
    friend class fixed_buffer_pool;
    // A buffer came back for this waiter (it was unlinked from the pool's queue).
    static void ready_thunk(detail::rearm_waiter& w) noexcept
    {
        auto& self = static_cast<acquire_awaiter&>(w);
        self.detail::cancellable::unlink();
        self.executor_->schedule(self.wake_);
    }
    static void cancel_thunk(detail::cancellable& c) noexcept
    {
        auto& self = static_cast<acquire_awaiter&>(c);
        self.detail::rearm_waiter::unlink();
        self.cancelled_ = true;
        self.executor_->schedule(self.wake_);
    }

    fixed_buffer_pool* pool_;
    fixed_buffer lease_; // handed over by the pool before the waiter is resumed
};

inline fixed_buffer_pool::acquire_awaiter fixed_buffer_pool::acquire() noexcept
{
    return acquire_awaiter(*this);
}

inline void fixed_buffer::release() noexcept
{
    if (pool_ != nullptr)
        std::exchange(pool_, nullptr)->returned(index_);
}

} // namespace coil
