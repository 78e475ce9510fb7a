// virtio-blk driver (§5.2): read, write, flush and get-id requests, one at a time, each a
// chain of header (device-readable), data and a status byte (device-writable); the status and
// the used length are checked, the device is not trusted to write what it claims.
#pragma once

#include <cstddef>
#include <cstdint>

#include "drivers/virtio.hpp"
#include "spec/virtio_blk.hpp"

namespace vireo::guest {

class BlkDevice {
  public:
    constexpr BlkDevice() = default;

    bool init(Transport& t, const VirtioOptions& opts) {
        t_ = &t;
        if (!virtio_init(t, opts, virtq::bit(kBlkFFlush) | virtq::bit(kBlkFRo), &features_,
                         [&](std::uint64_t f) { return q_.init(t, kRequestQueue, f, opts.irq); })) {
            return false;
        }
        capacity_ = t.config_read64(offsetof(BlkConfig, capacity));
        return true;
    }

    std::uint64_t capacity() const { return capacity_; }  // sectors
    bool has_flush() const { return (features_ & virtq::bit(kBlkFFlush)) != 0; }
    bool read_only() const { return (features_ & virtq::bit(kBlkFRo)) != 0; }

    bool read(std::uint64_t sector, void* buf, std::uint32_t len) {
        return request(kBlkTIn, sector, buf, len, true);
    }
    bool write(std::uint64_t sector, const void* buf, std::uint32_t len) {
        return request(kBlkTOut, sector, const_cast<void*>(buf), len, false);
    }
    bool flush() { return request(kBlkTFlush, 0, nullptr, 0, false); }
    // §5.2.6: up to 20 bytes, NUL-terminated only when shorter.
    bool get_id(char (&id)[kBlkIdBytes + 1]) {
        __builtin_memset(id, 0, sizeof id);
        return request(kBlkTGetId, 0, id, kBlkIdBytes, true);
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
    static constexpr std::uint16_t kRequestQueue = 0;  // requestq1, the only one used

    bool request(std::uint32_t type, std::uint64_t sector, void* data, std::uint32_t len,
                 bool device_writes) {
        if ((type == kBlkTIn || type == kBlkTOut) &&
            (len % kSectorSize != 0 || sector > capacity_ ||
             len / kSectorSize > capacity_ - sector)) {
            print("blk: request beyond capacity\n");
            return false;
        }
        const int status = submit(type, sector, data, len, device_writes);
        if (status != kBlkSOk) {
            print("blk: request type %u status %d\n", type, status);
            return false;
        }
        // A successful read wrote every data byte and the status; nothing writes more.
        const std::uint32_t expect = device_writes ? len + 1 : 1;
        if (used_ > expect || (type == kBlkTIn && used_ != expect)) {
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
