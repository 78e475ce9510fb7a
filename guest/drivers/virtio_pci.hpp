// Modern virtio-pci transport (§4.1): vendor capabilities locate the common configuration,
// notification, ISR and device configuration structures inside the BARs the driver assigned;
// interrupts by MSI-X (config on table entry 0, queue q on entry 1 + q when the table has room,
// else entry 0) or by INTx (level-triggered, acknowledged by reading the ISR).
#pragma once

#include <cstdint>

#include "drivers/pci.hpp"
#include "drivers/platform.hpp"
#include "drivers/virtio.hpp"

namespace vireo::guest {

namespace vpci {
inline constexpr std::uint16_t kVendor = 0x1af4;
inline constexpr std::uint16_t kDeviceModernBase = 0x1040;  // §4.1.2.1: 0x1040 + device ID
inline constexpr std::uint16_t kDeviceModernLast = 0x107f;
inline constexpr std::uint16_t kDeviceTransitionalFirst = 0x1000;  // ID in the subsystem ID
inline constexpr std::uint16_t kDeviceTransitionalLast = 0x103f;

// §4.1.4 virtio_pci_cap.
inline constexpr std::uint8_t kCapCommon = 1;
inline constexpr std::uint8_t kCapNotify = 2;
inline constexpr std::uint8_t kCapIsr = 3;
inline constexpr std::uint8_t kCapDevice = 4;
inline constexpr std::uint16_t kCapCfgType = 3;
inline constexpr std::uint16_t kCapBar = 4;
inline constexpr std::uint16_t kCapOffset = 8;
inline constexpr std::uint16_t kCapLength = 12;
inline constexpr std::uint16_t kCapNotifyMultiplier = 16;

// §4.1.4.3 virtio_pci_common_cfg.
inline constexpr std::uint64_t kDfSelect = 0;
inline constexpr std::uint64_t kDf = 4;
inline constexpr std::uint64_t kGfSelect = 8;
inline constexpr std::uint64_t kGf = 12;
inline constexpr std::uint64_t kMsixConfig = 16;
inline constexpr std::uint64_t kNumQueues = 18;
inline constexpr std::uint64_t kStatus = 20;
inline constexpr std::uint64_t kConfigGeneration = 21;
inline constexpr std::uint64_t kQueueSelect = 22;
inline constexpr std::uint64_t kQueueSize = 24;
inline constexpr std::uint64_t kQueueMsixVector = 26;
inline constexpr std::uint64_t kQueueEnable = 28;
inline constexpr std::uint64_t kQueueNotifyOff = 30;
inline constexpr std::uint64_t kQueueDesc = 32;
inline constexpr std::uint64_t kQueueDriver = 40;
inline constexpr std::uint64_t kQueueDevice = 48;
inline constexpr std::uint64_t kCommonMinLength = 56;

inline constexpr std::uint16_t kNoVector = 0xFFFF;  // §4.1.5.1.2 VIRTIO_MSI_NO_VECTOR
inline constexpr int kMaxQueues = 8;
}  // namespace vpci

class PciTransport final : public Transport {
  public:
    constexpr PciTransport() = default;

    // Recognises a virtio function, assigns its BARs and locates the four structures.
    bool probe(const PciFunction& f, BarAllocator& window) {
        fn_ = f;
        if (fn_.vendor() != vpci::kVendor) {
            return false;
        }
        const std::uint16_t id = fn_.device();
        if (id >= vpci::kDeviceModernBase && id <= vpci::kDeviceModernLast) {
            device_id_ = id - vpci::kDeviceModernBase;
        } else if (id >= vpci::kDeviceTransitionalFirst && id <= vpci::kDeviceTransitionalLast) {
            device_id_ = fn_.read16(pci::kSubsystemId);
        } else {
            return false;
        }
        if (!fn_.assign_bars(window)) {
            return false;
        }
        // §4.1.4.1: use the first capability of each type the driver understands.
        for (std::uint8_t cap = fn_.find_cap(pci::kCapVendor); cap != 0;
             cap = fn_.find_cap(pci::kCapVendor, cap)) {
            const std::uint8_t type = fn_.read8(cap + vpci::kCapCfgType);
            const int bar = fn_.read8(cap + vpci::kCapBar);
            const std::uint32_t offset = fn_.read32(cap + vpci::kCapOffset);
            const std::uint32_t length = fn_.read32(cap + vpci::kCapLength);
            // The structure must lie inside an assigned BAR (a device could point anywhere).
            if (bar >= pci::kNumBars || fn_.bar(bar) == 0 ||
                std::uint64_t{offset} + length > fn_.bar_size(bar)) {
                continue;
            }
            const std::uint64_t addr = fn_.bar(bar) + offset;
            if (type == vpci::kCapCommon && common_ == 0 && length >= vpci::kCommonMinLength) {
                common_ = addr;
            } else if (type == vpci::kCapNotify && notify_ == 0) {
                notify_ = addr;
                notify_len_ = length;
                notify_mult_ = fn_.read32(cap + vpci::kCapNotifyMultiplier);
            } else if (type == vpci::kCapIsr && isr_ == 0 && length >= 1) {
                isr_ = addr;
            } else if (type == vpci::kCapDevice && device_ == 0) {
                device_ = addr;
                device_len_ = length;
            }
        }
        if (common_ == 0 || notify_ == 0 || isr_ == 0) {
            print("virtio-pci %02x: missing capabilities\n", fn_.dev());
            return false;
        }
        return true;
    }

    const char* name() const override { return "pci"; }
    std::uint32_t device_id() const override { return device_id_; }
    const PciFunction& function() const { return fn_; }

    std::uint8_t status() override { return mmio_read8(common_ + vpci::kStatus); }
    void set_status(std::uint8_t s) override { mmio_write8(common_ + vpci::kStatus, s); }

    std::uint64_t device_features() override {
        mmio_write32(common_ + vpci::kDfSelect, 0);
        std::uint64_t f = mmio_read32(common_ + vpci::kDf);
        mmio_write32(common_ + vpci::kDfSelect, 1);
        return f | (std::uint64_t{mmio_read32(common_ + vpci::kDf)} << 32);
    }
    void set_driver_features(std::uint64_t f) override {
        mmio_write32(common_ + vpci::kGfSelect, 0);
        mmio_write32(common_ + vpci::kGf, static_cast<std::uint32_t>(f));
        mmio_write32(common_ + vpci::kGfSelect, 1);
        mmio_write32(common_ + vpci::kGf, static_cast<std::uint32_t>(f >> 32));
    }

    std::uint16_t queue_max_size(std::uint16_t q) override {
        if (q >= mmio_read16(common_ + vpci::kNumQueues)) {
            return 0;
        }
        mmio_write16(common_ + vpci::kQueueSelect, q);
        return mmio_read16(common_ + vpci::kQueueSize);
    }

    bool queue_enable(std::uint16_t q, const virtq::QueueConfig& c) override {
        if (q >= vpci::kMaxQueues) {
            return false;
        }
        mmio_write16(common_ + vpci::kQueueSelect, q);
        mmio_write16(common_ + vpci::kQueueSize, c.size);
        // §4.1.5.1.2: map the queue to a vector and read back; NO_VECTOR means refused.
        const std::uint16_t vector =
            msix_entries_ == 0 ? vpci::kNoVector
                               : static_cast<std::uint16_t>(q + 1u < msix_entries_ ? q + 1u : 0u);
        mmio_write16(common_ + vpci::kQueueMsixVector, vector);
        if (mmio_read16(common_ + vpci::kQueueMsixVector) != vector) {
            print("virtio-pci: queue %u vector %u refused\n", q, vector);
            return false;
        }
        write64(vpci::kQueueDesc, c.desc_addr);
        write64(vpci::kQueueDriver, c.driver_addr);
        write64(vpci::kQueueDevice, c.device_addr);
        // §4.1.4.4: the queue's doorbell is at cap.offset + queue_notify_off × multiplier,
        // which must lie inside the notification structure.
        const std::uint64_t off =
            std::uint64_t{mmio_read16(common_ + vpci::kQueueNotifyOff)} * notify_mult_;
        if (off + 2 > notify_len_) {
            print("virtio-pci: queue %u doorbell outside the notify structure\n", q);
            return false;
        }
        doorbell_[q] = notify_ + off;
        mmio_write16(common_ + vpci::kQueueEnable, 1);
        return mmio_read16(common_ + vpci::kQueueEnable) == 1;
    }

    void notify(std::uint16_t q) override {
        if (q < vpci::kMaxQueues && doorbell_[q] != 0) {
            mmio_write16(doorbell_[q], q);  // §4.1.5.2: the queue index, 16 bits
        }
    }

    std::uint32_t config_generation() override {
        return mmio_read8(common_ + vpci::kConfigGeneration);
    }
    std::uint32_t config_read(std::uint32_t off, int width) override {
        if (device_ == 0 || off + static_cast<std::uint32_t>(width) > device_len_) {
            return 0;
        }
        const std::uint64_t a = device_ + off;
        switch (width) {
            case 1:
                return mmio_read8(a);
            case 2:
                return mmio_read16(a);
            default:
                return mmio_read32(a);
        }
    }

    bool irq_setup(bool intx) override {
        const int vector = alloc_vector();
        if (vector < 0) {
            return false;
        }
        if (intx) {
            // PCI INTx is level-triggered and shared: the ISR read acknowledges it.
            intx_ = true;
            fn_.set_intx_disabled(false);
            const std::uint8_t pin = fn_.read8(pci::kInterruptPin);
            return pin != 0 &&
                   platform::irq_route_gsi(platform::pci_intx_gsi(fn_.dev(), pin), vector, true);
        }
        msix_entries_ = fn_.enable_msix(vector);
        if (msix_entries_ == 0) {
            print("virtio-pci: no usable MSI-X\n");
            return false;
        }
        mmio_write16(common_ + vpci::kMsixConfig, 0);
        return mmio_read16(common_ + vpci::kMsixConfig) == 0;
    }

    bool irq_ack() override {
        if (intx_) {
            return mmio_read8(isr_) != 0;  // §4.1.4.5: reading the ISR clears it, drops INTx
        }
        return true;  // MSI-X: an edge per event, nothing to acknowledge
    }

  private:
    void write64(std::uint64_t reg, std::uint64_t v) {
        mmio_write32(common_ + reg, static_cast<std::uint32_t>(v));
        mmio_write32(common_ + reg + 4, static_cast<std::uint32_t>(v >> 32));
    }

    PciFunction fn_;
    std::uint32_t device_id_ = 0;
    std::uint64_t common_ = 0;
    std::uint64_t notify_ = 0;
    std::uint32_t notify_len_ = 0;
    std::uint32_t notify_mult_ = 0;
    std::uint64_t isr_ = 0;
    std::uint64_t device_ = 0;
    std::uint32_t device_len_ = 0;
    std::uint16_t msix_entries_ = 0;
    bool intx_ = false;
    std::uint64_t doorbell_[vpci::kMaxQueues] = {};
};

}  // namespace vireo::guest
