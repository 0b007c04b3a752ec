// SPDX-License-Identifier: MIT
// The fault plans the runtime and networking fault tests run: each fault alone and all together,
// with a fixed seed that COIL_FAULT_SEED overrides, and which counter shows each fault fired.
#pragma once

#include "fault_injection.hpp"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace coil_test {

using coil::io::testing::fault_counts;
using coil::io::testing::fault_plan;

// The seed every plan uses unless COIL_FAULT_SEED (decimal or 0x-hex) names another.
inline constexpr std::uint64_t fixed_seed = 0x5eedc0110002ULL;

inline std::uint64_t chosen_seed()
{
    static const std::uint64_t seed = [] {
        const char* text = std::getenv("COIL_FAULT_SEED");
        std::uint64_t s = fixed_seed;
        if (text != nullptr && *text != '\0')
            s = std::strtoull(text, nullptr, 0);
        std::printf("faults: seed %#llx (set COIL_FAULT_SEED to change it)\n",
                    static_cast<unsigned long long>(s));
        return s;
    }();
    return seed;
}

// One bit per fault counter, to say which faults a plan injects and which a scenario can meet.
enum fault_bit : unsigned {
    ebusy = 1U << 0,
    eagain = 1U << 1,
    eintr = 1U << 2,
    partial = 1U << 3,
    sq_fill = 1U << 4,
    stall = 1U << 5,
    shorten = 1U << 6,
    reorder = 1U << 7,
    every_fault = (1U << 8) - 1, // every transient fault: the plan "all"
    // Not a transient fault but an older kernel: see before_multishot_plan().
    multishot_refused = 1U << 8,
};

struct named_plan {
    const char* name;
    fault_plan plan;
    unsigned injects; // fault_bit set
};

inline std::vector<named_plan> all_plans()
{
    const std::uint64_t seed = chosen_seed();
    return {
        {"ebusy", {.seed = seed, .enter_ebusy = 250}, ebusy},
        {"eagain", {.seed = seed, .enter_eagain = 250}, eagain},
        {"eintr", {.seed = seed, .enter_eintr = 500}, eintr},
        {"partial_submit", {.seed = seed, .partial_submit = 400}, partial},
        {"sq_entries", {.seed = seed, .sq_entries = 2}, sq_fill},
        {"stall_reap", {.seed = seed, .stall_reap = 250}, stall},
        {"short_rw", {.seed = seed, .short_rw = 500}, shorten},
        {"reorder", {.seed = seed, .reorder = 300}, reorder},
        {"all",
         {.seed = seed,
          .enter_ebusy = 100,
          .enter_eagain = 100,
          .enter_eintr = 150,
          .partial_submit = 300,
          .sq_entries = 3,
          .stall_reap = 150,
          .short_rw = 400,
          .reorder = 250},
         every_fault},
    };
}

/// A kernel older than multishot accept, receive and timeouts (they are refused with EINVAL).
/// Kept out of all_plans(): the runtime's tests of repeating timers rightly fail on it.
inline named_plan before_multishot_plan()
{
    return {"before_multishot", {.seed = chosen_seed(), .refuse_multishot = true},
            multishot_refused};
}

inline std::uint64_t counter_of(const fault_counts& c, fault_bit bit)
{
    switch (bit) {
    case ebusy: return c.ebusy;
    case eagain: return c.eagain;
    case eintr: return c.eintr;
    case partial: return c.partial_submits;
    case sq_fill: return c.sq_fills;
    case stall: return c.stalls;
    case shorten: return c.shortened;
    case reorder: return c.reordered;
    case multishot_refused: return c.multishot_refused;
    case every_fault: break;
    }
    return 0;
}

/// How often the faults `p` injects fired, summed.
inline std::uint64_t fired(const named_plan& p, const fault_counts& c)
{
    std::uint64_t n = 0;
    for (unsigned bit = 1; bit <= multishot_refused; bit <<= 1)
        if (p.injects & bit)
            n += counter_of(c, static_cast<fault_bit>(bit));
    return n;
}

/// How often each fault fired, as one line's text ("ebusy 3, eagain 0, ...").
inline std::string describe(const fault_counts& c)
{
    char text[256];
    std::snprintf(text, sizeof text,
                  "ebusy %llu, eagain %llu, eintr %llu, partial %llu, sq fills %llu, stalls %llu, "
                  "shortened %llu, reordered %llu, multishot refused %llu",
                  static_cast<unsigned long long>(c.ebusy), static_cast<unsigned long long>(c.eagain),
                  static_cast<unsigned long long>(c.eintr),
                  static_cast<unsigned long long>(c.partial_submits),
                  static_cast<unsigned long long>(c.sq_fills),
                  static_cast<unsigned long long>(c.stalls),
                  static_cast<unsigned long long>(c.shortened),
                  static_cast<unsigned long long>(c.reordered),
                  static_cast<unsigned long long>(c.multishot_refused));
    return text;
}

inline const char* name_of(fault_bit bit)
{
    switch (bit) {
    case ebusy: return "ebusy";
    case eagain: return "eagain";
    case eintr: return "eintr";
    case partial: return "partial submits";
    case sq_fill: return "sq fills";
    case stall: return "stalls";
    case shorten: return "shortened";
    case reorder: return "reordered";
    case multishot_refused: return "multishot refused";
    case every_fault: break;
    }
    return "?";
}

} // namespace coil_test
