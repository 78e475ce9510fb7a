// virtio-vsock (virtio 1.2 §5.10), independent of the transport, bridged to AF_UNIX sockets
// in the "hybrid" scheme Firecracker documents:
//
//  - guest → host: a guest connect() to (CID 2, port P) becomes a connect() to the unix socket
//    "<uds_path>_<P>". OP_RESPONSE when it is accepted, OP_RST when nobody listens there.
//  - host → guest: the device listens on <uds_path> itself. A host program connects and writes
//    "CONNECT <port>\n"; the device sends OP_REQUEST to the guest's port and, on OP_RESPONSE,
//    answers "OK <local port>\n" (the host-side port the guest sees); on OP_RST it closes.
//  - then bytes flow both ways, with §5.10.6.3 credit flow control per connection: the device
//    never sends more payload than the guest's buf_alloc − (tx_cnt − fwd_cnt), and advertises
//    kVsockBufAlloc bytes of its own buffer, which holds guest data a host socket cannot take
//    yet (a guest that overruns its credit is reset).
//
// Threads: the rx and tx queues have their own handlers (and threads). Connection state is
// shared behind one mutex. The tx handler completes every packet at once (replies it owes go to
// a bounded queue); the rx handler owns an epoll set — its event_fd() — holding the listening
// socket, every connection's socket and an eventfd the tx handler uses to wake it. The event
// queue is never popped (no events are sent), so its buffers are never left unanswered.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <expected>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "devices/device.hpp"
#include "devices/event_set.hpp"
#include "memory/unique_fd.hpp"
#include "spec/virtio_vsock.hpp"

namespace vireo::dev {

// --- limits ------------------------------------------------------------------------------
inline constexpr std::uint32_t kVsockBufAlloc = 256 * 1024;   // per connection, advertised
inline constexpr std::uint32_t kVsockMaxPayload = 64 * 1024;  // per packet, both directions
inline constexpr std::size_t kVsockMaxConnections = 1024;
inline constexpr std::size_t kVsockMaxPendingHost = 64;  // accepted, "CONNECT" not read yet
inline constexpr std::size_t kVsockMaxQueuedRst = 256;   // replies waiting for rx buffers
inline constexpr std::size_t kVsockMaxConnectLine = 32;  // "CONNECT 4294967295\n" fits
// Host-initiated connections take local ports from here up (below: the guest's usual range).
inline constexpr std::uint32_t kVsockFirstLocalPort = 1u << 30;

struct VsockOptions {
    std::uint64_t guest_cid = 3;
    std::string uds_path;  // listening socket; guest connections go to "<uds_path>_<port>"
    std::uint16_t queue_size = 256;
};

struct VsockStats {
    std::atomic<std::uint64_t> to_guest{0};   // payload bytes
    std::atomic<std::uint64_t> to_host{0};    // payload bytes
    std::atomic<std::uint64_t> malformed{0};  // packets rejected by validation
    std::atomic<std::uint64_t> rst_sent{0};
    std::atomic<std::uint64_t> dropped{0};  // replies lost because the reply queue was full
};

class VsockDevice final : public VirtioDevice {
    struct PrivateTag {};

  public:
    explicit VsockDevice(PrivateTag) {}
    ~VsockDevice() override;

    // Validates the CID (§5.10.4: not 0, 1, 2 or 0xffffffff; the upper 32 bits are zero) and
    // starts listening on uds_path. Errors name the option.
    static std::expected<std::unique_ptr<VsockDevice>, std::string> create(
        const VsockOptions& options);

    std::uint32_t device_id() const override { return kIdVsock; }
    std::uint64_t device_features() const override;
    std::uint16_t num_queues() const override { return 3; }
    std::uint16_t max_queue_size() const override { return options_.queue_size; }
    std::span<const std::uint8_t> config() const override;
    void set_features(std::uint64_t /*negotiated*/) override {}
    std::unique_ptr<QueueHandler> start_queue(std::uint16_t index, QueueHandle q) override;
    // §5.10: connections do not survive a reset: every host socket is closed.
    void reset() override;

    const VsockOptions& options() const { return options_; }
    const VsockStats& stats() const { return stats_; }
    std::size_t connection_count() const;

  private:
    friend class VsockRxQueue;
    friend class VsockTxQueue;

    // A connection between a guest port and a host socket, keyed by (local port, peer port):
    // local = the host-side vsock port, peer = the guest's.
    struct Conn {
        enum class State : std::uint8_t { kConnecting, kEstablished, kClosing };
        UniqueFd sock;
        std::uint32_t local_port = 0;
        std::uint32_t peer_port = 0;
        State state = State::kEstablished;
        bool host_initiated = false;
        // The guest's side of the credit (§5.10.6.3), from every packet it sends.
        std::uint32_t peer_buf_alloc = 0;
        std::uint32_t peer_fwd_cnt = 0;
        std::uint32_t tx_cnt = 0;  // payload bytes sent to the guest
        // Our side: guest bytes received, and forwarded to the host socket.
        std::uint32_t rx_cnt = 0;
        std::uint32_t fwd_cnt = 0;
        std::uint32_t last_fwd_cnt_sent = 0;  // what the guest last heard
        std::vector<std::uint8_t> pending;    // guest → host bytes the socket did not take
        std::size_t pending_off = 0;
        // Control packets owed to the guest, sent by the rx handler.
        bool send_request = false;
        bool send_response = false;
        bool send_credit_update = false;
        bool send_shutdown = false;
        bool send_rst = false;
        bool readable = false;  // edge seen, not yet read to EAGAIN
        bool host_eof = false;
        std::uint32_t peer_shutdown = 0;  // kVsockShutdown* bits the guest sent
        bool queued = false;              // in ready_
    };
    using Key = std::uint64_t;  // local << 32 | peer
    static Key key(std::uint32_t local, std::uint32_t peer) {
        return (std::uint64_t{local} << 32) | peer;
    }
    // A host program that connected to uds_path and has not finished its "CONNECT" line.
    struct PendingHost {
        UniqueFd sock;
    };

    // All below: with mu_ held.
    void mark(Conn& c);  // c needs the rx handler's attention
    void queue_rst(const VsockHdr& to);
    void close_conn(Key k);
    void flush_pending(Conn& c);
    bool credit_update_due(const Conn& c) const;
    std::uint32_t allocate_local_port();
    VsockHdr header_for(Conn& c, std::uint16_t op);

    VsockOptions options_;
    VsockConfig config_{};
    UniqueFd listener_;
    EventSet events_;  // the rx handler's event_fd()
    UniqueFd wake_;

    mutable std::mutex mu_;
    std::map<Key, std::unique_ptr<Conn>> conns_;
    std::map<int, PendingHost> pending_host_;  // by fd
    std::map<int, Key> fd_keys_;               // connection socket → flow
    std::deque<Key> ready_;                    // conns with control to send or data to read
    std::deque<VsockHdr> rst_queue_;           // RSTs for packets with no connection
    std::uint32_t next_local_port_ = kVsockFirstLocalPort;

    VsockStats stats_;
};

}  // namespace vireo::dev
