// SPDX-License-Identifier: MIT
// Registered files and buffers in the runtime: the executor's two tables (registered sparse on
// first use, entries handed out and taken back here) and the fixed buffer pool built on them.

#include <coil/runtime/executor.hpp>
#include <coil/runtime/fixed_buffer_pool.hpp>

#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <exception>
#include <new>
#include <string>

namespace coil {

namespace {

// The kernel's limits: IORING_MAX_REG_BUFFERS entries, each at most 1 GiB.
constexpr unsigned max_buffer_entries = 1U << 14;
constexpr std::size_t max_buffer_size = std::size_t{1} << 30;

// The first run of `count` free entries in `taken`, or taken.size() when there is none.
std::size_t find_free_run(const std::vector<bool>& taken, std::size_t count) noexcept
{
    std::size_t run = 0;
    for (std::size_t i = 0; i < taken.size(); ++i) {
        run = taken[i] ? 0 : run + 1;
        if (run == count)
            return i + 1 - count;
    }
    return taken.size();
}

// Registers the table on first use: `registered` is sized then, so an empty vector means no
// table yet. Registration failing leaves it empty, for a later attempt to try again.
template <class Register>
std::error_code ensure_table(std::vector<bool>& taken, unsigned size, Register&& register_sparse)
{
    if (!taken.empty())
        return {};
    if (std::error_code ec = register_sparse(size))
        return ec;
    taken.assign(size, false);
    return {};
}

} // namespace

result<std::uint32_t> executor::register_file(int fd)
{
    if (file_slots_ == 0)
        return std::make_error_code(std::errc::too_many_files_open);
    if (std::error_code ec = ensure_table(file_slot_taken_, file_slots_, [&](unsigned n) {
            return ring_.register_files_sparse(n);
        }))
        return ec;
    const std::size_t slot = find_free_run(file_slot_taken_, 1);
    if (slot == file_slot_taken_.size())
        return std::make_error_code(std::errc::too_many_files_open);
    const int fds[1] = {fd};
    if (std::error_code ec = ring_.update_files(static_cast<unsigned>(slot), fds))
        return ec;
    file_slot_taken_[slot] = true;
    ++files_taken_;
    return static_cast<std::uint32_t>(slot);
}

void executor::unregister_file(std::uint32_t slot) noexcept
{
    if (slot >= file_slot_taken_.size() || !file_slot_taken_[slot])
        return;
    if (::getpid() != pid_) { // a forked child's copy: the table is the parent's
        file_slot_taken_[slot] = false;
        --files_taken_;
        return;
    }
    // Emptying a slot takes nothing but the table's reference: it fails only for a slot that
    // does not exist, which the check above rules out. Ops in flight hold their own reference;
    // ops queued in this loop turn resolve the slot when issued: issue them first.
    (void)issue_queued(); // ops still waiting for SQ room are not helped
    const int empty[1] = {-1};
    (void)ring_.update_files(slot, empty);
    file_slot_taken_[slot] = false;
    --files_taken_;
}

result<std::uint16_t> executor::register_buffers(std::span<const ::iovec> buffers)
{
    const unsigned slots = std::min(buffer_slots_, max_buffer_entries);
    if (buffers.empty() || buffers.size() > slots)
        return std::make_error_code(std::errc::no_buffer_space);
    if (std::error_code ec = ensure_table(buffer_entry_taken_, slots, [&](unsigned n) {
            return ring_.register_buffers_sparse(n);
        }))
        return ec;
    const std::size_t first = find_free_run(buffer_entry_taken_, buffers.size());
    if (first == buffer_entry_taken_.size())
        return std::make_error_code(std::errc::no_buffer_space);
    if (std::error_code ec = ring_.update_buffers(static_cast<unsigned>(first), buffers))
        return ec;
    std::fill_n(buffer_entry_taken_.begin() + static_cast<std::ptrdiff_t>(first), buffers.size(),
                true);
    buffers_taken_ += buffers.size();
    return static_cast<std::uint16_t>(first);
}

void executor::unregister_buffers(std::uint16_t first, unsigned count) noexcept
{
    if (count == 0 || std::size_t{first} + count > buffer_entry_taken_.size())
        return;
    if (::getpid() != pid_) { // a forked child's copy: the table is the parent's
        std::fill_n(buffer_entry_taken_.begin() + first, count, false);
        buffers_taken_ -= count;
        return;
    }
    // Ops in flight keep the pages they resolved (docs/lifetimes.md); queued ones resolve them
    // when issued.
    (void)issue_queued();
    // One update for the whole run (a null entry of length 0 is an empty one). Without memory
    // for the array, one update per entry does the same.
    try {
        const std::vector<::iovec> empty(count, ::iovec{nullptr, 0});
        (void)ring_.update_buffers(first, empty);
    } catch (const std::bad_alloc&) {
        const ::iovec empty{nullptr, 0};
        for (unsigned i = 0; i < count; ++i)
            (void)ring_.update_buffers(first + i, std::span<const ::iovec>(&empty, 1));
    }
    std::fill_n(buffer_entry_taken_.begin() + first, count, false);
    buffers_taken_ -= count;
}

// --- fixed_buffer_pool -------------------------------------------------------------------------

namespace {

[[noreturn]] void pool_error(int error, const std::string& what)
{
    throw std::system_error(error, std::generic_category(), "coil: fixed_buffer_pool: " + what);
}

std::string registration_advice(const std::error_code& ec, unsigned count, std::size_t size)
{
    std::string what = "registering " + std::to_string(count) + " buffers of " +
                       std::to_string(size) + " bytes failed: " + ec.message();
    if (ec == std::errc::no_buffer_space)
        what += ". The executor's buffer table has no run of that many free entries: raise "
                "executor_options::buffer_slots (at most 16384) or destroy other pools first";
    else if (ec == std::errc::not_enough_memory)
        what += ". Registered buffers are pinned and, without CAP_IPC_LOCK, count against "
                "RLIMIT_MEMLOCK: raise it ('ulimit -l') or register fewer or smaller buffers";
    else if (ec == io::errc::unsupported_operation)
        what += ". This kernel cannot register a sparse buffer table (Linux 5.13 or newer is "
                "needed)";
    return what;
}

} // namespace

fixed_buffer_pool::fixed_buffer_pool(executor& ex, unsigned count, std::size_t buffer_size)
    : executor_(&ex), count_(count), buffer_size_(buffer_size)
{
    if (count == 0 || buffer_size == 0 || buffer_size > max_buffer_size ||
        count > max_buffer_entries)
        pool_error(EINVAL, "count must be 1..16384 and buffer_size 1..1 GiB (got " +
                               std::to_string(count) + " x " + std::to_string(buffer_size) + ")");
    // One mapping, page-aligned, so every buffer is as aligned as its size allows (O_DIRECT
    // needs the logical block size) and the kernel pins whole pages.
    mapped_bytes_ = std::size_t{count} * buffer_size;
    void* memory = ::mmap(nullptr, mapped_bytes_, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (memory == MAP_FAILED)
        pool_error(errno, "mapping " + std::to_string(mapped_bytes_) + " bytes failed");
    memory_ = static_cast<std::byte*>(memory);

    std::vector<::iovec> iovecs(count);
    for (unsigned i = 0; i < count; ++i)
        iovecs[i] = ::iovec{memory_ + std::size_t{i} * buffer_size, buffer_size};
    result<std::uint16_t> first = ex.register_buffers(iovecs);
    if (!first) {
        ::munmap(memory_, mapped_bytes_);
        pool_error(first.error().value(), registration_advice(first.error(), count, buffer_size));
    }
    first_index_ = *first;
    free_.reserve(count);
    for (unsigned i = count; i > 0; --i) // buffer 0 on top
        free_.push_back(static_cast<std::uint16_t>(i - 1));
}

fixed_buffer_pool::~fixed_buffer_pool()
{
    if (free_.size() != count_) {
        std::fprintf(stderr,
                     "coil: a fixed_buffer_pool was destroyed with %zu buffer(s) still lent out "
                     "as fixed_buffer: release them (and let the ops on them complete) before "
                     "the pool\n",
                     count_ - free_.size());
        std::terminate();
    }
    // No task can be waiting in acquire(): waiting needs every buffer lent out.
    executor_->unregister_buffers(first_index_, count_);
    ::munmap(memory_, mapped_bytes_);
}

fixed_buffer fixed_buffer_pool::lend(std::uint16_t buffer) noexcept
{
    return fixed_buffer(*this, {memory_ + std::size_t{buffer} * buffer_size_, buffer_size_},
                        static_cast<std::uint16_t>(first_index_ + buffer));
}

fixed_buffer fixed_buffer_pool::try_acquire() noexcept
{
    if (free_.empty()) {
        ++exhaustions_;
        return {};
    }
    const std::uint16_t buffer = free_.back();
    free_.pop_back();
    return lend(buffer);
}

void fixed_buffer_pool::returned(std::uint16_t index) noexcept
{
    // The pool and its waiters belong to the executor's thread: a lease dropped on another
    // thread comes back through the executor's post().
    if (!executor_->on_executor_thread()) {
        try {
            executor_->post([this, index] { returned(index); });
        } catch (...) {
            std::fputs("coil: a fixed_buffer dropped on a thread other than its pool's executor "
                       "could not be handed back to it (no memory): stopping\n",
                       stderr);
            std::terminate();
        }
        return;
    }
    const auto buffer = static_cast<std::uint16_t>(index - first_index_);
    // The first waiter takes it over directly: a task that calls try_acquire() meanwhile
    // cannot overtake one that has been waiting.
    if (detail::rearm_waiter* w = waiting_.pop_front()) {
        auto& waiter = static_cast<acquire_awaiter&>(*w);
        waiter.lease_ = lend(buffer);
        w->ready(*w);
        return;
    }
    free_.push_back(buffer); // reserved for count_ entries: never allocates
}

} // namespace coil
