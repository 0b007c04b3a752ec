// SPDX-License-Identifier: MIT
// Registered buffers and files in the runtime: fixed_buffer_pool leases, read_fixed /
// write_fixed, coil::file in a registered slot, bad indexes, pool exhaustion (try_acquire and
// a waiting acquire), emptying a slot with a read in flight, and executor shutdown.

#include "runtime_test_support.hpp"
#include "test_executor.hpp"

#include <coil/coil.hpp>

#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>

#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <memory>
#include <optional>
#include <cstdio>
#include <cstring>
#include <stop_token>
#include <system_error>
#include <thread>
#include <vector>

using namespace coil_test;

namespace {

constexpr std::size_t block = 4096;

std::vector<std::byte> bytes_at(const std::vector<std::byte>& all, std::size_t offset,
                                std::size_t count)
{
    return {all.begin() + static_cast<std::ptrdiff_t>(offset),
            all.begin() + static_cast<std::ptrdiff_t>(offset + count)};
}

std::vector<std::byte> copy_of(std::span<const std::byte> s) { return {s.begin(), s.end()}; }

} // namespace

TEST_CASE("runtime: a file in a registered slot reads and writes through registered buffers",
          "[runtime][fixed]")
{
    temp_dir dir;
    const std::vector<std::byte> contents = pattern(16 * block);
    dir.create_file("data", contents);
    coil::executor ex;
    coil::fixed_buffer_pool pool(ex, 4, block);
    CHECK(pool.count() == 4);
    CHECK(pool.available() == 4);
    CHECK(ex.registered_buffers() == 4);

    auto body = [&]() -> coil::task<void> {
        coil::result<coil::file> f = co_await coil::file::open(dir.file("data"), O_RDWR);
        REQUIRE(f.ok());
        REQUIRE(f->registered_slot() == -1);
        coil::result<void> registered = f->register_slot();
        REQUIRE(registered.ok());
        CHECK(f->registered_slot() >= 0);
        CHECK(ex.registered_files() == 1);
        // Registering twice changes nothing.
        const int slot = f->registered_slot();
        coil::result<void> again = f->register_slot();
        CHECK(again.ok());
        CHECK(f->registered_slot() == slot);

        coil::fixed_buffer a = pool.try_acquire();
        coil::fixed_buffer b = pool.try_acquire();
        REQUIRE(a);
        REQUIRE(b);
        CHECK(a.index() != b.index());
        CHECK(pool.available() == 2);

        // Fixed buffer and fixed file together, then each alone.
        coil::result<std::size_t> n = co_await f->read_fixed_at(a, 5 * block);
        REQUIRE(n.ok());
        CHECK(*n == block);
        CHECK(copy_of(a.bytes()) == bytes_at(contents, 5 * block, block));
        n = co_await f->read_at(b.bytes().first(100), 7 * block + 3);
        REQUIRE(n.ok());
        CHECK(*n == 100);
        CHECK(copy_of(b.bytes().first(100)) == bytes_at(contents, 7 * block + 3, 100));
        n = co_await coil::read_fixed(f->native_handle(), b.view(10, 50), 9 * block);
        REQUIRE(n.ok());
        CHECK(*n == 50);
        CHECK(copy_of(b.bytes().subspan(10, 50)) == bytes_at(contents, 9 * block, 50));

        // A fixed write of part of a buffer through the slot lands those bytes.
        std::memset(a.bytes().data(), 0x5a, block);
        n = co_await f->write_fixed_at(a.view(0, 300), 2 * block);
        REQUIRE(n.ok());
        CHECK(*n == 300);
        std::vector<std::byte> back(300);
        REQUIRE(::pread(f->native_handle(), back.data(), back.size(), 2 * block) == 300);
        CHECK(back == std::vector<std::byte>(300, std::byte{0x5a}));

        // Without the slot the same calls go through the descriptor.
        f->unregister_slot();
        CHECK(f->registered_slot() == -1);
        CHECK(ex.registered_files() == 0);
        n = co_await f->read_fixed_at(a, 0);
        REQUIRE(n.ok());
        CHECK(copy_of(a.bytes()) == bytes_at(contents, 0, block));
        co_return;
    };
    ex.run(body());
    CHECK(pool.available() == 4); // the leases returned themselves
}

TEST_CASE("runtime: a fixed read naming a bad buffer index or foreign memory fails with EFAULT",
          "[runtime][fixed][errors]")
{
    temp_dir dir;
    dir.create_file("data", pattern(2 * block));
    coil::executor ex(coil::executor_options{.buffer_slots = 8});
    coil::fixed_buffer_pool pool(ex, 2, block);
    std::vector<std::byte> foreign(block, std::byte{0x11});

    auto body = [&]() -> coil::task<void> {
        coil::result<coil::file> f = co_await coil::file::open(dir.file("data"));
        REQUIRE(f.ok());
        coil::fixed_buffer lease = pool.try_acquire();
        REQUIRE(lease);
        // An index past the table, an empty entry of it, and memory that is not the buffer.
        coil::result<std::size_t> past =
            co_await f->read_fixed_at({lease.bytes(), 8}, 0);
        coil::result<std::size_t> empty =
            co_await f->read_fixed_at({lease.bytes(), 7}, 0);
        coil::result<std::size_t> wrong =
            co_await f->read_fixed_at({foreign, lease.index()}, 0);
        CHECK(past.error() == std::errc::bad_address);
        CHECK(empty.error() == std::errc::bad_address);
        CHECK(wrong.error() == std::errc::bad_address);
    };
    ex.run(body());
    CHECK(foreign == std::vector<std::byte>(block, std::byte{0x11}));
}

TEST_CASE("runtime: a pool's buffers lie back to back in a page-aligned mapping: page-aligned "
          "for page-multiple sizes, size-aligned otherwise",
          "[runtime][fixed]")
{
    coil::executor ex;
    const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
    for (const std::size_t size : {std::size_t{4096} * 2, std::size_t{1536}}) {
        CAPTURE(size);
        coil::fixed_buffer_pool pool(ex, 4, size);
        std::vector<coil::fixed_buffer> leases;
        for (int i = 0; i < 4; ++i)
            leases.push_back(pool.try_acquire());
        std::vector<std::uintptr_t> at;
        for (auto& lease : leases) {
            REQUIRE(lease);
            at.push_back(reinterpret_cast<std::uintptr_t>(lease.bytes().data()));
        }
        std::sort(at.begin(), at.end());
        CHECK(at[0] % page == 0);
        for (std::size_t i = 1; i < at.size(); ++i) {
            CHECK(at[i] - at[i - 1] == size);
            CHECK(at[i] % (size % page == 0 ? page : 512) == 0);
        }
    }
}

TEST_CASE("runtime: an exhausted pool gives empty leases from try_acquire and serves waiting "
          "acquires in order as leases come back",
          "[runtime][fixed][exhaustion]")
{
    coil::executor ex;
    coil::fixed_buffer_pool pool(ex, 2, 512);
    std::vector<int> served;

    auto waiter = [&](int id) -> coil::task<void> {
        coil::result<coil::fixed_buffer> lease = co_await pool.acquire();
        REQUIRE(lease.ok());
        REQUIRE(*lease);
        served.push_back(id);
        co_await coil::yield();
    };
    auto body = [&]() -> coil::task<void> {
        coil::fixed_buffer a = pool.try_acquire();
        coil::fixed_buffer b = pool.try_acquire();
        REQUIRE(a);
        REQUIRE(b);
        coil::fixed_buffer none = pool.try_acquire();
        CHECK_FALSE(none);
        CHECK(none.size() == 0);
        CHECK(pool.exhaustions() == 1);

        auto first = ex.spawn(waiter(1));
        auto second = ex.spawn(waiter(2));
        co_await coil::yield();
        co_await coil::yield();
        CHECK(served.empty()); // both wait: nothing is free
        CHECK(pool.exhaustions() == 3);

        a.release();
        CHECK_FALSE(a);
        // Waiter 1 took the buffer over: a try_acquire now cannot overtake it.
        coil::fixed_buffer overtaker = pool.try_acquire();
        CHECK_FALSE(overtaker);
        co_await std::move(first);
        REQUIRE_FALSE(served.empty());
        CHECK(served.front() == 1);
        // Waiter 1 dropped its lease, which went straight to waiter 2, not to the pool.
        CHECK(pool.available() == 0);
        co_await std::move(second);
        CHECK(served == std::vector<int>{1, 2});
        CHECK(pool.available() == 1);
        b = coil::fixed_buffer(); // move-assigning an empty lease releases b
        CHECK(pool.available() == 2);
    };
    ex.run(body());
    CHECK(pool.available() == 2);
}

TEST_CASE("runtime: a stop request ends a waiting acquire with operation_canceled",
          "[runtime][fixed][exhaustion]")
{
    coil::executor ex;
    coil::fixed_buffer_pool pool(ex, 1, 512);
    std::stop_source source;
    auto waiting = [&]() -> coil::task<std::error_code> {
        coil::result<coil::fixed_buffer> lease = co_await pool.acquire();
        co_return lease.ok() ? std::error_code() : lease.error();
    };
    auto body = [&]() -> coil::task<std::error_code> {
        coil::fixed_buffer held = pool.try_acquire();
        REQUIRE(held);
        auto handle = ex.spawn(coil::with_stop_token(source.get_token(), waiting()));
        co_await coil::yield();
        source.request_stop();
        std::error_code ec = co_await std::move(handle);
        co_return ec;
    };
    std::error_code ec = ex.run(body());
    CHECK(ec == std::errc::operation_canceled);
    CHECK(pool.available() == 1);
}

TEST_CASE("runtime: a pool's buffers serve O_DIRECT reads and writes; a misaligned view fails "
          "with invalid_argument",
          "[runtime][fixed][direct]")
{
    // The pool promises buffers aligned for O_DIRECT (fixed_buffer_pool.hpp).
    temp_dir dir;
    const std::vector<std::byte> contents = pattern(4 * block);
    dir.create_file("data", contents);
    coil::executor ex;
    coil::fixed_buffer_pool pool(ex, 2, 2 * block);
    struct outcome {
        std::error_code open_error;
        coil::result<std::size_t> read = std::size_t{0}, wrote = std::size_t{0},
                                  misaligned = std::size_t{0};
        std::vector<std::byte> got;
    };
    auto body = [&]() -> coil::task<outcome> {
        outcome o;
        auto f = co_await coil::file::open(dir.file("data"), O_RDWR | O_DIRECT | O_CLOEXEC);
        if (!f) {
            o.open_error = f.error();
            co_return o;
        }
        coil::fixed_buffer a = pool.try_acquire();
        REQUIRE(a);
        o.read = co_await f->read_fixed_at(a.view(0, block), block);
        o.got = copy_of(a.bytes().first(block));
        std::memset(a.bytes().data(), 0x3c, block);
        o.wrote = co_await f->write_fixed_at(a.view(0, block), 3 * block);
        o.misaligned = co_await f->read_fixed_at(a.view(1, block), 0);
        co_return o;
    };
    outcome o = ex.run(body());
    if (o.open_error == std::errc::invalid_argument)
        SKIP("the temp directory's file system has no O_DIRECT");
    REQUIRE_FALSE(o.open_error);
    REQUIRE(o.read.ok());
    CHECK(*o.read == block);
    CHECK(o.got == bytes_at(contents, block, block));
    REQUIRE(o.wrote.ok());
    CHECK(*o.wrote == block);
    REQUIRE_FALSE(o.misaligned.ok());
    CHECK(o.misaligned.error() == std::errc::invalid_argument);
    std::vector<std::byte> back(block);
    coil_test::unique_fd plain(::open(dir.file("data").c_str(), O_RDONLY | O_CLOEXEC));
    REQUIRE(::pread(plain.get(), back.data(), block, 3 * block) == static_cast<ssize_t>(block));
    CHECK(back == std::vector<std::byte>(block, std::byte{0x3c}));
}

TEST_CASE("runtime: emptying a file's slot while a fixed read waits on it leaves the read "
          "intact",
          "[runtime][fixed][lifetime]")
{
    pipe_fds p = make_pipe();
    coil::executor ex;
    coil::fixed_buffer_pool pool(ex, 1, 64);
    coil::file reader(p.read_end.release());

    auto read_one = [&]() -> coil::task<std::vector<std::byte>> {
        coil::fixed_buffer lease = pool.try_acquire();
        REQUIRE(lease);
        coil::result<std::size_t> n =
            co_await reader.read_fixed_at(lease.view(0, 5), coil::current_position);
        REQUIRE(n.ok());
        co_return copy_of(lease.bytes().first(*n));
    };
    auto body = [&]() -> coil::task<std::vector<std::byte>> {
        coil::result<void> registered = reader.register_slot();
        REQUIRE(registered.ok());
        auto pending = ex.spawn(read_one());
        co_await coil::yield();
        CHECK(ex.in_flight() >= 1);
        reader.unregister_slot(); // the read took its own reference when it was issued
        CHECK(ex.registered_files() == 0);
        write_fully(p.write_end.get(), bytes_of("hello"));
        std::vector<std::byte> got = co_await std::move(pending);
        co_return got;
    };
    CHECK(string_of(ex.run(body())) == "hello");
}

TEST_CASE("runtime: on an SQPOLL executor, a write started in the loop turn that empties its "
          "slot keeps the file",
          "[runtime][fixed][lifetime][sqpoll]")
{
    // The executor submits before it empties a slot; an SQPOLL ring's kernel thread issues
    // what it was shown in its own time, so the slot change must wait for it too. The thread
    // sleeps between rounds (1 ms idle): each write has to wake it.
    coil::executor_options options;
    options.ring.sqpoll_idle = std::chrono::milliseconds(1);
    std::string why;
    std::unique_ptr<coil::executor> exp = coil_test::sqpoll_executor(options, why);
    if (!exp)
        SKIP(why);
    coil::executor& ex = *exp;
    pipe_fds p = make_pipe(O_NONBLOCK);
    coil::file writer(p.write_end.release());

    auto write_one = [&]() -> coil::task<coil::result<std::size_t>> {
        co_return co_await writer.write_at(bytes_of("x"), coil::current_position);
    };
    auto empty_slot = [&]() -> coil::task<void> {
        writer.unregister_slot();
        co_return;
    };
    constexpr int rounds = 20;
    auto body = [&]() -> coil::task<int> {
        int failed = 0;
        for (int round = 0; round < rounds; ++round) {
            REQUIRE(writer.register_slot().ok());
            std::this_thread::sleep_for(std::chrono::milliseconds(3)); // the thread sleeps
            auto wrote = ex.spawn(write_one());     // both run in the next loop turn,
            auto emptied = ex.spawn(empty_slot());  // the write first
            coil::result<std::size_t> n = co_await std::move(wrote);
            co_await std::move(emptied);
            if (!n || *n != 1)
                ++failed;
        }
        co_return failed;
    };
    CHECK(ex.run(body()) == 0);
    CHECK(read_to_end(p.read_end.get()) == std::string(rounds, 'x'));
}

TEST_CASE("runtime: the executor's tables have a size: a full file table gives EMFILE and a "
          "full buffer table refuses a pool; pools share and reuse the table",
          "[runtime][fixed][limits]")
{
    temp_dir dir;
    dir.create_file("a", pattern(16));
    dir.create_file("b", pattern(16));
    coil::executor ex(coil::executor_options{.file_slots = 1, .buffer_slots = 8});

    {
        coil::fixed_buffer_pool first(ex, 4, 256);
        coil::fixed_buffer_pool second(ex, 4, 256);
        CHECK(first.first_index() != second.first_index());
        CHECK(ex.registered_buffers() == 8);
        try {
            coil::fixed_buffer_pool third(ex, 1, 256);
            FAIL("a pool was registered into a full table");
        } catch (const std::system_error& e) {
            CHECK(e.code() == std::errc::no_buffer_space);
            CHECK(std::string(e.what()).find("buffer_slots") != std::string::npos);
        }
    }
    CHECK(ex.registered_buffers() == 0);
    coil::fixed_buffer_pool whole(ex, 8, 256); // the entries came back
    CHECK(whole.first_index() == 0);

    auto body = [&]() -> coil::task<void> {
        coil::result<coil::file> a = co_await coil::file::open(dir.file("a"));
        coil::result<coil::file> b = co_await coil::file::open(dir.file("b"));
        REQUIRE(a.ok());
        REQUIRE(b.ok());
        coil::result<void> ra = a->register_slot();
        coil::result<void> rb = b->register_slot();
        CHECK(ra.ok());
        REQUIRE_FALSE(rb.ok());
        CHECK(rb.error() == std::errc::too_many_files_open);
        CHECK(b->registered_slot() == -1);
        coil::result<void> closed = co_await a->close(); // closing empties the slot
        CHECK(closed.ok());
        CHECK(ex.registered_files() == 0);
        rb = b->register_slot();
        CHECK(rb.ok());
    };
    ex.run(body());
    CHECK(ex.registered_files() == 0); // b was destroyed with the task's frame
}

TEST_CASE("runtime: a registered file used on another executor reads and writes its own "
          "file through its descriptor, not the other table's slot",
          "[runtime][fixed][threads]")
{
    temp_dir dir;
    const std::string four_a = "AAAA";
    const std::string four_b = "BBBB";
    dir.create_file("a", std::as_bytes(std::span(four_a)));
    dir.create_file("b", std::as_bytes(std::span(four_b)));
    coil::executor first(coil::executor_options{.file_slots = 1});
    coil::executor second(coil::executor_options{.file_slots = 1});
    auto open_registered = [&](const std::string& name) -> coil::task<coil::file> {
        coil::result<coil::file> f = co_await coil::file::open(dir.file(name), O_RDWR);
        REQUIRE(f.ok());
        REQUIRE(f->register_slot().ok());
        REQUIRE(f->registered_slot() == 0); // both in slot 0 of their executor's table
        co_return std::move(*f);
    };
    coil::file a = first.run(open_registered("a"));
    coil::file b = second.run(open_registered("b"));
    auto use_a_on_second = [&]() -> coil::task<std::string> {
        std::array<std::byte, 4> got{};
        coil::result<std::size_t> n = co_await a.read_at(got, 0);
        const std::string zz = "ZZ";
        coil::result<std::size_t> w = co_await a.write_at(std::as_bytes(std::span(zz)), 0);
        if (!n || !w)
            co_return "error";
        co_return std::string(reinterpret_cast<const char*>(got.data()), *n);
    };
    CHECK(second.run(use_a_on_second()) == "AAAA");
    auto read_all = [&](const std::string& name) {
        std::array<char, 4> text{};
        unique_fd fd(::open(dir.file(name).c_str(), O_RDONLY | O_CLOEXEC));
        REQUIRE(::read(fd.get(), text.data(), text.size()) == 4);
        return std::string(text.data(), text.size());
    };
    CHECK(read_all("a") == "ZZAA");
    CHECK(read_all("b") == "BBBB"); // the other file, in slot 0 of that table, is untouched
    a = coil::file(); // the slots are emptied before their executors go
    b = coil::file();
}

TEST_CASE("runtime: stopping an executor with fixed reads in flight on registered slots "
          "cancels them and empties every slot",
          "[runtime][fixed][shutdown]")
{
    std::vector<pipe_fds> pipes;
    for (int i = 0; i < 4; ++i)
        pipes.push_back(make_pipe());
    std::size_t in_flight_before_stop = 0;
    {
        coil::executor ex;
        coil::fixed_buffer_pool pool(ex, 4, 64);
        auto blocked_read = [&](int fd) -> coil::task<void> {
            coil::file f(::dup(fd));
            coil::result<void> registered = f.register_slot();
            REQUIRE(registered.ok());
            coil::fixed_buffer lease = pool.try_acquire();
            REQUIRE(lease);
            coil::result<std::size_t> n = co_await f.read_fixed_at(lease, coil::current_position);
            (void)n;
            FAIL("a read on an empty pipe completed");
        };
        auto root = [&]() -> coil::task<void> {
            for (pipe_fds& p : pipes)
                ex.spawn(blocked_read(p.read_end.get())).detach();
            co_await coil::yield();
            co_await coil::yield();
            in_flight_before_stop = ex.in_flight();
            CHECK(ex.registered_files() == 4);
            ex.stop();
            co_await coil::yield();
        };
        try {
            ex.run(root());
            FAIL("run() returned normally after stop()");
        } catch (const std::system_error& e) {
            CHECK(e.code() == std::errc::operation_canceled);
        }
        CHECK(ex.registered_files() == 0);
        CHECK(pool.available() == 4);
    }
    CHECK(in_flight_before_stop >= 4);
}

TEST_CASE("runtime: a registered file destroyed or closed on another executor's thread has its "
          "slot emptied by its own executor at its next turn, or given up with the table when "
          "that executor is destroyed first; the descriptor really closes",
          "[runtime][fixed][threads]")
{
    const bool by_close = GENERATE(false, true);
    const bool owner_runs_again = GENERATE(true, false);
    CAPTURE(by_close, owner_runs_again);
    int fds[2];
    REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
    unique_fd read_end(fds[0]);
    auto owner = std::make_unique<coil::executor>(coil::executor_options{.file_slots = 1});
    auto register_it = [](int fd) -> coil::task<coil::file> {
        coil::file f(fd);
        REQUIRE(f.register_slot().ok());
        co_return f;
    };
    coil::file writer = owner->run(register_it(fds[1]));
    REQUIRE(owner->registered_files() == 1);

    bool closed_ok = false;
    std::thread other([&] {
        coil::executor there;
        auto body = [&]() -> coil::task<void> {
            coil::file f = std::move(writer);
            if (by_close)
                closed_ok = (co_await f.close()).ok();
        }; // otherwise ~file here
        there.run(body());
    });
    other.join();
    if (by_close)
        CHECK(closed_ok);
    // The owner's table still holds the write end until the owner's next loop turn ...
    ::pollfd p{read_end.get(), POLLIN, 0};
    CHECK(::poll(&p, 1, 0) == 0);
    CHECK(owner->registered_files() == 1);
    if (owner_runs_again) {
        // ... which empties the slot.
        owner->run([]() -> coil::task<void> { co_await coil::yield(); }());
        CHECK(owner->registered_files() == 0);
    } else {
        owner.reset(); // no "still in use" stop: the slot goes with the table
    }
    // The reader sees the end of the pipe.
    p.revents = 0;
    REQUIRE(::poll(&p, 1, 1000) == 1);
    CHECK((p.revents & POLLHUP) != 0);
}

TEST_CASE("runtime: a pool larger than RLIMIT_MEMLOCK, without CAP_IPC_LOCK, throws ENOMEM naming "
          "the limit and the fix",
          "[runtime][fixed]")
{
    // In a child limited to 256 KiB of locked memory and, when run as root, turned into nobody
    // (which drops CAP_IPC_LOCK): the executor's ring fits, 16 pinned buffers of 64 KiB do not.
    constexpr int child_ok = 0, child_wrong = 10, child_no_throw = 11, child_setup = 12;
    std::fflush(nullptr);
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        if (!coil_test::limit_locked_memory(256 * 1024))
            ::_exit(child_setup);
        try {
            coil::executor ex;
            try {
                coil::fixed_buffer_pool pool(ex, 16, 65536);
                ::_exit(child_no_throw);
            } catch (const std::system_error& e) {
                const bool right = e.code() == std::errc::not_enough_memory &&
                                   std::strstr(e.what(), "RLIMIT_MEMLOCK") != nullptr &&
                                   std::strstr(e.what(), "ulimit -l") != nullptr;
                if (!right)
                    std::fprintf(stderr, "child: %s\n", e.what());
                std::fflush(stderr);
                ::_exit(right ? child_ok : child_wrong);
            }
        } catch (const std::exception& e) {
            std::fprintf(stderr, "child: the executor: %s\n", e.what());
            std::fflush(stderr);
            ::_exit(child_setup);
        }
    }
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == child_ok);
}

TEST_CASE("runtime: a task waiting in acquire() when its executor stops leaves the pool's queue "
          "with its frame; the lease it waited for then goes back to the pool",
          "[runtime][fixed][lifetime]")
{
    coil::executor ex;
    coil::fixed_buffer_pool pool(ex, 1, 512);
    std::optional<coil::fixed_buffer> held;
    bool resumed = false;
    auto waiting = [&]() -> coil::task<void> {
        auto lease = co_await pool.acquire();
        resumed = true; // never: the executor stops first
        (void)lease;
    };
    auto body = [&]() -> coil::task<void> {
        held.emplace(pool.try_acquire());
        REQUIRE(*held);
        auto handle = ex.spawn(waiting());
        co_await coil::yield();
        co_await coil::yield(); // the waiter is queued in the pool
        ex.stop();
        (void)co_await coil::sleep_for(std::chrono::hours(1));
    };
    CHECK_THROWS_AS(ex.run(body()), std::system_error);
    CHECK_FALSE(resumed);
    held.reset(); // to the pool, not to the destroyed waiter (ASan would see that)
    CHECK(pool.available() == 1);
    auto again = [&]() -> coil::task<bool> {
        auto lease = co_await pool.acquire();
        co_return lease.ok() && static_cast<bool>(*lease);
    };
    CHECK(ex.run(again()));
}

TEST_CASE("runtime: file::release() empties the file's registered slot and hands over an open "
          "descriptor",
          "[runtime][fixed][file]")
{
    temp_dir dir;
    dir.create_file("data", pattern(4096));
    const std::string path = dir.file("data");
    coil::executor ex;
    auto body = [&]() -> coil::task<void> {
        auto f = co_await coil::file::open(path);
        REQUIRE(f);
        auto registered = f->register_slot();
        REQUIRE(registered.ok());
        CHECK(ex.registered_files() == 1);
        const int fd = f->release();
        CHECK_FALSE(f->is_open());
        CHECK(ex.registered_files() == 0);
        REQUIRE(::fcntl(fd, F_GETFD) >= 0); // still open: the caller's now
        std::array<std::byte, 16> buffer{};
        auto n = co_await coil::read(fd, buffer, 0);
        CHECK((n && *n == buffer.size()));
        ::close(fd);
    };
    ex.run(body());
}

TEST_CASE("runtime: a fixed_buffer dropped on another thread goes back through the pool's "
          "executor, to a task waiting in acquire()",
          "[runtime][fixed][threads]")
{
    coil::executor ex(coil_test::executor_options());
    coil::fixed_buffer_pool pool(ex, 1, block);
    auto body = [&]() -> coil::task<bool> {
        // Nobody waits: the buffer is free again at the executor's next loop turn, not before.
        coil::fixed_buffer lease = pool.try_acquire();
        REQUIRE(lease);
        std::thread([l = std::move(lease)]() mutable { l.release(); }).join();
        const bool not_yet = pool.available() == 0;
        // The executor learns of posted work through its wake-up read, in a loop turn.
        for (int i = 0; i < 10'000 && pool.available() == 0; ++i)
            (void)co_await coil::sleep_for(std::chrono::milliseconds(1));
        const bool back = pool.available() == 1;
        // A task waits: it gets the buffer.
        lease = pool.try_acquire();
        REQUIRE(lease);
        bool waiter_got_it = false;
        auto waiter = [&]() -> coil::task<void> {
            auto next = co_await pool.acquire();
            waiter_got_it = next.ok() && static_cast<bool>(*next);
        };
        auto w = ex.spawn(waiter());
        co_await coil::yield(); // the waiter waits: the pool's one buffer is lent
        std::thread([l = std::move(lease)]() mutable { l.release(); }).join();
        co_await w;
        co_return not_yet && back && waiter_got_it;
    };
    CHECK(ex.run(body()));
    CHECK(pool.available() == 1);
}

TEST_CASE("runtime: acquire() of a fixed_buffer_pool awaited in a task of another executor "
          "throws logic_error",
          "[runtime][fixed][misuse]")
{
    coil::executor a(coil_test::executor_options());
    coil::executor b(coil_test::executor_options());
    coil::fixed_buffer_pool pool(a, 1, block);
    coil::fixed_buffer lease = pool.try_acquire(); // exhausted: acquire() must wait
    REQUIRE(lease);
    auto body = [&]() -> coil::task<std::string> {
        try {
            auto r = co_await pool.acquire();
            co_return r.ok() ? "a lease" : r.error().message();
        } catch (const std::logic_error& e) {
            co_return e.what();
        }
    };
    const std::string outcome = b.run(body());
    CHECK(outcome.find("acquire() awaited in a task of another executor") != std::string::npos);
}

TEST_CASE("runtime: an executor's file table has 256 slots by default: the 257th registration "
          "fails with EMFILE, and a freed slot is taken again",
          "[runtime][fixed]")
{
    temp_dir dir;
    dir.create_file("data", pattern(16));
    coil::executor ex; // the default options
    auto body = [&]() -> coil::task<bool> {
        std::vector<coil::file> files;
        for (int i = 0; i < 257; ++i) {
            auto f = co_await coil::file::open(dir.file("data"));
            REQUIRE(f);
            files.push_back(std::move(*f));
        }
        for (int i = 0; i < 256; ++i)
            REQUIRE(files[static_cast<std::size_t>(i)].register_slot().ok());
        auto full = files[256].register_slot();
        const bool emfile = !full && full.error() == std::errc::too_many_files_open;
        files[3].unregister_slot();
        auto again = files[256].register_slot();
        co_return emfile && again.ok() && files[256].registered_slot() == 3;
    };
    CHECK(ex.run(body()));
}
