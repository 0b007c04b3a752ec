// SPDX-License-Identifier: MIT
// Creating rings: sizes the kernel accepts and refuses, the setup flags that took effect, the
// opcode probe and coil's own error messages.

#include "ring_test_support.hpp"

#include <coil/io/ring.hpp>

#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <dirent.h>
#include <linux/io_uring.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

using coil::io::completion;
using coil::io::errc;
using coil::io::opcode;
using coil::io::ring;
using coil::io::ring_options;
using Catch::Matchers::ContainsSubstring;
using namespace coil_test;

namespace {

// The exception a ring constructor threw, or nothing when it succeeded.
std::optional<std::system_error> setup_failure(unsigned entries, ring_options options = {})
{
    try {
        ring ring(entries, options);
    } catch (const std::system_error& e) {
        return e;
    }
    return std::nullopt;
}

// An SQPOLL ring, or nothing when this process may not create one.
std::optional<ring> make_sqpoll_ring(ring_options options)
{
    options.sqpoll = true;
    try {
        return std::optional<ring>(std::in_place, 4, options);
    } catch (const std::system_error& e) {
        if (e.code() == std::errc::operation_not_permitted)
            return std::nullopt;
        throw;
    }
}

// The `Cpus_allowed_list` of this process's SQPOLL threads (named iou-sqp-PID), by thread id.
std::map<std::string, std::string> sqpoll_thread_cpus()
{
    std::map<std::string, std::string> found;
    DIR* tasks = ::opendir("/proc/self/task");
    if (tasks == nullptr)
        return found;
    while (const dirent* entry = ::readdir(tasks)) {
        const std::string dir = std::string("/proc/self/task/") + entry->d_name;
        std::ifstream comm(dir + "/comm");
        std::string name;
        if (!std::getline(comm, name) || name.rfind("iou-sqp-", 0) != 0)
            continue;
        std::ifstream status(dir + "/status");
        for (std::string line; std::getline(status, line);)
            if (line.rfind("Cpus_allowed_list:", 0) == 0)
                found[entry->d_name] = line.substr(line.find_first_not_of(" \t", 18));
    }
    ::closedir(tasks);
    return found;
}

} // namespace

TEST_CASE("ring: a nop completes with its user_data and result 0", "[ring][nop]")
{
    ring ring(8);
    REQUIRE_FALSE(ring.add_nop(42));
    CHECK(ring.outstanding() == 1);
    CHECK(ring.unsubmitted() == 1);
    auto done = take(ring.wait(1));
    REQUIRE(done.size() == 1);
    CHECK(done[0] == completion{42, 0, 0});
    CHECK(ring.outstanding() == 0);
    CHECK(ring.unsubmitted() == 0);
}

TEST_CASE("ring: setup with 0 entries throws EINVAL naming the allowed range", "[ring][setup]")
{
    auto failure = setup_failure(0);
    REQUIRE(failure.has_value());
    CHECK(failure->code() == std::errc::invalid_argument);
    CHECK(failure->code().value() == EINVAL);
    CHECK_THAT(failure->what(), ContainsSubstring("entries must be 1..32768"));
}

TEST_CASE("ring: setup with 100000 entries throws EINVAL naming the allowed range",
          "[ring][setup]")
{
    auto failure = setup_failure(100000);
    REQUIRE(failure.has_value());
    CHECK(failure->code() == std::errc::invalid_argument);
    CHECK_THAT(failure->what(), ContainsSubstring("entries must be 1..32768"));
    CHECK_THAT(failure->what(), ContainsSubstring("entries=100000"));
}

TEST_CASE("ring: setup with cq_entries below entries throws EINVAL naming the allowed range",
          "[ring][setup]")
{
    ring_options options;
    options.cq_entries = 8;
    auto failure = setup_failure(16, options);
    REQUIRE(failure.has_value());
    CHECK(failure->code() == std::errc::invalid_argument);
    CHECK_THAT(failure->what(),
               ContainsSubstring("cq_entries 0 or at least entries and at most 65536"));
    CHECK_THAT(failure->what(), ContainsSubstring("cq_entries=8"));
}

TEST_CASE("ring: setup with cq_entries above 65536 throws EINVAL", "[ring][setup]")
{
    ring_options options;
    options.cq_entries = 65537;
    auto failure = setup_failure(16, options);
    REQUIRE(failure.has_value());
    CHECK(failure->code() == std::errc::invalid_argument);
}

TEST_CASE("ring: setup accepts the largest sizes, 32768 entries and 65536 CQ entries",
          "[ring][setup]")
{
    ring_options options;
    options.cq_entries = 65536;
    ring ring(32768, options);
    CHECK(ring.sq_entries() == 32768);
    CHECK(ring.cq_entries() == 65536);
    REQUIRE_FALSE(ring.add_nop(1));
    CHECK(take(ring.wait(1)).size() == 1);
}

TEST_CASE("ring: sizes are rounded up to powers of two, with a CQ twice the SQ by default",
          "[ring][setup]")
{
    ring one(1);
    CHECK(one.sq_entries() == 1);
    CHECK(one.cq_entries() == 2);
    ring odd(5);
    CHECK(odd.sq_entries() == 8);
    CHECK(odd.cq_entries() == 16);
    ring_options options;
    options.cq_entries = 6;
    ring sized(5, options);
    CHECK(sized.sq_entries() == 8);
    CHECK(sized.cq_entries() == 8);
    CHECK(sized.space_left() == 8);
}

TEST_CASE("ring: the ring reports the opcodes it supports", "[ring][setup]")
{
    ring ring(2);
    CHECK(ring.supports(opcode::nop));
    CHECK(ring.supports(opcode::read));
    CHECK(std::string(coil::io::to_string(opcode::nop)) == "nop");
    CHECK(std::string(coil::io::to_string(opcode::poll_add)) == "poll_add");
    CHECK(std::string(coil::io::to_string(opcode::timeout_remove)) == "timeout_remove");
}

TEST_CASE("ring: coil's error codes carry their own category and non-empty messages",
          "[ring][error][unit]")
{
    std::error_code no_space = errc::no_space;
    CHECK(std::string(no_space.category().name()) == "coil.io");
    CHECK_FALSE(no_space.message().empty());
    CHECK(no_space == std::errc::resource_unavailable_try_again);
    std::error_code unsupported = errc::unsupported_operation;
    CHECK_FALSE(unsupported.message().empty());
    CHECK(unsupported == std::errc::function_not_supported);
    CHECK(unsupported != no_space);
    CHECK(coil::io::error_from_result(-ENOENT) == std::errc::no_such_file_or_directory);
    CHECK_FALSE(coil::io::error_from_result(0));
    CHECK_FALSE(coil::io::error_from_result(17));
}

TEST_CASE("ring: a single-issuer ring round-trips a nop and reports the flag",
          "[ring][setup][single_issuer]")
{
    ring_options options;
    options.single_issuer = true;
    ring ring(4, options);
    if (!ring.single_issuer())
        SKIP("this kernel has no IORING_SETUP_SINGLE_ISSUER (Linux 6.1)");
    CHECK(ring.single_issuer());
    REQUIRE_FALSE(ring.add_nop(5));
    auto done = take(ring.wait(1));
    REQUIRE(done.size() == 1);
    CHECK(done[0] == completion{5, 0, 0});
    CHECK(ring.outstanding() == 0);
}

TEST_CASE("ring: a strict ring gets the flags a lenient one gets where the kernel has them, "
          "SUBMIT_ALL included",
          "[ring][setup]")
{
    ring_options options;
    options.single_issuer = true;
    ring lenient(4, options);
    if (!lenient.single_issuer())
        SKIP("this kernel has no IORING_SETUP_SINGLE_ISSUER (Linux 6.1)");
    options.strict = true;
    ring strict(4, options); // every flag asked for is there: no error
    CHECK(strict.setup_flags() == lenient.setup_flags());
    CHECK((strict.setup_flags() & IORING_SETUP_SUBMIT_ALL) != 0);
}

TEST_CASE("ring: a single-issuer ring's reap() delivers a completion deferred as task work",
          "[ring][setup][single_issuer][poll]")
{
    ring_options options;
    options.single_issuer = true;
    ring ring(4, options);
    if (!ring.single_issuer())
        SKIP("this kernel has no IORING_SETUP_SINGLE_ISSUER (Linux 6.1)");
    pipe_fds pipe = make_pipe();
    REQUIRE_FALSE(ring.add_poll(pipe.read_end.get(), POLLIN, 6));
    REQUIRE(ring.submit().ok());
    CHECK(take(ring.wait(0)).empty());

    // The write wakes the poll; with DEFER_TASKRUN its completion is posted only when this
    // thread enters the kernel, which reap() does when the kernel flags pending task work.
    REQUIRE(::write(pipe.write_end.get(), "x", 1) == 1);
    std::vector<completion> done;
    for (const completion& c : ring.reap())
        done.push_back(c);
    REQUIRE(done.size() == 1);
    CHECK(done[0].user_data == 6);
    CHECK((done[0].result & POLLIN) != 0);
}

TEST_CASE("ring: a single-issuer ring's reap_into() and for_each_completion() deliver a "
          "completion deferred as task work; for_each_ready() leaves it to the next enter",
          "[ring][setup][single_issuer][poll]")
{
    ring_options options;
    options.single_issuer = true;
    ring ring(4, options);
    if (!ring.single_issuer())
        SKIP("this kernel has no IORING_SETUP_SINGLE_ISSUER (Linux 6.1)");
    pipe_fds pipe = make_pipe();
    // Each round: a poll waits, the write wakes it, and with DEFER_TASKRUN its completion is
    // posted only when this thread enters the kernel.
    auto woken_poll = [&](std::uint64_t user_data) {
        REQUIRE_FALSE(ring.add_poll(pipe.read_end.get(), POLLIN, user_data));
        REQUIRE(ring.submit().ok());
        REQUIRE(::write(pipe.write_end.get(), "x", 1) == 1);
    };
    auto drain_pipe = [&] {
        char c;
        REQUIRE(::read(pipe.read_end.get(), &c, 1) == 1);
    };

    woken_poll(1);
    std::array<completion, 4> out{};
    REQUIRE(ring.reap_into(out) == 1);
    CHECK(out[0].user_data == 1);
    CHECK((out[0].result & POLLIN) != 0);
    drain_pipe();

    woken_poll(2);
    std::vector<completion> done;
    CHECK(ring.for_each_completion([&](const completion& c) { done.push_back(c); }) == 1);
    REQUIRE(done.size() == 1);
    CHECK(done[0].user_data == 2);
    drain_pipe();

    // for_each_ready() never enters: the kernel says it holds the completion, and the next
    // submit_and_get_events() brings it in.
    woken_poll(3);
    CHECK(ring.for_each_ready([](const completion&) {}) == 0);
    CHECK(ring.kernel_holds_completions());
    REQUIRE(ring.submit_and_get_events().ok());
    done.clear();
    CHECK(ring.for_each_ready([&](const completion& c) { done.push_back(c); }) == 1);
    REQUIRE(done.size() == 1);
    CHECK(done[0].user_data == 3);
    CHECK(ring.outstanding() == 0);
}

TEST_CASE("ring: a coop-taskrun ring round-trips a poll", "[ring][setup]")
{
    ring_options options;
    options.coop_taskrun = true;
    ring ring(4, options);
    if (!ring.coop_taskrun())
        SKIP("this kernel has no IORING_SETUP_COOP_TASKRUN (Linux 5.19)");
    pipe_fds pipe = make_pipe();
    REQUIRE_FALSE(ring.add_poll(pipe.read_end.get(), POLLIN, 7));
    REQUIRE(ring.submit().ok());
    REQUIRE(::write(pipe.write_end.get(), "x", 1) == 1);
    auto done = collect(ring, 1);
    REQUIRE(done.size() == 1);
    CHECK(done[0].user_data == 7);
    CHECK((done[0].result & POLLIN) != 0);
}

TEST_CASE("ring: an SQPOLL ring counts each submitted SQE once", "[ring][setup][sqpoll]")
{
    ring_options options;
    options.sqpoll = true;
    options.sqpoll_idle = std::chrono::milliseconds(1);
    std::optional<ring> maybe;
    try {
        maybe.emplace(4, options);
    } catch (const std::system_error& e) {
        if (e.code() == std::errc::operation_not_permitted)
            SKIP("SQPOLL is not permitted here: " << e.what());
        throw;
    }
    ring& ring = *maybe;
    REQUIRE(ring.sqpoll());

    for (std::uint64_t round = 0; round < 3; ++round) {
        // Let the kernel thread go idle, so that it is still waking up when submit() is
        // called a second time (the assertions hold either way).
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        REQUIRE_FALSE(ring.add_nop(round));
        auto first = ring.submit();
        auto second = ring.submit();
        REQUIRE(first.ok());
        REQUIRE(second.ok());
        CHECK(*first == 1);
        CHECK(*second == 0); // the SQE was handed over by the first call
        auto done = collect(ring, 1);
        REQUIRE(done.size() == 1);
        CHECK(done[0] == completion{round, 0, 0});
    }
    CHECK(ring.stats().sqes_submitted == 3);
    CHECK(ring.stats().cqes_reaped == 3);
}

TEST_CASE("ring: an SQPOLL ring keeps SUBMIT_ALL and leaves out the task-run flags SQPOLL excludes",
          "[ring][setup][sqpoll]")
{
    // What this kernel gives a ring that asks for everything, without SQPOLL.
    ring_options everything;
    everything.single_issuer = true;
    everything.coop_taskrun = true;
    const unsigned plain_flags = ring(4, everything).setup_flags();

    std::optional<ring> sq = make_sqpoll_ring(everything);
    if (!sq)
        SKIP("SQPOLL is not permitted here");
    const unsigned flags = sq->setup_flags();
    CHECK(sq->sqpoll());
    CHECK((flags & IORING_SETUP_SQPOLL) != 0);
    CHECK((flags & IORING_SETUP_SUBMIT_ALL) == (plain_flags & IORING_SETUP_SUBMIT_ALL));
    CHECK((flags & IORING_SETUP_SINGLE_ISSUER) == (plain_flags & IORING_SETUP_SINGLE_ISSUER));
    CHECK((flags & (IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_COOP_TASKRUN |
                    IORING_SETUP_TASKRUN_FLAG)) == 0);
    CHECK((flags & IORING_SETUP_SQ_AFF) == 0);

    // And it works: a nop round trip.
    REQUIRE_FALSE(sq->add_nop(5));
    REQUIRE(sq->submit().ok());
    auto done = collect(*sq, 1);
    REQUIRE(done.size() == 1);
    CHECK(done[0].user_data == 5);
    CHECK(done[0].result == 0);
}

TEST_CASE("ring: sqpoll_cpu binds the SQPOLL thread to that CPU", "[ring][setup][sqpoll]")
{
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    REQUIRE(::sched_getaffinity(0, sizeof allowed, &allowed) == 0);
    int cpu = CPU_SETSIZE - 1;
    while (cpu > 0 && !CPU_ISSET(cpu, &allowed))
        --cpu;
    REQUIRE(CPU_ISSET(cpu, &allowed));

    // An earlier ring's thread may still be exiting: look only at the thread this ring adds.
    const std::map<std::string, std::string> before = sqpoll_thread_cpus();
    ring_options options;
    options.sqpoll_cpu = static_cast<unsigned>(cpu);
    std::optional<ring> sq = make_sqpoll_ring(options);
    if (!sq)
        SKIP("SQPOLL is not permitted here");
    CHECK((sq->setup_flags() & IORING_SETUP_SQ_AFF) != 0);
    // The thread names itself and sets its own affinity once it first runs: wait for that.
    std::vector<std::string> added;
    for (int attempt = 0; attempt < 5000; ++attempt) {
        added.clear();
        for (const auto& [tid, cpus] : sqpoll_thread_cpus())
            if (!before.contains(tid))
                added.push_back(cpus);
        if (added.size() == 1 && added[0] == std::to_string(cpu))
            break;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    REQUIRE(added.size() == 1);
    CHECK(added[0] == std::to_string(cpu));

    REQUIRE_FALSE(sq->add_nop(9));
    REQUIRE(sq->submit().ok());
    auto done = collect(*sq, 1);
    REQUIRE(done.size() == 1);
    CHECK(done[0].user_data == 9);
}

TEST_CASE("ring: on an SQPOLL ring whose thread shares its CPU with a busy one, adds beyond the "
          "SQ wait for room instead of failing with no_space",
          "[ring][setup][sqpoll]")
{
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    REQUIRE(::sched_getaffinity(0, sizeof allowed, &allowed) == 0);
    int cpu = 0;
    while (cpu < CPU_SETSIZE - 1 && !CPU_ISSET(cpu, &allowed))
        ++cpu;
    ring_options options;
    options.sqpoll_cpu = static_cast<unsigned>(cpu);
    std::optional<ring> sq = make_sqpoll_ring(options); // 4 entries
    if (!sq)
        SKIP("SQPOLL is not permitted here");
    // A thread that never sleeps, on the SQPOLL thread's CPU: the kernel thread gets its
    // share of the CPU in slices of milliseconds, so it often takes longer than the ring's
    // first, short wait to take SQEs.
    std::atomic<bool> done{false};
    std::thread hog([&] {
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpu, &one);
        (void)::pthread_setaffinity_np(::pthread_self(), sizeof one, &one);
        while (!done.load(std::memory_order_relaxed)) {
        }
    });
    pipe_fds pipe = make_pipe();
    std::array<std::byte, 8> buffer{};
    unsigned refused = 0;
    constexpr unsigned reads = 64; // 16 times the SQ; nothing completes (the pipe is empty)
    for (unsigned i = 0; i < reads; ++i)
        if (sq->add_read(pipe.read_end.get(), buffer, current_position, i))
            ++refused;
    done = true;
    hog.join();
    CHECK(refused == 0);
    CHECK(sq->outstanding() == reads);
    sq->cancel_all();
    sq->drain();
}

TEST_CASE("ring: an sqpoll_cpu that names no CPU throws EINVAL saying what it must name",
          "[ring][setup][sqpoll]")
{
    ring_options options;
    options.sqpoll = true;
    options.sqpoll_cpu = 1U << 20;
    auto failure = setup_failure(4, options);
    REQUIRE(failure);
    if (failure->code() == std::errc::operation_not_permitted)
        SKIP("SQPOLL is not permitted here");
    CHECK(failure->code() == std::errc::invalid_argument);
    CHECK_THAT(failure->what(), ContainsSubstring("sqpoll_cpu") && ContainsSubstring("SQ_AFF"));
}

TEST_CASE("ring: has_ext_arg() reports IORING_FEAT_EXT_ARG, and timed waits work with it",
          "[ring][setup][wait]")
{
    ring ring(2);
    if (!ring.has_ext_arg()) {
        // Without it a timed wait is refused rather than silently untimed.
        REQUIRE_FALSE(ring.add_nop(1));
        CHECK(ring.wait(1, std::chrono::milliseconds(1)).error() == errc::unsupported_operation);
        SKIP("this kernel has no IORING_FEAT_EXT_ARG (Linux 5.11)");
    }
    REQUIRE_FALSE(ring.add_nop(1));
    auto done = take(ring.wait(1, std::chrono::seconds(5)));
    REQUIRE(done.size() == 1);
    CHECK(done[0] == completion{1, 0, 0});
}
