// virtio-mmio transport (§4.2): modern (version 2, §4.2.2) and legacy (version 1, §4.2.4).
// The slot's wired interrupt is level-triggered: the handler acknowledges InterruptStatus.
#pragma once

#include <cstdint>

#include "drivers/platform.hpp"
#include "drivers/virtio.hpp"

namespace vireo::guest {

namespace mmio {
// §4.2.2 register map.
inline constexpr std::uint64_t kMagicValue = 0x000;
inline constexpr std::uint64_t kVersion = 0x004;
inline constexpr std::uint64_t kDeviceId = 0x008;
inline constexpr std::uint64_t kVendorId = 0x00c;
inline constexpr std::uint64_t kDeviceFeatures = 0x010;
inline constexpr std::uint64_t kDeviceFeaturesSel = 0x014;
inline constexpr std::uint64_t kDriverFeatures = 0x020;
inline constexpr std::uint64_t kDriverFeaturesSel = 0x024;
inline constexpr std::uint64_t kGuestPageSize = 0x028;  // legacy
inline constexpr std::uint64_t kQueueSel = 0x030;
inline constexpr std::uint64_t kQueueNumMax = 0x034;
inline constexpr std::uint64_t kQueueNum = 0x038;
inline constexpr std::uint64_t kQueueAlign = 0x03c;  // legacy
inline constexpr std::uint64_t kQueuePfn = 0x040;    // legacy
inline constexpr std::uint64_t kQueueReady = 0x044;
inline constexpr std::uint64_t kQueueNotify = 0x050;
inline constexpr std::uint64_t kInterruptStatus = 0x060;
inline constexpr std::uint64_t kInterruptAck = 0x064;
inline constexpr std::uint64_t kStatus = 0x070;
inline constexpr std::uint64_t kQueueDescLow = 0x080;
inline constexpr std::uint64_t kQueueDescHigh = 0x084;
inline constexpr std::uint64_t kQueueDriverLow = 0x090;
inline constexpr std::uint64_t kQueueDriverHigh = 0x094;
inline constexpr std::uint64_t kQueueDeviceLow = 0x0a0;
inline constexpr std::uint64_t kQueueDeviceHigh = 0x0a4;
inline constexpr std::uint64_t kConfigGeneration = 0x0fc;
inline constexpr std::uint64_t kConfig = 0x100;

inline constexpr std::uint32_t kMagic = 0x74726976;  // "virt"
inline constexpr std::uint32_t kVersionLegacy = 1;
inline constexpr std::uint32_t kVersionModern = 2;
// Legacy ring geometry: the driver's pages are 4 KiB, and QueueAlign 4 makes the device place
// the used ring where driver::split_layout() does (§2.7.2 with the used ring's own alignment).
inline constexpr std::uint32_t kLegacyPageSize = 4096;
inline constexpr std::uint32_t kLegacyQueueAlign = 4;
}  // namespace mmio

class MmioTransport final : public Transport {
  public:
    constexpr MmioTransport() = default;

    // §4.2.2.2 / §4.2.3.1.1: MagicValue, Version 1 or 2, DeviceID 0 = placeholder slot.
    bool probe(std::uint64_t base, std::uint32_t gsi) {
        base_ = base;
        gsi_ = gsi;
        if (read(mmio::kMagicValue) != mmio::kMagic) {
            return false;
        }
        version_ = read(mmio::kVersion);
        if (version_ != mmio::kVersionLegacy && version_ != mmio::kVersionModern) {
            print("virtio-mmio@%lx: unknown version %u\n", base, version_);
            return false;
        }
        device_id_ = read(mmio::kDeviceId);
        return device_id_ != 0;
    }

    const char* name() const override {
        return version_ == mmio::kVersionLegacy ? "mmio1" : "mmio";
    }
    std::uint32_t device_id() const override { return device_id_; }
    bool legacy() const override { return version_ == mmio::kVersionLegacy; }
    std::uint64_t base() const { return base_; }

    std::uint8_t status() override { return static_cast<std::uint8_t>(read(mmio::kStatus)); }
    void set_status(std::uint8_t s) override { write(mmio::kStatus, s); }

    std::uint64_t device_features() override {
        write(mmio::kDeviceFeaturesSel, 0);
        std::uint64_t f = read(mmio::kDeviceFeatures);
        if (!legacy()) {
            write(mmio::kDeviceFeaturesSel, 1);
            f |= std::uint64_t{read(mmio::kDeviceFeatures)} << 32;
        }
        return f;
    }
    void set_driver_features(std::uint64_t f) override {
        write(mmio::kDriverFeaturesSel, 0);
        write(mmio::kDriverFeatures, static_cast<std::uint32_t>(f));
        if (!legacy()) {
            write(mmio::kDriverFeaturesSel, 1);
            write(mmio::kDriverFeatures, static_cast<std::uint32_t>(f >> 32));
        }
    }

    std::uint16_t queue_max_size(std::uint16_t q) override {
        write(mmio::kQueueSel, q);
        // §4.2.3.2: the queue must not be in use yet.
        if (read(legacy() ? mmio::kQueuePfn : mmio::kQueueReady) != 0) {
            return 0;
        }
        const std::uint32_t max = read(mmio::kQueueNumMax);
        return max > 0xFFFF ? 0xFFFF : static_cast<std::uint16_t>(max);
    }

    bool queue_enable(std::uint16_t q, const virtq::QueueConfig& c) override {
        write(mmio::kQueueSel, q);
        write(mmio::kQueueNum, c.size);
        if (legacy()) {
            // §4.2.4: one page-aligned block, described by its page number.
            if (c.desc_addr % mmio::kLegacyPageSize != 0 ||
                c.desc_addr / mmio::kLegacyPageSize > UINT32_MAX) {
                return false;
            }
            write(mmio::kGuestPageSize, mmio::kLegacyPageSize);
            write(mmio::kQueueAlign, mmio::kLegacyQueueAlign);
            write(mmio::kQueuePfn, static_cast<std::uint32_t>(c.desc_addr / mmio::kLegacyPageSize));
            return read(mmio::kQueuePfn) != 0;
        }
        write64(mmio::kQueueDescLow, c.desc_addr);
        write64(mmio::kQueueDriverLow, c.driver_addr);
        write64(mmio::kQueueDeviceLow, c.device_addr);
        write(mmio::kQueueReady, 1);
        return read(mmio::kQueueReady) == 1;
    }

    void notify(std::uint16_t q) override { write(mmio::kQueueNotify, q); }

    std::uint32_t config_generation() override {
        return legacy() ? 0 : read(mmio::kConfigGeneration);
    }
    std::uint32_t config_read(std::uint32_t off, int width) override {
        const std::uint64_t a = base_ + mmio::kConfig + off;
        switch (width) {
            case 1:
                return mmio_read8(a);
            case 2:
                return mmio_read16(a);
            default:
                return mmio_read32(a);
        }
    }

    bool irq_setup(bool /*intx*/) override {
        const int vector = alloc_vector();
        return vector >= 0 && platform::irq_route_gsi(gsi_, vector, true);
    }
    bool irq_ack() override {
        // §4.2.2: acknowledge exactly the causes read, which drops the level.
        const std::uint32_t cause = read(mmio::kInterruptStatus);
        if (cause != 0) {
            write(mmio::kInterruptAck, cause);
        }
        return cause != 0;
    }

  private:
    std::uint32_t read(std::uint64_t reg) { return mmio_read32(base_ + reg); }
    void write(std::uint64_t reg, std::uint32_t v) { mmio_write32(base_ + reg, v); }
    void write64(std::uint64_t low_reg, std::uint64_t v) {
        write(low_reg, static_cast<std::uint32_t>(v));
        write(low_reg + 4, static_cast<std::uint32_t>(v >> 32));
    }

    std::uint64_t base_ = 0;
    std::uint32_t gsi_ = 0;
    std::uint32_t version_ = 0;
    std::uint32_t device_id_ = 0;
};

}  // namespace vireo::guest
