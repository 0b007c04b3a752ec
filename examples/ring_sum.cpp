// SPDX-License-Identifier: MIT
// ring_sum: FNV-1a checksums of many files at once, driven by the bare ring core (no coroutines).
//
//   ring_sum FILE...
//
// Every file goes through a small state machine, open -> read ... read -> close, with exactly
// one op in flight at a time. The op's user_data is the file's index, so a completion finds its
// file directly. Up to `max_in_flight` files are worked on together; the results are printed in
// argument order once all are done, as `hash  size  path` (like sha256sum, but FNV-1a 64).

#include <coil/io/ring.hpp>

#include <fmt/core.h>

#include <fcntl.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <span>
#include <system_error>
#include <vector>

namespace {

constexpr std::size_t chunk_size = 64 * 1024;
// Files in progress at once. Each has one op outstanding, so this many ops at most: well within
// the ring's 16 SQ and 32 CQ entries, and `add_*` cannot answer `no_space`.
constexpr unsigned max_in_flight = 16;

enum class stage { waiting, opening, reading, closing, done };

struct file_job {
    const char* path = nullptr;
    stage step = stage::waiting;
    int fd = -1;
    std::uint64_t offset = 0;                    // bytes hashed so far: the next read's offset
    std::uint64_t hash = 0xcbf29ce484222325ULL;  // FNV-1a 64 offset basis
    int error = 0;                               // errno of the first failure, 0 if none
    std::vector<std::byte> buffer;               // the kernel's while a read is in flight
};

void fnv1a(std::uint64_t& hash, std::span<const std::byte> data)
{
    for (std::byte b : data) {
        hash ^= static_cast<std::uint8_t>(b);
        hash *= 0x100000001b3ULL; // FNV-1a 64 prime
    }
}

// Queues the op for the job's current stage, tagged with the job's index.
void queue_next(coil::io::ring& ring, file_job& job, std::uint64_t index)
{
    std::error_code ec;
    switch (job.step) {
    case stage::opening:
        ec = ring.add_openat(AT_FDCWD, job.path, O_RDONLY | O_CLOEXEC, 0, index);
        break;
    case stage::reading:
        ec = ring.add_read(job.fd, job.buffer, job.offset, index);
        break;
    case stage::closing:
        ec = ring.add_close(job.fd, index);
        break;
    case stage::waiting:
    case stage::done:
        return;
    }
    if (ec) // no_space cannot happen (see max_in_flight); unsupported_operation can
        throw std::system_error(ec, "ring_sum: cannot queue an op");
}

// Moves `job` on by the result of its current op. Returns true when the job is finished.
bool advance(file_job& job, std::int32_t result)
{
    switch (job.step) {
    case stage::opening:
        if (result < 0) {
            job.error = -result;
            job.step = stage::done;
            return true;
        }
        job.fd = result;
        job.buffer.resize(chunk_size);
        job.step = stage::reading;
        return false;
    case stage::reading:
        if (result < 0)
            job.error = -result; // e.g. EISDIR: still close the descriptor
        if (result <= 0) {       // an error, or 0 at end of file
            job.step = stage::closing;
            return false;
        }
        fnv1a(job.hash, std::span<const std::byte>(job.buffer)
                            .first(static_cast<std::size_t>(result)));
        job.offset += static_cast<std::uint64_t>(result);
        return false; // read on from the new offset
    case stage::closing:
        if (result < 0 && job.error == 0)
            job.error = -result;
        job.buffer = {};
        job.step = stage::done;
        return true;
    case stage::waiting:
    case stage::done:
        break;
    }
    return true;
}

} // namespace

int main(int argc, char* argv[])
{
    if (argc < 2) {
        fmt::print(stderr, "usage: ring_sum FILE...\n");
        return 2;
    }
    std::vector<file_job> jobs(static_cast<std::size_t>(argc - 1));
    for (std::size_t i = 0; i < jobs.size(); ++i)
        jobs[i].path = argv[i + 1];

    try {
        coil::io::ring ring(max_in_flight);
        std::size_t next = 0;     // the first job not yet started
        std::size_t finished = 0; // jobs in stage::done
        unsigned active = 0;      // jobs started and not finished: each has one op outstanding
        while (finished < jobs.size()) {
            for (; active < max_in_flight && next < jobs.size(); ++next, ++active) {
                jobs[next].step = stage::opening;
                queue_next(ring, jobs[next], next);
            }
            // wait() submits everything queued, then blocks for at least one completion.
            auto done = ring.wait(1);
            if (!done) {
                fmt::print(stderr, "ring_sum: {}\n", done.error().message());
                return 1;
            }
            // Queuing while iterating is allowed: the follow-up op of each completed one is
            // queued here and submitted by the next wait().
            for (const coil::io::completion& c : *done) {
                file_job& job = jobs[c.user_data];
                if (advance(job, c.result)) {
                    --active;
                    ++finished;
                } else {
                    queue_next(ring, job, c.user_data);
                }
            }
        }
    } catch (const std::system_error& e) {
        // For instance io_uring disabled: the message says why and how to fix it.
        fmt::print(stderr, "{}\n", e.what());
        return 1;
    }

    int status = 0;
    for (const file_job& job : jobs) {
        if (job.error != 0) {
            fmt::print(stderr, "ring_sum: {}: {}\n", job.path, std::strerror(job.error));
            status = 1;
        } else {
            fmt::print("{:016x}  {:>12}  {}\n", job.hash, job.offset, job.path);
        }
    }
    return status;
}
