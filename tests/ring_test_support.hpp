// SPDX-License-Identifier: MIT
// Helpers shared by the ring-core tests: eventfd signalling, byte buffers, and loops that gather a
// known number of completions from a ring. Descriptors and temporary files come from
// test_support.hpp.
#pragma once

#include "test_support.hpp"

#include <coil/io/ring.hpp>

#include <catch2/catch_test_macros.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace coil_test {

/// Adds one to an eventfd's counter, which makes it readable.
inline void signal_eventfd(int fd)
{
    std::uint64_t one = 1;
    REQUIRE(::write(fd, &one, sizeof one) == static_cast<ssize_t>(sizeof one));
}

/// `count` bytes, each `value`.
inline std::vector<std::byte> filled(std::size_t count, unsigned char value)
{
    return std::vector<std::byte>(count, std::byte{value});
}

/// Copies every completion of a successful wait out of the ring.
inline std::vector<coil::io::completion> take(coil::io::result<coil::io::completion_range> done)
{
    REQUIRE(done.ok());
    std::vector<coil::io::completion> out;
    for (const coil::io::completion& c : *done)
        out.push_back(c);
    return out;
}

/// Submits what is queued and blocks until exactly `count` completions have been reaped
/// (more may arrive in the last batch; they are returned too).
inline std::vector<coil::io::completion> collect(coil::io::ring& ring, std::size_t count)
{
    std::vector<coil::io::completion> out;
    while (out.size() < count) {
        // With nothing outstanding no completion can arrive: fail instead of spinning.
        REQUIRE(ring.outstanding() > 0);
        auto batch = take(ring.wait(1));
        out.insert(out.end(), batch.begin(), batch.end());
    }
    return out;
}

/// The offset argument that means "the file position" (required for pipes).
inline constexpr std::uint64_t current_position = static_cast<std::uint64_t>(-1);

/// The result of the completion tagged `user_data` in `done`; fails the test when it is absent
/// or there twice.
inline std::int32_t result_of(const std::vector<coil::io::completion>& done,
                              std::uint64_t user_data)
{
    std::int32_t result = 0;
    int found = 0;
    for (const coil::io::completion& c : done)
        if (c.user_data == user_data) {
            result = c.result;
            ++found;
        }
    REQUIRE(found == 1);
    return result;
}

/// Queues `count` NOPs tagged 0..count-1 on a ring without the outstanding cap, submitting
/// whenever the SQ fills and never reaping, so that the CQ overflows (the kernel keeps the
/// rest: coil requires IORING_FEAT_NODROP).
inline void queue_nops_without_reaping(coil::io::ring& ring, std::uint64_t count)
{
    for (std::uint64_t next = 0; next < count;) {
        if (ring.add_nop(next) == coil::io::errc::no_space) {
            REQUIRE(ring.submit().ok());
            REQUIRE(ring.space_left() > 0);
            continue;
        }
        ++next;
    }
}

/// Runs `misuse` in a child; returns what it wrote on stderr, or "<returned>" if it did not stop
/// the child (a contract violation or a refusal to go on must end the program, saying why).
template <class Misuse>
std::string stopped_with(Misuse misuse)
{
    int out[2];
    REQUIRE(::pipe(out) == 0);
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        ::dup2(out[1], STDERR_FILENO);
        // Catch2's handler would report the abort as this child's own test failure.
        std::signal(SIGABRT, SIG_DFL);
        misuse();
        ::_exit(0);
    }
    ::close(out[1]);
    const std::string said = read_to_end(out[0]);
    ::close(out[0]);
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    return WIFSIGNALED(status) ? said : "<returned>";
}

} // namespace coil_test
