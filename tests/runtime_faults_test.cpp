// SPDX-License-Identifier: MIT
// The runtime (executor, ops, deadlines, streams, cancellation, when_any, shutdown) with faults
// injected at its ring's kernel boundary (io/fault_injection.hpp, the coil_faulty build): for
// each fault alone and all together, every awaiter resumes exactly once with a result, nothing
// is lost or doubled, nothing hangs, and the fault is seen to fire.

#include "runtime_test_support.hpp"

#include "fault_injection.hpp"
#include "fault_plans.hpp"
#include "test_executor.hpp"

#include <coil/coil.hpp>
#include <coil/runtime/stream.hpp>

#include <catch2/catch_test_macros.hpp>

#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <stdio.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <stop_token>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using coil::io::testing::fault_counts;
using coil::io::testing::fault_plan;
using coil::io::testing::scoped_faults;
using coil_test::frame_census;
using coil_test::frame_guard;
using namespace coil_test; // the fault plans (fault_plans.hpp)

namespace {

// Prints what fired and checks that every fault the plan injects and the scenario can meet
// fired at least once: a scenario that never met its fault proves nothing.
void check_fired(const char* scenario, const named_plan& p, const fault_counts& c,
                 unsigned can_meet)
{
    std::printf("  %-14s %-16s fired: %s\n", scenario, p.name, coil_test::describe(c).c_str());
    const unsigned expected = p.injects & can_meet;
    CHECK(expected != 0); // else the cell is n/a and the caller should not have run it
    if (p.injects == every_fault) {
        // All together: the faults crowd each other out (a stall needs an empty backlog,
        // which reordering keeps full; an EINTR needs a wait with nothing to submit), so how
        // often each fires depends on timing. Each one alone is checked in its own row; here
        // most of them must have fired in the same run.
        int distinct = 0;
        for (unsigned b = 1; b < every_fault; b <<= 1)
            distinct += (expected & b) != 0 && counter_of(c, static_cast<fault_bit>(b)) > 0;
        INFO(scenario << " under all faults: only " << distinct << " kinds fired");
        CHECK(distinct >= 6);
        return;
    }
    for (unsigned b = 1; b < every_fault; b <<= 1) {
        if ((expected & b) == 0)
            continue;
        INFO(scenario << " under " << p.name << ": " << name_of(static_cast<fault_bit>(b))
                      << " never fired (seed " << chosen_seed() << ")");
        CHECK(counter_of(c, static_cast<fault_bit>(b)) > 0);
    }
}

// A small ring with a small CQ: stalled reaps overflow it for real, and a shrunken SQ is far
// below what the scenarios keep in flight.
// Runs `first` and `second` (reads that fill a 2-entry SQ), then `body`, as tasks of their own
// in that order within one batch, so that `body` finds the SQ full; waits for `body`, then for
// the reads (which `body` ends).
coil::task<void> behind_two_reads(coil::executor& ex, coil::task<void> first,
                                  coil::task<void> second, coil::task<void> body)
{
    auto a = ex.spawn(std::move(first));
    auto b = ex.spawn(std::move(second));
    auto c = ex.spawn(std::move(body));
    co_await c;
    co_await a;
    co_await b;
}

// The same with two plain reads of `fd_a` and `fd_b` that `stop` ends.
coil::task<void> behind_two_reads(coil::executor& ex, int fd_a, int fd_b, std::stop_token stop,
                                  coil::task<void> body)
{
    auto read_until_stopped = [](int fd) -> coil::task<void> {
        std::array<std::byte, 16> buffer{};
        (void)co_await coil::read(fd, buffer, coil::current_position);
    };
    co_await behind_two_reads(ex, coil::with_stop_token(stop, read_until_stopped(fd_a)),
                              coil::with_stop_token(stop, read_until_stopped(fd_b)),
                              std::move(body));
}

coil::executor_options small_ring()
{
    coil::executor_options o;
    o.entries = 32;
    o.ring.cq_entries = 64;
    return o;
}

// Every co_await that can suspend is counted going in and coming out: a lost resumption leaves
// `awaited > resumed` (or hangs), a doubled one `resumed > awaited`.
struct tally {
    std::size_t awaited = 0;
    std::size_t resumed = 0;
};

bool is_error(const std::error_code& ec, std::errc e) { return ec == std::make_error_code(e); }

// --- ops --------------------------------------------------------------------------------------

coil::task<void> nops(tally& t, int count, std::size_t& ok)
{
    for (int i = 0; i < count; ++i) {
        ++t.awaited;
        coil::result<void> r = co_await coil::nop();
        ++t.resumed;
        if (r)
            ++ok;
    }
}

// Short sleeps: loop turns where the executor waits with nothing to submit (where an EINTR
// can strike).
coil::task<void> ticker(tally& t, int count)
{
    for (int i = 0; i < count; ++i) {
        ++t.awaited;
        coil::result<void> r = co_await coil::sleep_for(300us);
        ++t.resumed;
        REQUIRE(r.ok());
    }
}

// Writes `size` pattern bytes to `fd` in chunks of at most `chunk`, finishing short writes.
coil::task<void> pipe_writer(tally& t, int fd, std::size_t size, std::size_t chunk, bool& done)
{
    const std::vector<std::byte> data = coil_test::pattern(size);
    std::size_t written = 0;
    while (written < size) {
        const std::size_t n = std::min(chunk, size - written);
        ++t.awaited;
        coil::result<std::size_t> r =
            co_await coil::write(fd, std::span(data).subspan(written, n), coil::current_position);
        ++t.resumed;
        REQUIRE(r.ok());
        REQUIRE(*r > 0);
        written += *r;
    }
    done = true;
}

// Reads `size` bytes from `fd` in reads of at most `chunk`, checking every byte.
coil::task<void> pipe_reader(tally& t, int fd, std::size_t size, std::size_t chunk,
                             std::size_t& verified)
{
    std::vector<std::byte> buffer(chunk);
    std::size_t got = 0;
    while (got < size) {
        const std::size_t want = std::min(chunk, size - got);
        ++t.awaited;
        coil::result<std::size_t> r =
            co_await coil::read(fd, std::span(buffer).first(want), coil::current_position);
        ++t.resumed;
        REQUIRE(r.ok());
        REQUIRE(*r > 0); // the writer keeps its end open until everything was read
        for (std::size_t i = 0; i < *r; ++i) {
            if (buffer[i] != coil_test::pattern_byte(got + i)) {
                FAIL("byte " << got + i << " of the pipe differs from the pattern");
            }
        }
        got += *r;
        verified += *r;
    }
}

coil::task<void> file_reads(tally& t, const coil::file& f, std::size_t file_size, int count,
                            unsigned salt, std::size_t& verified)
{
    for (int i = 0; i < count; ++i) {
        const std::size_t length = 1 + (static_cast<std::size_t>(i) * 7919 + salt * 104729) % 16384;
        const std::uint64_t offset =
            (static_cast<std::uint64_t>(i) * 65537 + salt * 8191) % (file_size - length);
        std::vector<std::byte> buffer(length);
        ++t.awaited;
        coil::result<void> r = co_await f.read_exact_at(buffer, offset);
        ++t.resumed;
        REQUIRE(r.ok());
        REQUIRE(buffer == coil_test::pattern(length, offset));
        verified += length;
    }
}

// --- streams ----------------------------------------------------------------------------------

// Writes 1, 2, ..., n to the eventfd, each after a nop (so the consumer sees separate events).
// An injected short write of an eventfd fails with EINVAL and adds nothing: it is re-issued.
coil::task<void> eventfd_writer(tally& t, int fd, std::uint64_t n, std::uint64_t& written)
{
    for (std::uint64_t v = 1; v <= n; ++v) {
        std::uint64_t value = v;
        for (;;) {
            ++t.awaited;
            coil::result<std::size_t> r = co_await coil::write(
                fd, std::as_bytes(std::span(&value, 1)), coil::current_position);
            ++t.resumed;
            if (!r && is_error(r.error(), std::errc::invalid_argument))
                continue; // shortened below 8 bytes: the kernel took nothing
            REQUIRE(r.ok());
            REQUIRE(*r == sizeof value);
            break;
        }
        written += v;
        if (v % 4 == 0) {
            ++t.awaited;
            (void)co_await coil::nop();
            ++t.resumed;
        }
    }
}

// One read of an eventfd's counter, re-issued after an injected short read (EINVAL, nothing
// consumed). Yields the counter, or the error that ended it (a cancel).
coil::task<coil::result<std::uint64_t>> read_counter(tally& t, int fd)
{
    for (;;) {
        std::uint64_t value = 0;
        ++t.awaited;
        coil::result<std::size_t> r =
            co_await coil::read(fd, std::as_writable_bytes(std::span(&value, 1)),
                                coil::current_position);
        ++t.resumed;
        if (!r && is_error(r.error(), std::errc::invalid_argument))
            continue;
        if (!r)
            co_return r.error();
        REQUIRE(*r == sizeof value);
        co_return value;
    }
}

// --- shutdown ---------------------------------------------------------------------------------

coil::task<void> guarded_read(frame_guard frame, int fd, std::size_t& completed)
{
    std::array<std::byte, 512> buffer{};
    coil::result<std::size_t> r = co_await coil::read(fd, buffer, coil::current_position);
    (void)r;
    ++completed;
    (void)frame;
}

coil::task<void> guarded_poll(frame_guard frame, int fd, std::size_t& completed)
{
    coil::result<std::uint32_t> r = co_await coil::poll(fd, POLLIN);
    (void)r;
    ++completed;
    (void)frame;
}

coil::task<void> guarded_sleep(frame_guard frame, std::size_t& completed)
{
    coil::result<void> r = co_await coil::sleep_for(1h);
    (void)r;
    ++completed;
    (void)frame;
}

// Spawns `per_kind` reads, polls and sleeps that can never complete on their own.
void spawn_blocked(coil::executor& ex, frame_census& frames,
                   const std::vector<coil_test::pipe_fds>& pipes, std::size_t per_kind,
                   std::size_t& completed)
{
    for (std::size_t i = 0; i < per_kind; ++i) {
        const int fd = pipes[i % pipes.size()].read_end.get();
        ex.spawn(guarded_read(frame_guard(frames, 3 * i), fd, completed)).detach();
        ex.spawn(guarded_poll(frame_guard(frames, 3 * i + 1), fd, completed)).detach();
        ex.spawn(guarded_sleep(frame_guard(frames, 3 * i + 2), completed)).detach();
    }
}

} // namespace

TEST_CASE("runtime faults: nops, pipe round trips and exact file reads deliver every byte once",
          "[faults][runtime][ops]")
{
    for (const named_plan& p : all_plans()) {
        DYNAMIC_SECTION(p.name)
        {
            coil_test::temp_dir dir;
            constexpr std::size_t file_size = 1 << 18;
            coil_test::unique_fd raw = dir.create_file("pattern", coil_test::pattern(file_size));
            std::vector<coil_test::pipe_fds> pipes;
            for (int i = 0; i < 4; ++i)
                pipes.push_back(coil_test::make_pipe());

            scoped_faults faults(p.plan);
            tally t;
            std::size_t nops_ok = 0;
            std::size_t pipe_bytes = 0;
            std::size_t file_bytes = 0;
            constexpr std::size_t per_pipe = 48 * 1024;
            {
                coil::executor ex(coil_test::executor_options(small_ring()));
                coil::file f(::dup(raw.get()));
                auto root = [&]() -> coil::task<void> {
                    std::vector<coil::join_handle<void>> all;
                    for (int i = 0; i < 8; ++i)
                        all.push_back(ex.spawn(nops(t, 200, nops_ok)));
                    std::array<bool, 4> written{};
                    for (std::size_t i = 0; i < pipes.size(); ++i) {
                        all.push_back(ex.spawn(pipe_writer(t, pipes[i].write_end.get(), per_pipe,
                                                           1024 + 1024 * i, written[i])));
                        all.push_back(ex.spawn(pipe_reader(t, pipes[i].read_end.get(), per_pipe,
                                                           4096 - 512 * i, pipe_bytes)));
                    }
                    all.push_back(ex.spawn(ticker(t, 40)));
                    for (unsigned salt = 0; salt < 8; ++salt)
                        all.push_back(ex.spawn(file_reads(t, f, file_size, 16, salt, file_bytes)));
                    for (auto& h : all)
                        co_await h;
                    for (bool w : written)
                        CHECK(w);
                };
                ex.run(root());
                CHECK(ex.in_flight() == 0);
            }
            CHECK(nops_ok == 8 * 200);
            CHECK(pipe_bytes == 4 * per_pipe);
            CHECK(file_bytes > 0);
            CHECK(t.awaited == t.resumed);
            check_fired("ops", p, faults.counts(), every_fault);
        }
    }
}

TEST_CASE("runtime faults: deadlines end idle reads timed_out, deliver data that arrives, and "
          "sleeps end on time",
          "[faults][runtime][deadline]")
{
    for (const named_plan& p : all_plans()) {
        DYNAMIC_SECTION(p.name)
        {
            std::vector<coil_test::pipe_fds> idle;  // never written
            std::vector<coil_test::pipe_fds> busy;  // written while the read waits
            for (int i = 0; i < 16; ++i) {
                idle.push_back(coil_test::make_pipe());
                busy.push_back(coil_test::make_pipe());
            }
            scoped_faults faults(p.plan);
            tally t;
            std::size_t timed_out = 0;
            std::size_t delivered = 0;
            std::size_t slept = 0;
            {
                coil::executor ex(coil_test::executor_options(small_ring()));
                auto idle_read = [&](int fd, std::chrono::milliseconds d) -> coil::task<void> {
                    std::array<std::byte, 64> buffer{};
                    ++t.awaited;
                    coil::result<std::size_t> r =
                        co_await coil::read(fd, buffer, coil::current_position).with_timeout(d);
                    ++t.resumed;
                    REQUIRE_FALSE(r.ok());
                    CHECK(is_error(r.error(), std::errc::timed_out));
                    ++timed_out;
                };
                auto busy_read = [&](int fd, std::size_t i) -> coil::task<void> {
                    // The deadline is far: the data, written in pieces, must come back whole.
                    const std::vector<std::byte> want = coil_test::pattern(300, i * 1000);
                    std::vector<std::byte> got(want.size());
                    std::size_t have = 0;
                    while (have < got.size()) {
                        ++t.awaited;
                        coil::result<std::size_t> r =
                            co_await coil::read(fd, std::span(got).subspan(have),
                                                coil::current_position)
                                .with_timeout(10s);
                        ++t.resumed;
                        REQUIRE(r.ok());
                        REQUIRE(*r > 0);
                        have += *r;
                    }
                    CHECK(got == want);
                    ++delivered;
                };
                auto feeder = [&](int fd, std::size_t i) -> coil::task<void> {
                    const std::vector<std::byte> data = coil_test::pattern(300, i * 1000);
                    ++t.awaited;
                    (void)co_await coil::sleep_for(std::chrono::milliseconds(1 + i % 5));
                    ++t.resumed;
                    std::size_t sent = 0;
                    while (sent < data.size()) {
                        ++t.awaited;
                        coil::result<std::size_t> r = co_await coil::write(
                            fd, std::span(data).subspan(sent, std::min<std::size_t>(100, data.size() - sent)),
                            coil::current_position);
                        ++t.resumed;
                        REQUIRE(r.ok());
                        sent += *r;
                    }
                };
                auto sleeper = [&](std::chrono::milliseconds d) -> coil::task<void> {
                    const auto start = std::chrono::steady_clock::now();
                    ++t.awaited;
                    coil::result<void> r = co_await coil::sleep_for(d);
                    ++t.resumed;
                    CHECK(r.ok());
                    CHECK(std::chrono::steady_clock::now() - start >= d);
                    ++slept;
                };
                auto root = [&]() -> coil::task<void> {
                    std::vector<coil::join_handle<void>> all;
                    for (std::size_t i = 0; i < idle.size(); ++i) {
                        all.push_back(ex.spawn(idle_read(idle[i].read_end.get(),
                                                         std::chrono::milliseconds(2 + i % 7))));
                        all.push_back(ex.spawn(busy_read(busy[i].read_end.get(), i)));
                        all.push_back(ex.spawn(feeder(busy[i].write_end.get(), i)));
                        all.push_back(ex.spawn(sleeper(std::chrono::milliseconds(1 + i % 9))));
                    }
                    for (auto& h : all)
                        co_await h;
                };
                ex.run(root());
                CHECK(ex.in_flight() == 0);
                CHECK(ex.timers_armed() == 0);
            }
            CHECK(timed_out == idle.size());
            CHECK(delivered == busy.size());
            CHECK(slept == idle.size());
            CHECK(t.awaited == t.resumed);
            check_fired("deadlines", p, faults.counts(), every_fault);
        }
    }
}

TEST_CASE("runtime faults: with a shrunken SQ, a deadline that fires while the op waits for SQ "
          "room ends it timed_out before it reaches the kernel",
          "[faults][runtime][deadline]")
{
    // sq_entries alone never makes an op wait: every flush empties the SQ. An op waits only
    // when the SQ is full and the kernel refuses the flush beyond the ring's retry budget, so
    // the test asks for one such refusal at the moment the SQ is full.
    const named_plan p{"sq_entries", {.seed = chosen_seed(), .sq_entries = 2}, sq_fill};
    std::vector<coil_test::pipe_fds> pipes;
    for (int i = 0; i < 3; ++i)
        pipes.push_back(coil_test::make_pipe());
    scoped_faults faults(p.plan);
    tally t;
    std::stop_source stop_readers;
    std::size_t readers_canceled = 0;
    bool deferred_timed_out = false;
    {
        coil::executor ex(coil_test::executor_options(small_ring()));
        auto reader = [&](int fd) -> coil::task<void> {
            std::array<std::byte, 16> buffer{};
            ++t.awaited;
            coil::result<std::size_t> r = co_await coil::read(fd, buffer, coil::current_position);
            ++t.resumed;
            REQUIRE_FALSE(r.ok());
            CHECK(is_error(r.error(), std::errc::operation_canceled));
            ++readers_canceled;
        };
        auto deferred = [&]() -> coil::task<void> {
            // The two readers ran first in this batch: their SQEs fill the 2-entry SQ.
            CHECK(ex.ring().unsubmitted() == 2);
            const coil::executor_stats before = ex.stats();
            std::array<std::byte, 16> buffer{};
            faults.refuse_next_submission();
            ++t.awaited;
            coil::result<std::size_t> r =
                co_await coil::read(pipes[2].read_end.get(), buffer, coil::current_position)
                    .with_timeout(1ms);
            ++t.resumed;
            REQUIRE_FALSE(r.ok());
            CHECK(is_error(r.error(), std::errc::timed_out));
            CHECK(ex.stats().ops_deferred == before.ops_deferred + 1);
            CHECK(ex.stats().ops_started == before.ops_started); // never reached the kernel
            CHECK(ex.stats().timers_fired == before.timers_fired + 1);
            deferred_timed_out = true;
            stop_readers.request_stop();
        };
        ex.run(behind_two_reads(ex,
                                coil::with_stop_token(stop_readers.get_token(),
                                                      reader(pipes[0].read_end.get())),
                                coil::with_stop_token(stop_readers.get_token(),
                                                      reader(pipes[1].read_end.get())),
                                deferred()));
        CHECK(ex.in_flight() == 0);
        CHECK(ex.stats().ops_deferred > 0);
    }
    CHECK(deferred_timed_out);
    CHECK(readers_canceled == 2);
    CHECK(t.awaited == t.resumed);
    check_fired("sq wait", p, faults.counts(), every_fault);
    CHECK(faults.counts().ebusy > 0);
}

TEST_CASE("runtime faults: ops waiting for SQ room are admitted in order, later ops queue "
          "behind them, and one whose stop is requested leaves the queue without reaching the "
          "kernel",
          "[faults][runtime][admission]")
{
    const named_plan p{"sq_entries", {.seed = chosen_seed(), .sq_entries = 2}, sq_fill};
    std::vector<coil_test::pipe_fds> pipes;
    for (int i = 0; i < 3; ++i)
        pipes.push_back(coil_test::make_pipe());
    scoped_faults faults(p.plan);
    std::stop_source stop_readers;
    std::optional<std::error_code> y_ended;
    std::vector<int> order;
    {
        coil::executor ex(coil_test::executor_options(small_ring()));
        auto queued = [&]() -> coil::task<void> {
            const coil::executor_stats before = ex.stats();
            std::stop_source stop_y;
            auto first = [&]() -> coil::task<void> {
                // The readers' SQEs fill the 2-entry SQ, and the flush this nop needs is
                // refused: it waits for room (the deadline, never reached, only sends it
                // straight to the queue, where the refusal is met).
                CHECK(ex.ring().unsubmitted() == 2);
                faults.refuse_next_submission();
                auto r = co_await coil::nop().with_timeout(std::chrono::seconds(10));
                REQUIRE(r.ok());
                order.push_back(0);
            };
            auto y = [&]() -> coil::task<void> {
                std::array<std::byte, 16> buffer{};
                auto r = co_await coil::read(pipes[2].read_end.get(), buffer,
                                             coil::current_position);
                y_ended = r ? std::error_code() : r.error();
            };
            auto numbered = [&](int i) -> coil::task<void> {
                auto r = co_await coil::nop();
                REQUIRE(r.ok());
                order.push_back(i);
            };
            auto stopper = [&]() -> coil::task<void> {
                // Everything started after the first queued op queued behind it, even once
                // the kernel would take SQEs again: nothing overtook it.
                CHECK(ex.stats().ops_deferred == before.ops_deferred + 4);
                CHECK(ex.stats().ops_started == before.ops_started);
                stop_y.request_stop();
                co_return;
            };
            co_await coil::when_all(first(), coil::with_stop_token(stop_y.get_token(), y()),
                                    numbered(1), numbered(2), stopper());
            CHECK(ex.stats().ops_started == before.ops_started + 3); // y never reached the kernel
            stop_readers.request_stop();
        };
        ex.run(behind_two_reads(ex, pipes[0].read_end.get(), pipes[1].read_end.get(),
                                stop_readers.get_token(), queued()));
        CHECK(ex.in_flight() == 0);
    }
    REQUIRE(y_ended.has_value());
    CHECK(is_error(*y_ended, std::errc::operation_canceled));
    CHECK(order == std::vector<int>{0, 1, 2});
}

TEST_CASE("runtime faults: a file destroyed while a write on it waits for SQ room keeps its "
          "number until the write reached the kernel: a file opened meanwhile gets another",
          "[faults][runtime][admission][lifetime]")
{
    const named_plan p{"sq_entries", {.seed = chosen_seed(), .sq_entries = 2}, sq_fill};
    coil_test::temp_dir dir;
    const std::string second = dir.file("second");
    std::vector<coil_test::pipe_fds> pipes;
    for (int i = 0; i < 2; ++i)
        pipes.push_back(coil_test::make_pipe());
    scoped_faults faults(p.plan);
    std::stop_source stop_readers;
    coil::file a(dir.create_file("first").release());
    coil::file b;
    const int number = a.native_handle();
    std::optional<coil::result<std::size_t>> wrote;
    {
        coil::executor ex(coil_test::executor_options(small_ring()));
        auto body = [&]() -> coil::task<void> {
            const coil::executor_stats before = ex.stats();
            auto writer = [&]() -> coil::task<void> {
                // The readers' SQEs fill the 2-entry SQ and the flush is refused: the write
                // waits for room, its descriptor not yet looked up (the deadline, never
                // reached, sends it straight to the queue, as in the test above).
                CHECK(ex.ring().unsubmitted() == 2);
                faults.refuse_next_submission();
                wrote = co_await a.write_at(bytes_of("AAAA"), 0)
                            .with_timeout(std::chrono::seconds(10));
            };
            auto dropper = [&]() -> coil::task<void> {
                CHECK(ex.stats().ops_deferred == before.ops_deferred + 1);
                coil::file gone = std::move(a); // the write still waits
                b = coil::file(
                    ::open(second.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
                CHECK(b.native_handle() != number); // still held for the waiting write
                co_return;
            };
            co_await coil::when_all(writer(), dropper());
            stop_readers.request_stop();
        };
        ex.run(behind_two_reads(ex, pipes[0].read_end.get(), pipes[1].read_end.get(),
                                stop_readers.get_token(), body()));
        check_fired("deferred close", p, faults.counts(), sq_fill);
    }
    REQUIRE(wrote.has_value());
    REQUIRE(wrote->ok());
    CHECK(**wrote == 4);
    CHECK(coil_test::read_to_end(
              coil_test::unique_fd(::open(dir.file("first").c_str(), O_RDONLY)).get()) == "AAAA");
    CHECK(coil_test::read_to_end(coil_test::unique_fd(::open(second.c_str(), O_RDONLY)).get())
              .empty());
    // Closed once the write was issued: the number is free again.
    CHECK(::fcntl(number, F_GETFD) == -1);
}

TEST_CASE("runtime faults: stop() with a close held back for a write that waited for SQ room "
          "closes the descriptor",
          "[faults][runtime][admission][lifetime][shutdown]")
{
    const named_plan p{"sq_entries", {.seed = chosen_seed(), .sq_entries = 2}, sq_fill};
    coil_test::temp_dir dir;
    std::vector<coil_test::pipe_fds> pipes;
    for (int i = 0; i < 2; ++i)
        pipes.push_back(coil_test::make_pipe());
    scoped_faults faults(p.plan);
    std::stop_source stop_readers;
    coil::file a(dir.create_file("first").release());
    const int number = a.native_handle();
    {
        coil::executor ex(coil_test::executor_options(small_ring()));
        auto body = [&]() -> coil::task<void> {
            auto writer = [&]() -> coil::task<void> {
                faults.refuse_next_submission(); // the write waits for SQ room
                (void)co_await a.write_at(bytes_of("AAAA"), 0)
                    .with_timeout(std::chrono::seconds(10));
            };
            auto dropper = [&]() -> coil::task<void> {
                {
                    faults.refuse_next_submission(); // the readers' SQEs stay in the SQ
                    coil::file gone = std::move(a);
                }
                CHECK(::fcntl(number, F_GETFD) != -1); // held back for the waiting write
                // The loop tries to admit the write in this turn, and the kernel refuses
                // again: the write still waits, and the close with it, when the stop ends
                // the loop.
                faults.refuse_next_submission();
                ex.stop();
                co_return;
            };
            co_await coil::when_all(writer(), dropper());
        };
        CHECK_THROWS_AS(ex.run(behind_two_reads(ex, pipes[0].read_end.get(),
                                                pipes[1].read_end.get(),
                                                stop_readers.get_token(), body())),
                        std::system_error);
        CHECK(ex.in_flight() == 0);
    }
    CHECK(::fcntl(number, F_GETFD) == -1); // the shutdown closed it, after the drain
}

namespace {

// A multishot op the ring can never queue (as a receive over a pool the ring does not know is).
struct unqueueable {
    std::error_code prepare(coil::io::ring&, std::uint64_t) noexcept
    {
        return std::make_error_code(std::errc::invalid_argument);
    }
    coil::result<int> complete(const coil::io::completion& c) const noexcept
    {
        if (c.result < 0)
            return coil::io::error_from_result(c.result);
        return c.result;
    }
    bool rearm_after(const coil::io::completion&) const noexcept { return false; }
};

} // namespace

TEST_CASE("runtime faults: a stream whose op waited for SQ room and then could not be set up "
          "ends with the error, not as a clean end",
          "[faults][runtime][admission][stream]")
{
    const named_plan p{"sq_entries", {.seed = chosen_seed(), .sq_entries = 2}, sq_fill};
    std::vector<coil_test::pipe_fds> pipes;
    for (int i = 0; i < 2; ++i)
        pipes.push_back(coil_test::make_pipe());
    scoped_faults faults(p.plan);
    std::stop_source stop_readers;
    std::string outcome;
    bool ended = false;
    {
        coil::executor ex(coil_test::executor_options(small_ring()));
        coil::stream<unqueueable> never(unqueueable{});
        auto queued = [&]() -> coil::task<void> {
            const coil::executor_stats before = ex.stats();
            auto first = [&]() -> coil::task<void> {
                // The readers fill the 2-entry SQ and this nop's flush is refused: it waits
                // for room, and so does everything started after it.
                CHECK(ex.ring().unsubmitted() == 2);
                faults.refuse_next_submission();
                auto r = co_await coil::nop().with_timeout(std::chrono::seconds(10));
                REQUIRE(r.ok());
            };
            auto consume = [&]() -> coil::task<void> {
                auto n = co_await never.next(); // its op queues behind the nop
                outcome = !n ? "clean end" : n->ok() ? "a value" : n->error().message();
                ended = never.ended() || !(co_await never.next()).has_value();
            };
            co_await coil::when_all(first(), consume());
            CHECK(ex.stats().ops_deferred == before.ops_deferred + 2);
            stop_readers.request_stop();
        };
        ex.run(behind_two_reads(ex, pipes[0].read_end.get(), pipes[1].read_end.get(),
                                stop_readers.get_token(), queued()));
        CHECK(ex.in_flight() == 0);
    }
    CHECK(outcome == std::make_error_code(std::errc::invalid_argument).message());
    CHECK(ended);
}

TEST_CASE("runtime faults: a multishot poll stream sees every eventfd write, and a stopped "
          "stream ends with operation_canceled then nullopt",
          "[faults][runtime][stream]")
{
    for (const named_plan& p : all_plans()) {
        DYNAMIC_SECTION(p.name)
        {
            coil_test::unique_fd counted_fd = coil_test::make_eventfd();
            coil_test::unique_fd stopped_fd = coil_test::make_eventfd();
            scoped_faults faults(p.plan);
            tally t;
            std::uint64_t written = 0;
            std::uint64_t seen = 0;
            std::size_t events = 0;
            std::size_t stopped_values = 0;
            bool stopped_ended = false;
            {
                coil::executor ex(coil_test::executor_options(small_ring()));
                auto consumer = [&]() -> coil::task<void> {
                    // A small bound, so the stream also pauses and re-arms under the faults.
                    auto ready = coil::poll_multishot(counted_fd.get(), POLLIN, {.bound = 4});
                    constexpr std::uint64_t total = 300 * 301 / 2;
                    while (seen < total) {
                        ++t.awaited;
                        auto event = co_await ready.next();
                        ++t.resumed;
                        REQUIRE(event.has_value());
                        REQUIRE(event->ok());
                        ++events;
                        coil::result<std::uint64_t> v = co_await read_counter(t, counted_fd.get());
                        REQUIRE(v.ok());
                        seen += *v;
                    }
                    ready.stop();
                    // What was buffered, then the end, then nothing.
                    for (int guard = 0; guard < 10'000; ++guard) {
                        ++t.awaited;
                        auto event = co_await ready.next();
                        ++t.resumed;
                        REQUIRE(event.has_value());
                        if (!event->ok()) {
                            CHECK(is_error(event->error(), std::errc::operation_canceled));
                            break;
                        }
                    }
                    ++t.awaited;
                    auto after = co_await ready.next();
                    ++t.resumed;
                    CHECK_FALSE(after.has_value());
                };
                auto stopped_midway = [&]() -> coil::task<void> {
                    // A stream stopped while its op is in flight and events keep coming.
                    auto ready = coil::poll_multishot(stopped_fd.get(), POLLIN);
                    std::uint64_t one = 1;
                    REQUIRE(::write(stopped_fd.get(), &one, sizeof one) == sizeof one);
                    for (int i = 0; i < 3; ++i) {
                        ++t.awaited;
                        auto event = co_await ready.next();
                        ++t.resumed;
                        REQUIRE(event.has_value());
                        REQUIRE(event->ok());
                        ++stopped_values;
                        coil::result<std::uint64_t> v = co_await read_counter(t, stopped_fd.get());
                        REQUIRE(v.ok());
                        REQUIRE(::write(stopped_fd.get(), &one, sizeof one) == sizeof one);
                    }
                    ready.stop();
                    for (int guard = 0; guard < 10'000; ++guard) {
                        ++t.awaited;
                        auto event = co_await ready.next();
                        ++t.resumed;
                        REQUIRE(event.has_value());
                        if (!event->ok()) {
                            CHECK(is_error(event->error(), std::errc::operation_canceled));
                            break;
                        }
                    }
                    ++t.awaited;
                    auto after = co_await ready.next();
                    ++t.resumed;
                    CHECK_FALSE(after.has_value());
                    CHECK(ready.ended());
                    stopped_ended = true;
                };
                auto root = [&]() -> coil::task<void> {
                    auto c = ex.spawn(consumer());
                    auto w = ex.spawn(eventfd_writer(t, counted_fd.get(), 300, written));
                    auto s = ex.spawn(stopped_midway());
                    // Other ops completing meanwhile, so that completions arrive in batches
                    // (a reorder needs three at once) and the stream's interleave with them.
                    std::size_t noise_ok = 0;
                    auto n1 = ex.spawn(nops(t, 300, noise_ok));
                    auto n2 = ex.spawn(nops(t, 300, noise_ok));
                    auto n3 = ex.spawn(nops(t, 300, noise_ok));
                    co_await n1;
                    co_await n2;
                    co_await n3;
                    CHECK(noise_ok == 900);
                    co_await c;
                    co_await w;
                    co_await s;
                };
                ex.run(root());
                CHECK(ex.in_flight() == 0);
            }
            CHECK(written == 300 * 301 / 2);
            CHECK(seen == written);
            CHECK(events > 0);
            CHECK(stopped_values == 3);
            CHECK(stopped_ended);
            CHECK(t.awaited == t.resumed);
            check_fired("streams", p, faults.counts(), every_fault);
        }
    }
}

TEST_CASE("runtime faults: stop requests from the executor thread and from another thread "
          "cancel every read, and when_any losers' reads are counted, not lost",
          "[faults][runtime][cancel][when_any]")
{
    for (const named_plan& p : all_plans()) {
        DYNAMIC_SECTION(p.name)
        {
            std::vector<coil_test::pipe_fds> pipes;
            for (int i = 0; i < 8; ++i)
                pipes.push_back(coil_test::make_pipe());
            coil_test::unique_fd efd = coil_test::make_eventfd();
            scoped_faults faults(p.plan);
            tally t;
            std::size_t canceled_local = 0;
            std::size_t canceled_remote = 0;
            std::uint64_t written = 0;
            std::uint64_t seen = 0;
            std::size_t read_won = 0;
            std::size_t sleep_won = 0;
            std::size_t losers_with_data = 0;
            {
                coil::executor ex(coil_test::executor_options(small_ring()));
                std::stop_source local;
                std::stop_source remote;
                auto blocked_read = [&](int fd, std::size_t& canceled) -> coil::task<void> {
                    std::array<std::byte, 32> buffer{};
                    for (int i = 0; i < 3; ++i) {
                        ++t.awaited;
                        coil::result<std::size_t> r =
                            co_await coil::read(fd, buffer, coil::current_position);
                        ++t.resumed;
                        REQUIRE_FALSE(r.ok()); // nothing is ever written to these pipes
                        CHECK(is_error(r.error(), std::errc::operation_canceled));
                    }
                    ++canceled;
                };
                auto racer = [&]() -> coil::task<void> {
                    // Each round races a read of the eventfd against a short sleep; a writer
                    // adds to the counter now and then. Whatever a read returned, winner or
                    // loser, is counted.
                    for (int round = 0; round < 400 && !(written == 200 * 201 / 2 && seen == written);
                         ++round) {
                        auto sleeper = [&]() -> coil::task<coil::result<void>> {
                            ++t.awaited;
                            auto r = co_await coil::sleep_for(1ms);
                            ++t.resumed;
                            co_return r;
                        };
                        auto first = co_await coil::when_any(read_counter(t, efd.get()), sleeper());
                        if (first.index() == 0) {
                            ++read_won;
                            const auto& r = std::get<0>(first.winner);
                            REQUIRE(r.ok());
                            seen += *r;
                        } else {
                            ++sleep_won;
                            const auto& lost = std::get<0>(first.losers);
                            if (lost && lost->ok()) {
                                ++losers_with_data;
                                seen += **lost;
                            }
                        }
                    }
                };
                auto writer = [&]() -> coil::task<void> {
                    for (std::uint64_t v = 1; v <= 200; ++v) {
                        std::uint64_t value = v;
                        REQUIRE(::write(efd.get(), &value, sizeof value) == sizeof value);
                        written += v;
                        ++t.awaited;
                        // Now and then a gap longer than the racers' sleep, so sleeps win too.
                        (void)co_await coil::sleep_for(v % 10 == 0 ? 3ms : std::chrono::microseconds(300 * (v % 4)));
                        ++t.resumed;
                    }
                };
                auto root = [&]() -> coil::task<void> {
                    std::vector<coil::join_handle<void>> all;
                    for (std::size_t i = 0; i < pipes.size(); ++i) {
                        all.push_back(ex.spawn(coil::with_stop_token(
                            local.get_token(), blocked_read(pipes[i].read_end.get(), canceled_local))));
                        all.push_back(ex.spawn(coil::with_stop_token(
                            remote.get_token(), blocked_read(pipes[i].read_end.get(), canceled_remote))));
                    }
                    all.push_back(ex.spawn(racer()));
                    all.push_back(ex.spawn(writer()));
                    // Ops completing alongside, so that submissions carry several SQEs.
                    std::size_t noise_ok = 0;
                    all.push_back(ex.spawn(nops(t, 200, noise_ok)));
                    all.push_back(ex.spawn(nops(t, 200, noise_ok)));
                    std::thread stopper([&] {
                        std::this_thread::sleep_for(20ms);
                        remote.request_stop();
                    });
                    ++t.awaited;
                    (void)co_await coil::sleep_for(5ms);
                    ++t.resumed;
                    local.request_stop(); // on the executor's thread
                    for (auto& h : all)
                        co_await h;
                    stopper.join();
                };
                ex.run(root());
                CHECK(ex.in_flight() == 0);
            }
            CHECK(canceled_local == pipes.size());
            CHECK(canceled_remote == pipes.size());
            CHECK(written == 200 * 201 / 2);
            CHECK(seen == written);
            CHECK(read_won > 0);
            CHECK(sleep_won > 0);
            std::printf("  when_any: %zu read wins, %zu sleep wins, %zu losers carried data\n",
                        read_won, sleep_won, losers_with_data);
            CHECK(t.awaited == t.resumed);
            check_fired("cancel", p, faults.counts(), every_fault);
        }
    }
}

TEST_CASE("runtime faults: stop() and executor destruction with hundreds of reads, polls and "
          "sleeps pending destroy every frame once",
          "[faults][runtime][shutdown]")
{
    constexpr std::size_t per_kind = 150;
    for (const named_plan& p : all_plans()) {
        DYNAMIC_SECTION(p.name)
        {
            std::vector<coil_test::pipe_fds> pipes;
            for (int i = 0; i < 16; ++i)
                pipes.push_back(coil_test::make_pipe());
            scoped_faults faults(p.plan);
            std::size_t completed = 0;

            // 1. stop() on the executor's thread.
            {
                frame_census frames(3 * per_kind);
                {
                    coil::executor ex(coil_test::executor_options(small_ring()));
                    spawn_blocked(ex, frames, pipes, per_kind, completed);
                    auto root = [&]() -> coil::task<void> {
                        for (int i = 0; i < 5; ++i)
                            (void)co_await coil::nop();
                        for (int i = 0; i < 20; ++i)
                            (void)co_await coil::sleep_for(300us);
                        ex.stop();
                        co_await coil::yield();
                        FAIL("the root ran on after stop()");
                    };
                    CHECK_THROWS_AS(ex.run(root()), std::system_error);
                    CHECK(ex.in_flight() == 0);
                    CHECK(frames.destroyed == 3 * per_kind);
                }
                CHECK(frames.each_destroyed_once());
            }
            // 2. stop() from another thread while the executor waits.
            {
                frame_census frames(3 * per_kind);
                {
                    coil::executor ex(coil_test::executor_options(small_ring()));
                    spawn_blocked(ex, frames, pipes, per_kind, completed);
                    std::thread stopper([&] {
                        std::this_thread::sleep_for(30ms);
                        ex.stop();
                    });
                    auto root = [&]() -> coil::task<void> {
                        (void)co_await coil::sleep_for(1h);
                        FAIL("the root's sleep ended");
                    };
                    CHECK_THROWS_AS(ex.run(root()), std::system_error);
                    stopper.join();
                    CHECK(ex.in_flight() == 0);
                    CHECK(frames.destroyed == 3 * per_kind);
                }
                CHECK(frames.each_destroyed_once());
            }
            // 3. Destruction: the ops of a run() that ended by a stop are gone; tasks spawned
            //    afterwards (never started) are destroyed by ~executor, with a fresh batch of ops
            //    put in flight by a second run() that is stopped from a posted function.
            {
                frame_census frames(3 * per_kind);
                frame_census late(3 * per_kind);
                {
                    coil::executor ex(coil_test::executor_options(small_ring()));
                    spawn_blocked(ex, frames, pipes, per_kind, completed);
                    auto root = [&]() -> coil::task<void> {
                        (void)co_await coil::sleep_for(20ms);
                        ex.post([&] { ex.stop(); });
                        (void)co_await coil::sleep_for(1h);
                    };
                    CHECK_THROWS_AS(ex.run(root()), std::system_error);
                    spawn_blocked(ex, late, pipes, per_kind, completed);
                    CHECK(late.destroyed == 0);
                }
                CHECK(frames.destroyed == 3 * per_kind);
                CHECK(frames.each_destroyed_once());
                CHECK(late.destroyed == 3 * per_kind);
                CHECK(late.each_destroyed_once());
            }
            CHECK(completed == 0);
            check_fired("shutdown", p, faults.counts(), every_fault);
        }
    }
}

TEST_CASE("runtime faults: on a kernel whose io_uring lacks ftruncate and the directory ops, "
          "file::truncate and every directory op fall back to the system call",
          "[runtime][faults][file]")
{
    using coil::io::opcode;
    using coil::io::testing::hidden;
    scoped_faults faults(fault_plan{
        .hide_opcodes = hidden(opcode::ftruncate) | hidden(opcode::unlinkat) |
                        hidden(opcode::renameat) | hidden(opcode::mkdirat) |
                        hidden(opcode::symlinkat) | hidden(opcode::linkat)});
    coil_test::temp_dir dir;
    const std::string path = dir.file("data");
    const std::string moved = dir.file("moved");
    const std::string sub = dir.file("sub");
    const std::string soft = dir.file("soft");
    const std::string hard = dir.file("hard");
    {
        auto fd = dir.create_file("data", coil_test::pattern(4096));
    }
    coil::executor ex(coil_test::executor_options());
    REQUIRE_FALSE(ex.ring().supports(opcode::ftruncate));
    REQUIRE_FALSE(ex.ring().supports(opcode::unlinkat));
    auto error_of = [](const coil::result<void>& r) { return r ? std::error_code() : r.error(); };
    std::vector<std::error_code> errors;
    std::uint64_t size = 0;
    auto body = [&]() -> coil::task<void> {
        auto f = co_await coil::file::open(path, O_RDWR | O_CLOEXEC);
        REQUIRE(f);
        auto t = co_await f->truncate(100);
        errors.push_back(error_of(t));
        size = (co_await f->size()).value();
        auto r1 = co_await coil::rename(path.c_str(), moved.c_str());
        errors.push_back(error_of(r1));
        auto r2 = co_await coil::create_directory(sub.c_str(), 0700);
        errors.push_back(error_of(r2));
        auto r3 = co_await coil::create_symlink("moved", soft.c_str());
        errors.push_back(error_of(r3));
        auto r4 = co_await coil::create_hard_link(moved.c_str(), hard.c_str());
        errors.push_back(error_of(r4));
        auto r5 = co_await coil::remove_directory(sub.c_str());
        errors.push_back(error_of(r5));
        // The system call's errors come through as the op's would.
        auto again = co_await coil::remove_directory(sub.c_str());
        errors.push_back(error_of(again));
        auto noreplace = co_await coil::rename(moved.c_str(), hard.c_str(), RENAME_NOREPLACE);
        errors.push_back(error_of(noreplace));
    };
    ex.run(body());
    REQUIRE(errors.size() == 8);
    for (std::size_t i = 0; i < 6; ++i) {
        CAPTURE(i);
        CHECK_FALSE(errors[i]);
    }
    CHECK(errors[6] == std::errc::no_such_file_or_directory);
    CHECK(errors[7] == std::errc::file_exists);
    CHECK(size == 100);
    struct stat st {};
    CHECK(::access(path.c_str(), F_OK) != 0); // renamed
    CHECK(::stat(moved.c_str(), &st) == 0);
    CHECK(st.st_nlink == 2); // and hard-linked
    CHECK(::access(sub.c_str(), F_OK) != 0); // created, then removed
    char target[16] = {};
    CHECK(::readlink(soft.c_str(), target, sizeof target - 1) == 5);
    CHECK(std::string(target) == "moved");
    CHECK(ex.in_flight() == 0);
}

TEST_CASE("runtime faults: writev_all_at and readv_exact_at move every byte in order when the "
          "ring cuts their iovec counts short",
          "[runtime][faults][file]")
{
    for (const named_plan& p : all_plans()) {
        if ((p.injects & shorten) == 0)
            continue; // the other faults are the ring's own business, met by every op above
        DYNAMIC_SECTION(p.name)
        {
            coil_test::temp_dir dir;
            const std::string path = dir.file("vectored");
            scoped_faults faults(p.plan);
            // 64 rounds of 300 entries of 1..61 bytes, written at consecutive offsets, then
            // read back through entries of other sizes.
            constexpr std::size_t entries = 300;
            std::size_t total = 0;
            std::vector<std::size_t> write_sizes, read_sizes;
            for (std::size_t i = 0; i < entries; ++i) {
                write_sizes.push_back(1 + (i * 37) % 61);
                total += write_sizes.back();
            }
            for (std::size_t left = total, i = 0; left > 0; ++i) {
                read_sizes.push_back(std::min<std::size_t>(left, 1 + (i * 53) % 97));
                left -= read_sizes.back();
            }
            const std::vector<std::byte> sent = coil_test::pattern(total * 64);
            std::vector<std::byte> got(sent.size());
            std::size_t rounds_ok = 0;
            {
                coil::executor ex(coil_test::executor_options(small_ring()));
                // Four tasks at once, each with its own rounds (and region of the file), so
                // that several ops are in flight for the faults to reorder and stall.
                auto rounds = [&](const coil::file& f, std::size_t first) -> coil::task<void> {
                    for (std::size_t round = first; round < 64; round += 4) {
                        const std::size_t base = round * total;
                        std::vector<::iovec> out, in;
                        std::size_t at = base;
                        for (std::size_t n : write_sizes) {
                            out.push_back({const_cast<std::byte*>(sent.data()) + at, n});
                            at += n;
                        }
                        at = base;
                        for (std::size_t n : read_sizes) {
                            in.push_back({got.data() + at, n});
                            at += n;
                        }
                        auto w = co_await f.writev_all_at(out, base);
                        REQUIRE(w);
                        auto r = co_await f.readv_exact_at(in, base);
                        REQUIRE(r);
                        ++rounds_ok;
                    }
                };
                auto body = [&]() -> coil::task<void> {
                    auto f = co_await coil::file::open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
                    REQUIRE(f);
                    co_await coil::when_all(rounds(*f, 0), rounds(*f, 1), rounds(*f, 2),
                                            rounds(*f, 3));
                };
                ex.run(body());
                CHECK(ex.in_flight() == 0);
            }
            CHECK(rounds_ok == 64);
            CHECK(got == sent);
            check_fired("vectored", p, faults.counts(), every_fault);
        }
    }
}

TEST_CASE("runtime faults: an executor on a kernel without IORING_FEAT_EXT_ARG is refused with "
          "an error naming the feature and the kernel",
          "[faults][runtime][setup]")
{
    scoped_faults faults(fault_plan{.hide_features = IORING_FEAT_EXT_ARG});
    try {
        coil::executor ex(coil_test::executor_options());
        FAIL("an executor was created without EXT_ARG");
    } catch (const std::system_error& e) {
        CHECK(e.code() == std::errc::function_not_supported);
        const std::string what = e.what();
        CHECK(what.find("IORING_FEAT_EXT_ARG (Linux 5.11)") != std::string::npos);
        CHECK(what.find("upgrade the kernel, or use coil::io::ring directly") !=
              std::string::npos);
    }
    // The bare ring still works on such a kernel (without timed waits).
    coil::io::ring ring(4);
    CHECK_FALSE(ring.has_ext_arg());
}

TEST_CASE("runtime faults: an executor on a kernel without SINGLE_ISSUER and DEFER_TASKRUN (as "
          "5.19) runs on a ring without them",
          "[faults][runtime][setup]")
{
    scoped_faults faults(
        fault_plan{.refuse_setup_flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN});
    coil::executor ex(coil_test::executor_options());
    CHECK_FALSE(ex.ring().single_issuer());
    auto p = coil_test::make_pipe();
    auto body = [&]() -> coil::task<std::string> {
        auto wrote = co_await coil::write(p.write_end.get(), bytes_of("still works"));
        REQUIRE(wrote);
        (void)co_await coil::sleep_for(std::chrono::milliseconds(1));
        std::array<std::byte, 32> buffer{};
        auto n = co_await coil::read(p.read_end.get(), buffer);
        REQUIRE(n);
        co_return coil_test::string_of(std::span(buffer).first(*n));
    };
    CHECK(ex.run(body()) == "still works");
}
