// SPDX-License-Identifier: MIT
// fallocate and fsync through the ring core: growing a file, then punching a hole in it.

#include "ring_test_support.hpp"

#include <coil/io/ring.hpp>

#include <catch2/catch_test_macros.hpp>

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>

#include <cstdint>

using coil::io::fsync_mode;
using coil::io::ring;
using namespace coil_test;

namespace {

// Runs the one op already queued on `ring` and returns its result.
std::int32_t run_one(ring& ring, std::uint64_t user_data)
{
    auto done = take(ring.wait(1));
    REQUIRE(done.size() == 1);
    CHECK(done[0].user_data == user_data);
    return done[0].result;
}

} // namespace

TEST_CASE("ring: fallocate grows a file by 50 MiB and a punched hole keeps its size",
          "[ring][fallocate][fsync][seed]")
{
    // Port of crosvm's URingContext test "fallocate_fsync".
    constexpr std::uint64_t initial = 4096;
    constexpr std::uint64_t grown = initial + 50 * 1024 * 1024;
    temp_dir dir;
    unique_fd file = dir.create_file("fallocate", filled(initial, 0x42));

    ring ring(8);
    REQUIRE_FALSE(ring.add_fallocate(file.get(), 0, 0, grown, 1));
    std::int32_t grow = run_one(ring, 1);
    if (grow == -EOPNOTSUPP)
        SKIP("the file system under " << dir.path() << " does not support fallocate");
    REQUIRE(grow == 0);

    struct stat st{};
    REQUIRE(::fstat(file.get(), &st) == 0);
    CHECK(st.st_size == static_cast<off_t>(grown));
    const blkcnt_t blocks_allocated = st.st_blocks;

    REQUIRE_FALSE(ring.add_fsync(file.get(), fsync_mode::full, 2));
    CHECK(run_one(ring, 2) == 0);

    REQUIRE_FALSE(ring.add_fallocate(file.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                     initial, grown - initial, 3));
    std::int32_t punch = run_one(ring, 3);
    if (punch == -EOPNOTSUPP)
        SKIP("the file system under " << dir.path() << " cannot punch holes");
    REQUIRE(punch == 0);

    REQUIRE(::fstat(file.get(), &st) == 0);
    CHECK(st.st_size == 52'432'896);
    CHECK(st.st_blocks < blocks_allocated); // the hole gave the space back

    REQUIRE_FALSE(ring.add_fsync(file.get(), fsync_mode::data, 4));
    CHECK(run_one(ring, 4) == 0);
}

TEST_CASE("ring: fsync of a bad descriptor completes with -EBADF", "[ring][fsync][error]")
{
    ring ring(2);
    REQUIRE_FALSE(ring.add_fsync(-1, fsync_mode::full, 5));
    CHECK(run_one(ring, 5) == -EBADF);
}
