// Errors as values: a fallible call returns std::expected<T, std::string> whose message names
// what is wrong (a field, a file, a limit), never an exception.
#pragma once

#include <fmt/format.h>

#include <expected>
#include <string>
#include <utility>

namespace vireo {

// The error of a std::expected<T, std::string>, formatted.
template <typename... Args>
std::unexpected<std::string> fail(fmt::format_string<Args...> f, Args&&... args) {
    return std::unexpected(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace vireo

// Evaluates a std::expected-returning expression and returns its error from the calling
// function, which must return a std::expected with the same error type.
#define VIREO_TRY(expr)                          \
    do {                                         \
        if (auto ok_ = (expr); !ok_) {           \
            return std::unexpected(ok_.error()); \
        }                                        \
    } while (0)
