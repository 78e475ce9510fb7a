// Test-only driver side of both ring formats: builds rings (well-formed or deliberately
// malformed) in guest memory and reads back what the device wrote, so device-queue tests assert
// on the guest-visible result rather than on queue internals.
//
// Every access goes through GuestMemory's bounds-checked read/write, so the builder itself never
// touches memory outside a region.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <stdexcept>
#include <vector>

#include "memory/guest_memory.hpp"
#include "virtq/queue_config.hpp"
#include "virtq/ring_layout.hpp"

namespace vireo::virtq::test {

inline const std::uint64_t kPage = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));

// Guest memory for ring tests. GuestMemory fences every region with PROT_NONE guard pages
// (ASan does not poison mmap'd memory), so an access a byte past a region faults in sanitizer
// and plain builds alike; regions are small (a few pages) to keep rings near those edges.
class GuardedMemory {
  public:
    // Adds a memfd-backed region of `size` bytes at `gpa`.
    void add(std::uint64_t gpa, std::uint64_t size) {
        if (!mem_.add_memfd(gpa, size)) {
            throw std::runtime_error("add_memfd failed");
        }
    }
    const GuestMemory& mem() const { return mem_; }

  private:
    GuestMemory mem_;
};

// The guest-physical layout every virtq test uses: small regions so rings and buffers sit next
// to region edges (and guard pages).
inline constexpr std::uint64_t kRingGpa = 0x10000;   // one page: the ring areas
inline constexpr std::uint64_t kDataGpa = 0x100000;  // four pages of buffers...
inline const std::uint64_t kDataSize = 4 * kPage;
inline const std::uint64_t kData2Gpa = kDataGpa + kDataSize;  // ...and two adjacent pages
inline const std::uint64_t kData2Size = 2 * kPage;
inline constexpr std::uint64_t kHoleGpa = 0x800000;  // mapped by nothing

inline void add_test_regions(GuardedMemory& mem) {
    mem.add(kRingGpa, kPage);
    mem.add(kDataGpa, kDataSize);
    mem.add(kData2Gpa, kData2Size);
}

// Guest bytes, for filling buffers and checking what the device wrote.
inline void fill(const GuestMemory& mem, std::uint64_t gpa, std::span<const std::uint8_t> bytes) {
    if (!mem.write(gpa, bytes.data(), bytes.size())) {
        throw std::runtime_error("fill outside guest memory");
    }
}
inline std::vector<std::uint8_t> bytes_at(const GuestMemory& mem, std::uint64_t gpa,
                                          std::size_t n) {
    std::vector<std::uint8_t> v(n);
    if (!mem.read(gpa, v.data(), n)) {
        throw std::runtime_error("read outside guest memory");
    }
    return v;
}
inline std::vector<std::uint8_t> pattern(std::size_t n, std::uint8_t seed) {
    std::vector<std::uint8_t> v(n);
    for (std::size_t i = 0; i < n; ++i) {
        v[i] = static_cast<std::uint8_t>(seed + i * 7);
    }
    return v;
}

// ----------------------------------------------------------------------------------------------
// Split ring, driver side (§2.7).
class SplitRing {
  public:
    SplitRing(const GuestMemory& mem, const QueueConfig& cfg) : mem_(&mem), cfg_(cfg) {}

    const QueueConfig& config() const { return cfg_; }

    void desc(std::uint16_t i, std::uint64_t addr, std::uint32_t len, std::uint16_t flags = 0,
              std::uint16_t next = 0) {
        SplitDesc d{le64::of(addr), le32::of(len), le16::of(flags), le16::of(next)};
        put(cfg_.desc_addr + 16ull * i, d);
    }
    // Places `head` in the next avail ring slot and publishes it by bumping avail->idx.
    void make_available(std::uint16_t head) {
        put(cfg_.driver_addr + 4 + 2ull * (avail_idx_ % cfg_.size), le16::of(head));
        ++avail_idx_;
        set_avail_idx(avail_idx_);
    }
    void set_avail_idx(std::uint16_t idx) {
        avail_idx_ = idx;
        put(cfg_.driver_addr + 2, le16::of(idx));
    }
    void set_avail_flags(std::uint16_t flags) { put(cfg_.driver_addr, le16::of(flags)); }
    void set_used_event(std::uint16_t v) {
        put(cfg_.driver_addr + 4 + 2ull * cfg_.size, le16::of(v));
    }

    std::uint16_t used_idx() const { return get<le16>(cfg_.device_addr + 2).get(); }
    std::uint16_t used_flags() const { return get<le16>(cfg_.device_addr).get(); }
    std::uint16_t avail_event() const {
        return get<le16>(cfg_.device_addr + 4 + 8ull * cfg_.size).get();
    }
    // The used element at free-running index i.
    SplitUsedElem used(std::uint16_t i) const {
        return get<SplitUsedElem>(cfg_.device_addr + 4 + 8ull * (i % cfg_.size));
    }

  private:
    template <typename T>
    void put(std::uint64_t gpa, const T& v) {
        if (!mem_->write_obj(gpa, v)) {
            throw std::runtime_error("ring builder write outside guest memory");
        }
    }
    template <typename T>
    T get(std::uint64_t gpa) const {
        T v{};
        if (!mem_->read_obj(gpa, v)) {
            throw std::runtime_error("ring builder read outside guest memory");
        }
        return v;
    }

    const GuestMemory* mem_;
    QueueConfig cfg_;
    std::uint16_t avail_idx_ = 0;
};

// ----------------------------------------------------------------------------------------------
// Packed ring, driver side (§2.8).
struct Buf {
    std::uint64_t addr = 0;
    std::uint32_t len = 0;
    bool write = false;
};

// A descriptor as the test wants it, before the AVAIL/USED bits are applied.
struct RawDesc {
    std::uint64_t addr = 0;
    std::uint32_t len = 0;
    std::uint16_t flags = 0;  // NEXT / WRITE / INDIRECT
};

struct UsedDesc {
    std::uint16_t id;
    std::uint32_t len;
    std::uint16_t flags;
};

class PackedRing {
  public:
    PackedRing(const GuestMemory& mem, const QueueConfig& cfg) : mem_(&mem), cfg_(cfg) {}

    const QueueConfig& config() const { return cfg_; }
    std::uint16_t avail_slot() const { return next_; }
    bool avail_wrap() const { return wrap_; }

    // Writes `descs` into consecutive slots from the next free one (wrapping), all with buffer
    // id `id`, the head's flags last as §2.8.21 requires. Returns the head slot.
    std::uint16_t add_raw(std::span<const RawDesc> descs, std::uint16_t id) {
        if (descs.empty()) {
            throw std::invalid_argument("empty chain");
        }
        const std::uint16_t head = next_;
        const bool head_wrap = wrap_;
        for (std::size_t i = 0; i < descs.size(); ++i) {
            if (i > 0) {
                write_desc(next_, descs[i].addr, descs[i].len, id,
                           descs[i].flags | avail_bits(wrap_));
            }
            if (++next_ == cfg_.size) {
                next_ = 0;
                wrap_ = !wrap_;
            }
        }
        write_desc(head, descs[0].addr, descs[0].len, id, descs[0].flags | avail_bits(head_wrap));
        chain_slots_[id] = static_cast<std::uint16_t>(descs.size());
        return head;
    }
    // A direct chain: NEXT on all but the last, WRITE as asked.
    std::uint16_t add_chain(std::span<const Buf> bufs, std::uint16_t id) {
        std::vector<RawDesc> raw;
        for (std::size_t i = 0; i < bufs.size(); ++i) {
            std::uint16_t f = bufs[i].write ? kDescFWrite : 0;
            if (i + 1 < bufs.size()) {
                f |= kDescFNext;
            }
            raw.push_back({bufs[i].addr, bufs[i].len, f});
        }
        return add_raw(raw, id);
    }
    // An indirect table at `table` holding `bufs`, referenced by one ring descriptor.
    std::uint16_t add_indirect(std::uint64_t table, std::span<const Buf> bufs, std::uint16_t id) {
        write_table(table, bufs);
        const RawDesc d{table, static_cast<std::uint32_t>(16 * bufs.size()), kDescFIndirect};
        return add_raw(std::span(&d, 1), id);
    }
    void write_table(std::uint64_t table, std::span<const Buf> bufs,
                     std::uint16_t extra_flags = 0) {
        for (std::size_t i = 0; i < bufs.size(); ++i) {
            const std::uint16_t f = (bufs[i].write ? kDescFWrite : 0) | extra_flags;
            put(table + 16 * i, PackedDesc{le64::of(bufs[i].addr), le32::of(bufs[i].len),
                                           le16::of(0), le16::of(f)});
        }
    }
    void write_desc(std::uint16_t slot, std::uint64_t addr, std::uint32_t len, std::uint16_t id,
                    std::uint16_t flags) {
        put(cfg_.desc_addr + 16ull * slot,
            PackedDesc{le64::of(addr), le32::of(len), le16::of(id), le16::of(flags)});
    }
    static std::uint16_t avail_bits(bool wrap) {
        return wrap ? kPackedDescFAvail : kPackedDescFUsed;
    }

    // The next used descriptor in ring order, if the device has marked it used; skips the
    // chain's slots as a driver does (§2.8.6).
    std::optional<UsedDesc> poll_used() {
        const PackedDesc d = get<PackedDesc>(cfg_.desc_addr + 16ull * used_);
        const std::uint16_t f = d.flags.get();
        const bool avail = (f & kPackedDescFAvail) != 0;
        const bool used = (f & kPackedDescFUsed) != 0;
        if (avail != used || used != used_wrap_) {
            return std::nullopt;
        }
        const std::uint16_t id = d.id.get();
        auto it = chain_slots_.find(id);
        if (it == chain_slots_.end()) {
            throw std::runtime_error("device used an unknown buffer id");
        }
        used_ += it->second;
        if (used_ >= cfg_.size) {
            used_ -= cfg_.size;
            used_wrap_ = !used_wrap_;
        }
        chain_slots_.erase(it);
        return UsedDesc{id, d.len.get(), f};
    }
    std::uint16_t used_slot() const { return used_; }
    bool used_wrap() const { return used_wrap_; }

    void set_driver_event(std::uint16_t flags, std::uint16_t off_wrap = 0) {
        put(cfg_.driver_addr, PackedEvent{le16::of(off_wrap), le16::of(flags)});
    }
    PackedEvent device_event() const { return get<PackedEvent>(cfg_.device_addr); }
    std::uint16_t desc_flags(std::uint16_t slot) const {
        return get<PackedDesc>(cfg_.desc_addr + 16ull * slot).flags.get();
    }

  private:
    template <typename T>
    void put(std::uint64_t gpa, const T& v) {
        if (!mem_->write_obj(gpa, v)) {
            throw std::runtime_error("ring builder write outside guest memory");
        }
    }
    template <typename T>
    T get(std::uint64_t gpa) const {
        T v{};
        if (!mem_->read_obj(gpa, v)) {
            throw std::runtime_error("ring builder read outside guest memory");
        }
        return v;
    }

    const GuestMemory* mem_;
    QueueConfig cfg_;
    std::uint16_t next_ = 0;  // driver's next avail slot
    bool wrap_ = true;        // Driver Ring Wrap Counter (§2.8.1)
    std::uint16_t used_ = 0;  // next slot to poll for a used descriptor
    bool used_wrap_ = true;
    std::map<std::uint16_t, std::uint16_t> chain_slots_;  // id -> ring slots in flight
};

}  // namespace vireo::virtq::test
