#include "daemon/config.hpp"

#include <fmt/format.h>

#include <nlohmann/json.hpp>
#include <set>

#include "base/config_file.hpp"
#include "base/error.hpp"
#include "virtq/ring_layout.hpp"

namespace vireo::daemon {

namespace {

using json = nlohmann::json;

// Reads optional typed fields of one JSON object, rejecting unknown keys so typos are errors.
class Fields {
  public:
    Fields(const json& obj, std::string where) : obj_(obj), where_(std::move(where)) {}

    std::expected<void, std::string> get_string(const char* key, std::string& out,
                                                bool required = false) {
        return get(
            key, required,
            [&](const json& v) -> bool {
                if (!v.is_string()) {
                    return false;
                }
                out = v.get<std::string>();
                return true;
            },
            "a string");
    }
    std::expected<void, std::string> get_bool(const char* key, bool& out) {
        return get(
            key, false,
            [&](const json& v) -> bool {
                if (!v.is_boolean()) {
                    return false;
                }
                out = v.get<bool>();
                return true;
            },
            "true or false");
    }
    std::expected<void, std::string> get_u16(const char* key, std::uint16_t& out) {
        return get(
            key, false,
            [&](const json& v) -> bool {
                if (!v.is_number_unsigned() || v.get<std::uint64_t>() > UINT16_MAX) {
                    return false;
                }
                out = static_cast<std::uint16_t>(v.get<std::uint64_t>());
                return true;
            },
            "an integer 0..65535");
    }
    std::expected<void, std::string> get_u64(const char* key, std::uint64_t& out) {
        return get(
            key, false,
            [&](const json& v) -> bool {
                if (!v.is_number_unsigned()) {
                    return false;
                }
                out = v.get<std::uint64_t>();
                return true;
            },
            "a non-negative integer");
    }
    // Every key of the object must have been asked for.
    std::expected<void, std::string> no_unknown() const {
        for (const auto& [k, v] : obj_.items()) {
            if (!seen_.contains(k)) {
                return fail("{}.{}: unknown field", where_, k);
            }
        }
        return {};
    }
    const std::string& where() const { return where_; }
    // Marks `key` as known and returns its value, if present.
    const json* take(const char* key) {
        seen_.insert(key);
        auto it = obj_.find(key);
        return it == obj_.end() ? nullptr : &*it;
    }

  private:
    template <typename F>
    std::expected<void, std::string> get(const char* key, bool required, F&& take,
                                         const char* what) {
        seen_.insert(key);
        auto it = obj_.find(key);
        if (it == obj_.end()) {
            if (required) {
                return fail("{}.{}: missing (required)", where_, key);
            }
            return {};
        }
        if (!take(*it)) {
            return fail("{}.{}: expected {}, got {}", where_, key, what, it->dump());
        }
        return {};
    }

    const json& obj_;
    std::string where_;
    std::set<std::string> seen_;
};

std::expected<void, std::string> parse_blk(Fields& f, DeviceConfig& c) {
    std::string engine = "io_uring";
    VIREO_TRY(f.get_string("image", c.blk.path, true));
    VIREO_TRY(f.get_bool("read_only", c.blk.read_only));
    VIREO_TRY(f.get_u16("queues", c.blk.num_queues));
    VIREO_TRY(f.get_u16("queue_size", c.blk.queue_size));
    VIREO_TRY(f.get_string("engine", engine));
    VIREO_TRY(f.get_bool("direct", c.blk.direct));
    VIREO_TRY(f.get_string("serial", c.blk.serial));
    auto e = parse_engine(engine);
    if (!e) {
        return fail("{}.engine: {}", f.where(), e.error());
    }
    c.blk.engine = *e;
    return {};
}

std::expected<void, std::string> parse_net(Fields& f, DeviceConfig& c) {
    std::string mac;
    VIREO_TRY(f.get_string("switch", c.net.switch_name));
    VIREO_TRY(f.get_string("tap", c.net.tap));
    VIREO_TRY(f.get_string("mac", mac));
    VIREO_TRY(f.get_u16("queues", c.net.queue_pairs));
    VIREO_TRY(f.get_u16("queue_size", c.net.queue_size));
    if (!mac.empty()) {
        auto m = dev::parse_mac(mac);
        if (!m) {
            return fail("{}.mac: {}", f.where(), m.error());
        }
        c.net.mac = *m;
    }
    return {};
}

// {"backend": "stdio"|"pty"|"unix", "path": "...", "name": "..."}
std::expected<dev::ConsolePortOptions, std::string> parse_port_object(const json& p,
                                                                      const std::string& where,
                                                                      bool named) {
    if (!p.is_object()) {
        return fail("{}: expected an object", where);
    }
    Fields f(p, where);
    std::string backend;
    dev::ConsolePortOptions o;
    VIREO_TRY(f.get_string("backend", backend, true));
    VIREO_TRY(f.get_string("path", o.path));
    VIREO_TRY(f.get_string("name", o.name, named));
    VIREO_TRY(f.no_unknown());
    if (backend == "stdio") {
        o.kind = dev::ConsoleBackendKind::kStdio;
    } else if (backend == "pty") {
        o.kind = dev::ConsoleBackendKind::kPty;
    } else if (backend == "unix") {
        o.kind = dev::ConsoleBackendKind::kUnix;
        if (o.path.empty()) {
            return fail("{}.path: missing (required for the unix backend)", where);
        }
    } else {
        return fail("{}.backend: unknown backend '{}' (expected stdio, pty or unix)", where,
                    backend);
    }
    if (o.kind != dev::ConsoleBackendKind::kUnix && !o.path.empty()) {
        return fail("{}.path: only the unix backend takes a path", where);
    }
    return o;
}

std::expected<void, std::string> parse_console(Fields& f, DeviceConfig& c) {
    std::string backend = "pty";
    std::string path;
    dev::ConsolePortOptions port0;
    json port0_obj = json::object();
    VIREO_TRY(f.get_string("backend", backend));
    VIREO_TRY(f.get_string("path", path));
    VIREO_TRY(f.get_u16("cols", c.console.cols));
    VIREO_TRY(f.get_u16("rows", c.console.rows));
    VIREO_TRY(f.get_bool("multiport", c.console.multiport));
    port0_obj["backend"] = backend;
    if (!path.empty()) {
        port0_obj["path"] = path;
    }
    auto p0 = parse_port_object(port0_obj, f.where(), false);
    if (!p0) {
        return std::unexpected(p0.error());
    }
    c.console.ports = {*p0};
    if (const json* ports = f.take("ports")) {
        if (!ports->is_array()) {
            return fail("{}.ports: expected an array of port objects", f.where());
        }
        for (std::size_t i = 0; i < ports->size(); ++i) {
            auto p = parse_port_object((*ports)[i], fmt::format("{}.ports[{}]", f.where(), i),
                                       /*named=*/true);
            if (!p) {
                return std::unexpected(p.error());
            }
            c.console.ports.push_back(*p);
        }
    }
    return {};
}

std::expected<void, std::string> parse_rng(Fields& f, DeviceConfig& c) {
    VIREO_TRY(f.get_u64("max_bytes_per_sec", c.rng.max_bytes_per_sec));
    VIREO_TRY(f.get_u16("queue_size", c.rng.queue_size));
    return {};
}

std::expected<void, std::string> parse_vsock(Fields& f, DeviceConfig& c) {
    bool have_cid = f.take("guest_cid") != nullptr;
    VIREO_TRY(f.get_u64("guest_cid", c.vsock.guest_cid));
    if (!have_cid) {
        return fail("{}.guest_cid: missing (required)", f.where());
    }
    VIREO_TRY(f.get_string("uds_path", c.vsock.uds_path, true));
    VIREO_TRY(f.get_u16("queue_size", c.vsock.queue_size));
    return {};
}

std::expected<DeviceConfig, std::string> parse_device(const json& d, std::string where) {
    if (!d.is_object()) {
        return fail("{}: expected an object", where);
    }
    Fields f(d, where);
    std::string type;
    VIREO_TRY(f.get_string("type", type, true));
    DeviceConfig c;
    VIREO_TRY(f.get_string("socket_path", c.socket_path, true));
    if (type == "blk") {
        c.type = DeviceType::kBlk;
        VIREO_TRY(parse_blk(f, c));
    } else if (type == "net") {
        c.type = DeviceType::kNet;
        VIREO_TRY(parse_net(f, c));
    } else if (type == "console") {
        c.type = DeviceType::kConsole;
        VIREO_TRY(parse_console(f, c));
    } else if (type == "rng") {
        c.type = DeviceType::kRng;
        VIREO_TRY(parse_rng(f, c));
    } else if (type == "vsock") {
        c.type = DeviceType::kVsock;
        VIREO_TRY(parse_vsock(f, c));
    } else {
        return fail(
            "{}.type: unsupported device type '{}' (supported: blk, net, console, rng, vsock)",
            where, type);
    }
    VIREO_TRY(f.no_unknown());
    return c;
}

bool power_of_two_size(std::uint16_t qs) {
    return qs != 0 && qs <= virtq::kMaxQueueSize && (qs & (qs - 1)) == 0;
}

}  // namespace

std::expected<dev::BlkEngine, std::string> parse_engine(std::string_view name) {
    if (name == "io_uring" || name == "uring") {
        return dev::BlkEngine::kUring;
    }
    if (name == "sync") {
        return dev::BlkEngine::kSync;
    }
    return fail("unknown engine '{}' (expected io_uring or sync)", name);
}

std::expected<DaemonConfig, std::string> parse_config(std::string_view text) {
    json doc = json::parse(text, nullptr, /*allow_exceptions=*/false, /*ignore_comments=*/true);
    if (doc.is_discarded()) {
        // Re-parse with exceptions only to obtain nlohmann's position-bearing message.
        try {
            const json again = json::parse(text);
            (void)again;
        } catch (const json::exception& e) {
            // parse_error, or out_of_range for a number beyond double (e.g. 44e4444444).
            return fail("invalid JSON: {}", e.what());
        }
        return fail("invalid JSON");
    }
    if (!doc.is_object()) {
        return fail("top level: expected an object with a \"devices\" array");
    }
    DaemonConfig cfg;
    Fields top(doc, "config");
    VIREO_TRY(top.get_bool("verbose", cfg.verbose));
    const json* devices = top.take("devices");
    VIREO_TRY(top.no_unknown());
    if (devices == nullptr) {
        return fail("config.devices: missing (required)");
    }
    if (!devices->is_array() || devices->empty()) {
        return fail("config.devices: expected a non-empty array of device objects");
    }
    for (std::size_t i = 0; i < devices->size(); ++i) {
        auto d = parse_device((*devices)[i], fmt::format("config.devices[{}]", i));
        if (!d) {
            return std::unexpected(d.error());
        }
        cfg.devices.push_back(std::move(*d));
    }
    VIREO_TRY(check_config(cfg, /*cli=*/false));
    return cfg;
}

std::expected<DaemonConfig, std::string> load_config(const std::string& path) {
    return load_config_file(path, [](std::string_view text) { return parse_config(text); });
}

std::string_view to_string(DeviceType t) {
    switch (t) {
        case DeviceType::kBlk:
            return "blk";
        case DeviceType::kNet:
            return "net";
        case DeviceType::kConsole:
            return "console";
        case DeviceType::kRng:
            return "rng";
        case DeviceType::kVsock:
            return "vsock";
    }
    return "?";
}

std::expected<dev::ConsolePortOptions, std::string> parse_console_port(std::string_view spec,
                                                                       bool named) {
    dev::ConsolePortOptions o;
    std::string_view rest = spec;
    if (named) {
        const auto colon = rest.find(':');
        if (colon == std::string_view::npos || colon == 0) {
            return fail("'{}': expected NAME:pty, NAME:stdio or NAME:unix:PATH", spec);
        }
        o.name = std::string(rest.substr(0, colon));
        rest.remove_prefix(colon + 1);
    }
    if (rest == "stdio") {
        o.kind = dev::ConsoleBackendKind::kStdio;
    } else if (rest == "pty") {
        o.kind = dev::ConsoleBackendKind::kPty;
    } else if (rest.starts_with("unix:") && rest.size() > 5) {
        o.kind = dev::ConsoleBackendKind::kUnix;
        o.path = std::string(rest.substr(5));
    } else {
        return fail("'{}': unknown port back end '{}' (expected stdio, pty or unix:PATH)", spec,
                    rest);
    }
    return o;
}

std::expected<void, std::string> check_config(const DaemonConfig& cfg, bool cli) {
    std::set<std::string> sockets;  // every path the process listens on
    for (std::size_t i = 0; i < cfg.devices.size(); ++i) {
        const auto& d = cfg.devices[i];
        // Name the field the user wrote: a command-line option or a JSON path.
        auto field = [&](const char* json_name, const char* option) {
            return cli ? std::string(option) : fmt::format("config.devices[{}].{}", i, json_name);
        };
        auto unique_path = [&](const std::string& path, const char* json_name,
                               const char* option) -> std::expected<void, std::string> {
            if (!sockets.insert(path).second) {
                return fail("{}: '{}' is used by another device or port", field(json_name, option),
                            path);
            }
            return {};
        };
        if (d.socket_fd >= 0) {
            if (!d.socket_path.empty()) {
                return fail("--fd and --socket-path exclude each other");
            }
        } else if (d.socket_path.empty()) {
            return fail("{}: must not be empty", field("socket_path", "--socket-path"));
        } else {
            VIREO_TRY(unique_path(d.socket_path, "socket_path", "--socket-path"));
        }
        switch (d.type) {
            case DeviceType::kBlk: {
                if (d.blk.num_queues == 0 || d.blk.num_queues > kMaxQueues) {
                    return fail("{}: {} out of range (1..{})", field("queues", "--queues"),
                                d.blk.num_queues, kMaxQueues);
                }
                if (!power_of_two_size(d.blk.queue_size)) {
                    return fail("{}: {} is not a power of two in 1..{}",
                                field("queue_size", "--queue-size"), d.blk.queue_size,
                                virtq::kMaxQueueSize);
                }
                if (d.blk.serial.size() > dev::kBlkIdBytes) {
                    return fail("{}: '{}' is longer than {} bytes", field("serial", "--serial"),
                                d.blk.serial, dev::kBlkIdBytes);
                }
                break;
            }
            case DeviceType::kNet: {
                if (d.net.tap.empty() == d.net.switch_name.empty()) {
                    return fail("{}: give exactly one of {} and {}",
                                cli ? std::string("net") : fmt::format("config.devices[{}]", i),
                                cli ? "--tap" : "tap", cli ? "--switch" : "switch");
                }
                // 2N + 1 rings (RX/TX pairs and the control queue), 8-bit vhost-user indices.
                constexpr std::uint16_t kMaxPairs = (kMaxQueues - 1) / 2;
                if (d.net.queue_pairs == 0 || d.net.queue_pairs > kMaxPairs) {
                    return fail("{}: {} queue pairs out of range (1..{})",
                                field("queues", "--queues"), d.net.queue_pairs, kMaxPairs);
                }
                if (!power_of_two_size(d.net.queue_size)) {
                    return fail("{}: {} is not a power of two in 1..{}",
                                field("queue_size", "--queue-size"), d.net.queue_size,
                                virtq::kMaxQueueSize);
                }
                break;
            }
            case DeviceType::kConsole: {
                const auto& ports = d.console.ports;
                if (ports.empty() || ports.size() > dev::kConsoleMaxPorts) {
                    return fail("{}: {} ports out of range (1..{})", field("ports", "--port"),
                                ports.size(), dev::kConsoleMaxPorts);
                }
                std::set<std::string> names;
                for (std::size_t p = 0; p < ports.size(); ++p) {
                    const auto& port = ports[p];
                    const std::string where =
                        cli ? (p == 0 ? std::string("console") : fmt::format("--port #{}", p))
                            : (p == 0 ? fmt::format("config.devices[{}]", i)
                                      : fmt::format("config.devices[{}].ports[{}]", i, p - 1));
                    if (p > 0 && port.name.empty()) {
                        return fail("{}: extra ports need a name", where);
                    }
                    if (port.name.size() > dev::kConsoleMaxNameBytes) {
                        return fail("{}: name longer than {} bytes", where,
                                    dev::kConsoleMaxNameBytes);
                    }
                    if (!port.name.empty() && !names.insert(port.name).second) {
                        return fail("{}: port name '{}' is used twice", where, port.name);
                    }
                    if (port.kind == dev::ConsoleBackendKind::kStdio && p > 0) {
                        return fail("{}: only port 0 may use stdio", where);
                    }
                    if (port.kind == dev::ConsoleBackendKind::kUnix &&
                        !sockets.insert(port.path).second) {
                        return fail("{}: '{}' is used by another device or port", where, port.path);
                    }
                }
                if (!power_of_two_size(d.console.queue_size)) {
                    return fail("{}: {} is not a power of two in 1..{}",
                                field("queue_size", "--queue-size"), d.console.queue_size,
                                virtq::kMaxQueueSize);
                }
                break;
            }
            case DeviceType::kRng:
                if (!power_of_two_size(d.rng.queue_size)) {
                    return fail("{}: {} is not a power of two in 1..{}",
                                field("queue_size", "--queue-size"), d.rng.queue_size,
                                virtq::kMaxQueueSize);
                }
                break;
            case DeviceType::kVsock: {
                // §5.10.4: 0, 1 and 2 are reserved, 0xffffffff means "any"; the upper 32 bits
                // of guest_cid are zero.
                const std::uint64_t cid = d.vsock.guest_cid;
                if (cid < 3 || cid >= 0xffffffffULL) {
                    return fail("{}: {} is not a guest CID (3..4294967294)",
                                field("guest_cid", "--guest-cid"), cid);
                }
                if (d.vsock.uds_path.empty()) {
                    return fail("{}: must not be empty", field("uds_path", "--uds-path"));
                }
                VIREO_TRY(unique_path(d.vsock.uds_path, "uds_path", "--uds-path"));
                if (!power_of_two_size(d.vsock.queue_size)) {
                    return fail("{}: {} is not a power of two in 1..{}",
                                field("queue_size", "--queue-size"), d.vsock.queue_size,
                                virtq::kMaxQueueSize);
                }
                break;
            }
        }
    }
    return {};
}

}  // namespace vireo::daemon
