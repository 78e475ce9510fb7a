// vireo-vmm configuration: from the command line (--device strings) and/or a JSON file
// (docs/vmm.md). Parsing never throws; every error names the option or field and the problem.
#pragma once

#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "devices/blk.hpp"
#include "devices/net.hpp"

namespace vireo::vmm {

inline constexpr std::uint64_t kDefaultMemSize = 64ull << 20;
inline constexpr std::uint64_t kMinMemSize = 2ull << 20;  // boot area + a kernel at 1 MiB
inline constexpr std::uint32_t kMaxVcpus = 64;
inline constexpr std::size_t kMaxCmdline = 255;  // BootInfo::cmdline without its NUL

enum class Transport : std::uint8_t { kMmio, kPci };
enum class DeviceKind : std::uint8_t { kBlk, kNet, kConsole, kRng, kEdu };

std::string_view to_string(DeviceKind k);

struct DeviceSpec {
    DeviceKind kind = DeviceKind::kBlk;
    Transport transport = Transport::kMmio;
    std::string where;    // "--device #2" / "config.devices[1]", for later error messages
    bool packed = true;   // offer VIRTIO_F_RING_PACKED (if the model supports it)
    bool legacy = false;  // virtio-mmio version 1 (MmioVersion::kLegacy); mmio only
    std::uint16_t queue_size = 256;
    dev::BlkOptions blk;     // kBlk
    std::string net_switch;  // kNet: in-process switch name, or
    std::string tap;         //       TAP interface name
    std::optional<dev::MacAddress> mac;
    std::uint16_t queue_pairs = 1;
    std::string console_file;    // kConsole: empty = stdio
    std::uint64_t rng_rate = 0;  // kRng: bytes per second, 0 = unlimited
};

struct VmmConfig {
    std::string arch = "x86_64";  // or "riscv64": the RV64 system emulator (docs/riscv.md)
    std::string kernel;
    std::string initrd;  // riscv64: initial ramdisk
    std::string bios;    // riscv64: M-mode firmware (default OpenSBI fw_dynamic)
    std::uint64_t mem_size = kDefaultMemSize;
    bool mem_given = false;  // "mem" was in the file (riscv64 has its own default)
    std::uint32_t vcpus = 1;
    std::string append;
    std::string serial;  // UART output: empty = stdout, else a file path
    double timeout = 0;  // seconds of wall clock, 0 = none
    bool verbose = false;
    bool irqfd = true;   // irqfd (+ resamplefd, GSI routes for MSI) where KVM has them
    bool stats = false;  // print exit and interrupt counters when the VM stops
    // Bridge mode (docs/bridge.md): virtio-mmio devices are served by a `vireo` daemon through
    // the hypervisor bridge at this unix socket, as zone `zone`; vireo-vmm only traps.
    std::string bridge;
    std::uint32_t zone = 0;
    std::vector<DeviceSpec> devices;
};

// "64M", "1G", "4096", "2m", "512K": bytes. Errors say why.
std::expected<std::uint64_t, std::string> parse_size(std::string_view text);

// One --device value: "blk,transport=pci,image=disk.img,read-only". `where` prefixes errors.
std::expected<DeviceSpec, std::string> parse_device(std::string_view spec, std::string where);

// A JSON document (docs/vmm.md): top-level keys arch, kernel, initrd, bios, mem, vcpus (alias
// harts), append, serial, timeout, verbose, stats, bridge, zone, devices[] (objects with "type"
// plus the --device keys).
std::expected<VmmConfig, std::string> parse_config(std::string_view json_text);
std::expected<VmmConfig, std::string> load_config(const std::string& path);

// Whole-machine checks shared by both front doors: kernel given, memory and vCPU ranges, slot
// counts, cmdline length, one console on stdio.
std::expected<void, std::string> check_config(const VmmConfig& cfg);

}  // namespace vireo::vmm
