#include "vmm/x86_boot.hpp"

#include <fmt/format.h>
#include <sys/ioctl.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

#include "vmm/kvm.hpp"

namespace vireo::vmm {

namespace {

std::unexpected<std::string> sys_error(const char* what) {
    return std::unexpected(fmt::format("{}: {}", what, std::strerror(errno)));
}

inline constexpr std::uint32_t kCpuidFeatures = 1;
inline constexpr std::uint32_t kCpuidExtTopology = 0xB;
inline constexpr std::uint32_t kCpuidExtTopologyV2 = 0x1F;
inline constexpr std::uint32_t kCpuidHypervisorBit = 1u << 31;  // leaf 1 ECX
inline constexpr unsigned kCpuidApicIdShift = 24;               // leaf 1 EBX[31:24]
inline constexpr std::uint32_t kCpuidVendor = 0;
inline constexpr std::uint32_t kCpuidApicBit = 1u << 9;  // leaf 1 EDX: on-chip APIC
inline constexpr std::uint32_t kCpuidTscBit = 1u << 4;   // leaf 1 EDX
inline constexpr std::uint32_t kCpuidMsrBit = 1u << 5;   // leaf 1 EDX
inline constexpr std::uint32_t kCpuidPaeBit = 1u << 6;   // leaf 1 EDX
// Family 6, model 0x3A (EAX[11:8] family, [7:4] model, [19:16] extended model), stepping 9:
// a plain P6-family signature, so family-based quirks in guests take the common path.
inline constexpr std::uint32_t kCpuidMinimalSignature = 0x000306A9;

// FPU state at entry: the x87 control word and MXCSR after FNINIT / reset (SDM Vol. 1 §8.1.5,
// §10.2.3): all exceptions masked.
inline constexpr std::uint16_t kFpuControlWord = 0x37f;
inline constexpr std::uint32_t kMxcsrDefault = 0x1f80;

kvm_segment flat_segment(std::uint16_t selector, bool code) {
    kvm_segment s{};
    s.base = 0;
    s.limit = 0xffff'ffff;
    s.selector = selector;
    s.present = 1;
    s.dpl = 0;
    s.s = 1;  // code/data, not system
    s.g = 1;
    if (code) {
        s.type = 0xb;  // execute/read, accessed — must match kGdtCode64
        s.l = 1;
        s.db = 0;  // L=1 requires D=0
    } else {
        s.type = 0x3;  // read/write, accessed — must match kGdtData
        s.db = 1;
    }
    return s;
}

}  // namespace

std::expected<void, std::string> write_boot_tables(const GuestMemory& mem) {
    const std::array<std::uint64_t, kGdtEntries> gdt{0, kGdtCode64, kGdtData};
    if (!mem.write(boot::kGdtAddr, gdt.data(), sizeof(gdt))) {
        return std::unexpected("boot: GDT outside RAM");
    }
    std::array<std::uint64_t, kEntriesPerTable> table{};
    table[0] = boot::kPdptAddr | kPtePresent | kPteWrite;
    if (!mem.write(boot::kPml4Addr, table.data(), sizeof(table))) {
        return std::unexpected("boot: PML4 outside RAM");
    }
    table.fill(0);
    for (unsigned i = 0; i < kPageDirs; ++i) {
        table[i] = (boot::kPageDirAddr + i * 0x1000) | kPtePresent | kPteWrite;
    }
    if (!mem.write(boot::kPdptAddr, table.data(), sizeof(table))) {
        return std::unexpected("boot: PDPT outside RAM");
    }
    for (unsigned d = 0; d < kPageDirs; ++d) {
        for (unsigned i = 0; i < kEntriesPerTable; ++i) {
            const std::uint64_t addr = (std::uint64_t{d} * kEntriesPerTable + i) * kLargePageSize;
            std::uint64_t e = addr | kPtePresent | kPteWrite | kPteLarge;
            if (addr >= boot::kMmioHoleStart) {
                e |= kPtePcd | kPtePwt;  // device memory: uncached
            }
            table[i] = e;
        }
        if (!mem.write(boot::kPageDirAddr + d * 0x1000, table.data(), sizeof(table))) {
            return std::unexpected("boot: page directory outside RAM");
        }
    }
    return {};
}

std::expected<void, std::string> write_boot_info(const GuestMemory& mem, const BootInfoParams& p) {
    if (p.mmio.size() > boot::kMaxMmioDevices) {
        return std::unexpected("boot: too many virtio-mmio slots");
    }
    if (p.cmdline.size() >= sizeof(boot::BootInfo::cmdline)) {
        return std::unexpected("boot: command line too long");
    }
    boot::BootInfo bi{};
    bi.magic.set(boot::kBootMagic);
    bi.version.set(boot::kBootVersion);
    bi.mem_size.set(p.mem_size);
    bi.num_vcpus.set(p.num_vcpus);
    bi.num_mmio.set(static_cast<std::uint32_t>(p.mmio.size()));
    for (std::size_t i = 0; i < p.mmio.size(); ++i) {
        bi.mmio[i].base.set(p.mmio[i].base);
        bi.mmio[i].size.set(p.mmio[i].size);
        bi.mmio[i].gsi.set(p.mmio[i].gsi);
    }
    if (p.pci) {
        bi.pci_ecam_base.set(boot::kPciEcamBase);
        bi.pci_bar_base.set(boot::kPciBarBase);
        bi.pci_bar_size.set(boot::kPciBarSize);
    }
    std::memcpy(bi.cmdline, p.cmdline.data(), p.cmdline.size());
    if (!mem.write_obj(boot::kBootInfoAddr, bi)) {
        return std::unexpected("boot: BootInfo outside RAM");
    }
    return {};
}

std::expected<void, std::string> setup_long_mode(int vcpu_fd, std::uint64_t entry,
                                                 std::uint64_t stack, std::uint64_t rsi) {
    kvm_sregs sregs{};
    if (::ioctl(vcpu_fd, KVM_GET_SREGS, &sregs) < 0) {
        return sys_error("KVM_GET_SREGS");
    }
    sregs.cs = flat_segment(boot::kCodeSelector, true);
    sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = flat_segment(boot::kDataSelector, false);
    sregs.gdt.base = boot::kGdtAddr;
    sregs.gdt.limit = kGdtEntries * 8 - 1;
    sregs.idt.base = 0;
    sregs.idt.limit = 0;  // documented: faults before the guest's own IDT triple-fault
    // TR and LDTR keep KVM's reset values (a busy TSS, an unusable LDT), valid for VM entry.
    sregs.cr0 = kCr0Pe | kCr0Mp | kCr0Et | kCr0Ne | kCr0Wp | kCr0Pg;
    sregs.cr3 = boot::kPml4Addr;
    sregs.cr4 = kCr4Pae | kCr4Osfxsr | kCr4Osxmmexcpt;
    sregs.efer = kEferLme | kEferLma;
    if (::ioctl(vcpu_fd, KVM_SET_SREGS, &sregs) < 0) {
        return sys_error("KVM_SET_SREGS");
    }
    kvm_fpu fpu{};
    fpu.fcw = kFpuControlWord;
    fpu.mxcsr = kMxcsrDefault;
    if (::ioctl(vcpu_fd, KVM_SET_FPU, &fpu) < 0) {
        return sys_error("KVM_SET_FPU");
    }
    kvm_regs regs{};
    regs.rflags = kRflagsReserved;  // IF = 0
    regs.rip = entry;
    regs.rsp = stack;
    regs.rdi = boot::kBootInfoAddr;
    regs.rsi = rsi;
    if (::ioctl(vcpu_fd, KVM_SET_REGS, &regs) < 0) {
        return sys_error("KVM_SET_REGS");
    }
    return {};
}

std::vector<kvm_cpuid_entry2> minimal_cpuid() {
    std::vector<kvm_cpuid_entry2> v(2);
    v[0].function = kCpuidVendor;
    v[0].eax = kCpuidFeatures;  // highest basic leaf
    // "vireovireo\0\0" is not a real vendor; guests take their generic paths.
    v[0].ebx = 0x65726976;  // "vire"
    v[0].edx = 0x69766f65;  // "eovi"
    v[0].ecx = 0x00006f72;  // "ro"
    v[1].function = kCpuidFeatures;
    v[1].eax = kCpuidMinimalSignature;
    // KVM's LAPIC allows the timer's periodic mode only when leaf 1 reports an APIC.
    v[1].edx = kCpuidApicBit | kCpuidTscBit | kCpuidMsrBit | kCpuidPaeBit;
    return v;
}

std::expected<void, std::string> setup_cpuid(int vcpu_fd, std::span<const kvm_cpuid_entry2> base,
                                             std::uint32_t apic_id) {
    KvmFlexArray<kvm_cpuid_entry2> c(base.size());
    std::copy(base.begin(), base.end(), c.entries());
    for (kvm_cpuid_entry2& e : c.used()) {
        if (e.function == kCpuidFeatures) {
            e.ebx = (e.ebx & ~(0xffu << kCpuidApicIdShift)) | (apic_id << kCpuidApicIdShift);
            e.ecx |= kCpuidHypervisorBit;
        } else if (e.function == kCpuidExtTopology || e.function == kCpuidExtTopologyV2) {
            e.edx = apic_id;  // x2APIC ID of this logical processor
        }
    }
    if (::ioctl(vcpu_fd, kKvmSetCpuid2, c.data()) < 0) {
        return sys_error("KVM_SET_CPUID2");
    }
    return {};
}

}  // namespace vireo::vmm
