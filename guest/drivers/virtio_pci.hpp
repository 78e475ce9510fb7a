// Modern virtio-pci transport (§4.1): vendor capabilities locate the common configuration,
// notification, ISR and device configuration structures inside the BARs the driver assigned;
// interrupts by MSI-X (config on table entry 0, queue q on entry 1 + q when the table has room,
// else entry 0) or by INTx (level-triggered, acknowledged by reading the ISR).
#pragma once

#include <cstdint>

#include "drivers/pci.hpp"
#include "drivers/platform.hpp"
#include "drivers/virtio.hpp"
#include "spec/virtio_pci.hpp"

namespace vireo::guest {

class PciTransport final : public Transport {
  public:
    constexpr PciTransport() = default;

    // Recognises a virtio function, assigns its BARs and locates the four structures.
    bool probe(const PciFunction& f, BarAllocator& window) {
        fn_ = f;
        if (fn_.vendor() != kVirtioPciVendor) {
            return false;
        }
        const std::uint16_t id = fn_.device();
        if (id >= kVirtioPciDeviceBase && id <= kVirtioPciDeviceLast) {
            device_id_ = id - kVirtioPciDeviceBase;
        } else if (id >= kVirtioPciTransitionalFirst && id <= kVirtioPciTransitionalLast) {
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
            const std::uint8_t type = fn_.read8(cap + kVirtioCapType);
            const int bar = fn_.read8(cap + kVirtioCapBar);
            const std::uint32_t offset = fn_.read32(cap + kVirtioCapOffset);
            const std::uint32_t length = fn_.read32(cap + kVirtioCapLength);
            // The structure must lie inside an assigned BAR (a device could point anywhere).
            if (bar >= pci::kNumBars || fn_.bar(bar) == 0 ||
                std::uint64_t{offset} + length > fn_.bar_size(bar)) {
                continue;
            }
            const std::uint64_t addr = fn_.bar(bar) + offset;
            // The common structure must hold at least virtio 1.0's fields (up to queue_device).
            if (type == kVirtioPciCapCommon && common_ == 0 && length >= kCommonQueueNotifyData) {
                common_ = addr;
            } else if (type == kVirtioPciCapNotify && notify_ == 0) {
                notify_ = addr;
                notify_len_ = length;
                notify_mult_ = fn_.read32(cap + kVirtioCapNotifyMultiplier);
            } else if (type == kVirtioPciCapIsr && isr_ == 0 && length >= 1) {
                isr_ = addr;
            } else if (type == kVirtioPciCapDevice && device_ == 0) {
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

    std::uint8_t status() override { return mmio_read8(common_ + kCommonStatus); }
    void set_status(std::uint8_t s) override { mmio_write8(common_ + kCommonStatus, s); }

    std::uint64_t device_features() override {
        mmio_write32(common_ + kCommonDfSelect, 0);
        std::uint64_t f = mmio_read32(common_ + kCommonDf);
        mmio_write32(common_ + kCommonDfSelect, 1);
        return f | (std::uint64_t{mmio_read32(common_ + kCommonDf)} << 32);
    }
    void set_driver_features(std::uint64_t f) override {
        mmio_write32(common_ + kCommonGfSelect, 0);
        mmio_write32(common_ + kCommonGf, static_cast<std::uint32_t>(f));
        mmio_write32(common_ + kCommonGfSelect, 1);
        mmio_write32(common_ + kCommonGf, static_cast<std::uint32_t>(f >> 32));
    }

    std::uint16_t queue_max_size(std::uint16_t q) override {
        if (q >= mmio_read16(common_ + kCommonNumQueues)) {
            return 0;
        }
        mmio_write16(common_ + kCommonQueueSelect, q);
        return mmio_read16(common_ + kCommonQueueSize);
    }

    bool queue_enable(std::uint16_t q, const virtq::QueueConfig& c) override {
        if (q >= kMaxQueues) {
            return false;
        }
        mmio_write16(common_ + kCommonQueueSelect, q);
        mmio_write16(common_ + kCommonQueueSize, c.size);
        // §4.1.5.1.2: map the queue to a vector and read back; NO_VECTOR means refused.
        const std::uint16_t vector =
            msix_entries_ == 0 ? kNoVector
                               : static_cast<std::uint16_t>(q + 1u < msix_entries_ ? q + 1u : 0u);
        mmio_write16(common_ + kCommonQueueMsixVector, vector);
        if (mmio_read16(common_ + kCommonQueueMsixVector) != vector) {
            print("virtio-pci: queue %u vector %u refused\n", q, vector);
            return false;
        }
        write_halves(common_ + kCommonQueueDesc, c.desc_addr);
        write_halves(common_ + kCommonQueueDriver, c.driver_addr);
        write_halves(common_ + kCommonQueueDevice, c.device_addr);
        // §4.1.4.4: the queue's doorbell is at cap.offset + queue_notify_off × multiplier,
        // which must lie inside the notification structure.
        const std::uint64_t off =
            std::uint64_t{mmio_read16(common_ + kCommonQueueNotifyOff)} * notify_mult_;
        if (off + 2 > notify_len_) {
            print("virtio-pci: queue %u doorbell outside the notify structure\n", q);
            return false;
        }
        doorbell_[q] = notify_ + off;
        mmio_write16(common_ + kCommonQueueEnable, 1);
        return mmio_read16(common_ + kCommonQueueEnable) == 1;
    }

    void notify(std::uint16_t q) override {
        if (q < kMaxQueues && doorbell_[q] != 0) {
            mmio_write16(doorbell_[q], q);  // §4.1.5.2: the queue index, 16 bits
        }
    }

    std::uint32_t config_generation() override {
        return mmio_read8(common_ + kCommonConfigGeneration);
    }
    std::uint32_t config_read(std::uint32_t off, int width) override {
        if (device_ == 0 || off + static_cast<std::uint32_t>(width) > device_len_) {
            return 0;
        }
        return config_field(device_ + off, width);
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
        mmio_write16(common_ + kCommonMsixConfig, 0);
        return mmio_read16(common_ + kCommonMsixConfig) == 0;
    }

    bool irq_ack() override {
        if (intx_) {
            return mmio_read8(isr_) != 0;  // §4.1.4.5: reading the ISR clears it, drops INTx
        }
        return true;  // MSI-X: an edge per event, nothing to acknowledge
    }

  private:
    static constexpr int kMaxQueues = 8;

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
    std::uint64_t doorbell_[kMaxQueues] = {};
};

}  // namespace vireo::guest
