// SPDX-License-Identifier: MIT
// The "coil.io" error category.

#include <coil/io/error.hpp>

namespace coil::io {
namespace {

class io_category final : public std::error_category {
public:
    const char* name() const noexcept override { return "coil.io"; }

    std::string message(int value) const override
    {
        switch (static_cast<errc>(value)) {
        case errc::no_space:
            return "no room in the ring: the submission queue is full or the completion queue "
                   "would overflow; submit and reap completions, then queue again";
        case errc::unsupported_operation:
            return "the running kernel's io_uring does not support this operation";
        case errc::end_of_file:
            return "end of file reached before all the requested bytes were read";
        case errc::forked_copy:
            return "this ring was inherited through fork(): it belongs to the parent process, "
                   "so the child may not use it; create a new ring (or executor) in the child";
        }
        return "unknown coil.io error " + std::to_string(value);
    }

    std::error_condition default_error_condition(int value) const noexcept override
    {
        switch (static_cast<errc>(value)) {
        case errc::no_space:
            return std::errc::resource_unavailable_try_again;
        case errc::unsupported_operation:
            return std::errc::function_not_supported;
        case errc::end_of_file:
            return std::errc::io_error;
        case errc::forked_copy:
            return std::errc::operation_not_permitted;
        }
        return {value, *this};
    }
};

} // namespace

const std::error_category& error_category() noexcept
{
    static const io_category category;
    return category;
}

} // namespace coil::io
