#include "vhost_user/inflight.hpp"

#include <fmt/format.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "memory/guest_memory.hpp"
#include "virtq/ring_layout.hpp"

namespace vireo::vhost_user {

InflightBuffer::~InflightBuffer() {
    if (map_base_ != nullptr) {
        ::munmap(map_base_, map_len_);
    }
}

InflightBuffer::InflightBuffer(InflightBuffer&& o) noexcept
    : fd_(std::move(o.fd_)),
      map_base_(std::exchange(o.map_base_, nullptr)),
      map_len_(std::exchange(o.map_len_, 0)),
      base_(std::exchange(o.base_, nullptr)),
      size_(std::exchange(o.size_, 0)),
      num_queues_(std::exchange(o.num_queues_, 0)),
      queue_size_(std::exchange(o.queue_size_, 0)) {}

InflightBuffer& InflightBuffer::operator=(InflightBuffer&& o) noexcept {
    if (this != &o) {
        this->~InflightBuffer();
        new (this) InflightBuffer(std::move(o));
    }
    return *this;
}

namespace {

std::expected<void, std::string> check_geometry(std::uint16_t num_queues,
                                                std::uint16_t queue_size) {
    if (num_queues == 0 || queue_size == 0 || queue_size > virtq::kMaxQueueSize) {
        return std::unexpected(
            fmt::format("invalid inflight geometry: {} queues of size {}", num_queues, queue_size));
    }
    return {};
}

}  // namespace

std::expected<InflightBuffer, std::string> InflightBuffer::create(std::uint16_t num_queues,
                                                                  std::uint16_t queue_size) {
    if (auto ok = check_geometry(num_queues, queue_size); !ok) {
        return std::unexpected(ok.error());
    }
    const std::uint64_t size = inflight_queue_bytes(queue_size) * num_queues;
    UniqueFd fd(::memfd_create("vireo-inflight", MFD_CLOEXEC | MFD_ALLOW_SEALING));
    if (!fd || ::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) {
        return std::unexpected(fmt::format("inflight memfd: {}", std::strerror(errno)));
    }
    return map(std::move(fd), size, 0, num_queues, queue_size);
}

std::expected<InflightBuffer, std::string> InflightBuffer::map(UniqueFd fd, std::uint64_t size,
                                                               std::uint64_t offset,
                                                               std::uint16_t num_queues,
                                                               std::uint16_t queue_size) {
    if (auto ok = check_geometry(num_queues, queue_size); !ok) {
        return std::unexpected(ok.error());
    }
    const std::uint64_t need = inflight_queue_bytes(queue_size) * num_queues;
    if (size < need) {
        return std::unexpected(
            fmt::format("inflight buffer is {} bytes, {} queues of size {} need {}", size,
                        num_queues, queue_size, need));
    }
    const auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
    const std::uint64_t skew = offset % page;
    if (offset > static_cast<std::uint64_t>(INT64_MAX) || size > SIZE_MAX - skew) {
        return std::unexpected(std::string("inflight buffer offset/size out of range"));
    }
    if (!fd_covers(fd.get(), offset, size)) {
        return std::unexpected(std::string("inflight buffer extends past the end of its file"));
    }
    InflightBuffer b;
    b.map_len_ = size + skew;
    void* p = ::mmap(nullptr, b.map_len_, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(),
                     static_cast<off_t>(offset - skew));
    if (p == MAP_FAILED) {
        return std::unexpected(
            fmt::format("mapping the inflight buffer: {}", std::strerror(errno)));
    }
    b.map_base_ = static_cast<std::uint8_t*>(p);
    b.base_ = b.map_base_ + skew;
    b.fd_ = std::move(fd);
    b.size_ = size;
    b.num_queues_ = num_queues;
    b.queue_size_ = queue_size;
    return b;
}

std::span<std::uint8_t> InflightBuffer::queue(std::uint16_t i) const {
    if (base_ == nullptr || i >= num_queues_) {
        return {};
    }
    const std::uint64_t bytes = inflight_queue_bytes(queue_size_);
    return {base_ + bytes * i, bytes};
}

// --- split rings ------------------------------------------------------------------------

SplitInflight::SplitInflight(std::span<std::uint8_t> area, std::uint16_t ring_size)
    : hdr_(reinterpret_cast<QueueRegionSplit*>(area.data())),
      desc_(reinterpret_cast<DescStateSplit*>(area.data() + sizeof(QueueRegionSplit))),
      size_(ring_size) {
    batch_.reserve(ring_size);
}

std::vector<std::uint16_t> SplitInflight::recover(std::uint16_t used_ring_idx) {
    // The front end may hand back anything: a zeroed buffer (first start), one from a ring of
    // another size, or garbage. Only a buffer of our version and this ring size is trusted.
    if (hdr_->version != kInflightVersion || hdr_->desc_num != size_) {
        std::memset(desc_, 0, sizeof(DescStateSplit) * size_);
        hdr_->features = 0;
        hdr_->desc_num = size_;
        hdr_->last_batch_head = 0;
        hdr_->used_idx = used_ring_idx;
        hdr_->version = kInflightVersion;
        counter_ = 1;
        return {};
    }
    // A crash between publishing used->idx and clearing the batch's inflight flags leaves
    // used_idx behind: the batch (linked from last_batch_head) was completed, so clear it.
    if (hdr_->used_idx != used_ring_idx) {
        std::uint16_t n = static_cast<std::uint16_t>(used_ring_idx - hdr_->used_idx);
        std::uint16_t i = hdr_->last_batch_head;
        for (std::uint16_t step = 0; step < n && step < size_ && i < size_; ++step) {
            desc_[i].inflight = 0;
            i = desc_[i].next;
        }
        hdr_->used_idx = used_ring_idx;
    }
    std::vector<std::uint16_t> heads;
    std::uint64_t max_counter = 0;
    for (std::uint16_t i = 0; i < size_; ++i) {
        if (desc_[i].inflight == 1) {
            heads.push_back(i);
            max_counter = std::max(max_counter, desc_[i].counter);
        } else {
            desc_[i].inflight = 0;  // normalise anything that is not exactly 1
        }
    }
    std::stable_sort(heads.begin(), heads.end(), [&](std::uint16_t a, std::uint16_t b) {
        return desc_[a].counter < desc_[b].counter;
    });
    counter_ = max_counter + 1;
    return heads;
}

void SplitInflight::on_pop(virtq::UsedToken token) {
    if (token.id >= size_) {
        return;
    }
    desc_[token.id].counter = counter_++;
    desc_[token.id].inflight = 1;
}

void SplitInflight::on_push(virtq::UsedToken token) {
    if (token.id >= size_) {
        return;
    }
    desc_[token.id].next = hdr_->last_batch_head;
    hdr_->last_batch_head = token.id;
    batch_.push_back(token.id);
}

void SplitInflight::on_publish() {
    // Called after used->idx was published: the batch is now visible to the driver.
    for (std::uint16_t id : batch_) {
        desc_[id].inflight = 0;
    }
    hdr_->used_idx = static_cast<std::uint16_t>(hdr_->used_idx + batch_.size());
    batch_.clear();
}

// --- packed rings -----------------------------------------------------------------------

namespace {
constexpr std::uint16_t kWrapBit = 1u << 15;
constexpr std::uint16_t slot_of(std::uint16_t pos) {
    return pos & ~kWrapBit;
}
constexpr bool wrap_of(std::uint16_t pos) {
    return (pos & kWrapBit) != 0;
}
constexpr std::uint16_t encode(std::uint16_t slot, bool wrap) {
    return static_cast<std::uint16_t>(slot | (wrap ? kWrapBit : 0));
}
}  // namespace

PackedInflight::PackedInflight(std::span<std::uint8_t> area, std::uint16_t ring_size,
                               const GuestMemory& mem, std::uint64_t desc_gpa)
    : hdr_(reinterpret_cast<QueueRegionPacked*>(area.data())),
      desc_(reinterpret_cast<DescStatePacked*>(area.data() + sizeof(QueueRegionPacked))),
      size_(ring_size),
      mem_(&mem),
      desc_gpa_(desc_gpa),
      id_entry_(ring_size, kNone) {
    batch_.reserve(ring_size);
}

void PackedInflight::advance(std::uint16_t& slot, bool& wrap, std::uint32_t n) const {
    std::uint32_t s = slot + n % size_;
    if (s >= size_) {
        s -= size_;
        wrap = !wrap;
    }
    slot = static_cast<std::uint16_t>(s);
}

PackedInflight::Recovery PackedInflight::recover(std::uint16_t next_avail,
                                                 std::uint16_t next_used) {
    Recovery r{{}, next_avail, next_used, false};
    avail_slot_ = slot_of(next_avail);
    avail_wrap_ = wrap_of(next_avail);
    if (hdr_->version != kInflightVersion || hdr_->desc_num != size_ ||
        slot_of(hdr_->used_idx) >= size_ || slot_of(hdr_->old_used_idx) >= size_) {
        std::memset(desc_, 0, sizeof(DescStatePacked) * size_);
        // A linear free list ending in an out-of-range index (size_): never circular, so a walk
        // of the free list cannot run into entries that are in use.
        for (std::uint16_t i = 0; i < size_; ++i) {
            desc_[i].next = static_cast<std::uint16_t>(i + 1);
        }
        hdr_->features = 0;
        hdr_->desc_num = size_;
        hdr_->free_head = hdr_->old_free_head = 0;
        hdr_->used_idx = hdr_->old_used_idx = slot_of(next_used);
        hdr_->used_wrap_counter = hdr_->old_used_wrap_counter = wrap_of(next_used) ? 1 : 0;
        hdr_->version = kInflightVersion;
        counter_ = 1;
        return r;
    }
    // An interrupted batch: if the driver already sees the used descriptor at old_used_idx
    // (its flags no longer say "available" for the old wrap counter), the batch reached the
    // ring and is committed; otherwise it is rolled back.
    if (hdr_->used_idx != hdr_->old_used_idx) {
        virtq::PackedDesc d{};
        const bool read = mem_->read_obj(desc_gpa_ + sizeof d * hdr_->old_used_idx, d);
        const bool w = hdr_->old_used_wrap_counter != 0;
        const std::uint16_t avail_flags =
            w ? virtq::kPackedDescFAvail : static_cast<std::uint16_t>(virtq::kPackedDescFUsed);
        const std::uint16_t mask = virtq::kPackedDescFAvail | virtq::kPackedDescFUsed;
        if (read && (d.flags.get() & mask) != avail_flags) {
            hdr_->old_free_head = hdr_->free_head;
            hdr_->old_used_idx = hdr_->used_idx;
            hdr_->old_used_wrap_counter = hdr_->used_wrap_counter;
        }
    }
    hdr_->free_head = hdr_->old_free_head;
    hdr_->used_idx = hdr_->old_used_idx;
    hdr_->used_wrap_counter = hdr_->old_used_wrap_counter;
    // Entries on the free list are not inflight, whatever their flag says. The walk is bounded:
    // a corrupt (cyclic) list stops after size_ steps.
    for (std::uint16_t i = hdr_->free_head, n = 0; i < size_ && n < size_; i = desc_[i].next, ++n) {
        desc_[i].inflight = 0;
    }
    std::vector<std::uint16_t> heads;
    std::uint64_t max_counter = 0;
    for (std::uint16_t i = 0; i < size_; ++i) {
        if (desc_[i].inflight == 1 && desc_[i].num >= 1 && desc_[i].num <= size_) {
            heads.push_back(i);
            max_counter = std::max(max_counter, desc_[i].counter);
        } else {
            desc_[i].inflight = 0;
        }
    }
    std::stable_sort(heads.begin(), heads.end(), [&](std::uint16_t a, std::uint16_t b) {
        return desc_[a].counter < desc_[b].counter;
    });
    counter_ = max_counter + 1;
    std::uint16_t used_slot = hdr_->used_idx;
    bool used_wrap = hdr_->used_wrap_counter != 0;
    r.next_used = encode(used_slot, used_wrap);
    std::uint32_t slots = 0;
    for (std::uint16_t h : heads) {
        std::vector<virtq::PackedDesc> chain;
        std::uint16_t e = h;
        for (std::uint16_t k = 0; k < desc_[h].num && e < size_; ++k) {
            virtq::PackedDesc d{};
            d.addr.set(desc_[e].addr);
            d.len.set(desc_[e].len);
            d.id.set(desc_[e].id);
            d.flags.set(desc_[e].flags);
            chain.push_back(d);
            e = desc_[e].next;
        }
        if (chain.size() != desc_[h].num) {
            desc_[h].inflight = 0;  // a broken link: nothing sound to resubmit
            continue;
        }
        slots += desc_[h].num;
        pending_.push_back(h);
        r.chains.push_back(std::move(chain));
    }
    // Every popped chain's slots are either covered by used elements (up to used_idx) or
    // belong to a chain still inflight: the next available chain starts after all of them.
    advance(used_slot, used_wrap, slots);
    r.next_avail = encode(used_slot, used_wrap);
    r.from_area = true;
    avail_slot_ = used_slot;
    avail_wrap_ = used_wrap;
    return r;
}

void PackedInflight::on_pop(virtq::UsedToken token) {
    if (pending_next_ < pending_.size()) {
        // A resubmitted chain (Virtqueue hands them out first, in this order): its entries
        // already hold it; only the id mapping is new.
        const std::uint16_t h = pending_[pending_next_++];
        if (token.id < size_) {
            id_entry_[token.id] = h;
        }
        return;
    }
    std::uint16_t slot = avail_slot_;
    bool wrap = avail_wrap_;
    for (std::uint16_t k = 0; k < token.descs; ++k) {
        virtq::PackedDesc d{};
        (void)mem_->read_obj(desc_gpa_ + sizeof d * slot, d);  // the queue validated the ring
        const std::uint16_t head = hdr_->old_free_head;
        const std::uint16_t fh = hdr_->free_head;
        if (head >= size_ || fh >= size_) {
            break;  // corrupt list (a foreign buffer): stop tracking rather than write wild
        }
        if (k == 0) {
            desc_[head].num = 0;
            desc_[head].counter = counter_++;
            desc_[head].inflight = 1;
        }
        if (k + 1 == token.descs) {
            desc_[head].last = fh;
        }
        ++desc_[head].num;
        desc_[fh].addr = d.addr.get();
        desc_[fh].len = d.len.get();
        desc_[fh].flags = d.flags.get();
        desc_[fh].id = d.id.get();
        hdr_->free_head = desc_[fh].next;
        if (k + 1 == token.descs) {
            hdr_->old_free_head = hdr_->free_head;
            if (token.id < size_) {
                id_entry_[token.id] = head;
            }
        }
        advance(slot, wrap, 1);
    }
    avail_slot_ = slot;
    avail_wrap_ = wrap;
}

void PackedInflight::on_push(virtq::UsedToken token) {
    if (token.id >= size_ || id_entry_[token.id] == kNone) {
        return;
    }
    const std::uint16_t e = std::exchange(id_entry_[token.id], kNone);
    const std::uint16_t last = desc_[e].last;
    if (last < size_) {
        desc_[last].next = hdr_->free_head;
    }
    hdr_->free_head = e;
    batch_.push_back(e);
    batch_slots_ += token.descs;
}

void PackedInflight::on_publish() {
    if (batch_.empty()) {
        return;
    }
    std::uint16_t slot = hdr_->used_idx;
    bool wrap = hdr_->used_wrap_counter != 0;
    advance(slot, wrap, batch_slots_);
    hdr_->used_idx = slot;
    hdr_->used_wrap_counter = wrap ? 1 : 0;
    for (std::uint16_t e : batch_) {
        desc_[e].inflight = 0;
    }
    hdr_->old_free_head = hdr_->free_head;
    hdr_->old_used_idx = hdr_->used_idx;
    hdr_->old_used_wrap_counter = hdr_->used_wrap_counter;
    batch_.clear();
    batch_slots_ = 0;
}

}  // namespace vireo::vhost_user
