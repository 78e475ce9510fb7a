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

#include "transport/bus.hpp"
#include "transport/irq.hpp"
#include "transport/virtio_core.hpp"

namespace vireo::transport {

// Register offsets (§4.2.2, legacy §4.2.4).
inline constexpr std::uint64_t kMmioMagicValue = 0x000;
inline constexpr std::uint64_t kMmioVersion = 0x004;
inline constexpr std::uint64_t kMmioDeviceId = 0x008;
inline constexpr std::uint64_t kMmioVendorId = 0x00c;
inline constexpr std::uint64_t kMmioDeviceFeatures = 0x010;
inline constexpr std::uint64_t kMmioDeviceFeaturesSel = 0x014;
inline constexpr std::uint64_t kMmioDriverFeatures = 0x020;
inline constexpr std::uint64_t kMmioDriverFeaturesSel = 0x024;
inline constexpr std::uint64_t kMmioGuestPageSize = 0x028;  // legacy
inline constexpr std::uint64_t kMmioQueueSel = 0x030;
inline constexpr std::uint64_t kMmioQueueNumMax = 0x034;
inline constexpr std::uint64_t kMmioQueueNum = 0x038;
inline constexpr std::uint64_t kMmioQueueAlign = 0x03c;  // legacy
inline constexpr std::uint64_t kMmioQueuePfn = 0x040;    // legacy
inline constexpr std::uint64_t kMmioQueueReady = 0x044;
inline constexpr std::uint64_t kMmioQueueNotify = 0x050;
inline constexpr std::uint64_t kMmioInterruptStatus = 0x060;
inline constexpr std::uint64_t kMmioInterruptAck = 0x064;
inline constexpr std::uint64_t kMmioStatus = 0x070;
inline constexpr std::uint64_t kMmioQueueDescLow = 0x080;
inline constexpr std::uint64_t kMmioQueueDescHigh = 0x084;
inline constexpr std::uint64_t kMmioQueueDriverLow = 0x090;
inline constexpr std::uint64_t kMmioQueueDriverHigh = 0x094;
inline constexpr std::uint64_t kMmioQueueDeviceLow = 0x0a0;
inline constexpr std::uint64_t kMmioQueueDeviceHigh = 0x0a4;
inline constexpr std::uint64_t kMmioShmSel = 0x0ac;
inline constexpr std::uint64_t kMmioShmLenLow = 0x0b0;
inline constexpr std::uint64_t kMmioShmLenHigh = 0x0b4;
inline constexpr std::uint64_t kMmioShmBaseLow = 0x0b8;
inline constexpr std::uint64_t kMmioShmBaseHigh = 0x0bc;
inline constexpr std::uint64_t kMmioQueueReset = 0x0c0;
inline constexpr std::uint64_t kMmioConfigGeneration = 0x0fc;
inline constexpr std::uint64_t kMmioConfig = 0x100;
inline constexpr std::uint64_t kMmioSize = 0x1000;  // one page per device, config included

inline constexpr std::uint32_t kMmioMagic = 0x74726976;   // "virt"
inline constexpr std::uint32_t kMmioVendor = 0x4f524956;  // "VIRO"

inline constexpr std::uint32_t kMmioIntUsedBuffer = 1;    // InterruptStatus bit 0
inline constexpr std::uint32_t kMmioIntConfigChange = 2;  // InterruptStatus bit 1

enum class MmioVersion : std::uint32_t { kLegacy = 1, kModern = 2 };

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
