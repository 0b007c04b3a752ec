// SPDX-License-Identifier: MIT
// Regression tests for lifetime defects: a frame destroyed while its resumption is queued, a
// joiner destroyed before the task it joins ends, descriptors that arrive for nobody, a detached
// task's exception, and a forked child that inherits a running executor.

#include "runtime_test_support.hpp"
#include "test_executor.hpp"

#include <coil/coil.hpp>
#include <coil/net/buffer_pool.hpp>
#include <coil/net/socket.hpp>

#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <cstdio>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

using coil_test::bytes_of;
using coil_test::frame_census;
using coil_test::frame_guard;

namespace {

std::size_t open_fd_count()
{
    std::size_t n = 0;
    DIR* dir = ::opendir("/proc/self/fd");
    REQUIRE(dir != nullptr);
    while (const dirent* e = ::readdir(dir))
        n += e->d_name[0] != '.';
    ::closedir(dir);
    return n;
}

coil::task<void> blocked_read(frame_guard guard, int fd, bool& resumed)
{
    std::array<std::byte, 64> buffer{};
    auto r = co_await coil::read(fd, buffer);
    (void)r;
    resumed = true;
    (void)guard;
}

coil::task<void> one_nop(frame_guard guard, bool& resumed)
{
    auto r = co_await coil::nop();
    (void)r;
    resumed = true;
    (void)guard;
}

} // namespace

TEST_CASE("runtime: a frame destroyed while its resumption is queued is never resumed",
          "[runtime][lifetime]")
{
    // C reads an empty pipe; B awaits a nop. C's read reaches the kernel; destroying C drains
    // the ring (abandon), during which B's nop completes and B is queued to resume. Then B is
    // destroyed too. The next loop turn must not resume B's freed frame.
    auto p = coil_test::make_pipe();
    frame_census frames(2);
    bool c_resumed = false;
    bool b_resumed = false;
    coil::executor ex(coil_test::executor_options());
    auto root = [&]() -> coil::task<int> {
        coil::task<void> c = blocked_read(frame_guard(frames, 0), p.read_end.get(), c_resumed);
        c.handle().resume(); // C's read is queued
        co_await coil::yield(); // ... and submitted: in flight
        REQUIRE(ex.in_flight() == 1);
        coil::task<void> b = one_nop(frame_guard(frames, 1), b_resumed);
        b.handle().resume(); // B's nop is queued, not yet submitted
        c = coil::task<void>(); // abandon: cancel C's read and drain; B's nop completes meanwhile
        REQUIRE(frames.destroyed == 1);
        REQUIRE_FALSE(b.done());
        b = coil::task<void>(); // B's resumption is queued: destroying B must revoke it
        REQUIRE(frames.destroyed == 2);
        auto n = co_await coil::nop();
        REQUIRE(n.ok());
        co_return 1;
    };
    CHECK(ex.run(root()) == 1);
    CHECK_FALSE(c_resumed);
    CHECK_FALSE(b_resumed);
    CHECK(frames.each_destroyed_once());
    CHECK(ex.in_flight() == 0);
}

TEST_CASE("runtime: a coroutine awaiting a join_handle that is destroyed is not resumed when "
          "the task ends",
          "[runtime][lifetime]")
{
    frame_census frames(1);
    bool joiner_resumed = false;
    coil::executor ex(coil_test::executor_options());
    auto worker = []() -> coil::task<int> {
        for (int i = 0; i < 5; ++i)
            co_await coil::yield();
        co_return 7;
    };
    auto joiner = [](frame_guard guard, coil::join_handle<int>& h, bool& resumed) -> coil::task<void> {
        int v = co_await h;
        (void)v;
        resumed = true;
        (void)guard;
    };
    auto root = [&]() -> coil::task<int> {
        coil::join_handle<int> h = ex.spawn(worker());
        {
            coil::task<void> j = joiner(frame_guard(frames, 0), h, joiner_resumed);
            j.handle().resume(); // suspends in co_await h
        } // destroyed while it awaits the handle
        REQUIRE(frames.destroyed == 1);
        for (int i = 0; i < 10; ++i) // the worker ends meanwhile
            co_await coil::yield();
        REQUIRE(h.done());
        co_return h.get();
    };
    CHECK(ex.run(root()) == 7);
    CHECK_FALSE(joiner_resumed);
}

TEST_CASE("runtime: 500 opens whose tasks are destroyed leak no descriptor", "[runtime][lifetime]")
{
    coil_test::temp_dir dir;
    (void)dir.create_file("data", bytes_of("data"));
    const std::string path = dir.file("data");
    const std::size_t before = open_fd_count();
    std::uint64_t closed = 0;
    {
    coil::executor ex(coil_test::executor_options());
    auto opener = [](std::string path) -> coil::task<void> {
        auto f = co_await coil::file::open(path);
        (void)f;
    };
    auto root = [&]() -> coil::task<void> {
        for (int round = 0; round < 5; ++round) {
            std::vector<coil::task<void>> tasks;
            for (int i = 0; i < 100; ++i) {
                tasks.push_back(opener(path));
                tasks.back().handle().resume(); // its openat is queued
            }
            if (round % 2 == 1)
                co_await coil::yield(); // and submitted, on odd rounds
            tasks.clear(); // each destroyed while its openat is queued or in flight
        }
        co_return;
    };
    ex.run(root());
    closed = ex.stats().orphans_closed;
    }
    CHECK(open_fd_count() == before);
    CHECK(closed > 0); // some opens completed for nobody, and were closed
}

TEST_CASE("runtime: opens in flight at shutdown leak no descriptor", "[runtime][lifetime][shutdown]")
{
    coil_test::temp_dir dir;
    (void)dir.create_file("data", bytes_of("data"));
    const std::string path = dir.file("data");
    const std::size_t before = open_fd_count();
    {
        coil::executor ex(coil_test::executor_options());
        auto opener = [](std::string path) -> coil::task<void> {
            auto f = co_await coil::file::open(path);
            (void)f;
            (void)co_await coil::sleep_for(std::chrono::hours(1)); // never ends on its own
        };
        auto root = [&]() -> coil::task<void> {
            for (int i = 0; i < 300; ++i)
                ex.spawn(opener(path)).detach();
            co_await coil::yield();
            ex.stop();
            co_await coil::yield();
        };
        CHECK_THROWS_AS(ex.run(root()), std::system_error);
    }
    CHECK(open_fd_count() == before);
}

TEST_CASE("runtime: a detached task's exception is reported when its handle is dropped after it "
          "finished",
          "[runtime][lifetime][exceptions]")
{
    coil::executor ex(coil_test::executor_options());
    auto thrower = []() -> coil::task<void> {
        co_await coil::yield();
        throw std::runtime_error("lost?");
    };
    auto root = [&]() -> coil::task<void> {
        auto h = ex.spawn(thrower());
        for (int i = 0; i < 5; ++i)
            co_await coil::yield();
        REQUIRE(h.done());
        REQUIRE(ex.stats().unhandled_exceptions == 0); // someone may still join it
        h.detach();                                    // nobody will
    };
    ex.run(root());
    CHECK(ex.stats().unhandled_exceptions == 1);
}

namespace {

// Waits for a forked child and checks that it exited with status 0.
void check_exited_0(pid_t child)
{
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
}

// One read of up to 16 bytes from `fd`, as text (or the error's message).
coil::task<std::string> read_text(int fd)
{
    std::array<char, 16> buffer{};
    auto n = co_await coil::read(fd, std::as_writable_bytes(std::span(buffer)));
    if (!n)
        co_return "error: " + n.error().message();
    co_return std::string(buffer.data(), *n);
}

} // namespace

TEST_CASE("runtime: a forked child that stops its inherited executor leaves the parent's reads "
          "alone",
          "[runtime][lifetime][fork]")
{
    auto p = coil_test::make_pipe();
    const bool sqpoll = GENERATE(false, true);
    CAPTURE(sqpoll);
    std::string why;
    std::unique_ptr<coil::executor> exp =
        sqpoll ? coil_test::sqpoll_executor({}, why)
               : std::make_unique<coil::executor>(coil_test::executor_options());
    if (!exp)
        SKIP(why);
    coil::executor& ex = *exp;
    auto root = [&]() -> coil::task<std::string> {
        auto h = ex.spawn(read_text(p.read_end.get()));
        co_await coil::yield();
        co_await coil::yield();
        REQUIRE(ex.in_flight() == 1);
        const pid_t child = ::fork();
        REQUIRE(child >= 0);
        if (child == 0) {
            // The child stops its copy of the executor: run() shuts down (without touching the
            // shared ring) and throws; the child then exits at once.
            ex.stop();
            co_await coil::yield();
            ::_exit(3); // not reached
        }
        check_exited_0(child);
        coil_test::write_fully(p.write_end.get(), bytes_of("parent"));
        co_return co_await h;
    };
    std::string got;
    try {
        got = ex.run(root());
    } catch (const std::system_error&) {
        // In the forked child: run() ended by stop(). Destroying the executor must not touch
        // the parent's ring either.
        exp.reset();
        ::_exit(0);
    }
    CHECK(got == "parent");
}

namespace {

// The executor of a fork test: the default options, without single_issuer (then the kernel
// would accept submissions and table changes from the child: only coil stops them), or SQPOLL.
std::unique_ptr<coil::executor> fork_test_executor(const std::string& kind, std::string& why)
{
    if (kind == "sqpoll")
        return coil_test::sqpoll_executor({}, why);
    coil::executor_options options = coil_test::executor_options();
    if (kind == "any issuer")
        options.ring.single_issuer = false;
    return std::make_unique<coil::executor>(options);
}

} // namespace

TEST_CASE("runtime: ops a forked child awaits on the executor it inherited fail with forked_copy, "
          "its run() stops at the next turn naming fork, and the parent's ops go on",
          "[runtime][lifetime][fork]")
{
    const std::string kind = GENERATE("default", "any issuer", "sqpoll");
    CAPTURE(kind);
    auto p = coil_test::make_pipe();
    auto other = coil_test::make_pipe();
    std::string why;
    std::unique_ptr<coil::executor> exp = fork_test_executor(kind, why);
    if (!exp)
        SKIP(why);
    coil::executor& ex = *exp;
    const pid_t parent = ::getpid();
    int child_code = 0;
    auto root = [&]() -> coil::task<std::string> {
        auto h = ex.spawn(read_text(p.read_end.get()));
        co_await coil::yield();
        co_await coil::yield();
        REQUIRE(ex.in_flight() == 1);
        const pid_t child = ::fork();
        REQUIRE(child >= 0);
        if (child == 0) {
            // Misuse: the inherited executor's ring is the parent's. Nothing reaches it.
            auto nop = co_await coil::nop();
            std::array<std::byte, 4> buffer{};
            auto read = co_await coil::read(other.read_end.get(), buffer);
            const bool refused = !nop && nop.error() == coil::io::errc::forked_copy && !read &&
                                 read.error() == coil::io::errc::forked_copy;
            child_code = refused ? 0 : 20;
            co_await coil::yield(); // the loop stops here
            ::_exit(30);            // not reached
        }
        check_exited_0(child);
        auto after = co_await coil::nop(); // the parent's ring is as it was
        CHECK(after.ok());
        coil_test::write_fully(p.write_end.get(), bytes_of("parent"));
        co_return co_await h;
    };
    std::string got;
    try {
        got = ex.run(root());
    } catch (const std::system_error& e) {
        if (::getpid() == parent)
            throw;
        const bool named = std::string(e.what()).find("inherited through fork()") !=
                           std::string::npos;
        exp.reset(); // destroying it touches nothing of the parent's either
        ::_exit(named ? child_code : 21);
    }
    CHECK(got == "parent");
    // The child never wrote to `other`, and nothing it queued was run for it here.
    CHECK(ex.in_flight() == 0);
}

TEST_CASE("runtime: a forked child destroying what it inherited (a registered file, a fixed "
          "buffer pool, a buffer pool) leaves the parent's tables and buffer ring as they were",
          "[runtime][lifetime][fork]")
{
    const std::string kind = GENERATE("default", "any issuer");
    CAPTURE(kind);
    coil_test::temp_dir dir;
    dir.create_file("data", bytes_of("registered data"));
    std::string why;
    std::unique_ptr<coil::executor> exp = fork_test_executor(kind, why);
    coil::executor& ex = *exp;
    const pid_t parent = ::getpid();
    int pair[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
    coil_test::unique_fd peer(pair[1]);
    struct outcome {
        std::string through_slot, through_fixed, through_pool;
    };
    auto root = [&]() -> coil::task<outcome> {
        outcome o;
        auto f = co_await coil::file::open(dir.file("data"));
        REQUIRE(f);
        REQUIRE(f->register_slot().ok());
        coil::fixed_buffer_pool fixed(ex, 2, 4096);
        coil::fixed_buffer lease = fixed.try_acquire();
        REQUIRE(lease);
        coil::net::buffer_pool pool(ex, 4, 256);
        coil::net::stream_socket conn(pair[0]);
        auto chunks = conn.receive(pool);
        const pid_t child = ::fork();
        REQUIRE(child >= 0);
        if (child == 0) {
            // The documented way out: stop the inherited executor. Its shutdown destroys this
            // frame, and with it the file, both pools and the stream.
            ex.stop();
            co_await coil::yield();
            ::_exit(30); // not reached
        }
        check_exited_0(child);
        std::array<std::byte, 64> buffer{};
        auto n = co_await f->read_at(buffer, 0);
        REQUIRE(n);
        o.through_slot = coil_test::string_of(std::span(buffer).first(*n));
        auto m = co_await f->read_fixed_at({lease.bytes(), lease.index()}, 0);
        REQUIRE(m);
        o.through_fixed = coil_test::string_of(lease.bytes().first(*m));
        coil_test::write_fully(peer.get(), bytes_of("through the pool"));
        auto chunk = co_await chunks.next();
        REQUIRE(chunk);
        REQUIRE(chunk->ok());
        o.through_pool = coil_test::string_of((*chunk)->bytes());
        co_return o;
    };
    outcome o;
    try {
        o = ex.run(root());
    } catch (const std::system_error&) {
        if (::getpid() == parent)
            throw;
        exp.reset();
        ::_exit(0);
    }
    CHECK(o.through_slot == "registered data");
    CHECK(o.through_fixed == "registered data");
    CHECK(o.through_pool == "through the pool");
}

TEST_CASE("runtime: a child forked inside a task runs an executor of its own", "[runtime][fork]")
{
    coil::executor ex(coil_test::executor_options());
    auto nop_ok = []() -> coil::task<bool> { co_return (co_await coil::nop()).ok(); };
    auto root = [&]() -> coil::task<int> {
        const pid_t child = ::fork();
        if (child == 0) {
            // The inherited loop never runs again here: a new executor is not a nested run.
            int code = 1;
            try {
                coil::executor own(coil_test::executor_options());
                code = own.run(nop_ok()) ? 0 : 2;
            } catch (const std::exception& e) {
                std::fprintf(stderr, "child: %s\n", e.what());
            }
            ::_exit(code);
        }
        int status = -1;
        if (child > 0)
            ::waitpid(child, &status, 0);
        co_return status;
    };
    const int status = ex.run(root());
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
}

namespace {

// A custom op that, besides its own NOP, queues NOPs under forged user_data: the op kind, slots
// 0 to `count` - 1 (count below the SQ's size), and a generation no op has had. They stand for
// the late completions of ops that left those slots long ago.
struct forge_stale {
    std::uint32_t count;
    std::error_code prepare(coil::io::ring& r, std::uint64_t user_data) noexcept
    {
        if (r.space_left() < count + 1)
            return coil::io::make_error_code(coil::io::errc::no_space); // flushed, asked again
        for (std::uint32_t slot = 0; slot < count; ++slot)
            if (auto e = r.add_nop(std::uint64_t{0xfffffff0} << 32 | slot))
                return e;
        return r.add_nop(user_data);
    }
    coil::result<int> complete(const coil::io::completion& c) const noexcept { return c.result; }
};

} // namespace

TEST_CASE("runtime: a completion whose user_data names a slot under another generation is counted "
          "stale and never delivered to the op in that slot",
          "[runtime][lifetime][user_data]")
{
    // docs/architecture.md: user_data is generation << 32 | kind << 24 | slot.
    auto p = coil_test::make_pipe();
    coil::executor ex(coil_test::executor_options());
    // As many as the SQ holds beside the op's own NOP (COIL_TEST_SQ_ENTRIES may shrink it).
    const std::uint32_t slots = std::min(16U, ex.ring().sq_entries() - 1);
    auto body = [&]() -> coil::task<std::string> {
        auto read = ex.spawn(read_text(p.read_end.get()));
        co_await coil::yield();
        co_await coil::yield(); // the read waits in the kernel, in one of the low slots
        REQUIRE(ex.in_flight() == 1);
        const std::uint64_t before = ex.stats().stale_completions;
        auto forged = co_await coil::operation<forge_stale>(forge_stale{slots});
        REQUIRE(forged);
        while (ex.stats().stale_completions < before + slots)
            co_await coil::yield();
        CHECK(ex.stats().stale_completions == before + slots);
        CHECK(ex.in_flight() == 1); // a nop's result (0) did not end the read as end of file
        REQUIRE(::write(p.write_end.get(), "fresh", 5) == 5);
        co_return co_await read;
    };
    CHECK(ex.run(body()) == "fresh");
}
