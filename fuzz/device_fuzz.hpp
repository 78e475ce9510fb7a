// Shared body of the device-model fuzzers: the fuzzer's bytes become a script of driver actions
// against one queue of a real device model (its QueueHandler, a real Virtqueue over a split ring
// in guest memory). Chains are built from the bytes (segment count, direction, length, contents),
// so the interesting input is the request itself; a "raw descriptor" action also lets the fuzzer
// write hostile descriptors straight into the table. ASan/UBSan and the guard pages around guest
// memory prove that no request reaches outside the guest; the bounded script proves termination.
//
// Input layout:
//   byte 0  queue selector (index = byte % device.num_queues())
//   byte 1  feature mask: bit 0 EVENT_IDX, bit 1 INDIRECT_DESC, bits 2..7 keep device bits
//           (device bits are kept when bit (n % 6) + 2 of the mask is set, n the bit number)
//   then actions, each starting with an opcode byte (op % 4):
//     0 chain: nseg = 1 + b % 8, then per segment: flags (bit 0: device-writable) and a
//              little-endian u16 length (capped at kMaxSegment); a readable segment's contents
//              follow in the input
//     1 kick:  the handler's on_kick()
//     2 event: the handler's on_event() when its event fd is readable
//     3 raw:   16 bytes copied over the next descriptor slot, which is then made available
#pragma once

#include <poll.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>

#include "devices/blk.hpp"
#include "devices/device.hpp"
#include "memory/guest_memory.hpp"
#include "virtq/features.hpp"
#include "virtq/ring_layout.hpp"
#include "virtq/virtqueue.hpp"

namespace vireo::fuzz {

class NullIrq final : public dev::Interrupt {
  public:
    void signal() override {}
};

// Sequential reader over the fuzzer's bytes; reads past the end yield zeros.
class ByteStream {
  public:
    ByteStream(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}
    bool empty() const { return pos_ >= size_; }
    std::uint8_t u8() { return pos_ < size_ ? data_[pos_++] : 0; }
    std::uint16_t u16() { return static_cast<std::uint16_t>(u8() | (u8() << 8)); }
    // Copies up to n bytes into dst, zero-filling what the input lacks.
    void copy(std::uint8_t* dst, std::size_t n) {
        if (n == 0) {
            return;  // dst and data_ may be null then: memcpy's arguments must not be
        }
        const std::size_t have = std::min(n, size_ - std::min(pos_, size_));
        if (have > 0) {
            std::memcpy(dst, data_ + pos_, have);
        }
        std::memset(dst + have, 0, n - have);
        pos_ += have;
    }

  private:
    const std::uint8_t* data_;
    std::size_t size_;
    std::size_t pos_ = 0;
};

inline constexpr std::uint16_t kFuzzQueueSize = 64;
inline constexpr std::uint64_t kFuzzBase = 0x100000;
inline constexpr std::uint64_t kFuzzMemSize = 256 * 1024;
inline constexpr std::uint64_t kFuzzDesc = kFuzzBase;
inline constexpr std::uint64_t kFuzzAvail = kFuzzBase + 0x400;
inline constexpr std::uint64_t kFuzzUsed = kFuzzBase + 0x800;
inline constexpr std::uint64_t kFuzzBuffers = kFuzzBase + 0x1000;
inline constexpr std::uint32_t kMaxSegment = 16 * 1024;
inline constexpr int kMaxActions = 256;

// The driver side: a split ring in its own guest memory, filled by the script.
class FuzzRing {
  public:
    bool init() {
        if (!mem_.add_memfd(kFuzzBase, kFuzzMemSize, "vireo-fuzz")) {
            return false;
        }
        host_ = mem_.translate(kFuzzBase, kFuzzMemSize);
        return host_ != nullptr;
    }
    const GuestMemory& memory() const { return mem_; }
    virtq::QueueConfig config() const { return {kFuzzQueueSize, kFuzzDesc, kFuzzAvail, kFuzzUsed}; }

    // Appends one chain built from the script; false when the table or buffer space is full.
    bool add_chain(ByteStream& in) {
        const unsigned nseg = 1 + in.u8() % 8;
        if (next_desc_ + nseg > kFuzzQueueSize) {
            return false;
        }
        const std::uint16_t head = next_desc_;
        for (unsigned i = 0; i < nseg; ++i) {
            const bool writable = (in.u8() & 1) != 0;
            const std::uint32_t len = std::min<std::uint32_t>(in.u16(), kMaxSegment);
            if (buf_off_ + len > kFuzzMemSize - (kFuzzBuffers - kFuzzBase)) {
                return false;
            }
            const std::uint64_t gpa = kFuzzBuffers + buf_off_;
            if (!writable) {
                in.copy(at(gpa), len);
            }
            buf_off_ += len;
            virtq::SplitDesc d{};
            d.addr.set(gpa);
            d.len.set(len);
            const bool last = i + 1 == nseg;
            d.flags.set(static_cast<std::uint16_t>((writable ? virtq::kDescFWrite : 0) |
                                                   (last ? 0 : virtq::kDescFNext)));
            d.next.set(static_cast<std::uint16_t>(next_desc_ + 1));
            std::memcpy(at(kFuzzDesc + 16ull * next_desc_), &d, sizeof d);
            ++next_desc_;
        }
        make_available(head);
        return true;
    }
    // A hostile descriptor: whatever the fuzzer wrote, made available as a chain head.
    bool add_raw(ByteStream& in) {
        if (next_desc_ >= kFuzzQueueSize) {
            return false;
        }
        in.copy(at(kFuzzDesc + 16ull * next_desc_), 16);
        make_available(next_desc_++);
        return true;
    }

  private:
    std::uint8_t* at(std::uint64_t gpa) { return host_ + (gpa - kFuzzBase); }
    void make_available(std::uint16_t head) {
        le16 h;
        h.set(head);
        std::memcpy(at(kFuzzAvail + 4 + 2ull * (avail_idx_ % kFuzzQueueSize)), &h, 2);
        ++avail_idx_;
        le16 idx;
        idx.set(avail_idx_);
        // The device reads avail.idx with acquire; the ring entry above must be visible first.
        std::atomic_thread_fence(std::memory_order_release);
        std::memcpy(at(kFuzzAvail + 2), &idx, 2);
    }

    GuestMemory mem_;
    std::uint8_t* host_ = nullptr;
    std::uint16_t next_desc_ = 0;
    std::uint16_t avail_idx_ = 0;
    std::uint64_t buf_off_ = 0;
};

// A two-queue BlkDevice with the sync engine over a 1 MiB memfd image that lives as long as the
// process (no files left behind; writes, discards and flushes hit a real fd).
inline std::unique_ptr<dev::BlkDevice> make_blk_device() {
    const int fd = ::memfd_create("vireo-fuzz-blk", MFD_CLOEXEC);  // never closed: see above
    if (fd < 0 || ::ftruncate(fd, 1 << 20) != 0) {
        std::abort();
    }
    dev::BlkOptions o;
    o.path = "/proc/self/fd/" + std::to_string(fd);
    o.engine = dev::BlkEngine::kSync;
    o.num_queues = 2;
    o.serial = "fuzz";
    auto d = dev::BlkDevice::open(o);
    if (!d) {
        std::abort();
    }
    return std::move(*d);
}

// Runs the script against `device`. Features outside the split ring are never negotiated.
inline void run_device(dev::VirtioDevice& device, const std::uint8_t* data, std::size_t size) {
    if (size < 2) {
        return;
    }
    ByteStream in(data, size);
    const std::uint16_t index = static_cast<std::uint16_t>(in.u8() % device.num_queues());
    const std::uint8_t mask = in.u8();

    std::uint64_t features = device.device_features() & ~virtq::bit(virtq::kFRingPacked);
    for (unsigned b = 0; b < 64; ++b) {
        const bool transport_bit =
            b == virtq::kFVersion1 || b == virtq::kFEventIdx || b == virtq::kFIndirectDesc;
        if (!transport_bit && (mask & (1u << (b % 6 + 2))) == 0) {
            features &= ~virtq::bit(b);
        }
    }
    if ((mask & 1) == 0) {
        features &= ~virtq::bit(virtq::kFEventIdx);
    }
    if ((mask & 2) == 0) {
        features &= ~virtq::bit(virtq::kFIndirectDesc);
    }
    device.set_features(features);

    FuzzRing ring;
    if (!ring.init()) {
        return;
    }
    virtq::Virtqueue vq;
    if (!vq.activate(ring.memory(), ring.config(), virtq::QueueFeatures::from_bits(features))) {
        return;
    }
    NullIrq irq;
    std::unique_ptr<dev::QueueHandler> handler =
        device.start_queue(index, dev::QueueHandle(ring.memory(), vq, irq));
    if (handler) {
        for (int i = 0; i < kMaxActions && !in.empty(); ++i) {
            switch (in.u8() % 4) {
                case 0:
                    ring.add_chain(in);
                    break;
                case 1:
                    handler->on_kick();
                    break;
                case 2:
                    if (pollfd p{handler->event_fd(), POLLIN, 0};
                        p.fd >= 0 && ::poll(&p, 1, 0) == 1) {
                        handler->on_event();
                    }
                    break;
                default:
                    ring.add_raw(in);
                    break;
            }
        }
        handler->on_kick();
        handler->drain();
        handler.reset();
    }
    device.reset();
}

}  // namespace vireo::fuzz
