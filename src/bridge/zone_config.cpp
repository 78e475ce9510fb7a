#include "bridge/zone_config.hpp"

#include <fmt/format.h>
#include <sys/stat.h>

#include <algorithm>
#include <bit>
#include <charconv>
#include <nlohmann/json.hpp>
#include <set>

#include "bridge/protocol.hpp"

namespace vireo::bridge {

namespace {

using json = nlohmann::json;
using Err = std::unexpected<std::string>;

std::expected<std::uint64_t, std::string> number(const json& v, const std::string& where) {
    if (v.is_number_unsigned()) {
        return v.get<std::uint64_t>();
    }
    if (v.is_number_integer()) {
        return Err(where + ": must not be negative");
    }
    if (!v.is_string()) {
        return Err(where + ": expected an integer or a string like \"0x50000000\"");
    }
    const auto& s = v.get_ref<const std::string&>();
    std::string_view t = s;
    int base = 10;
    if (t.starts_with("0x") || t.starts_with("0X")) {
        t.remove_prefix(2);
        base = 16;
    }
    std::uint64_t out = 0;
    const auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), out, base);
    if (t.empty() || ec != std::errc{} || p != t.data() + t.size()) {
        return Err(fmt::format("{}: '{}' is not a number", where, s));
    }
    return out;
}

std::expected<std::string, std::string> string(const json& v, const std::string& where) {
    if (!v.is_string()) {
        return Err(where + ": expected a string");
    }
    return v.get<std::string>();
}

std::expected<bool, std::string> boolean(const json& v, const std::string& where) {
    if (!v.is_boolean()) {
        return Err(where + ": expected true or false");
    }
    return v.get<bool>();
}

bool file_exists(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0;
}

// [a, a + alen) and [b, b + blen) intersect (lengths > 0, no overflow: checked by callers).
bool overlaps(std::uint64_t a, std::uint64_t alen, std::uint64_t b, std::uint64_t blen) {
    return a < b + blen && b < a + alen;
}

std::expected<ZoneRegion, std::string> parse_region(const json& j, const std::string& where,
                                                    bool check_files) {
    if (!j.is_object()) {
        return Err(where + ": expected an object");
    }
    ZoneRegion r;
    bool have[3] = {};
    for (const auto& [k, v] : j.items()) {
        const std::string w = where + "." + k;
        if (k == "zone0_ipa" || k == "zonex_ipa" || k == "size") {
            auto n = number(v, w);
            if (!n) {
                return Err(n.error());
            }
            (k == "zone0_ipa" ? r.zone0_ipa : k == "zonex_ipa" ? r.zonex_ipa : r.size) = *n;
            have[k == "zone0_ipa" ? 0 : k == "zonex_ipa" ? 1 : 2] = true;
        } else if (k == "file") {
            auto s = string(v, w);
            if (!s) {
                return Err(s.error());
            }
            r.file = *s;
            if (check_files && !file_exists(r.file)) {
                return Err(fmt::format("{}: '{}' does not exist", w, r.file));
            }
        } else {
            return Err(w + ": unknown field");
        }
    }
    for (int i = 0; i < 3; ++i) {
        if (!have[i]) {
            static constexpr const char* kNames[] = {"zone0_ipa", "zonex_ipa", "size"};
            return Err(fmt::format("{}.{}: required", where, kNames[i]));
        }
    }
    if (r.size == 0 || r.size % 4096 != 0 || r.zonex_ipa % 4096 != 0 ||
        r.zonex_ipa > UINT64_MAX - r.size || r.zone0_ipa > UINT64_MAX - r.size) {
        return Err(where +
                   ": size must be a non-zero multiple of 4096, zonex_ipa page aligned, "
                   "and the range must not wrap");
    }
    return r;
}

std::expected<std::optional<ZoneDevice>, std::string> parse_device(const json& j,
                                                                   const std::string& where,
                                                                   bool check_files) {
    if (!j.is_object()) {
        return Err(where + ": expected an object");
    }
    if (!j.contains("type")) {
        return Err(where + ".type: required");
    }
    ZoneDevice d;
    d.where = where;
    auto type = string(j["type"], where + ".type");
    if (!type) {
        return Err(type.error());
    }
    if (*type == "blk") {
        d.type = ZoneDeviceType::kBlk;
    } else if (*type == "net") {
        d.type = ZoneDeviceType::kNet;
    } else if (*type == "console") {
        d.type = ZoneDeviceType::kConsole;
    } else {
        return Err(fmt::format("{}.type: '{}' is not one of blk, net, console", where, *type));
    }
    bool enabled = true;
    bool have_addr = false;
    bool have_irq = false;
    for (const auto& [k, v] : j.items()) {
        const std::string w = where + "." + k;
        std::expected<void, std::string> ok;
        auto num = [&](auto& field, std::uint64_t max) -> std::expected<void, std::string> {
            auto n = number(v, w);
            if (!n) {
                return Err(n.error());
            }
            if (*n > max) {
                return Err(fmt::format("{}: {} is out of range", w, *n));
            }
            field = static_cast<std::remove_reference_t<decltype(field)>>(*n);
            return {};
        };
        auto str = [&](std::string& field) -> std::expected<void, std::string> {
            auto s = string(v, w);
            if (!s) {
                return Err(s.error());
            }
            field = *s;
            return {};
        };
        const bool blk = d.type == ZoneDeviceType::kBlk;
        const bool net = d.type == ZoneDeviceType::kNet;
        const bool con = d.type == ZoneDeviceType::kConsole;
        if (k == "type") {
            continue;
        } else if (k == "addr") {
            ok = num(d.addr, UINT64_MAX);
            have_addr = true;
        } else if (k == "len") {
            ok = num(d.len, UINT64_MAX);
        } else if (k == "irq") {
            ok = num(d.irq, UINT32_MAX);
            have_irq = true;
        } else if (k == "status") {
            auto s = string(v, w);
            if (!s || (*s != "enable" && *s != "disable")) {
                return Err(w + ": expected \"enable\" or \"disable\"");
            }
            enabled = *s == "enable";
        } else if (blk && k == "img") {
            ok = str(d.blk.path);
            if (ok && check_files && !file_exists(d.blk.path)) {
                return Err(fmt::format("{}: '{}' does not exist", w, d.blk.path));
            }
        } else if (blk && k == "read_only") {
            auto b = boolean(v, w);
            if (!b) {
                return Err(b.error());
            }
            d.blk.read_only = *b;
        } else if (blk && k == "serial") {
            ok = str(d.blk.serial);
        } else if (net && k == "tap") {
            ok = str(d.tap);
        } else if (net && k == "switch") {
            ok = str(d.net_switch);
        } else if (net && k == "mac") {
            std::string text;
            if (v.is_array() && v.size() == 6) {
                // hvisor writes the MAC as six integers.
                std::vector<std::string> parts;
                for (const auto& b : v) {
                    if (!b.is_number_unsigned() || b.get<std::uint64_t>() > 0xff) {
                        return Err(w + ": expected six bytes");
                    }
                    parts.push_back(fmt::format("{:02x}", b.get<std::uint64_t>()));
                }
                text = fmt::format("{}", fmt::join(parts, ":"));
            } else if (auto s = string(v, w); s) {
                text = *s;
            } else {
                return Err(s.error());
            }
            auto m = dev::parse_mac(text);
            if (!m) {
                return Err(w + ": " + m.error());
            }
            d.mac = *m;
        } else if (con && k == "file") {
            ok = str(d.console_file);
        } else {
            return Err(w + ": unknown field");
        }
        if (!ok) {
            return Err(ok.error());
        }
    }
    if (!have_addr) {
        return Err(where + ".addr: required");
    }
    if (!have_irq) {
        return Err(where + ".irq: required");
    }
    if (d.len == 0 || d.addr > UINT64_MAX - d.len) {
        return Err(where + ".len: must be non-zero and addr + len must not wrap");
    }
    if (!enabled) {
        return std::optional<ZoneDevice>{};
    }
    if (d.type == ZoneDeviceType::kBlk && d.blk.path.empty()) {
        return Err(where + ".img: required for blk");
    }
    if (d.type == ZoneDeviceType::kNet && d.tap.empty() == d.net_switch.empty()) {
        return Err(where + ": net needs exactly one of \"tap\" and \"switch\"");
    }
    return std::optional<ZoneDevice>(std::move(d));
}

std::expected<Zone, std::string> parse_zone(const json& j, const std::string& where,
                                            bool check_files) {
    if (!j.is_object()) {
        return Err(where + ": expected an object");
    }
    Zone z;
    bool have_id = false;
    for (const auto& [k, v] : j.items()) {
        const std::string w = where + "." + k;
        if (k == "id" || k == "zone_id") {
            auto n = number(v, w);
            if (!n || *n > UINT32_MAX) {
                return Err(n ? w + ": out of range" : n.error());
            }
            z.id = static_cast<std::uint32_t>(*n);
            have_id = true;
        } else if (k == "memory_region") {
            if (!v.is_array()) {
                return Err(w + ": expected an array");
            }
            for (std::size_t i = 0; i < v.size(); ++i) {
                auto r = parse_region(v[i], fmt::format("{}[{}]", w, i), check_files);
                if (!r) {
                    return Err(r.error());
                }
                z.regions.push_back(std::move(*r));
            }
        } else if (k == "devices") {
            if (!v.is_array()) {
                return Err(w + ": expected an array");
            }
            if (v.size() > kMaxDevices) {
                return Err(fmt::format("{}: more than {} devices", w, kMaxDevices));
            }
            for (std::size_t i = 0; i < v.size(); ++i) {
                auto d = parse_device(v[i], fmt::format("{}[{}]", w, i), check_files);
                if (!d) {
                    return Err(d.error());
                }
                if (*d) {
                    z.devices.push_back(std::move(**d));
                }
            }
        } else {
            return Err(w + ": unknown field");
        }
    }
    if (!have_id) {
        return Err(where + ".id: required");
    }
    if (z.regions.empty()) {
        return Err(where + ".memory_region: at least one region is required");
    }
    // Overlaps inside the zone's guest-physical space: region/region, device/device,
    // device/region. Lists are small (config files), so pairwise checks are fine.
    for (std::size_t a = 0; a < z.regions.size(); ++a) {
        for (std::size_t b = a + 1; b < z.regions.size(); ++b) {
            if (overlaps(z.regions[a].zonex_ipa, z.regions[a].size, z.regions[b].zonex_ipa,
                         z.regions[b].size)) {
                return Err(
                    fmt::format("{}.memory_region[{}]: overlaps memory_region[{}]", where, b, a));
            }
        }
    }
    std::set<std::uint32_t> irqs;
    for (std::size_t a = 0; a < z.devices.size(); ++a) {
        const ZoneDevice& d = z.devices[a];
        for (std::size_t b = 0; b < a; ++b) {
            if (overlaps(d.addr, d.len, z.devices[b].addr, z.devices[b].len)) {
                return Err(fmt::format("{}.addr: overlaps {}", d.where, z.devices[b].where));
            }
        }
        for (std::size_t r = 0; r < z.regions.size(); ++r) {
            if (overlaps(d.addr, d.len, z.regions[r].zonex_ipa, z.regions[r].size)) {
                return Err(
                    fmt::format("{}.addr: overlaps {}.memory_region[{}]", d.where, where, r));
            }
        }
        if (!irqs.insert(d.irq).second) {
            return Err(fmt::format("{}.irq: {} is used by another device", d.where, d.irq));
        }
    }
    return z;
}

}  // namespace

std::string_view to_string(ZoneDeviceType t) {
    switch (t) {
        case ZoneDeviceType::kBlk:
            return "blk";
        case ZoneDeviceType::kNet:
            return "net";
        case ZoneDeviceType::kConsole:
            return "console";
    }
    return "?";
}

bool is_zone_config(std::string_view json_text) {
    const json j = json::parse(json_text, nullptr, /*allow_exceptions=*/false,
                               /*ignore_comments=*/true);
    return j.is_object() && j.contains("zones");
}

std::expected<BridgeConfig, std::string> parse_zone_config(std::string_view json_text,
                                                           bool check_files) {
    const json j = json::parse(json_text, nullptr, /*allow_exceptions=*/false,
                               /*ignore_comments=*/true);
    if (j.is_discarded()) {
        return Err("config: not valid JSON");
    }
    if (!j.is_object()) {
        return Err("config: expected an object");
    }
    BridgeConfig cfg;
    for (const auto& [k, v] : j.items()) {
        const std::string w = "config." + k;
        if (k == "zones") {
            if (!v.is_array() || v.empty()) {
                return Err(w + ": expected a non-empty array");
            }
            for (std::size_t i = 0; i < v.size(); ++i) {
                auto z = parse_zone(v[i], fmt::format("config.zones[{}]", i), check_files);
                if (!z) {
                    return Err(z.error());
                }
                cfg.zones.push_back(std::move(*z));
            }
        } else if (k == "socket") {
            auto s = string(v, w);
            if (!s) {
                return Err(s.error());
            }
            cfg.socket = *s;
        } else if (k == "ring_entries" || k == "irq_entries") {
            auto n = number(v, w);
            if (!n) {
                return Err(n.error());
            }
            if (*n == 0 || *n > kMaxRingEntries || !std::has_single_bit(*n)) {
                return Err(
                    fmt::format("{}: {} is not a power of two in 1..{}", w, *n, kMaxRingEntries));
            }
            (k == "ring_entries" ? cfg.ring_entries : cfg.irq_entries) =
                static_cast<std::uint32_t>(*n);
        } else if (k == "verbose") {
            auto b = boolean(v, w);
            if (!b) {
                return Err(b.error());
            }
            cfg.verbose = *b;
        } else {
            return Err(w + ": unknown field");
        }
    }
    if (cfg.zones.empty()) {
        return Err("config.zones: required");
    }
    std::set<std::uint32_t> ids;
    for (std::size_t i = 0; i < cfg.zones.size(); ++i) {
        if (!ids.insert(cfg.zones[i].id).second) {
            return Err(
                fmt::format("config.zones[{}].id: zone {} appears twice", i, cfg.zones[i].id));
        }
    }
    return cfg;
}

}  // namespace vireo::bridge
