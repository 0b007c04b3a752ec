// SPDX-License-Identifier: MIT
// Reads a fuzzer's input as a stream of small numbers; past the end every read yields 0, so any
// input, even an empty one, is a valid program for a target.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace coil_fuzz {

class fuzz_input {
public:
    fuzz_input(const std::uint8_t* data, std::size_t size) noexcept : data_(data), size_(size) {}

    bool empty() const noexcept { return offset_ >= size_; }

    std::uint8_t byte() noexcept { return empty() ? 0 : data_[offset_++]; }

    /// A number in [0, n) (n > 0) from one byte (n <= 256) or more.
    std::uint64_t below(std::uint64_t n) noexcept
    {
        std::uint64_t v = byte();
        if (n > 256)
            v = (v << 8) | byte();
        if (n > 65536)
            v = (v << 16) | (std::uint64_t{byte()} << 8) | byte();
        return v % n;
    }

    std::uint64_t u64() noexcept
    {
        std::uint64_t v = 0;
        for (int i = 0; i < 8; ++i)
            v = (v << 8) | byte();
        return v;
    }

    /// The rest of the input.
    std::string_view rest() noexcept
    {
        if (empty())
            return {};
        std::string_view r(reinterpret_cast<const char*>(data_ + offset_), size_ - offset_);
        offset_ = size_;
        return r;
    }

private:
    const std::uint8_t* data_;
    std::size_t size_;
    std::size_t offset_ = 0;
};

} // namespace coil_fuzz
