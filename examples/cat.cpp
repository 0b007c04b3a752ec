// SPDX-License-Identifier: MIT
// coil_cat: concatenates files to standard output with coroutine reads and writes.
//
//   coil_cat FILE...
//
// Each file is read in 64 KiB chunks with co_await coil::read and written with
// co_await coil::write; short writes (a pipe reader that is slow) are continued.

#include <coil/coil.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <span>

namespace {

coil::task<coil::result<void>> write_all(int fd, std::span<const std::byte> data)
{
    while (!data.empty()) {
        auto n = co_await coil::write(fd, data);
        if (!n)
            co_return n.error();
        data = data.subspan(*n);
    }
    co_return coil::result<void>();
}

coil::task<int> cat(std::span<char*> paths)
{
    std::array<std::byte, 64 * 1024> buffer;
    int status = 0;
    for (const char* path : paths) {
        auto file = co_await coil::file::open(path);
        if (!file) {
            std::fprintf(stderr, "coil_cat: %s: %s\n", path, file.error().message().c_str());
            status = 1;
            continue;
        }
        for (std::uint64_t offset = 0;;) {
            auto n = co_await file->read_at(buffer, offset);
            if (!n) {
                std::fprintf(stderr, "coil_cat: %s: %s\n", path, n.error().message().c_str());
                status = 1;
                break;
            }
            if (*n == 0)
                break;
            auto written = co_await write_all(STDOUT_FILENO, std::span(buffer).first(*n));
            if (!written) {
                std::fprintf(stderr, "coil_cat: stdout: %s\n", written.error().message().c_str());
                co_return 1;
            }
            offset += *n;
        }
        (void)co_await file->close();
    }
    co_return status;
}

} // namespace

int main(int argc, char** argv)
{
    if (argc < 2) {
        std::fprintf(stderr, "usage: coil_cat FILE...\n");
        return 2;
    }
    try {
        return coil::run(cat(std::span(argv + 1, argv + argc)));
    } catch (const std::exception& e) { // setup failures: no io_uring, memlock, ...
        std::fprintf(stderr, "coil_cat: %s\n", e.what());
        return 1;
    }
}
