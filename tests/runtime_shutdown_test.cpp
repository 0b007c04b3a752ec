// SPDX-License-Identifier: MIT
// Shutdown and abandonment: stopping or destroying an executor with ops in flight, and destroying
// a task whose op is in flight, free every frame exactly once and never after the kernel is done.

#include "runtime_test_support.hpp"
#include "test_executor.hpp"

#include <coil/coil.hpp>

#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>

#include <poll.h>
#include <sys/ioctl.h>

#include <array>
#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <system_error>
#include <thread>
#include <vector>

using coil_test::bytes_of;
using coil_test::frame_census;
using coil_test::frame_guard;

namespace {

/// A reader whose frame holds two guards: `frame` (a parameter, alive as long as the frame,
/// even if the coroutine never starts) and `body` (a local, alive once it has started), and a
/// buffer the kernel writes into.
coil::task<void> guarded_read(frame_guard frame, frame_census& bodies, std::size_t index, int fd,
                              std::size_t& completed)
{
    frame_guard body(bodies, index);
    std::array<std::byte, 4096> buffer{};
    coil::result<std::size_t> r = co_await coil::read(fd, buffer, coil::current_position);
    (void)r;
    ++completed; // only reached if the read ended normally (never here: nothing is written)
    (void)frame;
}

/// Bytes waiting in a pipe (FIONREAD).
int bytes_in(int fd)
{
    int n = -1;
    REQUIRE(::ioctl(fd, FIONREAD, &n) == 0);
    return n;
}

bool is_canceled_error(const std::system_error& e)
{
    return e.code() == std::make_error_code(std::errc::operation_canceled);
}

} // namespace

TEST_CASE("runtime: stopping an executor with 1,000 reads in flight destroys every frame once",
          "[runtime][shutdown]")
{
    constexpr std::size_t count = 1000;
    REQUIRE(coil_test::ensure_fd_limit(2 * count + 256));
    std::vector<coil_test::pipe_fds> pipes;
    pipes.reserve(count);
    for (std::size_t i = 0; i < count; ++i)
        pipes.push_back(coil_test::make_pipe());

    frame_census frames(count + 1);
    frame_census bodies(count);
    std::size_t completed = 0;
    std::size_t in_flight_before_stop = 0;
    {
        coil::executor ex(coil_test::executor_options(coil::executor_options{.entries = 1024}));
        auto root = [&](frame_guard guard) -> coil::task<void> {
            // Keep half the join handles in this frame and detach the other half, so both
            // ownership paths are taken when the frames go.
            std::vector<coil::join_handle<void>> kept;
            for (std::size_t i = 0; i < count; ++i) {
                auto h = ex.spawn(guarded_read(frame_guard(frames, i), bodies, i,
                                               pipes[i].read_end.get(), completed));
                if (i % 2 == 0)
                    kept.push_back(std::move(h));
            }
            for (int i = 0; i < 3; ++i)
                co_await coil::yield();
            in_flight_before_stop = ex.in_flight();
            ex.stop();
            co_await coil::yield();
            (void)guard;
            FAIL("the root ran on after stop()");
        };
        try {
            ex.run(root(frame_guard(frames, count)));
            FAIL("run() returned normally after stop()");
        } catch (const std::system_error& e) {
            CHECK(is_canceled_error(e));
        }
        CHECK(in_flight_before_stop == count);
        CHECK(ex.in_flight() == 0);
        CHECK(ex.stats().cancels_submitted >= count);
        // run() has returned: every frame, including the root's, is gone.
        CHECK(frames.destroyed == count + 1);
        CHECK(frames.each_destroyed_once());
        CHECK(bodies.constructed == count);
        CHECK(bodies.destroyed == count);
        CHECK(bodies.each_destroyed_once());
    } // ~executor: nothing left to destroy, and nothing destroyed twice
    CHECK(frames.each_destroyed_once());
    CHECK(bodies.each_destroyed_once());
    CHECK(completed == 0);

    // No read is left in the kernel: a byte written now stays in its pipe.
    for (std::size_t i = 0; i < count; i += 97) {
        coil_test::write_fully(pipes[i].write_end.get(), bytes_of("z"));
        CHECK(bytes_in(pipes[i].read_end.get()) == 1);
    }
}

TEST_CASE("runtime: a stop() from another thread ends run() with every blocked frame destroyed",
          "[runtime][shutdown][threads]")
{
    constexpr std::size_t count = 1000;
    REQUIRE(coil_test::ensure_fd_limit(2 * count + 256));
    // Fewer pipes than readers: ten readers share each pipe.
    std::vector<coil_test::pipe_fds> pipes;
    for (std::size_t i = 0; i < count / 10; ++i)
        pipes.push_back(coil_test::make_pipe());

    auto root_pipe = coil_test::make_pipe();
    frame_census frames(count);
    frame_census bodies(count);
    std::size_t completed = 0;
    coil::executor ex(coil_test::executor_options(coil::executor_options{.entries = 1024}));
    const pid_t executor_tid = coil_test::current_tid();
    std::thread stopper([&] {
        (void)coil_test::wait_until_blocked_in_ring(executor_tid);
        ex.stop();
    });
    auto root = [&]() -> coil::task<void> {
        for (std::size_t i = 0; i < count; ++i)
            ex.spawn(guarded_read(frame_guard(frames, i), bodies, i, pipes[i % pipes.size()].read_end.get(),
                                  completed))
                .detach();
        // The root blocks too, so stop() ends run() before the root has finished.
        std::array<std::byte, 8> buffer{};
        coil::result<std::size_t> r = co_await coil::read(root_pipe.read_end.get(), buffer);
        (void)r;
        FAIL("the root's read completed although nothing was written");
    };
    try {
        ex.run(root());
        FAIL("run() returned normally after stop()");
    } catch (const std::system_error& e) {
        CHECK(is_canceled_error(e));
    }
    stopper.join();
    CHECK(ex.in_flight() == 0);
    CHECK(frames.destroyed == count);
    CHECK(frames.each_destroyed_once());
    CHECK(bodies.each_destroyed_once());
    CHECK(completed == 0);
}

TEST_CASE("runtime: destroying an executor destroys spawned tasks that never ran", "[runtime][shutdown]")
{
    auto p = coil_test::make_pipe();
    constexpr std::size_t count = 64;
    frame_census frames(count);
    frame_census bodies(count);
    std::size_t completed = 0;
    std::vector<coil::join_handle<void>> outliving; // destroyed after the executor
    {
        coil::executor ex(coil_test::executor_options());
        for (std::size_t i = 0; i < count; ++i) {
            auto h = ex.spawn(guarded_read(frame_guard(frames, i), bodies, i, p.read_end.get(), completed));
            if (i % 2 == 0)
                outliving.push_back(std::move(h));
        }
        CHECK(frames.constructed == count);
        CHECK(frames.destroyed == 0);
    }
    // Every frame went with the executor, the half whose join handles are still held too: a
    // handle does not keep a stopped task alive; it reports that the task was abandoned.
    CHECK(frames.destroyed == count);
    for (auto& h : outliving) {
        CHECK_FALSE(h.done());
        CHECK(h.abandoned());
        CHECK_THROWS_AS(h.get(), std::system_error);
    }
    outliving.clear();
    CHECK(frames.destroyed == count);
    CHECK(frames.each_destroyed_once());
    CHECK(bodies.constructed == 0); // none ever started
    CHECK(completed == 0);
}

TEST_CASE("runtime: stopping an executor while a when_any waits destroys its children safely",
          "[runtime][shutdown][when_any]")
{
    std::vector<coil_test::pipe_fds> pipes;
    for (int i = 0; i < 3; ++i)
        pipes.push_back(coil_test::make_pipe());
    frame_census frames(3);
    frame_census bodies(3);
    std::size_t completed = 0;
    coil::executor ex(coil_test::executor_options());
    auto root = [&]() -> coil::task<void> {
        auto stopper = [](coil::executor& e) -> coil::task<void> {
            coil::result<void> r = co_await coil::nop();
            (void)r;
            e.stop();
        };
        ex.spawn(stopper(ex)).detach();
        (void)co_await coil::when_any(
            guarded_read(frame_guard(frames, 0), bodies, 0, pipes[0].read_end.get(), completed),
            guarded_read(frame_guard(frames, 1), bodies, 1, pipes[1].read_end.get(), completed),
            guarded_read(frame_guard(frames, 2), bodies, 2, pipes[2].read_end.get(), completed));
        FAIL("when_any returned although no read could complete");
    };
    try {
        (void)ex.run(root());
        FAIL("run() returned although stop() was called");
    } catch (const std::system_error& e) {
        CHECK(e.code() == std::errc::operation_canceled); // the code stop() promises
    }
    CHECK(frames.each_destroyed_once());
    CHECK(bodies.each_destroyed_once());
    CHECK(completed == 0);
    CHECK(ex.in_flight() == 0);
}

TEST_CASE("runtime: destroying a task whose read is in flight cancels and drains the read first",
          "[runtime][shutdown][abandon]")
{
    auto p = coil_test::make_pipe();
    frame_census frames(1);
    frame_census bodies(1);
    std::size_t completed = 0;
    coil::executor ex(coil_test::executor_options());
    auto root = [&]() -> coil::task<std::string> {
        {
            // Start the reader by hand, as a driver would, and drop it while its read (into a
            // buffer in its own frame) is in the kernel.
            coil::task<void> reader =
                guarded_read(frame_guard(frames, 0), bodies, 0, p.read_end.get(), completed);
            reader.handle().resume();
            REQUIRE_FALSE(reader.done());
            REQUIRE(ex.in_flight() == 1);
            coil::result<void> turn = co_await coil::nop(); // the read reaches the kernel
            REQUIRE(turn.ok());
            REQUIRE(ex.in_flight() == 1);
        } // ~task: ~operation abandons the read: cancel, then wait for its completion
        REQUIRE(frames.destroyed == 1);
        REQUIRE(bodies.destroyed == 1);
        REQUIRE(ex.in_flight() == 0);

        // The abandoned read consumed nothing: the next read gets all the data.
        coil_test::write_fully(p.write_end.get(), bytes_of("intact"));
        std::array<char, 16> buffer{};
        coil::result<std::size_t> n =
            co_await coil::read(p.read_end.get(), std::as_writable_bytes(std::span(buffer)));
        REQUIRE(n.ok());
        co_return std::string(buffer.data(), *n);
    };
    CHECK(ex.run(root()) == "intact");
    CHECK(completed == 0);
    CHECK(ex.stats().cancels_submitted == 1);
    CHECK(frames.each_destroyed_once());
}


TEST_CASE("runtime: a task whose join handle is held does not outlive stop() into the next run",
          "[runtime][shutdown]")
{
    // Found by a user trial: shutdown dropped only the executor's reference, so a held handle
    // kept the frame, and its armed timer, alive; the next run() fired the timer, resumed the
    // "stopped" task, and its end broke that run and left the handle dangling.
    coil::executor ex(coil_test::executor_options());
    auto p = coil_test::make_pipe();
    std::optional<coil::join_handle<void>> sleeping;
    std::optional<coil::join_handle<void>> reading;
    bool sleeper_resumed = false;
    std::size_t completed = 0;
    frame_census frames(1);
    frame_census bodies(1);
    auto sleeper = [&]() -> coil::task<void> {
        (void)co_await coil::sleep_for(std::chrono::milliseconds(20));
        sleeper_resumed = true;
    };
    auto first = [&]() -> coil::task<void> {
        sleeping.emplace(ex.spawn(sleeper()));
        reading.emplace(ex.spawn(guarded_read(frame_guard(frames, 0), bodies, 0,
                                              p.read_end.get(), completed)));
        co_await coil::yield(); // both start: a timer armed, a read in flight
        ex.stop();
        co_await coil::yield();
    };
    try {
        ex.run(first());
        FAIL("run() returned normally after stop()");
    } catch (const std::system_error& e) {
        CHECK(is_canceled_error(e));
    }
    CHECK(ex.timers_armed() == 0);
    CHECK(frames.destroyed == 1);
    REQUIRE(sleeping.has_value());
    REQUIRE(reading.has_value());
    CHECK(sleeping->abandoned());
    CHECK(reading->abandoned());
    CHECK_FALSE(sleeping->done());

    // A later run is untouched by the stopped tasks, and awaiting their handles says why.
    bool second_finished = false;
    bool join_threw = false;
    auto second = [&]() -> coil::task<void> {
        (void)co_await coil::sleep_for(std::chrono::milliseconds(40));
        try {
            co_await std::move(*sleeping);
        } catch (const std::system_error& e) {
            join_threw = is_canceled_error(e);
        }
        second_finished = true;
    };
    ex.run(second());
    CHECK(second_finished);
    CHECK(join_threw);
    CHECK_FALSE(sleeper_resumed);
    CHECK(completed == 0);
    sleeping.reset();
    reading.reset();
    CHECK(frames.each_destroyed_once());
}

TEST_CASE("runtime: a coroutine awaiting a join handle is destroyed safely with the joined task",
          "[runtime][shutdown]")
{
    // Both frames go at shutdown, in either order: the joiner's awaiter must not reach back
    // into a joined frame already destroyed, nor the joined task into a destroyed joiner.
    const bool joiner_first = GENERATE(false, true);
    INFO("joiner spawned first = " << joiner_first);
    auto p = coil_test::make_pipe();
    std::size_t completed = 0;
    frame_census frames(1);
    frame_census bodies(1);
    {
        coil::executor ex(coil_test::executor_options());
        std::optional<coil::join_handle<void>> joined;
        auto joiner = [&]() -> coil::task<void> {
            co_await coil::yield();
            REQUIRE(joined.has_value());
            co_await std::move(*joined);
            ++completed;
        };
        std::optional<coil::join_handle<void>> joining;
        if (joiner_first)
            joining.emplace(ex.spawn(joiner()));
        joined.emplace(ex.spawn(guarded_read(frame_guard(frames, 0), bodies, 0,
                                             p.read_end.get(), completed)));
        if (!joiner_first)
            joining.emplace(ex.spawn(joiner()));
        auto stopper = [&]() -> coil::task<void> {
            co_await coil::yield();
            co_await coil::yield();
            ex.stop();
            co_await coil::yield();
        };
        CHECK_THROWS_AS(ex.run(stopper()), std::system_error);
        CHECK(joining->abandoned());
    }
    CHECK(frames.destroyed == 1);
    CHECK(completed == 0);
}

TEST_CASE("runtime: a task moved while it is awaited is destroyed safely at stop()",
          "[runtime][shutdown]")
{
    // Found by a second user trial: the chain teardown kept the address of the task object
    // that owns an awaited frame, and a vector that grew moved that object.
    auto p = coil_test::make_pipe();
    std::size_t completed = 0;
    frame_census frames(1);
    frame_census bodies(1);
    std::vector<coil::task<void>> pending;
    pending.reserve(1);
    pending.push_back(guarded_read(frame_guard(frames, 0), bodies, 0, p.read_end.get(), completed));
    coil::executor ex(coil_test::executor_options());
    auto body = [&]() -> coil::task<void> {
        auto awaiting = [&]() -> coil::task<void> { co_await std::move(pending[0]); };
        auto h = ex.spawn(awaiting());
        co_await coil::yield();
        co_await coil::yield();
        pending.push_back(coil::task<void>{}); // grows: pending[0] moves while awaited
        ex.stop();
        co_await coil::yield();
    };
    CHECK_THROWS_AS(ex.run(body()), std::system_error);
    CHECK(frames.destroyed == 1);
    pending.clear();
    CHECK(frames.each_destroyed_once());
    CHECK(completed == 0);
}

TEST_CASE("runtime: a join handle dropped while another coroutine awaits it leaves the result "
          "to that coroutine",
          "[runtime][shutdown]")
{
    // Found by a second user trial: the awaiter kept an uncounted pointer to the frame, which
    // dropping the handle freed.
    coil::executor ex(coil_test::executor_options());
    auto slow = []() -> coil::task<int> {
        (void)co_await coil::sleep_for(std::chrono::milliseconds(5));
        co_return 42;
    };
    auto failing = []() -> coil::task<int> {
        (void)co_await coil::sleep_for(std::chrono::milliseconds(5));
        throw std::runtime_error("boom");
    };
    std::optional<coil::join_handle<int>> h;
    std::optional<coil::join_handle<int>> f;
    auto body = [&]() -> coil::task<std::pair<int, std::string>> {
        h.emplace(ex.spawn(slow()));
        f.emplace(ex.spawn(failing()));
        auto join_value = [&]() -> coil::task<int> { co_return co_await *h; };
        auto join_error = [&]() -> coil::task<std::string> {
            try {
                (void)co_await *f;
            } catch (const std::runtime_error& e) {
                co_return e.what();
            }
            co_return "no error";
        };
        auto value = ex.spawn(join_value());
        auto error = ex.spawn(join_error());
        co_await coil::yield(); // both joiners now wait on the handles
        h.reset();
        f.reset();
        const int v = co_await std::move(value);
        std::string e = co_await std::move(error);
        co_return std::pair{v, std::move(e)};
    };
    const auto got = ex.run(body());
    CHECK(got.first == 42);
    CHECK(got.second == "boom");
    CHECK(ex.stats().unhandled_exceptions == 0); // the exception was taken by the joiner
}

TEST_CASE("runtime: handles of finished tasks outlive their executor, a failed one included",
          "[runtime][shutdown]")
{
    // Found by a second user trial: dropping the handle of a task that failed unobserved
    // reported the exception through the executor, already destroyed (use-after-free).
    auto ok = []() -> coil::task<int> { co_return 7; };
    auto fails = []() -> coil::task<int> { throw std::runtime_error("late boom"); co_return 0; };
    std::optional<coil::join_handle<int>> good;
    std::optional<coil::join_handle<int>> bad;
    std::optional<coil::join_handle<int>> bad_taken;
    {
        coil::executor ex(coil_test::executor_options());
        auto body = [&]() -> coil::task<void> {
            good.emplace(ex.spawn(ok()));
            bad.emplace(ex.spawn(fails()));
            bad_taken.emplace(ex.spawn(fails()));
            co_await coil::yield();
            co_await coil::yield();
        };
        ex.run(body());
        REQUIRE(good->done());
        REQUIRE(bad->done());
        CHECK(ex.stats().unhandled_exceptions == 0); // held, not yet dropped
    }
    CHECK(good->get() == 7);
    CHECK_THROWS_AS(bad_taken->get(), std::runtime_error);
    bad_taken.reset();
    good.reset();
    bad.reset(); // reported on stderr alone: the executor that would count it is gone
}
