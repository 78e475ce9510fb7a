// virtio-net device model (virtio 1.2 §5.1), independent of the transport and of where frames
// go. A NetDevice owns the guest-facing side: feature negotiation, the config space, the RX/TX
// queue pairs and the control queue. Frames leave and arrive through a NetBackend:
//  - NetSwitchPort (net_switch.hpp): a port of an in-process learning L2 switch shared by
//    several devices (several VMs);
//  - NetTap (net_tap.hpp): a multi-queue TAP device with IFF_VNET_HDR.
//
// Queue layout (§5.1.2): receiveq1, transmitq1, …, receiveqN, transmitqN, controlq. The control
// queue is index 2N when VIRTIO_NET_F_MQ is negotiated, else index 2 (N = 1).
//
// TX: a chain's readable part is a virtio_net_hdr_v1 followed by the frame; it is parsed into a
// validated NetTxFrame (parse_net_tx) before the back end sees it, then completed with used
// length 0 (§5.1.6.2: nothing is written into TX buffers).
// RX: the back end asks the queue for guest buffers (NetRxSink) for a frame, fills them header
// first and commits; with MRG_RXBUF a frame spans several chains and num_buffers says how many
// (§5.1.6.4). When the driver posts no RX buffers, frames are dropped and counted: a back end
// never waits for a guest.
#pragma once

#include <sys/uio.h>

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <expected>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "devices/device.hpp"
#include "spec/virtio_net.hpp"
#include "virtq/chain.hpp"

namespace vireo::dev {

// --- frame limits ------------------------------------------------------------------------------
inline constexpr std::size_t kEthHeader = 14;
// Header fields the switch reads (flow steering, software GSO).
inline constexpr std::size_t kEthTypeOffset = 12;
inline constexpr std::uint16_t kEthTypeIpv4 = 0x0800;
inline constexpr std::uint16_t kEthTypeIpv6 = 0x86dd;
inline constexpr std::uint16_t kEthTypeVlan = 0x8100;  // 802.1Q
inline constexpr std::uint8_t kIpProtoTcp = 6;
inline constexpr std::uint8_t kIpProtoUdp = 17;
inline constexpr std::size_t kEthAddr = 6;
// The spec's largest packets (kNetMaxGsoPacket, kNetMaxPacket), and a VLAN tag (4 bytes) on top
// of either, as Linux sends it in-band.
inline constexpr std::size_t kVlanTag = 4;
inline constexpr std::size_t kNetMaxFrame = kNetMaxGsoPacket + kVlanTag;
inline constexpr std::size_t kNetMaxPlainFrame = kNetMaxPacket + kVlanTag;

using MacAddress = std::array<std::uint8_t, kEthAddr>;

constexpr bool is_multicast(const MacAddress& m) {
    return (m[0] & 1) != 0;  // the I/G bit; broadcast is a multicast address too
}
constexpr bool is_broadcast(const MacAddress& m) {
    for (auto b : m) {
        if (b != 0xff) {
            return false;
        }
    }
    return true;
}
// "52:54:00:12:34:56"; the error names the accepted form.
std::expected<MacAddress, std::string> parse_mac(std::string_view text);
std::string to_string(const MacAddress& m);
// A random locally administered unicast address (IEEE 802 §9.2: U/L bit set, I/G clear).
MacAddress random_mac();

// RFC 1071 ones' complement sum of `data` added to `sum` (not folded, not inverted).
std::uint32_t csum_add(std::uint32_t sum, std::span<const std::uint8_t> data);
std::uint16_t csum_fold(std::uint32_t sum);

// --- TX parsing ------------------------------------------------------------------------------

// What the driver may ask of the device on TX, from the negotiated features.
struct NetTxOffloads {
    bool csum = false;  // VIRTIO_NET_F_CSUM
    bool tso4 = false;  // VIRTIO_NET_F_HOST_TSO4
    bool tso6 = false;  // VIRTIO_NET_F_HOST_TSO6
};
// What the driver accepts on RX.
struct NetRxOffloads {
    bool csum = false;  // VIRTIO_NET_F_GUEST_CSUM
    bool tso4 = false;  // VIRTIO_NET_F_GUEST_TSO4
    bool tso6 = false;  // VIRTIO_NET_F_GUEST_TSO6
    bool mrg_rxbuf = false;

    // True if a frame with this header may be given to the driver as it is.
    bool accepts(const NetHdr& h) const;
    // Largest frame (without the header) the driver expects (§5.1.6.3).
    std::size_t max_frame() const { return tso4 || tso6 ? kNetMaxFrame : kNetMaxPlainFrame; }
};

enum class NetTxError : std::uint8_t {
    kNoHeader,     // fewer readable bytes than a virtio_net_hdr
    kShortFrame,   // frame shorter than an Ethernet header
    kFrameTooBig,  // frame longer than kNetMaxFrame
    kBadHeader,    // flags/gso_type not allowed by the negotiated features, or inconsistent
};
std::string_view to_string(NetTxError e);

// A validated TX frame: the header (as read once from guest memory) and the frame as iovecs
// into guest memory (zero copy).
struct NetTxFrame {
    NetHdr hdr{};
    std::vector<iovec> frame;  // keeps its capacity across parses
    std::size_t len = 0;
};

std::expected<void, NetTxError> parse_net_tx(const virtq::DescriptorChain& chain,
                                             const NetTxOffloads& offloads, NetTxFrame& out);

// --- the back-end contract -------------------------------------------------------------------

// What a back end sees of one RX queue while it delivers frames (on that queue's thread).
class NetRxSink {
  public:
    virtual ~NetRxSink() = default;
    // Guest buffers for a frame of `len` bytes, header included: one chain, or with MRG_RXBUF as
    // many chains as it takes (fewer if the ring runs out). Empty: no buffer at all.
    virtual std::span<const iovec> buffers(std::size_t len) = 0;
    // The frame (header first) now fills the first `len` bytes of buffers(): sets num_buffers,
    // clears offload flags the driver did not negotiate, completes the chains.
    virtual void commit(std::size_t len) = 0;
    // The driver's RX filter (§5.1.6.5.1/2): false if a frame to `dst` is not wanted.
    virtual bool accepts(const MacAddress& dst) = 0;
    virtual const NetRxOffloads& offloads() const = 0;
    // Counts a frame the back end could not deliver (no or too small buffers, offload mismatch).
    virtual void count_drop() = 0;
    virtual void count_filtered() = 0;
};

// Where a device's frames go and come from. `pair` is the queue pair index, < queue_pairs().
// transmit() runs on the TX queue's thread, rx_event_fd()/receive() on the RX queue's thread.
class NetBackend {
  public:
    virtual ~NetBackend() = default;
    virtual std::uint16_t queue_pairs() const = 0;
    // Sends one validated frame; never blocks. False if it was dropped.
    virtual bool transmit(std::uint16_t pair, const NetTxFrame& frame) = 0;
    // Readable (level-triggered) while frames wait for the pair's RX queue.
    virtual int rx_event_fd(std::uint16_t pair) const = 0;
    // Delivers waiting frames into `sink` until none is left or the sink has no buffer; a frame
    // it cannot deliver either waits (bounded) or is dropped and counted.
    virtual void receive(std::uint16_t pair, NetRxSink& sink) = 0;
    // The driver negotiated these RX offloads (TAP: TUNSETOFFLOAD).
    virtual void set_rx_offloads(const NetRxOffloads& /*offloads*/) {}
    // The driver uses receiveq1..n (VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, 1 after reset).
    virtual void set_active_pairs(std::uint16_t /*n*/) {}
};

// --- the device ------------------------------------------------------------------------------

struct NetOptions {
    std::optional<MacAddress> mac;  // none: a random locally administered address
    std::uint16_t queue_pairs = 1;
    std::uint16_t queue_size = 256;  // largest queue the driver may configure
    std::shared_ptr<NetBackend> backend;
};

// Counters of one device (relaxed: statistics). Frame counts exclude the virtio_net_hdr.
struct NetStats {
    std::uint64_t tx_packets = 0;
    std::uint64_t tx_bytes = 0;
    std::uint64_t tx_errors = 0;   // malformed TX chains (completed, not sent)
    std::uint64_t tx_dropped = 0;  // the back end refused the frame
    std::uint64_t rx_packets = 0;
    std::uint64_t rx_bytes = 0;
    std::uint64_t rx_dropped = 0;     // no/too small RX buffers, offload the driver cannot take
    std::uint64_t rx_filtered = 0;    // refused by the driver's RX filter
    std::uint64_t rx_bad_chains = 0;  // RX chains too small for a header (completed empty)
    std::uint64_t ctrl_errors = 0;    // control commands answered VIRTIO_NET_ERR
};

// The driver's receive filter (§5.1.6.5.1, §5.1.6.5.2).
struct NetRxFilter {
    static constexpr std::size_t kMaxTable = 64;  // beyond: act as promisc / allmulti

    MacAddress mac{};
    bool promisc = true;  // until the driver says otherwise (as QEMU: drivers expect it)
    bool allmulti = false;
    bool uni_overflow = false;
    bool multi_overflow = false;
    std::vector<MacAddress> unicast;
    std::vector<MacAddress> multicast;

    bool accepts(const MacAddress& dst) const;
};

class NetDevice final : public VirtioDevice {
    struct PrivateTag {};

  public:
    explicit NetDevice(PrivateTag) {}
    ~NetDevice() override;

    // Validates the options; errors name the problem.
    static std::expected<std::unique_ptr<NetDevice>, std::string> create(NetOptions options);

    std::uint32_t device_id() const override { return kIdNet; }
    std::uint64_t device_features() const override;
    // Every pair plus the control queue.
    std::uint16_t num_queues() const override { return static_cast<std::uint16_t>(2 * pairs_ + 1); }
    std::uint16_t max_queue_size() const override { return queue_size_; }
    std::span<const std::uint8_t> config() const override;
    void set_features(std::uint64_t negotiated) override;
    // nullptr for an index that is no queue under the negotiated features.
    std::unique_ptr<QueueHandler> start_queue(std::uint16_t index, QueueHandle q) override;
    void reset() override;

    MacAddress mac() const;
    std::uint16_t queue_pairs() const { return pairs_; }
    std::uint16_t active_pairs() const { return active_pairs_.load(std::memory_order_relaxed); }
    std::uint64_t negotiated() const { return negotiated_; }
    NetBackend& backend() const { return *backend_; }
    NetStats stats() const;
    NetRxFilter rx_filter() const;

  private:
    friend class NetRxQueue;
    friend class NetTxQueue;
    friend class NetCtrlQueue;

    // Per-pair counters, one cache line each: queues of a device run on different threads.
    struct alignas(64) PairCounters {
        std::atomic<std::uint64_t> tx_packets{0};
        std::atomic<std::uint64_t> tx_bytes{0};
        std::atomic<std::uint64_t> tx_errors{0};
        std::atomic<std::uint64_t> tx_dropped{0};
        std::atomic<std::uint64_t> rx_packets{0};
        std::atomic<std::uint64_t> rx_bytes{0};
        std::atomic<std::uint64_t> rx_dropped{0};
        std::atomic<std::uint64_t> rx_filtered{0};
        std::atomic<std::uint64_t> rx_bad_chains{0};
    };

    bool has(unsigned feature) const { return (negotiated_ & (std::uint64_t{1} << feature)) != 0; }
    // Control-queue side of the RX filter; RX queues copy it when the generation moves.
    void update_filter(const std::function<void(NetRxFilter&)>& change);
    std::uint64_t filter_generation() const { return filter_gen_.load(std::memory_order_acquire); }

    std::uint16_t pairs_ = 1;
    std::uint16_t queue_size_ = 256;
    std::shared_ptr<NetBackend> backend_;
    NetConfig config_{};
    MacAddress default_mac_{};
    std::uint64_t negotiated_ = 0;
    NetTxOffloads tx_offloads_;
    NetRxOffloads rx_offloads_;
    std::atomic<std::uint16_t> active_pairs_{1};
    mutable std::mutex filter_mu_;
    NetRxFilter filter_;  // under filter_mu_
    std::atomic<std::uint64_t> filter_gen_{0};
    std::unique_ptr<PairCounters[]> counters_;
    std::atomic<std::uint64_t> ctrl_errors_{0};
};

}  // namespace vireo::dev
