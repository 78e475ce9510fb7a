// virtio-blk driver (§5.2): read, write, flush and get-id requests, one at a time, each a
// chain of header (device-readable), data and a status byte (device-writable); the status and
// the used length are checked, the device is not trusted to write what it claims.
#pragma once

#include <cstdint>

#include "drivers/virtio.hpp"
#include "spec/le.hpp"

namespace vireo::guest {

namespace blk {
inline constexpr unsigned kFSizeMax = 1;
inline constexpr unsigned kFSegMax = 2;
inline constexpr unsigned kFRo = 5;
inline constexpr unsigned kFBlkSize = 6;
inline constexpr unsigned kFFlush = 9;

inline constexpr std::uint32_t kTIn = 0;
inline constexpr std::uint32_t kTOut = 1;
inline constexpr std::uint32_t kTFlush = 4;
inline constexpr std::uint32_t kTGetId = 8;

inline constexpr std::uint8_t kSOk = 0;
inline constexpr std::uint8_t kSIoErr = 1;
inline constexpr std::uint8_t kSUnsupp = 2;

inline constexpr std::uint32_t kSectorSize = 512;
inline constexpr std::uint32_t kIdBytes = 20;
inline constexpr std::uint32_t kConfigCapacity = 0;  // le64, 512-byte sectors
inline constexpr std::uint16_t kRequestQueue = 0;
}  // namespace blk

// §5.2.6 struct virtio_blk_req, the device-readable head.
struct BlkReqHeader {
    le32 type;
    le32 reserved;
    le64 sector;
};
static_assert(sizeof(BlkReqHeader) == 16);

class BlkDevice {
  public:
    constexpr BlkDevice() = default;

    bool init(Transport& t, const VirtioOptions& opts) {
        t_ = &t;
        std::uint64_t f = 0;
        if (!virtio_negotiate(t, opts, virtq::bit(blk::kFFlush) | virtq::bit(blk::kFRo), 0, &f)) {
            return false;
        }
        features_ = f;
        if (opts.irq && !t.irq_setup(opts.intx)) {
            print("blk: interrupt setup failed\n");
            return false;
        }
        if (!q_.init(t, blk::kRequestQueue, f, opts.irq) || !virtio_driver_ok(t)) {
            return false;
        }
        capacity_ = t.config_read64(blk::kConfigCapacity);
        return true;
    }

    std::uint64_t capacity() const { return capacity_; }  // sectors
    bool has_flush() const { return (features_ & virtq::bit(blk::kFFlush)) != 0; }
    bool read_only() const { return (features_ & virtq::bit(blk::kFRo)) != 0; }

    bool read(std::uint64_t sector, void* buf, std::uint32_t len) {
        return request(blk::kTIn, sector, buf, len, true);
    }
    bool write(std::uint64_t sector, const void* buf, std::uint32_t len) {
        return request(blk::kTOut, sector, const_cast<void*>(buf), len, false);
    }
    bool flush() { return request(blk::kTFlush, 0, nullptr, 0, false); }
    // §5.2.6: up to 20 bytes, NUL-terminated only when shorter.
    bool get_id(char (&id)[blk::kIdBytes + 1]) {
        __builtin_memset(id, 0, sizeof id);
        return request(blk::kTGetId, 0, id, blk::kIdBytes, true);
    }

    std::uint8_t last_status() const { return status_; }

    // Sends one request as given, without the driver's own checks (tests use it to probe the
    // device with bad requests). Returns the status byte the device wrote, kNoStatus if it
    // completed the request without writing one, or -1 if the request did not complete.
    static constexpr int kNoStatus = 0xFF;
    int submit(std::uint32_t type, std::uint64_t sector, void* data, std::uint32_t len,
               bool device_writes) {
        hdr_.type.set(type);
        hdr_.reserved.set(0);
        hdr_.sector.set(sector);
        status_ = kNoStatus;  // not a status the device can send: proves it wrote one
        driver::Segment out[2] = {{dma_addr(&hdr_), sizeof hdr_}};
        driver::Segment in[2] = {};
        std::size_t nout = 1;
        std::size_t nin = 0;
        if (len > 0) {
            (device_writes ? in[nin++] : out[nout++]) = {dma_addr(data), len};
        }
        in[nin++] = {dma_addr(&status_), 1};
        used_ = 0;
        if (!q_.transfer({out, nout}, {in, nin}, &used_)) {
            return -1;
        }
        // The used length counts the bytes written, the status byte last: without it the
        // status cannot have been written.
        if (used_ < 1) {
            return kNoStatus;
        }
        return *static_cast<volatile std::uint8_t*>(&status_);
    }

  private:
    bool request(std::uint32_t type, std::uint64_t sector, void* data, std::uint32_t len,
                 bool device_writes) {
        if ((type == blk::kTIn || type == blk::kTOut) &&
            (len % blk::kSectorSize != 0 || sector > capacity_ ||
             len / blk::kSectorSize > capacity_ - sector)) {
            print("blk: request beyond capacity\n");
            return false;
        }
        const int status = submit(type, sector, data, len, device_writes);
        if (status != blk::kSOk) {
            print("blk: request type %u status %d\n", type, status);
            return false;
        }
        // A successful read wrote every data byte and the status; nothing writes more.
        const std::uint32_t expect = device_writes ? len + 1 : 1;
        if (used_ > expect || (type == blk::kTIn && used_ != expect)) {
            print("blk: used length %u, expected %u\n", used_, expect);
            return false;
        }
        return true;
    }

    Transport* t_ = nullptr;
    std::uint64_t features_ = 0;
    std::uint64_t capacity_ = 0;
    Queue<16> q_;
    alignas(16) BlkReqHeader hdr_ = {};
    std::uint8_t status_ = 0;
    std::uint32_t used_ = 0;
};

}  // namespace vireo::guest
