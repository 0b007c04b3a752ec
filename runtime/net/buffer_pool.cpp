// SPDX-License-Identifier: MIT
// The provided-buffer pool: lending filled buffers, taking them back, and waking receive
// streams that found the pool empty.

#include <coil/io/buffer_ring.hpp>
#include <coil/net/buffer_pool.hpp>
#include <coil/runtime/executor.hpp>

#include <cstdio>
#include <exception>

namespace coil::net {

buffer_pool::buffer_pool(executor& ex, unsigned count, std::size_t buffer_size)
    : executor_(&ex), group_(ex.allocate_buffer_group())
{
    ring_ = std::make_unique<io::buffer_ring>(ex.ring_, group_, count, buffer_size);
}

buffer_pool::~buffer_pool()
{
    if (lent_ != 0) {
        std::fprintf(stderr,
                     "coil: a buffer_pool was destroyed with %u buffer(s) still lent out as "
                     "received_buffer: release them (and destroy the streams receiving over the "
                     "pool) before the pool\n",
                     lent_);
        std::terminate();
    }
    ring_.reset(); // unregistered: the group id is free again
    executor_->release_buffer_group(group_);
}

unsigned buffer_pool::count() const noexcept { return ring_->count(); }
std::size_t buffer_pool::buffer_size() const noexcept { return ring_->buffer_size(); }
unsigned buffer_pool::available() const noexcept { return ring_->available(); }

void buffer_pool::note_used(std::uint16_t id) noexcept { ring_->note_used(id); }

received_buffer buffer_pool::lend(std::uint16_t id, std::size_t size) noexcept
{
    ++lent_;
    return received_buffer(*this, id, size);
}

void buffer_pool::give_back(std::uint16_t id) noexcept
{
    ring_->give_back(id);
    // One buffer is enough for a parked receive to make progress: wake one.
    if (detail::rearm_waiter* w = parked_.pop_front())
        w->ready(*w);
}

void buffer_pool::returned(std::uint16_t id) noexcept
{
    --lent_;
    give_back(id);
}

bool buffer_pool::park(detail::rearm_waiter& waiter) noexcept
{
    if (ring_->available() != 0)
        return false;
    parked_.push_back(waiter);
    return true;
}

std::span<const std::byte> buffer_pool::bytes(std::uint16_t id, std::size_t size) const noexcept
{
    return ring_->buffer(id).first(size);
}

} // namespace coil::net
