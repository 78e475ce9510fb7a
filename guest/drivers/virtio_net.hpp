// virtio-net driver (§5.1), one queue pair, no offloads, no MRG_RXBUF: every frame is preceded
// by the 12-byte virtio_net_hdr_v1 (§5.1.6, VERSION_1 layout). Receive buffers are posted up
// front and re-posted after each frame.
#pragma once

#include <cstddef>
#include <cstdint>

#include "drivers/virtio.hpp"
#include "spec/virtio_net.hpp"

namespace vireo::guest {

namespace net {
inline constexpr std::uint32_t kMaxFrame = kNetMaxPacket;  // no GSO, no VLAN tag
inline constexpr int kRxBuffers = 4;
}  // namespace net

class NetDevice {
  public:
    constexpr NetDevice() = default;

    bool init(Transport& t, const VirtioOptions& opts) {
        auto init_queues = [&](std::uint64_t negotiated) {
            return rx_.init(t, kReceiveQueue, negotiated, opts.irq) &&
                   tx_.init(t, kTransmitQueue, negotiated, opts.irq);
        };
        std::uint64_t f = 0;
        if (!virtio_init(t, opts, virtq::bit(kNetFMac), &f, init_queues)) {
            return false;
        }
        if ((f & virtq::bit(kNetFMac)) != 0) {
            for (std::uint32_t i = 0; i < sizeof mac_; ++i) {
                mac_[i] = static_cast<std::uint8_t>(
                    t.config_read(static_cast<std::uint32_t>(offsetof(NetConfig, mac)) + i, 1));
            }
        }
        for (int i = 0; i < net::kRxBuffers; ++i) {
            if (!post_rx(i)) {
                return false;
            }
        }
        rx_.kick();
        return true;
    }

    const std::uint8_t* mac() const { return mac_; }

    // Sends one frame (header + frame, two device-readable segments) and waits for it.
    bool send(const void* frame, std::uint32_t len) {
        if (len > net::kMaxFrame) {
            return false;
        }
        __builtin_memset(&tx_hdr_, 0, sizeof tx_hdr_);
        const driver::Segment out[] = {{dma_addr(&tx_hdr_), sizeof tx_hdr_},
                                       {dma_addr(frame), len}};
        std::uint32_t used = 0;
        return tx_.transfer({out, 2}, {}, &used);
    }

    // Waits for one frame; copies at most `cap` bytes of it (header stripped). -1: none/error.
    int receive(void* out, std::uint32_t cap, std::uint32_t timeout_ms) {
        std::uint32_t len = 0;
        void* token = rx_.wait(&len, timeout_ms);
        if (token == nullptr) {
            return -1;
        }
        // The token is one of our slots (the driver queue accepts only ids it handed out).
        const int slot = static_cast<int>(static_cast<RxSlot*>(token) - rx_slots_);
        if (slot < 0 || slot >= net::kRxBuffers || len < sizeof(NetHdr)) {
            print("net: bad receive completion (len %u)\n", len);
            return -1;
        }
        const std::uint32_t frame = len - static_cast<std::uint32_t>(sizeof(NetHdr));
        const std::uint32_t n = frame < cap ? frame : cap;
        __builtin_memcpy(out, rx_slots_[slot].data, n);
        if (!post_rx(slot)) {
            return -1;
        }
        rx_.kick();
        return static_cast<int>(n);
    }

  private:
    static constexpr std::uint16_t kReceiveQueue = 0;   // receiveq1
    static constexpr std::uint16_t kTransmitQueue = 1;  // transmitq1

    struct RxSlot {
        NetHdr hdr;
        std::uint8_t data[net::kMaxFrame];
    };

    bool post_rx(int slot) {
        RxSlot& s = rx_slots_[slot];
        // Header and frame as two writable segments: the device must honour any layout
        // (§5.1.6.3: no framing assumptions since VERSION_1).
        const driver::Segment in[] = {{dma_addr(&s.hdr), sizeof s.hdr},
                                      {dma_addr(s.data), sizeof s.data}};
        return rx_.add({}, {in, 2}, &s) == driver::DriverError::kOk;
    }

    Queue<16> rx_;
    Queue<16> tx_;
    std::uint8_t mac_[6] = {};
    NetHdr tx_hdr_ = {};
    RxSlot rx_slots_[net::kRxBuffers] = {};
};

}  // namespace vireo::guest
