// One logger for every layer: leveled lines, a replaceable sink, and a budget for the lines a
// guest can cause.
//
// Each event is one line; the default sink writes it to stderr as "vireo: LEVEL: text". Lines
// below the level set with set_level() are dropped before they are formatted (`trace`, every
// vhost-user message, appears only with --verbose). Thread-safe: queue workers log from their
// own threads, and one lock around the sink keeps their lines whole.
//
// Two kinds of warning:
//   warn()        the host's own problems and setup: a failed syscall, an I/O error, a fallback.
//                 They happen a bounded number of times (once per device or queue start).
//   guest_warn()  anything whose repetition the guest controls: an invalid register access, a
//                 malformed ring, a bad request or frame, a failed driver handshake, a host
//                 operation a guest request makes us retry. A hostile guest can produce these in
//                 a loop, so all of them share one budget of kGuestLineBudget lines per process
//                 (per sink); past it they are dropped — without being formatted — and one
//                 notice says so. A budget rather than a rate keeps the first lines, which name
//                 the cause, and needs no clock on the hot path.
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <functional>
#include <string_view>
#include <utility>

namespace vireo::log {

enum class Level { kTrace, kInfo, kWarn, kError };

// "trace", "info", "warn", "error".
std::string_view to_string(Level level);

// Lines below `level` are dropped (default kInfo).
void set_level(Level level);
bool enabled(Level level);

// Where lines go: the level and the text, without prefix or newline. Called under the logger's
// lock, one line at a time, so it must not log itself. An empty sink restores the default
// (stderr, "vireo: LEVEL: text"). Setting a sink also restores the guest-line budget.
using Sink = std::function<void(Level, std::string_view)>;
void set_sink(Sink sink);

// Writes one line if `level` is enabled.
void write(Level level, std::string_view line);

// The guest-line budget; the notice written after it is spent.
inline constexpr std::uint64_t kGuestLineBudget = 256;
inline constexpr std::string_view kGuestSuppressedNotice =
    "further guest-triggered warnings suppressed";

// Writes one guest-triggered line at kWarn, charged to the budget.
void write_guest(std::string_view line);

// False once the budget is spent and its notice written: guest_warn() then skips formatting.
bool guest_lines_open();

// log::trace/info/warn/error("format {}", args...): one line at that level, formatted only if
// the level is enabled.
template <Level L>
struct LineAt {
    template <typename... Args>
    void operator()(fmt::format_string<Args...> f, Args&&... args) const {
        if (enabled(L)) {
            write(L, fmt::format(f, std::forward<Args>(args)...));
        }
    }
};
inline constexpr LineAt<Level::kTrace> trace{};
inline constexpr LineAt<Level::kInfo> info{};
inline constexpr LineAt<Level::kWarn> warn{};
inline constexpr LineAt<Level::kError> error{};

template <typename... Args>
void guest_warn(fmt::format_string<Args...> f, Args&&... args) {
    if (guest_lines_open() && enabled(Level::kWarn)) {
        write_guest(fmt::format(f, std::forward<Args>(args)...));
    }
}

}  // namespace vireo::log
