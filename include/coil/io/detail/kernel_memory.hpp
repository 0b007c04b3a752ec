// SPDX-License-Identifier: MIT
/// @file
/// In AddressSanitizer builds, checks that memory handed to the kernel is addressable when the
/// op is queued. The kernel's reads and writes are invisible to ASan, so a buffer freed (or
/// never allocated) before its op completes would otherwise corrupt memory silently. Without
/// ASan every check is an empty inline function. Used by the ring's `add_*` calls.
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <cstddef>

#if defined(__SANITIZE_ADDRESS__)
#define COIL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define COIL_ASAN 1
#endif
#endif
#ifndef COIL_ASAN
#define COIL_ASAN 0
#endif

#if COIL_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>

#include <cstdio>
#include <cstdlib>
#endif

namespace coil::io::detail {

#if COIL_ASAN
/// Prints what is wrong with `[data, data + size)` (ASan's description of the first bad byte:
/// freed, out of bounds, ... with the stacks that allocated and freed it), then aborts.
[[noreturn]] inline void report_unaddressable(const void* data, std::size_t size, const void* bad,
                                              const char* what) noexcept
{
    std::fprintf(stderr,
                 "coil: %s: memory handed to the kernel is not addressable: %zu bytes at %p, "
                 "first bad byte at %p (ASan cannot see the kernel's accesses, so coil checks "
                 "the memory when the op is queued)\n",
                 what, size, data, bad);
    __asan_describe_address(const_cast<void*>(bad));
    __sanitizer_print_stack_trace();
    std::abort();
}
#endif

/// Checks `[data, data + size)`: the memory an op lends the kernel. Null or empty: nothing.
inline void check_kernel_memory(const void* data, std::size_t size, const char* what) noexcept
{
#if COIL_ASAN
    if (data == nullptr || size == 0)
        return;
    if (void* bad = __asan_region_is_poisoned(const_cast<void*>(data), size))
        report_unaddressable(data, size, bad, what);
#else
    static_cast<void>(data);
    static_cast<void>(size);
    static_cast<void>(what);
#endif
}

/// Checks an iovec array and every buffer it names.
inline void check_kernel_iovecs(const ::iovec* iov, std::size_t count, const char* what) noexcept
{
#if COIL_ASAN
    if (iov == nullptr)
        return;
    // The kernel reads no more than UIO_MAXIOV (1024) entries: it refuses a longer array.
    constexpr std::size_t kernel_max = 1024;
    count = count < kernel_max ? count : kernel_max;
    check_kernel_memory(iov, count * sizeof(::iovec), what);
    for (std::size_t i = 0; i < count; ++i)
        check_kernel_memory(iov[i].iov_base, iov[i].iov_len, what);
#else
    static_cast<void>(iov);
    static_cast<void>(count);
    static_cast<void>(what);
#endif
}

/// Checks a NUL-terminated string the kernel will read (a path).
inline void check_kernel_string(const char* text, const char* what) noexcept
{
#if COIL_ASAN
    if (text == nullptr)
        return;
    // Byte by byte up to the NUL, so that reading it here is itself never out of bounds.
    for (const char* p = text;; ++p) {
        if (__asan_address_is_poisoned(p))
            report_unaddressable(text, static_cast<std::size_t>(p - text) + 1, p, what);
        if (*p == '\0')
            break;
    }
#else
    static_cast<void>(text);
    static_cast<void>(what);
#endif
}

/// Checks a msghdr and what it points to: the address, the iovecs and their buffers, the
/// control data.
inline void check_kernel_message(const ::msghdr* message, const char* what) noexcept
{
#if COIL_ASAN
    if (message == nullptr)
        return;
    check_kernel_memory(message, sizeof(::msghdr), what);
    check_kernel_memory(message->msg_name, message->msg_namelen, what);
    check_kernel_iovecs(message->msg_iov, message->msg_iovlen, what);
    check_kernel_memory(message->msg_control, message->msg_controllen, what);
#else
    static_cast<void>(message);
    static_cast<void>(what);
#endif
}

} // namespace coil::io::detail
