// Shared vocabulary of the guest-side (driver) virtqueues: error values, buffer segments, the
// DMA window that turns driver pointers into the addresses the device sees, and the bookkeeping
// both ring formats keep for every buffer in flight.
//
// Freestanding: no exceptions, no RTTI, no heap, nothing from libc (the ring code uses
// __builtin_memset only). Only compiler-provided headers and the freestanding vireo headers
// (spec/le.hpp, memory/ordering.hpp, virtq/ring_layout.hpp, virtq/queue_config.hpp) are used,
// so the same code runs in a bare-metal guest and in the host-side loopback tests.
#pragma once

#include <cstddef>
#include <cstdint>

#include "memory/ordering.hpp"
#include "spec/le.hpp"
#include "virtq/queue_config.hpp"
#include "virtq/ring_layout.hpp"

namespace vireo::driver {

// Every outcome of a driver queue operation. The first group are caller mistakes or transient
// conditions and leave the queue usable; the second group are device violations: the queue stops
// (broken()) rather than act on a value it cannot trust, and the caller resets the device
// (§2.1.2 DEVICE_NEEDS_RESET from the driver's side), then reclaims buffers with detach_unused().
enum class DriverError : std::uint8_t {
    kOk = 0,
    // --- setup and caller errors (queue stays usable) ---
    kNotReady,        // used before a successful init()
    kBadSize,         // size 0, above the template capacity, or (split) not a power of two
    kBadAlignment,    // ring memory or indirect pool not aligned to 16
    kTooSmall,        // ring memory or indirect pool smaller than the layout needs
    kOutsideWindow,   // ring memory or indirect pool not inside the DMA window
    kEmptyChain,      // add_buf() without any segment
    kNullToken,       // add_buf() token is null (null means "nothing" in get_buf())
    kLengthOverflow,  // total chain length above 2^32 - 1 (the device rejects it, §2.7.5)
    kChainTooLong,    // the chain can never fit: more descriptors than the ring has
    kNoSpace,         // not enough free descriptors now: reclaim with get_buf() and retry
    // --- device violations (queue becomes broken); broken() is "error >= kBroken" ---
    kBroken,             // an earlier violation stopped the queue
    kUsedIndexJump,      // split: used idx moved past what was made available
    kUsedIdOutOfRange,   // used id >= queue size
    kUsedIdNotInFlight,  // used id names no buffer the device holds
    kUsedLenTooLong,     // used length above the buffer's device-writable bytes
};

constexpr const char* to_string(DriverError e) {
    switch (e) {
        case DriverError::kOk:
            return "ok";
        case DriverError::kNotReady:
            return "queue not initialised";
        case DriverError::kBadSize:
            return "invalid queue size";
        case DriverError::kBadAlignment:
            return "ring memory misaligned";
        case DriverError::kTooSmall:
            return "ring memory too small";
        case DriverError::kOutsideWindow:
            return "ring memory outside the DMA window";
        case DriverError::kEmptyChain:
            return "buffer without segments";
        case DriverError::kNullToken:
            return "null token";
        case DriverError::kLengthOverflow:
            return "buffer length overflows 2^32";
        case DriverError::kChainTooLong:
            return "buffer has more segments than the ring";
        case DriverError::kNoSpace:
            return "no free descriptors";
        case DriverError::kBroken:
            return "queue stopped after a device violation";
        case DriverError::kUsedIndexJump:
            return "device moved used idx past available buffers";
        case DriverError::kUsedIdOutOfRange:
            return "device returned an out-of-range id";
        case DriverError::kUsedIdNotInFlight:
            return "device returned an id not in flight";
        case DriverError::kUsedLenTooLong:
            return "device used length above writable length";
    }
    return "unknown driver error";
}

// A pointer and a count: the freestanding stand-in for std::span (whose header is not part of
// every freestanding toolchain).
template <typename T>
class Slice {
  public:
    constexpr Slice() = default;
    constexpr Slice(T* data, std::size_t size) : data_(data), size_(size) {}
    template <std::size_t N>
    constexpr Slice(T (&array)[N]) : data_(array), size_(N) {}  // NOLINT: implicit by design

    constexpr T* data() const { return data_; }
    constexpr std::size_t size() const { return size_; }
    constexpr bool empty() const { return size_ == 0; }
    constexpr T& operator[](std::size_t i) const { return data_[i]; }
    constexpr T* begin() const { return data_; }
    constexpr T* end() const { return data_ + size_; }

  private:
    T* data_ = nullptr;
    std::size_t size_ = 0;
};

// One piece of a buffer, in device (guest-physical) addresses.
struct Segment {
    std::uint64_t addr = 0;
    std::uint32_t len = 0;
};
using Segments = Slice<const Segment>;

// The part of the driver's address space the device can reach, and where the device sees it:
// device address = pointer - host_base + device_base. A bare-metal guest with identity-mapped
// RAM uses identity(); the host-side tests map a GuestMemory region (host pointer → GPA).
class DmaWindow {
  public:
    constexpr DmaWindow() = default;
    DmaWindow(const void* host_base, std::uint64_t device_base, std::uint64_t size)
        : host_base_(reinterpret_cast<std::uintptr_t>(host_base)),
          device_base_(device_base),
          size_(size) {}
    // Device addresses equal pointers; the whole address space is reachable.
    static constexpr DmaWindow identity() { return DmaWindow{}; }

    bool contains(const void* p, std::uint64_t len) const {
        const std::uint64_t off = reinterpret_cast<std::uintptr_t>(p) - host_base_;
        return reinterpret_cast<std::uintptr_t>(p) >= host_base_ && len <= size_ &&
               off <= size_ - len;
    }
    // Only meaningful for pointers that contains() accepted (checked once, at init()).
    std::uint64_t to_device(const void* p) const {
        return reinterpret_cast<std::uintptr_t>(p) - host_base_ + device_base_;
    }

  private:
    std::uintptr_t host_base_ = 0;
    std::uint64_t device_base_ = 0;
    std::uint64_t size_ = UINT64_MAX;
};

// Ring features the driver negotiated (the ring format itself is the choice of driver class).
struct DriverFeatures {
    bool event_idx = false;  // VIRTIO_F_EVENT_IDX
    bool indirect = false;   // VIRTIO_F_INDIRECT_DESC

    static constexpr DriverFeatures from_bits(std::uint64_t negotiated) {
        return {(negotiated & virtq::bit(virtq::kFEventIdx)) != 0,
                (negotiated & virtq::bit(virtq::kFIndirectDesc)) != 0};
    }
};

// Caller-provided, device-visible memory for indirect tables: `per_slot` 16-byte descriptors for
// each of the queue's `size` slots (slot = split head index / packed buffer id), so a buffer in
// flight owns its table and no allocator is needed. Without a pool (or without the feature),
// every buffer is a direct chain.
struct IndirectPool {
    void* memory = nullptr;
    std::size_t bytes = 0;
    std::uint16_t per_slot = 0;
};

constexpr std::size_t indirect_pool_bytes(std::uint16_t size, std::uint16_t per_slot) {
    return std::size_t{16} * size * per_slot;
}

// Caller-provided, device-visible memory holding the rings (alignment 16).
struct RingMemory {
    void* memory = nullptr;
    std::size_t bytes = 0;
};

inline constexpr std::size_t kRingAlign = 16;  // §2.7 / §2.8: descriptor tables aligned to 16

namespace detail {

// What the driver remembers about a buffer the device holds. Everything the driver needs to
// complete or reclaim a buffer comes from here, never from ring memory the device can rewrite.
struct InFlight {
    void* token = nullptr;       // null: slot free
    std::uint32_t writable = 0;  // device-writable bytes: the ceiling for the used length
    std::uint16_t descs = 0;     // ring descriptors the buffer occupies
    std::uint16_t last = 0;      // split: last descriptor of the chain (free-list splice)
};

// Shape of a buffer, validated before anything is written.
struct ChainShape {
    DriverError error = DriverError::kOk;
    std::size_t segments = 0;
    std::uint32_t writable = 0;
};

inline ChainShape measure(Segments out, Segments in) {
    ChainShape s;
    s.segments = out.size() + in.size();
    if (s.segments == 0) {
        s.error = DriverError::kEmptyChain;
        return s;
    }
    // The device rejects chains whose total length exceeds 2^32 - 1 (§2.7.5 len is le32 and
    // a used length must be representable); refuse them here instead of breaking the queue.
    std::uint64_t total = 0;
    std::uint64_t writable = 0;
    for (const Segment& seg : out) {
        total += seg.len;
    }
    for (const Segment& seg : in) {
        total += seg.len;
        writable += seg.len;
    }
    if (total > UINT32_MAX || s.segments > virtq::kMaxQueueSize) {
        s.error = total > UINT32_MAX ? DriverError::kLengthOverflow : DriverError::kChainTooLong;
        return s;
    }
    s.writable = static_cast<std::uint32_t>(writable);
    return s;
}

// A validated buffer and how it goes into the ring: through the slot's indirect table when one
// exists and the chain has 2..per_slot segments, else as direct descriptors.
struct ChainPlan : ChainShape {
    bool indirect = false;
    std::size_t needed = 0;  // ring descriptors
};

inline ChainPlan plan_chain(Segments out, Segments in, const void* token, bool have_tables,
                            std::size_t per_slot, std::size_t size, std::size_t num_free) {
    ChainPlan p;
    static_cast<ChainShape&>(p) = measure(out, in);
    if (p.error != DriverError::kOk) {
        return p;
    }
    if (token == nullptr) {
        p.error = DriverError::kNullToken;
        return p;
    }
    p.indirect = have_tables && p.segments > 1 && p.segments <= per_slot;
    p.needed = p.indirect ? 1 : p.segments;
    if (p.needed > size) {
        p.error = DriverError::kChainTooLong;  // §2.7.5.3.1, §2.8.17: never longer than the queue
    } else if (p.needed > num_free) {
        p.error = DriverError::kNoSpace;  // the whole chain must fit before it starts
    }
    return p;
}

// Validates a used element against the driver's own records (the device is not trusted:
// §2.7.8.2 / §2.8.22 give the rules an honest device follows; a dishonest one is caught here).
template <std::size_t N>
DriverError check_used(const InFlight (&table)[N], std::uint16_t size, std::uint32_t id,
                       std::uint32_t len) {
    if (id >= size) {
        return DriverError::kUsedIdOutOfRange;
    }
    if (table[id].token == nullptr) {
        return DriverError::kUsedIdNotInFlight;
    }
    if (len > table[id].writable) {
        return DriverError::kUsedLenTooLong;
    }
    return DriverError::kOk;
}

// Validates caller-provided device-visible memory: aligned, large enough, inside the window.
inline DriverError check_area(const DmaWindow& window, const void* p, std::size_t have,
                              std::size_t need) {
    if (p == nullptr || have < need) {
        return DriverError::kTooSmall;
    }
    if (reinterpret_cast<std::uintptr_t>(p) % kRingAlign != 0) {
        return DriverError::kBadAlignment;
    }
    if (!window.contains(p, need)) {
        return DriverError::kOutsideWindow;
    }
    return DriverError::kOk;
}

// Validates the indirect pool. `tables` is null when buffers are always direct: the feature was
// not negotiated or the caller gave no pool (both are legitimate configurations).
inline DriverError check_pool(const DmaWindow& window, bool negotiated, const IndirectPool& pool,
                              std::uint16_t size, void** tables) {
    *tables = nullptr;
    if (!negotiated || pool.memory == nullptr || pool.per_slot < 2) {
        return DriverError::kOk;  // a one-entry table would never beat a direct descriptor
    }
    if (auto e =
            check_area(window, pool.memory, pool.bytes, indirect_pool_bytes(size, pool.per_slot));
        e != DriverError::kOk) {
        return e;
    }
    *tables = pool.memory;
    return DriverError::kOk;
}

}  // namespace detail

}  // namespace vireo::driver
