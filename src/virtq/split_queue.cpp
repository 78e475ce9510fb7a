#include "virtq/split_queue.hpp"

#include <cstring>

#include "memory/ordering.hpp"
#include "virtq/chain_walk.hpp"

namespace vireo::virtq {

using detail::map_area;

std::expected<void, QueueError> SplitQueue::activate(const GuestMemory& mem, const QueueConfig& cfg,
                                                     QueueFeatures features) {
    *this = SplitQueue{};
    if (cfg.size == 0 || cfg.size > kMaxQueueSize || (cfg.size & (cfg.size - 1)) != 0) {
        return fail(QueueError::kBadSize);
    }
    auto desc =
        map_area<const SplitDesc>(mem, cfg.desc_addr, split_desc_bytes(cfg.size), kSplitDescAlign);
    auto avail = map_area<const SplitAvailHeader>(mem, cfg.driver_addr, split_avail_bytes(cfg.size),
                                                  kSplitAvailAlign);
    auto used = map_area<SplitUsedHeader>(mem, cfg.device_addr, split_used_bytes(cfg.size),
                                          kSplitUsedAlign);
    if (!desc) {
        return fail(desc.error());
    }
    if (!avail) {
        return fail(avail.error());
    }
    if (!used) {
        return fail(used.error());
    }
    cfg_ = cfg;
    features_ = features;
    size_ = cfg.size;
    desc_ = *desc;
    avail_ = *avail;
    avail_ring_ = reinterpret_cast<const le16*>(avail_ + 1);
    used_ = *used;
    used_ring_ = reinterpret_cast<SplitUsedElem*>(used_ + 1);
    return {};
}

std::expected<bool, QueueError> SplitQueue::pop(const GuestMemory& mem, DescriptorChain& out) {
    if (broken_ || desc_ == nullptr) [[unlikely]] {
        return std::unexpected(desc_ == nullptr ? QueueError::kNotReady : QueueError::kBroken);
    }
    if (next_avail_ == shadow_avail_) {
        // Acquire pairs with the driver's release (its write barrier before the idx update,
        // §2.7.13): the ring entries and descriptors behind the new idx are visible after it.
        const std::uint16_t idx = load_acquire(&avail_->idx);
        // §2.7.6: the driver can be at most `size` entries ahead; more is a corrupt ring.
        if (static_cast<std::uint16_t>(idx - next_avail_) > size_) [[unlikely]] {
            return fail(QueueError::kAvailIndexJump);
        }
        shadow_avail_ = idx;
        if (idx == next_avail_) {
            return false;
        }
    }
    const std::uint16_t head = load_relaxed(&avail_ring_[next_avail_ & (size_ - 1)]);
    if (head >= size_) [[unlikely]] {
        return fail(QueueError::kHeadOutOfRange);
    }
    if (auto ok = walk(mem, head, out); !ok) [[unlikely]] {
        return fail(ok.error());
    }
    ++next_avail_;
    return true;
}

std::expected<void, QueueError> SplitQueue::walk(const GuestMemory& mem, std::uint16_t head,
                                                 DescriptorChain& out) const {
    out.reset(UsedToken{head, 1});
    const SplitDesc* table = desc_;
    std::uint32_t table_len = size_;
    bool in_indirect = false;
    detail::ChainBuilder chain(out);
    std::uint32_t steps = 0;
    std::uint32_t idx = head;
    for (;;) {
        // §2.7.5.3.1: a chain is never longer than its table; a longer walk is a loop.
        if (++steps > table_len) {
            return std::unexpected(QueueError::kChainTooLong);
        }
        SplitDesc d;
        std::memcpy(&d, &table[idx], sizeof d);  // the table may be unaligned if indirect
        const std::uint16_t flags = d.flags.get();
        const std::uint32_t len = d.len.get();

        if (flags & kDescFIndirect) {
            if (!features_.indirect) {
                return std::unexpected(QueueError::kIndirectNotNegotiated);
            }
            if (in_indirect) {
                return std::unexpected(QueueError::kNestedIndirect);
            }
            if (flags & kDescFNext) {
                return std::unexpected(QueueError::kIndirectWithNext);
            }
            if (len == 0 || len % sizeof(SplitDesc) != 0) {
                return std::unexpected(QueueError::kIndirectBadLength);
            }
            if (len / sizeof(SplitDesc) > kMaxIndirectDescs) {
                return std::unexpected(QueueError::kIndirectTooLarge);
            }
            // The whole table must be in one region: it is read as one array.
            table = reinterpret_cast<const SplitDesc*>(mem.translate(d.addr.get(), len));
            if (table == nullptr) {
                return std::unexpected(QueueError::kBadAddress);
            }
            table_len = len / sizeof(SplitDesc);
            in_indirect = true;
            steps = 0;
            idx = 0;
            continue;
        }

        if (auto ok = chain.add(mem, d.addr.get(), len, (flags & kDescFWrite) != 0); !ok) {
            return ok;
        }
        if (!(flags & kDescFNext)) {
            return {};
        }
        idx = d.next.get();
        if (idx >= table_len) {
            return std::unexpected(QueueError::kNextOutOfRange);
        }
    }
}

void SplitQueue::push(UsedToken token, std::uint32_t len) {
    // A queue whose activate() failed has no rings (Virtqueue still holds it, broken).
    if (used_ring_ == nullptr) {
        return;
    }
    SplitUsedElem& e = used_ring_[next_used_ & (size_ - 1)];
    // Plain stores: the driver reads the element only after it sees used->idx (release below).
    e.id.set(token.id);
    e.len.set(len);
    ++next_used_;
}

bool SplitQueue::publish() {
    if (used_ == nullptr || next_used_ == published_used_) {
        return false;
    }
    const std::uint16_t old_idx = published_used_;
    const std::uint16_t new_idx = next_used_;
    // Release: the used elements written by push() are visible before the new idx (§2.7.8).
    store_release(&used_->idx, new_idx);
    published_used_ = new_idx;
    // Store→load: the idx store must be visible before we read the driver's suppression
    // fields, or the driver may suppress an interrupt for entries it never saw (§2.7.7.2).
    full_fence();
    const bool was_valid = published_valid_;
    published_valid_ = true;
    if (features_.event_idx) {
        const std::uint16_t used_event = load_relaxed(&avail_ring_[size_]);
        return !was_valid || vring_need_event(used_event, new_idx, old_idx);
    }
    return (load_relaxed(&avail_->flags) & kAvailFNoInterrupt) == 0;
}

void SplitQueue::disable_notifications() {
    if (used_ == nullptr) {
        return;
    }
    // With EVENT_IDX the driver ignores flags (§2.7.10); leaving avail_event behind is enough.
    if (!features_.event_idx) {
        store_relaxed(&used_->flags, kUsedFNoNotify);
    }
}

bool SplitQueue::enable_notifications() {
    if (used_ == nullptr) {
        return false;
    }
    if (features_.event_idx) {
        auto* avail_event = reinterpret_cast<le16*>(&used_ring_[size_]);
        store_relaxed(avail_event, next_avail_);
    } else {
        store_relaxed(&used_->flags, std::uint16_t{0});
    }
    // Store→load: the driver must see notifications enabled before we conclude the ring is
    // empty, or a buffer added in between is never kicked (§2.7.10).
    full_fence();
    return load_acquire(&avail_->idx) != next_avail_;
}

QueueState SplitQueue::save() const {
    return QueueState{cfg_, features_, next_avail_, next_used_};
}

std::expected<void, QueueError> SplitQueue::restore(const GuestMemory& mem,
                                                    const QueueState& state) {
    if (auto ok = activate(mem, state.config, state.features); !ok) {
        return ok;
    }
    next_avail_ = state.next_avail;
    shadow_avail_ = state.next_avail;
    next_used_ = state.next_used;
    published_used_ = state.next_used;
    return {};
}

}  // namespace vireo::virtq
