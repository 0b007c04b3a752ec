// SPDX-License-Identifier: MIT
// File-system ops through the ring core: openat, statx and close on a temporary file.

#include "ring_test_support.hpp"

#include <coil/io/ring.hpp>

#include <catch2/catch_test_macros.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <string>
#include <vector>

using coil::io::ring;
using namespace coil_test;

TEST_CASE("ring: openat, statx, read and close round-trip a temporary file", "[ring][file]")
{
    temp_dir dir;
    std::vector<std::byte> contents = filled(1234, 0x61);
    dir.create_file("data", contents).reset();
    const std::string path = (dir.path() / "data").string();

    ring ring(4);
    REQUIRE_FALSE(ring.add_openat(AT_FDCWD, path.c_str(), O_RDONLY | O_CLOEXEC, 0, 1));
    auto opened = collect(ring, 1);
    REQUIRE(opened.size() == 1);
    CHECK(opened[0].user_data == 1);
    REQUIRE(opened[0].result >= 0);
    const int fd = opened[0].result;
    unique_fd guard(fd); // closes it if an assertion below fails first

    struct statx by_path{};
    struct statx by_fd{};
    REQUIRE_FALSE(ring.add_statx(AT_FDCWD, path.c_str(), 0, STATX_SIZE | STATX_TYPE, &by_path, 2));
    REQUIRE_FALSE(ring.add_statx(fd, "", AT_EMPTY_PATH, STATX_SIZE, &by_fd, 3));
    std::array<std::byte, 2048> buffer{};
    REQUIRE_FALSE(ring.add_read(fd, buffer, 0, 4));
    auto done = collect(ring, 3);
    REQUIRE(done.size() == 3);
    for (const coil::io::completion& c : done) {
        if (c.user_data == 4)
            CHECK(c.result == 1234);
        else
            CHECK(c.result == 0);
    }
    CHECK(by_path.stx_size == 1234);
    CHECK(S_ISREG(by_path.stx_mode));
    CHECK(by_fd.stx_size == 1234);
    CHECK(std::equal(contents.begin(), contents.end(), buffer.begin()));

    REQUIRE_FALSE(ring.add_close(guard.release(), 5));
    auto closed = collect(ring, 1);
    REQUIRE(closed.size() == 1);
    CHECK(closed[0].user_data == 5);
    CHECK(closed[0].result == 0);
    errno = 0;
    CHECK(::fcntl(fd, F_GETFD) == -1);
    CHECK(errno == EBADF);
}

TEST_CASE("ring: openat of a missing file completes with -ENOENT", "[ring][file][error]")
{
    temp_dir dir;
    const std::string path = (dir.path() / "missing").string();
    ring ring(2);
    REQUIRE_FALSE(ring.add_openat(AT_FDCWD, path.c_str(), O_RDONLY | O_CLOEXEC, 0, 1));
    auto done = collect(ring, 1);
    REQUIRE(done.size() == 1);
    CHECK(done[0].result == -ENOENT);
    CHECK(done[0].error() == std::errc::no_such_file_or_directory);
}

TEST_CASE("ring: openat with O_CREAT makes a file with the given mode", "[ring][file]")
{
    temp_dir dir;
    const std::string path = (dir.path() / "created").string();
    ring ring(2);
    REQUIRE_FALSE(
        ring.add_openat(AT_FDCWD, path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640, 1));
    auto done = collect(ring, 1);
    REQUIRE(done.size() == 1);
    REQUIRE(done[0].result >= 0);
    unique_fd fd(done[0].result);
    struct stat st{};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    const mode_t mask = ::umask(0);
    ::umask(mask);
    CHECK((st.st_mode & 0777) == (0640 & ~mask));
}
