// The x86-64 boot contract between vireo-vmm and its bare-metal guests (docs/boot-protocol.md).
// Freestanding: included by the VMM and by guest code.
#pragma once

#include <cstddef>
#include <cstdint>

#include "spec/le.hpp"

namespace vireo::boot {

inline constexpr std::uint64_t kBootInfoAddr = 0x7000;
inline constexpr std::uint64_t kGdtAddr = 0x8000;
inline constexpr std::uint64_t kPml4Addr = 0x9000;
inline constexpr std::uint64_t kPdptAddr = 0xA000;
inline constexpr std::uint64_t kPageDirAddr = 0xB000;  // 4 page directories: 0xB000..0xEFFF
inline constexpr std::uint64_t kKernelMinAddr = 0x100000;
inline constexpr std::uint16_t kCodeSelector = 0x08;
inline constexpr std::uint16_t kDataSelector = 0x10;

inline constexpr std::uint16_t kUartPort = 0x3F8;
inline constexpr std::uint32_t kUartGsi = 4;
inline constexpr std::uint16_t kExitPort = 0xF4;
// 32-bit write of a vCPU index n (1 <= n < num_vcpus): starts vCPU n in long mode at
// BootInfo::ap_entry with RSP = BootInfo::ap_stack, RDI = BootInfo*, RSI = n. The VMM copies
// both fields during the write, so the guest may reuse them for the next vCPU at once.
inline constexpr std::uint16_t kVcpuStartPort = 0xF8;  // 0xF4..0xF7 is the exit port

inline constexpr std::uint64_t kMmioBase = 0xD000'0000;
inline constexpr std::uint64_t kMmioStride = 0x1000;
inline constexpr std::uint32_t kMmioSlotSize = 0x1000;  // what BootInfo::mmio[].size reports
inline constexpr std::uint32_t kMmioFirstGsi = 5;
inline constexpr std::uint32_t kMaxMmioDevices = 16;

inline constexpr std::uint64_t kPciEcamBase = 0xE000'0000;
inline constexpr std::uint64_t kPciEcamSize = 0x10'0000;  // bus 0
inline constexpr std::uint64_t kPciBarBase = 0xC000'0000;
inline constexpr std::uint64_t kPciBarSize = 0x1000'0000;
inline constexpr std::uint32_t kPciFirstGsi = 16;  // INTA# of slot s: 16 + s % 4

inline constexpr std::uint64_t kMmioHoleStart = 0xC000'0000;  // RAM ends below this
inline constexpr std::uint64_t kLapicBase = 0xFEE0'0000;
inline constexpr std::uint64_t kIoapicBase = 0xFEC0'0000;

inline constexpr std::uint32_t kBootMagic = 0x6f726976;  // "vrio"
inline constexpr std::uint32_t kBootVersion = 1;

struct MmioSlot {
    le64 base;
    le32 size;
    le32 gsi;
};
static_assert(sizeof(MmioSlot) == 16);

struct BootInfo {
    le32 magic;
    le32 version;
    le64 mem_size;
    le32 num_vcpus;
    le32 num_mmio;
    MmioSlot mmio[kMaxMmioDevices];
    le64 pci_ecam_base;  // 0: no PCI bus
    le64 pci_bar_base;
    le64 pci_bar_size;
    char cmdline[256];
    le64 ap_entry;  // written by the guest before a kVcpuStartPort write
    le64 ap_stack;
};
static_assert(offsetof(BootInfo, mmio) == 24);
static_assert(offsetof(BootInfo, pci_ecam_base) == 24 + 16 * kMaxMmioDevices);
static_assert(offsetof(BootInfo, cmdline) == 24 + 16 * kMaxMmioDevices + 24);
static_assert(offsetof(BootInfo, ap_entry) == 24 + 16 * kMaxMmioDevices + 24 + 256);
static_assert(sizeof(BootInfo) == 24 + 16 * kMaxMmioDevices + 24 + 256 + 16);

}  // namespace vireo::boot
