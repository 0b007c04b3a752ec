// SPDX-License-Identifier: MIT
// The ring size every test's executor uses: the test's own choice, shrunk by
// COIL_TEST_SQ_ENTRIES (and COIL_TEST_CQ_ENTRIES) so that the whole suite can run on a tiny
// ring (docs/testing.md, "The tiny ring"); and a one-shot event for tasks that wait on work
// posted from other threads.
#pragma once

#include <coil/runtime/executor.hpp>

#include <coroutine>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

namespace coil_test {

/// The value of the environment variable `name`, or 0 when it is unset or empty. A value that
/// is not an integer in 1..65536 throws, so that a typo cannot quietly run the suite on the
/// normal ring.
inline unsigned ring_size_from_environment(const char* name)
{
    const char* text = std::getenv(name);
    if (text == nullptr || *text == '\0')
        return 0;
    char* end = nullptr;
    const unsigned long value = std::strtoul(text, &end, 10);
    if (*text < '0' || *text > '9' || *end != '\0' || value == 0 || value > 65536) // " 8" too
        throw std::invalid_argument(std::string(name) + " must be an integer in 1..65536, not '" +
                                    text + "'");
    return static_cast<unsigned>(value);
}

/// COIL_TEST_SQ_ENTRIES: the most submission entries a test's executor may have (0: unset).
inline unsigned tiny_ring_entries() { return ring_size_from_environment("COIL_TEST_SQ_ENTRIES"); }

/// `base` (a test's own ring size, or the executor's defaults), with at most
/// COIL_TEST_SQ_ENTRIES submission entries and at most COIL_TEST_CQ_ENTRIES completion entries
/// (never fewer than the SQ's) when those are set. A test that picked a smaller ring keeps it.
inline coil::executor_options executor_options(coil::executor_options base = {})
{
    const unsigned sq = tiny_ring_entries();
    const unsigned cq = ring_size_from_environment("COIL_TEST_CQ_ENTRIES");
    if (sq != 0)
        base.entries = std::min(base.entries, sq);
    if (cq != 0) {
        const unsigned own = base.ring.cq_entries == 0 ? 2 * base.entries : base.ring.cq_entries;
        base.ring.cq_entries = std::max(base.entries, std::min(own, cq));
    }
    return base;
}

/// An executor on an SQPOLL ring built from `base` (with `executor_options`), or null with
/// `why` set when this machine cannot make one (no permission, or SQPOLL did not take).
inline std::unique_ptr<coil::executor> sqpoll_executor(coil::executor_options base,
                                                       std::string& why)
{
    base.ring.sqpoll = true;
    std::unique_ptr<coil::executor> ex;
    try {
        ex = std::make_unique<coil::executor>(executor_options(base));
    } catch (const std::system_error& e) {
        why = std::string("cannot create the ring: ") + e.what();
        return nullptr;
    }
    if (!ex->ring().sqpoll()) {
        why = "SQPOLL did not take effect";
        return nullptr;
    }
    return ex;
}

/// A ring whose CQ holds 8 completions (4 SQ entries), with or without DEFER_TASKRUN: a
/// multishot op that finds much waiting, or completions that pile up while the thread is away
/// from the ring, overflow it.
inline coil::executor_options eight_entry_cq(bool deferred = true)
{
    coil::executor_options small;
    small.entries = 4;
    small.ring.cq_entries = 8;
    small.ring.single_issuer = deferred;
    return small;
}

/// `coil::run` on an executor with `executor_options()`.
template <class T>
T run(coil::task<T> t)
{
    coil::executor ex(executor_options());
    return ex.run(std::move(t));
}

/// A one-shot event on the executor's thread: a task awaits it, a posted function sets it.
struct event {
    bool is_set = false;
    coil::detail::resumption waiter;

    void set(coil::executor& ex)
    {
        is_set = true;
        if (waiter.handle)
            ex.schedule(waiter);
    }

    struct awaiter {
        event& e;
        bool await_ready() const noexcept { return e.is_set; }
        void await_suspend(std::coroutine_handle<> h) noexcept { e.waiter.handle = h; }
        void await_resume() const noexcept {}
    };
    awaiter operator co_await() noexcept { return {*this}; }
};

} // namespace coil_test
