// TAP back end for NetDevice: a Linux TAP interface opened with IFF_TAP | IFF_NO_PI |
// IFF_VNET_HDR | IFF_MULTI_QUEUE, one non-blocking fd per queue pair.
//
// The 12-byte virtio_net_hdr_v1 travels with every frame (TUNSETVNETHDRSZ 12, little endian),
// so checksum and segmentation offloads pass straight through to the host stack; the offloads
// the kernel may hand to the guest follow the guest's GUEST_CSUM/TSO4/TSO6 (TUNSETOFFLOAD).
//
// TX is zero-copy on our side: the validated header and the guest's frame iovecs go to writev.
// RX reads straight into the guest's RX chains (readv), with MRG_RXBUF across several chains.
// A frame that arrives while the guest has no RX buffer is read into a scratch buffer and
// dropped (counted): the fd is polled level-triggered, so leaving it unread would spin.
#pragma once

#include <sys/uio.h>

#include <atomic>
#include <cstdint>
#include <expected>
#include <memory>
#include <string>
#include <vector>

#include "devices/net.hpp"
#include "memory/unique_fd.hpp"

namespace vireo::dev {

class NetTap final : public NetBackend {
    struct PrivateTag {};

  public:
    explicit NetTap(PrivateTag) {}

    // Opens (creating it if needed; needs CAP_NET_ADMIN) TAP `name` with one queue per pair.
    // An existing TAP must have been created multi-queue. Errors name the TAP and the call.
    static std::expected<std::shared_ptr<NetTap>, std::string> open(const std::string& name,
                                                                    std::uint16_t queue_pairs);

    // The interface name the kernel gave (as asked, or generated from a pattern like "tap%d").
    const std::string& name() const { return name_; }
    int fd(std::uint16_t pair) const { return pair < queues_.size() ? queues_[pair].fd.get() : -1; }
    std::uint64_t read_errors() const { return read_errors_.load(std::memory_order_relaxed); }

    // --- NetBackend ---
    std::uint16_t queue_pairs() const override {
        return static_cast<std::uint16_t>(queues_.size());
    }
    bool transmit(std::uint16_t pair, const NetTxFrame& frame) override;
    int rx_event_fd(std::uint16_t pair) const override { return fd(pair); }
    void receive(std::uint16_t pair, NetRxSink& sink) override;
    void set_rx_offloads(const NetRxOffloads& offloads) override;
    void set_active_pairs(std::uint16_t n) override;

  private:
    struct Queue {
        UniqueFd fd;
        bool attached = true;
        std::vector<iovec> tx_iov;             // TX thread only
        std::vector<std::uint8_t> tx_linear;   // TX thread only: gathered over-long chains
        std::vector<std::uint8_t> rx_scratch;  // RX thread only: frames dropped for want of buffers
    };

    std::string name_;
    std::vector<Queue> queues_;
    std::atomic<std::uint64_t> read_errors_{0};
};

}  // namespace vireo::dev
