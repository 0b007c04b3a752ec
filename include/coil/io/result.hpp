// SPDX-License-Identifier: MIT
/// @file
/// `result<T>`: the value of an I/O operation, or the `std::error_code` that says why there is none.
#pragma once

#include <cassert>
#include <system_error>
#include <type_traits>
#include <utility>

namespace coil::io {

/// Holds either a value of type `T` or a non-empty `std::error_code`.
///
/// I/O in coil never throws for a failed operation: it returns (or a `co_await` yields) a
/// `result`. Test it with `ok()` or `operator bool`, then read `value()` or `error()`.
/// `value()` on a result that holds an error throws `std::system_error` with that error;
/// use it where a failure is truly exceptional for the caller.
template <class T>
class [[nodiscard]] result {
    static_assert(!std::is_reference_v<T>, "result<T&> is not supported");

public:
    using value_type = T;

    /// A successful result holding `value`.
    result(T value) noexcept(std::is_nothrow_move_constructible_v<T>)
        : value_(std::move(value))
    {
    }

    /// A failed result. Precondition: `error` is not empty.
    result(std::error_code error) noexcept : value_(), error_(error) { assert(error_); }

    bool ok() const noexcept { return !error_; }
    explicit operator bool() const noexcept { return ok(); }

    /// The error; empty when `ok()`.
    const std::error_code& error() const noexcept { return error_; }

    /// The value. Throws `std::system_error(error())` when the result holds an error.
    T& value() &
    {
        check();
        return value_;
    }
    const T& value() const&
    {
        check();
        return value_;
    }
    T&& value() &&
    {
        check();
        return std::move(value_);
    }

    /// The value, or `fallback` when the result holds an error.
    T value_or(T fallback) const& { return ok() ? value_ : fallback; }

    /// Unchecked access. Precondition: `ok()`.
    T& operator*() noexcept
    {
        assert(ok());
        return value_;
    }
    const T& operator*() const noexcept
    {
        assert(ok());
        return value_;
    }
    T* operator->() noexcept
    {
        assert(ok());
        return &value_;
    }
    const T* operator->() const noexcept
    {
        assert(ok());
        return &value_;
    }

private:
    void check() const
    {
        if (error_)
            throw std::system_error(error_);
    }

    T value_;
    std::error_code error_;
};

/// A result with no value: success, or an error.
template <>
class [[nodiscard]] result<void> {
public:
    using value_type = void;

    result() noexcept = default;
    result(std::error_code error) noexcept : error_(error) {}

    bool ok() const noexcept { return !error_; }
    explicit operator bool() const noexcept { return ok(); }
    const std::error_code& error() const noexcept { return error_; }

    /// Throws `std::system_error(error())` when the result holds an error.
    void value() const
    {
        if (error_)
            throw std::system_error(error_);
    }

private:
    std::error_code error_;
};

} // namespace coil::io

namespace coil {
using io::result;
} // namespace coil
