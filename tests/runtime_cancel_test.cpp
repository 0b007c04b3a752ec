// SPDX-License-Identifier: MIT
// Cancellation through std::stop_token: before submission, while queued, in flight, after
// completion, and from another thread.

#include "runtime_test_support.hpp"
#include "test_executor.hpp"

#include <coil/coil.hpp>

#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>

#include <sys/eventfd.h>

#include <poll.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using coil_test::bytes_of;

namespace {

bool is_canceled(const std::error_code& ec)
{
    return ec == std::make_error_code(std::errc::operation_canceled);
}

/// Reads up to 16 bytes from `fd` into a buffer in this frame.
coil::task<coil::result<std::size_t>> read_pipe(int fd)
{
    std::array<std::byte, 16> buffer{};
    co_return co_await coil::read(fd, buffer, coil::current_position);
}

/// A task that awaits a task that awaits the read: the stop token reaches the op through both.
coil::task<coil::result<std::size_t>> nested_read(int fd)
{
    auto inner = [](int f) -> coil::task<coil::result<std::size_t>> { co_return co_await read_pipe(f); };
    co_return co_await inner(fd);
}

} // namespace

TEST_CASE("runtime: an op whose stop was requested before it was awaited never reaches the kernel",
          "[runtime][cancel]")
{
    auto p = coil_test::make_pipe(); // empty and blocking: a submitted read would wait forever
    std::stop_source source;
    source.request_stop();

    coil::executor ex(coil_test::executor_options());
    const coil::executor_stats before = ex.stats();
    coil::result<std::size_t> r = ex.run(coil::with_stop_token(source.get_token(), read_pipe(p.read_end.get())));
    REQUIRE_FALSE(r.ok());
    CHECK(is_canceled(r.error()));
    CHECK(ex.stats().ops_started == before.ops_started);
    CHECK(ex.stats().cancels_submitted == before.cancels_submitted);
    CHECK(ex.in_flight() == 0);

    // Every op kind takes the same path; a timer and a poll too.
    auto others = [&]() -> coil::task<std::vector<std::error_code>> {
        std::vector<std::error_code> errors;
        errors.push_back((co_await coil::sleep_for(1h)).error());
        errors.push_back((co_await coil::poll(p.read_end.get(), POLLIN)).error());
        errors.push_back((co_await coil::nop()).error());
        errors.push_back((co_await coil::with_timeout(coil::read(p.read_end.get(), {}), 1h)).error());
        co_return errors;
    };
    std::vector<std::error_code> errors = ex.run(coil::with_stop_token(source.get_token(), others()));
    REQUIRE(errors.size() == 4);
    for (const auto& ec : errors)
        CHECK(is_canceled(ec));
    CHECK(ex.stats().ops_started == before.ops_started);
}

TEST_CASE("runtime: a stop requested by the task itself, after ops that saw its token "
          "unstopped, keeps the next op from the kernel",
          "[runtime][cancel]")
{
    auto p = coil_test::make_pipe(); // empty and blocking: a submitted read would wait forever
    std::stop_source source;
    coil::executor ex(coil_test::executor_options());
    auto body = [&]() -> coil::task<coil::result<std::size_t>> {
        for (int i = 0; i < 3; ++i) { // the token is read, found unstopped, and remembered
            coil::result<void> done = co_await coil::nop();
            REQUIRE(done.ok());
        }
        source.request_stop(); // on the executor's thread, from inside the task
        // In this coroutine, not a child task: a child reads the token at its first op anyway.
        std::array<std::byte, 16> buffer{};
        co_return co_await coil::read(p.read_end.get(), buffer, coil::current_position);
    };
    const coil::executor_stats before = ex.stats();
    coil::result<std::size_t> r = ex.run(coil::with_stop_token(source.get_token(), body()));
    REQUIRE_FALSE(r.ok());
    CHECK(is_canceled(r.error()));
    CHECK(ex.stats().ops_started - before.ops_started == 3); // the read never started
    CHECK(ex.stats().cancels_submitted == before.cancels_submitted);
    CHECK(ex.in_flight() == 0);
}

TEST_CASE("runtime: a stop from another thread ends a loop of nops, which the kernel finishes "
          "before any cancel could reach them",
          "[runtime][cancel][threads]")
{
    std::stop_source source;
    coil::executor ex(coil_test::executor_options());
    std::atomic<std::uint64_t> completed{0};
    std::thread canceller([&] {
        while (completed.load(std::memory_order_relaxed) < 1000)
            std::this_thread::yield();
        source.request_stop();
    });
    auto body = [&]() -> coil::task<std::error_code> {
        for (;;) {
            coil::result<void> done = co_await coil::nop();
            if (!done)
                co_return done.error();
            completed.fetch_add(1, std::memory_order_relaxed);
        }
    };
    // A nop completes as it is submitted, so only an op started after the stop, which reads
    // the token again, can end the loop.
    std::error_code ended = ex.run(coil::with_stop_token(source.get_token(), body()));
    canceller.join();
    CHECK(is_canceled(ended));
    CHECK(completed.load() >= 1000);
    CHECK(ex.in_flight() == 0);
}

TEST_CASE("runtime: a stop requested by another task cancels a pipe read in flight",
          "[runtime][cancel]")
{
    auto p = coil_test::make_pipe();
    std::stop_source source;
    coil::executor ex(coil_test::executor_options());

    auto body = [&]() -> coil::task<coil::result<std::size_t>> {
        coil::join_handle<coil::result<std::size_t>> reader =
            ex.spawn(coil::with_stop_token(source.get_token(), nested_read(p.read_end.get())));
        // A nop's completion means a loop turn has handed the reader's read to the kernel.
        coil::result<void> turn = co_await coil::nop();
        REQUIRE(turn.ok());
        co_await coil::yield();
        REQUIRE(ex.in_flight() == 1); // the read, and nothing else
        REQUIRE_FALSE(reader.done());
        source.request_stop();
        co_return co_await reader;
    };
    coil::result<std::size_t> r = ex.run(body());
    REQUIRE_FALSE(r.ok());
    CHECK(is_canceled(r.error()));
    CHECK(ex.stats().cancels_submitted == 1);
    CHECK(ex.in_flight() == 0);

    // The pipe is intact: data written now is read in full by a fresh read.
    coil_test::write_fully(p.write_end.get(), bytes_of("after"));
    coil::result<std::size_t> again = ex.run(read_pipe(p.read_end.get()));
    REQUIRE(again.ok());
    CHECK(*again == 5);
}

TEST_CASE("runtime: a stop requested after a sleep cancels a sleeping task and a poll",
          "[runtime][cancel]")
{
    auto efd = coil_test::make_eventfd();
    std::stop_source source;
    auto sleeper = []() -> coil::task<std::error_code> { co_return (co_await coil::sleep_for(1h)).error(); };
    auto poller = [](int fd) -> coil::task<std::error_code> {
        co_return (co_await coil::poll(fd, POLLIN)).error();
    };
    auto stopper = [&]() -> coil::task<void> {
        coil::result<void> slept = co_await coil::sleep_for(1ms);
        REQUIRE(slept.ok());
        source.request_stop();
    };
    auto body = [&]() -> coil::task<std::pair<std::error_code, std::error_code>> {
        auto* ex = coil::executor::current();
        auto s = ex->spawn(coil::with_stop_token(source.get_token(), sleeper()));
        auto q = ex->spawn(coil::with_stop_token(source.get_token(), poller(efd.get())));
        co_await ex->spawn(stopper());
        co_return std::pair{co_await s, co_await q};
    };
    auto [slept, polled] = coil_test::run(body());
    CHECK(is_canceled(slept));
    CHECK(is_canceled(polled));
}

TEST_CASE("runtime: a stop requested after an op completed leaves its real result",
          "[runtime][cancel]")
{
    auto p = coil_test::make_pipe();
    coil::executor ex(coil_test::executor_options());

    SECTION("the stop comes after the co_await returned")
    {
        coil_test::write_fully(p.write_end.get(), bytes_of("data"));
        std::stop_source source;
        auto body = [&]() -> coil::task<coil::result<std::size_t>> {
            coil::result<std::size_t> r = co_await read_pipe(p.read_end.get());
            source.request_stop(); // the op is done: nothing to cancel
            co_await coil::yield();
            co_return r;
        };
        coil::result<std::size_t> r = ex.run(coil::with_stop_token(source.get_token(), body()));
        REQUIRE(r.ok());
        CHECK(*r == 4);
        CHECK(ex.stats().cancels_submitted == 0);
    }

    SECTION("the stop comes after the completion was reaped but before the reader resumed")
    {
        // The writer writes, then awaits a nop: the read's completion and the nop's are reaped
        // in the same turn or the read's first, so the stop may find the read's op already
        // done and its coroutine not yet resumed. In every order the read's bytes must arrive.
        std::stop_source source;
        auto writer = [&]() -> coil::task<void> {
            coil_test::write_fully(p.write_end.get(), bytes_of("raced"));
            coil::result<void> turn = co_await coil::nop();
            REQUIRE(turn.ok());
            source.request_stop();
        };
        auto body = [&]() -> coil::task<coil::result<std::size_t>> {
            auto reader = ex.spawn(coil::with_stop_token(source.get_token(), read_pipe(p.read_end.get())));
            coil::result<void> turn = co_await coil::nop(); // the read is in the kernel
            REQUIRE(turn.ok());
            co_await ex.spawn(writer());
            co_return co_await reader;
        };
        coil::result<std::size_t> r = ex.run(body());
        REQUIRE(r.ok());
        CHECK(*r == 5);
    }
}

TEST_CASE("runtime: a stop requested from another thread cancels a read the executor blocks on",
          "[runtime][cancel][threads]")
{
    auto p = coil_test::make_pipe();
    std::stop_source source;
    coil::executor ex(coil_test::executor_options());
    const pid_t executor_tid = coil_test::current_tid();
    std::atomic<bool> saw_blocked{false};

    std::thread canceller([&] {
        // Once the executor thread sits in io_uring_enter its read is in the kernel.
        saw_blocked = coil_test::wait_until_blocked_in_ring(executor_tid);
        source.request_stop();
    });
    coil::result<std::size_t> r = ex.run(coil::with_stop_token(source.get_token(), nested_read(p.read_end.get())));
    canceller.join();

    REQUIRE_FALSE(r.ok());
    CHECK(is_canceled(r.error()));
    CHECK(ex.in_flight() == 0);
    if (saw_blocked)
        CHECK(ex.stats().cancels_submitted == 1); // the read was in flight: an ASYNC_CANCEL went out
}

TEST_CASE("runtime: a stop requested inside a posted function cancels a blocked read",
          "[runtime][cancel][post][threads]")
{
    // The stop comes from the executor's own thread, but from posted work rather than a task:
    // it must still reach the kernel before the executor blocks again.
    auto p = coil_test::make_pipe();
    std::stop_source source;
    coil::executor ex(coil_test::executor_options());
    const pid_t executor_tid = coil_test::current_tid();
    bool stopped_on_executor_thread = false;
    std::thread poster([&] {
        (void)coil_test::wait_until_blocked_in_ring(executor_tid);
        ex.post([&] {
            stopped_on_executor_thread = ex.on_executor_thread();
            source.request_stop();
        });
    });
    coil::result<std::size_t> r =
        ex.run(coil::with_stop_token(source.get_token(), nested_read(p.read_end.get())));
    poster.join();
    REQUIRE_FALSE(r.ok());
    CHECK(is_canceled(r.error()));
    CHECK(stopped_on_executor_thread);
    CHECK(ex.in_flight() == 0);
}

TEST_CASE("runtime: a stop from another thread cancels every op of a when_all in flight",
          "[runtime][cancel][threads]")
{
    std::vector<coil_test::pipe_fds> pipes;
    for (int i = 0; i < 8; ++i)
        pipes.push_back(coil_test::make_pipe());
    std::stop_source source;
    coil::executor ex(coil_test::executor_options());
    const pid_t executor_tid = coil_test::current_tid();

    std::thread canceller([&] {
        (void)coil_test::wait_until_blocked_in_ring(executor_tid);
        source.request_stop();
    });
    auto body = [&]() -> coil::task<std::vector<coil::result<std::size_t>>> {
        std::vector<coil::task<coil::result<std::size_t>>> reads;
        for (auto& p : pipes)
            reads.push_back(read_pipe(p.read_end.get()));
        co_return co_await coil::when_all(std::move(reads));
    };
    auto results = ex.run(coil::with_stop_token(source.get_token(), body()));
    canceller.join();
    REQUIRE(results.size() == 8);
    for (const auto& r : results) {
        REQUIRE_FALSE(r.ok());
        CHECK(is_canceled(r.error()));
    }
    CHECK(ex.in_flight() == 0);
}


TEST_CASE("runtime: a stop request cancels the ops of its own scope and no others",
          "[runtime][cancel][scope]")
{
    constexpr std::size_t per_scope = 50;
    std::vector<coil_test::pipe_fds> pipes;
    for (std::size_t i = 0; i < 2 * per_scope; ++i)
        pipes.push_back(coil_test::make_pipe());
    std::stop_source a;
    std::stop_source b;
    coil::executor ex(coil_test::executor_options());
    auto body = [&]() -> coil::task<std::pair<std::size_t, std::size_t>> {
        std::vector<coil::join_handle<coil::result<std::size_t>>> in_a;
        std::vector<coil::join_handle<coil::result<std::size_t>>> in_b;
        for (std::size_t i = 0; i < per_scope; ++i) {
            in_a.push_back(ex.spawn(coil::with_stop_token(a.get_token(), read_pipe(pipes[i].read_end.get()))));
            in_b.push_back(ex.spawn(coil::with_stop_token(
                b.get_token(), read_pipe(pipes[per_scope + i].read_end.get()))));
        }
        co_await coil::yield();
        co_await coil::yield();
        REQUIRE(ex.in_flight() == 2 * per_scope);
        const auto cancels_before = ex.stats().cancels_submitted;
        a.request_stop();
        // Exactly scope a's ops were cancelled: one ASYNC_CANCEL each, none for scope b.
        CHECK(ex.stats().cancels_submitted - cancels_before == per_scope);
        std::size_t canceled = 0;
        for (auto& h : in_a) {
            auto r = co_await h;
            canceled += (!r && is_canceled(r.error())) ? 1 : 0;
        }
        CHECK(ex.in_flight() == per_scope); // scope b's reads are still pending
        for (std::size_t i = 0; i < per_scope; ++i)
            coil_test::write_fully(pipes[per_scope + i].write_end.get(), bytes_of("b"));
        std::size_t read = 0;
        for (auto& h : in_b) {
            auto r = co_await h;
            read += (r && *r == 1) ? 1 : 0;
        }
        co_return std::pair{canceled, read};
    };
    auto [canceled, read] = ex.run(body());
    CHECK(canceled == per_scope);
    CHECK(read == per_scope);
}

TEST_CASE("runtime: one stop request cancels 50,000 pending reads of its scope, and leaves "
          "50,000 of another scope pending",
          "[runtime][cancel][scope][scale]")
{
    // All reads wait on one eventfd that is never written: the kernel keeps them armed.
    constexpr std::size_t per_scope = 50'000;
    coil_test::unique_fd efd(::eventfd(0, EFD_CLOEXEC));
    REQUIRE(efd.get() >= 0);
    std::stop_source a;
    std::stop_source b;
    coil::executor ex(coil_test::executor_options());
    auto read_counter = [](int fd) -> coil::task<coil::result<std::size_t>> {
        std::uint64_t v = 0;
        co_return co_await coil::read(fd, std::as_writable_bytes(std::span(&v, 1)));
    };
    auto body = [&]() -> coil::task<std::pair<std::size_t, std::size_t>> {
        std::vector<coil::join_handle<coil::result<std::size_t>>> in_a;
        std::vector<coil::join_handle<coil::result<std::size_t>>> in_b;
        in_a.reserve(per_scope);
        in_b.reserve(per_scope);
        for (std::size_t i = 0; i < per_scope; ++i) {
            in_a.push_back(ex.spawn(coil::with_stop_token(a.get_token(), read_counter(efd.get()))));
            in_b.push_back(ex.spawn(coil::with_stop_token(b.get_token(), read_counter(efd.get()))));
        }
        co_await coil::yield();
        co_await coil::yield();
        REQUIRE(ex.in_flight() == 2 * per_scope);
        const auto cancels_before = ex.stats().cancels_submitted;
        a.request_stop();
        CHECK(ex.stats().cancels_submitted - cancels_before == per_scope);
        std::size_t canceled_a = 0;
        for (auto& h : in_a) {
            auto r = co_await h;
            canceled_a += (!r && is_canceled(r.error())) ? 1 : 0;
        }
        CHECK(ex.in_flight() == per_scope);
        b.request_stop();
        std::size_t canceled_b = 0;
        for (auto& h : in_b) {
            auto r = co_await h;
            canceled_b += (!r && is_canceled(r.error())) ? 1 : 0;
        }
        co_return std::pair{canceled_a, canceled_b};
    };
    const auto started = std::chrono::steady_clock::now();
    auto [canceled_a, canceled_b] = ex.run(body());
    INFO("took " << std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count()
                 << " s"); // reported, not asserted: no timing assertions in tests
    CHECK(canceled_a == per_scope);
    CHECK(canceled_b == per_scope);
    CHECK(ex.in_flight() == 0);
}

TEST_CASE("runtime: co_await get_stop_token() reads the token with_stop_token gave the task",
          "[runtime][cancel]")
{
    std::stop_source source;
    auto body = [](std::stop_source& s) -> coil::task<bool> {
        const std::stop_token token = co_await coil::get_stop_token();
        const bool before = token.stop_possible() && !token.stop_requested();
        s.request_stop();
        co_return before && token.stop_requested();
    };
    CHECK(coil_test::run(coil::with_stop_token(source.get_token(), body(source))));
}

TEST_CASE("runtime: a close that a stop request ends with operation_canceled leaves the "
          "descriptor open, and a close that succeeds closes it",
          "[runtime][cancel]")
{
    const auto is_open = [](int fd) { return ::fcntl(fd, F_GETFD) != -1; };
    auto close_fd = [](int fd) -> coil::task<coil::result<void>> { co_return co_await coil::close(fd); };

    coil_test::unique_fd fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    REQUIRE(fd.get() >= 0);
    std::stop_source stopped;
    stopped.request_stop();
    const coil::result<void> refused =
        coil_test::run(coil::with_stop_token(stopped.get_token(), close_fd(fd.get())));
    REQUIRE_FALSE(refused.ok());
    CHECK(refused.error() == std::errc::operation_canceled);
    CHECK(is_open(fd.get())); // still open, still ours

    // Racing a stop request or a zero deadline: whatever the outcome, the descriptor is open
    // exactly when the close did not succeed.
    for (int round = 0; round < 50; ++round) {
        const int raw = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
        REQUIRE(raw >= 0);
        auto close_in_time = [](int fd) -> coil::task<coil::result<void>> {
            co_return co_await coil::with_timeout(coil::close(fd), std::chrono::nanoseconds(0));
        };
        const coil::result<void> r = coil_test::run(close_in_time(raw));
        CHECK(r.ok() != is_open(raw));
        if (!r.ok()) {
            CHECK(r.error() == std::errc::timed_out);
            ::close(raw);
        }
    }
}

TEST_CASE("runtime: a stop request sends one cancel per single-shot op, even when the kernel "
          "cannot find the ops it names (buffered writes that io-wq runs)",
          "[runtime][cancel]")
{
    coil_test::temp_dir dir;
    auto fd = dir.create_file("log.dat");
    constexpr unsigned writes = 400;
    const std::vector<std::byte> block(64 * 1024, std::byte{'w'});
    coil::executor ex(coil_test::executor_options());
    std::stop_source stop;
    unsigned ok = 0;
    unsigned cancelled = 0;
    auto writer = [&](unsigned i) -> coil::task<void> {
        // 64 places written over and over: the writes queue up behind one another in io-wq.
        auto n = co_await coil::write(fd.get(), block, std::uint64_t{i % 64} * block.size());
        if (n)
            ++ok;
        else if (n.error() == std::errc::operation_canceled)
            ++cancelled;
    };
    auto body = [&]() -> coil::task<void> {
        std::vector<coil::task<void>> all;
        for (unsigned i = 0; i < writes; ++i)
            all.push_back(writer(i));
        auto stopper = [&]() -> coil::task<void> {
            (void)co_await coil::sleep_for(std::chrono::microseconds(0)); // writes in flight
            stop.request_stop();
        };
        co_await coil::when_all(coil::with_stop_token(stop.get_token(), coil::when_all(std::move(all))),
                                stopper());
    };
    ex.run(body());
    CHECK(ok + cancelled == writes);
    CHECK(ex.stats().cancels_submitted <= writes);
    CHECK(ex.stats().cancels_retried == 0);
    CHECK(ex.in_flight() == 0);
}

TEST_CASE("runtime: cancel_fd cancels every op pending on the descriptor and yields how many "
          "it found, 0 when none; the cancelled ops end with operation_canceled",
          "[runtime][cancel]")
{
    const bool single_issuer = GENERATE(false, true); // DEFER_TASKRUN posts them later
    CAPTURE(single_issuer);
    coil::executor_options options;
    options.ring.single_issuer = single_issuer;
    coil::executor ex(coil_test::executor_options(options));
    if (!ex.ring().supports(coil::io::opcode::async_cancel))
        SKIP("no IORING_OP_ASYNC_CANCEL");
    auto p = coil_test::make_pipe();
    auto body = [&]() -> coil::task<std::vector<std::size_t>> {
        std::vector<std::error_code> errors;
        auto reader = [&]() -> coil::task<void> {
            std::array<std::byte, 16> b;
            // The deadline only keeps a failing test from hanging.
            auto n = co_await coil::read(p.read_end.get(), b).with_timeout(10s);
            errors.push_back(n ? std::error_code() : n.error());
        };
        auto r1 = ex.spawn(reader());
        auto r2 = ex.spawn(reader());
        auto r3 = ex.spawn(reader());
        while (ex.in_flight() < 3) // the readers run and their reads reach the kernel
            co_await coil::yield();
        std::vector<std::size_t> found;
        auto first = co_await coil::cancel_fd(p.read_end.get());
        REQUIRE(first.ok());
        found.push_back(*first);
        // Their completions come on their own (on this kernel, after the cancel's).
        co_await r1;
        co_await r2;
        co_await r3;
        REQUIRE(errors.size() == 3);
        for (const auto& e : errors)
            CHECK(e == std::errc::operation_canceled);
        auto second = co_await coil::cancel_fd(p.read_end.get());
        REQUIRE(second.ok());
        found.push_back(*second);
        co_return found;
    };
    const auto found = ex.run(body());
    CHECK(found == std::vector<std::size_t>{3, 0});
    CHECK(ex.in_flight() == 0);
    // The pipe is intact: a fresh read gets what is written now.
    coil_test::write_fully(p.write_end.get(), bytes_of("after"));
    coil::result<std::size_t> again = ex.run(read_pipe(p.read_end.get()));
    REQUIRE(again.ok());
    CHECK(*again == 5);
}

TEST_CASE("runtime: a splice or tee blocked in a kernel worker on an empty pipe ends with "
          "timed_out at its deadline, operation_canceled at a stop request and as a when_any "
          "loser, interrupted when cancelled by its output descriptor; the pipes stay usable",
          "[runtime][cancel][splice]")
{
    // The kernel runs splice and tee in a worker thread, which the cancel interrupts with a
    // signal: the op completes with the kernel's internal ERESTARTSYS (-512), not -ECANCELED
    // (it yielded "Unknown error 512" before the runtime mapped it).
    const bool tee = GENERATE(false, true);
    CAPTURE(tee);
    auto in = coil_test::make_pipe();
    auto out = coil_test::make_pipe();
    coil::executor ex(coil_test::executor_options());
    // One splice or tee of up to 4 KiB from `in` to `out`, with a deadline when one is given.
    auto moving = [&](std::chrono::milliseconds deadline =
                          {}) -> coil::task<coil::result<std::size_t>> {
        if (tee) {
            auto op = coil::tee(in.read_end.get(), out.write_end.get(), 4096);
            if (deadline.count() > 0)
                co_return co_await std::move(op).with_timeout(deadline);
            co_return co_await op;
        }
        auto op = coil::splice(in.read_end.get(), coil::current_position, out.write_end.get(),
                               coil::current_position, 4096);
        if (deadline.count() > 0)
            co_return co_await std::move(op).with_timeout(deadline);
        co_return co_await op;
    };
    struct outcomes {
        std::error_code deadline, stop, loser, by_descriptor;
        std::size_t after = 0;
    };
    auto body = [&]() -> coil::task<outcomes> {
        outcomes o;
        auto timed = co_await moving(10ms);
        o.deadline = timed.ok() ? std::error_code() : timed.error();

        std::stop_source stop;
        auto stopped = ex.spawn(coil::with_stop_token(stop.get_token(), moving()));
        (void)co_await coil::sleep_for(10ms); // in the worker, blocked
        stop.request_stop();
        auto s = co_await stopped;
        o.stop = s.ok() ? std::error_code() : s.error();

        auto sleeping = []() -> coil::task<void> { (void)co_await coil::sleep_for(10ms); };
        auto race = co_await coil::when_any(moving(), sleeping());
        REQUIRE(race.index() == 1);
        const auto& lost = std::get<0>(race.losers);
        REQUIRE(lost.has_value());
        o.loser = lost->ok() ? std::error_code() : lost->error();

        // Cancelled by its output descriptor (what file::close() and stream_socket::close()
        // do): the kernel ends it, and no stop or deadline of its own says why.
        auto pending = ex.spawn(moving(std::chrono::milliseconds(60'000)));
        (void)co_await coil::sleep_for(10ms);
        auto found = co_await coil::cancel_fd(out.write_end.get());
        REQUIRE(found.ok());
        auto cancelled = co_await pending;
        o.by_descriptor = cancelled.ok() ? std::error_code() : cancelled.error();

        // Nothing was lost from either pipe: bytes written now move through.
        coil_test::write_fully(in.write_end.get(), bytes_of("after"));
        auto moved = co_await moving();
        REQUIRE(moved.ok());
        o.after = *moved;
        co_return o;
    };
    const outcomes o = ex.run(body());
    CHECK(o.deadline == std::errc::timed_out);
    CHECK(o.stop == std::errc::operation_canceled);
    CHECK(o.loser == std::errc::operation_canceled);
    CHECK(o.by_descriptor == std::errc::interrupted); // not the kernel's -512
    CHECK(o.after == 5);
    char got[8] = {};
    CHECK(::read(out.read_end.get(), got, sizeof got) == 5);
    CHECK(ex.in_flight() == 0);
}

TEST_CASE("io: error_from_result names the kernel's internal restart codes EINTR",
          "[runtime][cancel][errors]")
{
    for (int code = 512; code <= 516; ++code) {
        CAPTURE(code);
        CHECK(coil::io::interrupted_result(-code));
        CHECK(coil::io::error_from_result(-code) == std::errc::interrupted);
    }
    CHECK(coil::io::interrupted_result(-EINTR));
    CHECK_FALSE(coil::io::interrupted_result(-ECANCELED));
    CHECK_FALSE(coil::io::interrupted_result(-517));
    CHECK(coil::io::error_from_result(-ECANCELED) == std::errc::operation_canceled);
}
