// Transport diagnostics: invalid guest register accesses are logged (rate-limited: a hostile
// guest must not flood the host log) and counted.
//
// vireo::log lives in the vhost_user layer, above this one; until it moves down, the transport
// has this small sink, which a VMM can redirect with set_log_sink().
#pragma once

#include <fmt/format.h>

#include <functional>
#include <string_view>

namespace vireo::transport {

using LogSink = std::function<void(std::string_view)>;
// Replaces where warnings go (default: stderr). Not thread-safe against concurrent warnings:
// call it during setup.
void set_log_sink(LogSink sink);
void log_line(std::string_view line);

template <typename... Args>
void warn(fmt::format_string<Args...> f, Args&&... args) {
    log_line(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace vireo::transport
