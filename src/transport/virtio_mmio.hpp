// virtio over MMIO (§4.2): version 2 (§4.2.2) and the legacy version 1 (§4.2.4).
//
// One BusDevice of kMmioSize bytes: control registers below 0x100, device configuration above.
// Interrupts leave through an IrqLine, level-triggered: high while InterruptStatus is non-zero.
// QueueNotify writes signal the queue's notify eventfd (notify_fd()); a VMM that registers that
// eventfd as a KVM ioeventfd on base + kMmioQueueNotify with datamatch = queue index makes the
// kick bypass user space entirely.
#pragma once

#include <cstdint>
#include <mutex>
#include <vector>

#include "spec/virtio_mmio.hpp"
#include "transport/bus.hpp"
#include "transport/irq.hpp"
#include "transport/virtio_core.hpp"

namespace vireo::transport {

// The register block is the spec's (spec/virtio_mmio.hpp); its size and vendor ID are ours.
using namespace spec;

inline constexpr std::uint64_t kMmioSize = 0x1000;        // one page per device, config included
inline constexpr std::uint32_t kMmioVendor = 0x4f524956;  // VendorID: "VIRO"

class VirtioMmio final : public BusDevice, private VirtioSignals {
  public:
    VirtioMmio(dev::VirtioDevice& device, const GuestMemory& mem, IrqLine& irq,
               MmioVersion version = MmioVersion::kModern);
    ~VirtioMmio() override;

    void read(std::uint64_t offset, std::span<std::uint8_t> data) override;
    void write(std::uint64_t offset, std::span<const std::uint8_t> data) override;

    // The eventfd a QueueNotify write of `queue` signals (for KVM_IOEVENTFD); -1 if none.
    int notify_fd(std::uint16_t queue) const { return core_.notify_fd(queue); }
    // The device owner changed the configuration: new generation, config-change interrupt.
    void config_changed();
    std::uint32_t interrupt_status() const;
    std::uint8_t status() const;

  private:
    void used_buffer(std::uint16_t queue) override;
    void config_change() override;
    void raise(std::uint32_t bits);

    std::uint32_t read_reg(std::uint64_t offset);
    void write_reg(std::uint64_t offset, std::uint32_t value);
    void write_legacy_pfn(std::uint32_t pfn);
    void write_addr(std::uint64_t QueueRegs::*field, bool high, std::uint32_t value,
                    const char* name);

    const MmioVersion version_;
    IrqLine& irq_;

    mutable std::mutex mu_;  // register state; queue workers never take it
    VirtioCore core_;
    std::uint32_t device_features_sel_ = 0;
    std::uint32_t driver_features_sel_ = 0;
    std::uint16_t queue_sel_ = 0;
    std::uint32_t shm_sel_ = 0;
    // Legacy ring placement (§4.2.4).
    std::uint32_t guest_page_size_ = 0;
    std::vector<std::uint32_t> queue_align_;
    std::vector<std::uint32_t> queue_pfn_;

    mutable std::mutex irq_mu_;  // interrupt status and the line level, from any thread
    std::uint32_t interrupt_status_ = 0;
};

}  // namespace vireo::transport
