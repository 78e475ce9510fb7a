// virtio over PCI, modern interface only (§4.1): vendor 0x1AF4, device 0x1040 + device ID,
// revision 1, a vendor capability per structure (§4.1.4) and MSI-X (§4.1.5.1.2).
//
// BAR 0 (64-bit memory, kBarSize) holds every structure:
//   0x0000 common configuration (§4.1.4.3)      0x3000 notifications, 4 bytes per queue
//   0x1000 ISR status, read to clear (§4.1.4.5)  0x4000 MSI-X table
//   0x2000 device-specific configuration         0x5000 MSI-X pending bit array
// plus a VIRTIO_PCI_CAP_PCI_CFG window in configuration space (§4.1.4.9).
//
// Interrupts: with MSI-X enabled, each queue's vector (queue_msix_vector) and the
// configuration vector go to the MsiSink; without it, the ISR bits and INTx (PciDevice).
// Notifications: a write at 0x3000 + 4 × queue signals notify_fd(queue) — register it as a
// KVM ioeventfd at bar_address(0) + notify_offset(queue) once the guest placed the BAR.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>

#include "spec/virtio_pci.hpp"
#include "transport/msix.hpp"
#include "transport/pci_device.hpp"
#include "transport/virtio_core.hpp"

namespace vireo::transport {

// IDs, capabilities and the common configuration layout are the spec's (spec/virtio_pci.hpp).
inline constexpr std::uint8_t kVirtioPciRevision = 1;  // modern-only device (§4.1.2.1)

class VirtioPci final : public PciDevice, private VirtioSignals {
  public:
    static constexpr int kBar = 0;
    static constexpr std::uint64_t kBarSize = 0x8000;
    static constexpr std::uint64_t kCommonOffset = 0x0000;
    static constexpr std::uint64_t kIsrOffset = 0x1000;
    static constexpr std::uint64_t kDeviceOffset = 0x2000;
    static constexpr std::uint64_t kNotifyOffset = 0x3000;
    static constexpr std::uint64_t kMsixTableOffset = 0x4000;
    static constexpr std::uint64_t kMsixPbaOffset = 0x5000;
    static constexpr std::uint64_t kRegionSize = 0x1000;
    static constexpr std::uint32_t kNotifyMultiplier = 4;

    VirtioPci(dev::VirtioDevice& device, const GuestMemory& mem, MsiSink& msi);
    ~VirtioPci() override;

    void bar_read(int bar, std::uint64_t offset, std::span<std::uint8_t> data) override;
    void bar_write(int bar, std::uint64_t offset, std::span<const std::uint8_t> data) override;

    int notify_fd(std::uint16_t queue) const { return core_.notify_fd(queue); }
    static constexpr std::uint64_t notify_offset(std::uint16_t queue) {
        return kNotifyOffset + std::uint64_t{queue} * kNotifyMultiplier;
    }
    void config_changed();
    const Msix& msix() const { return msix_; }
    std::uint8_t status() const;

  private:
    bool config_read_hook(std::uint32_t offset, std::span<std::uint8_t> data) override;
    void config_written(std::uint32_t offset, std::size_t len) override;

    void used_buffer(std::uint16_t queue) override;
    void config_change() override;
    void interrupt(std::uint16_t vector, std::uint8_t isr_bit);

    void common_read(std::uint64_t offset, std::span<std::uint8_t> data);
    void common_write(std::uint64_t offset, std::span<const std::uint8_t> data);
    std::uint16_t checked_vector(std::uint16_t v) const;
    void reset_vectors();

    mutable std::mutex mu_;  // register state; queue workers never take it
    VirtioCore core_;
    Msix msix_;
    std::uint8_t msix_cap_ = 0;
    std::uint8_t pci_cfg_cap_ = 0;
    std::uint32_t df_select_ = 0;
    std::uint32_t gf_select_ = 0;
    std::uint16_t queue_select_ = 0;

    // Read by queue workers without mu_.
    std::atomic<std::uint16_t> config_vector_{kNoVector};
    std::unique_ptr<std::atomic<std::uint16_t>[]> queue_vector_;

    std::mutex irq_mu_;  // ISR and the INTx level, from any thread
    std::uint8_t isr_ = 0;
};

}  // namespace vireo::transport
