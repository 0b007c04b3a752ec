// SPDX-License-Identifier: MIT
// coil::file: create, open, exact reads and writes, size, stat, allocate, punch_hole, truncate,
// sync_range, advise and close; vectored exact reads and full writes; splice and tee; renaming over a file, directories, symbolic and hard links, removing them.

#include "runtime_test_support.hpp"
#include "test_executor.hpp"

#include <coil/coil.hpp>

#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/statfs.h>
#include <sys/uio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <linux/magic.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <optional>
#include <stop_token>
#include <tuple>
#include <string>
#include <vector>

namespace {

bool is_error(const std::error_code& ec, std::errc e) { return ec == std::make_error_code(e); }

// Runs `body` in a child process (a file size limit is a process's own) with SIGXFSZ ignored,
// and returns what it returned: 0 when every check in it held, else which one failed.
template <class Body>
int exit_code_in_child(Body body)
{
    std::fflush(nullptr);
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        std::signal(SIGXFSZ, SIG_IGN);
        ::_exit(body());
    }
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    REQUIRE(WIFEXITED(status));
    return WEXITSTATUS(status);
}

std::string contents_of(const std::string& path)
{
    coil_test::unique_fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    REQUIRE(fd.get() >= 0);
    return coil_test::read_to_end(fd.get());
}

} // namespace

TEST_CASE("runtime: a file written with write_all_at reads back exactly with read_exact_at",
          "[runtime][file]")
{
    coil_test::temp_dir dir;
    const std::string path = dir.file("exact");
    // Larger than one pipe or page, and an odd size, so the loops and offsets matter.
    const std::vector<std::byte> data = coil_test::pattern(3 * 1024 * 1024 + 17);

    auto body = [&]() -> coil::task<void> {
        coil::result<coil::file> created = co_await coil::file::create(path, 0600);
        REQUIRE(created.ok());
        coil::file f = std::move(*created);
        REQUIRE(f.is_open());

        coil::result<void> written = co_await f.write_all_at(data, 0);
        REQUIRE(written.ok());
        coil::result<std::uint64_t> size = co_await f.size();
        REQUIRE(size.ok());
        CHECK(*size == data.size());

        std::vector<std::byte> back(data.size());
        coil::result<void> read = co_await f.read_exact_at(back, 0);
        REQUIRE(read.ok());
        CHECK(back == data);

        // A window in the middle comes from its own offset.
        std::vector<std::byte> window(4096);
        coil::result<void> window_read = co_await f.read_exact_at(window, 1'000'003);
        REQUIRE(window_read.ok());
        CHECK(window == coil_test::pattern(4096, 1'000'003));

        coil::result<void> closed = co_await f.close();
        CHECK(closed.ok());
        CHECK_FALSE(f.is_open());
    };
    coil_test::run(body());

    // The bytes really are on disk, as seen by a plain read(2).
    coil_test::unique_fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    REQUIRE(fd.get() >= 0);
    std::vector<std::byte> raw(data.size());
    std::size_t done = 0;
    while (done < raw.size()) {
        ssize_t n = ::pread(fd.get(), raw.data() + done, raw.size() - done, static_cast<off_t>(done));
        REQUIRE(n > 0);
        done += static_cast<std::size_t>(n);
    }
    CHECK(raw == data);
}

TEST_CASE("runtime: read_exact_at past the end of a file fails with end_of_file", "[runtime][file]")
{
    coil_test::temp_dir dir;
    const std::string path = dir.file("short");
    dir.create_file("short", coil_test::pattern(100));

    auto body = [&]() -> coil::task<std::vector<std::error_code>> {
        coil::result<coil::file> f = co_await coil::file::open(path);
        REQUIRE(f.ok());
        std::vector<std::error_code> errors;
        std::vector<std::byte> buffer(64);
        // Straddles the end: 40 bytes exist, then the file ends.
        errors.push_back((co_await f->read_exact_at(buffer, 60)).error());
        // Entirely past the end.
        errors.push_back((co_await f->read_exact_at(buffer, 1000)).error());
        // Exactly up to the end succeeds.
        errors.push_back((co_await f->read_exact_at(buffer, 36)).error());
        CHECK(buffer == coil_test::pattern(64, 36));
        co_return errors;
    };
    std::vector<std::error_code> errors = coil_test::run(body());
    REQUIRE(errors.size() == 3);
    CHECK(errors[0] == coil::io::make_error_code(coil::io::errc::end_of_file));
    CHECK(errors[1] == coil::io::make_error_code(coil::io::errc::end_of_file));
    CHECK_FALSE(errors[2]);
    CHECK(errors[0].category().name() == std::string("coil.io"));
}

TEST_CASE("runtime: read_exact_at from current_position goes on at the file position after a short "
          "read",
          "[runtime][file]")
{
    coil_test::temp_dir dir;
    const std::string path = dir.file("position");
    dir.create_file("position", coil_test::pattern(100));
    coil_test::unique_fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    REQUIRE(fd.get() >= 0);
    REQUIRE(::lseek(fd.get(), 10, SEEK_SET) == 10);

    coil::file f(fd.release());
    std::vector<std::byte> exact(64);
    std::vector<std::byte> past(200, std::byte{0xee});
    auto body = [&]() -> coil::task<std::vector<std::error_code>> {
        std::vector<std::error_code> errors;
        errors.push_back((co_await f.read_exact_at(exact, coil::current_position)).error());
        // 26 bytes are left: the first read is short, and the next must read at the position
        // (the end), not at an offset computed from current_position's value.
        errors.push_back((co_await f.read_exact_at(past, coil::current_position)).error());
        co_return errors;
    };
    const std::vector<std::error_code> errors = coil_test::run(body());
    CHECK_FALSE(errors[0]);
    CHECK(exact == coil_test::pattern(64, 10));
    CHECK(errors[1] == coil::io::make_error_code(coil::io::errc::end_of_file));
    CHECK(std::vector<std::byte>(past.begin(), past.begin() + 26) == coil_test::pattern(26, 74));
    CHECK(std::all_of(past.begin() + 26, past.end(), [](std::byte b) { return b == std::byte{0xee}; }));
    CHECK(::lseek(f.native_handle(), 0, SEEK_CUR) == 100);

    // A pipe has no position: current_position reads what comes, in order.
    coil_test::pipe_fds pipe = coil_test::make_pipe();
    coil_test::write_fully(pipe.write_end.get(), coil_test::pattern(30));
    coil::file from_pipe(pipe.read_end.release());
    std::vector<std::byte> piped(30);
    CHECK(coil_test::run(from_pipe.read_exact_at(piped, coil::current_position)).ok());
    CHECK(piped == coil_test::pattern(30));
}

TEST_CASE("runtime: write_all_at to current_position goes on at the file position after a short "
          "write",
          "[runtime][file]")
{
    // A file size limit of 8 KiB makes a write of 8 KiB at position 4 KiB short (4 KiB), and the
    // next one fail with EFBIG. In a child: the limit is the process's.
    coil_test::temp_dir dir;
    const std::string path = dir.file("limited");
    dir.create_file("limited", std::vector<std::byte>(4096, std::byte{'H'}));
    const int failed = exit_code_in_child([&] {
        const rlimit limit{8192, 8192};
        const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
        if (fd < 0 || ::lseek(fd, 4096, SEEK_SET) != 4096 || ::setrlimit(RLIMIT_FSIZE, &limit) != 0)
            return 10;
        std::vector<std::byte> data(8192, std::byte{'a'});
        std::fill(data.begin() + 4096, data.end(), std::byte{'b'});
        coil::file f(fd);
        const coil::result<void> written =
            coil_test::run(f.write_all_at(data, coil::current_position));
        if (written.ok() || written.error() != std::errc::file_too_large)
            return 11;
        // The position is after the bytes written, as write(2) would leave it.
        return ::lseek(fd, 0, SEEK_CUR) == 8192 ? 0 : 12;
    });
    CHECK(failed == 0);
    // The first 4 KiB of the new bytes went after the old ones, and nothing else was written.
    CHECK(contents_of(path) == std::string(4096, 'H') + std::string(4096, 'a'));
}

TEST_CASE("runtime: write_all_at to current_position on an O_APPEND file leaves the position at "
          "the end, as write(2) does, also after a short write",
          "[runtime][file]")
{
    coil_test::temp_dir dir;
    const std::string path = dir.file("appended");
    dir.create_file("appended", std::vector<std::byte>(4000, std::byte{'H'}));
    const int failed = exit_code_in_child([&] {
        const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
        if (fd < 0)
            return 10;
        coil::file f(fd);
        // Without a limit: 1000 bytes appended, the position after them.
        const std::vector<std::byte> some(1000, std::byte{'a'});
        if (!coil_test::run(f.write_all_at(some, coil::current_position)).ok() ||
            ::lseek(fd, 0, SEEK_CUR) != 5000)
            return 11;
        // With one: 5000 of 20000 bytes fit, then EFBIG; the position is at the end still.
        const rlimit limit{10000, 10000};
        if (::lseek(fd, 0, SEEK_SET) != 0 || ::setrlimit(RLIMIT_FSIZE, &limit) != 0)
            return 12;
        const std::vector<std::byte> more(20000, std::byte{'b'});
        const coil::result<void> written =
            coil_test::run(f.write_all_at(more, coil::current_position));
        if (written.ok() || written.error() != std::errc::file_too_large)
            return 13;
        return ::lseek(fd, 0, SEEK_CUR) == 10000 ? 0 : 14;
    });
    CHECK(failed == 0);
    CHECK(contents_of(path) ==
          std::string(4000, 'H') + std::string(1000, 'a') + std::string(5000, 'b'));
}

TEST_CASE("runtime: file::allocate past the file size limit yields file_too_large and leaves "
          "the file as it was",
          "[runtime][file][fallocate]")
{
    coil_test::temp_dir dir;
    const std::string path = dir.file("limited");
    dir.create_file("limited", std::vector<std::byte>(4096, std::byte{'H'}));
    const int failed = exit_code_in_child([&] {
        const rlimit limit{64 * 1024, 64 * 1024};
        const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
        if (fd < 0 || ::setrlimit(RLIMIT_FSIZE, &limit) != 0)
            return 10;
        coil::file f(fd);
        auto allocate = [&](std::uint64_t length) -> coil::task<coil::result<void>> {
            co_return co_await f.allocate(0, length);
        };
        const coil::result<void> within = coil_test::run(allocate(32 * 1024));
        if (!within.ok() && within.error() == std::errc::operation_not_supported)
            return 77; // the temp directory's file system has no fallocate
        if (!within.ok())
            return 11;
        const coil::result<void> past = coil_test::run(allocate(1024 * 1024));
        if (past.ok() || past.error() != std::errc::file_too_large)
            return 12;
        struct ::stat st {};
        return ::fstat(fd, &st) == 0 && st.st_size == 32 * 1024 ? 0 : 13;
    });
    if (failed == 77)
        SKIP("the temp directory's file system does not support fallocate");
    CHECK(failed == 0);
}

TEST_CASE("runtime: file::open of a missing path yields no_such_file_or_directory", "[runtime][file]")
{
    coil_test::temp_dir dir;
    const std::string path = dir.file("absent");
    auto body = [&]() -> coil::task<std::error_code> {
        coil::result<coil::file> f = co_await coil::file::open(path);
        co_return f.error();
    };
    CHECK(is_error(coil_test::run(body()), std::errc::no_such_file_or_directory));
}

TEST_CASE("runtime: file::open with O_CREAT and no mode creates a file with create's mode, less "
          "the umask",
          "[runtime][file]")
{
    coil_test::temp_dir dir;
    const std::string path = dir.file("created");
    const mode_t umask_now = ::umask(022);
    auto body = [&]() -> coil::task<bool> {
        coil::result<coil::file> f =
            co_await coil::file::open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC);
        co_return f.ok();
    };
    const bool opened = coil_test::run(body());
    ::umask(umask_now);
    REQUIRE(opened);
    struct stat st {};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0644);
}

TEST_CASE("runtime: file::stat, allocate and punch_hole change what the kernel reports",
          "[runtime][file][fallocate]")
{
    coil_test::temp_dir dir;
    const std::string path = dir.file("sparse");
    constexpr std::uint64_t block = 64 * 1024;

    auto body = [&]() -> coil::task<void> {
        coil::result<coil::file> created = co_await coil::file::create(path, 0640);
        REQUIRE(created.ok());
        coil::file& f = *created;

        coil::result<struct ::statx> empty = co_await f.stat();
        REQUIRE(empty.ok());
        CHECK(empty->stx_size == 0);
        CHECK(S_ISREG(empty->stx_mode));

        coil::result<void> allocated = co_await f.allocate(0, 4 * block);
        if (!allocated && is_error(allocated.error(), std::errc::operation_not_supported))
            SKIP("the temp directory's file system does not support fallocate");
        REQUIRE(allocated.ok());
        coil::result<std::uint64_t> size = co_await f.size();
        REQUIRE(size.ok());
        CHECK(*size == 4 * block);

        std::vector<std::byte> data = coil_test::pattern(4 * block);
        for (std::byte& b : data)
            b |= std::byte{1}; // no zero bytes: zeros can only come from the hole
        coil::result<void> written = co_await f.write_all_at(data, 0);
        REQUIRE(written.ok());
        coil::result<void> synced = co_await f.fsync();
        REQUIRE(synced.ok());
        coil::result<struct ::statx> full = co_await f.stat();
        REQUIRE(full.ok());

        coil::result<void> punched = co_await f.punch_hole(block, 2 * block);
        if (!punched && is_error(punched.error(), std::errc::operation_not_supported))
            SKIP("the temp directory's file system cannot punch holes");
        REQUIRE(punched.ok());
        coil::result<struct ::statx> holed = co_await f.stat();
        REQUIRE(holed.ok());
        CHECK(holed->stx_size == 4 * block); // punch_hole keeps the size
        CHECK(holed->stx_blocks < full->stx_blocks);

        std::vector<std::byte> back(4 * block);
        coil::result<void> read = co_await f.read_exact_at(back, 0);
        REQUIRE(read.ok());
        CHECK(std::equal(back.begin(), back.begin() + block, data.begin()));
        CHECK(std::all_of(back.begin() + block, back.begin() + 3 * block,
                          [](std::byte b) { return b == std::byte{0}; }));
        CHECK(std::equal(back.begin() + 3 * block, back.end(), data.begin() + 3 * block));

        coil::result<void> zeroed = co_await f.zero_range(0, 10);
        if (zeroed.ok()) {
            std::vector<std::byte> head(11);
            coil::result<void> head_read = co_await f.read_exact_at(head, 0);
            REQUIRE(head_read.ok());
            CHECK(std::all_of(head.begin(), head.begin() + 10, [](std::byte b) { return b == std::byte{0}; }));
            CHECK(head[10] == data[10]);
        }

        coil::result<void> data_synced = co_await f.fdatasync();
        CHECK(data_synced.ok());
        coil::result<void> closed = co_await f.close();
        CHECK(closed.ok());
    };
    coil_test::run(body());
}

TEST_CASE("runtime: file::zero_range zeroes its range and keeps the rest and the size, and grows "
          "a file it runs past; on tmpfs it answers operation_not_supported and changes nothing",
          "[runtime][file][fallocate]")
{
    const bool on_tmpfs_path = GENERATE(false, true); // the temp directory, or /dev/shm
    CAPTURE(on_tmpfs_path);
    coil_test::temp_dir dir;
    const std::string where = on_tmpfs_path ? "/dev/shm" : dir.path();
    struct ::statfs fs{};
    REQUIRE(::statfs(where.c_str(), &fs) == 0);
    const bool tmpfs = fs.f_type == TMPFS_MAGIC;
    if (on_tmpfs_path && !tmpfs)
        SKIP("/dev/shm is not a tmpfs here");
    const std::string path = where + "/coil-zero-range-" + std::to_string(::getpid());
    std::vector<std::byte> data = coil_test::pattern(4096);
    for (std::byte& b : data)
        b |= std::byte{1}; // no zero bytes: zeros can only come from zero_range

    auto body = [&]() -> coil::task<std::error_code> {
        auto created = co_await coil::file::create(path, 0600);
        REQUIRE(created.ok());
        REQUIRE(::unlink(path.c_str()) == 0); // the open file is all the test needs
        REQUIRE((co_await created->write_all_at(data, 0)).ok());
        coil::result<void> zeroed = co_await created->zero_range(100, 200);
        std::vector<std::byte> back(data.size() + 1);
        auto n = co_await created->read_at(back, 0);
        REQUIRE(n.ok());
        CHECK(*n == data.size()); // the size stays
        back.resize(data.size());
        std::vector<std::byte> expected = data;
        if (zeroed.ok())
            std::fill(expected.begin() + 100, expected.begin() + 300, std::byte{0});
        CHECK(back == expected);
        if (zeroed.ok()) {
            // Past the end it grows the file to offset + length (punch_hole never does).
            coil::result<void> past = co_await created->zero_range(4000, 1000);
            REQUIRE(past.ok());
            struct ::stat st{};
            REQUIRE(::fstat(created->native_handle(), &st) == 0);
            CHECK(st.st_size == 5000);
        }
        co_return zeroed.ok() ? std::error_code() : zeroed.error();
    };
    const std::error_code e = coil_test::run(body());
    if (tmpfs) {
        CHECK(is_error(e, std::errc::operation_not_supported));
    } else {
        if (is_error(e, std::errc::operation_not_supported))
            SKIP("the temp directory's file system has no FALLOC_FL_ZERO_RANGE");
        CHECK_FALSE(e);
    }
}

TEST_CASE("runtime: file::open of a FIFO does not wait for the other end: read-only opens at "
          "once, write-only answers no_such_device_or_address while no reader has it open",
          "[runtime][file]")
{
    // io_uring opens without blocking first and does not retry these: unlike open(2), which
    // waits for the other end (docs/runtime.md).
    coil_test::temp_dir dir;
    const std::string fifo = dir.file("fifo");
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    const unsigned open_before = coil_test::open_descriptors();
    auto body = [&]() -> coil::task<std::pair<std::string, std::error_code>> {
        auto reader = co_await coil::file::open(fifo, O_RDONLY | O_CLOEXEC); // no writer yet
        REQUIRE(reader.ok());
        auto writer = co_await coil::file::open(fifo, O_WRONLY | O_CLOEXEC); // a reader now
        REQUIRE(writer.ok());
        auto wrote = co_await writer->write_at(coil_test::bytes_of("fifo"), coil::current_position);
        REQUIRE(wrote.ok());
        std::array<std::byte, 8> buffer{};
        auto n = co_await reader->read_at(buffer, coil::current_position);
        REQUIRE(n.ok());
        const std::string got(reinterpret_cast<const char*>(buffer.data()), *n);
        (void)co_await writer->close();
        (void)co_await reader->close();
        auto alone = co_await coil::file::open(fifo, O_WRONLY | O_CLOEXEC); // no reader
        co_return std::pair{got, alone ? std::error_code() : alone.error()};
    };
    const auto [got, alone_error] = coil_test::run(body());
    CHECK(got == "fifo");
    CHECK(is_error(alone_error, std::errc::no_such_device_or_address));
    CHECK(coil_test::open_descriptors() == open_before);
}

TEST_CASE("runtime: a file closes its descriptor when destroyed without close", "[runtime][file]")
{
    coil_test::temp_dir dir;
    const std::string path = dir.file("raii");
    auto body = [&]() -> coil::task<int> {
        coil::result<coil::file> f = co_await coil::file::create(path);
        REQUIRE(f.ok());
        co_return f->native_handle();
    };
    const int fd = coil_test::run(body());
    REQUIRE(fd >= 0);
    // The file object died with the coroutine frame; its descriptor is closed.
    CHECK(::fcntl(fd, F_GETFD) == -1);
    CHECK(errno == EBADF);

    // And a close through the ring leaves nothing to close twice.
    auto closer = [&]() -> coil::task<std::pair<bool, bool>> {
        coil::result<coil::file> f = co_await coil::file::open(path, O_RDONLY | O_CLOEXEC);
        REQUIRE(f.ok());
        coil::result<void> first = co_await f->close();
        coil::result<void> second = co_await f->close(); // fd -1: EBADF, not a stray close
        co_return std::pair{first.ok(), is_error(second.error(), std::errc::bad_file_descriptor)};
    };
    auto [first_ok, second_ebadf] = coil_test::run(closer());
    CHECK(first_ok);
    CHECK(second_ebadf);
}

TEST_CASE("runtime: a file destroyed in the loop turn that queued a write on it closes only "
          "after the write reached the kernel: a file opened next, which reuses the number, "
          "is not written",
          "[runtime][file][lifetime]")
{
    // The kernel looks a descriptor up when it issues the op, and the executor issues a turn's
    // SQEs at the end of the turn: closing at once would leave the write naming a number that
    // the open below takes over (found by an audit: "AAAA" landed in the second file).
    coil_test::temp_dir dir;
    const std::string first = dir.file("first");
    const std::string second = dir.file("second");
    coil::executor ex(coil_test::executor_options());
    coil::file a(dir.create_file("first").release());
    coil::file b;
    const int number = a.native_handle();
    int reused = -1;
    auto writer = [&]() -> coil::task<coil::result<std::size_t>> {
        co_return co_await a.write_at(coil_test::bytes_of("AAAA"), 0);
    };
    auto dropper = [&]() -> coil::task<void> {
        coil::file gone = std::move(a); // ~file in this turn, after the write was queued
        co_return;
    };
    auto opener = [&]() -> coil::task<void> {
        b = coil::file(::open(second.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
        reused = b.native_handle();
        co_return;
    };
    auto root = [&]() -> coil::task<coil::result<std::size_t>> {
        auto wrote = ex.spawn(writer()); // the three run in one loop turn, in this order
        auto dropped = ex.spawn(dropper());
        auto opened = ex.spawn(opener());
        co_await std::move(dropped);
        co_await std::move(opened);
        co_return co_await std::move(wrote);
    };
    coil::result<std::size_t> n = ex.run(root());
    REQUIRE(reused == number); // the number was free again when the open ran
    REQUIRE(n.ok());
    CHECK(*n == 4);
    CHECK(coil_test::read_to_end(coil_test::unique_fd(::open(first.c_str(), O_RDONLY)).get()) ==
          "AAAA");
    CHECK(coil_test::read_to_end(coil_test::unique_fd(::open(second.c_str(), O_RDONLY)).get())
              .empty());
}

TEST_CASE("runtime: file::close ends a read still pending on the descriptor, then closes it",
          "[runtime][file]")
{
    int fds[2];
    REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
    const int read_end = fds[0];
    auto body = [&]() -> coil::task<std::pair<std::error_code, bool>> {
        coil::file f(read_end);
        std::array<std::byte, 16> buffer{};
        auto reader = [&]() -> coil::task<std::error_code> {
            auto r = co_await f.read_at(buffer, coil::current_position);
            co_return r ? std::error_code() : r.error();
        };
        auto closer = [&]() -> coil::task<bool> {
            co_await coil::yield(); // the read is waiting for data that never comes
            coil::result<void> closed = co_await f.close();
            co_return closed.ok();
        };
        auto both = co_await coil::when_all(reader(), closer());
        co_return std::pair{std::get<0>(both), std::get<1>(both)};
    };
    const auto result = coil_test::run(body()); // before the fix: never returned
    CHECK(is_error(result.first, std::errc::operation_canceled));
    CHECK(result.second);
    CHECK(::fcntl(read_end, F_GETFD) == -1);
    CHECK(errno == EBADF);
    ::close(fds[1]);
}

TEST_CASE("runtime: file::close in a stopped task still closes the descriptor", "[runtime][file]")
{
    int fds[2];
    REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
    const int read_end = fds[0];
    auto closing = [&]() -> coil::task<bool> {
        coil::file f(read_end);
        coil::result<void> closed = co_await f.close(); // the ring's close is never queued
        co_return closed.ok();
    };
    std::stop_source stop;
    stop.request_stop();
    CHECK(coil_test::run(coil::with_stop_token(stop.get_token(), closing())));
    CHECK(::fcntl(read_end, F_GETFD) == -1);
    CHECK(errno == EBADF);
    ::close(fds[1]);
}

namespace {

// An error as read_whole reports it. Built with append: GCC 12 at -O3 warns (-Wrestrict, a
// false positive) about "<" + std::string.
std::string bracketed(const std::error_code& ec)
{
    std::string text("<");
    text.append(ec.message()).append(">");
    return text;
}

coil::task<std::string> read_whole(const std::string& path)
{
    auto f = co_await coil::file::open(path);
    if (!f)
        co_return bracketed(f.error());
    auto size = co_await f->size();
    std::string out(size ? *size : 0, '\0');
    auto read = co_await f->read_exact_at(std::as_writable_bytes(std::span(out)), 0);
    co_return read ? out : bracketed(read.error());
}

coil::task<coil::result<void>> write_whole(const std::string& path, std::string_view text)
{
    auto f = co_await coil::file::create(path);
    if (!f)
        co_return f.error();
    if (auto w = co_await f->write_all_at(std::as_bytes(std::span(text)), 0); !w)
        co_return w.error();
    if (auto s = co_await f->fdatasync(); !s)
        co_return s.error();
    co_return co_await f->close();
}

} // namespace

TEST_CASE("runtime: a file is replaced durably by writing a temporary and renaming it over; "
          "RENAME_NOREPLACE refuses and RENAME_EXCHANGE swaps",
          "[runtime][file][fs]")
{
    coil::io::ring probe(2);
    if (!probe.supports(coil::io::opcode::renameat))
        SKIP("this kernel's io_uring lacks renameat (Linux 5.11)");
    coil_test::temp_dir dir;
    const std::string target = dir.file("config");
    const std::string temporary = dir.file("config.tmp");
    const std::string other = dir.file("other");
    auto body = [&]() -> coil::task<std::vector<std::string>> {
        std::vector<std::string> seen;
        auto first = co_await write_whole(target, "old contents");
        auto second = co_await write_whole(temporary, "new contents");
        auto third = co_await write_whole(other, "other");
        REQUIRE(first);
        REQUIRE(second);
        REQUIRE(third);
        auto renamed = co_await coil::rename(temporary.c_str(), target.c_str());
        REQUIRE(renamed);
        seen.push_back(co_await read_whole(target));
        seen.push_back(co_await read_whole(temporary));
        auto refused = co_await coil::rename(other.c_str(), target.c_str(), RENAME_NOREPLACE);
        seen.push_back(refused ? "renamed" : refused.error().message());
        auto swapped = co_await coil::rename(other.c_str(), target.c_str(), RENAME_EXCHANGE);
        REQUIRE(swapped);
        seen.push_back(co_await read_whole(target));
        seen.push_back(co_await read_whole(other));
        co_return seen;
    };
    const auto seen = coil_test::run(body());
    REQUIRE(seen.size() == 5);
    CHECK(seen[0] == "new contents");
    CHECK(seen[1] == bracketed(std::make_error_code(std::errc::no_such_file_or_directory)));
    CHECK(seen[2] == std::make_error_code(std::errc::file_exists).message());
    CHECK(seen[3] == "other");
    CHECK(seen[4] == "new contents");
}

TEST_CASE("runtime: directories, symbolic and hard links are made and removed through the "
          "ring, with errno errors for what cannot be done",
          "[runtime][file][fs]")
{
    coil::io::ring probe(2);
    for (coil::io::opcode op : {coil::io::opcode::mkdirat, coil::io::opcode::symlinkat,
                                coil::io::opcode::linkat, coil::io::opcode::unlinkat}) {
        if (!probe.supports(op))
            SKIP("this kernel's io_uring lacks " << coil::io::to_string(op));
    }
    coil_test::temp_dir dir;
    const std::string sub = dir.file("sub");
    const std::string inner = dir.file("sub/file");
    const std::string link = dir.file("link");
    const std::string hard = dir.file("hard");
    auto error_of = [](const coil::result<void>& r) { return r ? std::error_code() : r.error(); };
    struct outcome {
        std::error_code made, again, write, not_empty, remove_dir_on_file, symlink, hard_link;
        std::error_code remove_inner, remove_dir, remove_missing, remove_link, remove_hard;
        std::string through_link;
        std::uint32_t links = 0;
    };
    auto body = [&]() -> coil::task<outcome> {
        outcome o;
        o.made = error_of(co_await coil::create_directory(sub.c_str(), 0750));
        o.again = error_of(co_await coil::create_directory(sub.c_str()));
        o.write = error_of(co_await write_whole(inner, "inside"));
        o.not_empty = error_of(co_await coil::remove_directory(sub.c_str()));
        o.remove_dir_on_file = error_of(co_await coil::remove_directory(inner.c_str()));
        o.symlink = error_of(co_await coil::create_symlink("sub/file", link.c_str()));
        o.through_link = co_await read_whole(link);
        o.hard_link = error_of(co_await coil::create_hard_link(inner.c_str(), hard.c_str()));
        auto f = co_await coil::file::open(inner);
        REQUIRE(f);
        auto st = co_await f->stat();
        REQUIRE(st);
        o.links = st->stx_nlink;
        o.remove_inner = error_of(co_await coil::remove_file(inner.c_str()));
        o.remove_dir = error_of(co_await coil::remove_directory(sub.c_str()));
        o.remove_missing = error_of(co_await coil::remove_file(inner.c_str()));
        o.remove_link = error_of(co_await coil::remove_file(link.c_str()));
        o.remove_hard = error_of(co_await coil::remove_file(hard.c_str()));
        co_return o;
    };
    const outcome o = coil_test::run(body());
    CHECK_FALSE(o.made);
    CHECK(is_error(o.again, std::errc::file_exists));
    CHECK_FALSE(o.write);
    CHECK(is_error(o.not_empty, std::errc::directory_not_empty));
    CHECK(is_error(o.remove_dir_on_file, std::errc::not_a_directory));
    CHECK_FALSE(o.symlink);
    CHECK(o.through_link == "inside");
    CHECK_FALSE(o.hard_link);
    CHECK(o.links == 2);
    CHECK_FALSE(o.remove_inner);
    CHECK_FALSE(o.remove_dir);
    CHECK(is_error(o.remove_missing, std::errc::no_such_file_or_directory));
    CHECK_FALSE(o.remove_link);
    CHECK_FALSE(o.remove_hard);
    struct stat st{};
    CHECK(::stat(sub.c_str(), &st) == -1);
    CHECK(::lstat(link.c_str(), &st) == -1);
}

TEST_CASE("runtime: file::truncate shrinks and grows a file, also through a registered slot, "
          "and refuses a file not open for writing",
          "[runtime][file][fs]")
{
    coil_test::temp_dir dir;
    const std::string path = dir.file("data");
    coil::executor_options options;
    options.file_slots = 4;
    coil::executor ex(coil_test::executor_options(options));
    struct outcome {
        std::uint64_t shrunk = 0, grown = 0, slot_size = 0;
        std::string head, tail;
        std::error_code read_only;
    };
    auto body = [&]() -> coil::task<outcome> {
        outcome o;
        auto written = co_await write_whole(path, "0123456789");
        REQUIRE(written);
        auto f = co_await coil::file::open(path, O_RDWR | O_CLOEXEC);
        REQUIRE(f);
        auto shrink = co_await f->truncate(4);
        REQUIRE(shrink);
        o.shrunk = (co_await f->size()).value();
        auto grow = co_await f->truncate(16);
        REQUIRE(grow);
        o.grown = (co_await f->size()).value();
        std::string all(16, 'x');
        auto read = co_await f->read_exact_at(std::as_writable_bytes(std::span(all)), 0);
        REQUIRE(read);
        o.head = all.substr(0, 4);
        o.tail = all.substr(4);
        auto registered = f->register_slot();
        REQUIRE(registered);
        auto through_slot = co_await f->truncate(1);
        REQUIRE(through_slot);
        o.slot_size = (co_await f->size()).value();
        f->unregister_slot();
        auto reader = co_await coil::file::open(path);
        REQUIRE(reader);
        auto refused = co_await reader->truncate(0);
        o.read_only = refused ? std::error_code() : refused.error();
        co_return o;
    };
    const outcome o = ex.run(body());
    CHECK(o.shrunk == 4);
    CHECK(o.grown == 16);
    CHECK(o.head == "0123");
    CHECK(o.tail == std::string(12, '\0'));
    CHECK(o.slot_size == 1);
    CHECK(is_error(o.read_only, std::errc::invalid_argument));
}

TEST_CASE("runtime: file::sync_range writes out its range, coil::sync_file_range reports bad "
          "input as errors",
          "[runtime][file]")
{
    coil_test::temp_dir dir;
    const std::string path = dir.file("data");
    coil::executor ex(coil_test::executor_options());
    constexpr std::uint64_t far = 1 << 20;
    struct outcome {
        std::optional<coil_test::page_cache_counts> before, synced, untouched;
        std::error_code too_long, bad_flags, pipe;
    };
    coil_test::pipe_fds pipe = coil_test::make_pipe();
    auto body = [&]() -> coil::task<outcome> {
        outcome o;
        auto f = co_await coil::file::open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        REQUIRE(f);
        const std::vector<std::byte> data(64 * 1024, std::byte{0x33});
        auto first = co_await f->write_all_at(data, 0);
        REQUIRE(first);
        auto second = co_await f->write_all_at(data, far);
        REQUIRE(second);
        o.before = coil_test::page_cache_state(f->native_handle(), 0, data.size());
        auto synced = co_await f->sync_range(0, data.size(),
                                             SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                                                 SYNC_FILE_RANGE_WAIT_AFTER);
        REQUIRE(synced);
        o.synced = coil_test::page_cache_state(f->native_handle(), 0, data.size());
        o.untouched = coil_test::page_cache_state(f->native_handle(), far, data.size());
        // Started only (the default flags): succeeds, whatever the disk's pace.
        auto started = co_await f->sync_range(far, 0);
        REQUIRE(started);
        auto too_long = co_await f->sync_range(0, std::uint64_t{1} << 32);
        o.too_long = too_long ? std::error_code() : too_long.error();
        auto bad_flags = co_await coil::sync_file_range(f->native_handle(), 0, 0, 0x80);
        o.bad_flags = bad_flags ? std::error_code() : bad_flags.error();
        auto on_pipe = co_await coil::sync_file_range(pipe.write_end.get(), 0, 0);
        o.pipe = on_pipe ? std::error_code() : on_pipe.error();
        co_return o;
    };
    const outcome o = ex.run(body());
    CHECK(is_error(o.too_long, std::errc::invalid_argument));
    CHECK(is_error(o.bad_flags, std::errc::invalid_argument));
    CHECK(is_error(o.pipe, std::errc::invalid_seek));
    if (!o.before)
        SKIP("no cachestat(2) (Linux 6.5) to see which pages are dirty");
    if (o.before->dirty == 0)
        SKIP("this file system keeps no dirty pages for the test to watch (tmpfs?)");
    REQUIRE(o.synced);
    REQUIRE(o.untouched);
    CHECK(o.synced->dirty == 0);
    CHECK(o.synced->writeback == 0);
    CHECK(o.untouched->dirty > 0);
}

TEST_CASE("runtime: file::advise(DONTNEED) drops the file's pages from the page cache; bad advice "
          "is an error",
          "[runtime][file]")
{
    coil_test::temp_dir dir;
    const std::string path = dir.file("data");
    coil::executor ex(coil_test::executor_options());
    struct outcome {
        std::optional<coil_test::page_cache_counts> before, after;
        std::error_code bad_advice;
        bool intact = false;
    };
    auto body = [&]() -> coil::task<outcome> {
        outcome o;
        auto f = co_await coil::file::open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        REQUIRE(f);
        const std::vector<std::byte> data(64 * 1024, std::byte{0x44});
        auto written = co_await f->write_all_at(data, 0);
        REQUIRE(written);
        auto synced = co_await f->fdatasync();
        REQUIRE(synced);
        o.before = coil_test::page_cache_state(f->native_handle(), 0, data.size());
        auto dropped = co_await f->advise(0, 0, POSIX_FADV_DONTNEED);
        REQUIRE(dropped);
        o.after = coil_test::page_cache_state(f->native_handle(), 0, data.size());
        std::vector<std::byte> back(data.size());
        auto read = co_await f->read_exact_at(back, 0);
        o.intact = read && back == data;
        auto bad = co_await f->advise(0, 0, 99);
        o.bad_advice = bad ? std::error_code() : bad.error();
        co_return o;
    };
    const outcome o = ex.run(body());
    CHECK(o.intact);
    CHECK(is_error(o.bad_advice, std::errc::invalid_argument));
    if (!o.before)
        SKIP("no cachestat(2) (Linux 6.5) to see which pages are cached");
    REQUIRE(o.after);
    CHECK(o.before->cached == 16);
    CHECK(o.after->cached == 0);
}

TEST_CASE("runtime: coil::splice moves a file range into a socket through a pipe, coil::tee "
          "copies a pipe",
          "[runtime][file][splice]")
{
    coil_test::temp_dir dir;
    const std::string path = dir.file("data");
    std::string contents(200 * 1024, '\0');
    for (std::size_t i = 0; i < contents.size(); ++i)
        contents[i] = static_cast<char>('a' + i % 26);
    {
        coil_test::unique_fd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
        REQUIRE(::write(fd.get(), contents.data(), contents.size()) ==
                static_cast<ssize_t>(contents.size()));
    }
    int sockets[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sockets) == 0);
    coil_test::unique_fd sender(sockets[0]);
    coil_test::unique_fd receiver(sockets[1]);
    coil_test::pipe_fds pipe = coil_test::make_pipe();
    coil_test::pipe_fds copy = coil_test::make_pipe();
    coil::executor ex(coil_test::executor_options());

    // 100,000 bytes from offset 1,000, a pipeful at a time (the pipe holds 64 KiB), while
    // another task reads them off the socket.
    constexpr std::uint64_t first = 1000, length = 100'000;
    auto send = [&]() -> coil::task<std::error_code> {
        auto f = co_await coil::file::open(path);
        REQUIRE(f);
        std::uint64_t offset = first, left = length;
        while (left > 0) {
            const auto step = static_cast<std::uint32_t>(std::min<std::uint64_t>(left, 65536));
            auto in = co_await coil::splice(f->native_handle(), offset, pipe.write_end.get(),
                                            coil::current_position, step);
            if (!in)
                co_return in.error();
            REQUIRE(*in > 0);
            offset += *in;
            left -= *in;
            for (std::size_t queued = *in; queued > 0;) {
                auto out = co_await coil::splice(pipe.read_end.get(), coil::current_position,
                                                 sender.get(), coil::current_position,
                                                 static_cast<std::uint32_t>(queued));
                if (!out)
                    co_return out.error();
                queued -= *out;
            }
        }
        co_return std::error_code();
    };
    auto receive = [&]() -> coil::task<std::string> {
        std::string got;
        std::array<char, 8192> chunk{};
        while (got.size() < length) {
            auto n = co_await coil::read(receiver.get(), std::as_writable_bytes(std::span(chunk)));
            REQUIRE(n);
            REQUIRE(*n > 0);
            got.append(chunk.data(), *n);
        }
        co_return got;
    };
    auto both = [&]() -> coil::task<std::tuple<std::error_code, std::string>> {
        co_return co_await coil::when_all(send(), receive());
    };
    const auto [sent, received] = ex.run(both());
    CHECK_FALSE(sent);
    CHECK(received == contents.substr(first, length));

    // tee: the bytes land in the second pipe and stay in the first.
    auto tee = [&]() -> coil::task<coil::result<std::size_t>> {
        co_return co_await coil::tee(pipe.read_end.get(), copy.write_end.get(), 1024);
    };
    REQUIRE(::write(pipe.write_end.get(), "hello", 5) == 5);
    const auto teed = ex.run(tee());
    REQUIRE(teed);
    CHECK(*teed == 5);
    auto read5 = [](int fd) {
        std::string got(5, '\0');
        REQUIRE(::read(fd, got.data(), got.size()) == 5);
        return got;
    };
    CHECK(read5(pipe.read_end.get()) == "hello");
    CHECK(read5(copy.read_end.get()) == "hello");
    // Neither side of a splice a pipe: invalid_argument.
    auto bad = [&]() -> coil::task<coil::result<std::size_t>> {
        co_return co_await coil::splice(sender.get(), coil::current_position, receiver.get(),
                                        coil::current_position, 16);
    };
    const auto refused = ex.run(bad());
    REQUIRE_FALSE(refused);
    CHECK(is_error(refused.error(), std::errc::invalid_argument));
}

namespace {

// iovecs over consecutive pieces of `bytes`, of the given sizes (0: an empty entry).
std::vector<::iovec> pieces(std::vector<std::byte>& bytes, const std::vector<std::size_t>& sizes)
{
    std::vector<::iovec> out;
    std::size_t at = 0;
    for (std::size_t n : sizes) {
        out.push_back({bytes.data() + at, n});
        at += n;
    }
    REQUIRE(at == bytes.size());
    return out;
}

} // namespace

TEST_CASE("runtime: writev_all_at and readv_exact_at move every byte of every entry, in order",
          "[runtime][file][vectored]")
{
    coil_test::temp_dir dir;
    const std::string path = dir.file("vectored");
    std::vector<std::byte> out = coil_test::pattern(10'000);
    // Entries of odd sizes, with empty ones at the start, in the middle and at the end.
    std::vector<::iovec> out_vec = pieces(out, {0, 1, 4095, 0, 3000, 17, 2887, 0});
    std::vector<std::byte> in(10'000);
    std::vector<::iovec> in_vec = pieces(in, {0, 5000, 0, 1, 4999});
    // More entries than one op takes (IOV_MAX is 1024): 1,500 entries of 4 bytes.
    std::vector<std::byte> many_out = coil_test::pattern(6'000, 77);
    std::vector<::iovec> many_out_vec = pieces(many_out, std::vector<std::size_t>(1500, 4));
    std::vector<std::byte> many_in(6'000);
    std::vector<::iovec> many_in_vec = pieces(many_in, std::vector<std::size_t>(1500, 4));
    std::vector<std::byte> past(100);
    std::vector<::iovec> past_vec = pieces(past, {60, 40});
    struct outcome {
        std::error_code wrote, read, wrote_many, read_many, past_end, positioned, slot_wrote,
            slot_read;
        std::uint64_t size = 0;
        off_t position = 0;
        bool slot_intact = false;
    };
    auto body = [&]() -> coil::task<outcome> {
        outcome o;
        auto f = co_await coil::file::open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        REQUIRE(f);
        o.wrote = (co_await f->writev_all_at(out_vec, 100)).error();
        o.read = (co_await f->readv_exact_at(in_vec, 100)).error();
        o.wrote_many = (co_await f->writev_all_at(many_out_vec, 20'000)).error();
        o.read_many = (co_await f->readv_exact_at(many_in_vec, 20'000)).error();
        o.size = (co_await f->size()).value();
        // 100 bytes asked, 40 left before the end of the file.
        o.past_end = (co_await f->readv_exact_at(past_vec, o.size - 40)).error();
        // From the file position, which ends after the bytes moved.
        REQUIRE(::lseek(f->native_handle(), 0, SEEK_SET) == 0);
        std::vector<std::byte> head = coil_test::pattern(50, 3);
        std::vector<::iovec> head_vec = pieces(head, {20, 30});
        o.positioned = (co_await f->writev_all_at(head_vec, coil::current_position)).error();
        o.position = ::lseek(f->native_handle(), 0, SEEK_CUR);
        // Through the executor's registered file table (IOSQE_FIXED_FILE).
        auto slot = f->register_slot();
        REQUIRE(slot);
        std::vector<std::byte> tail = coil_test::pattern(30, 9);
        std::vector<::iovec> tail_vec = pieces(tail, {10, 20});
        o.slot_wrote = (co_await f->writev_all_at(tail_vec, 26'000)).error();
        std::vector<std::byte> tail_back(30);
        std::vector<::iovec> tail_back_vec = pieces(tail_back, {29, 1});
        o.slot_read = (co_await f->readv_exact_at(tail_back_vec, 26'000)).error();
        o.slot_intact = tail_back == tail;
        co_return o;
    };
    coil::executor_options options;
    options.file_slots = 2;
    coil::executor ex(coil_test::executor_options(options));
    const outcome o = ex.run(body());
    CHECK_FALSE(o.slot_wrote);
    CHECK_FALSE(o.slot_read);
    CHECK(o.slot_intact);
    CHECK_FALSE(o.wrote);
    CHECK_FALSE(o.read);
    CHECK(in == out);
    CHECK_FALSE(o.wrote_many);
    CHECK_FALSE(o.read_many);
    CHECK(many_in == many_out);
    CHECK(o.size == 26'000);
    CHECK(o.past_end == coil::io::make_error_code(coil::io::errc::end_of_file));
    CHECK(std::vector<std::byte>(past.begin(), past.begin() + 40) ==
          std::vector<std::byte>(many_out.end() - 40, many_out.end()));
    CHECK_FALSE(o.positioned);
    CHECK(o.position == 50);
    const std::string on_disk = contents_of(path);
    CHECK(std::memcmp(on_disk.data(), coil_test::pattern(50, 3).data(), 50) == 0);
    CHECK(std::memcmp(on_disk.data() + 100, out.data(), out.size()) == 0);
}

TEST_CASE("runtime: readv_exact_at on a pipe fills its entries across short reads",
          "[runtime][file][vectored]")
{
    // The writer sends 7 bytes at a time and yields in between: every readv returns short,
    // most of them ending inside an entry.
    coil_test::pipe_fds pipe = coil_test::make_pipe();
    const std::vector<std::byte> sent = coil_test::pattern(999, 11);
    std::vector<std::byte> got(999);
    std::vector<::iovec> got_vec = pieces(got, {10, 0, 500, 1, 488});
    coil::file reader(pipe.read_end.release());
    auto write_slowly = [&]() -> coil::task<void> {
        for (std::size_t at = 0; at < sent.size(); at += 7) {
            const std::size_t n = std::min<std::size_t>(7, sent.size() - at);
            auto w = co_await coil::write(pipe.write_end.get(), std::span(sent).subspan(at, n));
            REQUIRE(w);
            REQUIRE(*w == n);
            co_await coil::yield();
        }
    };
    auto both = [&]() -> coil::task<std::error_code> {
        auto [read, written] = co_await coil::when_all(
            reader.readv_exact_at(got_vec, coil::current_position), write_slowly());
        (void)written;
        co_return read.error();
    };
    coil::executor ex(coil_test::executor_options());
    CHECK_FALSE(ex.run(both()));
    CHECK(got == sent);
}
