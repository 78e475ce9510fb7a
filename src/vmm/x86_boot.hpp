// The x86-64 machine state vireo-vmm prepares before the first instruction
// (docs/boot-protocol.md): GDT, identity-mapping page tables, BootInfo, and the long-mode
// register state of a vCPU.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <expected>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "memory/guest_memory.hpp"
#include "vmm/boot_info.hpp"

namespace vireo::vmm {

// Page-table entry bits (Intel SDM Vol. 3 §4.5).
inline constexpr std::uint64_t kPtePresent = 1ull << 0;
inline constexpr std::uint64_t kPteWrite = 1ull << 1;
inline constexpr std::uint64_t kPtePwt = 1ull << 3;
inline constexpr std::uint64_t kPtePcd = 1ull << 4;
inline constexpr std::uint64_t kPteLarge = 1ull << 7;  // PS: a 2 MiB page in a PD entry
inline constexpr std::uint64_t kLargePageSize = 2ull << 20;
inline constexpr unsigned kEntriesPerTable = 512;
inline constexpr unsigned kPageDirs = 4;  // 4 × 1 GiB: the low 4 GiB

// Control-register and EFER bits (SDM Vol. 3 §2.5, §2.2.1).
inline constexpr std::uint64_t kCr0Pe = 1ull << 0;
inline constexpr std::uint64_t kCr0Mp = 1ull << 1;
inline constexpr std::uint64_t kCr0Et = 1ull << 4;
inline constexpr std::uint64_t kCr0Ne = 1ull << 5;
inline constexpr std::uint64_t kCr0Wp = 1ull << 16;
inline constexpr std::uint64_t kCr0Pg = 1ull << 31;
inline constexpr std::uint64_t kCr4Pae = 1ull << 5;
inline constexpr std::uint64_t kCr4Osfxsr = 1ull << 9;
inline constexpr std::uint64_t kCr4Osxmmexcpt = 1ull << 10;
inline constexpr std::uint64_t kEferLme = 1ull << 8;
inline constexpr std::uint64_t kEferLma = 1ull << 10;
inline constexpr std::uint64_t kRflagsReserved = 1ull << 1;  // bit 1 always reads 1

// GDT descriptors: flat 64-bit code (L=1, P, DPL 0, S, type execute/read accessed, G) and flat
// data (D/B=1, P, S, type read/write accessed, G).
inline constexpr std::uint64_t kGdtCode64 = 0x00AF'9B00'0000'FFFF;
inline constexpr std::uint64_t kGdtData = 0x00CF'9300'0000'FFFF;
inline constexpr unsigned kGdtEntries = 3;  // null, code, data

// Writes the GDT and page tables into guest memory. RAM must cover the boot area.
std::expected<void, std::string> write_boot_tables(const GuestMemory& mem);

struct MmioSlotInfo {
    std::uint64_t base;
    std::uint32_t size;
    std::uint32_t gsi;
};

struct BootInfoParams {
    std::uint64_t mem_size = 0;
    std::uint32_t num_vcpus = 1;
    std::vector<MmioSlotInfo> mmio;
    bool pci = true;
    std::string_view cmdline;
};

// Fills BootInfo at kBootInfoAddr.
std::expected<void, std::string> write_boot_info(const GuestMemory& mem, const BootInfoParams& p);

// Puts a vCPU in the documented long-mode entry state: segments, control registers, FPU/SSE,
// RIP = entry, RSP = stack, RDI = BootInfo*, RSI = `rsi`.
std::expected<void, std::string> setup_long_mode(int vcpu_fd, std::uint64_t entry,
                                                 std::uint64_t stack, std::uint64_t rsi);

// Leaves 0 and 1 only (vendor, family, APIC/TSC/MSR/PAE bits): what a VMM sets when KVM refuses
// KVM_GET_SUPPORTED_CPUID, so the LAPIC timer's periodic mode still works (KVM checks leaf 1).
std::vector<kvm_cpuid_entry2> minimal_cpuid();

// KVM_SET_CPUID2 from the supported set, with the vCPU's APIC ID in leaves 1, 0xB and 0x1F and
// the hypervisor bit set.
std::expected<void, std::string> setup_cpuid(int vcpu_fd, std::span<const kvm_cpuid_entry2> base,
                                             std::uint32_t apic_id);

}  // namespace vireo::vmm
