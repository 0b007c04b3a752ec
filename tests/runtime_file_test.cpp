// SPDX-License-Identifier: MIT
// coil::file: create, open, exact reads and writes, size, stat, allocate, punch_hole and close.

#include "runtime_test_support.hpp"
#include "test_executor.hpp"

#include <coil/coil.hpp>

#include <catch2/catch_test_macros.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

namespace {

bool is_error(const std::error_code& ec, std::errc e) { return ec == std::make_error_code(e); }

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
