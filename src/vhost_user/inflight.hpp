// vhost-user inflight I/O tracking (vhost-user.rst "Inflight I/O tracking").
//
// The back end keeps, in a memfd shared with the front end, which chains it has popped but not
// yet completed. The front end keeps the memfd across a back-end crash or restart and hands it
// back with SET_INFLIGHT_FD; the new back end then resubmits those chains, oldest first, before
// it looks at new ones. The front end never interprets the buffer: the layout is ours, and
// follows the structures the spec suggests.
#pragma once

#include <cstddef>
#include <cstdint>
#include <expected>
#include <span>
#include <string>
#include <vector>

#include "devices/device.hpp"
#include "memory/guest_memory.hpp"
#include "memory/unique_fd.hpp"
#include "virtq/ring_layout.hpp"

namespace vireo::vhost_user {

inline constexpr std::uint16_t kInflightVersion = 1;
// Each queue's area starts on this boundary (a cache line: queues never share one).
inline constexpr std::uint64_t kInflightAlign = 64;

// Split ring: one entry per descriptor-table slot; only head slots are used.
struct DescStateSplit {
    std::uint8_t inflight;
    std::uint8_t padding[5];
    std::uint16_t next;  // links the last batch of used heads
    std::uint64_t counter;
};
static_assert(sizeof(DescStateSplit) == 16);

struct QueueRegionSplit {
    std::uint64_t features;
    std::uint16_t version;  // 0: never initialised
    std::uint16_t desc_num;
    std::uint16_t last_batch_head;
    std::uint16_t used_idx;  // used->idx after the last completed batch
    // DescStateSplit desc[desc_num] follows
};
static_assert(sizeof(QueueRegionSplit) == 16);

// Packed ring: entries hold copies of the descriptors, since ring slots are reused.
struct DescStatePacked {
    std::uint8_t inflight;
    std::uint8_t padding;
    std::uint16_t next;
    std::uint16_t last;
    std::uint16_t num;
    std::uint64_t counter;
    std::uint16_t id;
    std::uint16_t flags;
    std::uint32_t len;
    std::uint64_t addr;
};
static_assert(sizeof(DescStatePacked) == 32);

struct QueueRegionPacked {
    std::uint64_t features;
    std::uint16_t version;
    std::uint16_t desc_num;
    std::uint16_t free_head;
    std::uint16_t old_free_head;
    std::uint16_t used_idx;
    std::uint16_t old_used_idx;
    std::uint8_t used_wrap_counter;
    std::uint8_t old_used_wrap_counter;
    std::uint8_t padding[7];
    // DescStatePacked desc[desc_num] follows (8-byte aligned)
};
static_assert(sizeof(QueueRegionPacked) == 32);

// Bytes of one queue's area: room for either ring format, so the buffer handed out by
// GET_INFLIGHT_FD fits whichever format the driver negotiates later.
constexpr std::uint64_t inflight_queue_bytes(std::uint16_t queue_size) {
    const std::uint64_t split = sizeof(QueueRegionSplit) + sizeof(DescStateSplit) * queue_size;
    const std::uint64_t packed = sizeof(QueueRegionPacked) + sizeof(DescStatePacked) * queue_size;
    const std::uint64_t raw = split > packed ? split : packed;
    return (raw + kInflightAlign - 1) / kInflightAlign * kInflightAlign;
}

// The shared buffer: num_queues areas of inflight_queue_bytes(queue_size) each.
class InflightBuffer {
  public:
    InflightBuffer() = default;
    ~InflightBuffer();
    InflightBuffer(InflightBuffer&& o) noexcept;
    InflightBuffer& operator=(InflightBuffer&& o) noexcept;

    // A new zeroed buffer in a fresh memfd (GET_INFLIGHT_FD).
    static std::expected<InflightBuffer, std::string> create(std::uint16_t num_queues,
                                                             std::uint16_t queue_size);
    // Maps a buffer the front end hands back (SET_INFLIGHT_FD); takes ownership of fd.
    static std::expected<InflightBuffer, std::string> map(UniqueFd fd, std::uint64_t size,
                                                          std::uint64_t offset,
                                                          std::uint16_t num_queues,
                                                          std::uint16_t queue_size);

    bool valid() const { return base_ != nullptr; }
    int fd() const { return fd_.get(); }
    std::uint64_t size() const { return size_; }
    std::uint16_t num_queues() const { return num_queues_; }
    std::uint16_t queue_size() const { return queue_size_; }
    // Queue i's area; empty if i is beyond the buffer.
    std::span<std::uint8_t> queue(std::uint16_t i) const;

  private:
    UniqueFd fd_;
    std::uint8_t* map_base_ = nullptr;
    std::size_t map_len_ = 0;
    std::uint8_t* base_ = nullptr;
    std::uint64_t size_ = 0;
    std::uint16_t num_queues_ = 0;
    std::uint16_t queue_size_ = 0;
};

// Tracks one split ring in its area. Only the queue's worker thread calls it.
class SplitInflight final : public dev::InflightTracker {
  public:
    // `area` must hold inflight_queue_bytes(ring_size) bytes.
    SplitInflight(std::span<std::uint8_t> area, std::uint16_t ring_size);

    // Reconnect recovery: given used->idx as it is in guest memory now, repairs the last batch
    // and returns the heads still inflight, oldest (lowest counter) first. An uninitialised or
    // mismatched area is (re)initialised and yields nothing to resubmit.
    std::vector<std::uint16_t> recover(std::uint16_t used_ring_idx);

    void on_pop(virtq::UsedToken token) override;
    void on_push(virtq::UsedToken token) override;
    void on_publish() override;

  private:
    QueueRegionSplit* hdr_;
    DescStateSplit* desc_;
    std::uint16_t size_;
    std::uint64_t counter_ = 1;
    std::vector<std::uint16_t> batch_;  // heads pushed since the last publish
};

// Tracks one packed ring in its area (the spec's free-list scheme: each popped descriptor is
// copied into a free entry, since the driver may reuse ring slots before the chain completes).
// Only the queue's worker thread calls it.
class PackedInflight final : public dev::InflightTracker {
  public:
    // `area` must hold inflight_queue_bytes(ring_size) bytes; `desc_gpa` is the descriptor
    // ring, read on each pop to copy the chain's descriptors.
    PackedInflight(std::span<std::uint8_t> area, std::uint16_t ring_size, const GuestMemory& mem,
                   std::uint64_t desc_gpa);

    struct Recovery {
        std::vector<std::vector<virtq::PackedDesc>> chains;  // oldest (lowest counter) first
        std::uint16_t next_avail;                            // slot | wrap << 15
        std::uint16_t next_used;                             // slot | wrap << 15
        bool from_area = false;  // positions come from a valid area, not the front end
    };
    // Reconnect recovery ("When reconnecting" for packed rings). `next_avail`/`next_used` are
    // the positions the front end gave; an uninitialised or mismatched area is (re)initialised
    // at them and yields nothing to resubmit. Otherwise the positions come from the area: used
    // where the last completed batch left it, avail after every chain still inflight.
    Recovery recover(std::uint16_t next_avail, std::uint16_t next_used);

    void on_pop(virtq::UsedToken token) override;
    void on_push(virtq::UsedToken token) override;
    void on_publish() override;

  private:
    static constexpr std::uint16_t kNone = 0xffff;

    void advance(std::uint16_t& slot, bool& wrap, std::uint32_t n) const;

    QueueRegionPacked* hdr_;
    DescStatePacked* desc_;
    std::uint16_t size_;
    const GuestMemory* mem_;
    std::uint64_t desc_gpa_;
    std::uint64_t counter_ = 1;
    std::uint16_t avail_slot_ = 0;  // where the next popped chain's descriptors are
    bool avail_wrap_ = true;
    std::vector<std::uint16_t> id_entry_;  // buffer id -> head entry of its chain
    std::vector<std::uint16_t> batch_;     // head entries pushed since the last publish
    std::uint32_t batch_slots_ = 0;        // ring slots those used elements cover
    std::vector<std::uint16_t> pending_;   // head entries being resubmitted, in pop order
    std::size_t pending_next_ = 0;
};

}  // namespace vireo::vhost_user
