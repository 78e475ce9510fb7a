#include "base/log.hpp"

#include <atomic>
#include <cstdio>
#include <mutex>
#include <string>

namespace vireo::log {

namespace {

std::atomic<Level> g_level{Level::kInfo};
// Guards the sink and the guest-line count; held while a line is written, so lines from
// worker threads never interleave.
std::mutex g_mutex;
Sink g_sink;                      // empty: stderr
std::uint64_t g_guest_lines = 0;  // guest lines written since the last set_sink()
// Mirrors "budget spent and notice written" for guest_lines_open()'s lock-free check.
std::atomic<bool> g_guest_open{true};

// Caller holds g_mutex.
void emit(Level level, std::string_view line) {
    if (g_sink) {
        g_sink(level, line);
        return;
    }
    // One fwrite per line: stderr is unbuffered, and a line split over several writes could
    // still interleave with another process sharing the terminal.
    const std::string out = fmt::format("vireo: {}: {}\n", to_string(level), line);
    std::fwrite(out.data(), 1, out.size(), stderr);
}

}  // namespace

std::string_view to_string(Level level) {
    switch (level) {
        case Level::kTrace:
            return "trace";
        case Level::kInfo:
            return "info";
        case Level::kWarn:
            return "warn";
        case Level::kError:
            return "error";
    }
    return "?";
}

void set_level(Level level) {
    g_level.store(level, std::memory_order_relaxed);
}

bool enabled(Level level) {
    return level >= g_level.load(std::memory_order_relaxed);
}

void set_sink(Sink sink) {
    {
        const std::lock_guard lock(g_mutex);
        std::swap(g_sink, sink);
        g_guest_lines = 0;
        g_guest_open.store(true, std::memory_order_relaxed);
    }
    // `sink` now holds the previous sink; it is destroyed here, outside the lock.
}

void write(Level level, std::string_view line) {
    if (!enabled(level)) {
        return;
    }
    const std::lock_guard lock(g_mutex);
    emit(level, line);
}

bool guest_lines_open() {
    return g_guest_open.load(std::memory_order_relaxed);
}

void write_guest(std::string_view line) {
    if (!enabled(Level::kWarn)) {
        return;
    }
    const std::lock_guard lock(g_mutex);
    if (g_guest_lines < kGuestLineBudget) {
        ++g_guest_lines;
        emit(Level::kWarn, line);
        return;
    }
    // The first line over budget is replaced by the notice; the open flag then lets later
    // callers skip formatting altogether.
    if (g_guest_open.exchange(false, std::memory_order_relaxed)) {
        emit(Level::kWarn, kGuestSuppressedNotice);
    }
}

}  // namespace vireo::log
