// Driver for QEMU's edu teaching device (/work/shared/spec/qemu-edu.rst) plus vireo's increment
// unit at 0x10 (src/transport/edu.hpp): identification, liveness, factorial, increment, the
// interrupt controller (INTx or MSI) and the DMA engine.
#pragma once

#include <cstdint>

#include "drivers/pci.hpp"
#include "drivers/platform.hpp"

namespace vireo::guest {

namespace edu {
inline constexpr std::uint16_t kVendor = 0x1234;
inline constexpr std::uint16_t kDevice = 0x11e8;

inline constexpr std::uint64_t kId = 0x00;
inline constexpr std::uint64_t kLiveness = 0x04;
inline constexpr std::uint64_t kFactorial = 0x08;
inline constexpr std::uint64_t kIncrement = 0x10;
inline constexpr std::uint64_t kStatus = 0x20;
inline constexpr std::uint64_t kIrqStatus = 0x24;
inline constexpr std::uint64_t kIrqRaise = 0x60;
inline constexpr std::uint64_t kIrqAck = 0x64;
inline constexpr std::uint64_t kDmaSrc = 0x80;
inline constexpr std::uint64_t kDmaDst = 0x88;
inline constexpr std::uint64_t kDmaCount = 0x90;
inline constexpr std::uint64_t kDmaCmd = 0x98;
inline constexpr std::uint64_t kBuffer = 0x40000;
inline constexpr std::uint64_t kBufferSize = 4096;

inline constexpr std::uint32_t kIdLowMask = 0xFFFF;
inline constexpr std::uint32_t kIdLow = 0x00ed;
inline constexpr std::uint32_t kStatusComputing = 0x01;
inline constexpr std::uint32_t kStatusIncrementing = 0x02;
inline constexpr std::uint32_t kStatusIrqIncrement = 0x40;
inline constexpr std::uint32_t kStatusIrqFactorial = 0x80;
inline constexpr std::uint32_t kIrqFactorial = 0x01;
inline constexpr std::uint32_t kIrqIncrement = 0x02;
inline constexpr std::uint32_t kIrqDma = 0x100;
inline constexpr std::uint64_t kDmaStart = 0x1;
inline constexpr std::uint64_t kDmaToRam = 0x2;
inline constexpr std::uint64_t kDmaIrq = 0x4;
inline constexpr std::uint64_t kDmaMask = (1ull << 28) - 1;  // the device's default

inline constexpr std::uint32_t kTimeoutMs = 2000;
}  // namespace edu

class EduDevice {
  public:
    enum class Irq { kNone, kIntx, kMsi };

    constexpr EduDevice() = default;

    bool probe(const PciFunction& f, BarAllocator& window) {
        fn_ = f;
        if (fn_.vendor() != edu::kVendor || fn_.device() != edu::kDevice) {
            return false;
        }
        if (!fn_.assign_bars(window) || fn_.bar_size(0) < edu::kBuffer + edu::kBufferSize) {
            return false;
        }
        bar_ = fn_.bar(0);
        return true;
    }

    bool irq_setup(Irq mode) {
        mode_ = mode;
        if (mode == Irq::kNone) {
            return true;
        }
        const int vector = platform::irq_alloc(
            [](void* ctx) {
                auto* d = static_cast<EduDevice*>(ctx);
                // The driver acknowledges in every mode (edu.rst: also with MSI); with INTx
                // this drops the level.
                const std::uint32_t cause = d->reg(edu::kIrqStatus);
                d->write(edu::kIrqAck, cause);
                d->causes_ = d->causes_ | cause;
                d->count_ = d->count_ + 1;
                if (cause == 0) {
                    d->spurious_ = d->spurious_ + 1;  // shared or re-delivered level interrupt
                }
            },
            this);
        if (vector < 0) {
            return false;
        }
        if (mode == Irq::kMsi) {
            return fn_.enable_msi(vector);
        }
        fn_.set_intx_disabled(false);
        const std::uint8_t pin = fn_.read8(pci::kInterruptPin);
        return pin != 0 &&
               platform::irq_route_gsi(platform::pci_intx_gsi(fn_.dev(), pin), vector, true);
    }

    std::uint32_t id() { return reg(edu::kId); }
    std::uint32_t liveness(std::uint32_t v) {
        write(edu::kLiveness, v);
        return reg(edu::kLiveness);
    }

    // Raises `bits` through the interrupt raise register and waits for the handler to see them.
    bool raise(std::uint32_t bits) {
        causes_ = 0;
        write(edu::kIrqRaise, bits);
        return wait_irq(bits);
    }

    // n! computed by the device; completion by interrupt (when set up) or by polling status.
    bool factorial(std::uint32_t n, std::uint32_t* result) {
        return run(edu::kFactorial, edu::kStatusComputing, edu::kStatusIrqFactorial,
                   edu::kIrqFactorial, n, result);
    }
    bool increment(std::uint32_t v, std::uint32_t* result) {
        return run(edu::kIncrement, edu::kStatusIncrementing, edu::kStatusIrqIncrement,
                   edu::kIrqIncrement, v, result);
    }

    // Moves `len` bytes between RAM at `ram` and the device buffer at `offset`.
    bool dma(std::uint64_t ram, std::uint64_t offset, std::uint32_t len, bool to_ram) {
        if (offset > edu::kBufferSize || len > edu::kBufferSize - offset ||
            (ram & ~edu::kDmaMask) != 0) {
            return false;
        }
        const bool irq = mode_ != Irq::kNone;
        causes_ = 0;
        write64(edu::kDmaSrc, to_ram ? edu::kBuffer + offset : ram);
        write64(edu::kDmaDst, to_ram ? ram : edu::kBuffer + offset);
        write64(edu::kDmaCount, len);
        write64(edu::kDmaCmd,
                edu::kDmaStart | (to_ram ? edu::kDmaToRam : 0) | (irq ? edu::kDmaIrq : 0));
        if (irq) {
            return wait_irq(edu::kIrqDma) && (read64(edu::kDmaCmd) & edu::kDmaStart) == 0;
        }
        return wait_until([&] { return (read64(edu::kDmaCmd) & edu::kDmaStart) == 0; },
                          edu::kTimeoutMs, false);
    }

    std::uint32_t interrupts() const { return count_; }
    std::uint32_t spurious_interrupts() const { return spurious_; }
    const PciFunction& function() const { return fn_; }

  private:
    bool run(std::uint64_t reg_off, std::uint32_t busy, std::uint32_t irq_enable,
             std::uint32_t cause, std::uint32_t v, std::uint32_t* result) {
        const bool irq = mode_ != Irq::kNone;
        causes_ = 0;
        write(edu::kStatus, irq ? irq_enable : 0);
        write(reg_off, v);
        const bool done = irq ? wait_irq(cause)
                              : wait_until([&] { return (reg(edu::kStatus) & busy) == 0; },
                                           edu::kTimeoutMs, false);
        write(edu::kStatus, 0);
        if (!done || (reg(edu::kStatus) & busy) != 0) {
            return false;
        }
        *result = reg(reg_off);
        return true;
    }

    bool wait_irq(std::uint32_t bits) {
        return wait_until([&] { return (causes_ & bits) == bits; }, edu::kTimeoutMs, true);
    }

    std::uint32_t reg(std::uint64_t off) { return mmio_read32(bar_ + off); }
    void write(std::uint64_t off, std::uint32_t v) { mmio_write32(bar_ + off, v); }
    std::uint64_t read64(std::uint64_t off) { return mmio_read64(bar_ + off); }
    void write64(std::uint64_t off, std::uint64_t v) { mmio_write64(bar_ + off, v); }

    PciFunction fn_;
    std::uint64_t bar_ = 0;
    Irq mode_ = Irq::kNone;
    volatile std::uint32_t causes_ = 0;
    volatile std::uint32_t count_ = 0;
    volatile std::uint32_t spurious_ = 0;
};

}  // namespace vireo::guest
