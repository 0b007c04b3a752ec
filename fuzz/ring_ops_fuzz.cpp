// SPDX-License-Identifier: MIT
// Fuzz target: the ring core driven by random op sequences under random injected faults. The
// input picks a ring size, a fault plan (io/fault_injection.hpp) and then ops: reads, writes,
// readv/writev (overlapping buffers), polls and their removal, timeouts and their removal,
// cancels of known and unknown user_data, cancel by fd, fsync/fallocate/close of bad
// descriptors, huge and zero lengths (only where the kernel cannot touch memory: bad
// descriptors and /dev/null), submits, reaps and waits. It aborts when a completion arrives
// for an op never queued or twice, or when an op's completion is lost (the final drain must
// account for every op still outstanding). docs/reliability.md, "Fuzzing".

#include "fault_injection.hpp"
#include "fuzz_input.hpp"

#include <coil/io/error.hpp>
#include <coil/io/ring.hpp>

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <memory>
#include <span>
#include <system_error>
#include <unordered_set>
#include <utility>
#include <vector>

namespace {

using coil::io::ring;
using coil_fuzz::fuzz_input;

[[noreturn]] void broken(const char* what, std::uint64_t user_data)
{
    std::fprintf(stderr, "ring_ops fuzz: %s (user_data %llu)\n", what,
                 static_cast<unsigned long long>(user_data));
    std::abort();
}

constexpr std::size_t max_ops = 256;
constexpr std::size_t arena_bytes = 16 * 1024;
constexpr std::size_t max_iovecs = 1030; // more than IOV_MAX: the kernel's EINVAL

/// Descriptors an op may name, fresh for each input (a blocking pipe and eventfd, so reads
/// and writes wait in the kernel and cancels find them). Those of `harmless` cannot make the
/// kernel touch memory, so only they are given huge lengths.
struct descriptors {
    int pipe_read = -1, pipe_write = -1, event = -1, null = -1, zero = -1;

    descriptors()
    {
        int p[2];
        if (::pipe2(p, O_CLOEXEC) == 0) {
            pipe_read = p[0];
            pipe_write = p[1];
        }
        event = ::eventfd(0, EFD_CLOEXEC);
        null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
        zero = ::open("/dev/zero", O_RDONLY | O_CLOEXEC);
    }
    ~descriptors()
    {
        for (int fd : {pipe_read, pipe_write, event, null, zero})
            if (fd >= 0)
                ::close(fd);
    }
    descriptors(const descriptors&) = delete;
    descriptors& operator=(const descriptors&) = delete;

    /// A descriptor whose reads and writes never touch the buffer, whatever its length.
    int harmless(fuzz_input& in) const
    {
        switch (in.below(4)) {
        case 0: return -1;
        case 1: return 100000; // above any RLIMIT_NOFILE here: names nothing
        case 2: return 99999;
        default: return null;
        }
    }
    int any(fuzz_input& in) const
    {
        switch (in.below(6)) {
        case 0: return pipe_read;
        case 1: return pipe_write;
        case 2: return event;
        case 3: return zero;
        default: return harmless(in);
        }
    }
};

/// Memory the kernel may read or write, kept until the ring is destroyed (after its drain).
struct op_memory {
    std::array<std::byte, arena_bytes> arena{};
    std::array<::iovec, max_iovecs> iovecs{};
    std::array<coil::io::timespec64, max_ops> times{};
};

class driver {
public:
    driver(fuzz_input& in, ring& r, op_memory& memory, const descriptors& fds)
        : in_(in), ring_(r), memory_(memory), fds_(fds)
    {
    }

    void run()
    {
        while (!in_.empty() && next_user_data_ < max_ops)
            step();
        finish();
    }

private:
    /// A span of the arena (possibly empty), or a huge one at address 0 when the descriptor is
    /// harmless (the kernel answers EFAULT, or /dev/null touches nothing; and ASan builds check
    /// every non-null buffer when it is queued, see include/coil/io/detail/kernel_memory.hpp).
    std::span<std::byte> buffer(bool huge_allowed)
    {
        if (huge_allowed && in_.below(4) == 0) {
            const std::size_t huge = in_.below(2) == 0 ? std::numeric_limits<std::uint32_t>::max()
                                                       : std::numeric_limits<std::size_t>::max() / 2;
            return {static_cast<std::byte*>(nullptr), huge};
        }
        const std::size_t start = in_.below(arena_bytes);
        const std::size_t length = in_.below(arena_bytes - start + 1);
        return {memory_.arena.data() + start, length};
    }

    /// Up to 8 iovecs over (overlapping) pieces of the arena, or a count past IOV_MAX for a
    /// harmless descriptor.
    std::span<const ::iovec> iovecs(bool huge_allowed)
    {
        std::size_t count = in_.below(9);
        if (huge_allowed && in_.below(4) == 0)
            count = max_iovecs;
        for (std::size_t i = 0; i < count; ++i) {
            auto b = buffer(false);
            memory_.iovecs[i] = {b.data(), b.size()};
        }
        return {memory_.iovecs.data(), count};
    }

    /// A descriptor for a read or write, and whether it is harmless (huge lengths allowed).
    std::pair<int, bool> descriptor()
    {
        const bool harmless = in_.below(2) == 0;
        return {harmless ? fds_.harmless(in_) : fds_.any(in_), harmless};
    }

    /// Sometimes a link to the next op (even to none: the chain is left open). Never
    /// IOSQE_IO_DRAIN: the kernel starts nothing queued after a drain barrier, not even a
    /// cancel, until every op before it has completed, so one poll that never fires would
    /// hang the final cancel_all() + drain() by design (docs/reliability.md).
    coil::io::sqe_flags flags()
    {
        next_links_ = in_.below(8) == 1;
        return next_links_ ? coil::io::sqe_flags::link : coil::io::sqe_flags::none;
    }

    /// A user_data to cancel or remove: mostly one queued before, sometimes one never queued.
    std::uint64_t target()
    {
        if (next_user_data_ > 1 && in_.below(4) != 0)
            return 1 + in_.below(next_user_data_ - 1);
        const std::uint64_t t = in_.u64();
        return t == ring::internal_user_data ? 0 : t;
    }

    void queued(std::uint64_t user_data, std::error_code ec)
    {
        const bool links = std::exchange(next_links_, false);
        if (!ec) {
            if (!pending_.insert(user_data).second)
                broken("a user_data queued twice", user_data);
            ++next_user_data_;
            chain_open_ = links;
            return;
        }
        if (ec == coil::io::errc::no_space) {
            submit();
            reap();
        }
        // unsupported_operation (an old kernel): nothing was queued.
    }

    void step()
    {
        const std::uint64_t ud = next_user_data_;
        const int op = static_cast<int>(in_.below(16));
        switch (op) {
        case 0:
            queued(ud, ring_.add_nop(ud, flags()));
            break;
        case 1: {
            const auto [fd, harmless] = descriptor();
            queued(ud, ring_.add_read(fd, buffer(harmless), in_.below(2) ? ~0ULL : in_.u64(), ud,
                                      flags()));
            break;
        }
        case 2: {
            const auto [fd, harmless] = descriptor();
            queued(ud, ring_.add_write(fd, buffer(harmless), in_.below(2) ? ~0ULL : in_.u64(), ud,
                                       flags()));
            break;
        }
        case 3: {
            const auto [fd, harmless] = descriptor();
            queued(ud, ring_.add_readv(fd, iovecs(harmless), ~0ULL, ud, flags()));
            break;
        }
        case 4: {
            const auto [fd, harmless] = descriptor();
            queued(ud, ring_.add_writev(fd, iovecs(harmless), ~0ULL, ud, flags()));
            break;
        }
        case 5: {
            static constexpr std::uint32_t events[] = {POLLIN, POLLOUT, POLLIN | POLLOUT, 0,
                                                       POLLPRI};
            queued(ud, ring_.add_poll(fds_.any(in_), events[in_.below(5)], ud,
                                      coil::io::poll_mode::oneshot, flags()));
            break;
        }
        case 6:
            queued(ud, ring_.add_poll_remove(target(), ud));
            break;
        case 7:
        case 8:
            queued(ud, ring_.add_cancel(target(), ud));
            break;
        case 9: {
            auto& t = memory_.times[ud];
            t = {0, static_cast<long long>(in_.below(2'000'000))};
            queued(ud, ring_.add_timeout(&t, static_cast<unsigned>(in_.below(4)),
                                         coil::io::timeout_clock::relative, ud, flags()));
            break;
        }
        case 10:
            queued(ud, ring_.add_timeout_remove(target(), ud));
            break;
        case 11:
            queued(ud, ring_.add_cancel_fd(fds_.any(in_), ud));
            break;
        case 12:
            switch (in_.below(3)) {
            case 0:
                queued(ud, ring_.add_fsync(fds_.harmless(in_), coil::io::fsync_mode::data, ud));
                break;
            case 1:
                queued(ud, ring_.add_fallocate(fds_.harmless(in_), 0, in_.u64(), in_.u64(), ud));
                break;
            default:
                // Only descriptors that name nothing: ours stay open for the ops after.
                queued(ud, ring_.add_close(in_.below(2) ? -1 : 100000, ud));
                break;
            }
            break;
        case 13:
            submit();
            break;
        case 14:
            reap();
            break;
        default: {
            // A wait that cannot block for ever: a nop is queued first, outside any chain (a
            // chain left open would take it in, behind an op that may never complete; the
            // kernel ends an open chain at the end of a submission).
            if (chain_open_) {
                submit();
                if (ring_.unsubmitted() != 0)
                    break;
                chain_open_ = false;
            }
            const std::error_code ec = ring_.add_nop(ud);
            queued(ud, ec);
            if (ec)
                break;
            auto done = ring_.wait(1);
            if (done) {
                for (const auto& c : done.value())
                    completed(c.user_data);
            }
            break;
        }
        }
    }

    void submit()
    {
        auto r = ring_.submit();
        (void)r; // EBUSY and friends are results, not bugs: nothing is lost (checked below)
    }

    void reap()
    {
        ring_.for_each_completion([this](const coil::io::completion& c) { completed(c.user_data); });
    }

    void completed(std::uint64_t user_data)
    {
        if (pending_.erase(user_data) != 1)
            broken("a completion for an op not pending (never queued, or completed twice)",
                   user_data);
    }

    /// Every op still pending must be accounted for by the final drain: one completion each.
    void finish()
    {
        reap();
        ring_.cancel_all();
        const std::size_t drained = ring_.drain();
        if (drained != pending_.size())
            broken("the drain's count differs from the ops pending", drained);
        if (ring_.outstanding() != 0)
            broken("ops outstanding after the drain", ring_.outstanding());
    }

    fuzz_input& in_;
    ring& ring_;
    op_memory& memory_;
    const descriptors& fds_;
    std::uint64_t next_user_data_ = 1;
    bool next_links_ = false; // the op being queued asks to link to the next
    bool chain_open_ = false; // the last op queued asks to link to the next
    std::unordered_set<std::uint64_t> pending_;
};

coil::io::testing::fault_plan plan_from(fuzz_input& in)
{
    coil::io::testing::fault_plan plan;
    plan.seed = in.u64();
    const std::uint8_t mask = in.byte();
    // Each fault is on or off per input, at a rate up to 1/4 (1/2 for EINTR).
    plan.enter_ebusy = (mask & 1) ? static_cast<unsigned>(in.below(250)) : 0;
    plan.enter_eagain = (mask & 2) ? static_cast<unsigned>(in.below(250)) : 0;
    plan.enter_eintr = (mask & 4) ? static_cast<unsigned>(in.below(500)) : 0;
    plan.partial_submit = (mask & 8) ? static_cast<unsigned>(in.below(500)) : 0;
    plan.stall_reap = (mask & 16) ? static_cast<unsigned>(in.below(250)) : 0;
    plan.short_rw = (mask & 32) ? static_cast<unsigned>(in.below(500)) : 0;
    plan.reorder = (mask & 64) ? static_cast<unsigned>(in.below(300)) : 0;
    plan.sq_entries = (mask & 128) ? static_cast<unsigned>(1 + in.below(4)) : 0;
    return plan;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    fuzz_input in(data, size);
    const unsigned entries = 1U << in.below(6); // 1..32
    coil::io::ring_options options;
    options.cq_entries = in.below(2) ? 0 : entries; // the smallest CQ, so it overflows
    options.single_issuer = in.below(2) == 0;
    const coil::io::testing::scoped_faults faults(plan_from(in));

    const descriptors fds;
    auto memory = std::make_unique<op_memory>();
    std::unique_ptr<ring> r;
    try {
        r = std::make_unique<ring>(entries, options);
    } catch (const std::system_error&) {
        return 0; // no io_uring here: nothing to fuzz
    }
    driver(in, *r, *memory, fds).run();
    r.reset(); // before the memory the kernel may still touch
    return 0;
}
