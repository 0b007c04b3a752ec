// SPDX-License-Identifier: MIT
// The thread's current fault plan, for the fault-injecting test build of the ring
// (COIL_FAULT_INJECTION); the faults themselves are injected in io/ring.cpp.

#include "fault_injection.hpp"

#include <utility>

namespace coil::io::testing {
namespace {

// The innermost scope's state on this thread; only this thread reads or writes it.
thread_local std::shared_ptr<detail::fault_state> current;

} // namespace

std::shared_ptr<detail::fault_state> detail::current_faults() noexcept { return current; }

scoped_faults::scoped_faults(fault_plan plan)
    : state_(std::make_shared<detail::fault_state>(plan)), previous_(std::move(current))
{
    current = state_;
}

scoped_faults::~scoped_faults() { current = std::move(previous_); }

fault_counts scoped_faults::counts() const { return state_->counts; }

void scoped_faults::refuse_next_submission() noexcept { state_->refusing = true; }

} // namespace coil::io::testing
