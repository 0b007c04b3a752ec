// SPDX-License-Identifier: MIT
// coil_copy: copies a file with several reads and writes in flight, then fsyncs the copy.
//
//   coil_copy SOURCE DEST [--depth N] [--chunk BYTES]
//
// The file is split into chunks; `depth` worker coroutines each take the next chunk, read it
// and write it at the same offset, so up to `depth` chunks are moving at once. When all
// workers are done the destination is fsynced, and coil_copy exits non-zero on any error.

#include <coil/coil.hpp>

#include <fmt/core.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

struct copy_job {
    const coil::file& source;
    const coil::file& dest;
    std::uint64_t size;
    std::size_t chunk;
    std::uint64_t next_offset = 0; // the executor is single-threaded: no lock needed
};

// Copies chunks until none is left. Its buffer lives in this coroutine's frame.
coil::task<void> worker(copy_job& job)
{
    std::vector<std::byte> buffer(job.chunk);
    while (job.next_offset < job.size) {
        const std::uint64_t offset = job.next_offset;
        const std::size_t length =
            static_cast<std::size_t>(std::min<std::uint64_t>(job.chunk, job.size - offset));
        job.next_offset += length;
        auto span = std::span(buffer).first(length);
        if (auto r = co_await job.source.read_exact_at(span, offset); !r)
            throw std::system_error(r.error(), fmt::format("reading at offset {}", offset));
        if (auto w = co_await job.dest.write_all_at(span, offset); !w)
            throw std::system_error(w.error(), fmt::format("writing at offset {}", offset));
    }
}

coil::task<void> copy(std::string from, std::string to, unsigned depth, std::size_t chunk)
{
    auto source = co_await coil::file::open(from);
    if (!source)
        throw std::system_error(source.error(), "opening " + from);
    auto size = co_await source->size();
    if (!size)
        throw std::system_error(size.error(), "stat of " + from);
    auto dest = co_await coil::file::create(to);
    if (!dest)
        throw std::system_error(dest.error(), "creating " + to);

    copy_job job{*source, *dest, *size, chunk};
    std::vector<coil::task<void>> workers;
    for (unsigned i = 0; i < depth; ++i)
        workers.push_back(worker(job));
    co_await coil::when_all(std::move(workers));

    if (auto synced = co_await dest->fsync(); !synced)
        throw std::system_error(synced.error(), "fsync of " + to);
    if (auto closed = co_await dest->close(); !closed)
        throw std::system_error(closed.error(), "closing " + to);
    fmt::print("copied {} bytes from {} to {} ({} in flight, {} KiB chunks)\n", *size, from, to,
               depth, chunk / 1024);
}

} // namespace

int main(int argc, char** argv)
{
    if (argc < 3) {
        fmt::print(stderr, "usage: coil_copy SOURCE DEST [--depth N] [--chunk BYTES]\n");
        return 2;
    }
    unsigned depth = 8;
    std::size_t chunk = 128 * 1024;
    for (int i = 3; i + 1 < argc; i += 2) {
        if (std::strcmp(argv[i], "--depth") == 0)
            depth = static_cast<unsigned>(std::max(1L, std::strtol(argv[i + 1], nullptr, 10)));
        else if (std::strcmp(argv[i], "--chunk") == 0)
            chunk = static_cast<std::size_t>(std::max(4096L, std::strtol(argv[i + 1], nullptr, 10)));
    }
    try {
        coil::run(copy(argv[1], argv[2], depth, chunk));
    } catch (const std::exception& e) {
        fmt::print(stderr, "coil_copy: {}\n", e.what());
        return 1;
    }
    return 0;
}
