// SPDX-License-Identifier: MIT
// Smoke test of the ring core (the full seed port lives in ring_*_test.cpp).

#include <coil/io/ring.hpp>

#include <catch2/catch_test_macros.hpp>

TEST_CASE("ring: a nop completes with its user_data and result 0", "[ring][nop]")
{
    coil::io::ring ring(8);
    REQUIRE_FALSE(ring.add_nop(42));
    auto done = ring.wait(1);
    REQUIRE(done.ok());
    int seen = 0;
    for (const coil::io::completion& c : *done) {
        CHECK(c.user_data == 42);
        CHECK(c.result == 0);
        ++seen;
    }
    CHECK(seen == 1);
    CHECK(ring.outstanding() == 0);
    CHECK(ring.stats().enter_calls == 1);
}
