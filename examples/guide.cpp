// SPDX-License-Identifier: MIT
// The snippets of docs/runtime.md as one program, so that the guide's code is built and run.
//
//   coil_guide        runs every snippet and prints what each one saw

#include <coil/coil.hpp>

#include <fmt/core.h>

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <string>
#include <system_error>
#include <thread>

using namespace std::chrono_literals;

namespace {

// Closes two descriptors when the scope ends (after a co_return too).
struct close_at_exit {
    int a, b;
    ~close_at_exit()
    {
        ::close(a);
        ::close(b);
    }
};

void check(bool ok, const char* what)
{
    if (!ok) {
        fmt::print(stderr, "coil_guide: {} failed\n", what);
        std::exit(1);
    }
}

// --- 1. Reading and writing ---------------------------------------------------------------
coil::task<std::size_t> pipe_round_trip()
{
    int fds[2];
    check(::pipe(fds) == 0, "pipe");
    const std::string_view message = "hello, coil";
    auto written = co_await coil::write(fds[1], std::as_bytes(std::span(message)));
    if (!written)
        fmt::print("write failed: {}\n", written.error().message());

    std::array<std::byte, 64> buffer;
    coil::result<std::size_t> n = co_await coil::read(fds[0], buffer);
    ::close(fds[0]);
    ::close(fds[1]);
    co_return n.value_or(0);
}

// --- 2. Files -------------------------------------------------------------------------------
coil::task<std::uint64_t> file_round_trip(std::string path)
{
    auto f = co_await coil::file::create(path);
    if (!f)
        co_return 0;
    std::vector<std::byte> data(10000, std::byte{'x'});
    if (auto w = co_await f->write_all_at(data, 0); !w)
        co_return 0;
    (void)co_await f->fdatasync();
    std::vector<std::byte> back(data.size());
    if (auto r = co_await f->read_exact_at(back, 0); !r || back != data)
        co_return 0;
    auto size = co_await f->size();
    (void)co_await f->close();
    ::unlink(path.c_str());
    co_return size.value_or(0);
}

// --- 2a. Replacing a file durably ----------------------------------------------------------
coil::task<coil::result<void>> replace_file(std::string path, std::span<const std::byte> contents)
{
    const std::string temporary = path + ".tmp";
    auto f = co_await coil::file::create(temporary);
    if (!f)
        co_return f.error();
    if (auto w = co_await f->write_all_at(contents, 0); !w)
        co_return w.error();
    if (auto s = co_await f->fdatasync(); !s)                      // the bytes are on disk
        co_return s.error();
    (void)co_await f->close();
    if (auto r = co_await coil::rename(temporary.c_str(), path.c_str()); !r) // atomically
        co_return r.error();
    std::string parent = std::filesystem::path(path).parent_path().string();
    if (parent.empty())
        parent = ".";
    auto dir = co_await coil::file::open(parent, O_RDONLY | O_DIRECTORY);
    if (!dir)
        co_return dir.error();
    co_return co_await dir->fsync();                               // and so is the new name
}

// --- 2b. Registered buffers and files -------------------------------------------------------
// Reads every 4 KiB block of `path` through a registered slot into leased registered buffers,
// and returns how many bytes were 'x'.
coil::task<std::size_t> fixed_reads(std::string path, coil::fixed_buffer_pool& pool)
{
    auto f = co_await coil::file::open(path);
    if (!f)
        co_return 0;
    if (auto registered = f->register_slot(); !registered)
        fmt::print("no registered slot ({}): reads use the descriptor\n",
                   registered.error().message());
    std::size_t matching = 0;
    for (std::uint64_t offset = 0;; offset += pool.buffer_size()) {
        coil::fixed_buffer buffer = pool.try_acquire();
        if (!buffer) // every buffer is lent out: wait for one to come back
            buffer = std::move(co_await pool.acquire()).value();
        auto n = co_await f->read_fixed_at(buffer, offset);
        if (!n || *n == 0)
            break;
        for (std::byte b : buffer.bytes().first(*n))
            matching += b == std::byte{'x'} ? 1 : 0;
    } // each lease returns its buffer to the pool here
    co_return matching;
}

// --- 2c. The lowest latency: an SQPOLL ring and a spinning executor -------------------------
// Reads `path` through an SQPOLL ring whose executor spins on the completion queue.
std::size_t spinning_reads(const std::string& path)
{
    coil::executor_options options;
    options.ring.sqpoll = true;          // a kernel thread takes the SQEs, posts the completions
    options.busy_poll = std::chrono::microseconds(200); // spin this long before sleeping
    coil::executor ex(options);
    coil::fixed_buffer_pool pool(ex, 8, 4096);
    auto matching = ex.run(fixed_reads(path, pool));
    fmt::print("waits ended by spinning: {}\n", ex.stats().busy_poll_hits);
    return matching;
}

// --- 3. Timeouts ----------------------------------------------------------------------------
coil::task<bool> read_times_out()
{
    int fds[2];
    check(::pipe(fds) == 0, "pipe");
    const int fd = fds[0]; // nobody writes to fds[1]
    close_at_exit closing{fds[0], fds[1]};
    std::array<std::byte, 16> buffer;
    auto n = co_await coil::with_timeout(coil::read(fd, buffer), 20ms);
    co_return !n && n.error() == std::errc::timed_out; // true: nothing arrived in 20 ms
}

// --- 4. when_any cancels the loser ---------------------------------------------------------
coil::task<std::string> wait_for_data(int fd)
{
    std::array<std::byte, 16> buffer;
    auto n = co_await coil::read(fd, buffer);
    co_return n ? "data" : n.error().message();
}

coil::task<std::string> timer(std::chrono::milliseconds d)
{
    (void)co_await coil::sleep_for(d);
    co_return "timer";
}

coil::task<std::string> first_of()
{
    int fds[2];
    check(::pipe(fds) == 0, "pipe");
    // Nobody writes to the pipe: the timer wins, and the read is cancelled and awaited
    // before when_any returns.
    auto winner = co_await coil::when_any(wait_for_data(fds[0]), timer(5ms));
    ::close(fds[0]);
    ::close(fds[1]);
    co_return winner.index() == 1 ? std::get<1>(winner.winner) : std::get<0>(winner.winner);
}

// --- 5. A nursery of workers ----------------------------------------------------------------
coil::task<int> workers()
{
    int finished = 0;
    co_await coil::with_nursery([&](coil::nursery& n) -> coil::task<void> {
        for (int i = 0; i < 4; ++i)
            n.spawn([](int& count, int i) -> coil::task<void> {
                (void)co_await coil::sleep_for(std::chrono::milliseconds(i));
                ++count;
            }(finished, i));
        co_return;
    });
    co_return finished; // every child has ended here
}

// --- 6. Work from another thread ------------------------------------------------------------
coil::task<int> from_another_thread(coil::executor& ex)
{
    int efd = ::eventfd(0, EFD_CLOEXEC);
    int value = 0;
    std::thread producer([&] {
        ex.post([&value] { value = 42; });
        std::uint64_t one = 1;
        check(::write(efd, &one, sizeof one) == sizeof one, "eventfd write");
    });
    auto ready = co_await coil::poll(efd, POLLIN);
    producer.join();
    ::close(efd);
    // The posted function ran on this thread before or after the poll completed; yield once
    // so that it has certainly run.
    while (value == 0)
        co_await coil::yield();
    co_return ready ? value : -1;
}

// --- 7. Streams: ops with many completions ---------------------------------------------------
coil::task<std::uint64_t> count_wakeups(int eventfd_fd, std::uint64_t until)
{
    std::uint64_t sum = 0;
    auto ready = coil::poll_multishot(eventfd_fd, POLLIN);   // armed at the first next()
    while (sum < until) {
        auto event = co_await ready.next();   // std::optional<result<std::uint32_t>>
        if (!event || !*event)
            break;                            // ended, or an error (delivered once)
        std::uint64_t v = 0;
        if (::read(eventfd_fd, &v, sizeof v) == sizeof v)
            sum += v;
    }
    co_return sum;
}   // destroying the stream cancels its op and waits for its final completion

coil::task<std::uint64_t> stream_of_wakeups()
{
    int efd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    auto writer = [](int fd) -> coil::task<void> {
        for (std::uint64_t i = 1; i <= 10; ++i) {
            check(::write(fd, &i, sizeof i) == sizeof i, "eventfd write");
            (void)co_await coil::nop();
        }
    };
    auto w = coil::executor::current()->spawn(writer(efd));
    auto sum = co_await count_wakeups(efd, 55);
    co_await w;
    ::close(efd);
    co_return sum;
}

// --- 8. Your own ops --------------------------------------------------------------------------
struct madvise {
    void* address;
    std::size_t length;
    int advice;
    std::error_code prepare(coil::io::ring& r, std::uint64_t user_data) noexcept
    {
        return r.add_sqe(25 /* IORING_OP_MADVISE */, user_data, [&](coil::io::sqe& s) {
            s.addr = reinterpret_cast<std::uint64_t>(address);
            s.len = static_cast<std::uint32_t>(length);
            s.fadvise_advice = static_cast<std::uint32_t>(advice);
        });
    }
    coil::result<void> complete(const coil::io::completion& c) const noexcept
    {
        if (c.result < 0)
            return coil::io::error_from_result(c.result);
        return {};
    }
};

// Private anonymous pages handed back with MADV_DONTNEED read back as zeros.
coil::task<bool> own_op()
{
    const std::size_t size = 2 * 4096;
    void* pages = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    check(pages != MAP_FAILED, "mmap");
    std::memset(pages, 1, size);
    auto r = co_await coil::operation<madvise>({pages, size, MADV_DONTNEED});
    const auto* bytes = static_cast<const unsigned char*>(pages);
    const bool zeroed = std::all_of(bytes, bytes + size, [](unsigned char b) { return b == 0; });
    ::munmap(pages, size);
    co_return (r.ok() && zeroed) || r.error() == coil::io::errc::unsupported_operation;
}

// --- 6a. Waking another task: coil::event -------------------------------------------------
coil::task<std::size_t> writer(int fd, std::deque<std::string>& queue, coil::event& ready,
                               const bool& closing)
{
    std::size_t written = 0;
    for (;;) {
        while (queue.empty()) {
            if (closing)
                co_return written;
            ready.reset();
            if (!co_await ready.wait()) // operation_canceled: this task was stopped
                co_return written;
        }
        const std::string message = std::move(queue.front());
        queue.pop_front();
        auto n = co_await coil::write(fd, std::as_bytes(std::span(message)));
        if (!n)
            co_return written;
        written += *n;
    }
}

coil::task<std::string> queued_writes()
{
    int fds[2];
    check(::pipe(fds) == 0, "pipe");
    close_at_exit closing_fds{fds[0], fds[1]};
    std::deque<std::string> queue;
    coil::event ready;
    bool closing = false;
    auto writing = coil::executor::current()->spawn(writer(fds[1], queue, ready, closing));
    for (const char* word : {"one ", "two ", "three"}) {
        queue.push_back(word);
        ready.set();
        co_await coil::yield();
    }
    closing = true;
    ready.set();
    const std::size_t written = co_await writing;
    std::string back(written, '\0');
    check(::read(fds[0], back.data(), back.size()) == static_cast<ssize_t>(written), "read back");
    co_return back;
}

// --- 9. Around a g++ 12 miscompilation (see the guide) -------------------------------------
coil::task<int> take(std::string s) { co_return static_cast<int>(s.size()); }

coil::task<int> take_a_path(std::string p)
{
    std::string where = p.empty() ? "." : p;
    auto n = co_await take(where);
    co_return n;
}

} // namespace

int main()
{
    // Each line prints what the snippet saw; the checks make the guide's claims a test.
    auto bytes = coil::run(pipe_round_trip());
    fmt::print("1. read {} bytes back from a pipe\n", bytes);
    check(bytes == 11, "pipe round trip");

    auto size = coil::run(file_round_trip("coil_guide.tmp"));
    fmt::print("2. file of {} bytes written, synced and read back\n", size);
    check(size == 10000, "file round trip");

    {
        const std::string_view first = "first version", second = "second version";
        auto one = coil::run(replace_file("coil_guide_config.tmp", std::as_bytes(std::span(first))));
        auto two = coil::run(replace_file("coil_guide_config.tmp", std::as_bytes(std::span(second))));
        std::string back(64, '\0');
        const int fd = ::open("coil_guide_config.tmp", O_RDONLY | O_CLOEXEC);
        const ssize_t n = fd >= 0 ? ::read(fd, back.data(), back.size()) : -1;
        back.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
        if (fd >= 0)
            ::close(fd);
        ::unlink("coil_guide_config.tmp");
        fmt::print("2a. a file replaced twice, durably: '{}'\n", back);
        check(one && two && back == second, "durable replace");
    }

    {
        coil::executor ex;
        coil::fixed_buffer_pool pool(ex, 8, 4096); // destroyed before its executor
        {
            int fd = ::open("coil_guide_fixed.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
            check(fd >= 0, "create the fixed-read file");
            std::vector<std::byte> data(10000, std::byte{'x'});
            check(::write(fd, data.data(), data.size()) == 10000, "write the fixed-read file");
            ::close(fd);
        }
        auto matching = ex.run(fixed_reads("coil_guide_fixed.tmp", pool));
        fmt::print("2b. {} bytes read through registered buffers and a registered file\n",
                   matching);
        check(matching == 10000 && pool.available() == 8, "fixed reads");
        try {
            auto spun = spinning_reads("coil_guide_fixed.tmp");
            fmt::print("2c. {} bytes read through an SQPOLL ring, spinning\n", spun);
            check(spun == 10000, "SQPOLL reads");
        } catch (const std::system_error& e) {
            if (e.code() != std::errc::operation_not_permitted)
                throw;
            fmt::print("2c. skipped: SQPOLL is not permitted here ({})\n", e.what());
        }
        ::unlink("coil_guide_fixed.tmp");
    }

    bool timed_out = coil::run(read_times_out());
    fmt::print("3. read with a 20 ms deadline timed out: {}\n", timed_out);
    check(timed_out, "timeout");

    auto winner = coil::run(first_of());
    fmt::print("4. when_any winner: {}\n", winner);
    check(winner == "timer", "when_any");

    int finished = coil::run(workers());
    fmt::print("5. nursery children finished: {}\n", finished);
    check(finished == 4, "nursery");

    coil::executor ex;
    int posted = ex.run(from_another_thread(ex));
    fmt::print("6. value posted from another thread: {}\n", posted);
    check(posted == 42, "post");

    auto sum = coil::run(stream_of_wakeups());
    fmt::print("7. a multishot poll stream saw every value: {}\n", sum);
    check(sum == 55, "stream");

    bool fadvised = coil::run(own_op());
    fmt::print("8. a user-defined op (IORING_OP_MADVISE) completed: {}\n", fadvised);
    check(fadvised, "own op");

    const std::string queued = coil::run(queued_writes());
    fmt::print("6a. a writer woken through an event wrote: '{}'\n", queued);
    check(queued == "one two three", "event");

    const int taken = coil::run(take_a_path(""));
    fmt::print("9. a conditional computed before the co_await: {} byte(s)\n", taken);
    check(taken == 1, "g++ 12 workaround");
    return 0;
}
