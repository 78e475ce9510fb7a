// The daemon's device descriptions: from `vireo blk|net|console|rng|vsock` options or a
// `vireo run` JSON file (format: docs/config.md). Parsing never throws; errors name the
// offending field or option.
#pragma once

#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "devices/blk.hpp"
#include "devices/console.hpp"
#include "devices/net.hpp"
#include "devices/rng.hpp"
#include "devices/vsock.hpp"

namespace vireo::daemon {

// vhost-user rings are addressed by an 8-bit index (SET_VRING_KICK/CALL/ERR payload bits 0-7).
inline constexpr std::uint16_t kMaxQueues = 256;

enum class DeviceType : std::uint8_t { kBlk, kNet, kConsole, kRng, kVsock };
std::string_view to_string(DeviceType t);

// Where a net device's frames go: exactly one of a TAP interface or a named in-process switch
// (devices naming the same switch, in one process, are on one L2 segment).
struct NetEndpointOptions {
    std::string tap;
    std::string switch_name;
    std::optional<dev::MacAddress> mac;
    std::uint16_t queue_pairs = 1;
    std::uint16_t queue_size = 256;
};

// One vhost-user socket and the device behind it; only the options of `type` are used.
struct DeviceConfig {
    DeviceType type = DeviceType::kBlk;
    std::string socket_path;
    // --fd: an inherited vhost-user socket (vhost-user.rst back-end conventions) instead of
    // socket_path: a listening socket, or a connected one (a socketpair end whose peer is the
    // front end). Command line only.
    int socket_fd = -1;
    dev::BlkOptions blk;
    NetEndpointOptions net;
    dev::ConsoleOptions console;
    dev::RngOptions rng;
    dev::VsockOptions vsock;
};

struct DaemonConfig {
    bool verbose = false;
    std::vector<DeviceConfig> devices;
};

// A console port: "stdio", "pty" or "unix:PATH", optionally prefixed by a MULTIPORT name:
// "NAME:pty", "NAME:unix:PATH" (then `named` must be true: extra ports always have a name).
std::expected<dev::ConsolePortOptions, std::string> parse_console_port(std::string_view spec,
                                                                       bool named);

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
