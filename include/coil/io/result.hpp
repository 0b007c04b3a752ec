// SPDX-License-Identifier: MIT
/// @file
/// `result<T>`: the value of an I/O operation, or the `std::error_code` that says why there is none.
#pragma once

#include <cassert>
#include <system_error>
#include <type_traits>
#include <utility>

namespace coil::io {

namespace detail {

/// An error code stored as value and category pointer: a default (successful) one is two
/// zeroed words, where an empty `std::error_code` costs a call to `std::system_category()`.
/// Results are made once per I/O op, so this is on the hot path.
class stored_error {
public:
    stored_error() noexcept = default;
    stored_error(const std::error_code& e) noexcept
        : value_(e.value()), category_(e ? &e.category() : nullptr)
    {
    }
    bool failed() const noexcept { return category_ != nullptr; }
    std::error_code get() const noexcept
    {
        return category_ != nullptr ? std::error_code(value_, *category_) : std::error_code();
    }

private:
    int value_ = 0;
    const std::error_category* category_ = nullptr;
};

} // namespace detail

/// Holds either a value of type `T` or a non-empty `std::error_code`.
///
/// I/O in coil never throws for a failed operation: it returns (or a `co_await` yields) a
/// `result`. Test it with `ok()` or `operator bool`, then read `value()` or `error()`.
/// `value()` on a result that holds an error throws `std::system_error` with that error;
/// use it where a failure is truly exceptional for the caller. `T` must be default
/// constructible (a failed result holds a default `T`).
template <class T>
class [[nodiscard]] result {
    static_assert(!std::is_reference_v<T>, "result<T&> is not supported");

public:
    using value_type = T;

    /// A successful result holding `value`.
    result(T value) noexcept(std::is_nothrow_move_constructible_v<T>) : value_(std::move(value)) {}

    /// A failed result. Precondition: `error` is not empty.
    result(std::error_code error) noexcept : value_(), error_(error) { assert(error); }

    bool ok() const noexcept { return !error_.failed(); }
    explicit operator bool() const noexcept { return ok(); }

    /// The error; empty when `ok()`.
    std::error_code error() const noexcept { return error_.get(); }

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
        if (error_.failed())
            throw std::system_error(error_.get());
    }

    T value_;
    detail::stored_error error_;
};

/// A result with no value: success, or an error.
template <>
class [[nodiscard]] result<void> {
public:
    using value_type = void;

    result() noexcept = default;
    result(std::error_code error) noexcept : error_(error) {}

    bool ok() const noexcept { return !error_.failed(); }
    explicit operator bool() const noexcept { return ok(); }
    std::error_code error() const noexcept { return error_.get(); }

    /// Throws `std::system_error(error())` when the result holds an error.
    void value() const
    {
        if (error_.failed())
            throw std::system_error(error_.get());
    }

private:
    detail::stored_error error_;
};

} // namespace coil::io

namespace coil {
using io::result;
} // namespace coil
