// Device side of a split virtqueue (virtio 1.2 §2.7).
#pragma once

#include <cstdint>
#include <expected>

#include "memory/guest_memory.hpp"
#include "virtq/chain.hpp"
#include "virtq/queue_config.hpp"
#include "virtq/queue_error.hpp"
#include "virtq/ring_layout.hpp"

namespace vireo::virtq {

// Largest indirect table accepted, in descriptors. Linux may exceed the queue size with indirect
// tables, so the bound is the largest queue size rather than this queue's size.
inline constexpr std::uint32_t kMaxIndirectDescs = kMaxQueueSize;

class SplitQueue {
  public:
    // Validates the geometry against guest memory and caches the ring pointers (§2.7: size a
    // power of two ≤ 32768; areas aligned 16/2/4; each area inside one memory region).
    std::expected<void, QueueError> activate(const GuestMemory& mem, const QueueConfig& cfg,
                                             QueueFeatures features);
    // Pops the next available chain into `out`. true: a chain; false: none available.
    // An error stops the queue for good (until reset): the device then needs a reset.
    std::expected<bool, QueueError> pop(const GuestMemory& mem, DescriptorChain& out);
    // Writes a used element; the driver sees it after publish().
    void push(UsedToken token, std::uint32_t len);
    // Makes pushed elements visible; true if the driver wants an interrupt for them.
    bool publish();

    // Driver→device notification suppression (§2.7.10). enable() returns true if buffers became
    // available meanwhile, so the caller processes them instead of sleeping on a lost kick.
    void disable_notifications();
    bool enable_notifications();

    QueueState save() const;
    std::expected<void, QueueError> restore(const GuestMemory& mem, const QueueState& state);

    // Walks the chain that starts at `head` again, without touching ring indices: vhost-user
    // inflight recovery resubmits chains a previous back-end instance popped but never used.
    std::expected<void, QueueError> chain_at(const GuestMemory& mem, std::uint16_t head,
                                             DescriptorChain& out) const {
        if (desc_ == nullptr || head >= size_) {
            return std::unexpected(desc_ == nullptr ? QueueError::kNotReady
                                                    : QueueError::kHeadOutOfRange);
        }
        return walk(mem, head, out);
    }

    std::uint16_t next_avail() const { return next_avail_; }
    std::uint16_t size() const { return size_; }
    bool broken() const { return broken_; }

  private:
    std::expected<void, QueueError> walk(const GuestMemory& mem, std::uint16_t head,
                                         DescriptorChain& out) const;
    std::unexpected<QueueError> fail(QueueError e) {
        broken_ = true;
        return std::unexpected(e);
    }

    QueueConfig cfg_;
    QueueFeatures features_;
    const SplitDesc* desc_ = nullptr;
    const SplitAvailHeader* avail_ = nullptr;
    const le16* avail_ring_ = nullptr;  // avail_ring_[size_] is used_event
    SplitUsedHeader* used_ = nullptr;
    SplitUsedElem* used_ring_ = nullptr;  // followed by avail_event
    std::uint16_t size_ = 0;
    std::uint16_t next_avail_ = 0;    // free-running, next avail ring slot to read
    std::uint16_t shadow_avail_ = 0;  // last avail->idx read
    std::uint16_t next_used_ = 0;     // free-running, next used ring slot to write
    std::uint16_t published_used_ = 0;
    bool published_valid_ = false;  // false until the first notification decision
    bool broken_ = false;
};

}  // namespace vireo::virtq
