// SPDX-License-Identifier: MIT
// A minimal raw liburing random-read loop outside the harness, for finding out why the read
// rows of the benchmark programs ran slower than a separate small program doing the same work
// (docs/benchmarks.md, "File reads: the 6%"). Each knob is one candidate cause:
//
//   probe_reads FILE [--depth N] [--seconds S] [--misalign BYTES] [--entries N] [--no-defer]
//               [--offsets splitmix|xorshift|sequential] [--fixed]
//   probe_reads FILE --system pread|coil|coil-fixed|coil-sqpoll|raw-sqpoll [--depth N]
//               [--seconds S]
//
// It prints the reads done, reads per wall second and per CPU second of this thread (user +
// system), the latter being what a shared machine disturbs least. `--system` runs one of
// bench_files' own loops (read_systems.hpp) alone instead of the raw loop, so that a profile
// (callgrind, strace -c, perf stat) of one system has no harness and no other system in it.
// Not named bench_*: `./dev bench` does not run it.

#include "bench_data.hpp"
#include "read_systems.hpp"

#include <fmt/core.h>
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

struct cpu_times {
    double user = 0;
    double system = 0;
};

cpu_times thread_cpu() noexcept
{
    rusage usage{};
    ::getrusage(RUSAGE_THREAD, &usage);
    return {static_cast<double>(usage.ru_utime.tv_sec) +
                static_cast<double>(usage.ru_utime.tv_usec) / 1e6,
            static_cast<double>(usage.ru_stime.tv_sec) +
                static_cast<double>(usage.ru_stime.tv_usec) / 1e6};
}

void report(const char* what, std::uint64_t reads, std::chrono::steady_clock::time_point start,
            cpu_times cpu_start)
{
    const double wall =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const cpu_times cpu_end = thread_cpu();
    const double user = cpu_end.user - cpu_start.user;
    const double system = cpu_end.system - cpu_start.system;
    const auto n = static_cast<double>(reads);
    std::printf("%s: %llu reads, %.0f reads/s wall, %.0f reads per CPU second (user %.0f ns + "
                "system %.0f ns per read)\n",
                what, static_cast<unsigned long long>(reads), n / wall, n / (user + system),
                user * 1e9 / n, system * 1e9 / n);
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
    std::string system = "raw";
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
        else if (arg == "--system")
            system = value();
        else
            die("unknown argument " + arg);
    }
    const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        die(std::string("open: ") + std::strerror(errno));
    struct stat st {};
    ::fstat(fd, &st);
    const auto size = static_cast<std::uint64_t>(st.st_size);

    if (system != "raw") {
        namespace reads = coil::bench::reads;
        reads::aligned_arena arena(reads::max_depth * read_size);
        // The SQPOLL systems keep this thread off their kernel thread's CPU.
        const bool sqpoll = system == "coil-sqpoll" || system == "raw-sqpoll";
        const std::optional<unsigned> sq_cpu = reads::sqpoll_cpu();
        if (sqpoll && !sq_cpu)
            die("the SQPOLL systems need two CPUs");
        std::optional<reads::cpu_kept_free> off;
        if (sqpoll)
            off.emplace(*sq_cpu);
        reads::coil_side coil(system == "coil-sqpoll" ? reads::sqpoll_options(*sq_cpu)
                                                      : coil::executor_options{
                                                            .entries = reads::ring_entries});
        coil::file registered = coil.open_registered(path, O_RDONLY);
        coil::bench::run_clock clock(std::chrono::duration_cast<std::chrono::nanoseconds>(
            std::chrono::duration<double>(seconds)));
        const auto start = std::chrono::steady_clock::now();
        const cpu_times cpu_start = thread_cpu();
        std::uint64_t reads_done = 0;
        if (system == "pread")
            reads_done = reads::pread_threads(fd, size, 1, arena, clock);
        else if (system == "coil")
            reads_done = coil.plain(fd, size, depth, arena, clock);
        else if (system == "coil-fixed" || system == "coil-sqpoll")
            reads_done = coil.fixed(registered, size, depth, clock);
        else if (system == "raw-sqpoll") {
            coil::bench::raw_ring raw(reads::ring_entries, reads::sqpoll_raw_params(*sq_cpu));
            reads_done = coil::bench::raw_reads(raw, fd, size, depth, reads::read_seed,
                                                arena.all(), coil::bench::raw_read_mode::fixed,
                                                clock);
        }
        else
            die("unknown system " + system);
        report(system.c_str(), reads_done, start, cpu_start);
        return 0;
    }

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
    const cpu_times cpu_start = thread_cpu();
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
    const std::string what = fmt::format("raw depth {} misalign {} entries {} defer {} offsets {} "
                                         "fixed {}",
                                         depth, misalign, entries, defer ? 1 : 0, offsets,
                                         fixed ? 1 : 0);
    report(what.c_str(), reads, start, cpu_start);
    io_uring_queue_exit(&ring);
    std::free(memory);
    ::close(fd);
    return 0;
}
