// virtio-mmio transport (§4.2): modern (version 2, §4.2.2) and legacy (version 1, §4.2.4).
// The slot's wired interrupt is level-triggered: the handler acknowledges InterruptStatus.
#pragma once

#include <cstdint>

#include "drivers/platform.hpp"
#include "drivers/virtio.hpp"
#include "spec/virtio_mmio.hpp"

namespace vireo::guest {

class MmioTransport final : public Transport {
  public:
    constexpr MmioTransport() = default;

    // §4.2.2.2 / §4.2.3.1.1: MagicValue, Version 1 or 2, DeviceID 0 = placeholder slot.
    bool probe(std::uint64_t base, std::uint32_t gsi) {
        base_ = base;
        gsi_ = gsi;
        if (read(kMmioMagicValue) != kMmioMagic) {
            return false;
        }
        const std::uint32_t version = read(kMmioVersion);
        if (version != static_cast<std::uint32_t>(MmioVersion::kLegacy) &&
            version != static_cast<std::uint32_t>(MmioVersion::kModern)) {
            print("virtio-mmio@%lx: unknown version %u\n", base, version);
            return false;
        }
        version_ = static_cast<MmioVersion>(version);
        device_id_ = read(kMmioDeviceId);
        return device_id_ != 0;
    }

    const char* name() const override {
        return version_ == MmioVersion::kLegacy ? "mmio1" : "mmio";
    }
    std::uint32_t device_id() const override { return device_id_; }
    bool legacy() const override { return version_ == MmioVersion::kLegacy; }
    std::uint64_t base() const { return base_; }

    std::uint8_t status() override { return static_cast<std::uint8_t>(read(kMmioStatus)); }
    void set_status(std::uint8_t s) override { write(kMmioStatus, s); }

    std::uint64_t device_features() override {
        write(kMmioDeviceFeaturesSel, 0);
        std::uint64_t f = read(kMmioDeviceFeatures);
        if (!legacy()) {
            write(kMmioDeviceFeaturesSel, 1);
            f |= std::uint64_t{read(kMmioDeviceFeatures)} << 32;
        }
        return f;
    }
    void set_driver_features(std::uint64_t f) override {
        write(kMmioDriverFeaturesSel, 0);
        write(kMmioDriverFeatures, static_cast<std::uint32_t>(f));
        if (!legacy()) {
            write(kMmioDriverFeaturesSel, 1);
            write(kMmioDriverFeatures, static_cast<std::uint32_t>(f >> 32));
        }
    }

    std::uint16_t queue_max_size(std::uint16_t q) override {
        write(kMmioQueueSel, q);
        // §4.2.3.2: the queue must not be in use yet.
        if (read(legacy() ? kMmioQueuePfn : kMmioQueueReady) != 0) {
            return 0;
        }
        const std::uint32_t max = read(kMmioQueueNumMax);
        return max > 0xFFFF ? 0xFFFF : static_cast<std::uint16_t>(max);
    }

    bool queue_enable(std::uint16_t q, const virtq::QueueConfig& c) override {
        write(kMmioQueueSel, q);
        write(kMmioQueueNum, c.size);
        if (legacy()) {
            // §4.2.4: one page-aligned block, described by its page number.
            if (c.desc_addr % kLegacyPageSize != 0 || c.desc_addr / kLegacyPageSize > UINT32_MAX) {
                return false;
            }
            write(kMmioGuestPageSize, kLegacyPageSize);
            write(kMmioQueueAlign, kLegacyQueueAlign);
            write(kMmioQueuePfn, static_cast<std::uint32_t>(c.desc_addr / kLegacyPageSize));
            return read(kMmioQueuePfn) != 0;
        }
        write_halves(base_ + kMmioQueueDescLow, c.desc_addr);
        write_halves(base_ + kMmioQueueDriverLow, c.driver_addr);
        write_halves(base_ + kMmioQueueDeviceLow, c.device_addr);
        write(kMmioQueueReady, 1);
        return read(kMmioQueueReady) == 1;
    }

    void notify(std::uint16_t q) override { write(kMmioQueueNotify, q); }

    std::uint32_t config_generation() override {
        return legacy() ? 0 : read(kMmioConfigGeneration);
    }
    std::uint32_t config_read(std::uint32_t off, int width) override {
        return config_field(base_ + kMmioConfig + off, width);
    }

    bool irq_setup(bool /*intx*/) override {
        const int vector = alloc_vector();
        return vector >= 0 && platform::irq_route_gsi(gsi_, vector, true);
    }
    bool irq_ack() override {
        // §4.2.2: acknowledge exactly the causes read, which drops the level.
        const std::uint32_t cause = read(kMmioInterruptStatus);
        if (cause != 0) {
            write(kMmioInterruptAck, cause);
        }
        return cause != 0;
    }

  private:
    // Legacy ring geometry: the driver's pages are 4 KiB, and QueueAlign 4 makes the device place
    // the used ring where driver::split_layout() does (§2.7.2 with the used ring's own alignment).
    static constexpr std::uint32_t kLegacyPageSize = 4096;
    static constexpr std::uint32_t kLegacyQueueAlign = 4;

    std::uint32_t read(std::uint64_t reg) { return mmio_read32(base_ + reg); }
    void write(std::uint64_t reg, std::uint32_t v) { mmio_write32(base_ + reg, v); }

    std::uint64_t base_ = 0;
    std::uint32_t gsi_ = 0;
    MmioVersion version_ = MmioVersion::kModern;
    std::uint32_t device_id_ = 0;
};

}  // namespace vireo::guest
