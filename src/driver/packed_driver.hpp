// Driver (guest) side of a packed virtqueue (virtio 1.2 §2.8). Freestanding: see
// driver_common.hpp. Same interface as SplitDriver.
//
// Buffers occupy consecutive ring slots from the driver's avail position and carry a buffer id
// (§2.8.6); the device returns them in any order by writing used descriptors at its own used
// position, skipping as many slots as the buffer had (§2.8.7). The driver tracks per id how many
// slots a buffer occupies, so it walks the used descriptors without trusting the device for
// anything but the id, which it validates.
#pragma once

#include <cstddef>
#include <cstdint>

#include "driver/driver_common.hpp"

namespace vireo::driver {

// §2.8.10.1: descriptor ring (align 16), driver event suppression area, device event
// suppression area (align 4 each), packed into one caller-provided block in that order.
struct PackedLayout {
    std::size_t desc = 0;
    std::size_t driver_event = 0;
    std::size_t device_event = 0;
    std::size_t total = 0;
};

constexpr PackedLayout packed_layout(std::uint16_t size) {
    PackedLayout l;
    l.driver_event = virtq::packed_desc_bytes(size);
    l.device_event = l.driver_event + sizeof(virtq::PackedEvent);
    l.total = l.device_event + sizeof(virtq::PackedEvent);
    return l;
}

constexpr std::size_t packed_ring_bytes(std::uint16_t size) {
    return packed_layout(size).total;
}

template <std::uint16_t Capacity>
class PackedDriver {
    static_assert(Capacity > 0 && Capacity <= virtq::kMaxQueueSize,
                  "packed queue sizes are at most 32768 (§2.8)");

  public:
    constexpr PackedDriver() = default;
    PackedDriver(const PackedDriver&) = delete;
    PackedDriver& operator=(const PackedDriver&) = delete;

    // Lays the ring out in `ring` (zeroed here: no descriptor looks available to the device,
    // whose wrap counter starts at 1, §2.8.1) and resets all driver state.
    [[nodiscard]] DriverError init(std::uint16_t size, DriverFeatures features,
                                   const DmaWindow& window, RingMemory ring,
                                   IndirectPool pool = {}) {
        reset();
        if (size == 0 || size > Capacity) {
            return DriverError::kBadSize;
        }
        const PackedLayout layout = packed_layout(size);
        if (auto e = detail::check_area(window, ring.memory, ring.bytes, layout.total);
            e != DriverError::kOk) {
            return e;
        }
        void* tables = nullptr;
        if (auto e = detail::check_pool(window, features.indirect, pool, size, &tables);
            e != DriverError::kOk) {
            return e;
        }
        auto* base = static_cast<std::uint8_t*>(ring.memory);
        __builtin_memset(base, 0, layout.total);
        window_ = window;
        features_ = features;
        size_ = size;
        ring_ = reinterpret_cast<virtq::PackedDesc*>(base + layout.desc);
        driver_event_ = reinterpret_cast<virtq::PackedEvent*>(base + layout.driver_event);
        device_event_ = reinterpret_cast<const virtq::PackedEvent*>(base + layout.device_event);
        indirect_ = static_cast<virtq::PackedDesc*>(tables);
        per_slot_ = tables != nullptr ? pool.per_slot : 0;
        for (std::uint16_t i = 0; i < size; ++i) {
            next_id_[i] = static_cast<std::uint16_t>(i + 1);
        }
        num_free_ = size;
        error_ = DriverError::kOk;
        return DriverError::kOk;
    }

    // The ring addresses to give the device (device addresses, via the DMA window).
    virtq::QueueConfig config() const {
        return {size_, window_.to_device(ring_), window_.to_device(driver_event_),
                window_.to_device(device_event_)};
    }

    // Stages a buffer: `out` device-readable segments, then `in` device-writable ones. It
    // becomes visible to the device at the next kick_prepare().
    [[nodiscard]] DriverError add_buf(Segments out, Segments in, void* token) {
        if (error_ != DriverError::kOk) {
            return broken() ? DriverError::kBroken : error_;
        }
        const detail::ChainPlan shape =
            detail::plan_chain(out, in, token, indirect_ != nullptr, per_slot_, size_, num_free_);
        if (shape.error != DriverError::kOk) {
            return shape.error;
        }
        const bool indirect = shape.indirect;
        // Fewer buffers than used slots are in flight, so a free id exists whenever a slot does.
        const std::uint16_t id = free_id_;
        free_id_ = next_id_[id];

        const std::uint16_t head = next_avail_;
        std::uint16_t head_flags = 0;
        if (indirect) {
            // §2.8.7: the table is a plain array of descriptors; only WRITE is meaningful in
            // it, and the buffer id goes in the ring descriptor that refers to it.
            virtq::PackedDesc* table = indirect_ + std::size_t{id} * per_slot_;
            for (std::size_t k = 0; k < shape.segments; ++k) {
                const bool writable = k >= out.size();
                const Segment& seg = writable ? in[k - out.size()] : out[k];
                virtq::PackedDesc& d = table[k];
                d.addr.set(seg.addr);
                d.len.set(seg.len);
                d.id.set(0);
                d.flags.set(writable ? virtq::kDescFWrite : 0);
            }
            head_flags = put(window_.to_device(table),
                             static_cast<std::uint32_t>(shape.segments * sizeof(virtq::PackedDesc)),
                             id, virtq::kDescFIndirect, true);
        } else {
            for (std::size_t k = 0; k < shape.segments; ++k) {
                const bool writable = k >= out.size();
                const Segment& seg = writable ? in[k - out.size()] : out[k];
                const std::uint16_t f =
                    static_cast<std::uint16_t>((writable ? virtq::kDescFWrite : 0) |
                                               (k + 1 < shape.segments ? virtq::kDescFNext : 0));
                const std::uint16_t flags = put(seg.addr, seg.len, id, f, k == 0);
                if (k == 0) {
                    head_flags = flags;
                }
            }
        }
        // §2.8.21.1: the first descriptor of a list is made available last. Within a batch
        // only the batch's first head matters: the device reads slots strictly in ring order
        // (§2.8.2), so it cannot reach a later head before the first one is exposed, and that
        // one's release store in kick_prepare() orders everything written before it.
        if (!batch_pending_) {
            batch_pending_ = true;
            batch_head_ = head;
            batch_head_flags_ = head_flags;
        } else {
            store_relaxed(&ring_[head].flags, head_flags);
        }
        num_free_ = static_cast<std::uint16_t>(num_free_ - shape.needed);
        staged_ = static_cast<std::uint16_t>(staged_ + shape.needed);
        state_[id] = {token, shape.writable, static_cast<std::uint16_t>(shape.needed), 0};
        ++in_flight_;
        return DriverError::kOk;
    }

    // Publishes the staged buffers; true if the device wants an available buffer notification.
    [[nodiscard]] bool kick_prepare() {
        if (error_ != DriverError::kOk || !batch_pending_) {
            return false;
        }
        // §2.8.21.1.1: a memory barrier before the flags update that exposes the descriptors.
        // Release pairs with the device's acquire load of the flags.
        store_release(&ring_[batch_head_].flags, batch_head_flags_);
        batch_pending_ = false;
        const std::uint16_t added = staged_;
        staged_ = 0;
        // §2.8.21.3.1: a barrier before reading the device event suppression area. Store→load:
        // otherwise the device may miss the new flags and sleep while we read its old "no kick".
        full_fence();
        const std::uint16_t flags = load_relaxed(&device_event_->flags) & kEventFlagsMask;
        if (flags == virtq::kEventFlagsDisable) {
            return false;
        }
        if (flags != virtq::kEventFlagsDesc || !features_.event_idx) {
            return true;  // ENABLE; DESC without EVENT_IDX or reserved values: kick to be safe
        }
        // §2.8.10: kick if the slots published since the last kick include the event slot.
        // Unwrap the event offset onto the same line as our position: an event in the
        // previous lap (other wrap counter) lies `size` slots behind.
        const std::uint16_t off_wrap = load_relaxed(&device_event_->off_wrap);
        std::uint16_t event = off_wrap & kOffsetMask;
        if (((off_wrap & kWrapBit) != 0) != avail_wrap_) {
            event = static_cast<std::uint16_t>(event - size_);
        }
        const std::uint16_t new_pos = next_avail_;
        return virtq::vring_need_event(event, new_pos, static_cast<std::uint16_t>(new_pos - added));
    }

    // The next completed buffer's token and used length, or null when there is none (or the
    // queue broke: check error()).
    [[nodiscard]] void* get_buf(std::uint32_t* len) {
        if (error_ != DriverError::kOk || !used_pending()) {
            return nullptr;
        }
        // used_pending()'s acquire load of flags orders these reads after the device's writes.
        const virtq::PackedDesc& d = ring_[next_used_];
        const std::uint16_t id = load_relaxed(&d.id);
        const std::uint32_t used_len = load_relaxed(&d.len);
        if (auto err = detail::check_used(state_, size_, id, used_len); err != DriverError::kOk) {
            error_ = err;
            return nullptr;
        }
        // §2.8.7 / §2.8.22: the next used descriptor follows this buffer's slots.
        const std::uint16_t skip = state_[id].descs;
        const std::uint32_t next = std::uint32_t{next_used_} + skip;
        if (next >= size_) {
            next_used_ = static_cast<std::uint16_t>(next - size_);
            used_wrap_ = !used_wrap_;
        } else {
            next_used_ = static_cast<std::uint16_t>(next);
        }
        *len = used_len;
        return reclaim(id);
    }

    // Asks the device not to interrupt (§2.8.10 DISABLE; a hint, the device may still do so).
    void disable_cb() {
        if (error_ != DriverError::kOk || event_flags_ == virtq::kEventFlagsDisable) {
            return;
        }
        event_flags_ = virtq::kEventFlagsDisable;
        store_relaxed(&driver_event_->flags, event_flags_);
    }

    // Asks for an interrupt at the next used buffer. False if buffers are already pending:
    // the caller must drain them with get_buf() (the interrupt for them may never come).
    [[nodiscard]] bool enable_cb() {
        if (error_ != DriverError::kOk) {
            return true;
        }
        if (features_.event_idx) {
            // §2.8.10: DESC mode, the event point being the next used slot we will read.
            store_relaxed(&driver_event_->off_wrap,
                          static_cast<std::uint16_t>(next_used_ | (used_wrap_ ? kWrapBit : 0)));
            event_flags_ = virtq::kEventFlagsDesc;
        } else {
            event_flags_ = virtq::kEventFlagsEnable;
        }
        // Release: off_wrap is visible no later than the flags that make the device use it.
        store_release(&driver_event_->flags, event_flags_);
        // §2.8.22 (the re-check after re-enabling): store→load, so either the device sees the
        // enabled state when it marks a descriptor used or we see that descriptor here.
        full_fence();
        return !used_pending();
    }

    // Reclaims buffers the device will never return, one per call (null when none are left).
    // Only after the device was reset (or never started): init() must run again afterwards.
    [[nodiscard]] void* detach_unused() {
        if (error_ == DriverError::kNotReady) {
            return nullptr;
        }
        for (; detach_cursor_ < size_; ++detach_cursor_) {
            if (state_[detach_cursor_].token != nullptr) {
                return reclaim(detach_cursor_);
            }
        }
        return nullptr;
    }

    DriverError error() const { return error_; }
    bool broken() const { return error_ >= DriverError::kBroken; }
    std::uint16_t size() const { return size_; }
    std::uint16_t num_free() const { return num_free_; }

  private:
    static constexpr std::uint16_t kEventFlagsMask = 0x3;  // §2.8.14: desc_event_flags : 2
    static constexpr std::uint16_t kWrapBit = 1u << 15;    // §2.8.14: desc_event_wrap
    static constexpr std::uint16_t kOffsetMask = kWrapBit - 1;

    // Writes one descriptor at the avail position and advances it (§2.8.21.1), toggling the
    // wrap counter after the last slot (§2.8.1). Returns the flags with the AVAIL/USED bits of
    // this slot's lap; they are stored here unless `defer` (the caller exposes the head last).
    std::uint16_t put(std::uint64_t addr, std::uint32_t len, std::uint16_t id, std::uint16_t flags,
                      bool defer) {
        virtq::PackedDesc& d = ring_[next_avail_];
        d.addr.set(addr);
        d.len.set(len);
        d.id.set(id);  // §2.8.6 wants it in the last descriptor; writing all is harmless
        // §2.8.1: available = AVAIL bit equal to the wrap counter, USED bit its inverse.
        flags |= avail_wrap_ ? virtq::kPackedDescFAvail : virtq::kPackedDescFUsed;
        if (!defer) {
            // Relaxed: the device reads it only after the batch head's release store.
            store_relaxed(&d.flags, flags);
        }
        if (++next_avail_ == size_) {
            next_avail_ = 0;
            avail_wrap_ = !avail_wrap_;
        }
        return flags;
    }

    // §2.8.1 / §2.8.22: the slot at our used position is used when both AVAIL and USED equal
    // our used wrap counter. Nothing in flight means nothing can be used, whatever the ring says.
    bool used_pending() const {
        if (in_flight_ == 0) {
            return false;
        }
        // Acquire pairs with the device's release store of the used flags.
        const std::uint16_t flags = load_acquire(&ring_[next_used_].flags);
        const bool avail = (flags & virtq::kPackedDescFAvail) != 0;
        const bool used = (flags & virtq::kPackedDescFUsed) != 0;
        return avail == used_wrap_ && used == used_wrap_;
    }

    void* reclaim(std::uint16_t id) {
        detail::InFlight& s = state_[id];
        void* token = s.token;
        num_free_ = static_cast<std::uint16_t>(num_free_ + s.descs);
        --in_flight_;
        next_id_[id] = free_id_;
        free_id_ = id;
        s = {};
        return token;
    }

    // Forgets everything (no temporary object: a large Capacity would not fit a guest stack).
    void reset() {
        window_ = DmaWindow{};
        features_ = DriverFeatures{};
        ring_ = nullptr;
        driver_event_ = nullptr;
        device_event_ = nullptr;
        indirect_ = nullptr;
        per_slot_ = size_ = num_free_ = free_id_ = in_flight_ = staged_ = 0;
        next_avail_ = next_used_ = batch_head_ = batch_head_flags_ = detach_cursor_ = 0;
        avail_wrap_ = used_wrap_ = true;  // §2.8.1: both wrap counters start at 1
        batch_pending_ = false;
        event_flags_ = virtq::kEventFlagsEnable;  // the zeroed area reads as ENABLE
        error_ = DriverError::kNotReady;
        __builtin_memset(next_id_, 0, sizeof next_id_);
        __builtin_memset(static_cast<void*>(state_), 0, sizeof state_);
    }

    DmaWindow window_;
    DriverFeatures features_;
    virtq::PackedDesc* ring_ = nullptr;
    virtq::PackedEvent* driver_event_ = nullptr;        // ours: interrupt suppression
    const virtq::PackedEvent* device_event_ = nullptr;  // the device's: kick suppression
    virtq::PackedDesc* indirect_ = nullptr;
    std::uint16_t per_slot_ = 0;
    std::uint16_t size_ = 0;
    std::uint16_t num_free_ = 0;    // free ring slots
    std::uint16_t free_id_ = 0;     // head of the private free-id list
    std::uint16_t in_flight_ = 0;   // buffers staged or held by the device
    std::uint16_t staged_ = 0;      // slots staged since the last kick_prepare()
    std::uint16_t next_avail_ = 0;  // slot of the next descriptor to write
    std::uint16_t next_used_ = 0;   // slot of the next used descriptor to read
    std::uint16_t batch_head_ = 0;  // first head of the staged batch, exposed in kick_prepare()
    std::uint16_t batch_head_flags_ = 0;
    std::uint16_t detach_cursor_ = 0;
    std::uint16_t event_flags_ = virtq::kEventFlagsEnable;  // shadow of driver_event_->flags
    bool avail_wrap_ = true;
    bool used_wrap_ = true;
    bool batch_pending_ = false;
    DriverError error_ = DriverError::kNotReady;
    std::uint16_t next_id_[Capacity] = {};  // private free-id list
    detail::InFlight state_[Capacity] = {};
};

}  // namespace vireo::driver
