#include "vmm/config.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include "base/config_file.hpp"
#include "base/error.hpp"
#include "transport/pci_host.hpp"
#include "vmm/boot_info.hpp"

namespace vireo::vmm {

namespace {

using json = nlohmann::json;

// One device's options as key → value ("" for a bare flag), in the order given.
using Options = std::vector<std::pair<std::string, std::optional<std::string>>>;

std::string normalize_key(std::string k) {
    std::replace(k.begin(), k.end(), '_', '-');  // JSON may say read_only
    return k;
}

std::expected<std::uint64_t, std::string> parse_uint(std::string_view s, std::uint64_t max) {
    std::uint64_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc() || p != s.data() + s.size() || v > max) {
        return fail("'{}' is not an integer in 0..{}", s, max);
    }
    return v;
}

std::expected<bool, std::string> parse_flag(const std::optional<std::string>& v) {
    if (!v || *v == "on" || *v == "true" || *v == "yes" || *v == "1") {
        return true;
    }
    if (*v == "off" || *v == "false" || *v == "no" || *v == "0") {
        return false;
    }
    return fail("'{}' is not on/off", *v);
}

std::expected<DeviceSpec, std::string> build_device(std::string_view type, const Options& opts,
                                                    std::string where) {
    DeviceSpec d;
    d.where = where;
    if (type == "blk") {
        d.kind = DeviceKind::kBlk;
    } else if (type == "net") {
        d.kind = DeviceKind::kNet;
    } else if (type == "console") {
        d.kind = DeviceKind::kConsole;
    } else if (type == "rng") {
        d.kind = DeviceKind::kRng;
    } else if (type == "edu") {
        d.kind = DeviceKind::kEdu;
        d.transport = Transport::kPci;
    } else {
        return fail("{}: unknown device type '{}' (blk, net, console, rng, edu)", where, type);
    }
    const bool is_virtio = d.kind != DeviceKind::kEdu;
    bool console_stdio = false;
    std::set<std::string> seen;
    for (const auto& [key, value] : opts) {
        if (!seen.insert(key).second) {
            return fail("{}: '{}' given twice", where, key);
        }
        auto need = [&]() -> std::expected<std::string, std::string> {
            if (!value || value->empty()) {
                return fail("{}: '{}' needs a value ({}=...)", where, key, key);
            }
            return *value;
        };
        auto number = [&](std::uint64_t max) -> std::expected<std::uint64_t, std::string> {
            auto v = need();
            if (!v) {
                return std::unexpected(v.error());
            }
            auto n = parse_uint(*v, max);
            if (!n) {
                return fail("{}: {}: {}", where, key, n.error());
            }
            return *n;
        };
        auto flag = [&](bool& out) -> std::expected<void, std::string> {
            auto b = parse_flag(value);
            if (!b) {
                return fail("{}: {}: {}", where, key, b.error());
            }
            out = *b;
            return {};
        };
        if (key == "transport") {
            auto v = need();
            VIREO_TRY(v);
            if (*v == "mmio") {
                d.transport = Transport::kMmio;
            } else if (*v == "pci") {
                d.transport = Transport::kPci;
            } else {
                return fail("{}: transport '{}' (expected mmio or pci)", where, *v);
            }
        } else if (is_virtio && key == "packed") {
            VIREO_TRY(flag(d.packed));
        } else if (is_virtio && key == "legacy") {
            VIREO_TRY(flag(d.legacy));
        } else if (is_virtio && key == "queue-size") {
            auto n = number(UINT16_MAX);
            VIREO_TRY(n);
            d.queue_size = static_cast<std::uint16_t>(*n);
        } else if (d.kind == DeviceKind::kBlk && key == "image") {
            auto v = need();
            VIREO_TRY(v);
            d.blk.path = *v;
        } else if (d.kind == DeviceKind::kBlk && key == "read-only") {
            VIREO_TRY(flag(d.blk.read_only));
        } else if (d.kind == DeviceKind::kBlk && key == "direct") {
            VIREO_TRY(flag(d.blk.direct));
        } else if (d.kind == DeviceKind::kBlk && key == "queues") {
            auto n = number(UINT16_MAX);
            VIREO_TRY(n);
            d.blk.num_queues = static_cast<std::uint16_t>(*n);
        } else if (d.kind == DeviceKind::kBlk && key == "engine") {
            auto v = need();
            VIREO_TRY(v);
            auto e = dev::parse_blk_engine(*v);
            if (!e) {
                return fail("{}: engine: {}", where, e.error());
            }
            d.blk.engine = *e;
        } else if (d.kind == DeviceKind::kBlk && key == "serial") {
            auto v = need();
            VIREO_TRY(v);
            d.blk.serial = *v;
        } else if (d.kind == DeviceKind::kNet && key == "switch") {
            auto v = need();
            VIREO_TRY(v);
            d.net_switch = *v;
        } else if (d.kind == DeviceKind::kNet && key == "tap") {
            auto v = need();
            VIREO_TRY(v);
            d.tap = *v;
        } else if (d.kind == DeviceKind::kNet && key == "mac") {
            auto v = need();
            VIREO_TRY(v);
            auto m = dev::parse_mac(*v);
            if (!m) {
                return fail("{}: mac: {}", where, m.error());
            }
            d.mac = *m;
        } else if (d.kind == DeviceKind::kNet && key == "queues") {
            auto n = number(UINT16_MAX);
            VIREO_TRY(n);
            d.queue_pairs = static_cast<std::uint16_t>(*n);
        } else if (d.kind == DeviceKind::kConsole && key == "stdio") {
            VIREO_TRY(flag(console_stdio));
        } else if (d.kind == DeviceKind::kConsole && key == "file") {
            auto v = need();
            VIREO_TRY(v);
            d.console_file = *v;
        } else if (d.kind == DeviceKind::kRng && key == "rate") {
            auto n = number(UINT64_MAX);
            VIREO_TRY(n);
            d.rng_rate = *n;
        } else {
            return fail("{}: unknown key '{}' for a {} device", where, key, type);
        }
    }
    if (d.legacy && d.transport != Transport::kMmio) {
        return fail("{}: legacy (virtio-mmio version 1) needs transport=mmio", where);
    }
    switch (d.kind) {
        case DeviceKind::kBlk:
            if (d.blk.path.empty()) {
                return fail("{}: blk needs image=FILE", where);
            }
            if (d.blk.num_queues == 0) {
                return fail("{}: queues must be at least 1", where);
            }
            d.blk.queue_size = d.queue_size;
            break;
        case DeviceKind::kNet:
            if (d.net_switch.empty() == d.tap.empty()) {
                return fail("{}: net needs exactly one of switch=NAME or tap=NAME", where);
            }
            if (d.queue_pairs == 0) {
                return fail("{}: queues must be at least 1", where);
            }
            break;
        case DeviceKind::kConsole:
            if (console_stdio && !d.console_file.empty()) {
                return fail("{}: console takes stdio or file=PATH, not both", where);
            }
            break;
        case DeviceKind::kEdu:
            if (d.transport != Transport::kPci) {
                return fail("{}: edu is a PCI device (transport=pci)", where);
            }
            break;
        case DeviceKind::kRng:
            break;
    }
    if (is_virtio && d.queue_size == 0) {
        return fail("{}: queue-size must be at least 1", where);
    }
    return d;
}

}  // namespace

std::string_view to_string(DeviceKind k) {
    switch (k) {
        case DeviceKind::kBlk:
            return "blk";
        case DeviceKind::kNet:
            return "net";
        case DeviceKind::kConsole:
            return "console";
        case DeviceKind::kRng:
            return "rng";
        case DeviceKind::kEdu:
            return "edu";
    }
    return "?";
}

std::expected<std::uint64_t, std::string> parse_size(std::string_view text) {
    if (text.empty()) {
        return fail("empty size");
    }
    unsigned shift = 0;
    std::string_view digits = text;
    switch (text.back()) {
        case 'k':
        case 'K':
            shift = 10;
            break;
        case 'm':
        case 'M':
            shift = 20;
            break;
        case 'g':
        case 'G':
            shift = 30;
            break;
        default:
            break;
    }
    if (shift != 0) {
        digits.remove_suffix(1);
    }
    auto v = parse_uint(digits, UINT64_MAX >> shift);
    if (!v) {
        return fail("bad size '{}' (expected a number with an optional K, M or G suffix)", text);
    }
    return *v << shift;
}

std::expected<DeviceSpec, std::string> parse_device(std::string_view spec, std::string where) {
    Options opts;
    std::string_view type;
    bool first = true;
    while (true) {
        const std::size_t comma = spec.find(',');
        const std::string_view item = spec.substr(0, comma);
        if (first) {
            type = item;
            first = false;
        } else if (item.empty()) {
            return fail("{}: empty option in '{}'", where, spec);
        } else {
            const std::size_t eq = item.find('=');
            std::string key = normalize_key(std::string(item.substr(0, eq)));
            std::optional<std::string> value;
            if (eq != std::string_view::npos) {
                value = std::string(item.substr(eq + 1));
            }
            opts.emplace_back(std::move(key), std::move(value));
        }
        if (comma == std::string_view::npos) {
            break;
        }
        spec.remove_prefix(comma + 1);
    }
    if (type.empty()) {
        return fail("{}: missing device type (blk, net, console, rng, edu)", where);
    }
    return build_device(type, opts, std::move(where));
}

std::expected<VmmConfig, std::string> parse_config(std::string_view text) {
    const json doc = json::parse(text, nullptr, /*allow_exceptions=*/false,
                                 /*ignore_comments=*/true);
    if (doc.is_discarded()) {
        return fail("invalid JSON");
    }
    if (!doc.is_object()) {
        return fail("top level: expected an object");
    }
    VmmConfig cfg;
    for (const auto& [key, v] : doc.items()) {
        const std::string where = "config." + key;
        if (key == "kernel" || key == "append" || key == "serial" || key == "initrd" ||
            key == "bios" || key == "bridge") {
            if (!v.is_string()) {
                return fail("{}: expected a string", where);
            }
            (key == "kernel"   ? cfg.kernel
             : key == "append" ? cfg.append
             : key == "initrd" ? cfg.initrd
             : key == "bios"   ? cfg.bios
             : key == "bridge" ? cfg.bridge
                               : cfg.serial) = v.get<std::string>();
        } else if (key == "arch") {
            if (!v.is_string() || (v != "x86_64" && v != "riscv64")) {
                return fail("{}: expected \"x86_64\" or \"riscv64\"", where);
            }
            cfg.arch = v.get<std::string>();
        } else if (key == "zone") {
            if (!v.is_number_unsigned() || v.get<std::uint64_t>() > UINT32_MAX) {
                return fail("{}: expected a zone id (unsigned integer)", where);
            }
            cfg.zone = static_cast<std::uint32_t>(v.get<std::uint64_t>());
        } else if (key == "stats") {
            if (!v.is_boolean()) {
                return fail("{}: expected true or false", where);
            }
            cfg.stats = v.get<bool>();
        } else if (key == "mem") {
            cfg.mem_given = true;
            if (v.is_number_unsigned()) {
                cfg.mem_size = v.get<std::uint64_t>();
            } else if (v.is_string()) {
                auto s = parse_size(v.get<std::string>());
                if (!s) {
                    return fail("{}: {}", where, s.error());
                }
                cfg.mem_size = *s;
            } else {
                return fail("{}: expected a size like \"64M\" or a byte count", where);
            }
        } else if (key == "vcpus" || key == "harts") {
            if (!v.is_number_unsigned() || v.get<std::uint64_t>() > kMaxVcpus) {
                return fail("{}: expected an integer 1..{}", where, kMaxVcpus);
            }
            cfg.vcpus = static_cast<std::uint32_t>(v.get<std::uint64_t>());
        } else if (key == "timeout") {
            if (!v.is_number() || v.get<double>() < 0) {
                return fail("{}: expected a non-negative number of seconds", where);
            }
            cfg.timeout = v.get<double>();
        } else if (key == "verbose") {
            if (!v.is_boolean()) {
                return fail("{}: expected true or false", where);
            }
            cfg.verbose = v.get<bool>();
        } else if (key == "devices") {
            if (!v.is_array()) {
                return fail("{}: expected an array of device objects", where);
            }
            for (std::size_t i = 0; i < v.size(); ++i) {
                const std::string dw = fmt::format("config.devices[{}]", i);
                const json& d = v[i];
                if (!d.is_object()) {
                    return fail("{}: expected an object", dw);
                }
                auto type = d.find("type");
                if (type == d.end() || !type->is_string()) {
                    return fail("{}.type: missing (a string: blk, net, console, rng, edu)", dw);
                }
                Options opts;
                for (const auto& [k, val] : d.items()) {
                    if (k == "type") {
                        continue;
                    }
                    std::optional<std::string> s;
                    if (val.is_string()) {
                        s = val.get<std::string>();
                    } else if (val.is_boolean()) {
                        s = val.get<bool>() ? "on" : "off";
                    } else if (val.is_number_unsigned()) {
                        s = std::to_string(val.get<std::uint64_t>());
                    } else {
                        return fail("{}.{}: expected a string, boolean or unsigned integer", dw, k);
                    }
                    opts.emplace_back(normalize_key(k), std::move(s));
                }
                auto dev = build_device(type->get<std::string>(), opts, dw);
                if (!dev) {
                    return std::unexpected(dev.error());
                }
                cfg.devices.push_back(std::move(*dev));
            }
        } else {
            return fail("{}: unknown field", where);
        }
    }
    return cfg;
}

std::expected<VmmConfig, std::string> load_config(const std::string& path) {
    return load_config_file(path, [](std::string_view text) { return parse_config(text); });
}

std::expected<void, std::string> check_config(const VmmConfig& cfg) {
    if (cfg.arch != "x86_64") {
        return fail("arch {}: this is the x86-64 KVM machine", cfg.arch);
    }
    if (!cfg.initrd.empty() || !cfg.bios.empty()) {
        return fail("initrd and bios are riscv64 options (--arch riscv64)");
    }
    if (cfg.kernel.empty()) {
        return fail("no guest kernel (--kernel FILE or config.kernel)");
    }
    if (cfg.mem_size < kMinMemSize || cfg.mem_size > boot::kMmioHoleStart) {
        return fail("memory size {:#x} out of range ({} MiB .. {} MiB)", cfg.mem_size,
                    kMinMemSize >> 20, boot::kMmioHoleStart >> 20);
    }
    if (cfg.mem_size % 4096 != 0) {
        return fail("memory size {:#x} is not a multiple of 4 KiB", cfg.mem_size);
    }
    if (cfg.vcpus < 1 || cfg.vcpus > kMaxVcpus) {
        return fail("vcpus {} out of range (1..{})", cfg.vcpus, kMaxVcpus);
    }
    if (cfg.append.size() > kMaxCmdline || cfg.append.find('\0') != std::string::npos) {
        return fail("append: command line longer than {} bytes", kMaxCmdline);
    }
    if (cfg.timeout < 0) {
        return fail("timeout must not be negative");
    }
    std::size_t mmio = 0;
    std::size_t pci = 0;
    std::size_t stdio_consoles = 0;
    for (const DeviceSpec& d : cfg.devices) {
        (d.transport == Transport::kMmio ? mmio : pci) += 1;
        if (d.kind == DeviceKind::kConsole && d.console_file.empty()) {
            ++stdio_consoles;
        }
    }
    if (mmio > boot::kMaxMmioDevices) {
        return fail("{} virtio-mmio devices (at most {})", mmio, boot::kMaxMmioDevices);
    }
    if (pci > transport::kPciSlots - 1) {
        return fail("{} PCI devices (at most {})", pci, transport::kPciSlots - 1);
    }
    if (stdio_consoles > 1) {
        return fail("more than one console on stdio");
    }
    return {};
}

}  // namespace vireo::vmm
