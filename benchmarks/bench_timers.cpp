// SPDX-License-Identifier: MIT
// Timers and cancellation in coil's runtime: arming and cancelling 10,000 sleeps with one stop
// request, a deadline on every op, and the cost of one when_any round (a stop request) with
// 7,000 unrelated ops in flight.
//
// There is no fair raw liburing peer for a timer heap or a stop request (liburing has neither),
// so each row's baseline is coil itself doing the same work without the thing measured:
//
// * sleep rows: the same 10,000 tasks under the same token, suspending once on coil::yield()
//   instead of on a sleep. The difference is what arming, cancelling and waking a timer costs.
// * deadline rows: co_await coil::nop() without a deadline.
// * the when_any row: the same rounds with nothing else in flight. Both sides start and cancel
//   the 7,000 idle reads (so both pay that once per run); only the coil side keeps them in
//   flight while it runs its rounds.

#include "harness.hpp"

#include <coil/coil.hpp>

#include <fmt/core.h>

#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <stop_token>
#include <string>
#include <system_error>
#include <vector>

namespace {

namespace bench = coil::bench;
using bench::fail;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

constexpr unsigned ring_entries = 256;
constexpr unsigned sleeper_count = 10'000;
constexpr unsigned idle_count = 7'000;

bool is_cancelled(const coil::result<void>& r)
{
    return !r && r.error() == std::errc::operation_canceled;
}

std::string describe(const coil::result<void>& r)
{
    return r ? std::string("success") : r.error().message();
}

// splitmix64, for the spread deadlines (the read benchmarks' copy lives in bench_data.hpp,
// which would pull the data file in).
std::uint64_t next_random(std::uint64_t& state) noexcept
{
    std::uint64_t z = (state += 0x9e3779b97f4a7c15);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9;
    z = (z ^ (z >> 27)) * 0x94d049bb133111eb;
    return z ^ (z >> 31);
}

// --- 10,000 sleeps armed and cancelled ---------------------------------------------------------

// What the sleepers saw in one cycle; checked after every cycle.
struct sleeper_tally {
    unsigned cancelled = 0;
    unsigned other = 0;
    std::string first_other;
};

enum class suspension { sleep, yield };

coil::task<void> sleeper(suspension how, steady::time_point deadline, sleeper_tally& tally)
{
    if (how == suspension::sleep) {
        coil::result<void> r = co_await coil::sleep_until(deadline);
        if (is_cancelled(r)) {
            ++tally.cancelled;
        } else {
            if (tally.other++ == 0)
                tally.first_other = describe(r);
        }
    } else {
        co_await coil::yield();
        ++tally.cancelled; // the baseline's "cancelled": it got back control, as a sleeper does
    }
}

// One cycle: spawn `sleeper_count` tasks under one stop source (each task its own scope, as
// per-connection tasks under a server-wide token have), let them all suspend, stop the source
// once, and join them all. `spread`: deadlines spread at random over 10..20 s instead of all
// about 10 s from now, so the heap's insertions and removals do real sifting.
coil::task<void> sleep_cycles(coil::executor& ex, suspension how, bool spread,
                              bench::run_clock& clock, std::uint64_t& timers)
{
    std::vector<coil::join_handle<void>> handles;
    handles.reserve(sleeper_count);
    std::uint64_t random_state = 0x736c6565'70657273; // "sleepers"
    while (clock.running()) {
        sleeper_tally tally;
        std::stop_source source;
        const steady::time_point base = steady::now() + 10s;
        for (unsigned i = 0; i < sleeper_count; ++i) {
            steady::time_point deadline = base;
            if (spread)
                deadline += std::chrono::microseconds(next_random(random_state) % 10'000'000);
            handles.push_back(
                ex.spawn(coil::with_stop_token(source.get_token(), sleeper(how, deadline, tally))));
        }
        // Spawned tasks start at the next loop turn, before this one resumes.
        co_await coil::yield();
        if (how == suspension::sleep && ex.timers_armed() != sleeper_count)
            fail(fmt::format("coil: {} sleeps armed, expected {}", ex.timers_armed(),
                             sleeper_count));
        source.request_stop();
        for (coil::join_handle<void>& h : handles)
            co_await h;
        handles.clear();
        if (tally.other != 0 || tally.cancelled != sleeper_count)
            fail(fmt::format("coil: of {} sleeps, {} were cancelled and {} ended otherwise "
                             "(first: {})",
                             sleeper_count, tally.cancelled, tally.other, tally.first_other));
        if (ex.timers_armed() != 0)
            fail(fmt::format("coil: {} timers still armed after the stop request",
                             ex.timers_armed()));
        timers += sleeper_count;
    }
}

std::uint64_t run_sleep_cycles(coil::executor& ex, suspension how, bool spread,
                               bench::run_clock& clock)
{
    std::uint64_t timers = 0;
    ex.run(sleep_cycles(ex, how, spread, clock, timers));
    return timers;
}

// --- a deadline on every op --------------------------------------------------------------------

// As in bench_runtime: the first task asks the run clock once per round and the others read
// its answer, so N tasks pay for one clock check per round, not N.
struct round_clock {
    bench::run_clock& clock;
    bool running = true;

    bool check(bool leader) noexcept
    {
        if (leader)
            running = clock.running();
        return running;
    }
};

coil::task<void> nop_loop(bool deadline, round_clock& clock, bool leader, std::uint64_t& ops)
{
    while (clock.check(leader)) {
        coil::result<void> done;
        if (deadline) // an if, not a conditional of two co_awaits (g++ 12: runtime.md)
            done = co_await coil::nop().with_timeout(10s);
        else
            done = co_await coil::nop();
        if (!done)
            fail("coil: a NOP failed: " + done.error().message());
        ++ops;
    }
}

std::uint64_t run_nops(coil::executor& ex, bool deadline, unsigned tasks, bench::run_clock& clock)
{
    std::uint64_t ops = 0;
    auto body = [](bool with_deadline, unsigned n, bench::run_clock& c,
                   std::uint64_t& count) -> coil::task<void> {
        round_clock rounds{c};
        std::vector<coil::task<void>> loops;
        for (unsigned i = 0; i < n; ++i)
            loops.push_back(nop_loop(with_deadline, rounds, i == 0, count));
        co_await coil::when_all(std::move(loops));
    };
    ex.run(body(deadline, tasks, clock, ops));
    if (ex.timers_armed() != 0)
        fail(fmt::format("coil: {} deadlines still armed after every NOP completed",
                         ex.timers_armed()));
    return ops;
}

// --- when_any rounds with 7,000 idle ops in flight ----------------------------------------------

coil::task<coil::result<void>> nop_child() { co_return co_await coil::nop(); }
coil::task<coil::result<void>> sleep_child() { co_return co_await coil::sleep_for(1s); }

// One round: the NOP wins, the sleep is cancelled by when_any's stop request.
coil::task<void> when_any_round()
{
    auto first = co_await coil::when_any(nop_child(), sleep_child());
    if (first.index() != 0)
        fail("coil: when_any(nop, sleep 1s): the sleep won");
    if (!std::get<0>(first.winner))
        fail("coil: when_any(nop, sleep 1s): the NOP failed: " +
             std::get<0>(first.winner).error().message());
    const auto& lost = std::get<1>(first.losers);
    if (!lost || !is_cancelled(*lost))
        fail("coil: when_any(nop, sleep 1s): the losing sleep ended with " +
             (lost ? describe(*lost) : std::string("nothing")));
}

// An unrelated op that stays in flight until its own stop source is stopped: a read of an
// eventfd nobody writes (the kernel parks it on the eventfd's wait queue, like a read of an
// idle socket).
coil::task<void> idle_read(int fd, unsigned& cancelled)
{
    std::array<std::byte, 8> counter{};
    coil::result<std::size_t> n = co_await coil::read(fd, counter);
    if (n)
        fail(fmt::format("coil: a read of an idle eventfd returned {} bytes", *n));
    if (n.error() != std::errc::operation_canceled)
        fail("coil: a read of an idle eventfd failed: " + n.error().message());
    ++cancelled;
}

// The 7,000 idle reads: each a spawned task with a stop source of its own.
class idle_reads {
public:
    explicit idle_reads(const std::vector<int>& fds) : fds_(fds)
    {
        sources_.reserve(fds.size());
        handles_.reserve(fds.size());
    }

    // Starts them and returns once every read is in the kernel.
    coil::task<void> start(coil::executor& ex)
    {
        cancelled_ = 0;
        const std::size_t before = ex.in_flight();
        for (int fd : fds_) {
            sources_.emplace_back();
            handles_.push_back(
                ex.spawn(coil::with_stop_token(sources_.back().get_token(), idle_read(fd, cancelled_))));
        }
        co_await coil::yield(); // the spawned tasks run and queue their reads
        if (ex.in_flight() < before + fds_.size())
            fail(fmt::format("coil: {} ops in flight after starting {} idle reads",
                             ex.in_flight(), fds_.size()));
        // One round trip submits the SQEs still queued: the reads are then all in the kernel.
        if (coil::result<void> r = co_await coil::nop(); !r)
            fail("coil: a NOP failed: " + r.error().message());
    }

    // Stops every source (one stop request each), waits for every read to end, and checks
    // that each was cancelled and that nothing is left in flight.
    coil::task<void> cancel_and_drain(coil::executor& ex)
    {
        for (std::stop_source& s : sources_)
            s.request_stop();
        for (coil::join_handle<void>& h : handles_)
            co_await h;
        if (cancelled_ != fds_.size())
            fail(fmt::format("coil: {} of {} idle reads were cancelled", cancelled_,
                             fds_.size()));
        if (ex.in_flight() != 0)
            fail(fmt::format("coil: {} ops still in flight after draining the idle reads",
                             ex.in_flight()));
        sources_.clear();
        handles_.clear();
    }

private:
    const std::vector<int>& fds_;
    std::vector<std::stop_source> sources_;
    std::vector<coil::join_handle<void>> handles_;
    unsigned cancelled_ = 0;
};

// Per-run timings of the rounds alone (the harness's ops/s also counts the idle reads' start
// and drain, which both sides pay once per run).
struct round_log {
    std::vector<double> ns_per_round;
    std::vector<double> setup_ms; // starting and draining the idle reads
};

std::uint64_t run_rounds(coil::executor& ex, const std::vector<int>& fds, bool idle_in_flight,
                         bench::run_clock& clock, round_log& log)
{
    std::uint64_t rounds = 0;
    auto body = [&]() -> coil::task<void> {
        idle_reads idle(fds);
        steady::duration setup{};
        steady::time_point t0 = steady::now();
        co_await idle.start(ex);
        if (!idle_in_flight)
            co_await idle.cancel_and_drain(ex);
        setup += steady::now() - t0;

        const steady::time_point begin = steady::now();
        while (clock.running()) {
            co_await when_any_round();
            ++rounds;
        }
        const steady::duration took = steady::now() - begin;

        if (idle_in_flight) {
            t0 = steady::now();
            co_await idle.cancel_and_drain(ex);
            setup += steady::now() - t0;
        }
        if (ex.timers_armed() != 0)
            fail(fmt::format("coil: {} timers still armed after the rounds", ex.timers_armed()));
        log.ns_per_round.push_back(static_cast<double>(took.count()) /
                                   static_cast<double>(std::max<std::uint64_t>(rounds, 1)));
        log.setup_ms.push_back(std::chrono::duration<double, std::milli>(setup).count());
    };
    ex.run(body());
    return rounds;
}

double median(std::vector<double> v)
{
    if (v.empty())
        return 0;
    std::sort(v.begin(), v.end());
    const std::size_t mid = v.size() / 2;
    return v.size() % 2 != 0 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

// Makes room for `needed` more descriptors under RLIMIT_NOFILE, raising the soft limit
// towards the hard one if it must.
void ensure_descriptors(std::size_t needed)
{
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0)
        fail("getrlimit(RLIMIT_NOFILE): " + std::generic_category().message(errno));
    const rlim_t wanted = static_cast<rlim_t>(needed) + 256;
    if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < wanted) {
        if (limit.rlim_max != RLIM_INFINITY && limit.rlim_max < wanted)
            fail(fmt::format("the when_any row needs {} descriptors but RLIMIT_NOFILE's hard "
                             "limit is {}: raise it (ulimit -Hn) or skip the row with --filter",
                             wanted, limit.rlim_max));
        limit.rlim_cur = wanted;
        if (::setrlimit(RLIMIT_NOFILE, &limit) != 0)
            fail("setrlimit(RLIMIT_NOFILE): " + std::generic_category().message(errno));
    }
}

class eventfds {
public:
    explicit eventfds(std::size_t count)
    {
        ensure_descriptors(count);
        fds_.reserve(count);
        for (std::size_t i = 0; i < count; ++i) {
            // Blocking (no EFD_NONBLOCK): io_uring parks a read of it until it is written.
            const int fd = ::eventfd(0, EFD_CLOEXEC);
            if (fd < 0)
                fail("eventfd: " + std::generic_category().message(errno));
            fds_.push_back(fd);
        }
    }
    ~eventfds()
    {
        for (int fd : fds_)
            ::close(fd);
    }
    eventfds(const eventfds&) = delete;
    eventfds& operator=(const eventfds&) = delete;

    const std::vector<int>& fds() const noexcept { return fds_; }

private:
    std::vector<int> fds_;
};

// ns per op of a side's median ops/s.
double ns_per_op(const bench::sample_summary& s) { return s.median > 0 ? 1e9 / s.median : 0; }

// What the coil side adds per op: the median over runs of (coil ns/op - baseline ns/op), run
// i of each side having run back to back, like the harness's ratio.
double added_ns_per_op(const bench::comparison& row)
{
    std::vector<double> differences;
    for (std::size_t i = 0; i < row.coil.samples.size() && i < row.baseline.samples.size(); ++i)
        if (row.coil.samples[i] > 0 && row.baseline.samples[i] > 0)
            differences.push_back(1e9 / row.coil.samples[i] - 1e9 / row.baseline.samples[i]);
    return median(std::move(differences));
}

} // namespace

int main(int argc, char** argv)
{
    bench::program prog{
        "bench_timers",
        "coil's timer heap and stop requests: 10,000 sleeps armed and cancelled, a deadline on "
        "every op, when_any rounds with 7,000 ops in flight; the baseline is coil without the "
        "measured feature (see each row)",
        "coil, feature off",
    };
    return bench::run_program(argc, argv, std::move(prog), [](bench::harness& h) {
        coil::executor ex(coil::executor_options{.entries = ring_entries});
        fmt::print("  ring      coil {} SQ / {} CQ entries ({})\n", ex.ring().sq_entries(),
                   ex.ring().cq_entries(),
                   ex.ring().single_issuer() ? "SINGLE_ISSUER+DEFER_TASKRUN" : "no DEFER_TASKRUN");

        const std::string same = "sleep+cancel x10k, same 10s";
        const std::string spread = "sleep+cancel x10k, 10..20s";
        h.compare(
            same, [&](bench::run_clock& c) { return run_sleep_cycles(ex, suspension::sleep, false, c); },
            [&](bench::run_clock& c) { return run_sleep_cycles(ex, suspension::yield, false, c); });
        h.compare(
            spread, [&](bench::run_clock& c) { return run_sleep_cycles(ex, suspension::sleep, true, c); },
            [&](bench::run_clock& c) { return run_sleep_cycles(ex, suspension::yield, true, c); });

        for (unsigned tasks : {1U, 128U})
            h.compare(
                fmt::format("nop with_timeout, {} task{}", tasks, tasks == 1 ? "" : "s"),
                [&](bench::run_clock& c) { return run_nops(ex, true, tasks, c); },
                [&](bench::run_clock& c) { return run_nops(ex, false, tasks, c); });

        const std::string rounds_row = "when_any round, 7k idle ops";
        round_log busy_log;
        round_log quiet_log;
        if (h.selected(rounds_row)) {
            eventfds idle_fds(idle_count);
            h.compare(
                rounds_row,
                [&](bench::run_clock& c) { return run_rounds(ex, idle_fds.fds(), true, c, busy_log); },
                [&](bench::run_clock& c) { return run_rounds(ex, idle_fds.fds(), false, c, quiet_log); });
        }

        for (const bench::comparison& row : h.rows()) {
            if (row.name == same || row.name == spread) {
                h.note(fmt::format("{}: {:.1f} ns per sleep armed, cancelled and woken; {:.1f} "
                                   "ns per task suspended on yield() instead (medians); the timer "
                                   "adds {:.1f} ns (median of the per-run differences)",
                                   row.name, ns_per_op(row.coil), ns_per_op(row.baseline),
                                   added_ns_per_op(row)));
            } else if (row.name.rfind("nop with_timeout", 0) == 0) {
                h.note(fmt::format("{}: {:.1f} ns per NOP with a deadline, {:.1f} ns without; "
                                   "the deadline adds {:.1f} ns per op (median of the per-run "
                                   "differences)",
                                   row.name, ns_per_op(row.coil), ns_per_op(row.baseline),
                                   added_ns_per_op(row)));
            } else if (row.name == rounds_row) {
                // The first entry of each log is the warm-up run.
                auto measured = [](const std::vector<double>& v) {
                    return v.size() > 1 ? std::vector<double>(v.begin() + 1, v.end()) : v;
                };
                std::vector<double> busy = measured(busy_log.ns_per_round);
                std::vector<double> quiet = measured(quiet_log.ns_per_round);
                std::vector<double> ratios;
                for (std::size_t i = 0; i < busy.size() && i < quiet.size(); ++i)
                    ratios.push_back(busy[i] / quiet[i]);
                h.note(fmt::format(
                    "{}: {:.2f} us per round with {} idle ops in flight (b), {:.2f} us with none "
                    "(a); (b)/(a) per run, median {:.3f} (range {:.3f}..{:.3f}); starting and "
                    "draining the idle reads took {:.1f} ms per run",
                    row.name, median(busy) / 1000, idle_count, median(quiet) / 1000,
                    median(ratios), ratios.empty() ? 0 : *std::min_element(ratios.begin(), ratios.end()),
                    ratios.empty() ? 0 : *std::max_element(ratios.begin(), ratios.end()),
                    median(measured(busy_log.setup_ms))));
            }
        }
        const coil::executor_stats& stats = ex.stats();
        h.note(fmt::format("executor: {} ops started, {} cancels submitted, {} timers fired, {} "
                           "stale completions",
                           stats.ops_started, stats.cancels_submitted, stats.timers_fired,
                           stats.stale_completions));
        if (stats.timers_fired != 0)
            fail(fmt::format("coil: {} timers fired; every sleep and deadline here should have "
                             "been cancelled or disarmed first",
                             stats.timers_fired));
    });
}
