#include "transport/virtio_pci.hpp"

#include <algorithm>
#include <vector>

#include "base/log.hpp"
#include "transport/reg.hpp"
#include "virtq/features.hpp"

namespace vireo::transport {

namespace {

// At most one vector per queue plus the configuration vector, within one 4 KiB table region.
constexpr std::uint16_t kMaxVectors = VirtioPci::kRegionSize / kMsixEntrySize;

std::uint16_t vector_count(const dev::VirtioDevice& d) {
    return static_cast<std::uint16_t>(std::min<std::uint32_t>(d.num_queues() + 1u, kMaxVectors));
}

std::uint8_t class_of(std::uint32_t id) {
    switch (id) {
        case dev::kIdBlock:
            return 0x01;  // mass storage
        case dev::kIdNet:
            return 0x02;  // network
        default:
            return 0xff;  // unassigned class
    }
}

std::uint8_t subclass_of(std::uint32_t id) {
    return id == dev::kIdBlock ? 0x80 : 0x00;  // "other mass storage"
}

// struct virtio_pci_cap (§4.1.4), `extra` bytes longer for the notify and pci_cfg variants.
std::vector<std::uint8_t> virtio_cap(std::uint8_t type, std::uint64_t offset, std::uint64_t length,
                                     std::size_t extra = 0) {
    std::vector<std::uint8_t> c(16 + extra, 0);
    c[0] = kPciCapIdVendor;
    c[kVirtioCapLen] = static_cast<std::uint8_t>(c.size());
    c[kVirtioCapType] = type;
    c[kVirtioCapBar] = VirtioPci::kBar;
    store_le(std::span(c).subspan(kVirtioCapOffset, 4), offset);
    store_le(std::span(c).subspan(kVirtioCapLength, 4), length);
    return c;
}

struct Field {
    std::uint32_t offset;
    std::uint32_t width;
};
constexpr Field kCommonFields[] = {
    {kCommonDfSelect, 4},        {kCommonDf, 4},
    {kCommonGfSelect, 4},        {kCommonGf, 4},
    {kCommonMsixConfig, 2},      {kCommonNumQueues, 2},
    {kCommonStatus, 1},          {kCommonConfigGeneration, 1},
    {kCommonQueueSelect, 2},     {kCommonQueueSize, 2},
    {kCommonQueueMsixVector, 2}, {kCommonQueueEnable, 2},
    {kCommonQueueNotifyOff, 2},  {kCommonQueueDesc, 8},
    {kCommonQueueDriver, 8},     {kCommonQueueDevice, 8},
    {kCommonQueueNotifyData, 2}, {kCommonQueueReset, 2},
};

// The field an access targets, if the access is valid for it: the field's exact width, or for
// 64-bit fields either 32-bit half (§4.1.3.1: drivers access 64-bit fields as two 32-bit
// halves). nullptr otherwise.
const Field* common_field(std::uint64_t offset, std::size_t size) {
    for (const Field& f : kCommonFields) {
        if (offset < f.offset || offset >= f.offset + f.width) {
            continue;
        }
        const bool whole = offset == f.offset && size == f.width;
        const bool half = f.width == 8 && size == 4 && (offset - f.offset) % 4 == 0;
        return whole || half ? &f : nullptr;
    }
    return nullptr;
}

}  // namespace

VirtioPci::VirtioPci(dev::VirtioDevice& device, const GuestMemory& mem, MsiSink& msi)
    : PciDevice(
          kVirtioPciVendor, static_cast<std::uint16_t>(kVirtioPciDeviceBase + device.device_id()),
          class_of(device.device_id()), subclass_of(device.device_id()), 0, kVirtioPciRevision),
      core_(device, mem, *this, /*legacy=*/false),
      msix_(vector_count(device), msi),
      queue_vector_(std::make_unique<std::atomic<std::uint16_t>[]>(core_.num_queues())) {
    if (core_.num_queues() > kRegionSize / kNotifyMultiplier) {
        throw std::invalid_argument("VirtioPci: too many queues for the notify region");
    }
    reset_vectors();
    // §4.1.2.1: subsystem device ID ≥ 0x40 for a modern-only device.
    set_subsystem(kVirtioPciVendor, 0x1100);
    set_interrupt_pin(1);
    add_bar(kBar, BarKind::kMem64, kBarSize);

    add_capability(virtio_cap(kVirtioPciCapCommon, kCommonOffset, kCommonSize));
    auto notify = virtio_cap(kVirtioPciCapNotify, kNotifyOffset,
                             std::uint64_t{core_.num_queues()} * kNotifyMultiplier, 4);
    store_le(std::span(notify).subspan(kVirtioCapNotifyMultiplier, 4), kNotifyMultiplier);
    add_capability(notify);
    add_capability(virtio_cap(kVirtioPciCapIsr, kIsrOffset, 1));
    add_capability(virtio_cap(kVirtioPciCapDevice, kDeviceOffset,
                              std::max<std::uint32_t>(core_.config_size(), 4)));
    // §4.1.4.9: bar, offset, length and the data window are the driver's to write.
    auto pci_cfg = virtio_cap(kVirtioPciCapPci, 0, 0, 4);
    std::vector<std::uint8_t> pci_mask(pci_cfg.size(), 0);
    pci_mask[kVirtioCapBar] = 0xff;
    std::fill_n(pci_mask.begin() + kVirtioCapOffset, 12, 0xff);  // offset, length, data
    pci_cfg_cap_ = add_capability(pci_cfg, pci_mask);
    const auto mcap = msix_.capability(kBar, kMsixTableOffset, kBar, kMsixPbaOffset);
    const auto mmask = Msix::capability_wmask();
    msix_cap_ = add_capability(mcap, mmask);
}

VirtioPci::~VirtioPci() {
    const std::lock_guard lock(mu_);
    core_.write_status(0);  // stops the queue workers while this object is whole
}

void VirtioPci::reset_vectors() {
    config_vector_.store(kNoVector, std::memory_order_release);
    for (std::uint16_t q = 0; q < core_.num_queues(); ++q) {
        queue_vector_[q].store(kNoVector, std::memory_order_release);
    }
}

std::uint16_t VirtioPci::checked_vector(std::uint16_t v) const {
    // §4.1.5.1.2.1: a vector the device cannot use reads back as NO_VECTOR.
    return v < msix_.size() ? v : kNoVector;
}

// --- BAR ----------------------------------------------------------------------------------

void VirtioPci::bar_read(int bar, std::uint64_t offset, std::span<std::uint8_t> data) {
    store_le(data, 0);
    if (bar != kBar || offset >= kBarSize) {
        return;
    }
    const std::uint64_t region = offset & ~(kRegionSize - 1);
    const std::uint64_t off = offset - region;
    if (off + data.size() > kRegionSize) {
        return;  // straddles two structures
    }
    switch (region) {
        case kCommonOffset:
            common_read(off, data);
            return;
        case kIsrOffset: {
            if (off != 0) {
                return;
            }
            // §4.1.4.5: reading the ISR clears it and de-asserts INTx.
            const std::lock_guard lock(irq_mu_);
            data[0] = isr_;
            isr_ = 0;
            set_intx(false);
            return;
        }
        case kDeviceOffset: {
            if (data.size() > 4 || off % data.size() != 0) {
                log::guest_warn("pci: device config read of {} bytes at {:#x} refused", data.size(),
                                off);
                return;
            }
            const std::lock_guard lock(mu_);
            core_.read_config(off, data);
            return;
        }
        case kMsixTableOffset:
            msix_.table_read(off, data);
            return;
        case kMsixPbaOffset:
            msix_.pba_read(off, data);
            return;
        default:
            return;  // notify region reads 0
    }
}

void VirtioPci::bar_write(int bar, std::uint64_t offset, std::span<const std::uint8_t> data) {
    if (bar != kBar || offset >= kBarSize) {
        return;
    }
    const std::uint64_t region = offset & ~(kRegionSize - 1);
    const std::uint64_t off = offset - region;
    if (off + data.size() > kRegionSize) {
        return;
    }
    switch (region) {
        case kCommonOffset:
            common_write(off, data);
            return;
        case kDeviceOffset: {
            if (data.size() > 4 || off % data.size() != 0) {
                log::guest_warn("pci: device config write of {} bytes at {:#x} refused",
                                data.size(), off);
                return;
            }
            const std::lock_guard lock(mu_);
            core_.write_config(off, data);
            return;
        }
        case kNotifyOffset:
            // §4.1.4.4: the queue is identified by where the driver writes, 16 or 32 bits.
            if ((data.size() == 2 || data.size() == 4) && off % kNotifyMultiplier == 0) {
                core_.notify(static_cast<std::uint16_t>(off / kNotifyMultiplier));
            }
            return;
        case kMsixTableOffset:
            msix_.table_write(off, data);
            return;
        default:
            return;  // ISR and PBA are read-only
    }
}

void VirtioPci::common_read(std::uint64_t offset, std::span<std::uint8_t> data) {
    const Field* f = common_field(offset, data.size());
    if (f == nullptr) {
        log::guest_warn("pci: common cfg read of {} bytes at {:#x} refused", data.size(), offset);
        return;
    }
    const std::lock_guard lock(mu_);
    const QueueRegs* q = core_.queue(queue_select_);
    std::uint64_t v = 0;
    switch (f->offset) {
        case kCommonDfSelect:
            v = df_select_;
            break;
        case kCommonDf:
            v = core_.device_features_word(df_select_);
            break;
        case kCommonGfSelect:
            v = gf_select_;
            break;
        case kCommonGf:
            v = core_.driver_features_word(gf_select_);
            break;
        case kCommonMsixConfig:
            v = config_vector_.load();
            break;
        case kCommonNumQueues:
            v = core_.num_queues();
            break;
        case kCommonStatus:
            v = core_.status();
            break;
        case kCommonConfigGeneration:
            v = core_.config_generation() & 0xff;
            break;
        case kCommonQueueSelect:
            v = queue_select_;
            break;
        case kCommonQueueSize:
            v = q != nullptr ? q->size : 0;
            break;
        case kCommonQueueMsixVector:
            v = q != nullptr ? queue_vector_[queue_select_].load() : kNoVector;
            break;
        case kCommonQueueEnable:
            v = q != nullptr && q->ready;
            break;
        case kCommonQueueNotifyOff:
            v = q != nullptr ? queue_select_ : 0;
            break;
        case kCommonQueueDesc:
            v = q != nullptr ? q->desc : 0;
            break;
        case kCommonQueueDriver:
            v = q != nullptr ? q->driver : 0;
            break;
        case kCommonQueueDevice:
            v = q != nullptr ? q->device : 0;
            break;
        default:
            v = 0;
            break;  // notify_data (no NOTIF_CONFIG_DATA), queue_reset (synchronous)
    }
    store_le(data, v >> (8 * (offset - f->offset)));
}

void VirtioPci::common_write(std::uint64_t offset, std::span<const std::uint8_t> data) {
    const Field* f = common_field(offset, data.size());
    if (f == nullptr) {
        log::guest_warn("pci: common cfg write of {} bytes at {:#x} refused", data.size(), offset);
        return;
    }
    const std::uint64_t v = load_le(data);
    const std::lock_guard lock(mu_);
    auto set_addr = [&](std::uint64_t QueueRegs::*field, const char* name) {
        if (QueueRegs* r = core_.writable_queue(queue_select_, name)) {
            if (data.size() == 8) {
                r->*field = v;
            } else {
                const unsigned shift = offset == f->offset ? 0 : 32;
                r->*field = (r->*field & ~(std::uint64_t{0xffff'ffff} << shift)) | (v << shift);
            }
        }
    };
    switch (f->offset) {
        case kCommonDfSelect:
            df_select_ = static_cast<std::uint32_t>(v);
            return;
        case kCommonGfSelect:
            gf_select_ = static_cast<std::uint32_t>(v);
            return;
        case kCommonGf:
            core_.write_driver_features_word(gf_select_, static_cast<std::uint32_t>(v));
            return;
        case kCommonMsixConfig:
            config_vector_.store(checked_vector(static_cast<std::uint16_t>(v)));
            return;
        case kCommonStatus:
            if (core_.write_status(static_cast<std::uint8_t>(v)) == StatusChange::kReset) {
                reset_vectors();
                const std::lock_guard ilock(irq_mu_);
                isr_ = 0;
                set_intx(false);
            }
            return;
        case kCommonQueueSelect:
            queue_select_ = static_cast<std::uint16_t>(v);
            return;
        case kCommonQueueSize:
            if (QueueRegs* r = core_.writable_queue(queue_select_, "queue_size")) {
                r->size = static_cast<std::uint16_t>(v);
            }
            return;
        case kCommonQueueMsixVector: {
            // Accepted whenever the queue is stopped: Linux clears vectors after a reset too.
            const QueueRegs* q = core_.queue(queue_select_);
            if (q == nullptr || q->ready) {
                log::guest_warn("pci: queue_msix_vector for queue {} ignored", queue_select_);
                return;
            }
            queue_vector_[queue_select_].store(checked_vector(static_cast<std::uint16_t>(v)));
            return;
        }
        case kCommonQueueEnable:
            if (v == 1) {
                core_.set_queue_ready(queue_select_, true);
            } else {
                log::guest_warn("pci: queue_enable {} ignored (§4.1.4.3.2: only 1 may be written)",
                                v);
            }
            return;
        case kCommonQueueDesc:
            set_addr(&QueueRegs::desc, "queue_desc");
            return;
        case kCommonQueueDriver:
            set_addr(&QueueRegs::driver, "queue_driver");
            return;
        case kCommonQueueDevice:
            set_addr(&QueueRegs::device, "queue_device");
            return;
        case kCommonQueueReset:
            if (v == 1 && core_.has_feature(virtq::kFRingReset) &&
                core_.queue(queue_select_) != nullptr) {
                core_.reset_queue(queue_select_);
                queue_vector_[queue_select_].store(kNoVector);
            } else {
                log::guest_warn("pci: queue_reset {} ignored", v);
            }
            return;
        default:
            log::guest_warn("pci: write to read-only common cfg field at {:#x}", f->offset);
            return;
    }
}

// --- configuration space hooks ------------------------------------------------------------

namespace {
bool overlaps(std::uint32_t a, std::size_t alen, std::uint32_t b, std::size_t blen) {
    return a < b + blen && b < a + alen;
}
}  // namespace

bool VirtioPci::config_read_hook(std::uint32_t offset, std::span<std::uint8_t> data) {
    const std::uint32_t win = pci_cfg_cap_ + kVirtioCapPciData;
    if (overlaps(offset, data.size(), win, 4)) {
        // §4.1.4.9: a read of pci_cfg_data reads `length` bytes at `offset` of BAR `bar`.
        const std::uint8_t bar = cfg_[pci_cfg_cap_ + kVirtioCapBar];
        const std::uint32_t off = cfg_dword(pci_cfg_cap_ + kVirtioCapOffset);
        const std::uint32_t len = cfg_dword(pci_cfg_cap_ + kVirtioCapLength);
        if (bar == kBar && (len == 1 || len == 2 || len == 4) && off % len == 0 && off < kBarSize) {
            bar_read(kBar, off, std::span(cfg_).subspan(win, len));
        }
    }
    return false;
}

void VirtioPci::config_written(std::uint32_t offset, std::size_t len) {
    if (overlaps(offset, len, msix_cap_ + kMsixControl, 2)) {
        msix_.set_control(cfg_word(msix_cap_ + kMsixControl));
    }
    const std::uint32_t win = pci_cfg_cap_ + kVirtioCapPciData;
    if (overlaps(offset, len, win, 4)) {
        const std::uint8_t bar = cfg_[pci_cfg_cap_ + kVirtioCapBar];
        const std::uint32_t off = cfg_dword(pci_cfg_cap_ + kVirtioCapOffset);
        const std::uint32_t n = cfg_dword(pci_cfg_cap_ + kVirtioCapLength);
        if (bar == kBar && (n == 1 || n == 2 || n == 4) && off % n == 0 && off < kBarSize) {
            const std::array<std::uint8_t, 4> bytes{cfg_[win], cfg_[win + 1], cfg_[win + 2],
                                                    cfg_[win + 3]};
            bar_write(kBar, off, std::span(bytes).first(n));
        }
    }
}

// --- interrupts ---------------------------------------------------------------------------

void VirtioPci::interrupt(std::uint16_t vector, std::uint8_t isr_bit) {
    if (msix_.enabled()) {
        // §4.1.5.1.2: with MSI-X, NO_VECTOR means no interrupt for this source.
        if (vector != kNoVector) {
            msix_.fire(vector);
        }
        return;
    }
    const std::lock_guard lock(irq_mu_);
    isr_ |= isr_bit;
    set_intx(true);
}

void VirtioPci::used_buffer(std::uint16_t queue) {
    interrupt(queue_vector_[queue].load(std::memory_order_acquire), kIsrQueue);
}

void VirtioPci::config_change() {
    interrupt(config_vector_.load(std::memory_order_acquire), kIsrConfig);
}

void VirtioPci::config_changed() {
    const std::lock_guard lock(mu_);
    core_.config_changed();
}

std::uint8_t VirtioPci::status() const {
    const std::lock_guard lock(mu_);
    return core_.status();
}

}  // namespace vireo::transport
