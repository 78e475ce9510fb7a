#include "daemon/config.hpp"

#include <fmt/format.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "virtq/ring_layout.hpp"

namespace vireo::daemon {

namespace {

using json = nlohmann::json;

template <typename... Args>
std::unexpected<std::string> bad(fmt::format_string<Args...> f, Args&&... args) {
    return std::unexpected(fmt::format(f, std::forward<Args>(args)...));
}

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
    // Every key of the object must have been asked for.
    std::expected<void, std::string> no_unknown() const {
        for (const auto& [k, v] : obj_.items()) {
            if (!seen_.contains(k)) {
                return bad("{}.{}: unknown field", where_, k);
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
                return bad("{}.{}: missing (required)", where_, key);
            }
            return {};
        }
        if (!take(*it)) {
            return bad("{}.{}: expected {}, got {}", where_, key, what, it->dump());
        }
        return {};
    }

    const json& obj_;
    std::string where_;
    std::set<std::string> seen_;
};

#define VIREO_TRY(expr)                          \
    do {                                         \
        if (auto ok_ = (expr); !ok_) {           \
            return std::unexpected(ok_.error()); \
        }                                        \
    } while (0)

std::expected<BlkEndpointConfig, std::string> parse_device(const json& d, std::string where) {
    if (!d.is_object()) {
        return bad("{}: expected an object", where);
    }
    Fields f(d, where);
    std::string type;
    VIREO_TRY(f.get_string("type", type, true));
    if (type != "blk") {
        return bad("{}.type: unsupported device type '{}' (supported: blk)", where, type);
    }
    BlkEndpointConfig c;
    std::string engine = "io_uring";
    VIREO_TRY(f.get_string("socket_path", c.socket_path, true));
    VIREO_TRY(f.get_string("image", c.blk.path, true));
    VIREO_TRY(f.get_bool("read_only", c.blk.read_only));
    VIREO_TRY(f.get_u16("queues", c.blk.num_queues));
    VIREO_TRY(f.get_u16("queue_size", c.blk.queue_size));
    VIREO_TRY(f.get_string("engine", engine));
    VIREO_TRY(f.get_bool("direct", c.blk.direct));
    VIREO_TRY(f.get_string("serial", c.blk.serial));
    VIREO_TRY(f.no_unknown());
    auto e = parse_engine(engine);
    if (!e) {
        return bad("{}.engine: {}", where, e.error());
    }
    c.blk.engine = *e;
    return c;
}

}  // namespace

std::expected<dev::BlkEngine, std::string> parse_engine(std::string_view name) {
    if (name == "io_uring" || name == "uring") {
        return dev::BlkEngine::kUring;
    }
    if (name == "sync") {
        return dev::BlkEngine::kSync;
    }
    return bad("unknown engine '{}' (expected io_uring or sync)", name);
}

std::expected<DaemonConfig, std::string> parse_config(std::string_view text) {
    json doc = json::parse(text, nullptr, /*allow_exceptions=*/false, /*ignore_comments=*/true);
    if (doc.is_discarded()) {
        // Re-parse with exceptions only to obtain nlohmann's position-bearing message.
        try {
            const json again = json::parse(text);
            (void)again;
        } catch (const json::parse_error& e) {
            return bad("invalid JSON: {}", e.what());
        }
        return bad("invalid JSON");
    }
    if (!doc.is_object()) {
        return bad("top level: expected an object with a \"devices\" array");
    }
    DaemonConfig cfg;
    Fields top(doc, "config");
    VIREO_TRY(top.get_bool("verbose", cfg.verbose));
    const json* devices = top.take("devices");
    VIREO_TRY(top.no_unknown());
    if (devices == nullptr) {
        return bad("config.devices: missing (required)");
    }
    if (!devices->is_array() || devices->empty()) {
        return bad("config.devices: expected a non-empty array of device objects");
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
    std::ifstream in(path);
    if (!in) {
        return bad("cannot read config file '{}'", path);
    }
    std::ostringstream text;
    text << in.rdbuf();
    auto cfg = parse_config(text.str());
    if (!cfg) {
        return bad("{}: {}", path, cfg.error());
    }
    return cfg;
}

std::expected<void, std::string> check_config(const DaemonConfig& cfg, bool cli) {
    std::set<std::string> sockets;
    for (std::size_t i = 0; i < cfg.devices.size(); ++i) {
        const auto& d = cfg.devices[i];
        // Name the field the user wrote: a command-line option or a JSON path.
        auto field = [&](const char* json_name, const char* option) {
            return cli ? std::string(option) : fmt::format("config.devices[{}].{}", i, json_name);
        };
        if (d.blk.num_queues == 0 || d.blk.num_queues > kMaxQueues) {
            return bad("{}: {} out of range (1..{})", field("queues", "--queues"), d.blk.num_queues,
                       kMaxQueues);
        }
        const std::uint16_t qs = d.blk.queue_size;
        if (qs == 0 || qs > virtq::kMaxQueueSize || (qs & (qs - 1)) != 0) {
            return bad("{}: {} is not a power of two in 1..{}", field("queue_size", "--queue-size"),
                       qs, virtq::kMaxQueueSize);
        }
        if (d.blk.serial.size() > dev::kBlkIdBytes) {
            return bad("{}: '{}' is longer than {} bytes", field("serial", "--serial"),
                       d.blk.serial, dev::kBlkIdBytes);
        }
        if (!sockets.insert(d.socket_path).second) {
            return bad("{}: '{}' is used by another device", field("socket_path", "--socket-path"),
                       d.socket_path);
        }
    }
    return {};
}

}  // namespace vireo::daemon
