// SPDX-License-Identifier: MIT
/// @file
/// What the benchmarks share besides the harness: a fast PRNG, the page-cached data file the
/// read rows use, and where that file lives.
#pragma once

#include "harness.hpp"

#include <cstdint>
#include <span>
#include <string>
#include <vector>

// Where the read rows keep their data file by default; meson.build sets it to the build
// tree's bench-data directory.
#ifndef COIL_BENCH_DATA_DIR
#define COIL_BENCH_DATA_DIR "/var/tmp/coil-bench"
#endif

namespace coil::bench {

/// splitmix64 (Steele, Lea, Flood 2014): a few cycles per number, so drawing offsets does not
/// dilute the difference between the two sides.
class splitmix64 {
public:
    explicit splitmix64(std::uint64_t seed) noexcept : state_(seed) {}

    std::uint64_t next() noexcept
    {
        std::uint64_t z = (state_ += 0x9e3779b97f4a7c15);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9;
        z = (z ^ (z >> 27)) * 0x94d049bb133111eb;
        return z ^ (z >> 31);
    }

private:
    std::uint64_t state_;
};

/// The size of a read row's file: 1 GiB, or 64 MiB with --quick (a CI smoke run).
std::uint64_t read_file_size(const harness& h) noexcept;

/// The page-cached file the read rows read: created once (non-zero pseudo-random bytes, so a
/// read of a hole or a wrong offset stands out), reused by later runs, opened read-only and
/// buffered, and read through once so that it is in the page cache.
class read_file {
public:
    /// `data_dir` is --data-dir, else $COIL_BENCH_DIR, else the build tree's bench-data.
    read_file(const std::string& data_dir, std::uint64_t size);
    ~read_file();
    read_file(const read_file&) = delete;
    read_file& operator=(const read_file&) = delete;

    int fd() const noexcept { return fd_; }
    std::uint64_t size() const noexcept { return size_; }
    const std::string& path() const noexcept { return path_; }

    /// Reads the whole file again and returns the share of it resident in the page cache
    /// (negative if unknown), so a row can warn when it measured the disk.
    double rewarm() const;

private:
    int fd_ = -1;
    std::uint64_t size_ = 0;
    std::string path_;
};

/// A file a benchmark creates (empty, read-write, in `dir`, which it creates if need be) and
/// removes when the object is destroyed: the storage rows' logs and copies.
class scratch_file {
public:
    scratch_file(const std::string& dir, const std::string& name);
    ~scratch_file();
    scratch_file(const scratch_file&) = delete;
    scratch_file& operator=(const scratch_file&) = delete;

    int fd() const noexcept { return fd_; }
    const std::string& path() const noexcept { return path_; }

    /// Empties the file (`ftruncate` to 0).
    void truncate() const;

private:
    std::string path_;
    int fd_ = -1;
};

/// The directory for data files: the program's --data-dir, else $COIL_BENCH_DIR, else
/// `fallback` (the build tree's bench-data directory).
std::string data_directory(const harness& h, const std::string& fallback);

/// Asks the run clock once per round of many coroutines' ops, as a raw loop asks it once per
/// batch: the first coroutine (the leader) asks and publishes the answer; the others read it.
/// Asking in every coroutine would charge coil 128 clock checks per round to the raw loop's one.
struct round_clock {
    run_clock& clock;
    bool running = true;

    bool check(bool leader) noexcept
    {
        if (leader)
            running = clock.running();
        return running;
    }
};

/// A 4 KiB-aligned random offset inside a file of `size` bytes (a power-of-two page count).
inline std::uint64_t random_page_offset(splitmix64& rng, std::uint64_t size) noexcept
{
    return (rng.next() & (size / 4096 - 1)) * 4096;
}

} // namespace coil::bench
