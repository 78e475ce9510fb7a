// x86-64 runtime: entry from start.S, IDT, LAPIC (EOI, timer), IOAPIC routing, MSI messages,
// the 16550 UART, the exit port and PCI configuration mechanism #1.
#include <cstddef>
#include <cstdint>

#include "drivers/platform.hpp"
#include "runtime/runtime.hpp"
#include "runtime/runtime_arch.hpp"
#include "runtime/x86_64/io.hpp"

extern "C" {
extern const std::uint64_t vireo_isr_stubs[];  // start.S: entry stubs of vectors 0..63
void vireo_isr_spurious();
}

namespace vireo::guest {

namespace {

using namespace x86;

// 16550 registers (offsets from the base port).
constexpr std::uint16_t kUartThr = 0;  // THR on write, RBR on read
constexpr std::uint16_t kUartLsr = 5;
constexpr std::uint8_t kUartLsrDr = 1u << 0;    // data ready: RBR holds a received byte
constexpr std::uint8_t kUartLsrThre = 1u << 5;  // transmit holding register empty
constexpr int kUartPollCap = 1000;

// Legacy 8259 PICs: masked, KVM's IOAPIC and LAPIC do the work.
constexpr std::uint16_t kPic1Data = 0x21;
constexpr std::uint16_t kPic2Data = 0xA1;

// PCI configuration mechanism #1 (PCI Local Bus 3.0 §3.2.2.3.2).
constexpr std::uint16_t kPciConfigAddress = 0xCF8;
constexpr std::uint16_t kPciConfigData = 0xCFC;
constexpr std::uint32_t kPciConfigEnable = 1u << 31;

// Local APIC registers (Intel SDM vol. 3 §10.4).
constexpr std::uint64_t kLapicId = 0x20;
constexpr std::uint64_t kLapicTpr = 0x80;
constexpr std::uint64_t kLapicEoi = 0xB0;
constexpr std::uint64_t kLapicIsr = 0x100;  // 8 registers, 0x10 apart, 32 vectors each
constexpr std::uint64_t kLapicSvr = 0xF0;
constexpr std::uint64_t kLapicLvtTimer = 0x320;
constexpr std::uint64_t kLapicTimerInitial = 0x380;
constexpr std::uint64_t kLapicTimerDivide = 0x3E0;
constexpr std::uint32_t kLapicSvrEnable = 1u << 8;
constexpr std::uint32_t kLapicTimerPeriodic = 1u << 17;
constexpr std::uint32_t kLapicDivideBy16 = 0x3;
// KVM's LAPIC runs at 1 GHz; divided by 16 that is 62.5 ticks per microsecond.
constexpr std::uint32_t kTimerPeriodMs = 10;
constexpr std::uint32_t kTimerInitialCount = 62'500 * kTimerPeriodMs;

// IOAPIC (82093AA datasheet): index/data window, redirection entries from register 0x10.
constexpr std::uint64_t kIoapicIndex = 0x00;
constexpr std::uint64_t kIoapicData = 0x10;
constexpr std::uint32_t kIoapicVersion = 0x01;
constexpr std::uint32_t kIoapicRedirBase = 0x10;
constexpr std::uint32_t kIoapicLevel = 1u << 15;
constexpr std::uint32_t kIoapicMasked = 1u << 16;

// MSI address format (SDM vol. 3 §10.11.1): 0xFEE, destination APIC ID in bits 19:12.
constexpr std::uint64_t kMsiAddressBase = 0xFEE0'0000;
constexpr int kMsiDestShift = 12;

constexpr int kExceptionCount = 32;
constexpr int kTimerVector = 32;
constexpr int kFirstDynamicVector = 33;
constexpr int kStubCount = 64;  // vectors with a stub in start.S
constexpr int kSpuriousVector = 0xFF;

constexpr int kExitException = 0x7e;

struct [[gnu::packed]] IdtEntry {
    std::uint16_t offset_lo;
    std::uint16_t selector;
    std::uint8_t ist;
    std::uint8_t type_attr;
    std::uint16_t offset_mid;
    std::uint32_t offset_hi;
    std::uint32_t reserved;
};
static_assert(sizeof(IdtEntry) == 16);
constexpr std::uint8_t kIdtInterruptGate = 0x8E;  // present, DPL 0, 64-bit interrupt gate

struct [[gnu::packed]] IdtPointer {
    std::uint16_t limit;
    std::uint64_t base;
};

// Layout pushed by start.S's isr_common (lowest address first).
struct InterruptFrame {
    std::uint64_t r15, r14, r13, r12, r11, r10, r9, r8, rbp, rdi, rsi, rdx, rcx, rbx, rax;
    std::uint64_t vector, error, rip, cs, rflags, rsp, ss;
};

struct Handler {
    platform::IrqHandler fn;
    void* ctx;
};

alignas(16) constinit IdtEntry idt[256] = {};
constinit Handler handlers[kStubCount] = {};
constinit int next_vector = kFirstDynamicVector;
constinit const boot::BootInfo* info = nullptr;
constinit std::uint32_t apic_id = 0;
constinit volatile std::uint64_t ticks_ms = 0;
constinit volatile bool isr_clear_seen = false;

std::uint32_t lapic_read(std::uint64_t reg) {
    return mmio_read32(boot::kLapicBase + reg);
}
void lapic_write(std::uint64_t reg, std::uint32_t v) {
    mmio_write32(boot::kLapicBase + reg, v);
}
std::uint32_t ioapic_read(std::uint32_t reg) {
    mmio_write32(boot::kIoapicBase + kIoapicIndex, reg);
    return mmio_read32(boot::kIoapicBase + kIoapicData);
}
void ioapic_write(std::uint32_t reg, std::uint32_t v) {
    mmio_write32(boot::kIoapicBase + kIoapicIndex, reg);
    mmio_write32(boot::kIoapicBase + kIoapicData, v);
}

void set_gate(int vector, std::uint64_t target) {
    IdtEntry& e = idt[vector];
    e.offset_lo = static_cast<std::uint16_t>(target);
    e.selector = boot::kCodeSelector;
    e.ist = 0;
    e.type_attr = kIdtInterruptGate;
    e.offset_mid = static_cast<std::uint16_t>(target >> 16);
    e.offset_hi = static_cast<std::uint32_t>(target >> 32);
    e.reserved = 0;
}

void timer_tick(void*) {
    ticks_ms = ticks_ms + kTimerPeriodMs;
    // Re-armed by hand: KVM accepts the periodic mode bit only once the vCPU has a CPUID
    // leaf 1, which a VMM on a host refusing KVM_GET_SUPPORTED_CPUID may not set; one-shot
    // works everywhere.
    lapic_write(kLapicTimerInitial, kTimerInitialCount);
}

void init_interrupts() {
    outb(kPic1Data, 0xFF);
    outb(kPic2Data, 0xFF);
    for (int v = 0; v < kStubCount; ++v) {
        set_gate(v, vireo_isr_stubs[v]);
    }
    set_gate(kSpuriousVector, reinterpret_cast<std::uint64_t>(&vireo_isr_spurious));
    const IdtPointer ptr{sizeof idt - 1, reinterpret_cast<std::uint64_t>(idt)};
    asm volatile("lidt %0" : : "m"(ptr) : "memory");

    apic_id = lapic_read(kLapicId) >> 24;
    lapic_write(kLapicSvr, kLapicSvrEnable | kSpuriousVector);
    lapic_write(kLapicTpr, 0);
    // Every IOAPIC pin masked until a driver routes it.
    const std::uint32_t pins = ((ioapic_read(kIoapicVersion) >> 16) & 0xFF) + 1;
    for (std::uint32_t pin = 0; pin < pins; ++pin) {
        ioapic_write(kIoapicRedirBase + 2 * pin, kIoapicMasked);
    }
    handlers[kTimerVector] = {timer_tick, nullptr};
    lapic_write(kLapicTimerDivide, kLapicDivideBy16);
    lapic_write(kLapicLvtTimer, kLapicTimerPeriodic | kTimerVector);
    lapic_write(kLapicTimerInitial, kTimerInitialCount);
    asm volatile("sti" ::: "memory");
}

}  // namespace

// ---- runtime ----------------------------------------------------------------------------------

const boot::BootInfo& boot_info() {
    return *info;
}

void exit_vm(int code) {
    print("[guest] exit %d\n", code);
    outl(boot::kExitPort, static_cast<std::uint32_t>(code));
    for (;;) {
        asm volatile("cli; hlt");
    }
}

namespace arch {
void console_putc(char c) {
    if (c == '\n') {
        console_putc('\r');
    }
    for (int i = 0; i < kUartPollCap && (inb(boot::kUartPort + kUartLsr) & kUartLsrThre) == 0;
         ++i) {
    }
    outb(boot::kUartPort + kUartThr, static_cast<std::uint8_t>(c));
}

int console_getc() {
    if ((inb(boot::kUartPort + kUartLsr) & kUartLsrDr) == 0) {
        return -1;
    }
    return inb(boot::kUartPort + kUartThr);
}
}  // namespace arch

// ---- platform interface ------------------------------------------------------------------------

namespace platform {

std::uint32_t pci_config_read32(std::uint8_t bus, std::uint8_t dev, std::uint8_t fn,
                                std::uint16_t offset) {
    outl(kPciConfigAddress, kPciConfigEnable | (std::uint32_t{bus} << 16) |
                                (std::uint32_t{dev & 0x1Fu} << 11) |
                                (std::uint32_t{fn & 0x7u} << 8) | (offset & 0xFCu));
    return inl(kPciConfigData);
}

void pci_config_write32(std::uint8_t bus, std::uint8_t dev, std::uint8_t fn, std::uint16_t offset,
                        std::uint32_t value) {
    outl(kPciConfigAddress, kPciConfigEnable | (std::uint32_t{bus} << 16) |
                                (std::uint32_t{dev & 0x1Fu} << 11) |
                                (std::uint32_t{fn & 0x7u} << 8) | (offset & 0xFCu));
    outl(kPciConfigData, value);
}

std::uint32_t pci_intx_gsi(std::uint8_t dev, std::uint8_t pin) {
    // docs/boot-protocol.md: INTA# of slot s on GSI 16 + s % 4; the usual swizzle for B..D.
    return boot::kPciFirstGsi + (dev + pin - 1u) % 4u;
}

int irq_alloc(IrqHandler fn, void* ctx) {
    if (next_vector >= kStubCount || fn == nullptr) {
        return -1;
    }
    const int v = next_vector++;
    handlers[v] = {fn, ctx};
    return v;
}

bool irq_route_gsi(std::uint32_t gsi, int vector, bool level_triggered) {
    const std::uint32_t pins = ((ioapic_read(kIoapicVersion) >> 16) & 0xFF) + 1;
    if (gsi >= pins || vector < kFirstDynamicVector || vector >= kStubCount) {
        return false;
    }
    // Fixed delivery, physical destination = this CPU, active high.
    ioapic_write(kIoapicRedirBase + 2 * gsi + 1, apic_id << 24);
    ioapic_write(kIoapicRedirBase + 2 * gsi,
                 static_cast<std::uint32_t>(vector) | (level_triggered ? kIoapicLevel : 0));
    return true;
}

void irq_mask_gsi(std::uint32_t gsi) {
    ioapic_write(kIoapicRedirBase + 2 * gsi, kIoapicMasked);
}

MsiMessage msi_message(int vector) {
    // Fixed delivery, edge triggered: data is just the vector.
    return {kMsiAddressBase | (std::uint64_t{apic_id} << kMsiDestShift),
            static_cast<std::uint32_t>(vector)};
}

void irq_disable() {
    asm volatile("cli" ::: "memory");
}
void irq_enable() {
    asm volatile("sti" ::: "memory");
}
void wait_for_interrupt() {
    // STI's one-instruction shadow makes "sti; hlt" atomic: an interrupt pending at the STI is
    // taken after HLT starts, and wakes it.
    asm volatile("sti; hlt; cli" ::: "memory");
}

std::uint64_t now_ms() {
    return ticks_ms;
}
bool eoi_at_injection() {
    return isr_clear_seen;
}
void cpu_relax() {
    asm volatile("pause" ::: "memory");
}

driver::DmaWindow dma_window() {
    return driver::DmaWindow::identity();  // RAM is identity-mapped, no IOMMU
}

}  // namespace platform

}  // namespace vireo::guest

using namespace vireo::guest;

extern "C" void vireo_isr_dispatch(InterruptFrame* f) {
    if (f->vector < static_cast<std::uint64_t>(kExceptionCount)) {
        print("[guest] exception %lu error %lx rip %lx rsp %lx\n", f->vector, f->error, f->rip,
              f->rsp);
        if (f->vector == 14) {
            std::uint64_t cr2;
            asm volatile("mov %%cr2, %0" : "=r"(cr2));
            print("[guest] page fault address %lx\n", cr2);
        }
        exit_vm(kExitException);
    }
    // A conforming LAPIC holds the vector in service until our EOI below.
    const auto v = static_cast<std::uint32_t>(f->vector);
    if (((lapic_read(kLapicIsr + 0x10 * (v / 32)) >> (v % 32)) & 1) == 0) {
        isr_clear_seen = true;
    }
    const Handler h = handlers[f->vector];
    if (h.fn != nullptr) {
        h.fn(h.ctx);
    }
    lapic_write(kLapicEoi, 0);
}

extern "C" [[noreturn]] void vireo_guest_start(const vireo::boot::BootInfo* boot) {
    info = boot;
    if (boot->magic.get() != vireo::boot::kBootMagic) {
        // Nothing to trust; report through the exit port without touching BootInfo again.
        outl(vireo::boot::kExitPort, 0x7d);
    }
    init_interrupts();
    print("[guest] boot: mem %lu MiB, %u mmio slots, ecam %lx, cmdline \"%s\"\n",
          boot->mem_size.get() >> 20, boot->num_mmio.get(), boot->pci_ecam_base.get(),
          boot->cmdline);
    exit_vm(guest_main());
}
