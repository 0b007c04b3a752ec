// SPDX-License-Identifier: MIT
// The ring against the real kernel with faults injected at its boundary (io/fault_injection.hpp,
// the coil_faulty build): for each fault alone and all together, every ring feature still
// delivers every completion exactly once and comes back to nothing outstanding.

#include "ring_test_support.hpp"

#include "fault_injection.hpp"

#include <coil/io/ring.hpp>

#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>
#include <catch2/generators/catch_generators_range.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <linux/io_uring.h>
#include <poll.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <unordered_map>
#include <vector>

using coil::io::completion;
using coil::io::errc;
using coil::io::ring;
using coil::io::ring_options;
using coil::io::ring_stats;
using coil::io::timeout_clock;
using coil::io::timespec64;
using coil::io::testing::fault_counts;
using coil::io::testing::fault_plan;
using coil::io::testing::scoped_faults;
using Catch::Matchers::ContainsSubstring;
using namespace coil_test;

namespace {

constexpr std::uint64_t fixed_seed = 0x5eedc0110001ULL;

struct named_plan {
    const char* name;
    fault_plan plan;
};

std::vector<named_plan> all_plans()
{
    fault_plan ebusy{.seed = fixed_seed, .enter_ebusy = 250};
    fault_plan eagain{.seed = fixed_seed, .enter_eagain = 250};
    fault_plan eintr{.seed = fixed_seed, .enter_eintr = 300};
    fault_plan partial{.seed = fixed_seed, .partial_submit = 400};
    fault_plan small_sq{.seed = fixed_seed, .sq_entries = 3};
    fault_plan stall{.seed = fixed_seed, .stall_reap = 250};
    fault_plan short_rw{.seed = fixed_seed, .short_rw = 500};
    fault_plan reorder{.seed = fixed_seed, .reorder = 300};
    fault_plan everything{.seed = fixed_seed,
                          .enter_ebusy = 100,
                          .enter_eagain = 100,
                          .enter_eintr = 150,
                          .partial_submit = 300,
                          .sq_entries = 5,
                          .stall_reap = 150,
                          .short_rw = 400,
                          .reorder = 250};
    return {{"ebusy", ebusy},       {"eagain", eagain},     {"eintr", eintr},
            {"partial_submit", partial}, {"sq_entries", small_sq}, {"stall_reap", stall},
            {"short_rw", short_rw}, {"reorder", reorder},   {"all", everything}};
}

// Every op's final completion, checked to arrive exactly once.
class ledger {
public:
    void record(const completion& c)
    {
        REQUIRE(c.user_data != ring::internal_user_data);
        if (c.more())
            return;
        auto [it, inserted] = finals_.emplace(c.user_data, c);
        INFO("user_data " << c.user_data << " completed twice");
        REQUIRE(inserted);
    }
    const completion* find(std::uint64_t user_data) const
    {
        auto it = finals_.find(user_data);
        return it == finals_.end() ? nullptr : &it->second;
    }
    std::size_t size() const noexcept { return finals_.size(); }

private:
    std::unordered_map<std::uint64_t, completion> finals_;
};

// Reaps with each of the ring's ways in turn (so that every path meets the faults), handing
// each completion to `on`. Blocks in wait(1) only when the non-blocking way found nothing.
void reap_some(ring& ring, unsigned& turn, const std::function<void(const completion&)>& on)
{
    std::size_t got = 0;
    switch (turn++ % 4) {
    case 0:
        got = ring.for_each_completion([&](const completion& c) { on(c); });
        break;
    case 3: {
        // The executor's way: one enter that submits and brings in what the kernel holds,
        // then reaping that never enters.
        auto submitted = ring.submit_and_get_events();
        INFO("submit_and_get_events: " << submitted.error().message());
        REQUIRE(submitted.ok());
        got = ring.for_each_ready([&](const completion& c) { on(c); });
        break;
    }
    case 1: {
        std::array<completion, 7> out{};
        got = ring.reap_into(out);
        for (std::size_t i = 0; i < got; ++i)
            on(out[i]);
        break;
    }
    default:
        for (const completion& c : ring.reap()) {
            on(c);
            ++got;
        }
        break;
    }
    if (got == 0 && ring.outstanding() != 0) {
        auto done = ring.wait(1);
        REQUIRE(done.ok());
        for (const completion& c : *done)
            on(c);
    }
}

// Queues with `add` (which returns false on no_space) until it has queued `count` ops, submitting
// and reaping as needed, then reaps until nothing is outstanding.
void run_all(ring& ring, std::uint64_t count, const std::function<bool(std::uint64_t)>& add,
             const std::function<void(const completion&)>& on)
{
    unsigned turn = 0;
    std::uint64_t next = 0;
    while (next < count || ring.outstanding() != 0) {
        while (next < count && add(next))
            ++next;
        auto submitted = ring.submit();
        INFO("submit: " << submitted.error().message());
        REQUIRE(submitted.ok());
        reap_some(ring, turn, on);
    }
}

// Whether `ec` says "queued" (false) or "no room" (true); anything else fails the test.
bool refused(std::error_code ec)
{
    if (ec == errc::no_space)
        return true;
    REQUIRE_FALSE(ec);
    return false;
}

void two_thousand_nops(ring_stats& totals)
{
    // A CQ no larger than the SQ: a few stalled passes overflow it even with a shrunken SQ.
    ring_options options;
    options.cq_entries = 32;
    ring ring(32, options);
    ledger seen;
    run_all(
        ring, 2000, [&](std::uint64_t i) { return !refused(ring.add_nop(i)); },
        [&](const completion& c) { seen.record(c); });
    REQUIRE(seen.size() == 2000);
    for (std::uint64_t i = 0; i < 2000; ++i) {
        REQUIRE(seen.find(i) != nullptr);
        CHECK(seen.find(i)->result == 0);
    }
    CHECK(ring.outstanding() == 0);
    totals.cq_overflows += ring.stats().cq_overflows;
    totals.submit_retries += ring.stats().submit_retries;
}

void five_hundred_pipe_pairs()
{
    ring ring(64);
    pipe_fds pipe = make_pipe();
    ledger seen;
    std::uint64_t next_user_data = 1;
    for (std::size_t pair = 0; pair < 500; ++pair) {
        const std::size_t size = 1 + pair * 37 % 300;
        std::vector<std::byte> out(size);
        for (std::size_t j = 0; j < size; ++j)
            out[j] = static_cast<std::byte>((pair + j * 7) & 0xff);
        std::vector<std::byte> in(size, std::byte{0});
        std::size_t written = 0;
        std::size_t read = 0;
        // The user_data of the write and the read in flight; 0: none (user_data starts at 1).
        // (Not std::optional: GCC 12 at -O3 warns it may be read uninitialised, wrongly.)
        std::uint64_t write_op = 0;
        std::uint64_t read_op = 0;
        while (written < size || read < size) {
            // A short transfer is finished by queuing the rest, as a caller of read(2) does.
            if (write_op == 0 && written < size &&
                !refused(ring.add_write(pipe.write_end.get(),
                                        std::span<const std::byte>(out).subspan(written),
                                        current_position, next_user_data)))
                write_op = next_user_data++;
            if (read_op == 0 && read < size &&
                !refused(ring.add_read(pipe.read_end.get(), std::span<std::byte>(in).subspan(read),
                                       current_position, next_user_data)))
                read_op = next_user_data++;
            auto submitted = ring.submit();
            REQUIRE(submitted.ok());
            auto done = ring.wait(1);
            REQUIRE(done.ok());
            for (const completion& c : *done) {
                seen.record(c);
                REQUIRE(c.result > 0);
                if (write_op != 0 && c.user_data == write_op) {
                    written += static_cast<std::size_t>(c.result);
                    write_op = 0;
                } else {
                    REQUIRE(read_op != 0);
                    REQUIRE(c.user_data == read_op);
                    read += static_cast<std::size_t>(c.result);
                    read_op = 0;
                }
            }
        }
        INFO("pair " << pair);
        REQUIRE(in == out);
    }
    CHECK(ring.outstanding() == 0);
    CHECK(seen.size() == next_user_data - 1);
}

void two_hundred_timeouts()
{
    ring ring(64);
    std::vector<timespec64> when;
    for (std::uint64_t i = 0; i < 200; ++i)
        when.push_back(timespec64::from(std::chrono::microseconds(i % 3 * 500)));
    ledger seen;
    run_all(
        ring, 200,
        [&](std::uint64_t i) {
            return !refused(ring.add_timeout(&when[i], 0, timeout_clock::relative, i));
        },
        [&](const completion& c) { seen.record(c); });
    REQUIRE(seen.size() == 200);
    for (std::uint64_t i = 0; i < 200; ++i)
        CHECK(seen.find(i)->result == -ETIME);
    CHECK(ring.outstanding() == 0);

    // Then 30 timers one at a time, each submitted before its wait, so that every wait is a
    // pure wait (the only kind EINTR interrupts) and the EINTR plan fires whatever the timing.
    const timespec64 short_while = timespec64::from(std::chrono::microseconds(100));
    for (std::uint64_t i = 0; i < 30; ++i) {
        while (refused(ring.add_timeout(&short_while, 0, timeout_clock::relative, 500 + i)))
            REQUIRE(ring.submit().ok());
        while (ring.unsubmitted() != 0)
            REQUIRE(ring.submit().ok());
        std::size_t got = 0;
        while (got == 0) {
            auto done = ring.wait(1);
            REQUIRE(done.ok());
            for (const completion& c : *done) {
                CHECK(c.user_data == 500 + i);
                CHECK(c.result == -ETIME);
                ++got;
            }
        }
        CHECK(got == 1);
    }
    CHECK(ring.outstanding() == 0);
}

void hundred_polls_removed_midway()
{
    ring ring(64);
    pipe_fds pipe = make_pipe();
    ledger seen;
    // 100 polls on an empty pipe; removes for the even ones (tagged 1000 + i).
    std::uint64_t armed = 0;
    std::uint64_t removing = 0;
    unsigned turn = 0;
    auto on = [&](const completion& c) { seen.record(c); };
    while (armed < 100 || removing < 100) {
        while (armed < 100 && !refused(ring.add_poll(pipe.read_end.get(), POLLIN, armed)))
            ++armed;
        while (removing < armed &&
               !refused(ring.add_poll_remove(removing, 1000 + removing)))
            removing += 2;
        REQUIRE(ring.submit().ok());
        if (ring.unsubmitted() != 0 || ring.ready() != 0)
            reap_some(ring, turn, on);
    }
    // The 50 removes and the 50 polls they removed complete; nothing else can.
    while (seen.size() < 100)
        reap_some(ring, turn, on);
    REQUIRE(::write(pipe.write_end.get(), "!", 1) == 1);
    while (ring.outstanding() != 0)
        reap_some(ring, turn, on);
    REQUIRE(seen.size() == 150);
    for (std::uint64_t i = 0; i < 100; ++i) {
        INFO("poll " << i);
        if (i % 2 == 0) {
            CHECK(seen.find(i)->result == -ECANCELED);
            CHECK(seen.find(1000 + i)->result == 0);
        } else {
            CHECK((seen.find(i)->result & POLLIN) != 0);
        }
    }
    char byte = 0;
    REQUIRE(::read(pipe.read_end.get(), &byte, 1) == 1);
}

void cancels_of_pending_reads()
{
    ring ring(64);
    pipe_fds pipe = make_pipe();
    std::vector<std::array<std::byte, 8>> buffers(50);
    ledger seen;
    unsigned turn = 0;
    auto on = [&](const completion& c) { seen.record(c); };
    std::uint64_t queued = 0;
    while (queued < 50) {
        if (refused(ring.add_read(pipe.read_end.get(), buffers[queued], current_position, queued)))
            REQUIRE(ring.submit().ok());
        else
            ++queued;
    }
    REQUIRE(ring.submit().ok());
    std::uint64_t cancelled = 0;
    while (cancelled < 50 || ring.outstanding() != 0) {
        while (cancelled < 50 && !refused(ring.add_cancel(cancelled, 100 + cancelled)))
            ++cancelled;
        REQUIRE(ring.submit().ok());
        reap_some(ring, turn, on);
    }
    REQUIRE(seen.size() == 100);
    for (std::uint64_t i = 0; i < 50; ++i) {
        INFO("read " << i << ": " << seen.find(i)->result << ", cancel "
                     << seen.find(100 + i)->result);
        const std::int32_t cancel = seen.find(100 + i)->result;
        CHECK((cancel == 0 || cancel == -EALREADY));
        const std::int32_t read = seen.find(i)->result;
        CHECK((read == -ECANCELED || read == -EINTR));
    }
}

void cancel_all_and_drain()
{
    ring ring(64);
    pipe_fds pipe = make_pipe();
    std::vector<std::array<std::byte, 8>> buffers(30);
    const timespec64 hour = timespec64::from(std::chrono::hours(1));
    std::uint64_t queued = 0;
    while (queued < 40) {
        const auto ec = queued < 30 ? ring.add_read(pipe.read_end.get(), buffers[queued],
                                                    current_position, queued)
                                    : ring.add_timeout(&hour, 0, timeout_clock::relative, queued);
        if (refused(ec))
            REQUIRE(ring.submit().ok());
        else
            ++queued;
    }
    REQUIRE(ring.submit().ok());
    ring.cancel_all();
    CHECK(ring.drain() == 40);
    CHECK(ring.outstanding() == 0);
}

} // namespace

TEST_CASE("ring faults: every ring feature survives each fault alone and all together",
          "[faults]")
{
    const auto plans = all_plans();
    const std::size_t which = GENERATE(Catch::Generators::range<std::size_t>(0, 9));
    const named_plan& named = plans.at(which);
    std::printf("fault plan %s, seed %#llx\n", named.name,
                static_cast<unsigned long long>(named.plan.seed));
    INFO("fault plan " << named.name << ", seed " << named.plan.seed);

    scoped_faults faults(named.plan);
    ring_stats totals;
    two_thousand_nops(totals);
    five_hundred_pipe_pairs();
    two_hundred_timeouts();
    hundred_polls_removed_midway();
    cancels_of_pending_reads();
    cancel_all_and_drain();

    // Each fault of the plan fired: the test cannot pass without meeting it.
    const fault_counts counts = faults.counts();
    const fault_plan& plan = named.plan;
    std::printf("  fired: ebusy %llu, eagain %llu, eintr %llu, partial %llu, sq fills %llu, "
                "stalls %llu, shortened %llu, reordered %llu; overflows %llu, retries %llu\n",
                static_cast<unsigned long long>(counts.ebusy),
                static_cast<unsigned long long>(counts.eagain),
                static_cast<unsigned long long>(counts.eintr),
                static_cast<unsigned long long>(counts.partial_submits),
                static_cast<unsigned long long>(counts.sq_fills),
                static_cast<unsigned long long>(counts.stalls),
                static_cast<unsigned long long>(counts.shortened),
                static_cast<unsigned long long>(counts.reordered),
                static_cast<unsigned long long>(totals.cq_overflows),
                static_cast<unsigned long long>(totals.submit_retries));
    CHECK((plan.enter_ebusy == 0 || counts.ebusy > 0));
    CHECK((plan.enter_eagain == 0 || counts.eagain > 0));
    CHECK((plan.enter_eintr == 0 || counts.eintr > 0));
    CHECK((plan.partial_submit == 0 || counts.partial_submits > 0));
    CHECK((plan.sq_entries == 0 || counts.sq_fills > 0));
    CHECK((plan.stall_reap == 0 || counts.stalls > 0));
    CHECK((plan.short_rw == 0 || counts.shortened > 0));
    CHECK((plan.reorder == 0 || counts.reordered > 0));
    // EBUSY and EAGAIN went through the submit retry (the backlog path); a stall overflowed
    // the kernel's CQ for real. (With a shrunken SQ too few ops are submitted per pass for an
    // overflow to be certain, so that combination only counts the stalls.)
    CHECK((plan.enter_ebusy + plan.enter_eagain == 0 || totals.submit_retries > 0));
    CHECK((plan.stall_reap == 0 || plan.sq_entries != 0 || totals.cq_overflows > 0));
}

TEST_CASE("ring faults: EBUSY from submit() and wait() moves ready completions to the backlog, "
          "which is delivered first and loses nothing",
          "[faults][backlog]")
{
    fault_plan plan{.seed = fixed_seed, .enter_ebusy = 500};
    std::printf("backlog test, seed %#llx\n", static_cast<unsigned long long>(plan.seed));
    scoped_faults faults(plan);
    ring ring(8);
    ledger seen;
    std::uint64_t next = 0;
    for (int round = 0; round < 50; ++round) {
        // Two batches without reaping in between: when the second is refused with EBUSY, the
        // first batch's completions are in the CQ and move to the backlog.
        for (int batch = 0; batch < 2; ++batch) {
            for (int i = 0; i < 4; ++i)
                REQUIRE_FALSE(ring.add_nop(next++));
            if (batch == 0) {
                REQUIRE(ring.submit().ok());
            }
        }
        auto done = ring.wait(8); // submits the second batch
        REQUIRE(done.ok());
        std::uint64_t expected = next - 8;
        for (const completion& c : *done) {
            seen.record(c);
            CHECK(c.user_data == expected++); // nops complete in order, backlog first
        }
        CHECK(expected == next);
    }
    CHECK(seen.size() == next);
    CHECK(ring.outstanding() == 0);
    CHECK(faults.counts().ebusy > 0);
    CHECK(ring.stats().submit_retries > 0);
}

TEST_CASE("ring faults: setup refuses a kernel without IORING_FEAT_NODROP, naming it",
          "[faults][setup]")
{
    scoped_faults faults(fault_plan{.hide_features = IORING_FEAT_NODROP});
    try {
        ring ring(4);
        FAIL("a ring was created without NODROP");
    } catch (const std::system_error& e) {
        CHECK_THAT(e.what(), ContainsSubstring("IORING_FEAT_NODROP"));
        CHECK_THAT(e.what(), ContainsSubstring("Upgrade"));
    }
}

TEST_CASE("ring faults: setup flags the kernel does not know are dropped one by one, the ring "
          "says which took effect and works; strict refuses them, naming the option",
          "[faults][setup]")
{
    constexpr unsigned submit_all = IORING_SETUP_SUBMIT_ALL;       // Linux 5.18
    constexpr unsigned coop = IORING_SETUP_COOP_TASKRUN;           // 5.19
    constexpr unsigned single = IORING_SETUP_SINGLE_ISSUER;        // 6.0
    constexpr unsigned defer = IORING_SETUP_DEFER_TASKRUN;         // 6.1
    const ring_options asked{.single_issuer = true, .coop_taskrun = true};
    auto nop_round_trip = [](ring& r) {
        REQUIRE_FALSE(r.add_nop(7));
        auto done = collect(r, 1);
        REQUIRE(done.size() == 1);
        CHECK(done[0] == completion{7, 0, 0});
    };
    SECTION("a 6.0 kernel: no DEFER_TASKRUN") {
        scoped_faults faults(fault_plan{.refuse_setup_flags = defer});
        ring r(8, asked);
        CHECK(r.single_issuer());
        CHECK(r.coop_taskrun());
        CHECK((r.setup_flags() & (submit_all | single | coop)) == (submit_all | single | coop));
        CHECK((r.setup_flags() & defer) == 0);
        nop_round_trip(r);
    }
    SECTION("a 5.19 kernel: neither SINGLE_ISSUER nor DEFER_TASKRUN") {
        scoped_faults faults(fault_plan{.refuse_setup_flags = single | defer});
        ring r(8, asked);
        CHECK_FALSE(r.single_issuer());
        CHECK(r.coop_taskrun());
        CHECK((r.setup_flags() & (single | defer)) == 0);
        CHECK((r.setup_flags() & submit_all) != 0);
        nop_round_trip(r);
    }
    SECTION("a 5.11 kernel: none of the optional flags") {
        scoped_faults faults(fault_plan{.refuse_setup_flags = submit_all | coop | single | defer});
        ring r(8, asked);
        CHECK_FALSE(r.single_issuer());
        CHECK_FALSE(r.coop_taskrun());
        CHECK((r.setup_flags() & (submit_all | coop | single | defer)) == 0);
        nop_round_trip(r);
    }
    SECTION("strict: a flag the caller asked for is an error; SUBMIT_ALL, coil's own, is not") {
        scoped_faults faults(fault_plan{.refuse_setup_flags = defer});
        try {
            ring r(8, ring_options{.single_issuer = true, .strict = true});
            FAIL("a strict ring was created without DEFER_TASKRUN");
        } catch (const std::system_error& e) {
            CHECK(e.code() == std::errc::invalid_argument);
            CHECK_THAT(e.what(), ContainsSubstring("set ring_options::strict = false to drop "
                                                   "unknown flags"));
        }
    }
    SECTION("strict, with only SUBMIT_ALL refused: created without it") {
        scoped_faults faults(fault_plan{.refuse_setup_flags = submit_all});
        ring r(8, ring_options{.single_issuer = true, .strict = true});
        CHECK(r.single_issuer());
        CHECK((r.setup_flags() & submit_all) == 0);
        nop_round_trip(r);
    }
}

TEST_CASE("ring faults: without IORING_FEAT_RECVSEND_BUNDLE a bundle receive is refused before "
          "anything is queued, and plain provided receives still are",
          "[faults][setup][recv]")
{
    scoped_faults faults(fault_plan{.hide_features = 1U << 14}); // IORING_FEAT_RECVSEND_BUNDLE
    ring ring(4);
    CHECK_FALSE(ring.has_recv_bundles());
    CHECK(ring.add_recv_provided(0, 1, 0, coil::io::recv_mode::bundle, 1) ==
          errc::unsupported_operation);
    CHECK(ring.add_recv_provided(0, 1, 0, coil::io::recv_mode::multishot_bundle, 2) ==
          errc::unsupported_operation);
    CHECK(ring.outstanding() == 0);
    CHECK(ring.unsubmitted() == 0);
    REQUIRE_FALSE(ring.add_recv_provided(-1, 1, 0, coil::io::recv_mode::single, 3));
    auto done = collect(ring, 1);
    REQUIRE(done.size() == 1);
    CHECK(done[0].user_data == 3);
    CHECK(done[0].result < 0); // a bad descriptor, reported by the kernel
}

TEST_CASE("ring faults: without IORING_FEAT_EXT_ARG has_ext_arg() is false and timed waits are "
          "refused",
          "[faults][setup][wait]")
{
    scoped_faults faults(fault_plan{.hide_features = IORING_FEAT_EXT_ARG});
    ring ring(4);
    CHECK_FALSE(ring.has_ext_arg());
    REQUIRE_FALSE(ring.add_nop(1));
    CHECK(ring.wait(1, std::chrono::milliseconds(1)).error() == errc::unsupported_operation);
    auto done = collect(ring, 1);
    REQUIRE(done.size() == 1);
    CHECK(done[0] == completion{1, 0, 0});
}
