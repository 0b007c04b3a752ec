// SPDX-License-Identifier: MIT
// Registered buffers and registered files through the ring core: fixed reads and writes land the
// right bytes, bad indexes and empty slots fail with the kernel's errors, sparse tables fill by
// update, and unregistering while a fixed op is in flight leaves that op intact.

#include "ring_test_support.hpp"

#include <coil/io/ring.hpp>

#include <catch2/catch_test_macros.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cerrno>
#include <cstring>
#include <optional>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

using coil::io::completion;
using coil::io::ring;
using coil::io::sqe_flags;
using namespace coil_test;

namespace {

constexpr std::size_t block = 4096;

// Block `index` of the test file: every byte depends on the index and the position.
std::vector<std::byte> pattern(std::size_t index)
{
    std::vector<std::byte> out(block);
    for (std::size_t i = 0; i < block; ++i)
        out[i] = static_cast<std::byte>((index * 31 + i * 7 + 1) & 0xff);
    return out;
}

std::vector<std::byte> file_of_blocks(std::size_t blocks)
{
    std::vector<std::byte> all;
    for (std::size_t i = 0; i < blocks; ++i) {
        std::vector<std::byte> b = pattern(i);
        all.insert(all.end(), b.begin(), b.end());
    }
    return all;
}

// Registered memory: `count` page-aligned blocks.
struct registered_memory {
    explicit registered_memory(std::size_t count) : bytes(count * block + block)
    {
        auto address = reinterpret_cast<std::uintptr_t>(bytes.data());
        base = bytes.data() + ((block - address % block) % block);
        for (std::size_t i = 0; i < count; ++i)
            iovecs.push_back(::iovec{base + i * block, block});
    }
    std::span<std::byte> buffer(std::size_t i) { return {base + i * block, block}; }

    std::vector<std::byte> bytes;
    std::byte* base = nullptr;
    std::vector<::iovec> iovecs;
};

std::int32_t run_one(ring& r)
{
    std::vector<completion> done = collect(r, 1);
    REQUIRE(done.size() == 1);
    return done[0].result;
}

} // namespace

TEST_CASE("ring: fixed reads through a registered file land each block in its registered buffer",
          "[ring][fixed]")
{
    temp_dir dir;
    unique_fd file = dir.create_file("blocks", file_of_blocks(8));
    ring r(16);
    registered_memory memory(8);
    REQUIRE_FALSE(r.register_buffers(memory.iovecs));
    REQUIRE(r.registered_buffer_count() == 8);
    const std::array<int, 1> fds = {file.get()};
    REQUIRE_FALSE(r.register_files(fds));
    REQUIRE(r.registered_file_count() == 1);
    // The table holds its own reference: the descriptor is not needed any more.
    file.reset();

    // Buffer i gets block 7 - i, read through file slot 0.
    for (std::uint16_t i = 0; i < 8; ++i)
        REQUIRE_FALSE(r.add_read_fixed(0, memory.buffer(i), (7U - i) * block, i, i,
                                       sqe_flags::fixed_file));
    std::vector<completion> done = collect(r, 8);
    REQUIRE(done.size() == 8);
    for (const completion& c : done)
        CHECK(c.result == static_cast<std::int32_t>(block));
    for (std::size_t i = 0; i < 8; ++i) {
        std::vector<std::byte> expected = pattern(7 - i);
        CHECK(std::memcmp(memory.buffer(i).data(), expected.data(), block) == 0);
    }
    CHECK_FALSE(r.unregister_files());
    CHECK_FALSE(r.unregister_buffers());
    CHECK(r.registered_buffer_count() == 0);
    CHECK(r.registered_file_count() == 0);
}

TEST_CASE("ring: a fixed write of part of a registered buffer writes exactly those bytes",
          "[ring][fixed]")
{
    temp_dir dir;
    unique_fd file = dir.create_file("out");
    ring r(8);
    registered_memory memory(2);
    REQUIRE_FALSE(r.register_buffers(memory.iovecs));
    std::vector<std::byte> data = pattern(5);
    std::memcpy(memory.buffer(1).data(), data.data(), block);
    // The second half of buffer 1, written at offset 100 with a plain descriptor.
    REQUIRE_FALSE(r.add_write_fixed(file.get(), memory.buffer(1).subspan(block / 2), 100, 1, 9));
    CHECK(run_one(r) == static_cast<std::int32_t>(block / 2));
    std::vector<std::byte> back(block / 2);
    REQUIRE(::pread(file.get(), back.data(), back.size(), 100) ==
            static_cast<ssize_t>(back.size()));
    CHECK(std::memcmp(back.data(), data.data() + block / 2, back.size()) == 0);
}

TEST_CASE("ring: a fixed op with a bad buffer index or memory outside its buffer fails with "
          "EFAULT and touches nothing",
          "[ring][fixed][errors]")
{
    temp_dir dir;
    unique_fd file = dir.create_file("blocks", file_of_blocks(2));
    ring r(8);
    registered_memory memory(2);
    std::vector<std::byte> outside = filled(block, 0xee);

    SECTION("no buffer table at all")
    {
        REQUIRE_FALSE(r.add_read_fixed(file.get(), memory.buffer(0), 0, 0, 1));
        CHECK(run_one(r) == -EFAULT);
    }
    SECTION("an index past the table")
    {
        REQUIRE_FALSE(r.register_buffers(memory.iovecs));
        REQUIRE_FALSE(r.add_read_fixed(file.get(), memory.buffer(0), 0, 2, 1));
        CHECK(run_one(r) == -EFAULT);
        REQUIRE_FALSE(r.add_read_fixed(file.get(), memory.buffer(0), 0, 0xffff, 2));
        CHECK(run_one(r) == -EFAULT);
    }
    SECTION("memory that is not the indexed buffer")
    {
        REQUIRE_FALSE(r.register_buffers(memory.iovecs));
        REQUIRE_FALSE(r.add_read_fixed(file.get(), outside, 0, 0, 1));
        CHECK(run_one(r) == -EFAULT);
        // Buffer 1's memory under index 0, and a span running past the end of buffer 0.
        REQUIRE_FALSE(r.add_read_fixed(file.get(), memory.buffer(1), 0, 0, 2));
        CHECK(run_one(r) == -EFAULT);
        REQUIRE_FALSE(r.add_read_fixed(
            file.get(), std::span<std::byte>(memory.buffer(0).data() + 1, block), 0, 0, 3));
        CHECK(run_one(r) == -EFAULT);
    }
    SECTION("an empty entry of a sparse table")
    {
        REQUIRE_FALSE(r.register_buffers_sparse(4));
        REQUIRE(r.registered_buffer_count() == 4);
        REQUIRE_FALSE(r.add_read_fixed(file.get(), memory.buffer(0), 0, 3, 1));
        CHECK(run_one(r) == -EFAULT);
    }
    CHECK(outside == filled(block, 0xee));
}

TEST_CASE("ring: an op on an empty or out-of-range fixed-file slot fails with EBADF",
          "[ring][fixed][errors]")
{
    ring r(8);
    std::array<std::byte, 16> buffer{};
    SECTION("no file table")
    {
        REQUIRE_FALSE(r.add_read(0, buffer, 0, 1, sqe_flags::fixed_file));
        CHECK(run_one(r) == -EBADF);
    }
    SECTION("an empty slot and a slot past the table")
    {
        REQUIRE_FALSE(r.register_files_sparse(4));
        REQUIRE(r.registered_file_count() == 4);
        REQUIRE_FALSE(r.add_read(2, buffer, 0, 1, sqe_flags::fixed_file));
        CHECK(run_one(r) == -EBADF);
        REQUIRE_FALSE(r.add_read(4, buffer, 0, 2, sqe_flags::fixed_file));
        CHECK(run_one(r) == -EBADF);
    }
}

TEST_CASE("ring: sparse tables fill and empty by update, and a second table is refused",
          "[ring][fixed][sparse]")
{
    temp_dir dir;
    unique_fd file = dir.create_file("blocks", file_of_blocks(4));
    ring r(8);
    registered_memory memory(2);
    REQUIRE_FALSE(r.register_buffers_sparse(8));
    REQUIRE_FALSE(r.register_files_sparse(8));
    CHECK(r.register_buffers(memory.iovecs) == std::errc::device_or_resource_busy);
    CHECK(r.register_files_sparse(2) == std::errc::device_or_resource_busy);

    const std::array<::iovec, 1> one = {memory.iovecs[1]};
    REQUIRE_FALSE(r.update_buffers(6, one));
    const std::array<int, 1> fds = {file.get()};
    REQUIRE_FALSE(r.update_files(5, fds));
    REQUIRE_FALSE(r.add_read_fixed(5, memory.buffer(1), 3 * block, 6, 1, sqe_flags::fixed_file));
    CHECK(run_one(r) == static_cast<std::int32_t>(block));
    CHECK(std::memcmp(memory.buffer(1).data(), pattern(3).data(), block) == 0);

    // Updates past the end are refused, and nothing is half-applied.
    CHECK(r.update_buffers(8, one) == std::errc::invalid_argument);
    CHECK(r.update_files(8, fds) == std::errc::invalid_argument);
    // A descriptor that is not open is refused with EBADF.
    const std::array<int, 1> closed = {dir.create_file("gone").release()};
    ::close(closed[0]);
    CHECK(r.update_files(1, closed) == std::errc::bad_file_descriptor);

    // Emptying the entries again: the next fixed op on them fails.
    const std::array<::iovec, 1> empty_buffer = {::iovec{nullptr, 0}};
    const std::array<int, 1> empty_file = {-1};
    REQUIRE_FALSE(r.update_buffers(6, empty_buffer));
    REQUIRE_FALSE(r.update_files(5, empty_file));
    REQUIRE_FALSE(r.add_read(5, memory.buffer(0), 0, 2, sqe_flags::fixed_file));
    CHECK(run_one(r) == -EBADF);
    REQUIRE_FALSE(r.add_read_fixed(file.get(), memory.buffer(1), 0, 6, 3));
    CHECK(run_one(r) == -EFAULT);
}

TEST_CASE("ring: without a table, unregistering and updating fail with ENXIO", "[ring][fixed]")
{
    ring r(4);
    CHECK(r.unregister_buffers() == std::errc::no_such_device_or_address);
    CHECK(r.unregister_files() == std::errc::no_such_device_or_address);
    const std::array<int, 1> fds = {-1};
    CHECK(r.update_files(0, fds) == std::errc::no_such_device_or_address);
}

TEST_CASE("ring: unregistering buffers and files while a fixed read waits leaves the read "
          "intact: it completes into its buffer",
          "[ring][fixed][lifetime]")
{
    pipe_fds p = make_pipe();
    ring r(8);
    registered_memory memory(1);
    REQUIRE_FALSE(r.register_buffers(memory.iovecs));
    const std::array<int, 1> fds = {p.read_end.get()};
    REQUIRE_FALSE(r.register_files(fds));
    REQUIRE_FALSE(r.add_read_fixed(0, memory.buffer(0).first(5), current_position, 0, 1,
                                   sqe_flags::fixed_file));
    REQUIRE(r.submit().ok());
    REQUIRE(r.ready() == 0); // the pipe is empty: the read waits in the kernel

    // Neither unregistration waits for the read nor fails.
    CHECK_FALSE(r.unregister_buffers());
    CHECK_FALSE(r.unregister_files());
    REQUIRE(::write(p.write_end.get(), "hello", 5) == 5);
    CHECK(run_one(r) == 5);
    CHECK(std::memcmp(memory.buffer(0).data(), "hello", 5) == 0);

    // The tables are gone for new ops.
    REQUIRE_FALSE(r.add_read_fixed(p.read_end.get(), memory.buffer(0), current_position, 0, 2));
    CHECK(run_one(r) == -EFAULT);
}

TEST_CASE("ring: on an SQPOLL ring, emptying entries right after submit leaves the submitted "
          "ops their file and buffer",
          "[ring][fixed][lifetime][sqpoll]")
{
    // submit() on an SQPOLL ring only shows the SQEs to the kernel thread; the table changes
    // wait for the thread to take them, so ops submitted before the change keep what they
    // named. The thread sleeps between rounds (1 ms idle), so each submit has to wake it: the
    // window a table change used to fall into (before the fix, 1 to 6 of 20 rounds failed).
    coil::io::ring_options options;
    options.sqpoll = true;
    options.sqpoll_idle = std::chrono::milliseconds(1);
    std::optional<ring> maybe;
    try {
        maybe.emplace(8, options);
    } catch (const std::system_error& e) {
        if (e.code() != std::errc::operation_not_permitted)
            throw;
    }
    if (!maybe || !maybe->sqpoll())
        SKIP("no SQPOLL ring here");
    ring& r = *maybe;
    pipe_fds p = make_pipe(O_NONBLOCK); // a write that failed must not hang the read below
    registered_memory memory(1);
    REQUIRE_FALSE(r.register_files_sparse(1));
    REQUIRE_FALSE(r.register_buffers_sparse(1));
    const std::array<int, 1> writer = {p.write_end.get()};
    const std::array<int, 1> no_file = {-1};
    const std::array<::iovec, 1> no_buffer = {::iovec{nullptr, 0}};
    constexpr int rounds = 20;
    for (int round = 0; round < rounds; ++round) {
        CAPTURE(round);
        REQUIRE_FALSE(r.update_files(0, writer));
        REQUIRE_FALSE(r.update_buffers(0, memory.iovecs));
        std::memcpy(memory.buffer(0).data(), "ab", 2);
        std::this_thread::sleep_for(std::chrono::milliseconds(3)); // the thread goes to sleep
        REQUIRE_FALSE(r.add_write(0, std::as_bytes(memory.buffer(0).first(1)), current_position,
                                  1, sqe_flags::fixed_file));
        REQUIRE_FALSE(r.add_write_fixed(p.write_end.get(), memory.buffer(0).subspan(1, 1),
                                        current_position, 0, 2));
        REQUIRE(r.submit().ok());
        REQUIRE_FALSE(r.update_files(0, no_file));
        REQUIRE_FALSE(r.update_buffers(0, no_buffer));
        std::vector<completion> done = collect(r, 2);
        REQUIRE(done.size() == 2);
        CHECK(result_of(done, 1) == 1);
        CHECK(result_of(done, 2) == 1);
        char got[2] = {};
        const ssize_t n = ::read(p.read_end.get(), got, 2);
        CHECK(std::string_view(got, static_cast<std::size_t>(std::max<ssize_t>(n, 0))) == "ab");
    }

    // The same for unregistering whole tables.
    REQUIRE_FALSE(r.update_files(0, writer));
    REQUIRE_FALSE(r.update_buffers(0, memory.iovecs));
    std::this_thread::sleep_for(std::chrono::milliseconds(3));
    REQUIRE_FALSE(r.add_write(0, std::as_bytes(memory.buffer(0).first(1)), current_position, 1,
                              sqe_flags::fixed_file));
    REQUIRE_FALSE(
        r.add_write_fixed(p.write_end.get(), memory.buffer(0).subspan(1, 1), current_position, 0, 2));
    REQUIRE(r.submit().ok());
    CHECK_FALSE(r.unregister_files());
    CHECK_FALSE(r.unregister_buffers());
    std::vector<completion> done = collect(r, 2);
    REQUIRE(done.size() == 2);
    CHECK(result_of(done, 1) == 1);
    CHECK(result_of(done, 2) == 1);
}

TEST_CASE("ring: an op linked behind another resolves its slot when it is issued: emptying "
          "the slot after the submit fails it with EBADF",
          "[ring][fixed][lifetime]")
{
    // docs/lifetimes.md: linked, drained and async ops are issued later than the submit.
    pipe_fds p = make_pipe(O_NONBLOCK);
    ring r(8);
    const std::array<int, 1> writer = {p.write_end.get()};
    const std::array<int, 1> no_file = {-1};
    REQUIRE_FALSE(r.register_files(writer));
    const auto when = coil::io::timespec64::from(std::chrono::milliseconds(20));
    REQUIRE_FALSE(r.add_timeout(&when, 0, coil::io::timeout_clock::relative, 1,
                                sqe_flags::hard_link));
    const std::array<std::byte, 1> x = {std::byte{'x'}};
    REQUIRE_FALSE(r.add_write(0, x, current_position, 2, sqe_flags::fixed_file));
    REQUIRE(r.submit().ok());
    REQUIRE_FALSE(r.update_files(0, no_file)); // before the timer fires
    std::vector<completion> done = collect(r, 2);
    CHECK(result_of(done, 1) == -ETIME);
    CHECK(result_of(done, 2) == -EBADF);
    CHECK(r.outstanding() == 0);
    char got = 0;
    CHECK(::read(p.read_end.get(), &got, 1) == -1); // nothing was written
}

TEST_CASE("ring: registering refuses a closed descriptor (EBADF), an oversize or too many "
          "buffers (EINVAL), an entry over 1 GiB and memory that is not mapped (EFAULT), and "
          "leaves no table",
          "[ring][fixed][errors]")
{
    temp_dir dir;
    ring r(4);
    registered_memory memory(1);

    const std::array<int, 2> closed = {dir.create_file("open").release(),
                                       dir.create_file("gone").release()};
    ::close(closed[1]);
    CHECK(r.register_files(closed) == std::errc::bad_file_descriptor);
    CHECK(r.registered_file_count() == 0);
    ::close(closed[0]);

    // More than 1 GiB in one entry: refused (as bad memory) before any page is pinned.
    const std::array<::iovec, 1> huge = {::iovec{memory.base, (std::size_t{1} << 30) + block}};
    CHECK(r.register_buffers(huge) == std::errc::bad_address);
    // More than 16,384 entries.
    const std::vector<::iovec> many(16385, memory.iovecs[0]);
    CHECK(r.register_buffers(many) == std::errc::invalid_argument);
    // A page nothing is mapped at.
    void* hole = ::mmap(nullptr, block, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(hole != MAP_FAILED);
    REQUIRE(::munmap(hole, block) == 0);
    const std::array<::iovec, 1> unmapped = {::iovec{hole, block}};
    CHECK(r.register_buffers(unmapped) == std::errc::bad_address);
    CHECK(r.registered_buffer_count() == 0);

    // None of it left a table behind: good tables register afterwards.
    CHECK_FALSE(r.register_buffers(memory.iovecs));
    CHECK(r.registered_buffer_count() == 1);
    const std::array<int, 1> none = {-1};
    CHECK_FALSE(r.register_files(none));
    CHECK(r.registered_file_count() == 1);
}
