// SPDX-License-Identifier: MIT
// Fault injection at the ring's kernel boundary, for test builds only (the coil_faulty library,
// built with COIL_FAULT_INJECTION=1): a plan of faults that every ring created on a thread while
// a scoped_faults lives obeys. Private: never installed, never part of libcoil.
#pragma once

#include <coil/io/opcode.hpp>

#include <cstdint>
#include <memory>

namespace coil::io::testing {

/// What to inject, and how often. Probabilities are in parts per thousand. Every fault is one a
/// real kernel may produce, so a ring that survives them survives the kernel.
struct fault_plan {
    /// Seed of the generator that decides each fault (splitmix64); tests print it.
    std::uint64_t seed = 1;
    /// io_uring_enter with SQEs to submit answers -EBUSY without reaching the kernel: nothing
    /// consumed.
    unsigned enter_ebusy = 0;
    /// ... -EAGAIN, likewise.
    unsigned enter_eagain = 0;
    /// A wait in io_uring_enter (nothing to submit, completions wanted) answers -EINTR without
    /// reaching the kernel, as a signal would.
    unsigned enter_eintr = 0;
    /// The kernel is handed only part of the pending SQEs (at least one).
    unsigned partial_submit = 0;
    /// The effective SQ size (0: the real one), so that the SQ fills often. Not a probability.
    unsigned sq_entries = 0;
    /// A reap sees an empty CQ for the next 1 to 8 reaping passes, so the kernel's CQ fills and
    /// overflows for real (NODROP keeps the rest). Bounded: nothing is deferred forever.
    unsigned stall_reap = 0;
    /// A READ/WRITE/READV/WRITEV/SEND/RECV SQE's length (iovec count) is cut before the kernel
    /// sees it: a genuinely short transfer. For SENDMSG/RECVMSG the iovec count in the message
    /// header is cut (the header is the caller's memory: one reused for a retry keeps the cut).
    /// Sends and receives on datagram and seqpacket sockets are never cut: the kernel moves
    /// their messages whole.
    unsigned short_rw = 0;
    /// A reaped completion is held back behind a later one of another op (ops complete out of
    /// order; an op's completion may come after its cancel's). Held completions are ready: a
    /// wait never blocks on them.
    unsigned reorder = 0;
    /// `IORING_FEAT_*` bits ring setup pretends the kernel lacks. Not a probability.
    std::uint32_t hide_features = 0;
    /// `IORING_SETUP_*` bits io_uring_setup refuses with -EINVAL, as a kernel that does not
    /// know them does. Not a probability.
    std::uint32_t refuse_setup_flags = 0;
    /// coil opcodes the probe pretends the kernel lacks, one bit per `io::opcode` value
    /// (`hidden(opcode::x)`): `supports()` says no and their `add_*` calls refuse with
    /// `unsupported_operation`. Not a probability.
    std::uint64_t hide_opcodes = 0;
    /// Multishot accepts (Linux 5.19), receives (6.0) and timeouts (6.4) meet a kernel older
    /// than them: the ring sets a flag bit the kernel does not know on each such SQE, so the
    /// kernel itself refuses it with -EINVAL, as those kernels refuse the multishot flag. Not a
    /// probability.
    bool refuse_multishot = false;
};

/// How often each fault fired, summed over every ring of a scope.
struct fault_counts {
    std::uint64_t ebusy = 0;
    std::uint64_t eagain = 0;
    std::uint64_t eintr = 0;
    std::uint64_t partial_submits = 0;
    std::uint64_t sq_fills = 0;   ///< ops refused because the shrunken SQ was full
    std::uint64_t stalls = 0;
    std::uint64_t shortened = 0;
    std::uint64_t reordered = 0;
    std::uint64_t multishot_refused = 0; ///< multishot SQEs marked for the kernel to refuse
};

/// The `fault_plan::hide_opcodes` bit of `op`.
constexpr std::uint64_t hidden(opcode op) noexcept
{
    return std::uint64_t{1} << static_cast<unsigned>(op);
}

namespace detail {

/// A plan, its generator and its counters, shared by the scope and the rings created under it.
struct fault_state {
    explicit fault_state(const fault_plan& p) noexcept : plan(p), next(p.seed) {}

    /// True with probability `per_thousand` / 1000.
    bool roll(unsigned per_thousand) noexcept
    {
        return per_thousand != 0 && below(1000) < per_thousand;
    }
    /// A number in [0, n); n > 0.
    unsigned below(unsigned n) noexcept { return static_cast<unsigned>(draw() % n); }

    fault_plan plan;
    fault_counts counts;
    /// Set by `scoped_faults::refuse_next_submission`: every submitting io_uring_enter answers
    /// -EBUSY until a ring gives up on its submission, which clears it.
    bool refusing = false;

private:
    std::uint64_t draw() noexcept
    {
        // splitmix64
        std::uint64_t z = (next += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
    }
    std::uint64_t next;
};

/// The state of the innermost scoped_faults alive on this thread, or null.
std::shared_ptr<fault_state> current_faults() noexcept;

} // namespace detail

/// While it lives, every ring created on this thread obeys `plan` (the executor builds its own
/// ring, so tests reach it this way). Rings keep the plan after the scope ends. Scopes nest:
/// the innermost wins, and the outer one is restored when it ends.
class scoped_faults {
public:
    explicit scoped_faults(fault_plan plan);
    ~scoped_faults();
    scoped_faults(const scoped_faults&) = delete;
    scoped_faults& operator=(const scoped_faults&) = delete;

    /// How often each fault fired so far in the rings created under this scope.
    fault_counts counts() const;

    /// The next submission a ring of this scope makes meets a kernel that answers -EBUSY to
    /// every attempt until the ring gives up on it (its retry budget); then the kernel accepts
    /// again. A kernel short of memory does this for a while. With a shrunken SQ
    /// (`fault_plan::sq_entries`) it holds an op back at a moment the test chooses: the op
    /// finds the SQ full, the flush is refused, and the op waits for room. Counted as ebusy.
    void refuse_next_submission() noexcept;

private:
    std::shared_ptr<detail::fault_state> state_;
    std::shared_ptr<detail::fault_state> previous_;
};

} // namespace coil::io::testing
