// The daemon's device descriptions: from `vireo blk` options or a `vireo run` JSON file
// (format: docs/config.md). Parsing never throws; errors name the offending field.
#pragma once

#include <cstdint>
#include <expected>
#include <string>
#include <string_view>
#include <vector>

#include "devices/blk.hpp"

namespace vireo::daemon {

// vhost-user rings are addressed by an 8-bit index (SET_VRING_KICK/CALL/ERR payload bits 0-7).
inline constexpr std::uint16_t kMaxQueues = 256;

struct BlkEndpointConfig {
    std::string socket_path;
    dev::BlkOptions blk;
};

struct DaemonConfig {
    bool verbose = false;
    std::vector<BlkEndpointConfig> devices;
};

// "io_uring" (or "uring") and "sync"; the error lists the accepted names.
std::expected<dev::BlkEngine, std::string> parse_engine(std::string_view name);

// Parses a `vireo run` configuration document.
std::expected<DaemonConfig, std::string> parse_config(std::string_view json_text);
// Reads and parses a configuration file; errors name the file.
std::expected<DaemonConfig, std::string> load_config(const std::string& path);

// Cross-device checks shared by both front doors: queue counts and sizes in range, socket
// paths unique. Errors name the command-line option (cli) or the JSON field.
std::expected<void, std::string> check_config(const DaemonConfig& cfg, bool cli);

}  // namespace vireo::daemon
