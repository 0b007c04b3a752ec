// SPDX-License-Identifier: MIT
// Provided-buffer rings: one mapping holds the ring the kernel reads buffer addresses from and
// the buffers themselves; coil writes the ring entries and publishes the tail.

#include <coil/io/buffer_ring.hpp>

#include <coil/io/completion.hpp>
#include <coil/io/ring.hpp>

#include <liburing.h>

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>
#include <system_error>

namespace coil::io {

namespace {

// The kernel's limit on a provided-buffer ring (the tail is 16 bits; 32768 keeps the ring's
// index arithmetic unambiguous).
constexpr unsigned max_buffer_ring_entries = 32768;

// IOU_PBUF_RING_INC (Linux 6.12), which liburing 2.3's header does not have.
constexpr std::uint16_t pbuf_ring_incremental = 2;

// The layout coil writes: io_uring_buf entries of 16 bytes, the ring's tail overlaying the
// `resv` field of entry 0 (so filling an entry must never write `resv`).
static_assert(sizeof(io_uring_buf) == 16);
static_assert(offsetof(io_uring_buf_ring, tail) == offsetof(io_uring_buf, resv));

std::string describe(std::uint16_t group, unsigned count, std::size_t buffer_size)
{
    return "coil: buffer_ring(group=" + std::to_string(group) + ", count=" +
           std::to_string(count) + ", buffer_size=" + std::to_string(buffer_size) + "): ";
}

[[noreturn]] void contract_violation(const char* what) noexcept
{
    std::fputs(what, stderr);
    std::fputc('\n', stderr);
    std::abort();
}

} // namespace

buffer_ring::buffer_ring(ring& r, std::uint16_t group, unsigned count, std::size_t buffer_size,
                         buffer_ring_options options)
    : ring_(&r), group_(group), count_(count), buffer_size_(buffer_size),
      incremental_(options.incremental)
{
    if (count == 0 || count > max_buffer_ring_entries || (count & (count - 1)) != 0)
        throw std::system_error(EINVAL, std::generic_category(),
                                describe(group, count, buffer_size) +
                                    "count must be a power of two from 1 to 32768");
    if (buffer_size == 0 || buffer_size > std::numeric_limits<std::uint32_t>::max())
        throw std::system_error(EINVAL, std::generic_category(),
                                describe(group, count, buffer_size) +
                                    "buffer_size must be 1 to 2^32-1 bytes (a ring entry's "
                                    "length is 32 bits)");

    // The bookkeeping first: nothing to undo if it cannot be allocated.
    with_kernel_ = std::make_unique<std::uint8_t[]>(count);
    slot_of_ = std::make_unique<std::uint16_t[]>(count);
    reported_ = std::make_unique<std::uint8_t[]>(count);
    pending_ = std::make_unique<std::uint16_t[]>(count);
    if (incremental_)
        filled_ = std::make_unique<std::uint32_t[]>(count);
    reserve_ = std::make_unique<std::uint16_t[]>(count);
    publish_limit_ = options.publish_limit == 0 || options.publish_limit > count || incremental_
                         ? count
                         : options.publish_limit;

    // The kernel (before 6.4, without IOU_PBUF_RING_MMAP) pins the ring's pages from user
    // memory and wants the ring page-aligned: map it, and put the buffers right after it.
    const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    const std::size_t ring_bytes = (count * sizeof(io_uring_buf) + page - 1) / page * page;
    if (buffer_size > (std::numeric_limits<std::size_t>::max() - ring_bytes) / count)
        throw std::system_error(ENOMEM, std::generic_category(),
                                describe(group, count, buffer_size) +
                                    "count * buffer_size overflows: use fewer or smaller buffers");
    mapped_bytes_ = ring_bytes + count * buffer_size;
    mapping_ = ::mmap(nullptr, mapped_bytes_, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mapping_ == MAP_FAILED) {
        const int error = errno;
        throw std::system_error(error, std::generic_category(),
                                describe(group, count, buffer_size) + "mapping " +
                                    std::to_string(mapped_bytes_) +
                                    " bytes failed: use fewer or smaller buffers, or raise the "
                                    "address-space limit ('ulimit -v')");
    }
    buffers_ = static_cast<std::byte*>(mapping_) + ring_bytes;

    int ret = ring_->register_buffer_ring_(mapping_, count, group,
                                           incremental_ ? pbuf_ring_incremental : 0);
    if (ret == -EINVAL && incremental_) {
        // Whether it is the flag the kernel does not know: the same ring without it.
        if (ring_->register_buffer_ring_(mapping_, count, group) == 0) {
            static_cast<void>(ring_->unregister_buffer_ring_(group));
            ret = -ENOTSUP;
        }
    }
    if (ret < 0) {
        ::munmap(mapping_, mapped_bytes_);
        std::string what = describe(group, count, buffer_size) +
                           "io_uring_register_buf_ring failed: ";
        switch (-ret) {
        case ENOTSUP:
            what += "incremental buffer consumption needs Linux 6.12 (IOU_PBUF_RING_INC): "
                    "upgrade the kernel, or leave buffer_ring_options::incremental off";
            break;
        case EINVAL:
            what += "provided buffer rings need Linux 5.19 (IORING_REGISTER_PBUF_RING): upgrade "
                    "the kernel, or receive into your own buffers with ring::add_recv";
            break;
        case EEXIST:
            what += "buffer group " + std::to_string(group) +
                    " is already registered on this ring: pick another group id, or destroy "
                    "the buffer_ring that holds it first";
            break;
        case ENOMEM:
        case EFAULT:
            what += "the kernel could not pin the ring's memory: raise the locked-memory limit "
                    "('ulimit -l') or use fewer buffers";
            break;
        case EPERM:
        case EACCES:
        case ENOSYS:
            what += "io_uring_register is blocked (seccomp or an LSM): allow the io_uring_* "
                    "system calls in the policy this process runs under";
            break;
        default:
            what += "unexpected error";
            break;
        }
        throw std::system_error(-ret, std::generic_category(), what);
    }

    // Up to the limit to the kernel, the rest to the reserve (buffer 0 on its top). The
    // mapping is fresh (zeroed), so the tail starts at 0.
    auto* entries = static_cast<io_uring_buf*>(mapping_);
    for (unsigned id = 0; id < publish_limit_; ++id) {
        io_uring_buf& entry = entries[id];
        entry.addr = reinterpret_cast<std::uintptr_t>(buffers_ + id * buffer_size_);
        entry.len = static_cast<std::uint32_t>(buffer_size_);
        entry.bid = static_cast<std::uint16_t>(id);
        with_kernel_[id] = 1;
        slot_of_[id] = static_cast<std::uint16_t>(id);
    }
    for (unsigned id = count; id-- > publish_limit_;) {
        with_kernel_[id] = 2;
        reserve_[reserve_count_++] = static_cast<std::uint16_t>(id);
    }
    // Entries never written count as reported: the first publish into each may go ahead.
    for (unsigned slot = publish_limit_; slot < count; ++slot)
        reported_[slot] = 1;
    tail_ = static_cast<std::uint16_t>(publish_limit_);
    available_ = publish_limit_;
    // Release: the kernel reads the entries after it sees the tail move past them.
    __atomic_store_n(&static_cast<io_uring_buf_ring*>(mapping_)->tail, tail_, __ATOMIC_RELEASE);
}

buffer_ring::~buffer_ring()
{
    // Failure leaves nothing to undo: a group the kernel no longer knows (a ring that never
    // registered it) is gone already, and the memory is ours either way once nothing selects
    // from it (the documented precondition).
    static_cast<void>(ring_->unregister_buffer_ring_(group_));
    ::munmap(mapping_, mapped_bytes_);
}

std::span<std::byte> buffer_ring::buffer(std::uint16_t id) noexcept
{
    if (id >= count_)
        return {};
    return {buffers_ + static_cast<std::size_t>(id) * buffer_size_, buffer_size_};
}

void buffer_ring::give_back(std::uint16_t id) noexcept
{
    if (id >= count_)
        contract_violation("coil: buffer_ring::give_back: buffer id out of range");
    // Writing an entry for a buffer the kernel holds would let it fill the buffer twice; and
    // a full ring has no free entry: writing one would overwrite an entry the kernel may still
    // pick (a buffer given back twice, or a completion not passed to take or note_used).
    if (with_kernel_[id] != 0 || available_ + pending_count_ + reserve_count_ >= count_)
        contract_violation("coil: buffer_ring::give_back: the buffer is with the kernel (given "
                           "back twice, or take/note_used not called for a completion with "
                           "has_buffer(), or an incremental buffer not yet taken as last)");
    if (available_ + pending_count_ >= publish_limit_) {
        with_kernel_[id] = 2;
        reserve_[reserve_count_++] = id;
        return;
    }
    hand_over(id);
}

void buffer_ring::hand_over(std::uint16_t id) noexcept
{
    with_kernel_[id] = 1;
    // In order: behind earlier waiting give-backs, or waiting itself while the entry it would
    // overwrite has not been reported (a bundle's completion may still read it).
    if (pending_count_ != 0 || reported_[tail_ & (count_ - 1)] == 0) {
        pending_[(pending_head_ + pending_count_) & (count_ - 1)] = id;
        ++pending_count_;
        return;
    }
    publish(id);
}

void buffer_ring::top_up() noexcept
{
    while (reserve_count_ != 0 && available_ + pending_count_ < publish_limit_)
        hand_over(reserve_[--reserve_count_]);
}

void buffer_ring::raise_publish_limit(unsigned limit) noexcept
{
    if (limit > count_)
        limit = count_;
    if (limit > publish_limit_)
        publish_limit_ = limit;
    top_up();
}

void buffer_ring::publish(std::uint16_t id) noexcept
{
    auto* entries = static_cast<io_uring_buf*>(mapping_);
    const unsigned slot = tail_ & (count_ - 1);
    // Fill the free entry at the tail (addr, len, bid only: entry 0's resv is the tail).
    io_uring_buf& entry = entries[slot];
    entry.addr = reinterpret_cast<std::uintptr_t>(buffers_ + static_cast<std::size_t>(id) * buffer_size_);
    entry.len = static_cast<std::uint32_t>(buffer_size_);
    entry.bid = id;
    slot_of_[id] = static_cast<std::uint16_t>(slot);
    reported_[slot] = 0;
    if (incremental_)
        filled_[id] = 0;
    ++tail_;
    ++available_;
    // Release: the entry's fields are visible to the kernel before the tail that covers it.
    __atomic_store_n(&static_cast<io_uring_buf_ring*>(mapping_)->tail, tail_, __ATOMIC_RELEASE);
}

void buffer_ring::publish_pending() noexcept
{
    while (pending_count_ != 0 && reported_[tail_ & (count_ - 1)] != 0) {
        const std::uint16_t id = pending_[pending_head_];
        pending_head_ = (pending_head_ + 1) & (count_ - 1);
        --pending_count_;
        publish(id);
    }
    top_up(); // the kernel used a buffer: one from the reserve takes its place
}

void buffer_ring::reported(std::uint16_t id, unsigned slot) noexcept
{
    with_kernel_[id] = 0;
    reported_[slot] = 1;
    --available_;
}

void buffer_ring::note_used(std::uint16_t id) noexcept
{
    if (incremental_)
        contract_violation("coil: buffer_ring::note_used: this ring consumes buffers "
                           "incrementally: use take(), which tracks where each piece starts");
    if (id >= count_)
        contract_violation("coil: buffer_ring::note_used: buffer id out of range");
    if (with_kernel_[id] != 1 || available_ == 0 || reported_[slot_of_[id]] != 0)
        contract_violation("coil: buffer_ring::note_used: the buffer is not with the kernel (a "
                           "completion noted twice?)");
    reported(id, slot_of_[id]);
    publish_pending();
}

buffer_piece buffer_ring::take(const completion& c) noexcept
{
    if (!c.has_buffer())
        contract_violation("coil: buffer_ring::take: the completion carries no buffer");
    const std::uint16_t id = c.buffer_id();
    if (id >= count_)
        contract_violation("coil: buffer_ring::take: buffer id out of range");
    if (with_kernel_[id] != 1 || available_ == 0 || reported_[slot_of_[id]] != 0)
        contract_violation("coil: buffer_ring::take: the buffer is not with the kernel (a "
                           "completion taken twice, or from another group?)");
    const auto size = static_cast<std::uint32_t>(c.result > 0 ? c.result : 0);
    buffer_piece piece{id, 0, size, true};
    if (incremental_) {
        piece.offset = filled_[id];
        if (size > buffer_size_ - piece.offset)
            contract_violation("coil: buffer_ring::take: the piece does not fit in its buffer "
                               "(completions taken out of the order they were reaped?)");
        filled_[id] += size;
        piece.last = !c.buffer_more();
    } else if (size > buffer_size_) {
        contract_violation("coil: buffer_ring::take: more bytes than the buffer holds");
    }
    if (piece.last) {
        reported(id, slot_of_[id]);
        publish_pending();
    }
    return piece;
}

std::size_t buffer_ring::take(const completion& c, std::span<buffer_piece> pieces) noexcept
{
    if (incremental_)
        contract_violation("coil: buffer_ring::take: receive bundles on an incremental ring are "
                           "not supported");
    if (!c.has_buffer())
        contract_violation("coil: buffer_ring::take: the completion carries no buffer");
    const std::uint16_t first = c.buffer_id();
    if (first >= count_)
        contract_violation("coil: buffer_ring::take: buffer id out of range");
    std::size_t bytes = static_cast<std::size_t>(c.result > 0 ? c.result : 0);
    // The kernel fills the buffers it took in ring order, each to its end but the last.
    const std::size_t used = bytes == 0 ? 1 : (bytes + buffer_size_ - 1) / buffer_size_;
    if (used > pieces.size() || used > available_)
        contract_violation("coil: buffer_ring::take: the bundle has more buffers than `pieces` "
                           "has room for, or than the kernel held");
    auto* entries = static_cast<io_uring_buf*>(mapping_);
    const unsigned first_slot = slot_of_[first];
    for (std::size_t k = 0; k < used; ++k) {
        const unsigned slot = (first_slot + static_cast<unsigned>(k)) & (count_ - 1);
        const std::uint16_t id = entries[slot].bid;
        // Each entry must still hold the buffer the kernel took from it: written by us, with
        // the kernel, not yet reported.
        if (id >= count_ || slot_of_[id] != slot || with_kernel_[id] != 1 || reported_[slot] != 0)
            contract_violation("coil: buffer_ring::take: the bundle's buffers are not the ones "
                               "the ring handed to the kernel (a completion taken twice, or "
                               "from another group?)");
        const std::size_t size = bytes < buffer_size_ ? bytes : buffer_size_;
        pieces[k] = buffer_piece{id, 0, static_cast<std::uint32_t>(size), true};
        bytes -= size;
        reported(id, slot);
    }
    publish_pending();
    return used;
}

} // namespace coil::io
