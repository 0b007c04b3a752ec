// SPDX-License-Identifier: MIT
// A minimal raw liburing random-read loop outside the harness, for finding out why the read
// rows of the benchmark programs ran slower than a separate small program doing the same work
// (docs/benchmarks.md, "File reads: the 6%"). Each knob is one candidate cause:
//
//   probe_reads FILE [--depth N] [--seconds S] [--misalign BYTES] [--entries N] [--no-defer]
//               [--offsets splitmix|xorshift|sequential] [--fixed]
//
// It prints reads per wall second and per CPU second of this thread (user + system), the
// latter being what a shared machine disturbs least. Not named bench_*: `./dev bench` does not
// run it.

#include "bench_data.hpp"

#include <liburing.h>

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

constexpr std::size_t read_size = 4096;

double thread_cpu_seconds()
{
    rusage usage{};
    ::getrusage(RUSAGE_THREAD, &usage);
    return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
           static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

[[noreturn]] void die(const std::string& what)
{
    std::fprintf(stderr, "probe_reads: %s\n", what.c_str());
    std::exit(1);
}

} // namespace

int main(int argc, char** argv)
{
    if (argc < 2)
        die("usage: probe_reads FILE [--depth N] [--seconds S] [--misalign BYTES] [--entries N] "
            "[--no-defer] [--offsets splitmix|xorshift|sequential] [--fixed]");
    const char* path = argv[1];
    unsigned depth = 1;
    double seconds = 2;
    std::size_t misalign = 0;
    unsigned entries = 256;
    bool defer = true;
    bool fixed = false;
    std::string offsets = "splitmix";
    for (int i = 2; i < argc; ++i) {
        const std::string arg = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc)
                die(arg + " needs a value");
            return argv[++i];
        };
        if (arg == "--depth")
            depth = static_cast<unsigned>(std::stoul(value()));
        else if (arg == "--seconds")
            seconds = std::stod(value());
        else if (arg == "--misalign")
            misalign = std::stoul(value());
        else if (arg == "--entries")
            entries = static_cast<unsigned>(std::stoul(value()));
        else if (arg == "--no-defer")
            defer = false;
        else if (arg == "--fixed")
            fixed = true;
        else if (arg == "--offsets")
            offsets = value();
        else
            die("unknown argument " + arg);
    }
    const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        die(std::string("open: ") + std::strerror(errno));
    struct stat st {};
    ::fstat(fd, &st);
    const auto size = static_cast<std::uint64_t>(st.st_size);

    io_uring ring{};
    io_uring_params params{};
    params.flags = IORING_SETUP_SUBMIT_ALL | (defer ? IORING_SETUP_SINGLE_ISSUER |
                                                          IORING_SETUP_DEFER_TASKRUN |
                                                          IORING_SETUP_TASKRUN_FLAG
                                                    : 0U);
    if (int ret = io_uring_queue_init_params(entries, &ring, &params); ret < 0)
        die(std::string("io_uring_queue_init_params: ") + std::strerror(-ret));
    io_uring_register_ring_fd(&ring);

    // Page-aligned memory, each buffer then shifted by `misalign` bytes.
    const std::size_t stride = read_size + 4096;
    auto* memory = static_cast<std::byte*>(std::aligned_alloc(4096, depth * stride));
    std::memset(memory, 0, depth * stride);
    auto buffer = [&](unsigned slot) { return memory + slot * stride + misalign; };
    if (fixed) {
        std::vector<iovec> iovecs(depth);
        for (unsigned i = 0; i < depth; ++i)
            iovecs[i] = iovec{buffer(i), read_size};
        if (io_uring_register_buffers(&ring, iovecs.data(), depth) < 0 ||
            io_uring_register_files(&ring, &fd, 1) < 0)
            die("registration failed");
    }

    std::vector<coil::bench::splitmix64> rngs;
    std::vector<std::uint64_t> xorshift(depth);
    std::vector<std::uint64_t> next_sequential(depth);
    for (unsigned i = 0; i < depth; ++i) {
        rngs.emplace_back(0x636f696c'72756e74 + i);
        xorshift[i] = 0x9e3779b97f4a7c15ULL * (i + 1);
        next_sequential[i] = i * read_size;
    }
    const std::uint64_t pages = size / read_size;
    auto draw = [&](unsigned slot) -> std::uint64_t {
        if (offsets == "xorshift") {
            std::uint64_t& x = xorshift[slot];
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            return (x & (pages - 1)) * read_size;
        }
        if (offsets == "sequential") {
            const std::uint64_t at = next_sequential[slot];
            next_sequential[slot] = (at + depth * read_size) % size;
            return at;
        }
        return coil::bench::random_page_offset(rngs[slot], size);
    };
    auto queue = [&](unsigned slot) {
        io_uring_sqe* sqe = io_uring_get_sqe(&ring);
        if (fixed) {
            io_uring_prep_read_fixed(sqe, 0, buffer(slot), read_size, draw(slot),
                                     static_cast<int>(slot));
            sqe->flags |= IOSQE_FIXED_FILE;
        } else {
            io_uring_prep_read(sqe, fd, buffer(slot), read_size, draw(slot));
        }
        io_uring_sqe_set_data64(sqe, slot);
    };

    for (unsigned slot = 0; slot < depth; ++slot)
        queue(slot);
    const auto start = std::chrono::steady_clock::now();
    const auto deadline = start + std::chrono::duration<double>(seconds);
    const double cpu_start = thread_cpu_seconds();
    std::uint64_t reads = 0;
    unsigned in_flight = depth;
    bool refill = true;
    while (in_flight != 0) {
        refill = refill && ((reads & 15) != 0 || std::chrono::steady_clock::now() < deadline);
        if (int ret = io_uring_submit_and_wait(&ring, 1); ret < 0 && ret != -EINTR)
            die(std::string("submit_and_wait: ") + std::strerror(-ret));
        unsigned head = 0;
        unsigned n = 0;
        io_uring_cqe* cqe = nullptr;
        io_uring_for_each_cqe(&ring, head, cqe)
        {
            if (cqe->res != static_cast<int>(read_size))
                die("short read: " + std::to_string(cqe->res));
            const auto slot = static_cast<unsigned>(io_uring_cqe_get_data64(cqe));
            if (refill)
                queue(slot);
            else
                --in_flight;
            ++n;
        }
        io_uring_cq_advance(&ring, n);
        reads += n;
    }
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double cpu = thread_cpu_seconds() - cpu_start;
    std::printf("depth %u misalign %zu entries %u defer %d offsets %s fixed %d: %.0f reads/s wall, "
                "%.0f reads per CPU second\n",
                depth, misalign, entries, defer ? 1 : 0, offsets.c_str(), fixed ? 1 : 0,
                static_cast<double>(reads) / wall, static_cast<double>(reads) / cpu);
    io_uring_queue_exit(&ring);
    std::free(memory);
    ::close(fd);
    return 0;
}
