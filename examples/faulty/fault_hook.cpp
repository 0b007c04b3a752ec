// SPDX-License-Identifier: MIT
// Linked into the fault-injected builds of the example servers (echo_server_faulty,
// http_server_faulty; examples/meson.build) and nowhere else: before main() runs it installs
// the fault plan that COIL_FAULT_PLAN names (one of tests/fault_plans.hpp: ebusy, eagain,
// eintr, partial_submit, sq_entries, stall_reap, short_rw, reorder, all, before_multishot;
// seed from COIL_FAULT_SEED) on the main thread, so the server's own ring obeys it. The
// server's source is unchanged. At exit it prints how often each fault fired and, with
// COIL_FAULT_REQUIRE_FIRED=1, turns a clean exit into exit status 3 if the plan's faults never
// fired (the run would have proved nothing about them).

#include "fault_plans.hpp"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>

namespace {

class fault_hook {
public:
    fault_hook()
    {
        const char* name = std::getenv("COIL_FAULT_PLAN");
        if (name == nullptr || *name == '\0')
            return; // no plan: the server runs as built without the seam
        auto plans = coil_test::all_plans();
        plans.push_back(coil_test::before_multishot_plan());
        for (const auto& p : plans) {
            if (std::strcmp(p.name, name) == 0) {
                plan_.emplace(p);
                // Never destroyed: ~scoped_faults restores the thread's current plan, a
                // thread_local that exit() destroys before any static object, so destroying the
                // scope here would write to freed memory (ASan saw it). The pointer stays in
                // this static object, so LeakSanitizer sees it as reachable.
                scope_ = new coil::io::testing::scoped_faults(p.plan);
                std::fprintf(stderr, "fault_hook: plan %s installed\n", p.name);
                return;
            }
        }
        std::fprintf(stderr, "fault_hook: COIL_FAULT_PLAN names no plan: %s\n", name);
        std::exit(2);
    }

    ~fault_hook()
    {
        if (!scope_)
            return;
        const coil::io::testing::fault_counts c = scope_->counts();
        std::fprintf(stderr, "fault_hook: plan %s fired: %s\n", plan_->name,
                     coil_test::describe(c).c_str());
        const std::uint64_t fired = coil_test::fired(*plan_, c);
        const char* require = std::getenv("COIL_FAULT_REQUIRE_FIRED");
        if (fired == 0 && require != nullptr && std::strcmp(require, "1") == 0) {
            std::fprintf(stderr, "fault_hook: the plan's faults never fired\n");
            std::_Exit(3);
        }
    }

    fault_hook(const fault_hook&) = delete;
    fault_hook& operator=(const fault_hook&) = delete;

private:
    std::optional<coil_test::named_plan> plan_;
    coil::io::testing::scoped_faults* scope_ = nullptr;
};

// Constructed on the main thread before main(), destroyed after it returns.
const fault_hook hook;

} // namespace
