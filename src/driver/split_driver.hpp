// Driver (guest) side of a split virtqueue (virtio 1.2 §2.7). Freestanding: see driver_common.hpp.
//
// Usage: init() with caller-provided ring memory (split_ring_bytes()), tell the device config()
// and DRIVER_OK; then add_buf() stages buffers, kick_prepare() publishes them and says whether
// to notify, get_buf() returns completed tokens, disable_cb()/enable_cb() steer interrupts.
//
// The device is not trusted: used ids and lengths are checked against the driver's own records,
// and the free list and chain bookkeeping live in driver-private memory (never read back from
// the descriptor table, which the device could rewrite). A violation stops the queue.
#pragma once

#include <cstddef>
#include <cstdint>

#include "driver/driver_common.hpp"

namespace vireo::driver {

// §2.7: descriptor table (align 16), available ring (align 2), used ring (align 4), packed into
// one caller-provided block in that order.
struct SplitLayout {
    std::size_t desc = 0;
    std::size_t avail = 0;
    std::size_t used = 0;
    std::size_t total = 0;
};

constexpr SplitLayout split_layout(std::uint16_t size) {
    SplitLayout l;
    l.desc = 0;
    l.avail = virtq::split_desc_bytes(size);
    const std::size_t avail_end = l.avail + virtq::split_avail_bytes(size);
    l.used = (avail_end + virtq::kSplitUsedAlign - 1) & ~(virtq::kSplitUsedAlign - 1);
    l.total = l.used + virtq::split_used_bytes(size);
    return l;
}

constexpr std::size_t split_ring_bytes(std::uint16_t size) {
    return split_layout(size).total;
}

// `Capacity` bounds the queue size and sizes the driver-private bookkeeping, so a guest holds a
// queue in a static object and nothing is allocated.
template <std::uint16_t Capacity>
class SplitDriver {
    static_assert(Capacity > 0 && Capacity <= virtq::kMaxQueueSize &&
                      (Capacity & (Capacity - 1)) == 0,
                  "split queue sizes are powers of two up to 32768 (§2.7)");

  public:
    constexpr SplitDriver() = default;
    SplitDriver(const SplitDriver&) = delete;
    SplitDriver& operator=(const SplitDriver&) = delete;

    // Lays the rings out in `ring` (zeroed here, §2.7.10: used flags start at 0) and resets all
    // driver state. Also the way back after a device reset, once detach_unused() ran dry.
    [[nodiscard]] DriverError init(std::uint16_t size, DriverFeatures features,
                                   const DmaWindow& window, RingMemory ring,
                                   IndirectPool pool = {}) {
        reset();
        if (size == 0 || size > Capacity || (size & (size - 1)) != 0) {
            return DriverError::kBadSize;
        }
        const SplitLayout layout = split_layout(size);
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
        desc_ = reinterpret_cast<virtq::SplitDesc*>(base + layout.desc);
        avail_ = reinterpret_cast<virtq::SplitAvailHeader*>(base + layout.avail);
        avail_ring_ = reinterpret_cast<le16*>(avail_ + 1);
        used_ = reinterpret_cast<const virtq::SplitUsedHeader*>(base + layout.used);
        used_ring_ = reinterpret_cast<const virtq::SplitUsedElem*>(used_ + 1);
        indirect_ = static_cast<virtq::SplitDesc*>(tables);
        per_slot_ = tables != nullptr ? pool.per_slot : 0;
        for (std::uint16_t i = 0; i < size; ++i) {
            next_[i] = static_cast<std::uint16_t>(i + 1);
        }
        num_free_ = size;
        free_head_ = 0;
        error_ = DriverError::kOk;
        return DriverError::kOk;
    }

    // The ring addresses to give the device (device addresses, via the DMA window).
    virtq::QueueConfig config() const {
        return {size_, window_.to_device(desc_), window_.to_device(avail_),
                window_.to_device(used_)};
    }

    // Stages a buffer: `out` device-readable segments, then `in` device-writable ones
    // (§2.7.4.2 order). It becomes visible to the device at the next kick_prepare().
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

        const std::uint16_t head = free_head_;
        std::uint16_t last = head;
        if (indirect) {
            // §2.7.5.3: one INDIRECT descriptor in the ring refers to a table holding the chain;
            // the table belongs to this head while the buffer is in flight.
            virtq::SplitDesc* table = indirect_ + std::size_t{head} * per_slot_;
            write_chain(table, out, in,
                        [](std::uint16_t i) { return static_cast<std::uint16_t>(i + 1); });
            fill(desc_[head], window_.to_device(table),
                 static_cast<std::uint32_t>(shape.segments * sizeof(virtq::SplitDesc)),
                 virtq::kDescFIndirect, 0);
        } else {
            last = write_chain(
                desc_, out, in, [this](std::uint16_t i) { return next_[i]; }, head);
        }
        free_head_ = next_[last];
        num_free_ = static_cast<std::uint16_t>(num_free_ - shape.needed);
        state_[head] = {token, shape.writable, static_cast<std::uint16_t>(shape.needed), last};

        // §2.7.13.2: the head goes into the next available ring slot; the device reads it only
        // after the idx store in kick_prepare(), so no ordering is needed here.
        store_relaxed(&avail_ring_[avail_idx_ & (size_ - 1)], head);
        ++avail_idx_;
        return DriverError::kOk;
    }

    // Publishes the staged buffers; true if the device wants an available buffer notification.
    [[nodiscard]] bool kick_prepare() {
        if (error_ != DriverError::kOk || avail_idx_ == kicked_idx_) {
            return false;
        }
        const std::uint16_t old_idx = kicked_idx_;
        const std::uint16_t new_idx = avail_idx_;
        // §2.7.13.3.1: a memory barrier before the idx update, so the descriptors and ring
        // entries behind it are visible first. Release pairs with the device's acquire of idx.
        store_release(&avail_->idx, new_idx);
        kicked_idx_ = new_idx;
        // §2.7.13.4.1: a barrier before reading flags / avail_event. Store→load: without it the
        // device may read the old idx, decide to sleep, and we read its old "no kick" value.
        full_fence();
        if (features_.event_idx) {
            // §2.7.10.1: notify when the idx passed avail_event in this batch.
            return virtq::vring_need_event(load_relaxed(avail_event()), new_idx, old_idx);
        }
        return (load_relaxed(&used_->flags) & virtq::kUsedFNoNotify) == 0;
    }

    // The next completed buffer's token and used length, or null when there is none (or the
    // queue broke: check error()).
    [[nodiscard]] void* get_buf(std::uint32_t* len) {
        if (error_ != DriverError::kOk) {
            return nullptr;
        }
        if (last_used_ == shadow_used_) {
            // Acquire pairs with the device's release of used idx (§2.7.8): the used elements
            // before it are visible after this load.
            const std::uint16_t idx = load_acquire(&used_->idx);
            // The device can only return what was published and not yet returned.
            if (static_cast<std::uint16_t>(idx - last_used_) >
                static_cast<std::uint16_t>(kicked_idx_ - last_used_)) {
                return fail(DriverError::kUsedIndexJump);
            }
            shadow_used_ = idx;
            if (idx == last_used_) {
                return nullptr;
            }
        }
        const virtq::SplitUsedElem& e = used_ring_[last_used_ & (size_ - 1)];
        const std::uint32_t id = load_relaxed(&e.id);
        const std::uint32_t used_len = load_relaxed(&e.len);
        if (auto err = detail::check_used(state_, size_, id, used_len); err != DriverError::kOk) {
            return fail(err);
        }
        ++last_used_;
        *len = used_len;
        return reclaim(static_cast<std::uint16_t>(id));
    }

    // Asks the device not to interrupt (a hint: §2.7.7 says suppression is unreliable).
    void disable_cb() {
        if (error_ != DriverError::kOk) {
            return;
        }
        if (features_.event_idx) {
            // §2.7.7.1: with EVENT_IDX flags must stay 0. An event point just behind the
            // driver is one the used idx has already passed: no interrupt until it wraps 2^16.
            store_relaxed(used_event(), static_cast<std::uint16_t>(last_used_ - 1));
        } else {
            store_relaxed(&avail_->flags, virtq::kAvailFNoInterrupt);
        }
    }

    // Asks for an interrupt at the next used buffer. False if buffers are already pending:
    // the caller must drain them with get_buf() (the interrupt for them may never come).
    [[nodiscard]] bool enable_cb() {
        if (error_ != DriverError::kOk) {
            return true;
        }
        if (features_.event_idx) {
            // §2.7.7.1: interrupt when the device writes used entry number last_used_.
            store_relaxed(used_event(), last_used_);
        } else {
            store_relaxed(&avail_->flags, std::uint16_t{0});
        }
        // §2.7.14 (the re-check after re-enabling): store→load, so either the device sees the
        // enabled state when it publishes or we see its new used idx here — never neither.
        full_fence();
        return load_acquire(&used_->idx) == last_used_;
    }

    // Reclaims buffers the device will never return, one per call (null when none are left).
    // Only after the device was reset (or never started): the rings are stale afterwards and
    // init() must run again before the queue is reused.
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
    // Forgets everything (no temporary object: a large Capacity would not fit a guest stack).
    void reset() {
        window_ = DmaWindow{};
        features_ = DriverFeatures{};
        desc_ = nullptr;
        avail_ = nullptr;
        avail_ring_ = nullptr;
        used_ = nullptr;
        used_ring_ = nullptr;
        indirect_ = nullptr;
        per_slot_ = size_ = num_free_ = free_head_ = 0;
        avail_idx_ = kicked_idx_ = last_used_ = shadow_used_ = detach_cursor_ = 0;
        error_ = DriverError::kNotReady;
        __builtin_memset(next_, 0, sizeof next_);
        __builtin_memset(static_cast<void*>(state_), 0, sizeof state_);
    }

    static void fill(virtq::SplitDesc& d, std::uint64_t addr, std::uint32_t len,
                     std::uint16_t flags, std::uint16_t next) {
        d.addr.set(addr);
        d.len.set(len);
        d.flags.set(flags);
        d.next.set(next);
    }

    // Writes out+in as a NEXT-linked chain into `table` starting at `first`, following
    // `next_of`; returns the last index written. Plain stores: the device reads the table only
    // after the release in kick_prepare().
    template <typename Next>
    static std::uint16_t write_chain(virtq::SplitDesc* table, Segments out, Segments in,
                                     Next next_of, std::uint16_t first = 0) {
        const std::size_t n = out.size() + in.size();
        std::uint16_t i = first;
        for (std::size_t k = 0; k < n; ++k) {
            const bool writable = k >= out.size();
            const Segment& seg = writable ? in[k - out.size()] : out[k];
            const bool more = k + 1 < n;
            const std::uint16_t next = more ? next_of(i) : 0;
            fill(table[i], seg.addr, seg.len,
                 static_cast<std::uint16_t>((more ? virtq::kDescFNext : 0) |
                                            (writable ? virtq::kDescFWrite : 0)),
                 next);
            if (!more) {
                return i;
            }
            i = next;
        }
        return i;
    }

    // Returns a buffer's descriptors to the free list; the chain's own links are in next_.
    void* reclaim(std::uint16_t head) {
        detail::InFlight& s = state_[head];
        void* token = s.token;
        next_[s.last] = free_head_;
        free_head_ = head;
        num_free_ = static_cast<std::uint16_t>(num_free_ + s.descs);
        s = {};
        return token;
    }

    void* fail(DriverError e) {
        error_ = e;
        return nullptr;
    }

    le16* used_event() { return &avail_ring_[size_]; }  // §2.7.6: after ring[size]
    const le16* avail_event() const {                   // §2.7.8: after ring[size]
        return reinterpret_cast<const le16*>(&used_ring_[size_]);
    }

    DmaWindow window_;
    DriverFeatures features_;
    virtq::SplitDesc* desc_ = nullptr;
    virtq::SplitAvailHeader* avail_ = nullptr;
    le16* avail_ring_ = nullptr;
    const virtq::SplitUsedHeader* used_ = nullptr;
    const virtq::SplitUsedElem* used_ring_ = nullptr;
    virtq::SplitDesc* indirect_ = nullptr;
    std::uint16_t per_slot_ = 0;
    std::uint16_t size_ = 0;
    std::uint16_t num_free_ = 0;
    std::uint16_t free_head_ = 0;
    std::uint16_t avail_idx_ = 0;    // free-running: staged buffers end here
    std::uint16_t kicked_idx_ = 0;   // avail idx as last published
    std::uint16_t last_used_ = 0;    // free-running: next used entry to read
    std::uint16_t shadow_used_ = 0;  // used idx as last read
    std::uint16_t detach_cursor_ = 0;
    DriverError error_ = DriverError::kNotReady;
    std::uint16_t next_[Capacity] = {};  // private free list and chain links
    detail::InFlight state_[Capacity] = {};
};

}  // namespace vireo::driver
