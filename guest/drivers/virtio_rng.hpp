// virtio-rng driver (§5.4): device-writable buffers on requestq, filled with entropy.
#pragma once

#include <cstdint>

#include "drivers/virtio.hpp"
#include "spec/virtio_rng.hpp"

namespace vireo::guest {

class RngDevice {
  public:
    static constexpr int kMaxRequests = 64;  // bounds the loop if the device returns short

    constexpr RngDevice() = default;

    bool init(Transport& t, const VirtioOptions& opts) {
        std::uint64_t f = 0;
        return virtio_init(t, opts, 0, &f, [&](std::uint64_t negotiated) {
            return q_.init(t, kRngQueueRequest, negotiated, opts.irq);
        });
    }

    // Fills `buf` completely; the device may return fewer bytes per request (§5.4.6).
    bool read(std::uint8_t* buf, std::uint32_t len) {
        std::uint32_t done = 0;
        for (int i = 0; i < kMaxRequests && done < len; ++i) {
            const driver::Segment in[] = {{dma_addr(buf + done), len - done}};
            std::uint32_t used = 0;
            if (!q_.transfer({}, {in, 1}, &used)) {
                return false;
            }
            done += used;  // used <= the writable length: checked by the driver queue
        }
        return done == len;
    }

  private:
    Queue<8> q_;
};

}  // namespace vireo::guest
