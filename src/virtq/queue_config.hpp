// What a transport tells a device-side queue: geometry, negotiated ring features, and the
// device-side state that survives a reconnect or snapshot.
#pragma once

#include <cstdint>

#include "virtq/features.hpp"

namespace vireo::virtq {

// The three guest-physical areas of a virtqueue (§2.6). Names follow the spec's transport-neutral
// terms: for split rings they are the descriptor table, available ring and used ring; for packed
// rings the descriptor ring, driver event suppression and device event suppression areas.
struct QueueConfig {
    std::uint16_t size = 0;
    std::uint64_t desc_addr = 0;
    std::uint64_t driver_addr = 0;
    std::uint64_t device_addr = 0;
};

struct QueueFeatures {
    bool packed = false;     // VIRTIO_F_RING_PACKED
    bool event_idx = false;  // VIRTIO_F_EVENT_IDX
    bool indirect = false;   // VIRTIO_F_INDIRECT_DESC

    static constexpr QueueFeatures from_bits(std::uint64_t negotiated) {
        return {(negotiated & bit(kFRingPacked)) != 0, (negotiated & bit(kFEventIdx)) != 0,
                (negotiated & bit(kFIndirectDesc)) != 0};
    }
};

// Device-side ring position: enough to resume a queue after the back end restarts
// (vhost-user SET_VRING_BASE / GET_VRING_BASE) or a snapshot. For packed rings the wrap
// counters travel in bit 15 of the indices, as vhost-user encodes them.
struct QueueState {
    QueueConfig config;
    QueueFeatures features;
    std::uint16_t next_avail = 0;  // split: free-running avail index; packed: slot | wrap << 15
    std::uint16_t next_used = 0;   // split: free-running used index;  packed: slot | wrap << 15
};

}  // namespace vireo::virtq
