#include "vhost_user/inflight.hpp"

#include <fmt/format.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

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

}  // namespace vireo::vhost_user
