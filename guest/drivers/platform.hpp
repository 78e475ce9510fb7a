// The platform interface the guest drivers are written against. Everything architecture-specific
// (port I/O, the PCI configuration mechanism, interrupt controllers, the CPU's wait instruction,
// the clock) sits behind these declarations; guest/runtime/<arch>/ implements them. The drivers
// themselves (guest/drivers/*.hpp) are architecture-neutral and freestanding: no exceptions,
// no RTTI, no heap, no libc beyond memcpy/memset.
#pragma once

#include <cstddef>
#include <cstdint>

#include "driver/driver_common.hpp"

namespace vireo::guest {

// Diagnostics to the platform's console (printf subset, see runtime/runtime.hpp).
__attribute__((format(printf, 1, 2))) void print(const char* fmt, ...);

// ---- device registers ----------------------------------------------------------------------
// Memory-mapped registers: volatile accesses of exactly the given width, identity-mapped and
// uncached, so no cache maintenance is needed.
//
// Ordering against RAM. The drivers publish descriptors and ring indices in RAM (acquire /
// release and full_fence() from memory/ordering.hpp) and then write a device register (queue
// notify, status), or read a register (interrupt status) and then the used ring. x86-64 orders
// uncached accesses with every other load and store, so nothing is needed there. RISC-V's RVWMO
// treats device I/O and memory as separate classes, and the fences of C++ atomics need only order
// memory (the RISC-V atomics mapping is fence rw,rw, which does not order a RAM store before an
// MMIO store; GCC 12 happens to emit fence iorw,iorw, nothing to rely on). So on riscv64 every
// register write waits for all earlier memory and I/O accesses, and every register read completes
// before any later one (fence iorw,iorw on both sides; Linux's writel/readl use the narrower fence
// w,o / fence i,ir). A register write followed by a read of the same device relies on the device
// region being a strongly ordered I/O channel (its memory-ordering PMA), as Linux does.
namespace detail {
inline void io_fence() {
#if defined(__riscv)
    asm volatile("fence iorw, iorw" ::: "memory");
#endif
}
}  // namespace detail

inline std::uint8_t mmio_read8(std::uint64_t addr) {
    const std::uint8_t v = *reinterpret_cast<volatile const std::uint8_t*>(addr);
    detail::io_fence();
    return v;
}
inline std::uint16_t mmio_read16(std::uint64_t addr) {
    const std::uint16_t v = *reinterpret_cast<volatile const std::uint16_t*>(addr);
    detail::io_fence();
    return v;
}
inline std::uint32_t mmio_read32(std::uint64_t addr) {
    const std::uint32_t v = *reinterpret_cast<volatile const std::uint32_t*>(addr);
    detail::io_fence();
    return v;
}
inline std::uint64_t mmio_read64(std::uint64_t addr) {
    const std::uint64_t v = *reinterpret_cast<volatile const std::uint64_t*>(addr);
    detail::io_fence();
    return v;
}
inline void mmio_write8(std::uint64_t addr, std::uint8_t v) {
    detail::io_fence();
    *reinterpret_cast<volatile std::uint8_t*>(addr) = v;
}
inline void mmio_write16(std::uint64_t addr, std::uint16_t v) {
    detail::io_fence();
    *reinterpret_cast<volatile std::uint16_t*>(addr) = v;
}
inline void mmio_write32(std::uint64_t addr, std::uint32_t v) {
    detail::io_fence();
    *reinterpret_cast<volatile std::uint32_t*>(addr) = v;
}
inline void mmio_write64(std::uint64_t addr, std::uint64_t v) {
    detail::io_fence();
    *reinterpret_cast<volatile std::uint64_t*>(addr) = v;
}

namespace platform {

// ---- PCI configuration space (bus 0..255, device 0..31, function 0..7, offset 0..255) -------
// x86: configuration mechanism #1 (0xCF8/0xCFC); elsewhere ECAM. Offsets are dword aligned.
// riscv64 (vireo's machine has no PCI): reads return all-ones, writes are dropped.
std::uint32_t pci_config_read32(std::uint8_t bus, std::uint8_t dev, std::uint8_t fn,
                                std::uint16_t offset);
void pci_config_write32(std::uint8_t bus, std::uint8_t dev, std::uint8_t fn, std::uint16_t offset,
                        std::uint32_t value);

// The interrupt line (GSI) wired to INTA#..INTD# (pin 1..4) of PCI device `dev` on bus 0.
std::uint32_t pci_intx_gsi(std::uint8_t dev, std::uint8_t pin);

// ---- interrupts --------------------------------------------------------------------------------
using IrqHandler = void (*)(void* ctx);

// A CPU interrupt vector whose handler calls `fn(ctx)` (in interrupt context, interrupts off)
// and then signals end-of-interrupt. -1 when all vectors are taken.
int irq_alloc(IrqHandler fn, void* ctx);

// Routes a wired interrupt (a GSI of the interrupt controller) to `vector`, unmasked.
// Level-triggered lines must be quiesced at the device by the handler before it returns.
bool irq_route_gsi(std::uint32_t gsi, int vector, bool level_triggered);
void irq_mask_gsi(std::uint32_t gsi);

// The message (address, data) that makes an MSI / MSI-X write raise `vector` on this CPU.
struct MsiMessage {
    std::uint64_t address = 0;
    std::uint32_t data = 0;
};
MsiMessage msi_message(int vector);

// Interrupt state of this CPU.
void irq_disable();
void irq_enable();
// Atomically enables interrupts and sleeps until one arrives; returns with interrupts disabled.
void wait_for_interrupt();
// True once an interrupt handler ran with its vector not in service (LAPIC ISR bit clear): the
// platform completed the EOI when it injected the interrupt, so the IOAPIC sees a level-triggered
// line still high (the handler has not acknowledged the device yet) and delivers it again.
bool eoi_at_injection();

// ---- time ------------------------------------------------------------------------------------
// Milliseconds since boot, advanced by a periodic timer interrupt (coarse: 10 ms steps).
std::uint64_t now_ms();
void cpu_relax();

// A free-running counter for benchmarks: the TSC on x86-64, the cycle CSR on riscv64 (in
// vireo's RV64 emulator that counts retired instructions).
inline std::uint64_t cycle_counter() {
#if defined(__x86_64__)
    std::uint32_t lo, hi;
    asm volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return (std::uint64_t{hi} << 32) | lo;
#elif defined(__riscv)
    std::uint64_t c;
    asm volatile("rdcycle %0" : "=r"(c));
    return c;
#else
#error "cycle_counter: unknown architecture"
#endif
}

// ---- DMA -------------------------------------------------------------------------------------
// How drivers translate their pointers to device addresses (identity on this machine).
driver::DmaWindow dma_window();

}  // namespace platform

// Waits for `done()` with a deadline. `sleep`: sleep between checks until an interrupt arrives
// (the device's or the clock's), else busy-poll with the CPU's relax hint. Returns done().
template <typename Pred>
bool wait_until(Pred done, std::uint32_t timeout_ms, bool sleep) {
    const std::uint64_t deadline = platform::now_ms() + timeout_ms;
    for (;;) {
        if (sleep) {
            // Check with interrupts off, so an interrupt between the check and the sleep
            // cannot be lost: wait_for_interrupt() re-enables them atomically with the sleep.
            platform::irq_disable();
            if (done()) {
                platform::irq_enable();
                return true;
            }
            if (platform::now_ms() >= deadline) {
                platform::irq_enable();
                return false;
            }
            platform::wait_for_interrupt();
            platform::irq_enable();
        } else {
            if (done()) {
                return true;
            }
            if (platform::now_ms() >= deadline) {
                return done();
            }
            platform::cpu_relax();
        }
    }
}

}  // namespace vireo::guest
