#include "transport/log.hpp"

#include <atomic>
#include <cstdio>

namespace vireo::transport {

namespace {
// A hostile guest can produce invalid accesses in a loop: keep the first few hundred lines.
constexpr std::uint64_t kMaxLines = 256;
std::atomic<std::uint64_t> g_lines{0};
LogSink g_sink;
}  // namespace

void set_log_sink(LogSink sink) {
    g_sink = std::move(sink);
    g_lines.store(0, std::memory_order_relaxed);
}

void log_line(std::string_view line) {
    const std::uint64_t n = g_lines.fetch_add(1, std::memory_order_relaxed);
    if (n >= kMaxLines) {
        return;
    }
    if (g_sink) {
        g_sink(line);
        return;
    }
    std::fprintf(stderr, "[transport] %.*s%s\n", static_cast<int>(line.size()), line.data(),
                 n + 1 == kMaxLines ? " (further warnings suppressed)" : "");
}

}  // namespace vireo::transport
