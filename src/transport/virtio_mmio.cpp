#include "transport/virtio_mmio.hpp"

#include <bit>

#include "base/log.hpp"
#include "transport/reg.hpp"
#include "virtq/features.hpp"
#include "virtq/ring_layout.hpp"

namespace vireo::transport {

namespace {
constexpr std::uint32_t kLegacyDefaultAlign = 4096;  // §4.2.4: QueueAlign before it is written
}

VirtioMmio::VirtioMmio(dev::VirtioDevice& device, const GuestMemory& mem, IrqLine& irq,
                       MmioVersion version)
    : version_(version),
      irq_(irq),
      core_(device, mem, *this, version == MmioVersion::kLegacy),
      queue_align_(core_.num_queues(), kLegacyDefaultAlign),
      queue_pfn_(core_.num_queues(), 0) {}

VirtioMmio::~VirtioMmio() {
    // Queue workers signal through this object: stop them while it is whole.
    const std::lock_guard lock(mu_);
    core_.write_status(0);
}

void VirtioMmio::read(std::uint64_t offset, std::span<std::uint8_t> data) {
    if (offset >= kMmioConfig) {
        // §4.2.2.2: device configuration is read with accesses of the field's width (1, 2, 4),
        // naturally aligned; 64-bit fields as two 32-bit halves.
        const std::lock_guard lock(mu_);
        if (data.size() > 4 || offset % data.size() != 0) {
            log::guest_warn("mmio: config read of {} bytes at {:#x} refused", data.size(), offset);
            store_le(data, 0);
            return;
        }
        core_.read_config(offset - kMmioConfig, data);
        return;
    }
    // §4.2.2.1: control registers are 32 bits wide and read only with aligned 32-bit accesses.
    if (!is_access(offset, data.size(), 4)) {
        log::guest_warn("mmio: register read of {} bytes at {:#x} refused", data.size(), offset);
        store_le(data, 0);
        return;
    }
    store_le(data, read_reg(offset));
}

void VirtioMmio::write(std::uint64_t offset, std::span<const std::uint8_t> data) {
    if (offset >= kMmioConfig) {
        const std::lock_guard lock(mu_);
        if (data.size() > 4 || offset % data.size() != 0) {
            log::guest_warn("mmio: config write of {} bytes at {:#x} refused", data.size(), offset);
            return;
        }
        core_.write_config(offset - kMmioConfig, data);
        return;
    }
    if (!is_access(offset, data.size(), 4)) {
        log::guest_warn("mmio: register write of {} bytes at {:#x} refused", data.size(), offset);
        return;
    }
    const auto value = static_cast<std::uint32_t>(load_le(data));
    if (offset == kMmioQueueNotify) {
        // The hot path: no register lock, just wake the queue's worker (an out-of-range index
        // is ignored by the core).
        core_.notify(static_cast<std::uint16_t>(value > 0xffff ? 0xffff : value));
        return;
    }
    write_reg(offset, value);
}

std::uint32_t VirtioMmio::read_reg(std::uint64_t offset) {
    const bool legacy = version_ == MmioVersion::kLegacy;
    if (offset == kMmioInterruptStatus) {
        return interrupt_status();
    }
    const std::lock_guard lock(mu_);
    const QueueRegs* q = core_.queue(queue_sel_);  // null: QueueSel out of range, reads 0
    switch (offset) {
        case kMmioMagicValue:
            return kMmioMagic;
        case kMmioVersion:
            return static_cast<std::uint32_t>(version_);
        case kMmioDeviceId:
            return core_.device().device_id();
        case kMmioVendorId:
            return kMmioVendor;
        case kMmioDeviceFeatures:
            return core_.device_features_word(device_features_sel_);
        case kMmioQueueNumMax:
            return q != nullptr ? core_.max_queue_size() : 0;
        case kMmioStatus:
            return core_.status();
        default:
            break;
    }
    if (legacy) {
        switch (offset) {
            case kMmioQueuePfn:
                return q != nullptr ? queue_pfn_[queue_sel_] : 0;
            default:
                return 0;
        }
    }
    switch (offset) {
        case kMmioQueueReady:
            return q != nullptr && q->ready ? 1 : 0;
        case kMmioQueueReset:
            return 0;  // resets complete synchronously (§4.2.2: reads 1 while in progress)
        case kMmioConfigGeneration:
            return core_.config_generation();
        case kMmioShmLenLow:
        case kMmioShmLenHigh:
        case kMmioShmBaseLow:
        case kMmioShmBaseHigh:
            return 0xffff'ffff;  // §4.2.2: no shared memory region: length (and base) all ones
        default:
            return 0;  // write-only or reserved
    }
}

void VirtioMmio::write_addr(std::uint64_t QueueRegs::*field, bool high, std::uint32_t value,
                            const char* name) {
    if (QueueRegs* r = core_.writable_queue(queue_sel_, name)) {
        const unsigned shift = high ? 32 : 0;
        r->*field =
            (r->*field & ~(std::uint64_t{0xffff'ffff} << shift)) | (std::uint64_t{value} << shift);
    }
}

void VirtioMmio::write_reg(std::uint64_t offset, std::uint32_t value) {
    const bool legacy = version_ == MmioVersion::kLegacy;
    if (offset == kMmioInterruptAck) {
        const std::lock_guard lock(irq_mu_);
        interrupt_status_ &= ~value;
        irq_.set_level(interrupt_status_ != 0);
        return;
    }
    const std::lock_guard lock(mu_);
    switch (offset) {
        case kMmioDeviceFeaturesSel:
            device_features_sel_ = value;
            return;
        case kMmioDriverFeaturesSel:
            driver_features_sel_ = value;
            return;
        case kMmioDriverFeatures:
            core_.write_driver_features_word(driver_features_sel_, value);
            return;
        case kMmioQueueSel:
            // Kept as written (clamped): an out-of-range selection reads 0 and writes nothing.
            queue_sel_ = static_cast<std::uint16_t>(value > 0xffff ? 0xffff : value);
            return;
        case kMmioQueueNum:
            if (QueueRegs* r = core_.writable_queue(queue_sel_, "QueueNum")) {
                // Validated when the queue becomes ready; an oversized value refuses it then.
                r->size = static_cast<std::uint16_t>(value > 0xffff ? 0 : value);
            }
            return;
        case kMmioStatus: {
            const StatusChange c = core_.write_status(static_cast<std::uint8_t>(value));
            if (value > 0xff) {
                log::guest_warn("mmio: status {:#x} has bits above 8", value);
            }
            if (c == StatusChange::kReset) {
                // GuestPageSize survives a reset (as in QEMU): Linux writes it once at probe,
                // before register_virtio_device() resets the device (§4.2.4, legacy interface).
                std::fill(queue_align_.begin(), queue_align_.end(), kLegacyDefaultAlign);
                std::fill(queue_pfn_.begin(), queue_pfn_.end(), 0);
                const std::lock_guard ilock(irq_mu_);
                interrupt_status_ = 0;
                irq_.set_level(false);
            }
            return;
        }
        default:
            break;
    }
    if (legacy) {
        switch (offset) {
            case kMmioGuestPageSize:
                guest_page_size_ = value;
                return;
            case kMmioQueueAlign:
                if (core_.writable_queue(queue_sel_, "QueueAlign") != nullptr) {
                    queue_align_[queue_sel_] = value;
                }
                return;
            case kMmioQueuePfn:
                write_legacy_pfn(value);
                return;
            default:
                log::guest_warn("mmio v1: write to {:#x} ignored", offset);
                return;
        }
    }
    switch (offset) {
        case kMmioQueueReady:
            if (value == 1) {
                core_.set_queue_ready(queue_sel_, true);
            } else if (value == 0) {
                core_.set_queue_ready(queue_sel_, false);
            }
            return;
        case kMmioQueueDescLow:
        case kMmioQueueDescHigh:
            write_addr(&QueueRegs::desc, offset == kMmioQueueDescHigh, value, "QueueDesc");
            return;
        case kMmioQueueDriverLow:
        case kMmioQueueDriverHigh:
            write_addr(&QueueRegs::driver, offset == kMmioQueueDriverHigh, value, "QueueDriver");
            return;
        case kMmioQueueDeviceLow:
        case kMmioQueueDeviceHigh:
            write_addr(&QueueRegs::device, offset == kMmioQueueDeviceHigh, value, "QueueDevice");
            return;
        case kMmioShmSel:
            shm_sel_ = value;
            return;
        case kMmioQueueReset:
            // §2.6.1: only with VIRTIO_F_RING_RESET negotiated.
            if (value == 1 && core_.has_feature(virtq::kFRingReset)) {
                core_.reset_queue(queue_sel_);
            } else {
                log::guest_warn("mmio: QueueReset {} ignored", value);
            }
            return;
        default:
            log::guest_warn("mmio: write to {:#x} ignored", offset);
            return;
    }
}

void VirtioMmio::write_legacy_pfn(std::uint32_t pfn) {
    if (core_.queue(queue_sel_) == nullptr) {
        log::guest_warn("mmio v1: QueuePFN for queue {} out of range", queue_sel_);
        return;
    }
    if (pfn == 0) {
        // §4.2.4: writing 0 to QueuePFN stops the queue.
        core_.set_queue_ready(queue_sel_, false);
        queue_pfn_[queue_sel_] = 0;
        return;
    }
    const std::uint32_t align = queue_align_[queue_sel_];
    QueueRegs* r = core_.writable_queue(queue_sel_, "QueuePFN");
    if (r == nullptr) {
        return;
    }
    if (!std::has_single_bit(guest_page_size_) || !std::has_single_bit(align)) {
        log::guest_warn("mmio v1: QueuePFN with page size {} / align {} refused", guest_page_size_,
                        align);
        return;
    }
    // §2.7.2 legacy layout: descriptors, then the available ring (flags, idx, ring[num],
    // used_event), then the used ring at the next multiple of QueueAlign.
    const std::uint64_t num = r->size;
    const std::uint64_t desc = std::uint64_t{pfn} * guest_page_size_;  // < 2^64: 32 × 32 bits
    const std::uint64_t avail = desc + virtq::split_desc_bytes(static_cast<std::uint32_t>(num));
    const std::uint64_t avail_end =
        avail + virtq::split_avail_bytes(static_cast<std::uint32_t>(num));
    r->desc = desc;
    r->driver = avail;
    r->device = (avail_end + align - 1) & ~std::uint64_t{align - 1};
    if (core_.set_queue_ready(queue_sel_, true)) {
        queue_pfn_[queue_sel_] = pfn;
    }
}

void VirtioMmio::raise(std::uint32_t bits) {
    const std::lock_guard lock(irq_mu_);
    interrupt_status_ |= bits;
    irq_.set_level(true);
}

void VirtioMmio::used_buffer(std::uint16_t) {
    raise(kMmioIntUsedBuffer);
}

void VirtioMmio::config_change() {
    raise(kMmioIntConfigChange);
}

void VirtioMmio::config_changed() {
    const std::lock_guard lock(mu_);
    core_.config_changed();
}

std::uint32_t VirtioMmio::interrupt_status() const {
    const std::lock_guard lock(irq_mu_);
    return interrupt_status_;
}

std::uint8_t VirtioMmio::status() const {
    const std::lock_guard lock(mu_);
    return core_.status();
}

}  // namespace vireo::transport
