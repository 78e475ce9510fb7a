// Zone configuration for the bridge, in the format of hvisor-tool's virtio_cfg.json
// (docs/bridge.md):
//
//   {"zones": [{"id": 1,
//               "memory_region": [{"zone0_ipa": "0x0", "zonex_ipa": "0x0", "size": "0x4000000"}],
//               "devices": [{"type": "blk", "addr": "0xd0000000", "len": "0x1000", "irq": 5,
//                            "status": "enable", "img": "disk.img"}]}]}
//
// Numbers are integers or hex/decimal strings ("0x50000000"). vireo extensions are optional
// top-level "socket", "ring_entries", "irq_entries", "verbose", and per-region "file".
// Unknown fields, overlaps and missing files are errors naming the field. Parsing never throws.
#pragma once

#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "devices/blk.hpp"
#include "devices/net.hpp"

namespace vireo::bridge {

inline constexpr const char* kDefaultSocket = "/run/vireo-bridge.sock";
inline constexpr std::uint32_t kDefaultRingEntries = 256;

// A range of the zone's guest-physical space the daemon may touch. The bytes come from `file`
// if given, else from the memory fd the hypervisor passes at setup, at offset zone0_ipa (the
// zone's RAM as seen by the root partition: hvisor maps /dev/mem there).
struct ZoneRegion {
    std::uint64_t zone0_ipa = 0;
    std::uint64_t zonex_ipa = 0;
    std::uint64_t size = 0;
    std::string file;
};

enum class ZoneDeviceType : std::uint8_t { kBlk, kNet, kConsole };
std::string_view to_string(ZoneDeviceType t);

struct ZoneDevice {
    ZoneDeviceType type = ZoneDeviceType::kBlk;
    std::string where;  // "zones[0].devices[1]", for messages
    std::uint64_t addr = 0;
    std::uint64_t len = 0x1000;
    std::uint32_t irq = 0;
    dev::BlkOptions blk;     // img, read_only, serial
    std::string tap;         // net: a TAP interface, or
    std::string net_switch;  //      an in-process switch shared by name across zones
    std::optional<dev::MacAddress> mac;
    std::string console_file;  // console: output file; empty = stdout
};

struct Zone {
    std::uint32_t id = 0;
    std::vector<ZoneRegion> regions;
    std::vector<ZoneDevice> devices;  // enabled ones only ("status": "disable" are dropped)
};

struct BridgeConfig {
    std::string socket = kDefaultSocket;
    std::uint32_t ring_entries = kDefaultRingEntries;
    std::uint32_t irq_entries = kDefaultRingEntries;
    bool verbose = false;
    std::vector<Zone> zones;
};

// True if the document's top level has "zones" (a bridge config, not a vhost-user one).
bool is_zone_config(std::string_view json_text);
// `check_files`: image and region files must exist (off for fuzzing).
std::expected<BridgeConfig, std::string> parse_zone_config(std::string_view json_text,
                                                           bool check_files = true);

}  // namespace vireo::bridge
