// SPDX-License-Identifier: MIT
// The first snippet of docs/runtime.md, whole: a task run on a fresh executor, on a kept one,
// and spawned.

#include <coil/coil.hpp>

coil::task<int> answer() { co_return 42; }

int main() {
    int v = coil::run(answer());          // a fresh executor, run to completion
    coil::executor ex;                    // or keep one:
    int w = ex.run(answer());
    auto handle = ex.spawn(answer());     // starts at the next loop turn; co_await handle
    return v == 42 && w == 42 ? 0 : 1;
}
