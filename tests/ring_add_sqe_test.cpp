// SPDX-License-Identifier: MIT
// Raw SQEs through ring::add_sqe: madvise (an opcode coil does not wrap; the snippet of
// docs/architecture.md), splice and fadvise written by hand, the probe check, SQ room, and the
// opcode table that replaced coil's parallel lists.

#include "ring_test_support.hpp"

#include <coil/io/ring.hpp>

#include <catch2/catch_test_macros.hpp>

#include <fcntl.h>
#include <linux/io_uring.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>

using coil::io::completion;
using coil::io::errc;
using coil::io::opcode;
using coil::io::ring;
using coil::io::sqe;
using namespace coil_test;

namespace {

constexpr std::uint64_t no_offset = static_cast<std::uint64_t>(-1);

} // namespace

TEST_CASE("ring: add_sqe queues madvise, an opcode coil does not wrap: DONTNEED empties private "
          "anonymous pages",
          "[ring][add_sqe]")
{
    ring ring(4);
    if (!ring.supports_kernel_opcode(IORING_OP_MADVISE))
        SKIP("this kernel has no IORING_OP_MADVISE (Linux 5.6)");
    const std::size_t mapping_size = 4 * 4096;
    void* mapping = ::mmap(nullptr, mapping_size, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(mapping != MAP_FAILED);
    std::memset(mapping, 0x77, mapping_size);

    auto ec = ring.add_sqe(IORING_OP_MADVISE, /*user_data=*/7, [&](coil::io::sqe& s) {
        s.addr = reinterpret_cast<std::uint64_t>(mapping); // page-aligned
        s.len = static_cast<std::uint32_t>(mapping_size);
        s.fadvise_advice = MADV_DONTNEED; // madvise's advice has fadvise's field
    });
    REQUIRE_FALSE(ec);
    auto done = collect(ring, 1);
    REQUIRE(done.size() == 1);
    CHECK(done[0].user_data == 7);
    CHECK(done[0].result == 0);
    // Private anonymous pages given up read back as zeros.
    const auto* bytes = static_cast<const unsigned char*>(mapping);
    CHECK(std::all_of(bytes, bytes + mapping_size, [](unsigned char b) { return b == 0; }));
    REQUIRE(::munmap(mapping, mapping_size) == 0);
}

TEST_CASE("ring: add_sqe splices bytes from one pipe to another, the SQE written by hand",
          "[ring][add_sqe]")
{
    ring ring(4);
    if (!ring.supports_kernel_opcode(IORING_OP_SPLICE))
        SKIP("this kernel has no IORING_OP_SPLICE (Linux 5.7)");
    pipe_fds from = make_pipe();
    pipe_fds to = make_pipe();
    REQUIRE(::write(from.write_end.get(), "spliced!", 8) == 8);

    auto ec = ring.add_sqe(IORING_OP_SPLICE, 77, [&](sqe& s) {
        s.splice_fd_in = from.read_end.get();
        s.splice_off_in = no_offset;
        s.fd = to.write_end.get();
        s.off = no_offset;
        s.len = 64;
        s.user_data = 12345; // the ring overwrites what fill leaves in its own fields
        s.opcode = 0;
    });
    REQUIRE_FALSE(ec);
    CHECK(ring.outstanding() == 1);
    auto done = collect(ring, 1);
    REQUIRE(done.size() == 1);
    CHECK(done[0].user_data == 77);
    CHECK(done[0].result == 8);

    std::array<char, 16> out{};
    REQUIRE(::read(to.read_end.get(), out.data(), out.size()) == 8);
    CHECK(std::string_view(out.data(), 8) == "spliced!");
}

TEST_CASE("ring: add_sqe hands the kernel a zeroed entry: an fadvise with only its own fields "
          "set succeeds",
          "[ring][add_sqe]")
{
    ring ring(2);
    if (!ring.supports_kernel_opcode(IORING_OP_FADVISE))
        SKIP("this kernel has no IORING_OP_FADVISE (Linux 5.6)");
    temp_dir dir;
    unique_fd file = dir.create_file("advised", filled(8192, 0x5a));

    // Dirty both SQ slots first: NOPs with junk in fields fadvise must find zero (an unknown
    // personality makes the kernel refuse the NOP; what matters is what stays in the slots).
    for (std::uint64_t i = 0; i < 2; ++i)
        REQUIRE_FALSE(ring.add_sqe(IORING_OP_NOP, i, [](sqe& s) {
            s.personality = 0x7777;
            s.buf_index = 0x1234;
            s.file_index = 99;
            s.addr3 = 0xdead;
        }));
    CHECK(collect(ring, 2).size() == 2);
    for (int round = 0; round < 4; ++round) {
        auto ec = ring.add_sqe(IORING_OP_FADVISE, 10 + static_cast<std::uint64_t>(round),
                               [&](sqe& s) {
                                   CHECK(s.personality == 0);
                                   CHECK(s.buf_index == 0);
                                   CHECK(s.file_index == 0);
                                   CHECK(s.addr3 == 0);
                                   s.fd = file.get();
                                   s.off = 0;
                                   s.len = 8192;
                                   s.fadvise_advice = POSIX_FADV_SEQUENTIAL;
                               });
        REQUIRE_FALSE(ec);
        auto done = collect(ring, 1);
        REQUIRE(done.size() == 1);
        CHECK(done[0].user_data == 10 + static_cast<std::uint64_t>(round));
        CHECK(done[0].result == 0);
    }
}

TEST_CASE("ring: add_sqe refuses an opcode the kernel lacks and a full SQ it cannot hand over, "
          "queuing nothing",
          "[ring][add_sqe][no_space]")
{
    ring ring(2);
    bool called = false;
    CHECK(ring.add_sqe(250, 1, [&](sqe&) { called = true; }) == errc::unsupported_operation);
    CHECK_FALSE(called);
    CHECK(ring.outstanding() == 0);

    // A full SQ whose last op links to the next cannot be submitted without cutting the chain.
    REQUIRE_FALSE(ring.add_sqe(IORING_OP_NOP, 1, [](sqe&) {}));
    REQUIRE_FALSE(ring.add_sqe(IORING_OP_NOP, 2, [](sqe&) {}, coil::io::sqe_flags::link));
    CHECK(ring.add_sqe(IORING_OP_NOP, 3, [&](sqe&) { called = true; }) == errc::no_space);
    CHECK_FALSE(called);
    CHECK(ring.outstanding() == 2);
    CHECK(ring.stats().enter_calls == 0);
    CHECK(collect(ring, 2).size() == 2);

    // Without the open chain, the full SQ goes to the kernel and the op is queued.
    REQUIRE_FALSE(ring.add_sqe(IORING_OP_NOP, 4, [](sqe&) {}));
    REQUIRE_FALSE(ring.add_sqe(IORING_OP_NOP, 5, [](sqe&) {}));
    CHECK_FALSE(ring.add_sqe(IORING_OP_NOP, 6, [&](sqe&) { called = true; }));
    CHECK(called);
    CHECK(ring.stats().sq_handovers == 1);
    auto done = collect(ring, 3);
    REQUIRE(done.size() == 3);
    CHECK(done[0].user_data == 4);
    CHECK(done[1].user_data == 5);
    CHECK(done[2].user_data == 6);
}

TEST_CASE("ring: a fill that throws leaves nothing queued", "[ring][add_sqe]")
{
    ring ring(4);
    CHECK_THROWS_AS(ring.add_sqe(IORING_OP_NOP, 1, [](sqe&) { throw std::runtime_error("no"); }),
                    std::runtime_error);
    CHECK(ring.outstanding() == 0);
    CHECK(ring.unsubmitted() == 0);
    REQUIRE_FALSE(ring.add_nop(2));
    auto done = collect(ring, 1);
    REQUIRE(done.size() == 1);
    CHECK(done[0] == completion{2, 0, 0});
}

TEST_CASE("ring: the probe covers kernel opcodes past the 32nd", "[ring][setup][probe]")
{
    ring ring(2);
    CHECK(ring.supports_kernel_opcode(IORING_OP_NOP));
    CHECK(ring.supports_kernel_opcode(IORING_OP_READ));
    CHECK_FALSE(ring.supports_kernel_opcode(255));
    // IORING_OP_SOCKET is opcode 45 (Linux 5.19); a 32-bit mask could not say so.
    if (!ring.supports_kernel_opcode(IORING_OP_MSG_RING) &&
        !ring.supports_kernel_opcode(IORING_OP_SOCKET))
        SKIP("this kernel has no opcode numbered above 31 to look for");
    REQUIRE_FALSE(ring.add_sqe(IORING_OP_SOCKET, 5, [](sqe& s) {
        s.fd = AF_UNIX;
        s.off = SOCK_STREAM | SOCK_CLOEXEC;
    }));
    auto done = collect(ring, 1);
    REQUIRE(done.size() == 1);
    INFO("socket result " << done[0].result);
    REQUIRE(done[0].result >= 0);
    ::close(done[0].result);
}

TEST_CASE("ring: every opcode has its kernel number and name in the one table",
          "[ring][opcode][unit]")
{
    for (std::size_t i = 0; i < coil::io::opcode_count; ++i) {
        const auto op = static_cast<opcode>(i);
        CHECK(coil::io::opcode_table[i].op == op);
        CHECK(std::string(coil::io::to_string(op)) == coil::io::opcode_table[i].name);
        CHECK(coil::io::kernel_opcode(op) == coil::io::opcode_table[i].kernel_opcode);
    }
    CHECK(coil::io::kernel_opcode(opcode::read) == IORING_OP_READ);
    CHECK(coil::io::kernel_opcode(opcode::send) == IORING_OP_SEND);
    CHECK(std::string(coil::io::to_string(opcode::statx)) == "statx");
    static_assert(coil::io::kernel_opcode(opcode::poll_add) == IORING_OP_POLL_ADD);
}

TEST_CASE("ring: supports() and supports_kernel_opcode() agree for every wrapped opcode",
          "[ring][opcode]")
{
    ring ring(2);
    for (const auto& row : coil::io::opcode_table)
        CHECK(ring.supports(row.op) == ring.supports_kernel_opcode(row.kernel_opcode));
}
