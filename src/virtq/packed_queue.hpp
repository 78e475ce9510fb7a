// Device side of a packed virtqueue (virtio 1.2 §2.8).
#pragma once

#include <cstdint>
#include <expected>
#include <span>

#include "memory/guest_memory.hpp"
#include "virtq/chain.hpp"
#include "virtq/queue_config.hpp"
#include "virtq/queue_error.hpp"
#include "virtq/ring_layout.hpp"

namespace vireo::virtq {

namespace detail {
class ChainBuilder;
}

class PackedQueue {
  public:
    // §2.8: size ≤ 32768 (need not be a power of two); descriptor ring aligned 16, event
    // suppression areas aligned 4; each area inside one memory region.
    std::expected<void, QueueError> activate(const GuestMemory& mem, const QueueConfig& cfg,
                                             QueueFeatures features);
    // Pops the next available chain (§2.8.6: a descriptor is available when its AVAIL bit equals
    // the device's avail wrap counter and its USED bit does not). The token carries the buffer id
    // (from the chain's last descriptor, §2.8.6) and the number of ring slots the chain used.
    std::expected<bool, QueueError> pop(const GuestMemory& mem, DescriptorChain& out);
    // Writes a used descriptor at the next used slot and skips token.descs slots (§2.8.7).
    // Chains may be completed in any order. The first element of a batch becomes visible only
    // at publish(), so the driver never sees a half-written batch.
    void push(UsedToken token, std::uint32_t len);
    // Makes pushed elements visible; true if the driver's event suppression asks for an
    // interrupt (§2.8.10: ENABLE, DISABLE, or DESC with the off_wrap point crossed).
    bool publish();

    void disable_notifications();
    bool enable_notifications();

    QueueState save() const;
    std::expected<void, QueueError> restore(const GuestMemory& mem, const QueueState& state);

    // Builds a chain from descriptors saved elsewhere, with the rules pop() applies to ring
    // slots (vhost-user inflight recovery: the slots a chain was popped from may have been
    // reused since, so the back end kept copies). `descs` holds the chain's descriptors in ring
    // order; the token's id comes from the last one, its slot count is descs.size().
    std::expected<void, QueueError> chain_from(const GuestMemory& mem,
                                               std::span<const PackedDesc> descs,
                                               DescriptorChain& out) const;

    // Avail position with the wrap counter in bit 15 (vhost-user GET_VRING_BASE encoding).
    std::uint16_t next_avail() const;
    std::uint16_t size() const { return size_; }
    bool broken() const { return broken_; }

  private:
    // Walks the chain whose head (flags already acquire-loaded) is at next_avail_; returns the
    // number of ring slots it occupies.
    std::expected<std::uint16_t, QueueError> walk(const GuestMemory& mem, std::uint16_t head_flags,
                                                  DescriptorChain& out) const;
    std::expected<void, QueueError> walk_indirect(const GuestMemory& mem, const PackedDesc& d,
                                                  detail::ChainBuilder& chain) const;
    // True if the descriptor at next_avail_ has been made available (acquire load of flags).
    bool head_available() const;
    // Moves a ring position forward by n (<= size) slots, toggling its wrap counter on wrap.
    void advance(std::uint16_t& pos, bool& wrap, std::uint16_t n) const {
        pos = static_cast<std::uint16_t>(pos + n);
        if (pos >= size_) {
            pos = static_cast<std::uint16_t>(pos - size_);
            wrap = !wrap;
        }
    }
    std::unexpected<QueueError> fail(QueueError e) {
        broken_ = true;
        return std::unexpected(e);
    }

    QueueConfig cfg_;
    QueueFeatures features_;
    PackedDesc* ring_ = nullptr;
    const PackedEvent* driver_event_ = nullptr;  // written by the driver: interrupt suppression
    PackedEvent* device_event_ = nullptr;        // written by us: kick suppression
    std::uint16_t size_ = 0;
    std::uint16_t next_avail_ = 0;  // slot, 0..size-1
    bool avail_wrap_ = true;        // §2.8.1: both wrap counters start at 1
    std::uint16_t next_used_ = 0;   // slot, 0..size-1
    bool used_wrap_ = true;
    std::uint32_t in_flight_ = 0;  // descriptors popped and not yet pushed
    // Batch state for publish(): the first pushed slot's flags are written last.
    bool batch_pending_ = false;
    std::uint16_t batch_first_ = 0;
    std::uint16_t batch_first_flags_ = 0;
    // Used position at the last notification decision, for DESC mode (§2.8.10).
    std::uint16_t signalled_used_ = 0;
    bool signalled_wrap_ = true;
    bool signalled_valid_ = false;
    bool broken_ = false;
};

}  // namespace vireo::virtq
