#include "transport/virtio_core.hpp"

#include <sys/eventfd.h>

#include <algorithm>
#include <bit>
#include <stdexcept>

#include "base/log.hpp"
#include "transport/reg.hpp"
#include "virtq/features.hpp"

namespace vireo::transport {

using virtq::bit;

namespace {

// Transport features this implementation provides on top of the device's own (§6).
constexpr std::uint64_t kModernTransportFeatures = bit(virtq::kFVersion1) | bit(virtq::kFRingReset);
// Features no transport here can honour, removed from what the device offers: no IOMMU
// (ACCESS_PLATFORM) and no notification data in the notify write (NOTIFICATION_DATA).
constexpr std::uint64_t kUnsupported =
    bit(virtq::kFAccessPlatform) | bit(virtq::kFNotificationData);

std::uint64_t offer(const dev::VirtioDevice& d, bool legacy) {
    const std::uint64_t dev = d.device_features() & ~kUnsupported;
    // Legacy devices have 32 feature bits; everything above (VERSION_1, RING_PACKED, …) is
    // modern-only (§4.2.4).
    return legacy ? (dev & 0xffff'ffffu) : (dev | kModernTransportFeatures);
}

// Signals a queue's used buffers through the transport.
class QueueInterrupt final : public dev::Interrupt {
  public:
    QueueInterrupt(VirtioSignals& s, std::uint16_t q) : signals_(s), queue_(q) {}
    void signal() override { signals_.used_buffer(queue_); }

  private:
    VirtioSignals& signals_;
    std::uint16_t queue_;
};

}  // namespace

struct VirtioCore::Queue {
    Queue(VirtioSignals& s, std::uint16_t i, std::uint16_t max) : index(i), irq(s, i) {
        regs.size = max;
    }
    std::uint16_t index;
    QueueRegs regs;
    virtq::Virtqueue vq;
    QueueInterrupt irq;
    UniqueFd kick;
    std::unique_ptr<dev::QueueHandler> handler;
    QueueWorker worker;
};

VirtioCore::VirtioCore(dev::VirtioDevice& device, const GuestMemory& mem, VirtioSignals& signals,
                       bool legacy)
    : device_(device),
      mem_(mem),
      signals_(signals),
      legacy_(legacy),
      offered_(offer(device, legacy)),
      max_size_(std::min(device.max_queue_size(), virtq::kMaxQueueSize)) {
    for (std::uint16_t i = 0; i < device_.num_queues(); ++i) {
        auto q = std::make_unique<Queue>(signals_, i, max_size_);
        q->kick.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
        if (!q->kick) {
            throw std::runtime_error("virtio transport: eventfd for a queue notification failed");
        }
        queues_.push_back(std::move(q));
    }
    config_seen_.assign(device_.config().begin(), device_.config().end());
}

VirtioCore::~VirtioCore() {
    for (auto& q : queues_) {
        stop_queue(*q);
    }
    device_.reset();
}

// --- features -----------------------------------------------------------------------------

std::uint32_t VirtioCore::device_features_word(std::uint32_t sel) const {
    return sel < 2 ? static_cast<std::uint32_t>(offered_ >> (32 * sel)) : 0;
}

std::uint32_t VirtioCore::driver_features_word(std::uint32_t sel) const {
    return sel < 2 ? static_cast<std::uint32_t>(driver_features_ >> (32 * sel)) : 0;
}

void VirtioCore::write_driver_features_word(std::uint32_t sel, std::uint32_t value) {
    if ((status_ & kStatusDriver) == 0 || (status_ & kStatusFeaturesOk) != 0 || committed_) {
        log::guest_warn("driver features written outside negotiation (status {:#x})", status_);
        return;
    }
    if (sel >= 2) {
        // §4.1.4.3 / §4.2.2: only two words exist; a non-zero value beyond is an unoffered bit.
        if (value != 0) {
            log::guest_warn("driver features word {} = {:#x}: bits never offered", sel, value);
        }
        return;
    }
    const unsigned shift = 32 * sel;
    driver_features_ = (driver_features_ & ~(std::uint64_t{0xffff'ffff} << shift)) |
                       (std::uint64_t{value} << shift);
}

void VirtioCore::commit_features() {
    if (!committed_) {
        committed_ = true;
        device_.set_features(driver_features_);
    }
}

// --- status -------------------------------------------------------------------------------

std::uint8_t VirtioCore::status() const {
    return static_cast<std::uint8_t>(
        status_ | (needs_reset_.load(std::memory_order_acquire) ? kStatusNeedsReset : 0));
}

StatusChange VirtioCore::write_status(std::uint8_t value) {
    value &= static_cast<std::uint8_t>(~kStatusNeedsReset);  // the device's bit, not the driver's
    const StatusChange change = classify_status(status_, value, legacy_);
    switch (change) {
        case StatusChange::kReset:
            reset();
            return change;
        case StatusChange::kSame:
            return change;
        case StatusChange::kInvalid:
            log::guest_warn("invalid device status transition {:#x} -> {:#x} ignored", status_,
                            value);
            return change;
        case StatusChange::kAdvance:
            break;
    }
    const std::uint8_t added = value & static_cast<std::uint8_t>(~status_);
    if (added == kStatusFeaturesOk) {
        // §2.2.2 / §3.1.1: the device refuses FEATURES_OK (the bit stays clear, the driver
        // reads it back) if the driver accepted a bit never offered, or, for a modern device,
        // did not accept VERSION_1.
        const std::uint64_t unoffered = driver_features_ & ~offered_;
        if (unoffered != 0 || (driver_features_ & bit(virtq::kFVersion1)) == 0) {
            log::guest_warn("FEATURES_OK refused: driver features {:#x}, offered {:#x}",
                            driver_features_, offered_);
            return StatusChange::kInvalid;
        }
        commit_features();
    }
    if (added == kStatusDriverOk) {
        if (legacy_) {
            // Legacy drivers never write FEATURES_OK; what they wrote is final now.
            if ((driver_features_ & ~offered_) != 0) {
                log::guest_warn("legacy driver accepted unoffered features {:#x}",
                                driver_features_ & ~offered_);
                driver_features_ &= offered_;
            }
            commit_features();
        }
        status_ = value;
        // §3.1.1: the device must not use queues before DRIVER_OK.
        for (auto& q : queues_) {
            if (q->regs.ready) {
                start_queue(*q);
            }
        }
        return change;
    }
    status_ = value;
    return change;
}

void VirtioCore::reset() {
    for (auto& q : queues_) {
        stop_queue(*q);
        q->regs = QueueRegs{};
        q->regs.size = max_size_;
        eventfd_t v;
        ::eventfd_read(q->kick.get(), &v);  // forget kicks of the old session
    }
    device_.reset();
    status_ = 0;
    needs_reset_.store(false, std::memory_order_release);
    driver_features_ = 0;
    committed_ = false;
}

// --- queues -------------------------------------------------------------------------------

const QueueRegs* VirtioCore::queue(std::uint16_t q) const {
    return q < queues_.size() ? &queues_[q]->regs : nullptr;
}

QueueRegs* VirtioCore::writable_queue(std::uint16_t q, const char* reg) {
    if (q >= queues_.size()) {
        log::guest_warn("{}: queue {} out of range", reg, q);
        return nullptr;
    }
    QueueRegs& r = queues_[q]->regs;
    // Legacy drivers set queues up after DRIVER; modern ones after FEATURES_OK (§3.1.1 step 7).
    const std::uint8_t needed = legacy_ ? kStatusDriver : kStatusFeaturesOk;
    const bool settled = (status_ & needed) != 0 && (status_ & kStatusFailed) == 0;
    const bool running = driver_ok() && !has_feature(virtq::kFRingReset);
    if (r.ready || !settled || running) {
        log::guest_warn("{}: queue {} registers are not writable now (status {:#x}, ready {})", reg,
                        q, status_, r.ready);
        return nullptr;
    }
    return &r;
}

bool VirtioCore::set_queue_ready(std::uint16_t q, bool ready) {
    if (q >= queues_.size()) {
        return false;
    }
    Queue& qu = *queues_[q];
    if (!ready) {
        stop_queue(qu);
        qu.regs.ready = false;
        return true;
    }
    if (qu.regs.ready) {
        return true;
    }
    if (writable_queue(q, "queue ready") == nullptr) {
        return false;
    }
    if (legacy_) {
        commit_features();  // the first queue set up ends a legacy driver's negotiation
    }
    const std::uint16_t size = qu.regs.size;
    const bool packed = has_feature(virtq::kFRingPacked);
    // §2.7 (split): a power of two; §2.8 (packed): any size; both within the maximum.
    if (size == 0 || size > max_size_ || (!packed && !std::has_single_bit(size))) {
        log::guest_warn("queue {} refused: size {} (max {}, {})", q, size, max_size_,
                        packed ? "packed" : "split");
        return false;
    }
    const virtq::QueueConfig cfg{size, qu.regs.desc, qu.regs.driver, qu.regs.device};
    if (auto ok = qu.vq.activate(mem_, cfg, virtq::QueueFeatures::from_bits(negotiated())); !ok) {
        log::guest_warn("queue {} refused: {}", q, virtq::to_string(ok.error()));
        qu.vq.reset();
        return false;
    }
    qu.regs.ready = true;
    if (driver_ok()) {
        start_queue(qu);  // re-enabled after a queue reset (§2.6.1.2)
    }
    return true;
}

void VirtioCore::reset_queue(std::uint16_t q) {
    if (q >= queues_.size()) {
        return;
    }
    Queue& qu = *queues_[q];
    stop_queue(qu);
    qu.regs = QueueRegs{};
    qu.regs.size = max_size_;
}

void VirtioCore::start_queue(Queue& q) {
    if (q.handler != nullptr) {
        return;
    }
    q.handler = device_.start_queue(q.index, dev::QueueHandle(mem_, q.vq, q.irq));
    auto fail = [this] {
        needs_reset_.store(true, std::memory_order_release);
        signals_.config_change();
    };
    if (q.handler == nullptr) {
        log::guest_warn("device refused to start queue {}", q.index);
        fail();
        return;
    }
    const bool ok = q.worker.start(
        *q.handler, q.kick.get(), [&q] { return q.vq.broken() || q.handler->needs_reset(); },
        [&q, fail] {
            log::guest_warn("queue {}: malformed ring, device needs reset", q.index);
            fail();
        });
    if (!ok) {
        log::guest_warn("queue {}: worker could not start", q.index);
        q.handler.reset();
        fail();
    }
}

void VirtioCore::stop_queue(Queue& q) {
    q.worker.stop();  // drains the handler
    q.handler.reset();
    q.vq.reset();
}

void VirtioCore::notify(std::uint16_t q) const {
    if (q < queues_.size()) {
        ::eventfd_write(queues_[q]->kick.get(), 1);
    }
}

int VirtioCore::notify_fd(std::uint16_t q) const {
    return q < queues_.size() ? queues_[q]->kick.get() : -1;
}

// --- configuration ------------------------------------------------------------------------

std::uint32_t VirtioCore::config_size() const {
    return static_cast<std::uint32_t>(device_.config().size());
}

void VirtioCore::refresh_generation() {
    const auto cfg = device_.config();
    if (!std::equal(cfg.begin(), cfg.end(), config_seen_.begin(), config_seen_.end())) {
        config_seen_.assign(cfg.begin(), cfg.end());
        ++generation_;
    }
}

void VirtioCore::read_config(std::uint64_t offset, std::span<std::uint8_t> out) {
    refresh_generation();
    read_window(device_.config(), offset, out);
}

void VirtioCore::write_config(std::uint64_t offset, std::span<const std::uint8_t> data) {
    const std::uint64_t size = device_.config().size();
    if (offset >= size || data.size() > size - offset) {
        log::guest_warn("device config write at {:#x}+{} outside {} bytes", offset, data.size(),
                        size);
        return;
    }
    device_.write_config(static_cast<std::uint32_t>(offset), data);
    refresh_generation();
}

std::uint32_t VirtioCore::config_generation() {
    refresh_generation();
    return generation_;
}

void VirtioCore::config_changed() {
    refresh_generation();
    signals_.config_change();
}

}  // namespace vireo::transport
