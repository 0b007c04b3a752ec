// SPDX-License-Identifier: MIT
// The benchmarks' data file: creation, reuse and page-cache warming.

#include "bench_data.hpp"

#include <fmt/core.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <system_error>

namespace coil::bench {
namespace {

std::string errno_text(int error) { return std::generic_category().message(error); }

void write_all(int fd, std::span<const std::byte> data, const std::string& path)
{
    while (!data.empty()) {
        ssize_t n = ::write(fd, data.data(), data.size());
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            fail(fmt::format("cannot write {}: {} (choose another place with --data-dir or "
                             "$COIL_BENCH_DIR)",
                             path, n < 0 ? errno_text(errno) : "wrote nothing"));
        data = data.subspan(static_cast<std::size_t>(n));
    }
}

// Written under a temporary name and renamed, so an interrupted run never leaves a short file
// that a later run would take for a good one.
void ensure_file(const std::string& path, std::uint64_t size)
{
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0 && static_cast<std::uint64_t>(st.st_size) == size) {
        fmt::print("  data file {} (reused)\n", path);
        return;
    }
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
    if (ec)
        fail(fmt::format("cannot create the directory for {}: {}", path, ec.message()));
    // A run killed before its rename left NAME.tmp.PID; one whose process is gone is removed.
    const std::filesystem::path wanted(path);
    const std::string prefix = wanted.filename().string() + ".tmp.";
    for (const auto& entry : std::filesystem::directory_iterator(wanted.parent_path(), ec)) {
        const std::string name = entry.path().filename().string();
        if (name.starts_with(prefix) && process_gone(std::atol(name.c_str() + prefix.size())))
            std::filesystem::remove(entry.path(), ec);
    }
    const auto start = std::chrono::steady_clock::now();
    const std::string temporary = fmt::format("{}.tmp.{}", path, ::getpid());
    remove_on_interrupt(temporary);
    int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        fail(fmt::format("cannot create {}: {} (choose another place with --data-dir or "
                         "$COIL_BENCH_DIR)",
                         temporary, errno_text(errno)));
    std::vector<std::uint64_t> chunk((std::size_t{1} << 20) / sizeof(std::uint64_t));
    splitmix64 rng(size);
    for (std::uint64_t written = 0; written < size; written += chunk.size() * 8) {
        for (std::uint64_t& word : chunk)
            word = rng.next() | 0x0101010101010101; // every byte non-zero
        write_all(fd, std::as_bytes(std::span(chunk)), temporary);
    }
    ::close(fd);
    const int renamed = ::rename(temporary.c_str(), path.c_str());
    forget_on_interrupt(temporary);
    if (renamed != 0) {
        int error = errno;
        ::unlink(temporary.c_str());
        fail(fmt::format("cannot rename {} to {}: {}", temporary, path, errno_text(error)));
    }
    std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
    fmt::print("  data file {} (created in {:.1f} s)\n", path, took.count());
}

double warm(int fd, std::uint64_t size)
{
    std::vector<std::byte> buffer(std::size_t{1} << 20);
    for (std::uint64_t offset = 0; offset < size;) {
        ssize_t n = ::pread(fd, buffer.data(), buffer.size(), static_cast<off_t>(offset));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            fail(fmt::format("warming the page cache: read at {} gave {}", offset,
                             n < 0 ? errno_text(errno) : "end of file"));
        offset += static_cast<std::uint64_t>(n);
    }
    void* map = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED)
        return -1;
    const auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
    std::vector<unsigned char> resident((size + page - 1) / page);
    double share = -1;
    if (::mincore(map, size, resident.data()) == 0) {
        std::size_t in_core = 0;
        for (unsigned char r : resident)
            in_core += r & 1U;
        share = static_cast<double>(in_core) / static_cast<double>(resident.size());
    }
    ::munmap(map, size);
    return share;
}

} // namespace

std::uint64_t read_file_size(const harness& h) noexcept
{
    return h.opts().quick ? (std::uint64_t{64} << 20) : (std::uint64_t{1} << 30);
}

scratch_file::scratch_file(const std::string& dir, const std::string& name)
    : path_(dir + "/" + name)
{
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec)
        fail(fmt::format("cannot create the directory {}: {}", dir, ec.message()));
    remove_on_interrupt(path_);
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd_ < 0) {
        const int error = errno;
        forget_on_interrupt(path_);
        fail(fmt::format("cannot create {}: {}", path_, errno_text(error)));
    }
}

scratch_file::~scratch_file()
{
    ::close(fd_);
    ::unlink(path_.c_str());
    forget_on_interrupt(path_);
}

void scratch_file::truncate() const
{
    if (::ftruncate(fd_, 0) != 0)
        fail(fmt::format("ftruncate {}: {}", path_, errno_text(errno)));
}

std::string data_directory(const harness& h, const std::string& fallback)
{
    if (const std::string& dir = h.option("data-dir"); !dir.empty())
        return dir;
    if (const char* dir = std::getenv("COIL_BENCH_DIR"); dir != nullptr && *dir != '\0')
        return dir;
    return fallback;
}

read_file::read_file(const std::string& data_dir, std::uint64_t size) : size_(size)
{
    path_ = fmt::format("{}/read-{}.dat", data_dir,
                        size >= (std::uint64_t{1} << 30) ? fmt::format("{}g", size >> 30)
                                                         : fmt::format("{}m", size >> 20));
    ensure_file(path_, size);
    fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC); // buffered: the page cache is measured
    if (fd_ < 0)
        fail(fmt::format("cannot open {}: {}", path_, errno_text(errno)));
    double resident = warm(fd_, size_);
    fmt::print("  page cache warmed; {} of the file resident\n",
               resident < 0 ? std::string("an unknown share")
                            : fmt::format("{:.1f}%", resident * 100));
}

read_file::~read_file()
{
    if (fd_ >= 0)
        ::close(fd_);
}

double read_file::rewarm() const { return warm(fd_, size_); }

} // namespace coil::bench
