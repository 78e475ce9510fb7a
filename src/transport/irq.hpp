// How a transport interrupts the guest. The VMM implements these: an IrqLine maps to
// KVM_IRQ_LINE (or an irqfd with a resample fd for level semantics), an MsiSink to
// KVM_SIGNAL_MSI (or a per-vector irqfd). Transports call them from vCPU threads and from queue
// worker threads, never while holding a lock the VMM could need.
#pragma once

#include <cstdint>

namespace vireo::transport {

// A wired interrupt: INTx of a PCI function, the SPI/GSI of a virtio-mmio device.
class IrqLine {
  public:
    virtual ~IrqLine() = default;
    // Level-triggered lines follow the device's interrupt status: high while any bit is set.
    virtual void set_level(bool high) = 0;
    // An edge: for VMMs that inject the line as a pulse (e.g. an irqfd without resample).
    virtual void trigger() {
        set_level(true);
        set_level(false);
    }
};

// Message-signalled interrupts (MSI, MSI-X): a 32-bit write of `data` to `addr`.
class MsiSink {
  public:
    virtual ~MsiSink() = default;
    virtual void send(std::uint64_t addr, std::uint32_t data) = 0;
    // The same message, naming the MSI-X table entry (or MSI vector) it came from, so a VMM can
    // keep one irqfd route per vector and reprogram it when the guest rewrites that entry.
    virtual void send_vector(std::uint16_t /*vector*/, std::uint64_t addr, std::uint32_t data) {
        send(addr, data);
    }
};

// A line nobody listens to (tests, a device wired to nothing).
class NullIrqLine final : public IrqLine {
  public:
    void set_level(bool) override {}
};

}  // namespace vireo::transport
