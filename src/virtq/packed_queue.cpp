#include "virtq/packed_queue.hpp"

#include <algorithm>
#include <cstring>

#include "memory/ordering.hpp"
#include "virtq/chain_walk.hpp"
#include "virtq/split_queue.hpp"  // kMaxIndirectDescs: one limit for both ring formats

namespace vireo::virtq {

namespace {

// Bits 0..14 of off_wrap and of the vhost-user ring base are a slot, bit 15 a wrap counter.
constexpr unsigned kWrapShift = 15;
constexpr std::uint16_t kSlotMask = (1u << kWrapShift) - 1;
constexpr std::uint16_t kEventFlagsMask = 0x3;  // desc_event_flags : 2 (§2.8.14)

constexpr std::uint16_t encode_pos(std::uint16_t slot, bool wrap) {
    return static_cast<std::uint16_t>(slot | (std::uint16_t{wrap} << kWrapShift));
}

// §2.8.1: the driver marks a descriptor available by setting AVAIL to its wrap counter and USED
// to the inverse; the device's avail wrap counter tracks the driver's, so "available" means
// AVAIL == our counter and USED != it. A used descriptor (AVAIL == USED) never matches.
constexpr bool is_available(std::uint16_t flags, bool wrap) {
    const bool avail = (flags & kPackedDescFAvail) != 0;
    const bool used = (flags & kPackedDescFUsed) != 0;
    return avail == wrap && used != wrap;
}

}  // namespace

std::expected<void, QueueError> PackedQueue::activate(const GuestMemory& mem,
                                                      const QueueConfig& cfg,
                                                      QueueFeatures features) {
    *this = PackedQueue{};
    // §2.8.10.1: any size up to 32768; unlike split rings, no power of two is required.
    if (cfg.size == 0 || cfg.size > kMaxQueueSize) {
        return fail(QueueError::kBadSize);
    }
    auto ring = detail::map_area<PackedDesc>(mem, cfg.desc_addr, packed_desc_bytes(cfg.size),
                                             kPackedDescAlign);
    auto driver = detail::map_area<const PackedEvent>(mem, cfg.driver_addr, sizeof(PackedEvent),
                                                      kPackedEventAlign);
    auto device =
        detail::map_area<PackedEvent>(mem, cfg.device_addr, sizeof(PackedEvent), kPackedEventAlign);
    if (!ring) {
        return fail(ring.error());
    }
    if (!driver) {
        return fail(driver.error());
    }
    if (!device) {
        return fail(device.error());
    }
    cfg_ = cfg;
    features_ = features;
    size_ = cfg.size;
    ring_ = *ring;
    driver_event_ = *driver;
    device_event_ = *device;
    return {};
}

bool PackedQueue::head_available() const {
    // Acquire pairs with the driver's release of the head's flags (§2.8.21: the driver writes
    // the rest of the chain, then the head's flags after a write barrier), so every descriptor
    // of the chain is visible once the head's AVAIL bit is.
    return is_available(load_acquire(&ring_[next_avail_].flags), avail_wrap_);
}

std::expected<bool, QueueError> PackedQueue::pop(const GuestMemory& mem, DescriptorChain& out) {
    if (broken_ || ring_ == nullptr) [[unlikely]] {
        return std::unexpected(ring_ == nullptr ? QueueError::kNotReady : QueueError::kBroken);
    }
    // See head_available(): one acquire load, and the walk uses exactly the value it tested.
    const std::uint16_t flags = load_acquire(&ring_[next_avail_].flags);
    if (!is_available(flags, avail_wrap_)) {
        return false;
    }
    auto descs = walk(mem, flags, out);
    if (!descs) [[unlikely]] {
        return fail(descs.error());
    }
    // A driver can only reuse slots the device has used, so a correct one never has more than
    // `size` descriptors in flight (§2.8.3); more means it marked slots available twice.
    in_flight_ += *descs;
    if (in_flight_ > size_) [[unlikely]] {
        return fail(QueueError::kTooManyInFlight);
    }
    advance(next_avail_, avail_wrap_, *descs);
    return true;
}

std::expected<std::uint16_t, QueueError> PackedQueue::walk(const GuestMemory& mem,
                                                           std::uint16_t head_flags,
                                                           DescriptorChain& out) const {
    out.reset(UsedToken{});
    detail::ChainBuilder chain(out);
    std::uint16_t slot = next_avail_;
    std::uint16_t flags = head_flags;
    // A chain occupies consecutive ring slots, wrapping past the end (§2.8.6). It can never be
    // longer than the ring (§2.8.17); the bound also stops a driver that sets NEXT everywhere.
    for (std::uint32_t n = 1;; ++n) {
        if (n > size_) {
            return std::unexpected(QueueError::kChainTooLong);
        }
        PackedDesc d;
        std::memcpy(&d, &ring_[slot], sizeof d);
        if (n > 1) {
            // Ordered by the head's acquire: the driver wrote these before releasing the head.
            flags = d.flags.get();
        }
        if (flags & kDescFIndirect) {
            if (!features_.indirect) {
                return std::unexpected(QueueError::kIndirectNotNegotiated);
            }
            // §2.8.19: an indirect descriptor is never part of a NEXT-linked list, neither
            // carrying NEXT itself nor following a descriptor that does.
            if (n > 1 || (flags & kDescFNext)) {
                return std::unexpected(QueueError::kIndirectWithNext);
            }
            if (auto ok = walk_indirect(mem, d, chain); !ok) {
                return std::unexpected(ok.error());
            }
            out.set_id(d.id.get());
            out.set_descs(1);
            return 1;
        }
        if (auto ok = chain.add(mem, d.addr.get(), d.len.get(), (flags & kDescFWrite) != 0); !ok) {
            return std::unexpected(ok.error());
        }
        if (!(flags & kDescFNext)) {
            // §2.8.6: the buffer id is in the last descriptor of the list.
            out.set_id(d.id.get());
            out.set_descs(static_cast<std::uint16_t>(n));
            return static_cast<std::uint16_t>(n);
        }
        slot = slot + 1 == size_ ? 0 : static_cast<std::uint16_t>(slot + 1);
    }
}

std::expected<void, QueueError> PackedQueue::chain_from(const GuestMemory& mem,
                                                        std::span<const PackedDesc> descs,
                                                        DescriptorChain& out) const {
    out.reset(UsedToken{});
    if (descs.empty() || descs.size() > size_) {
        return std::unexpected(descs.empty() ? QueueError::kNotReady : QueueError::kChainTooLong);
    }
    detail::ChainBuilder chain(out);
    for (std::size_t n = 0; n < descs.size(); ++n) {
        const PackedDesc& d = descs[n];
        const std::uint16_t flags = d.flags.get();
        if (flags & kDescFIndirect) {
            if (!features_.indirect) {
                return std::unexpected(QueueError::kIndirectNotNegotiated);
            }
            if (descs.size() != 1 || (flags & kDescFNext)) {  // §2.8.19, as in walk()
                return std::unexpected(QueueError::kIndirectWithNext);
            }
            if (auto ok = walk_indirect(mem, d, chain); !ok) {
                return ok;
            }
            break;
        }
        if (auto ok = chain.add(mem, d.addr.get(), d.len.get(), (flags & kDescFWrite) != 0); !ok) {
            return ok;
        }
    }
    out.set_id(descs.back().id.get());
    out.set_descs(static_cast<std::uint16_t>(descs.size()));
    return {};
}

std::expected<void, QueueError> PackedQueue::walk_indirect(const GuestMemory& mem,
                                                           const PackedDesc& d,
                                                           detail::ChainBuilder& chain) const {
    const std::uint32_t len = d.len.get();
    if (len == 0 || len % sizeof(PackedDesc) != 0) {
        return std::unexpected(QueueError::kIndirectBadLength);
    }
    const std::uint32_t count = len / sizeof(PackedDesc);
    if (count > kMaxIndirectDescs) {
        return std::unexpected(QueueError::kIndirectTooLarge);
    }
    // The whole table must be in one region: it is read as one array.
    const std::uint8_t* table = mem.translate(d.addr.get(), len);
    if (table == nullptr) {
        return std::unexpected(QueueError::kBadAddress);
    }
    // §2.8.7 "Indirect Flag": table entries are used in order, not linked by NEXT; WRITE is the
    // only valid flag in them and the rest are ignored, except that an indirect entry would
    // be a nested table, which we refuse as the split ring does (§2.7.5.3.1).
    for (std::uint32_t i = 0; i < count; ++i) {
        PackedDesc e;
        std::memcpy(&e, table + i * sizeof e, sizeof e);  // the table may be unaligned
        const std::uint16_t flags = e.flags.get();
        if (flags & kDescFIndirect) {
            return std::unexpected(QueueError::kNestedIndirect);
        }
        if (auto ok = chain.add(mem, e.addr.get(), e.len.get(), (flags & kDescFWrite) != 0); !ok) {
            return ok;
        }
    }
    return {};
}

void PackedQueue::push(UsedToken token, std::uint32_t len) {
    if (ring_ == nullptr) {
        return;
    }
    // descs comes from our own pop(); anything else is a device-model bug. Refuse it rather than
    // let next_used_ leave the ring.
    if (token.descs == 0 || token.descs > size_) [[unlikely]] {
        broken_ = true;
        return;
    }
    PackedDesc& d = ring_[next_used_];
    // Plain stores: the driver reads id and len only after it sees the flags (release below or
    // in publish()).
    d.id.set(token.id);
    d.len.set(len);
    // §2.8.1: a used descriptor has AVAIL and USED both equal to the used wrap counter. WRITE
    // says whether len bytes were written (§2.8.3); Linux reads len only then.
    std::uint16_t flags = used_wrap_ ? (kPackedDescFAvail | kPackedDescFUsed) : 0;
    if (len > 0) {
        flags |= kDescFWrite;
    }
    if (!batch_pending_) {
        // The driver polls slots in ring order, so while this first slot still looks available
        // it reads none of the later ones: holding back one flag store hides the whole batch.
        batch_pending_ = true;
        batch_first_ = next_used_;
        batch_first_flags_ = flags;
    } else {
        // Release: id and len (and the buffer contents) are visible before the flag.
        store_release(&d.flags, flags);
    }
    advance(next_used_, used_wrap_, token.descs);
    in_flight_ -= std::min(in_flight_, std::uint32_t{token.descs});
}

bool PackedQueue::publish() {
    if (!batch_pending_) {
        return false;
    }
    // Release: everything written for the batch is visible before its first element is.
    store_release(&ring_[batch_first_].flags, batch_first_flags_);
    batch_pending_ = false;
    // Store→load: the flag store must be visible before we read the driver's event area. If the
    // load moved ahead of the store, the driver could see no new used descriptor, re-enable
    // interrupts and sleep, while we read its old DISABLE and skip the interrupt: a stall.
    full_fence();

    // The window of slots used since the last decision, in a linear space where the current
    // wrap's slots are 0..size-1 and the previous wrap's are -size..-1 (mod 2^16): then
    // vring_need_event's modular test works across a wrap and for any ring size.
    const std::uint16_t new_pos = next_used_;
    std::uint16_t old_pos = signalled_used_;
    if (signalled_wrap_ != used_wrap_) {
        old_pos = static_cast<std::uint16_t>(old_pos - size_);
    }
    const bool was_valid = signalled_valid_;
    signalled_used_ = next_used_;
    signalled_wrap_ = used_wrap_;
    signalled_valid_ = true;

    // Acquire: the driver writes off_wrap before flags (§2.8.10), so a DESC seen here comes with
    // its offset.
    switch (load_acquire(&driver_event_->flags) & kEventFlagsMask) {
        case kEventFlagsEnable:
            return true;
        case kEventFlagsDisable:
            return false;
        case kEventFlagsDesc: {
            // DESC is valid only with EVENT_IDX; without it, or with no earlier decision to
            // measure from, interrupt rather than risk a lost one.
            if (!features_.event_idx || !was_valid) {
                return true;
            }
            const std::uint16_t off_wrap = load_relaxed(&driver_event_->off_wrap);
            std::uint16_t event = off_wrap & kSlotMask;
            if ((off_wrap >> kWrapShift) != std::uint16_t{used_wrap_}) {
                event = static_cast<std::uint16_t>(event - size_);  // a slot of the previous wrap
            }
            return vring_need_event(event, new_pos, old_pos);
        }
        default:
            return true;  // 0x3 is reserved: interrupting is always safe
    }
}

void PackedQueue::disable_notifications() {
    if (device_event_ == nullptr) {
        return;
    }
    store_relaxed(&device_event_->flags, kEventFlagsDisable);
}

bool PackedQueue::enable_notifications() {
    if (device_event_ == nullptr) {
        return false;
    }
    if (features_.event_idx) {
        // Ask for a kick when the next descriptor we would pop is made available. off_wrap is
        // written first and flags released after it, mirroring what we expect of the driver.
        store_relaxed(&device_event_->off_wrap, encode_pos(next_avail_, avail_wrap_));
        store_release(&device_event_->flags, kEventFlagsDesc);
    } else {
        store_release(&device_event_->flags, kEventFlagsEnable);
    }
    // Store→load: the driver must see notifications enabled before we conclude the ring is
    // empty, or a buffer it made available in between is never kicked (§2.8.10).
    full_fence();
    return head_available();
}

QueueState PackedQueue::save() const {
    return QueueState{cfg_, features_, encode_pos(next_avail_, avail_wrap_),
                      encode_pos(next_used_, used_wrap_)};
}

std::expected<void, QueueError> PackedQueue::restore(const GuestMemory& mem,
                                                     const QueueState& state) {
    if (auto ok = activate(mem, state.config, state.features); !ok) {
        return ok;
    }
    const std::uint16_t avail = state.next_avail & kSlotMask;
    const std::uint16_t used = state.next_used & kSlotMask;
    // A position outside the ring would index past it: refuse the state (kHeadOutOfRange is the
    // closest "index >= size" error).
    if (avail >= size_ || used >= size_) {
        return fail(QueueError::kHeadOutOfRange);
    }
    next_avail_ = avail;
    avail_wrap_ = (state.next_avail >> kWrapShift) != 0;
    next_used_ = used;
    used_wrap_ = (state.next_used >> kWrapShift) != 0;
    signalled_used_ = next_used_;
    signalled_wrap_ = used_wrap_;
    return {};
}

std::uint16_t PackedQueue::next_avail() const {
    return encode_pos(next_avail_, avail_wrap_);
}

}  // namespace vireo::virtq
