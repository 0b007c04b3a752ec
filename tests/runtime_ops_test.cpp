// SPDX-License-Identifier: MIT
// Every awaitable op of the runtime against real files, pipes and eventfds, successes and errors.

#include "runtime_test_support.hpp"
#include "test_executor.hpp"

#include <coil/coil.hpp>

#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>

#include <fcntl.h>
#include <linux/falloc.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <climits>
#include <atomic>
#include <chrono>
#include <cstring>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

using namespace std::chrono_literals;
using coil_test::bytes_of;
using coil_test::string_of;

namespace {

struct read_outcome {
    coil::result<std::size_t> count;
    std::string data;
};

coil::task<read_outcome> read_some(int fd, std::size_t size, std::uint64_t offset)
{
    std::vector<std::byte> buffer(size);
    coil::result<std::size_t> n = co_await coil::read(fd, buffer, offset);
    std::string data;
    if (n)
        data = string_of(std::span(buffer).first(*n));
    co_return read_outcome{n, data};
}

bool is_error(const std::error_code& ec, std::errc e) { return ec == std::make_error_code(e); }

} // namespace

TEST_CASE("runtime: a read of a pipe yields the bytes written", "[runtime][read][write]")
{
    auto p = coil_test::make_pipe();
    auto body = [&]() -> coil::task<read_outcome> {
        coil::result<std::size_t> w = co_await coil::write(p.write_end.get(), bytes_of("hello, coil"));
        REQUIRE(w.ok());
        REQUIRE(*w == 11);
        co_return co_await read_some(p.read_end.get(), 64, coil::current_position);
    };
    read_outcome out = coil_test::run(body());
    REQUIRE(out.count.ok());
    CHECK(*out.count == 11);
    CHECK(out.data == "hello, coil");
}

TEST_CASE("runtime: a read blocked on an empty pipe completes when another task writes",
          "[runtime][read]")
{
    auto p = coil_test::make_pipe();
    auto writer = [&]() -> coil::task<coil::result<std::size_t>> {
        co_await coil::yield(); // let the reader reach the kernel first
        co_return co_await coil::write(p.write_end.get(), bytes_of("late"));
    };
    auto body = [&]() -> coil::task<read_outcome> {
        auto w = coil::executor::current()->spawn(writer());
        read_outcome r = co_await read_some(p.read_end.get(), 16, coil::current_position);
        coil::result<std::size_t> written = co_await w;
        REQUIRE(written.ok());
        co_return r;
    };
    read_outcome out = coil_test::run(body());
    REQUIRE(out.count.ok());
    CHECK(out.data == "late");
}

TEST_CASE("runtime: a task that only yields does not starve a read whose data arrives meanwhile",
          "[runtime][read][yield]")
{
    // The loop never blocks while a task is ready, so it must bring in completions the kernel
    // holds (deferred task work) on its non-blocking turns too, or the read below would wait
    // for as long as the other task keeps yielding.
    const bool other_thread = GENERATE(false, true);
    CAPTURE(other_thread);
    auto p = coil_test::make_pipe();
    bool read_done = false;
    std::atomic<bool> written{false};
    std::thread writer_thread;
    auto reader = [&]() -> coil::task<read_outcome> {
        read_outcome r = co_await read_some(p.read_end.get(), 16, coil::current_position);
        read_done = true;
        co_return r;
    };
    auto body = [&]() -> coil::task<std::pair<read_outcome, int>> {
        auto r = coil::executor::current()->spawn(reader());
        for (int i = 0; i < 3; ++i)
            co_await coil::yield(); // the read reaches the kernel and waits there
        auto write_wake = [&] {
            const bool ok = ::write(p.write_end.get(), "wake", 4) == 4;
            written.store(ok, std::memory_order_release);
        };
        if (other_thread)
            writer_thread = std::thread(write_wake);
        else
            write_wake();
        // Yield until the read is done: at most 1,000 turns after the write returned (one
        // turn is enough), and without bound before, while the writer thread starts.
        int turns_after_write = 0;
        while (!read_done && turns_after_write < 1000) {
            if (written.load(std::memory_order_acquire))
                ++turns_after_write;
            co_await coil::yield();
        }
        read_outcome out = co_await r;
        co_return std::pair{out, turns_after_write};
    };
    auto [out, turns] = coil_test::run(body());
    if (writer_thread.joinable())
        writer_thread.join();
    REQUIRE(written.load());
    CHECK(turns < 1000);
    REQUIRE(out.count.ok());
    CHECK(out.data == "wake");
}

TEST_CASE("runtime: writes and reads at file offsets round-trip the data", "[runtime][read][write]")
{
    coil_test::temp_dir dir;
    auto fd = dir.create_file("data");
    auto body = [&]() -> coil::task<read_outcome> {
        coil::result<std::size_t> first = co_await coil::write(fd.get(), bytes_of("0123456789"), 0);
        REQUIRE(first.value() == 10);
        coil::result<std::size_t> second = co_await coil::write(fd.get(), bytes_of("abc"), 4);
        REQUIRE(second.value() == 3);
        co_return co_await read_some(fd.get(), 6, 2);
    };
    read_outcome out = coil_test::run(body());
    REQUIRE(out.count.ok());
    CHECK(out.data == "23abc7");
}

TEST_CASE("runtime: a read at end of file yields 0", "[runtime][read]")
{
    coil_test::temp_dir dir;
    auto fd = dir.create_file("short", bytes_of("xyz"));
    read_outcome at_end = coil_test::run(read_some(fd.get(), 16, 3));
    REQUIRE(at_end.count.ok());
    CHECK(*at_end.count == 0);
    read_outcome past_end = coil_test::run(read_some(fd.get(), 16, 1000));
    REQUIRE(past_end.count.ok());
    CHECK(*past_end.count == 0);

    // A pipe whose write end is closed is at end of file too.
    auto p = coil_test::make_pipe();
    p.write_end.reset();
    read_outcome pipe_end = coil_test::run(read_some(p.read_end.get(), 16, coil::current_position));
    REQUIRE(pipe_end.count.ok());
    CHECK(*pipe_end.count == 0);
}

TEST_CASE("runtime: ops on a bad descriptor yield bad_file_descriptor", "[runtime][errors]")
{
    // An fd number that cannot be open (far above any descriptor limit). A freshly closed one
    // would not do: the executor's own ring and eventfd would reuse its number.
    const int closed_fd = 1 << 29;

    auto body = [&]() -> coil::task<std::vector<std::error_code>> {
        std::array<std::byte, 8> buffer{};
        iovec vec{buffer.data(), buffer.size()};
        std::vector<std::error_code> errors;
        errors.push_back((co_await coil::read(closed_fd, buffer, 0)).error());
        errors.push_back((co_await coil::write(closed_fd, buffer, 0)).error());
        errors.push_back((co_await coil::readv(closed_fd, std::span(&vec, 1), 0)).error());
        errors.push_back((co_await coil::writev(closed_fd, std::span(&vec, 1), 0)).error());
        errors.push_back((co_await coil::fsync(closed_fd)).error());
        errors.push_back((co_await coil::fdatasync(closed_fd)).error());
        errors.push_back((co_await coil::fallocate(closed_fd, 0, 0, 4096)).error());
        errors.push_back((co_await coil::close(closed_fd)).error());
        errors.push_back((co_await coil::read(-1, buffer, 0)).error());
        co_return errors;
    };
    std::vector<std::error_code> errors = coil_test::run(body());
    REQUIRE(errors.size() == 9);
    for (const std::error_code& ec : errors) {
        INFO(ec.message());
        CHECK(is_error(ec, std::errc::bad_file_descriptor));
    }
}

namespace {

// In a forked child with SIGPIPE at `action`: writes to a pipe and a socket whose reading
// ends are closed, with write and writev. Exits 0 when all four yield broken_pipe, else with
// the step that did not; a SIGPIPE at its default action kills it first.
int write_into_void_in_child(void (*action)(int))
{
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        ::signal(SIGPIPE, action);
        int pipe_ends[2];
        int pair[2];
        if (::pipe2(pipe_ends, O_CLOEXEC) != 0 ||
            ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0)
            ::_exit(10);
        ::close(pipe_ends[0]);
        ::close(pair[1]);
        coil::executor ex(coil_test::executor_options());
        auto body = [&]() -> coil::task<int> {
            const auto text = bytes_of("into the void");
            iovec vec{const_cast<std::byte*>(text.data()), text.size()};
            int step = 11;
            for (int fd : {pipe_ends[1], pair[0]}) {
                auto one = co_await coil::write(fd, text);
                if (one || !is_error(one.error(), std::errc::broken_pipe))
                    co_return step;
                auto gathered = co_await coil::writev(fd, std::span(&vec, 1));
                if (gathered || !is_error(gathered.error(), std::errc::broken_pipe))
                    co_return step + 1;
                step += 2;
            }
            co_return 0;
        };
        ::_exit(ex.run(body()));
    }
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    if (WIFSIGNALED(status))
        return -WTERMSIG(status);
    REQUIRE(WIFEXITED(status));
    return WEXITSTATUS(status);
}

} // namespace

TEST_CASE("runtime: write and writev to a pipe or socket whose reader is gone raise SIGPIPE as "
          "write(2) does, and yield broken_pipe once SIGPIPE is ignored",
          "[runtime][write][errors]")
{
    // The executor leaves the process's signal dispositions alone (docs/runtime.md): a server
    // that writes to pipes or sockets with these ops ignores SIGPIPE, or sends with
    // stream_socket::send, which never raises it.
    CHECK(write_into_void_in_child(SIG_DFL) == -SIGPIPE);
    CHECK(write_into_void_in_child(SIG_IGN) == 0);
}

TEST_CASE("runtime: a read of an empty O_NONBLOCK pipe fails with EAGAIN or waits for the data",
          "[runtime][read][errors]")
{
    // Whether io_uring honours O_NONBLOCK on a pipe depends on the kernel. Older kernels end
    // the read with -EAGAIN; current ones (6.18 here) arm an internal poll and complete the
    // read once data arrives. Either is correct; anything else (another error, wrong bytes,
    // a hang) is not.
    auto p = coil_test::make_pipe(O_NONBLOCK);
    auto writer = [&]() -> coil::task<void> {
        co_await coil::yield(); // the read has been submitted by the time this runs again
        coil_test::write_fully(p.write_end.get(), bytes_of("ready"));
    };
    auto body = [&]() -> coil::task<std::pair<read_outcome, read_outcome>> {
        coil::join_handle<void> w = coil::executor::current()->spawn(writer());
        read_outcome first = co_await read_some(p.read_end.get(), 16, coil::current_position);
        co_await w;
        if (first.count.ok())
            co_return std::pair{first, first};
        // The kernel said EAGAIN; now that the writer is done the data is there.
        read_outcome second = co_await read_some(p.read_end.get(), 16, coil::current_position);
        co_return std::pair{first, second};
    };
    auto [first, second] = coil_test::run(body());
    if (first.count.ok()) {
        // This kernel kept the read pending until the write.
        CHECK(first.data == "ready");
    } else {
        INFO(first.count.error().message());
        CHECK(is_error(first.count.error(), std::errc::resource_unavailable_try_again));
    }
    REQUIRE(second.count.ok());
    CHECK(second.data == "ready");

    // Every kernel gives EAGAIN for a synchronous read of the now empty O_NONBLOCK pipe; the
    // io_uring path must not have left data behind or consumed more.
    char probe = 0;
    CHECK(::read(p.read_end.get(), &probe, 1) == -1);
    CHECK(errno == EAGAIN);
}

TEST_CASE("runtime: readv and writev take IOV_MAX iovecs, and one more ends with "
          "invalid_argument, writing nothing",
          "[runtime][readv][writev]")
{
    coil_test::temp_dir dir;
    auto fd = dir.create_file("many");
    std::vector<char> bytes(IOV_MAX + 1, 'v');
    std::vector<iovec> iovecs;
    for (char& c : bytes)
        iovecs.push_back(iovec{&c, 1});
    auto body = [&]() -> coil::task<void> {
        auto all = co_await coil::writev(fd.get(), std::span(iovecs).first(IOV_MAX), 0);
        REQUIRE(all.ok());
        CHECK(*all == std::size_t{IOV_MAX});
        auto too_many = co_await coil::writev(fd.get(), iovecs, IOV_MAX);
        CHECK(too_many.error() == std::errc::invalid_argument);
        auto back = co_await coil::readv(fd.get(), std::span(iovecs).first(IOV_MAX), 0);
        REQUIRE(back.ok());
        CHECK(*back == std::size_t{IOV_MAX});
        auto read_too_many = co_await coil::readv(fd.get(), iovecs, 0);
        CHECK(read_too_many.error() == std::errc::invalid_argument);
    };
    coil_test::run(body());
    struct ::stat st{};
    REQUIRE(::fstat(fd.get(), &st) == 0);
    CHECK(st.st_size == IOV_MAX);
}

TEST_CASE("runtime: readv and writev round-trip scattered buffers", "[runtime][readv][writev]")
{
    coil_test::temp_dir dir;
    auto fd = dir.create_file("vectored");
    auto p = coil_test::make_pipe();

    auto body = [&](int write_fd, int read_fd, std::uint64_t offset) -> coil::task<std::string> {
        std::string a = "first-", b = "second-", c = "third";
        std::array<iovec, 3> out{iovec{a.data(), a.size()}, iovec{b.data(), b.size()},
                                 iovec{c.data(), c.size()}};
        coil::result<std::size_t> w = co_await coil::writev(write_fd, out, offset);
        REQUIRE(w.ok());
        REQUIRE(*w == a.size() + b.size() + c.size());

        // Read back into differently sized pieces.
        std::array<char, 4> x{};
        std::array<char, 10> y{};
        std::array<char, 32> z{};
        std::array<iovec, 3> in{iovec{x.data(), x.size()}, iovec{y.data(), y.size()},
                                iovec{z.data(), z.size()}};
        coil::result<std::size_t> r = co_await coil::readv(read_fd, in, offset);
        REQUIRE(r.ok());
        REQUIRE(*r == *w);
        std::string joined(x.data(), x.size());
        joined.append(y.data(), y.size());
        joined.append(z.data(), *r - x.size() - y.size());
        co_return joined;
    };
    CHECK(coil_test::run(body(fd.get(), fd.get(), 100)) == "first-second-third");
    CHECK(coil_test::run(body(p.write_end.get(), p.read_end.get(), coil::current_position)) ==
          "first-second-third");

    // The file has a hole of zeros before offset 100, and the data after it.
    std::array<char, 118> raw{};
    REQUIRE(::pread(fd.get(), raw.data(), raw.size(), 0) == 118);
    CHECK(std::string(raw.data() + 100, 18) == "first-second-third");
    CHECK(raw[0] == '\0');
    CHECK(raw[99] == '\0');
}

TEST_CASE("runtime: fsync and fdatasync of a written temp file succeed", "[runtime][fsync]")
{
    coil_test::temp_dir dir;
    auto fd = dir.create_file("synced");
    auto body = [&]() -> coil::task<void> {
        coil::result<std::size_t> first = co_await coil::write(fd.get(), bytes_of("durable"), 0);
        REQUIRE(first.value() == 7);
        coil::result<void> full = co_await coil::fsync(fd.get());
        CHECK(full.ok());
        coil::result<std::size_t> second = co_await coil::write(fd.get(), bytes_of("more"), 7);
        REQUIRE(second.value() == 4);
        coil::result<void> data = co_await coil::fdatasync(fd.get());
        CHECK(data.ok());
    };
    coil_test::run(body());
    std::array<char, 11> back{};
    REQUIRE(::pread(fd.get(), back.data(), back.size(), 0) == 11);
    CHECK(std::string(back.data(), back.size()) == "durablemore");
}

TEST_CASE("runtime: fallocate allocates, keeps the size, punches holes and zeroes ranges",
          "[runtime][fallocate]")
{
    coil_test::temp_dir dir;
    auto fd = dir.create_file("allocated");
    constexpr std::uint64_t block = 64 * 1024;

    auto body = [&]() -> coil::task<void> {
        // Mode 0 reserves blocks and grows the file.
        coil::result<void> grow = co_await coil::fallocate(fd.get(), 0, 0, 4 * block);
        if (!grow && is_error(grow.error(), std::errc::operation_not_supported))
            SKIP("the temp directory's file system does not support fallocate");
        REQUIRE(grow.ok());
        struct stat st {};
        REQUIRE(::fstat(fd.get(), &st) == 0);
        CHECK(static_cast<std::uint64_t>(st.st_size) == 4 * block);

        // KEEP_SIZE reserves blocks past the end without changing the size.
        coil::result<void> kept = co_await coil::fallocate(fd.get(), FALLOC_FL_KEEP_SIZE, 0, 8 * block);
        REQUIRE(kept.ok());
        REQUIRE(::fstat(fd.get(), &st) == 0);
        CHECK(static_cast<std::uint64_t>(st.st_size) == 4 * block);
        CHECK(static_cast<std::uint64_t>(st.st_blocks) * 512 >= 8 * block);
        const auto blocks_before_punch = st.st_blocks;

        // Fill the file, then punch a hole in the second block: it reads back as zeros, the
        // size stays, the rest of the data is intact and fewer blocks are allocated.
        std::vector<std::byte> data = coil_test::pattern(4 * block);
        for (std::byte& b : data)
            b |= std::byte{1}; // no zero bytes, so zeros can only come from the hole
        coil::result<std::size_t> written = co_await coil::write(fd.get(), data, 0);
        REQUIRE(written.value() == data.size());
        coil::result<void> punched =
            co_await coil::fallocate(fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, block, block);
        if (!punched && is_error(punched.error(), std::errc::operation_not_supported))
            SKIP("the temp directory's file system cannot punch holes");
        REQUIRE(punched.ok());
        REQUIRE(::fstat(fd.get(), &st) == 0);
        CHECK(static_cast<std::uint64_t>(st.st_size) == 4 * block);
        CHECK(st.st_blocks < blocks_before_punch);

        // ZERO_RANGE zeroes the third block in place.
        coil::result<void> zeroed =
            co_await coil::fallocate(fd.get(), FALLOC_FL_ZERO_RANGE, 2 * block, block);
        if (!zeroed && is_error(zeroed.error(), std::errc::operation_not_supported))
            SKIP("the temp directory's file system cannot zero ranges");
        REQUIRE(zeroed.ok());

        std::vector<std::byte> back(4 * block);
        coil::result<std::size_t> got = co_await coil::read(fd.get(), back, 0);
        REQUIRE(got.value() == back.size());
        CHECK(std::equal(back.begin(), back.begin() + block, data.begin()));
        CHECK(std::all_of(back.begin() + block, back.begin() + 3 * block,
                          [](std::byte x) { return x == std::byte{0}; }));
        CHECK(std::equal(back.begin() + 3 * block, back.end(), data.begin() + 3 * block));

        // PUNCH_HOLE without KEEP_SIZE is invalid.
        coil::result<void> bad = co_await coil::fallocate(fd.get(), FALLOC_FL_PUNCH_HOLE, 0, block);
        CHECK(is_error(bad.error(), std::errc::operation_not_supported));
    };
    coil_test::run(body());
}

TEST_CASE("runtime: a poll on an eventfd yields POLLIN once it is written", "[runtime][poll]")
{
    auto efd = coil_test::make_eventfd();
    auto signaller = [&]() -> coil::task<void> {
        co_await coil::yield(); // the poll is armed by now (or about to be, in the same submit)
        std::uint64_t one = 1;
        REQUIRE(::write(efd.get(), &one, sizeof one) == sizeof one);
        co_return;
    };
    auto body = [&]() -> coil::task<coil::result<std::uint32_t>> {
        coil::join_handle<void> s = coil::executor::current()->spawn(signaller());
        coil::result<std::uint32_t> revents = co_await coil::poll(efd.get(), POLLIN);
        co_await s;
        co_return revents;
    };
    coil::result<std::uint32_t> revents = coil_test::run(body());
    REQUIRE(revents.ok());
    CHECK((*revents & POLLIN) != 0);

    // Already readable: the poll completes at once with POLLIN; POLLOUT is always ready.
    auto again = [&]() -> coil::task<std::pair<std::uint32_t, std::uint32_t>> {
        auto in = co_await coil::poll(efd.get(), POLLIN);
        auto out = co_await coil::poll(efd.get(), POLLOUT);
        REQUIRE(in.ok());
        REQUIRE(out.ok());
        co_return std::pair{*in, *out};
    };
    auto [in, out] = coil_test::run(again());
    CHECK((in & POLLIN) != 0);
    CHECK((out & POLLOUT) != 0);
}

TEST_CASE("runtime: a poll on a pipe whose writer closes yields POLLHUP, pending or armed after",
          "[runtime][poll]")
{
    const bool pending = GENERATE(true, false); // the poll waits when the writer goes, or not
    CAPTURE(pending);
    auto p = coil_test::make_pipe();
    auto closer = [&]() -> coil::task<void> {
        co_await coil::yield();
        p.write_end.reset();
        co_return;
    };
    auto body = [&]() -> coil::task<coil::result<std::uint32_t>> {
        if (!pending)
            p.write_end.reset();
        auto c = coil::executor::current()->spawn(closer());
        auto revents = co_await coil::poll(p.read_end.get(), POLLIN);
        co_await c;
        co_return revents;
    };
    const coil::result<std::uint32_t> revents = coil_test::run(body());
    REQUIRE(revents.ok());
    CHECK((*revents & POLLHUP) != 0);
    CHECK((*revents & POLLIN) == 0); // nothing to read: the end only
}

TEST_CASE("runtime: openat, statx and close work on a real file and report their errors",
          "[runtime][openat][statx][close]")
{
    coil_test::temp_dir dir;
    dir.create_file("present", bytes_of("twelve bytes"));
    const std::string present = dir.file("present");
    const std::string missing = dir.file("missing");

    auto body = [&]() -> coil::task<void> {
        coil::result<int> fd = co_await coil::openat(AT_FDCWD, present.c_str(), O_RDONLY | O_CLOEXEC);
        REQUIRE(fd.ok());
        CHECK(*fd >= 0);
        read_outcome r = co_await read_some(*fd, 64, 0);
        CHECK(r.data == "twelve bytes");

        struct ::statx by_path {};
        coil::result<void> path_ok =
            co_await coil::statx(AT_FDCWD, present.c_str(), 0, STATX_SIZE | STATX_TYPE, &by_path);
        REQUIRE(path_ok.ok());
        CHECK(by_path.stx_size == 12);
        CHECK(S_ISREG(by_path.stx_mode));
        struct ::statx by_fd {};
        coil::result<void> fd_ok = co_await coil::statx(*fd, "", AT_EMPTY_PATH, STATX_SIZE, &by_fd);
        REQUIRE(fd_ok.ok());
        CHECK(by_fd.stx_size == 12);

        coil::result<void> closed = co_await coil::close(*fd);
        INFO(closed.error().message());
        CHECK(closed.ok());
        // The descriptor is gone: a second close fails.
        coil::result<void> closed_again = co_await coil::close(*fd);
        CHECK(is_error(closed_again.error(), std::errc::bad_file_descriptor));

        coil::result<int> absent = co_await coil::openat(AT_FDCWD, missing.c_str(), O_RDONLY);
        REQUIRE_FALSE(absent.ok());
        CHECK(is_error(absent.error(), std::errc::no_such_file_or_directory));
        struct ::statx none {};
        coil::result<void> st = co_await coil::statx(AT_FDCWD, missing.c_str(), 0, STATX_SIZE, &none);
        CHECK(is_error(st.error(), std::errc::no_such_file_or_directory));

        // O_CREAT | O_EXCL on an existing file.
        coil::result<int> exists =
            co_await coil::openat(AT_FDCWD, present.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
        CHECK(is_error(exists.error(), std::errc::file_exists));
    };
    coil_test::run(body());
}

TEST_CASE("runtime: a nop completes successfully through the ring", "[runtime][nop]")
{
    coil::executor ex(coil_test::executor_options());
    const auto started_before = ex.stats().ops_started;
    auto body = []() -> coil::task<int> {
        int ok = 0;
        for (int i = 0; i < 100; ++i)
            ok += (co_await coil::nop()).ok() ? 1 : 0;
        co_return ok;
    };
    CHECK(ex.run(body()) == 100);
    CHECK(ex.stats().ops_started - started_before == 100);
    CHECK(ex.in_flight() == 0);
}

TEST_CASE("runtime: an operation awaited again once done runs again", "[runtime][read]")
{
    auto p = coil_test::make_pipe();
    coil::executor ex(coil_test::executor_options());
    auto body = [&]() -> coil::task<std::string> {
        std::array<std::byte, 8> buffer{};
        auto read_one = coil::read(p.read_end.get(), std::span(buffer).first(1));
        std::string seen;
        for (const char* text : {"a", "b", "c"}) {
            coil::result<std::size_t> w = co_await coil::write(p.write_end.get(), bytes_of(text));
            REQUIRE(w.ok());
            coil::result<std::size_t> n = co_await read_one; // the same awaiter, each time
            REQUIRE(n.ok());
            REQUIRE(*n == 1);
            seen += static_cast<char>(buffer[0]);
        }
        co_return seen;
    };
    CHECK(ex.run(body()) == "abc");
    CHECK(ex.in_flight() == 0);
}

TEST_CASE("runtime: yield makes no system call and a sleep queues no SQE of its own",
          "[runtime][sleep][yield]")
{
    coil::executor ex(coil_test::executor_options());
    struct counts {
        std::uint64_t enters_over_yields = 0;
        std::uint64_t sqes_over_yields = 0;
        std::uint64_t sqes_over_sleeps = 0;
    };
    auto body = [&]() -> coil::task<counts> {
        counts c;
        co_await coil::yield(); // the loop's own setup (its wake-up read) is done
        const coil::io::ring_stats before = ex.ring().stats();
        for (int i = 0; i < 1000; ++i)
            co_await coil::yield();
        const coil::io::ring_stats after_yields = ex.ring().stats();
        for (int i = 0; i < 20; ++i)
            (void)co_await coil::sleep_for(std::chrono::microseconds(100));
        const coil::io::ring_stats after_sleeps = ex.ring().stats();
        c.enters_over_yields = after_yields.enter_calls - before.enter_calls;
        c.sqes_over_yields = after_yields.sqes_submitted - before.sqes_submitted;
        c.sqes_over_sleeps = after_sleeps.sqes_submitted - after_yields.sqes_submitted;
        co_return c;
    };
    const counts c = ex.run(body());
    CHECK(c.enters_over_yields == 0);
    CHECK(c.sqes_over_yields == 0);
    CHECK(c.sqes_over_sleeps == 0); // the wait's own timeout bounds it (IORING_ENTER_EXT_ARG)
}

TEST_CASE("runtime: a sleep_for kept in a variable sleeps its whole duration at each co_await, "
          "counted from that co_await; a kept sleep_until waits for the same time point",
          "[runtime][sleep]")
{
    using clock = std::chrono::steady_clock;
    struct outcome {
        bool all_ok = false;
        clock::duration first{}, second{};
    };
    auto body = []() -> coil::task<outcome> {
        outcome o;
        auto sleep = coil::sleep_for(20ms);
        // Time passed between making the sleep and awaiting it does not count.
        std::this_thread::sleep_for(30ms);
        const auto t0 = clock::now();
        auto r1 = co_await sleep;
        const auto t1 = clock::now();
        auto r2 = co_await sleep; // runs anew
        const auto t2 = clock::now();
        auto until = coil::sleep_until(clock::now() + 5ms);
        auto r3 = co_await until;
        auto r4 = co_await until; // the time point has passed: at once
        o.all_ok = r1.ok() && r2.ok() && r3.ok() && r4.ok();
        o.first = t1 - t0;
        o.second = t2 - t1;
        co_return o;
    };
    const outcome o = coil_test::run(body());
    CHECK(o.all_ok);
    // Lower bounds only: a timer never fires before its time.
    CHECK(o.first >= 20ms);
    CHECK(o.second >= 20ms);
}

TEST_CASE("runtime: sleep_for and sleep_until complete successfully, not before their time",
          "[runtime][sleep]")
{
    using clock = std::chrono::steady_clock;
    struct outcome {
        std::vector<bool> ok;
        bool slept_long_enough = false;
        bool woke_after_deadline = false;
    };
    auto body = []() -> coil::task<outcome> {
        outcome out;
        const clock::time_point before = clock::now();
        out.ok.push_back((co_await coil::sleep_for(2ms)).ok());
        out.slept_long_enough = clock::now() - before >= 2ms;
        out.ok.push_back((co_await coil::sleep_for(0ns)).ok());
        const clock::time_point deadline = clock::now() + 2ms;
        out.ok.push_back((co_await coil::sleep_until(deadline)).ok());
        out.woke_after_deadline = clock::now() >= deadline;
        // A deadline in the past fires at once.
        out.ok.push_back((co_await coil::sleep_until(clock::now() - 1s)).ok());
        co_return out;
    };
    outcome out = coil_test::run(body());
    CHECK(out.ok == std::vector<bool>{true, true, true, true});
    // Not a measure of speed: a timer on CLOCK_MONOTONIC (steady_clock's clock) never fires
    // before its time, whatever the load, so these can only fail if the sleep did not sleep.
    CHECK(out.slept_long_enough);
    CHECK(out.woke_after_deadline);
}
