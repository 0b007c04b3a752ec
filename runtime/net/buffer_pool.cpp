// SPDX-License-Identifier: MIT
// The provided-buffer pool: lending filled buffers, taking them back, and waking receive
// streams that found the pool empty.

#include <coil/io/buffer_ring.hpp>
#include <coil/net/buffer_pool.hpp>
#include <coil/runtime/executor.hpp>

#include <cstdio>
#include <exception>
#include <stdexcept>
#include <span>
#include <utility>

namespace coil::net {

buffer_pool::buffer_pool(executor& ex, unsigned count, std::size_t buffer_size,
                         buffer_pool_options options)
    : executor_(&ex), group_(ex.allocate_buffer_group())
{
    try {
        ring_ = std::make_unique<io::buffer_ring>(
            ex.ring_, group_, count, buffer_size,
            io::buffer_ring_options{options.incremental, options.initial_publish_limit});
    } catch (...) {
        ex.release_buffer_group(group_);
        throw;
    }
    pieces_ = std::make_unique<std::uint32_t[]>(count);
    next_in_bundle_ = std::make_unique<std::uint16_t[]>(count);
    taken_ = std::make_unique<io::buffer_piece[]>(count);
}

bool buffer_pool::registered_with(const io::ring& r) const noexcept
{
    return &r == &executor_->ring_;
}

void buffer_pool::check_used_here() const
{
    executor* running = detail::running_executor();
    if (running != nullptr && running != executor_)
        throw std::logic_error("coil: a receive over a net::buffer_pool in a task of another "
                               "executor: the pool's buffers are registered with the ring of "
                               "the executor that made it, so give each executor a pool of "
                               "its own");
}

buffer_pool::~buffer_pool()
{
    if (users_ != 0) {
        std::fprintf(stderr,
                     "coil: a buffer_pool was destroyed while %u receive stream(s) over it "
                     "still exist: destroy the streams (and release their buffers) before the "
                     "pool\n",
                     users_);
        std::terminate();
    }
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
unsigned buffer_pool::available() const noexcept
{
    return ring_->available() + ring_->reserved();
}
unsigned buffer_pool::publish_limit() const noexcept { return ring_->publish_limit(); }

void buffer_pool::note_exhausted() noexcept
{
    ++exhaustions_;
    if (ring_->reserved() != 0)
        ring_->raise_publish_limit(2 * ring_->publish_limit());
}
bool buffer_pool::incremental() const noexcept { return ring_->incremental(); }

std::uint32_t buffer_pool::arrived(const io::completion& c) noexcept
{
    const io::buffer_piece piece = ring_->take(c);
    ++pieces_[piece.id];
    // Taking a completion may publish give-backs that waited for its ring entry.
    wake_parked();
    return piece.offset;
}

received_buffer buffer_pool::lend(std::uint16_t id, std::uint32_t offset,
                                  std::size_t size) noexcept
{
    ++lent_;
    return received_buffer(*this, id, offset, size);
}

void buffer_pool::drop(std::uint16_t id) noexcept
{
    // The kernel may still be filling the rest of an incremental buffer: it comes back with
    // the completion that takes its last piece, once that piece is let go of too.
    if (--pieces_[id] != 0 || ring_->with_kernel(id))
        return;
    ring_->give_back(id);
    wake_parked();
}

unsigned buffer_pool::arrived_bundle(const io::completion& c) noexcept
{
    const std::size_t n = ring_->take(c, std::span(taken_.get(), ring_->count()));
    for (std::size_t k = 0; k < n; ++k) {
        ++pieces_[taken_[k].id];
        if (k + 1 < n)
            next_in_bundle_[taken_[k].id] = taken_[k + 1].id;
    }
    wake_parked();
    return static_cast<unsigned>(n);
}

received_bundle buffer_pool::lend_bundle(std::uint16_t first, unsigned buffers,
                                         std::size_t size) noexcept
{
    ++lent_;
    return received_bundle(*this, first, buffers, size);
}

void buffer_pool::drop_bundle(std::uint16_t first, unsigned buffers) noexcept
{
    std::uint16_t id = first;
    for (unsigned k = 0; k < buffers; ++k) {
        const std::uint16_t next = next_in_bundle_[id]; // read before the buffer goes back
        drop(id);
        id = next;
    }
}

// The pool's ring, its counts and its parked streams belong to the executor's thread: a
// buffer dropped on another thread goes back through the executor's post().
template <class Return>
bool buffer_pool::hand_back_on_executor(Return&& give_back) noexcept
{
    if (executor_->on_executor_thread())
        return false;
    try {
        executor_->post(std::forward<Return>(give_back));
    } catch (...) {
        std::fputs("coil: a received buffer dropped on a thread other than its pool's executor "
                   "could not be handed back to it (no memory): stopping\n",
                   stderr);
        std::terminate();
    }
    return true;
}

void buffer_pool::returned_bundle(std::uint16_t first, unsigned buffers) noexcept
{
    if (hand_back_on_executor([this, first, buffers] { returned_bundle(first, buffers); }))
        return;
    --lent_;
    drop_bundle(first, buffers);
}

void buffer_pool::wake_parked() noexcept
{
    // Once the kernel has a buffer (a give-back may be waiting for its ring entry, see
    // buffer_ring::give_back), every parked receive is armed again. Not just one per buffer:
    // a parked stream need not have data waiting (it parked to re-arm after a pause), and
    // one woken alone would take no buffer and wake nobody, while streams whose peers wait
    // for an answer stayed parked beside free buffers (a hang found by the fault-injection
    // echo test). Armed receives hold no buffer; those that find the ring dry again park
    // again, until the next buffer comes back. Waking moves them to a list of this call's
    // own first, so that one parking again is not woken twice here.
    if (ring_->available() == 0 || parked_.empty())
        return;
    detail::rearm_queue waking;
    waking.splice_back(parked_);
    while (detail::rearm_waiter* w = waking.pop_front())
        w->ready(*w);
}

void buffer_pool::returned(std::uint16_t id) noexcept
{
    if (hand_back_on_executor([this, id] { returned(id); }))
        return;
    --lent_;
    drop(id);
}

bool buffer_pool::park(detail::rearm_waiter& waiter) noexcept
{
    if (ring_->available() != 0)
        return false;
    parked_.push_back(waiter);
    return true;
}

std::span<const std::byte> buffer_pool::bytes(std::uint16_t id, std::uint32_t offset,
                                              std::size_t size) const noexcept
{
    return ring_->buffer(id).subspan(offset, size);
}

} // namespace coil::net
