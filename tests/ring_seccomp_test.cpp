// SPDX-License-Identifier: MIT
// Setup errors that name their cause: a seccomp filter in a forked child blocks one io_uring
// system call (or a small RLIMIT_MEMLOCK starves it), and the ring's exception must say which
// and what to do.

#include "ring_test_support.hpp"

#include <coil/io/ring.hpp>

#include <catch2/catch_test_macros.hpp>

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/io_uring.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <string>
#include <system_error>

using coil::io::ring;

namespace {

#if defined(__x86_64__)
constexpr std::uint32_t native_audit_arch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
constexpr std::uint32_t native_audit_arch = AUDIT_ARCH_AARCH64;
#else
#error "ring_seccomp_test needs the audit arch of this target"
#endif

// Exit codes of the child.
constexpr int child_ok = 0;          // the ring threw, with the expected code and text
constexpr int child_no_throw = 10;   // the ring was created: the block went unnoticed
constexpr int child_wrong_error = 11;
constexpr int child_no_seccomp = 12; // the filter could not be installed

// Makes every call of system call `nr` (with `register_opcode`, when not negative, as its second
// argument) fail with `error` in this process, and only here. False when seccomp is unavailable.
bool block_syscall(long nr, int error, long register_opcode = -1)
{
    const auto nr_offset = static_cast<std::uint32_t>(offsetof(seccomp_data, nr));
    const auto arch_offset = static_cast<std::uint32_t>(offsetof(seccomp_data, arch));
    // args[1], low 32 bits (little-endian).
    const auto arg1_offset = static_cast<std::uint32_t>(offsetof(seccomp_data, args[1]));
    const auto deny = static_cast<std::uint32_t>(SECCOMP_RET_ERRNO | (error & SECCOMP_RET_DATA));
    const bool check_opcode = register_opcode >= 0;
    sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, arch_offset),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, native_audit_arch, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, nr_offset),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, static_cast<std::uint32_t>(nr), 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, check_opcode ? arg1_offset : nr_offset),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K,
                 check_opcode ? static_cast<std::uint32_t>(register_opcode)
                              : static_cast<std::uint32_t>(nr),
                 0, 1),
        BPF_STMT(BPF_RET | BPF_K, deny),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    sock_fprog program{static_cast<unsigned short>(std::size(filter)), filter};
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return false;
    return ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) == 0;
}

// In a child with system call `nr` blocked (failing with `error`), creates a ring and checks that
// it throws `error` with `expected` in its message. Returns the child's exit code.
int ring_setup_in_child(long nr, int error, const char* expected, long register_opcode = -1)
{
    std::fflush(nullptr);
    const pid_t child = ::fork();
    if (child < 0)
        return -1;
    if (child == 0) {
        if (!block_syscall(nr, error, register_opcode))
            ::_exit(child_no_seccomp);
        try {
            ring ring(4);
            ::_exit(child_no_throw);
        } catch (const std::system_error& e) {
            const bool right = e.code().value() == error &&
                               std::strstr(e.what(), expected) != nullptr;
            if (!right)
                std::fprintf(stderr, "child: code %d, what(): %s\n", e.code().value(), e.what());
            std::fflush(stderr);
            ::_exit(right ? child_ok : child_wrong_error);
        }
    }
    int status = 0;
    if (::waitpid(child, &status, 0) != child || !WIFEXITED(status))
        return -1;
    return WEXITSTATUS(status);
}

} // namespace

TEST_CASE("ring: setup names seccomp, not the kernel's age, when io_uring_register is blocked",
          "[ring][setup][seccomp]")
{
    const int code = ring_setup_in_child(
        SYS_io_uring_register, EPERM,
        "io_uring_register is blocked (seccomp or an LSM): allow the io_uring_* system calls");
    if (code == child_no_seccomp)
        SKIP("seccomp filters cannot be installed here");
    CHECK(code == child_ok);
}

TEST_CASE("ring: setup names seccomp when io_uring_enter is blocked", "[ring][setup][seccomp]")
{
    for (int error : {EPERM, ENOSYS}) {
        INFO("errno " << error);
        const int code =
            ring_setup_in_child(SYS_io_uring_enter, error, "io_uring_enter is blocked (seccomp");
        if (code == child_no_seccomp)
            SKIP("seccomp filters cannot be installed here");
        CHECK(code == child_ok);
    }
}

TEST_CASE("ring: setup refused with EPERM names the io_uring_disabled sysctl and seccomp, and "
          "with ENOSYS a kernel without io_uring",
          "[ring][setup][seccomp]")
{
    // What kernel.io_uring_disabled = 2 (or 1 outside kernel.io_uring_group), a container's
    // default seccomp profile, and a kernel built without io_uring look like to the process.
    int code = ring_setup_in_child(SYS_io_uring_setup, EPERM,
                                   "io_uring is disabled for this process. Either the sysctl "
                                   "kernel.io_uring_disabled is set");
    if (code == child_no_seccomp)
        SKIP("seccomp filters cannot be installed here");
    CHECK(code == child_ok);
    code = ring_setup_in_child(SYS_io_uring_setup, EPERM,
                               "or a seccomp profile (a container runtime's default");
    CHECK(code == child_ok);
    code = ring_setup_in_child(SYS_io_uring_setup, ENOSYS,
                               "this kernel has no io_uring (it needs Linux 5.6 or newer");
    CHECK(code == child_ok);
}

TEST_CASE("ring: a refused ring fd registration is not fatal", "[ring][setup][seccomp]")
{
    std::fflush(nullptr);
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        if (!block_syscall(SYS_io_uring_register, EPERM, IORING_REGISTER_RING_FDS))
            ::_exit(child_no_seccomp);
        try {
            ring ring(4);
            if (ring.add_nop(1))
                ::_exit(child_wrong_error);
            auto done = ring.wait(1);
            int seen = 0;
            if (done)
                for (const coil::io::completion& c : *done)
                    seen += c.user_data == 1 && c.result == 0 ? 1 : 0;
            ::_exit(seen == 1 ? child_ok : child_wrong_error);
        } catch (const std::system_error& e) {
            std::fprintf(stderr, "child: %s\n", e.what());
            std::fflush(stderr);
            ::_exit(child_wrong_error);
        }
    }
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    REQUIRE(WIFEXITED(status));
    if (WEXITSTATUS(status) == child_no_seccomp)
        SKIP("seccomp filters cannot be installed here");
    CHECK(WEXITSTATUS(status) == child_ok);
}

TEST_CASE("ring: setup names the locked-memory limit and the ring's size when the kernel has no "
          "memory for it",
          "[ring][setup][seccomp]")
{
    const int code = ring_setup_in_child(SYS_io_uring_setup, ENOMEM,
                                         "(at least 1 KiB). For a process without CAP_IPC_LOCK "
                                         "the kernel charges it to the locked-memory limit "
                                         "(RLIMIT_MEMLOCK, now");
    if (code == child_no_seccomp)
        SKIP("seccomp filters cannot be installed here");
    CHECK(code == child_ok);
}

TEST_CASE("ring: a ring larger than RLIMIT_MEMLOCK, without CAP_IPC_LOCK, throws ENOMEM saying "
          "what to raise",
          "[ring][setup]")
{
    // A 4096-entry ring needs about 400 KiB; the limit is 64 KiB. Kernels from 5.12 until the
    // rings became accounted memory regions again do not charge the limit at all: then the ring
    // is created and there is nothing to check.
    constexpr int child_not_charged = 13;
    std::fflush(nullptr);
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        if (!coil_test::limit_locked_memory(64 * 1024))
            ::_exit(child_wrong_error);
        try {
            ring ring(4096);
            ::_exit(child_not_charged);
        } catch (const std::system_error& e) {
            const bool right = e.code().value() == ENOMEM &&
                               std::strstr(e.what(), "(at least 400 KiB)") != nullptr &&
                               std::strstr(e.what(), "RLIMIT_MEMLOCK, now 64 KiB") != nullptr &&
                               std::strstr(e.what(), "ulimit -l") != nullptr;
            if (!right)
                std::fprintf(stderr, "child: code %d, what(): %s\n", e.code().value(), e.what());
            std::fflush(stderr);
            ::_exit(right ? child_ok : child_wrong_error);
        }
    }
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    REQUIRE(WIFEXITED(status));
    if (WEXITSTATUS(status) == child_not_charged)
        SKIP("this kernel does not charge rings to RLIMIT_MEMLOCK");
    CHECK(WEXITSTATUS(status) == child_ok);
}
