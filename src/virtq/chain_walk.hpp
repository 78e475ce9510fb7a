// Pieces of the device-side chain walk that both ring formats share (internal to virtq/).
#pragma once

#include <cstdint>
#include <expected>

#include "memory/guest_memory.hpp"
#include "virtq/chain.hpp"
#include "virtq/queue_error.hpp"

namespace vireo::virtq::detail {

// A whole ring area, inside one region, at the required alignment (§2.7 / §2.8 table of
// alignments). The hot path then uses the cached host pointer with no further checks.
template <typename T>
std::expected<T*, QueueError> map_area(const GuestMemory& mem, std::uint64_t gpa, std::uint64_t len,
                                       std::uint64_t align) {
    if (gpa % align != 0) {
        return std::unexpected(QueueError::kBadAlignment);
    }
    std::uint8_t* p = mem.translate(gpa, len);
    if (p == nullptr) {
        return std::unexpected(QueueError::kRingOutsideMemory);
    }
    return reinterpret_cast<T*>(p);
}

// Accumulates the buffers of one chain into a DescriptorChain, enforcing the rules that hold for
// every buffer whatever the ring format.
class ChainBuilder {
  public:
    explicit ChainBuilder(DescriptorChain& out) : out_(out) {}

    std::expected<void, QueueError> add(const GuestMemory& mem, std::uint64_t addr,
                                        std::uint32_t len, bool writable) {
        // §2.7.4.2 / §2.8.17: device-writable buffers come after all device-readable ones.
        if (!writable && seen_writable_) {
            return std::unexpected(QueueError::kReadableAfterWritable);
        }
        seen_writable_ |= writable;
        // §2.7.5.3.1 / §2.8.17: a chain's total length fits in 32 bits (used len is le32).
        total_ += len;
        if (total_ > UINT32_MAX) {
            return std::unexpected(QueueError::kLengthOverflow);
        }
        if (len == 0) {
            return {};  // nothing to access, so nothing to translate
        }
        // A buffer that crosses into an adjacent region becomes several segments.
        const bool mapped = mem.for_each_segment(addr, len, [&](const HostSegment& s) {
            writable ? out_.add_writable(s.host, s.len) : out_.add_readable(s.host, s.len);
            return true;
        });
        if (!mapped) {
            return std::unexpected(QueueError::kBadAddress);
        }
        return {};
    }

  private:
    DescriptorChain& out_;
    bool seen_writable_ = false;
    std::uint64_t total_ = 0;
};

}  // namespace vireo::virtq::detail
