// Guest memory: the regions of guest-physical address space a device may touch.
//
// The guest is hostile. Every translation checks the whole range [gpa, gpa+len) with overflow
// checks and never returns host memory outside a mapped region. Ranges that cross from one
// region into an adjacent one are split into segments (for_each_segment) or rejected (translate).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <expected>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "memory/unique_fd.hpp"

namespace vireo {

enum class MemoryError {
    kOverlap,         // a new region overlaps an existing one
    kEmpty,           // zero-sized region
    kWrapsAround,     // gpa + size overflows 2^64
    kMapFailed,       // mmap/memfd/ftruncate failed (errno is logged by the caller)
    kTooManyRegions,  // beyond the configured slot limit
    kNotFound,        // no region at that address
};

std::string_view to_string(MemoryError e);

// One contiguous guest-physical range backed by a host mapping.
class MemoryRegion {
  public:
    // `host` is where gpa lives; [map_base, map_base + map_len) is the whole reservation
    // (guard pages included) that the destructor unmaps.
    MemoryRegion(std::uint64_t gpa, std::uint64_t size, std::uint8_t* host, std::uint8_t* map_base,
                 std::size_t map_len, UniqueFd fd, std::uint64_t fd_offset,
                 std::uint64_t user_addr);
    ~MemoryRegion();
    MemoryRegion(const MemoryRegion&) = delete;
    MemoryRegion& operator=(const MemoryRegion&) = delete;

    std::uint64_t gpa() const { return gpa_; }
    std::uint64_t size() const { return size_; }
    std::uint64_t end() const { return gpa_ + size_; }  // exclusive; never overflows (checked)
    std::uint8_t* host() const { return host_; }
    // The shared-memory fd behind this region (-1 for private anonymous memory), so the region
    // can be handed to another process (vhost-user SET_MEM_TABLE, the hypervisor bridge).
    int fd() const { return fd_.get(); }
    std::uint64_t fd_offset() const { return fd_offset_; }
    // Front-end virtual address of the region's start (vhost-user ring addresses are given in
    // the front end's address space). Zero when not applicable.
    std::uint64_t user_addr() const { return user_addr_; }

    bool contains(std::uint64_t gpa, std::uint64_t len) const {
        return gpa >= gpa_ && len <= size_ && gpa - gpa_ <= size_ - len;
    }

  private:
    std::uint64_t gpa_;
    std::uint64_t size_;
    std::uint8_t* host_;      // host address of gpa_
    std::uint8_t* map_base_;  // start of the reservation: guard page, mapping, guard page
    std::size_t map_len_;
    UniqueFd fd_;
    std::uint64_t fd_offset_;
    std::uint64_t user_addr_;
};

// A contiguous host piece of a guest range.
struct HostSegment {
    std::uint8_t* host;
    std::uint64_t gpa;
    std::uint64_t len;
};

// False when `fd` is a file (regular file, memfd, hugetlbfs) that ends before offset + len:
// mapping beyond its end succeeds, but the first access there raises SIGBUS, so a hostile peer
// handing over a short file could kill the process. Other kinds (block or character devices)
// cannot be checked by size and pass.
bool fd_covers(int fd, std::uint64_t offset, std::uint64_t len);

class GuestMemory {
  public:
    GuestMemory() = default;
    GuestMemory(GuestMemory&&) noexcept = default;
    GuestMemory& operator=(GuestMemory&&) noexcept = default;

    // --- construction -------------------------------------------------------------------
    // Anonymous shared memory backed by a memfd (so its fd can be passed to another process).
    std::expected<void, MemoryError> add_memfd(std::uint64_t gpa, std::uint64_t size,
                                               const char* name = "vireo-guest");
    // Maps `size` bytes of `fd` at `fd_offset` (vhost-user SET_MEM_TABLE, a file, a memfd).
    // Takes ownership of fd. `mmap_offset` rules follow vhost-user: fd_offset is the offset into
    // the file, which need not be page aligned (we align the mapping ourselves).
    std::expected<void, MemoryError> add_fd(std::uint64_t gpa, std::uint64_t size, UniqueFd fd,
                                            std::uint64_t fd_offset, std::uint64_t user_addr = 0,
                                            bool read_only = false);
    // Private anonymous memory (tests, a VMM's RAM that is never shared).
    std::expected<void, MemoryError> add_anonymous(std::uint64_t gpa, std::uint64_t size);
    // Removes the region that starts at `gpa` with `size` (vhost-user REM_MEM_REG).
    std::expected<void, MemoryError> remove(std::uint64_t gpa, std::uint64_t size);

    std::span<const std::unique_ptr<MemoryRegion>> regions() const { return regions_; }
    std::size_t region_count() const { return regions_.size(); }

    // --- translation (hot path) ----------------------------------------------------------
    // Host pointer for [gpa, gpa+len) if the whole range lies inside one region, else nullptr.
    // len == 0 is valid and translates like a 1-byte access at gpa would (it must be in a region).
    std::uint8_t* translate(std::uint64_t gpa, std::uint64_t len) const {
        const MemoryRegion* r = find(gpa);
        if (r == nullptr || !r->contains(gpa, len)) [[unlikely]] {
            return nullptr;
        }
        return r->host() + (gpa - r->gpa());
    }

    // Calls f(HostSegment) for each piece of [gpa, gpa+len), splitting at region boundaries.
    // Returns false (having called f for a prefix only) if any byte is unmapped or the range
    // overflows; f may return false to stop early, which is also reported as false.
    template <typename F>
    bool for_each_segment(std::uint64_t gpa, std::uint64_t len, F&& f) const {
        if (len > UINT64_MAX - gpa) {
            return false;
        }
        while (len > 0) {
            const MemoryRegion* r = find(gpa);
            if (r == nullptr) {
                return false;
            }
            const std::uint64_t off = gpa - r->gpa();
            const std::uint64_t piece = std::min(len, r->size() - off);
            if (!f(HostSegment{r->host() + off, gpa, piece})) {
                return false;
            }
            gpa += piece;
            len -= piece;
        }
        return true;
    }

    // Bounded copies; false if any byte of the range is outside guest memory.
    bool read(std::uint64_t gpa, void* dst, std::uint64_t len) const;
    bool write(std::uint64_t gpa, const void* src, std::uint64_t len) const;

    // Typed access for plain (non-racing) fields. T must be trivially copyable.
    template <typename T>
    bool read_obj(std::uint64_t gpa, T& out) const {
        return read(gpa, &out, sizeof(T));
    }
    template <typename T>
    bool write_obj(std::uint64_t gpa, const T& v) const {
        return write(gpa, &v, sizeof(T));
    }

    // Region lookup; nullptr if gpa is in no region.
    const MemoryRegion* find(std::uint64_t gpa) const {
        // Most guests have one to four regions: a linear scan over a flat, cache-friendly table
        // beats a tree. No shared "last hit" cache: queues on different threads would bounce it.
        if (index_.size() <= 4) [[likely]] {
            for (const auto& e : index_) {
                if (gpa - e.gpa < e.size) {
                    return e.region;
                }
            }
            return nullptr;
        }
        return find_slow(gpa);
    }

    // Translates a front-end virtual address (vhost-user) to a guest-physical one.
    std::expected<std::uint64_t, MemoryError> uva_to_gpa(std::uint64_t uva,
                                                         std::uint64_t len = 1) const;

  private:
    struct IndexEntry {
        std::uint64_t gpa;
        std::uint64_t size;
        const MemoryRegion* region;
    };

    const MemoryRegion* find_slow(std::uint64_t gpa) const;
    // Range, overlap and slot checks for a region about to be added.
    std::expected<void, MemoryError> check_new(std::uint64_t gpa, std::uint64_t size) const;
    std::expected<void, MemoryError> insert(std::unique_ptr<MemoryRegion> region);
    void rebuild_index();

    std::vector<std::unique_ptr<MemoryRegion>> regions_;  // sorted by gpa, non-overlapping
    std::vector<IndexEntry> index_;                       // same order, flat for lookups
};

}  // namespace vireo
