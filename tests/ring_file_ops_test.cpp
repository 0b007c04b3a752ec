// SPDX-License-Identifier: MIT
// File-system ops through the ring core: openat, statx and close on a temporary file; mkdirat,
// symlinkat, linkat, renameat and unlinkat in a directory; ftruncate; sync_file_range and fadvise; splice and tee.

#include "ring_test_support.hpp"

#include <coil/io/ring.hpp>

#include <catch2/catch_test_macros.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <limits>
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

namespace {

// Queues the op `add` makes with user_data 1, waits for it, and yields its result.
template <class Add>
int run_one(ring& r, Add add)
{
    REQUIRE_FALSE(add(r));
    auto done = collect(r, 1);
    REQUIRE(done.size() == 1);
    CHECK(done[0].user_data == 1);
    return done[0].result;
}

} // namespace

TEST_CASE("ring: mkdirat, symlinkat, linkat, renameat and unlinkat change the directory tree, "
          "relative to a directory descriptor",
          "[ring][file]")
{
    ring r(4);
    for (coil::io::opcode op : {coil::io::opcode::mkdirat, coil::io::opcode::symlinkat,
                                coil::io::opcode::linkat, coil::io::opcode::renameat,
                                coil::io::opcode::unlinkat}) {
        if (!r.supports(op))
            SKIP("this kernel's io_uring lacks " << coil::io::to_string(op));
    }
    temp_dir dir;
    dir.create_file("file", filled(10, 0x41)).reset();
    unique_fd at(::open(dir.path().c_str(), O_DIRECTORY | O_RDONLY | O_CLOEXEC));
    REQUIRE(at.get() >= 0);
    const int d = at.get();
    auto exists = [&](const char* name) {
        struct stat st{};
        return ::fstatat(d, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
    };

    CHECK(run_one(r, [&](ring& q) { return q.add_mkdirat(d, "sub", 0750, 1); }) == 0);
    struct stat sub{};
    REQUIRE(::fstatat(d, "sub", &sub, 0) == 0);
    CHECK(S_ISDIR(sub.st_mode));
    CHECK(run_one(r, [&](ring& q) { return q.add_mkdirat(d, "sub", 0750, 1); }) == -EEXIST);

    CHECK(run_one(r, [&](ring& q) { return q.add_symlinkat("file", d, "sym", 1); }) == 0);
    std::array<char, 64> target{};
    CHECK(::readlinkat(d, "sym", target.data(), target.size()) == 4);
    CHECK(std::string(target.data()) == "file");

    CHECK(run_one(r, [&](ring& q) { return q.add_linkat(d, "file", d, "sub/hard", 0, 1); }) == 0);
    struct stat file{};
    REQUIRE(::fstatat(d, "file", &file, 0) == 0);
    CHECK(file.st_nlink == 2);

    CHECK(run_one(r, [&](ring& q) { return q.add_renameat(d, "file", d, "moved", 0, 1); }) == 0);
    CHECK_FALSE(exists("file"));
    CHECK(exists("moved"));
    // RENAME_NOREPLACE refuses to replace; plain rename replaces.
    CHECK(run_one(r, [&](ring& q) {
              return q.add_renameat(d, "moved", d, "sub/hard", RENAME_NOREPLACE, 1);
          }) == -EEXIST);

    CHECK(run_one(r, [&](ring& q) { return q.add_unlinkat(d, "sub", AT_REMOVEDIR, 1); }) ==
          -ENOTEMPTY);
    CHECK(run_one(r, [&](ring& q) { return q.add_unlinkat(d, "sub/hard", 0, 1); }) == 0);
    CHECK(run_one(r, [&](ring& q) { return q.add_unlinkat(d, "sub", AT_REMOVEDIR, 1); }) == 0);
    CHECK(run_one(r, [&](ring& q) { return q.add_unlinkat(d, "sym", 0, 1); }) == 0);
    CHECK(run_one(r, [&](ring& q) { return q.add_unlinkat(d, "missing", 0, 1); }) == -ENOENT);
    CHECK_FALSE(exists("sub"));
    CHECK_FALSE(exists("sym"));
    CHECK(exists("moved"));
}

TEST_CASE("ring: ftruncate (Linux 6.9, coil's own SQE) shrinks and grows a file", "[ring][file]")
{
    ring r(4);
    if (!r.supports(coil::io::opcode::ftruncate))
        SKIP("this kernel's io_uring lacks ftruncate (Linux 6.9)");
    temp_dir dir;
    unique_fd fd = dir.create_file("data", filled(8192, 0x61));
    auto size = [&] {
        struct stat st{};
        REQUIRE(::fstat(fd.get(), &st) == 0);
        return st.st_size;
    };
    CHECK(run_one(r, [&](ring& q) { return q.add_ftruncate(fd.get(), 100, 1); }) == 0);
    CHECK(size() == 100);
    CHECK(run_one(r, [&](ring& q) { return q.add_ftruncate(fd.get(), 1 << 20, 1); }) == 0);
    CHECK(size() == 1 << 20);
    std::array<char, 4> tail{'x', 'x', 'x', 'x'};
    CHECK(::pread(fd.get(), tail.data(), tail.size(), (1 << 20) - 4) == 4);
    CHECK(tail == std::array<char, 4>{0, 0, 0, 0}); // grown: reads back as zeros
    unique_fd read_only(::open((dir.path() / "data").c_str(), O_RDONLY | O_CLOEXEC));
    CHECK(run_one(r, [&](ring& q) { return q.add_ftruncate(read_only.get(), 0, 1); }) == -EINVAL);
    CHECK(size() == 1 << 20);
}

TEST_CASE("ring: sync_file_range writes out the dirty pages of its range and no others",
          "[ring][file]")
{
    ring r(4);
    temp_dir dir;
    unique_fd fd(::open(dir.file("data").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    REQUIRE(fd.get() >= 0);
    // Two ranges 1 MiB apart, both written through the page cache and so dirty.
    const std::vector<std::byte> data = filled(64 * 1024, 0x5a);
    constexpr std::uint64_t far = 1 << 20;
    REQUIRE(::pwrite(fd.get(), data.data(), data.size(), 0) == static_cast<ssize_t>(data.size()));
    REQUIRE(::pwrite(fd.get(), data.data(), data.size(), far) == static_cast<ssize_t>(data.size()));
    auto before = page_cache_state(fd.get(), 0, data.size());
    if (!before)
        SKIP("no cachestat(2) (Linux 6.5) to see which pages are dirty");
    if (before->dirty == 0)
        SKIP("this file system keeps no dirty pages for the test to watch (tmpfs?)");

    // Write out the first range and wait for it: its pages are clean, the far range's are not.
    constexpr unsigned write_and_wait =
        SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER;
    CHECK(run_one(r, [&](ring& q) {
              return q.add_sync_file_range(fd.get(), 0, data.size(), write_and_wait, 1);
          }) == 0);
    auto first = page_cache_state(fd.get(), 0, data.size());
    auto second = page_cache_state(fd.get(), far, data.size());
    REQUIRE(first);
    REQUIRE(second);
    CHECK(first->dirty == 0);
    CHECK(first->writeback == 0);
    CHECK(first->cached == data.size() / 4096); // written out, still cached
    CHECK(second->dirty > 0);

    // Length 0 runs to the end of the file: the far range too.
    CHECK(run_one(r, [&](ring& q) {
              return q.add_sync_file_range(fd.get(), far, 0, write_and_wait, 1);
          }) == 0);
    second = page_cache_state(fd.get(), far, data.size());
    REQUIRE(second);
    CHECK(second->dirty == 0);
}

TEST_CASE("ring: sync_file_range refuses a length the kernel cannot take, bad flags and a pipe",
          "[ring][file][error]")
{
    ring r(4);
    temp_dir dir;
    unique_fd fd = dir.create_file("data", filled(4096, 0x61));
    // Above 32 bits: refused before anything is queued.
    const std::uint64_t too_long = std::uint64_t{std::numeric_limits<std::uint32_t>::max()} + 1;
    CHECK(r.add_sync_file_range(fd.get(), 0, too_long, SYNC_FILE_RANGE_WRITE, 1) ==
          std::errc::invalid_argument);
    CHECK(r.unsubmitted() == 0);
    // The kernel's own answers.
    CHECK(run_one(r, [&](ring& q) { return q.add_sync_file_range(fd.get(), 0, 0, 0x80, 1); }) ==
          -EINVAL);
    pipe_fds pipe = make_pipe();
    CHECK(run_one(r, [&](ring& q) {
              return q.add_sync_file_range(pipe.write_end.get(), 0, 0, SYNC_FILE_RANGE_WRITE, 1);
          }) == -ESPIPE);
    CHECK(run_one(r, [&](ring& q) {
              return q.add_sync_file_range(-1, 0, 0, SYNC_FILE_RANGE_WRITE, 1);
          }) == -EBADF);
}

namespace {

// Writes `data` at offset 0 and at `far` and waits until both ranges are on disk: clean pages,
// all in the page cache, which fadvise(DONTNEED) can drop. False without cachestat(2) to see it.
bool two_clean_ranges(int fd, const std::vector<std::byte>& data, std::uint64_t far)
{
    REQUIRE(::pwrite(fd, data.data(), data.size(), 0) == static_cast<ssize_t>(data.size()));
    REQUIRE(::pwrite(fd, data.data(), data.size(), static_cast<off_t>(far)) ==
            static_cast<ssize_t>(data.size()));
    REQUIRE(::fdatasync(fd) == 0);
    if (!page_cache_state(fd, 0, data.size()))
        return false;
    REQUIRE(cached_pages(fd, 0, data.size()) == data.size() / 4096);
    REQUIRE(cached_pages(fd, far, data.size()) == data.size() / 4096);
    return true;
}

} // namespace

TEST_CASE("ring: fadvise DONTNEED drops a range's clean pages from the page cache, and no others",
          "[ring][file]")
{
    // Two ranges of 64 KiB, 1 MiB apart (the page cache may hold a range in large folios, which
    // advice can drop only whole: each range is advised whole).
    ring r(4);
    temp_dir dir;
    unique_fd fd = dir.create_file("data");
    const std::vector<std::byte> data = filled(64 * 1024, 0x6b);
    constexpr std::uint64_t far = 1 << 20;
    if (!two_clean_ranges(fd.get(), data, far))
        SKIP("no cachestat(2) (Linux 6.5) to see which pages are cached");
    const std::uint64_t pages = data.size() / 4096;
    auto cached = [&](std::uint64_t offset) { return cached_pages(fd.get(), offset, data.size()); };

    // The first range is dropped, the far one stays.
    CHECK(run_one(r, [&](ring& q) {
              return q.add_fadvise(fd.get(), 0, data.size(), POSIX_FADV_DONTNEED, 1);
          }) == 0);
    CHECK(cached(0) == 0);
    CHECK(cached(far) == pages);

    // Length 0 runs to the end of the file.
    CHECK(run_one(r, [&](ring& q) {
              return q.add_fadvise(fd.get(), far, 0, POSIX_FADV_DONTNEED, 1);
          }) == 0);
    CHECK(cached(far) == 0);

    // The contents are intact, read back from the disk.
    std::vector<std::byte> back(data.size());
    REQUIRE(::pread(fd.get(), back.data(), back.size(), static_cast<off_t>(far)) ==
            static_cast<ssize_t>(back.size()));
    CHECK(back == data);
}

TEST_CASE("ring: fadvise takes a length above 32 bits whole (Linux 6.11) or refuses it",
          "[ring][file]")
{
    // A sparse file with 64 KiB at 0 and 64 KiB at 5 GiB, both cached and clean. Advice for
    // [0, 4 GiB + 64 KiB) must drop the first range and keep the far one (a kernel that read
    // the length as 0, "to the end", would drop both); advice for [0, 5 GiB + 64 KiB) must drop
    // the far one too (one that cut the length to 32 bits would keep it).
    ring r(4);
    temp_dir dir;
    unique_fd fd = dir.create_file("sparse");
    const std::vector<std::byte> data = filled(64 * 1024, 0x2e);
    const std::uint64_t far = std::uint64_t{5} << 30;
    if (!two_clean_ranges(fd.get(), data, far))
        SKIP("no cachestat(2) (Linux 6.5) to see which pages are cached");
    const std::uint64_t pages = data.size() / 4096;
    auto cached = [&](std::uint64_t offset) { return cached_pages(fd.get(), offset, data.size()); };

    const int first = run_one(r, [&](ring& q) {
        return q.add_fadvise(fd.get(), 0, (std::uint64_t{4} << 30) + data.size(),
                             POSIX_FADV_DONTNEED, 1);
    });
    if (first == -EINVAL)
        SKIP("this kernel takes 32-bit fadvise lengths only (before Linux 6.11)");
    REQUIRE(first == 0);
    CHECK(cached(0) == 0);
    CHECK(cached(far) == pages);
    CHECK(run_one(r, [&](ring& q) {
              return q.add_fadvise(fd.get(), 0, far + data.size(), POSIX_FADV_DONTNEED, 1);
          }) == 0);
    CHECK(cached(far) == 0);
}

TEST_CASE("ring: fadvise reports bad advice, a pipe and a closed descriptor", "[ring][file][error]")
{
    ring r(4);
    temp_dir dir;
    unique_fd fd = dir.create_file("data", filled(4096, 0x61));
    CHECK(run_one(r, [&](ring& q) { return q.add_fadvise(fd.get(), 0, 0, 99, 1); }) == -EINVAL);
    pipe_fds pipe = make_pipe();
    CHECK(run_one(r, [&](ring& q) {
              return q.add_fadvise(pipe.read_end.get(), 0, 0, POSIX_FADV_SEQUENTIAL, 1);
          }) == -ESPIPE);
    CHECK(run_one(r, [&](ring& q) { return q.add_fadvise(-1, 0, 0, POSIX_FADV_NORMAL, 1); }) ==
          -EBADF);
}

TEST_CASE("ring: splice moves a file's bytes through a pipe into another file, at the offsets "
          "given",
          "[ring][file][splice]")
{
    ring r(4);
    temp_dir dir;
    std::vector<std::byte> source(3 * 4096);
    for (std::size_t i = 0; i < source.size(); ++i)
        source[i] = static_cast<std::byte>(i * 7 + 1);
    unique_fd in = dir.create_file("in", source);
    unique_fd out = dir.create_file("out");
    pipe_fds pipe = make_pipe();

    // File at offset 4096 -> pipe: 5000 bytes (a pipe holds 64 KiB, so all of them).
    CHECK(run_one(r, [&](ring& q) {
              return q.add_splice(in.get(), 4096, pipe.write_end.get(), ring::no_offset, 5000,
                                  SPLICE_F_MOVE, 1);
          }) == 5000);
    // The file's position did not move: splicing at an explicit offset leaves it.
    CHECK(::lseek(in.get(), 0, SEEK_CUR) == 0);
    // Pipe -> file at offset 100.
    CHECK(run_one(r, [&](ring& q) {
              return q.add_splice(pipe.read_end.get(), ring::no_offset, out.get(), 100, 5000, 0, 1);
          }) == 5000);
    std::vector<std::byte> back(5000);
    REQUIRE(::pread(out.get(), back.data(), back.size(), 100) == 5000);
    CHECK(std::equal(back.begin(), back.end(), source.begin() + 4096));
    struct stat st{};
    REQUIRE(::fstat(out.get(), &st) == 0);
    CHECK(st.st_size == 5100);

    // At the end of the input: 0.
    CHECK(run_one(r, [&](ring& q) {
              return q.add_splice(in.get(), source.size(), pipe.write_end.get(), ring::no_offset,
                                  100, 0, 1);
          }) == 0);
    // Neither side a pipe, a closed descriptor.
    CHECK(run_one(r, [&](ring& q) {
              return q.add_splice(in.get(), 0, out.get(), 0, 100, 0, 1);
          }) == -EINVAL);
    CHECK(run_one(r, [&](ring& q) {
              return q.add_splice(-1, ring::no_offset, pipe.write_end.get(), ring::no_offset, 1, 0,
                                  1);
          }) == -EBADF);
}

TEST_CASE("ring: tee copies a pipe's bytes into another pipe and leaves them in the first",
          "[ring][file][splice]")
{
    ring r(4);
    pipe_fds a = make_pipe();
    pipe_fds b = make_pipe();
    const std::string text = "tee leaves the bytes where they were";
    REQUIRE(::write(a.write_end.get(), text.data(), text.size()) ==
            static_cast<ssize_t>(text.size()));
    CHECK(run_one(r, [&](ring& q) {
              return q.add_tee(a.read_end.get(), b.write_end.get(), 1024, 0, 1);
          }) == static_cast<int>(text.size()));
    std::string from_a(text.size(), '\0');
    std::string from_b(text.size(), '\0');
    REQUIRE(::read(a.read_end.get(), from_a.data(), from_a.size()) ==
            static_cast<ssize_t>(text.size()));
    REQUIRE(::read(b.read_end.get(), from_b.data(), from_b.size()) ==
            static_cast<ssize_t>(text.size()));
    CHECK(from_a == text);
    CHECK(from_b == text);
    // Not pipes: EINVAL.
    temp_dir dir;
    unique_fd file = dir.create_file("f", filled(16, 0x41));
    CHECK(run_one(r, [&](ring& q) { return q.add_tee(file.get(), b.write_end.get(), 16, 0, 1); }) ==
          -EINVAL);
}
