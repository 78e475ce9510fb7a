// Minimal leveled logging to stderr, shared by the vhost-user layer and the daemon.
//
// One line per event, prefixed with a level tag; `trace` lines (every message) appear only with
// --verbose. Thread-safe: workers log queue errors from their own threads.
#pragma once

#include <fmt/format.h>

#include <atomic>
#include <string_view>

namespace vireo::log {

enum class Level { kTrace, kInfo, kWarn, kError };

void set_level(Level level);
bool enabled(Level level);
void write(Level level, std::string_view line);

template <typename... Args>
void trace(fmt::format_string<Args...> f, Args&&... args) {
    if (enabled(Level::kTrace)) {
        write(Level::kTrace, fmt::format(f, std::forward<Args>(args)...));
    }
}
template <typename... Args>
void info(fmt::format_string<Args...> f, Args&&... args) {
    if (enabled(Level::kInfo)) {
        write(Level::kInfo, fmt::format(f, std::forward<Args>(args)...));
    }
}
template <typename... Args>
void warn(fmt::format_string<Args...> f, Args&&... args) {
    write(Level::kWarn, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void error(fmt::format_string<Args...> f, Args&&... args) {
    write(Level::kError, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace vireo::log
