#include "vhost_user/log.hpp"

#include <cstdio>
#include <mutex>

namespace vireo::log {

namespace {
std::atomic<Level> g_level{Level::kInfo};
std::mutex g_mutex;

std::string_view tag(Level level) {
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
}  // namespace

void set_level(Level level) {
    g_level.store(level, std::memory_order_relaxed);
}

bool enabled(Level level) {
    return level >= g_level.load(std::memory_order_relaxed);
}

void write(Level level, std::string_view line) {
    // One fwrite per line under a lock, so lines from worker threads never interleave.
    const std::string out = fmt::format("vireo: {}: {}\n", tag(level), line);
    std::lock_guard lock(g_mutex);
    std::fwrite(out.data(), 1, out.size(), stderr);
}

}  // namespace vireo::log
