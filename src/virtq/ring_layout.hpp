// Virtqueue wire layouts (virtio 1.2 §2.7 split, §2.8 packed) and ring constants.
//
// Freestanding: shared by the host device side and the bare-metal guest drivers.
#pragma once

#include <cstddef>
#include <cstdint>

#include "spec/le.hpp"

namespace vireo::virtq {

inline constexpr std::uint16_t kMaxQueueSize = 32768;  // §2.7: Queue Size ≤ 32768

// --- split ring (§2.7) ------------------------------------------------------------------
inline constexpr std::uint16_t kDescFNext = 1;
inline constexpr std::uint16_t kDescFWrite = 2;
inline constexpr std::uint16_t kDescFIndirect = 4;
inline constexpr std::uint16_t kAvailFNoInterrupt = 1;
inline constexpr std::uint16_t kUsedFNoNotify = 1;

// §2.7.5: 16-byte descriptor table entries, table aligned to 16.
struct SplitDesc {
    le64 addr;
    le32 len;
    le16 flags;
    le16 next;
};
static_assert(sizeof(SplitDesc) == 16);
static_assert(offsetof(SplitDesc, flags) == 12 && offsetof(SplitDesc, next) == 14);

// §2.7.6: flags, idx, ring[size], used_event (EVENT_IDX only); aligned to 2.
struct SplitAvailHeader {
    le16 flags;
    le16 idx;
};
static_assert(sizeof(SplitAvailHeader) == 4);

// §2.7.8: flags, idx, ring[size] of (id, len), avail_event (EVENT_IDX only); aligned to 4.
struct SplitUsedElem {
    le32 id;
    le32 len;
};
static_assert(sizeof(SplitUsedElem) == 8);
struct SplitUsedHeader {
    le16 flags;
    le16 idx;
};
static_assert(sizeof(SplitUsedHeader) == 4);

inline constexpr std::uint64_t kSplitDescAlign = 16;
inline constexpr std::uint64_t kSplitAvailAlign = 2;
inline constexpr std::uint64_t kSplitUsedAlign = 4;

// Sizes in bytes of each area for a queue of `size` entries (the trailing event word included,
// as §2.7 lays it out whether or not EVENT_IDX is negotiated).
constexpr std::uint64_t split_desc_bytes(std::uint32_t size) {
    return 16ull * size;
}
constexpr std::uint64_t split_avail_bytes(std::uint32_t size) {
    return 4 + 2ull * size + 2;
}
constexpr std::uint64_t split_used_bytes(std::uint32_t size) {
    return 4 + 8ull * size + 2;
}

// --- packed ring (§2.8) -----------------------------------------------------------------
inline constexpr std::uint16_t kPackedDescFAvail = 1u << 7;
inline constexpr std::uint16_t kPackedDescFUsed = 1u << 15;
inline constexpr std::uint16_t kEventFlagsEnable = 0x0;
inline constexpr std::uint16_t kEventFlagsDisable = 0x1;
inline constexpr std::uint16_t kEventFlagsDesc = 0x2;

// §2.8.13: addr, len, id, flags; 16 bytes, ring aligned to 16.
struct PackedDesc {
    le64 addr;
    le32 len;
    le16 id;
    le16 flags;
};
static_assert(sizeof(PackedDesc) == 16);
static_assert(offsetof(PackedDesc, id) == 12 && offsetof(PackedDesc, flags) == 14);

// §2.8.10: event suppression structure (driver area and device area); aligned to 4.
struct PackedEvent {
    le16 off_wrap;  // bits 0..14 descriptor offset, bit 15 wrap counter
    le16 flags;     // kEventFlags*
};
static_assert(sizeof(PackedEvent) == 4);

inline constexpr std::uint64_t kPackedDescAlign = 16;
inline constexpr std::uint64_t kPackedEventAlign = 4;
constexpr std::uint64_t packed_desc_bytes(std::uint32_t size) {
    return 16ull * size;
}

// §2.7.7.2 / §2.8.10: the wrap-safe "has the index crossed the event point" test. True when
// event_idx lies in the half-open window (old_idx, new_idx] of indices published since the last
// notification, all arithmetic modulo 2^16.
constexpr bool vring_need_event(std::uint16_t event_idx, std::uint16_t new_idx,
                                std::uint16_t old_idx) {
    return static_cast<std::uint16_t>(new_idx - event_idx - 1) <
           static_cast<std::uint16_t>(new_idx - old_idx);
}

}  // namespace vireo::virtq
