// Reserved feature bits that change how a virtqueue works (virtio 1.2 §6).
#pragma once

#include <cstdint>

namespace vireo::virtq {

inline constexpr unsigned kFIndirectDesc = 28;  // VIRTIO_F_INDIRECT_DESC
inline constexpr unsigned kFEventIdx = 29;      // VIRTIO_F_EVENT_IDX
inline constexpr unsigned kFVersion1 = 32;      // VIRTIO_F_VERSION_1
inline constexpr unsigned kFAccessPlatform = 33;
inline constexpr unsigned kFRingPacked = 34;  // VIRTIO_F_RING_PACKED
inline constexpr unsigned kFInOrder = 35;
inline constexpr unsigned kFOrderPlatform = 36;
inline constexpr unsigned kFNotificationData = 38;
inline constexpr unsigned kFRingReset = 40;  // VIRTIO_F_RING_RESET

constexpr std::uint64_t bit(unsigned n) {
    return std::uint64_t{1} << n;
}

}  // namespace vireo::virtq
