// An in-process learning L2 switch connecting the NetDevices of several VMs served by one
// vireo process (docs/net.md).
//
// Forwarding: the source MAC of every frame a port sends is learned (source → port, aging
// optional); a frame to a known unicast address goes to that port only, broadcast, multicast
// and unknown destinations are flooded to every other port.
//
// Copies: the sending port's TX thread copies the frame once out of the guest's TX chain into a
// shared, immutable NetFrame (header included); each receiving port's RX thread copies it once
// into its guest's RX chains. A flooded frame is shared by reference, never copied per port.
//
// Threads: every port's queue handlers run on their own threads. A frame is handed to the
// receiving port through a bounded per-RX-queue FIFO under its own small lock, and the port's
// RX handler is woken through that queue's eventfd (its QueueHandler::event_fd()). Frames
// beyond the bound are dropped and counted at the receiving port, so a guest that posts no RX
// buffers never stalls its senders. The learning table and the port list sit under one
// shared_mutex: forwarding takes it shared; only a new or moved address, a new or removed port
// takes it exclusively.
//
// Offloads: frames carry the sender's virtio_net_hdr unchanged, so GSO and partial checksums
// stay offloaded end to end when the receiver negotiated them. Otherwise, at delivery:
//  - a partial checksum (NEEDS_CSUM, no GSO) for a guest without GUEST_CSUM is completed in
//    software while the frame is copied into the guest;
//  - a TCP GSO frame for a guest without the matching GUEST_TSO4/6 is segmented in software
//    (net_gso.hpp) while it is copied in: one fully checksummed frame per gso_size of payload.
//    GSO frames that cannot be parsed as TCP over IPv4/IPv6 are dropped and counted.
#pragma once

#include <sys/uio.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <expected>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "devices/net.hpp"
#include "devices/net_gso.hpp"
#include "memory/unique_fd.hpp"

namespace vireo::dev {

struct NetSwitchOptions {
    std::size_t port_queue_frames = 256;       // per RX queue of a port; beyond: dropped
    std::size_t max_addresses = 4096;          // learning table bound (a guest may spoof sources)
    std::chrono::milliseconds aging{300'000};  // 0: entries never age
};

// One frame in flight between guests: written once by the sender, then read-only.
struct NetFrame {
    NetHdr hdr{};
    std::unique_ptr<std::uint8_t[]> data;
    std::size_t len = 0;

    std::span<const std::uint8_t> bytes() const { return {data.get(), len}; }
};

// Per-port counters (relaxed: statistics), frames without the virtio_net_hdr.
struct NetPortStats {
    std::uint64_t tx_packets = 0;  // frames this port sent into the switch
    std::uint64_t tx_bytes = 0;
    std::uint64_t flooded = 0;     // of those, flooded (broadcast/multicast/unknown)
    std::uint64_t rx_packets = 0;  // frames delivered into this port's guest
    std::uint64_t rx_bytes = 0;
    std::uint64_t rx_dropped = 0;   // queue full, or undeliverable (offload, buffer too small)
    std::uint64_t rx_filtered = 0;  // refused by the guest's RX filter
};

class NetSwitchPort;

class NetSwitch : public std::enable_shared_from_this<NetSwitch> {
    struct PrivateTag {};

  public:
    NetSwitch(PrivateTag, std::string name, NetSwitchOptions options);
    ~NetSwitch();

    static std::shared_ptr<NetSwitch> create(std::string name, NetSwitchOptions options = {});
    // The process-wide switch of that name, created on first use; it lives while a port or a
    // caller holds it. Config files name switches; devices naming the same one share it.
    static std::shared_ptr<NetSwitch> get(const std::string& name, NetSwitchOptions options = {});

    // A new port serving a device with `queue_pairs` RX/TX pairs; it leaves the switch when the
    // last reference goes. Errors: queue pairs out of range, eventfd creation failed.
    std::expected<std::shared_ptr<NetSwitchPort>, std::string> add_port(
        std::uint16_t queue_pairs = 1);

    const std::string& name() const { return name_; }
    std::size_t port_count() const;
    // The port id a MAC was learned on (tests, diagnostics); none if unknown or aged out.
    std::optional<std::uint32_t> lookup(const MacAddress& mac) const;

  private:
    friend class NetSwitchPort;
    struct Entry {
        NetSwitchPort* port;
        std::atomic<std::int64_t> seen_ms;
    };

    void remove_port(NetSwitchPort* port);
    // On the sender's TX thread.
    void forward(NetSwitchPort& from, const std::shared_ptr<const NetFrame>& frame);
    void learn(NetSwitchPort& from, const MacAddress& src, std::int64_t now);
    bool fresh(const Entry& e, std::int64_t now) const;

    std::string name_;
    NetSwitchOptions options_;
    std::atomic<std::uint32_t> next_id_{0};
    mutable std::shared_mutex mu_;
    std::vector<NetSwitchPort*> ports_;               // under mu_
    std::unordered_map<std::uint64_t, Entry> table_;  // MAC (48 bits) → port, under mu_
};

class NetSwitchPort final : public NetBackend {
    struct PrivateTag {};

  public:
    NetSwitchPort(PrivateTag, std::shared_ptr<NetSwitch> sw, std::uint32_t id, std::uint16_t pairs,
                  std::size_t bound);
    ~NetSwitchPort() override;

    std::uint32_t id() const { return id_; }
    NetSwitch& net_switch() const { return *switch_; }
    NetPortStats stats() const;
    // Frames waiting for the guest in RX queue `pair`.
    std::size_t queued(std::uint16_t pair) const;

    // --- NetBackend ---
    std::uint16_t queue_pairs() const override { return static_cast<std::uint16_t>(rx_.size()); }
    bool transmit(std::uint16_t pair, const NetTxFrame& frame) override;
    int rx_event_fd(std::uint16_t pair) const override;
    void receive(std::uint16_t pair, NetRxSink& sink) override;
    void set_active_pairs(std::uint16_t n) override;

  private:
    friend class NetSwitch;
    enum class Delivery : std::uint8_t { kDone, kNoBuffers };

    struct RxQueue {
        mutable std::mutex mu;
        std::deque<std::shared_ptr<const NetFrame>> frames;  // under mu
        UniqueFd event;                                      // eventfd: frames are waiting
        // Software GSO of the front frame: segments already delivered (the receiving thread
        // only). A frame that ran out of buffers part way resumes here, never repeating one.
        std::size_t gso_next = 0;
    };

    // From any sender's thread (the switch holds its lock shared).
    void enqueue(const std::shared_ptr<const NetFrame>& frame);
    Delivery deliver(const NetFrame& frame, NetRxSink& sink, RxQueue& q);
    Delivery deliver_segments(const NetFrame& frame, const TcpGso& g, NetRxSink& sink, RxQueue& q);
    Delivery count_drop(NetRxSink& sink);

    std::shared_ptr<NetSwitch> switch_;
    std::uint32_t id_;
    std::size_t bound_;
    std::vector<std::unique_ptr<RxQueue>> rx_;
    std::atomic<std::uint16_t> active_pairs_{1};

    std::atomic<std::uint64_t> tx_packets_{0};
    std::atomic<std::uint64_t> tx_bytes_{0};
    std::atomic<std::uint64_t> flooded_{0};
    std::atomic<std::uint64_t> rx_packets_{0};
    std::atomic<std::uint64_t> rx_bytes_{0};
    std::atomic<std::uint64_t> rx_dropped_{0};
    std::atomic<std::uint64_t> rx_filtered_{0};
};

}  // namespace vireo::dev
