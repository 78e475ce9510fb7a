// riscv64 runtime (M-mode, vireo-vmm --arch riscv64 --bios, docs/riscv.md): entry from start.S,
// BootInfo built from the device tree, trap dispatch, the PLIC's M-mode context of hart 0, the
// CLINT timer (a 10 ms tick: the clock, and the bound of every sleep), the 16550 UART and the
// sifive_test finisher. No PCI on this machine.
#include <cstddef>
#include <cstdint>

#include "drivers/platform.hpp"
#include "runtime/riscv64/fdt.hpp"
#include "runtime/runtime.hpp"
#include "runtime/runtime_arch.hpp"

namespace vireo::guest {

namespace {

// QEMU virt memory map, as vireo's machine has it (src/riscv/machine.hpp; these are the guest's
// own copies: the runtime includes no emulator header).
constexpr std::uint64_t kFinisher = 0x0010'0000;
constexpr std::uint32_t kFinisherPass = 0x5555;
constexpr std::uint32_t kFinisherFail = 0x3333;  // | code << 16
constexpr std::uint64_t kUartBase = 0x1000'0000;
constexpr std::uint64_t kUartThr = 0;  // THR on write, RBR on read
constexpr std::uint64_t kUartLsr = 5;
constexpr std::uint8_t kUartLsrDr = 1u << 0;  // data ready: RBR holds a received byte
constexpr std::uint8_t kUartLsrThre = 1u << 5;
constexpr int kUartPollCap = 1000;

// CLINT (SiFive layout): mtimecmp of hart h at +0x4000 + 8h, mtime at +0xbff8, 10 MHz.
constexpr std::uint64_t kClintBase = 0x0200'0000;
constexpr std::uint64_t kMtimecmp0 = kClintBase + 0x4000;
constexpr std::uint64_t kMtime = kClintBase + 0xbff8;
constexpr std::uint64_t kTicksPerMs = 10'000;
constexpr std::uint64_t kTimerPeriodMs = 10;

// PLIC (SiFive layout). Context 0 = hart 0's M-mode.
constexpr std::uint64_t kPlicBase = 0x0c00'0000;
constexpr std::uint64_t kPlicEnable0 = kPlicBase + 0x2000;
constexpr std::uint64_t kPlicThreshold0 = kPlicBase + 0x20'0000;
constexpr std::uint64_t kPlicClaim0 = kPlicBase + 0x20'0004;
constexpr std::uint32_t kPlicSources = 32;  // riscv,ndev = 31: sources 1..31

// mcause / mie / mstatus bits (Privileged spec 1.12 §3.1).
constexpr std::uint64_t kCauseInterrupt = 1ull << 63;
constexpr std::uint64_t kIrqMachineTimer = 7;
constexpr std::uint64_t kIrqMachineExternal = 11;
constexpr std::uint64_t kMieMtie = 1u << kIrqMachineTimer;
constexpr std::uint64_t kMieMeie = 1u << kIrqMachineExternal;

constexpr int kFirstVector = 1;  // vectors are indices into `handlers`; 0 means none
constexpr int kVectors = 32;
constexpr int kExitException = 0x7e;
constexpr int kExitBadFdt = 0x7d;

struct Handler {
    platform::IrqHandler fn;
    void* ctx;
};

constinit boot::BootInfo info = {};
constinit Handler handlers[kVectors] = {};
constinit std::uint8_t source_vector[kPlicSources] = {};  // PLIC source -> vector (0 = none)
constinit int next_vector = kFirstVector;
constinit std::uint64_t hart_id = 0;
constinit volatile std::uint64_t ticks_ms = 0;  // the clock, as of the last timer interrupt

std::uint64_t mtime() {
    return mmio_read64(kMtime);
}

// The clock advances only in the timer interrupt (as on x86-64), so a guest that sees time pass
// while it sleeps (hello) has proven the interrupt path; the value itself is mtime's.
void timer_tick() {
    ticks_ms = mtime() / kTicksPerMs;
}

void arm_timer() {
    // A 64-bit store: RV64 writes mtimecmp in one access, no transient early match.
    mmio_write64(kMtimecmp0 + 8 * hart_id, mtime() + kTimerPeriodMs * kTicksPerMs);
}

void plic_set_enable(std::uint32_t source, bool on) {
    const std::uint64_t reg = kPlicEnable0 + 4 * (source / 32);
    const std::uint32_t bit = 1u << (source % 32);
    const std::uint32_t v = mmio_read32(reg);
    mmio_write32(reg, on ? v | bit : v & ~bit);
}

void copy_cmdline(const char* s) {
    std::size_t n = 0;
    for (; s != nullptr && s[n] != '\0' && n + 1 < sizeof info.cmdline; ++n) {
        info.cmdline[n] = s[n];
    }
    info.cmdline[n] = '\0';
}

// BootInfo from the device tree, so guest/tests/common.hpp finds the devices and the options
// the same way on both architectures: mmio[] = the "virtio,mmio" nodes (0x10001000 + n·0x1000,
// gsi = their PLIC source 1 + n), cmdline = /chosen/bootargs (vireo-vmm --append), no PCI.
// Without a readable tree there is nothing to trust: the caller stops (probing slots blindly
// would fault on the empty ones, which are not mapped).
bool init_boot_info(const void* fdt_blob) {
    info.magic.set(boot::kBootMagic);
    info.version.set(boot::kBootVersion);
    const fdt::BootFacts f = fdt::read(fdt_blob);
    if (!f.valid) {
        return false;
    }
    info.mem_size.set(f.mem_size);
    info.num_vcpus.set(f.cpus);
    std::uint32_t n = 0;
    for (int i = 0; i < f.num_virtio && n < boot::kMaxMmioDevices; ++i) {
        if (f.virtio[i].irq == 0 || f.virtio[i].irq >= kPlicSources) {
            continue;  // not an interrupt we can route
        }
        info.mmio[n].base.set(f.virtio[i].base);
        info.mmio[n].size.set(static_cast<std::uint32_t>(f.virtio[i].size));
        info.mmio[n].gsi.set(f.virtio[i].irq);
        ++n;
    }
    info.num_mmio.set(n);
    copy_cmdline(f.bootargs);
    return true;
}

void init_interrupts() {
    // Every source off and at priority 0 (never delivered) until a driver routes it;
    // threshold 0 lets any priority >= 1 through.
    for (std::uint32_t src = 1; src < kPlicSources; ++src) {
        mmio_write32(kPlicBase + 4 * src, 0);
    }
    for (std::uint32_t w = 0; w < kPlicSources / 32; ++w) {
        mmio_write32(kPlicEnable0 + 4 * w, 0);
    }
    mmio_write32(kPlicThreshold0, 0);
    timer_tick();
    arm_timer();
    asm volatile("csrs mie, %0" : : "r"(kMieMtie | kMieMeie) : "memory");
    platform::irq_enable();
}

void external_interrupt() {
    // Claim until the PLIC has nothing left: one trap serves every pending source. The
    // handler quiesces the device (virtio-mmio InterruptACK) before the completion, so a
    // level that stays high means a new cause and is delivered again.
    for (;;) {
        const std::uint32_t src = mmio_read32(kPlicClaim0);
        if (src == 0) {
            return;
        }
        const int v = src < kPlicSources ? source_vector[src] : 0;
        if (v != 0 && handlers[v].fn != nullptr) {
            handlers[v].fn(handlers[v].ctx);
        }
        mmio_write32(kPlicClaim0, src);
    }
}

}  // namespace

// ---- runtime ----------------------------------------------------------------------------------

const boot::BootInfo& boot_info() {
    return info;
}

void exit_vm(int code) {
    print("[guest] exit %d\n", code);
    const auto c = static_cast<std::uint32_t>(code) & 0xffff;
    mmio_write32(kFinisher, c == 0 ? kFinisherPass : (kFinisherFail | c << 16));
    for (;;) {
        asm volatile("csrci mstatus, 8\n\twfi" ::: "memory");
    }
}

namespace arch {
void console_putc(char c) {
    if (c == '\n') {
        console_putc('\r');
    }
    for (int i = 0; i < kUartPollCap && (mmio_read8(kUartBase + kUartLsr) & kUartLsrThre) == 0;
         ++i) {
    }
    mmio_write8(kUartBase + kUartThr, static_cast<std::uint8_t>(c));
}

int console_getc() {
    if ((mmio_read8(kUartBase + kUartLsr) & kUartLsrDr) == 0) {
        return -1;
    }
    return mmio_read8(kUartBase + kUartThr);
}
}  // namespace arch

// ---- platform interface ------------------------------------------------------------------------

namespace platform {

// No PCI host bridge on this machine (BootInfo::pci_ecam_base is 0, which the tests check
// first): reads float high like an absent device, writes go nowhere.
std::uint32_t pci_config_read32(std::uint8_t, std::uint8_t, std::uint8_t, std::uint16_t) {
    return 0xFFFF'FFFF;
}
void pci_config_write32(std::uint8_t, std::uint8_t, std::uint8_t, std::uint16_t, std::uint32_t) {}
std::uint32_t pci_intx_gsi(std::uint8_t, std::uint8_t) {
    return 0;
}
MsiMessage msi_message(int) {
    return {};  // no MSI controller (no IMSIC/APLIC)
}

int irq_alloc(IrqHandler fn, void* ctx) {
    if (next_vector >= kVectors || fn == nullptr) {
        return -1;
    }
    const int v = next_vector++;
    handlers[v] = {fn, ctx};
    return v;
}

// PLIC gateways are level-triggered for wired sources on this machine; `level_triggered` needs
// no programming.
bool irq_route_gsi(std::uint32_t gsi, int vector, bool /*level_triggered*/) {
    if (gsi == 0 || gsi >= kPlicSources || vector < kFirstVector || vector >= kVectors) {
        return false;
    }
    source_vector[gsi] = static_cast<std::uint8_t>(vector);
    mmio_write32(kPlicBase + 4 * gsi, 1);
    plic_set_enable(gsi, true);
    return true;
}

void irq_mask_gsi(std::uint32_t gsi) {
    if (gsi == 0 || gsi >= kPlicSources) {
        return;
    }
    plic_set_enable(gsi, false);
    mmio_write32(kPlicBase + 4 * gsi, 0);
}

void irq_disable() {
    asm volatile("csrci mstatus, 8" ::: "memory");
}
void irq_enable() {
    asm volatile("csrsi mstatus, 8" ::: "memory");
}
void wait_for_interrupt() {
    // WFI resumes when an interrupt enabled in mie is pending, whatever mstatus.MIE says
    // (Privileged spec §3.3.3), so sleeping with MIE clear cannot miss one that arrived after
    // the caller's check; opening MIE afterwards takes it. WFI may also return early (it is a
    // hint): callers loop.
    asm volatile("wfi\n\tcsrsi mstatus, 8\n\tcsrci mstatus, 8" ::: "memory");
}

bool eoi_at_injection() {
    return false;  // claim/complete: a source is not re-delivered before its completion
}

std::uint64_t now_ms() {
    return ticks_ms;
}
void cpu_relax() {
    // Zihintpause PAUSE, spelled as its encoding (FENCE pred=W succ=0, a no-op hint on harts
    // without the extension) since the assembler's rv64gc does not know the mnemonic.
    asm volatile(".insn i 0x0f, 0, x0, x0, 0x010" ::: "memory");
}

driver::DmaWindow dma_window() {
    return driver::DmaWindow::identity();  // M-mode, no translation, no IOMMU
}

}  // namespace platform

}  // namespace vireo::guest

using namespace vireo::guest;

extern "C" void vireo_trap_dispatch(std::uint64_t cause, std::uint64_t epc, std::uint64_t tval) {
    if ((cause & kCauseInterrupt) == 0) {
        print("[guest] exception %lu mepc %lx mtval %lx\n", cause, epc, tval);
        exit_vm(kExitException);
    }
    switch (cause & ~kCauseInterrupt) {
        case kIrqMachineTimer:
            timer_tick();
            arm_timer();
            break;
        case kIrqMachineExternal:
            external_interrupt();
            break;
        default:
            print("[guest] unexpected interrupt %lu\n", cause & ~kCauseInterrupt);
            break;
    }
}

extern "C" [[noreturn]] void vireo_guest_start(std::uint64_t hartid, const void* fdt_blob) {
    hart_id = hartid;
    if (!init_boot_info(fdt_blob)) {
        print("[guest] no valid device tree at %p\n", fdt_blob);
        exit_vm(kExitBadFdt);
    }
    init_interrupts();
    print("[guest] boot: riscv64 hart %lu, mem %lu MiB, %u cpus, %u mmio slots, cmdline \"%s\"\n",
          hartid, info.mem_size.get() >> 20, info.num_vcpus.get(), info.num_mmio.get(),
          info.cmdline);
    exit_vm(guest_main());
}
