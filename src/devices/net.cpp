#include "devices/net.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <charconv>
#include <random>

#include "base/log.hpp"
#include "virtq/features.hpp"
#include "virtq/ring_layout.hpp"

namespace vireo::dev {

namespace {

using virtq::bit;

constexpr std::uint16_t kMaxPairs = 256;
// TX chains completed between two publishes, so a long burst hands buffers back early.
constexpr unsigned kTxBatch = 64;

}  // namespace

// --- small helpers ---------------------------------------------------------------------------

std::expected<MacAddress, std::string> parse_mac(std::string_view text) {
    auto bad = [&] {
        return std::unexpected(fmt::format(
            "invalid MAC address '{}' (expected six hex bytes like 52:54:00:12:34:56)", text));
    };
    constexpr std::size_t kLen = 3 * kEthAddr - 1;
    if (text.size() != kLen) {
        return bad();
    }
    MacAddress m{};
    for (std::size_t i = 0; i < kEthAddr; ++i) {
        const char* p = text.data() + 3 * i;
        if (i + 1 < kEthAddr && p[2] != ':') {
            return bad();
        }
        auto [end, ec] = std::from_chars(p, p + 2, m[i], 16);
        if (ec != std::errc() || end != p + 2) {
            return bad();
        }
    }
    return m;
}

std::string to_string(const MacAddress& m) {
    return fmt::format("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4],
                       m[5]);
}

MacAddress random_mac() {
    std::random_device rd;
    MacAddress m{};
    for (auto& b : m) {
        b = static_cast<std::uint8_t>(rd());
    }
    constexpr std::uint8_t kLocal = 0x02;  // U/L bit: locally administered
    constexpr std::uint8_t kGroup = 0x01;  // I/G bit: must be clear for a station
    m[0] = static_cast<std::uint8_t>((m[0] & ~kGroup) | kLocal);
    return m;
}

std::uint32_t csum_add(std::uint32_t sum, std::span<const std::uint8_t> data) {
    // 16-bit big-endian words (RFC 1071); a 64-bit accumulator cannot overflow for any frame.
    std::uint64_t acc = sum;
    std::size_t i = 0;
    for (; i + 1 < data.size(); i += 2) {
        acc += static_cast<std::uint32_t>(data[i]) << 8 | data[i + 1];
    }
    if (i < data.size()) {
        acc += static_cast<std::uint32_t>(data[i]) << 8;  // odd byte, padded with zero
    }
    while ((acc >> 32) != 0) {
        acc = (acc & 0xffffffffu) + (acc >> 32);
    }
    return static_cast<std::uint32_t>(acc);
}

std::uint16_t csum_fold(std::uint32_t sum) {
    while ((sum >> 16) != 0) {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    return static_cast<std::uint16_t>(sum);
}

bool NetRxOffloads::accepts(const NetHdr& h) const {
    if ((h.flags & kNetHdrFNeedsCsum) != 0 && !csum) {
        return false;
    }
    switch (h.gso_type) {
        case kNetHdrGsoNone:
            return true;
        case kNetHdrGsoTcpv4:
            return tso4;
        case kNetHdrGsoTcpv6:
            return tso6;
        default:
            return false;  // ECN, UFO, USO: never negotiated
    }
}

bool NetRxFilter::accepts(const MacAddress& dst) const {
    if (promisc || is_broadcast(dst)) {
        return true;
    }
    if (is_multicast(dst)) {
        return allmulti || multi_overflow || std::ranges::find(multicast, dst) != multicast.end();
    }
    return dst == mac || uni_overflow || std::ranges::find(unicast, dst) != unicast.end();
}

std::string_view to_string(NetTxError e) {
    switch (e) {
        case NetTxError::kNoHeader:
            return "chain shorter than virtio_net_hdr";
        case NetTxError::kShortFrame:
            return "frame shorter than an Ethernet header";
        case NetTxError::kFrameTooBig:
            return "frame too long";
        case NetTxError::kBadHeader:
            return "virtio_net_hdr asks for offloads not negotiated or is inconsistent";
    }
    return "unknown TX error";
}

std::expected<void, NetTxError> parse_net_tx(const virtq::DescriptorChain& chain,
                                             const NetTxOffloads& off, NetTxFrame& out) {
    out.frame.clear();
    out.len = 0;
    // Only the readable part matters: TX buffers are device-readable (§5.1.6.2); a writable
    // tail is ignored and nothing is written into it.
    virtq::ChainReader r(chain.readable());
    if (!r.read_obj(out.hdr)) {
        return std::unexpected(NetTxError::kNoHeader);
    }
    const std::size_t len = r.remaining();
    if (len < kEthHeader) {
        return std::unexpected(NetTxError::kShortFrame);
    }
    if (len > kNetMaxFrame) {
        return std::unexpected(NetTxError::kFrameTooBig);
    }
    NetHdr& h = out.hdr;
    // §5.1.6.2.1: the driver MUST NOT set DATA_VALID or RSC_INFO, and sets NEEDS_CSUM only
    // with VIRTIO_NET_F_CSUM; the checksum field must lie inside the frame.
    if ((h.flags & ~kNetHdrFNeedsCsum) != 0) {
        return std::unexpected(NetTxError::kBadHeader);
    }
    const bool needs_csum = (h.flags & kNetHdrFNeedsCsum) != 0;
    if (needs_csum &&
        (!off.csum || std::size_t{h.csum_start.get()} + h.csum_offset.get() + 2 > len)) {
        return std::unexpected(NetTxError::kBadHeader);
    }
    // gso_type only as negotiated (HOST_ECN/UFO/USO are not offered); a GSO frame needs
    // NEEDS_CSUM and an MSS.
    switch (h.gso_type) {
        case kNetHdrGsoNone:
            break;
        case kNetHdrGsoTcpv4:
        case kNetHdrGsoTcpv6: {
            const bool allowed = h.gso_type == kNetHdrGsoTcpv4 ? off.tso4 : off.tso6;
            if (!allowed || !needs_csum || h.gso_size.get() == 0) {
                return std::unexpected(NetTxError::kBadHeader);
            }
            break;
        }
        default:
            return std::unexpected(NetTxError::kBadHeader);
    }
    h.num_buffers.set(0);  // unused on TX (§5.1.6.2); never forwarded as the driver wrote it
    r.take_iovecs(len, out.frame);
    out.len = len;
    return {};
}

// ---------------------------------------------------------------------------------------------
// Queue handlers. Each runs on its own transport thread.

namespace {

void log_queue_error(std::string_view kind, std::uint16_t pair, virtq::QueueError e) {
    log::guest_warn("net: {} queue {}: {}; stopping until reset", kind, pair, virtq::to_string(e));
}

}  // namespace

// Receive queue: the back end pushes frames through the NetRxSink interface.
//
// Chains are popped only when a frame needs them; a chain popped for a frame that then cannot
// be delivered (filtered, too big, or the ring ran out half way through an MRG frame) is held
// and used for the next frame, so no buffer is wasted and none is completed empty in normal
// operation. Only drain() completes held chains with length 0, as nothing can un-pop them.
class NetRxQueue final : public QueueHandler, public NetRxSink {
  public:
    NetRxQueue(NetDevice& dev, std::uint16_t pair, QueueHandle q)
        : dev_(dev),
          pair_(pair),
          q_(q),
          counters_(dev.counters_[pair]),
          offloads_(dev.rx_offloads_) {}

    void on_kick() override { serve(); }
    int event_fd() const override { return dev_.backend_->rx_event_fd(pair_); }
    void on_event() override { serve(); }
    void drain() override {
        for (std::size_t i = 0; i < held_; ++i) {
            q_.push(chains_[i].token(), 0);
            pushed_ = true;
        }
        held_ = 0;
        publish();
    }
    bool needs_reset() const override { return needs_reset_; }

    // --- NetRxSink ---
    std::span<const iovec> buffers(std::size_t len) override {
        iov_.clear();
        std::size_t have = 0;
        std::size_t k = 0;
        // Without MRG_RXBUF a frame gets exactly one chain (§5.1.6.3.2).
        while (!needs_reset_ && have < len && (k == 0 || offloads_.mrg_rxbuf)) {
            if (k == held_ && !pop_one()) {
                break;
            }
            have += chains_[k].writable_bytes();
            ++k;
        }
        for (std::size_t i = 0; i < k; ++i) {
            const auto w = chains_[i].writable();
            iov_.insert(iov_.end(), w.begin(), w.end());
        }
        offered_ = k;
        return iov_;
    }

    void commit(std::size_t len) override {
        // The frame fills the first chains completely and the last one partly (§5.1.6.4.1).
        std::size_t k = 0;
        std::size_t rest = len;
        while (k < offered_ && rest > 0) {
            rest -= std::min<std::size_t>(rest, chains_[k].writable_bytes());
            ++k;
        }
        if (len < kNetHdrSize || rest > 0) {
            count_drop();  // a back-end bug; the chains stay held
            return;
        }
        NetHdr h{};
        virtq::ChainReader(iov_).read_obj(h);  // cannot fail: len >= kNetHdrSize is in iov_
        h.num_buffers.set(static_cast<std::uint16_t>(k));  // k <= queue size <= 32768
        // §5.1.6.4.1: without GUEST_CSUM flags MUST be zero (a TAP sets DATA_VALID anyway).
        h.flags = offloads_.csum ? h.flags & (kNetHdrFNeedsCsum | kNetHdrFDataValid) : 0;
        virtq::ChainWriter(iov_).write_obj(h);
        rest = len;
        for (std::size_t i = 0; i < k; ++i) {
            const std::size_t used = std::min<std::size_t>(rest, chains_[i].writable_bytes());
            rest -= used;
            q_.push(chains_[i].token(), static_cast<std::uint32_t>(used));
        }
        pushed_ = true;
        std::rotate(chains_.begin(), chains_.begin() + static_cast<std::ptrdiff_t>(k),
                    chains_.begin() + static_cast<std::ptrdiff_t>(held_));
        held_ -= k;
        offered_ = 0;
        counters_.rx_packets.fetch_add(1, std::memory_order_relaxed);
        counters_.rx_bytes.fetch_add(len - kNetHdrSize, std::memory_order_relaxed);
    }

    bool accepts(const MacAddress& dst) override {
        const std::uint64_t gen = dev_.filter_generation();
        if (gen != filter_gen_) {
            // A snapshot per queue: the hot path reads only its own copy and one atomic.
            std::lock_guard lock(dev_.filter_mu_);
            filter_ = dev_.filter_;
            filter_gen_ = dev_.filter_gen_.load(std::memory_order_relaxed);
        }
        return filter_.accepts(dst);
    }
    const NetRxOffloads& offloads() const override { return offloads_; }
    void count_drop() override { counters_.rx_dropped.fetch_add(1, std::memory_order_relaxed); }
    void count_filtered() override {
        counters_.rx_filtered.fetch_add(1, std::memory_order_relaxed);
    }

  private:
    void serve() {
        while (!needs_reset_) {
            starved_ = false;
            q_.queue().disable_notifications();
            dev_.backend_->receive(pair_, *this);
            if (!starved_) {
                break;  // the back end has nothing more for now; its event fd wakes us
            }
            // Out of buffers with frames waiting: ask for a kick, then look once more so buffers
            // added in between are not missed (§2.7.10).
            if (!q_.queue().enable_notifications()) {
                break;
            }
        }
        publish();
    }

    // Pops one usable chain into chains_[held_]. False if the ring is empty or broken.
    bool pop_one() {
        for (;;) {
            if (held_ == chains_.size()) {
                chains_.emplace_back();
            }
            virtq::DescriptorChain& c = chains_[held_];
            auto r = q_.pop(c);
            if (!r) {
                if (!needs_reset_) {
                    log_queue_error("rx", pair_, r.error());
                }
                needs_reset_ = true;
                return false;
            }
            if (!*r) {
                starved_ = true;
                return false;
            }
            // §5.1.6.3.1: every buffer holds at least the header. A chain that cannot is
            // handed back empty rather than kept forever.
            if (c.writable_bytes() < kNetHdrSize) {
                q_.push(c.token(), 0);
                pushed_ = true;
                counters_.rx_bad_chains.fetch_add(1, std::memory_order_relaxed);
                continue;
            }
            ++held_;
            return true;
        }
    }

    void publish() {
        if (pushed_) {
            pushed_ = false;
            q_.publish_and_notify();
        }
    }

    NetDevice& dev_;
    std::uint16_t pair_;
    QueueHandle q_;
    NetDevice::PairCounters& counters_;
    NetRxOffloads offloads_;
    std::vector<virtq::DescriptorChain> chains_;  // [0, held_) popped, not yet used
    std::size_t held_ = 0;
    std::size_t offered_ = 0;  // chains behind the last buffers() answer
    std::vector<iovec> iov_;
    NetRxFilter filter_;
    std::uint64_t filter_gen_ = ~std::uint64_t{0};
    bool starved_ = false;
    bool pushed_ = false;
    bool needs_reset_ = false;
};

// Transmit queue: every chain is parsed, handed to the back end and completed at once.
class NetTxQueue final : public QueueHandler {
  public:
    NetTxQueue(NetDevice& dev, std::uint16_t pair, QueueHandle q)
        : dev_(dev), pair_(pair), q_(q), counters_(dev.counters_[pair]), off_(dev.tx_offloads_) {}

    void on_kick() override {
        while (!needs_reset_) {
            q_.queue().disable_notifications();
            process();
            if (needs_reset_ || !q_.queue().enable_notifications()) {
                break;
            }
        }
        publish();
    }
    void drain() override { publish(); }  // nothing is ever left in flight
    bool needs_reset() const override { return needs_reset_; }

  private:
    void process() {
        unsigned batch = 0;
        for (;;) {
            auto r = q_.pop(chain_);
            if (!r) {
                log_queue_error("tx", pair_, r.error());
                needs_reset_ = true;
                return;
            }
            if (!*r) {
                return;
            }
            if (auto ok = parse_net_tx(chain_, off_, frame_); !ok) {
                // A bad frame is counted and completed, never sent (Firecracker does the same).
                if (counters_.tx_errors.fetch_add(1, std::memory_order_relaxed) == 0) {
                    log::guest_warn("net: tx queue {}: {}", pair_, to_string(ok.error()));
                }
            } else if (dev_.backend_->transmit(pair_, frame_)) {
                counters_.tx_packets.fetch_add(1, std::memory_order_relaxed);
                counters_.tx_bytes.fetch_add(frame_.len, std::memory_order_relaxed);
            } else {
                counters_.tx_dropped.fetch_add(1, std::memory_order_relaxed);
            }
            q_.push(chain_.token(), 0);
            pushed_ = true;
            if (++batch == kTxBatch) {
                batch = 0;
                publish();
            }
        }
    }

    void publish() {
        if (pushed_) {
            pushed_ = false;
            q_.publish_and_notify();
        }
    }

    NetDevice& dev_;
    std::uint16_t pair_;
    QueueHandle q_;
    NetDevice::PairCounters& counters_;
    NetTxOffloads off_;
    virtq::DescriptorChain chain_;
    NetTxFrame frame_;
    bool pushed_ = false;
    bool needs_reset_ = false;
};

// Control queue (§5.1.6.5): class, command, command data (readable), then the ack byte.
class NetCtrlQueue final : public QueueHandler {
  public:
    NetCtrlQueue(NetDevice& dev, QueueHandle q) : dev_(dev), q_(q) {}

    void on_kick() override {
        while (!needs_reset_) {
            q_.queue().disable_notifications();
            process();
            if (needs_reset_ || !q_.queue().enable_notifications()) {
                break;
            }
        }
        publish();
    }
    void drain() override { publish(); }
    bool needs_reset() const override { return needs_reset_; }

  private:
    void process() {
        for (;;) {
            auto r = q_.pop(chain_);
            if (!r) {
                log_queue_error("ctrl", 0, r.error());
                needs_reset_ = true;
                return;
            }
            if (!*r) {
                return;
            }
            std::uint32_t used = 0;
            if (chain_.writable_bytes() == 0) {
                // No ack byte: nothing can be reported, the command is not executed.
                dev_.ctrl_errors_.fetch_add(1, std::memory_order_relaxed);
            } else {
                virtq::ChainReader rd(chain_.readable());
                const std::uint8_t ack = execute(rd);
                if (ack != kNetOk) {
                    dev_.ctrl_errors_.fetch_add(1, std::memory_order_relaxed);
                }
                virtq::ChainWriter(chain_.writable()).write_obj(ack);
                used = 1;
            }
            q_.push(chain_.token(), used);
            pushed_ = true;
        }
    }

    // Every command is validated whole (features, exact data length, values) before it
    // changes anything.
    std::uint8_t execute(virtq::ChainReader& r) {
        std::uint8_t hdr[2];
        if (!r.read(hdr)) {
            return kNetErr;
        }
        const std::uint8_t cls = hdr[0];
        const std::uint8_t cmd = hdr[1];
        switch (cls) {
            case kNetCtrlRx:
                return rx_mode(cmd, r);
            case kNetCtrlMac:
                if (cmd == kNetCtrlMacTableSet) {
                    return mac_table(r);
                }
                if (cmd == kNetCtrlMacAddrSet) {
                    return mac_addr(r);
                }
                return kNetErr;
            case kNetCtrlMq:
                return mq(cmd, r);
            default:
                // VLAN, ANNOUNCE, GUEST_OFFLOADS: features not offered.
                return kNetErr;
        }
    }

    std::uint8_t rx_mode(std::uint8_t cmd, virtq::ChainReader& r) {
        std::uint8_t on = 0;
        // §5.1.6.5.1: PROMISC and ALLMULTI need CTRL_RX; the others need CTRL_RX_EXTRA, which
        // is not offered. Data is exactly one byte, 0 or 1.
        if (!dev_.has(kNetFCtrlRx) || (cmd != kNetCtrlRxPromisc && cmd != kNetCtrlRxAllmulti) ||
            r.remaining() != 1 || !r.read_obj(on) || on > 1) {
            return kNetErr;
        }
        dev_.update_filter(
            [&](NetRxFilter& f) { (cmd == kNetCtrlRxPromisc ? f.promisc : f.allmulti) = on != 0; });
        return kNetOk;
    }

    // One table of MAC_TABLE_SET: le32 entries, then entries * 6 bytes (§5.1.6.5.2).
    static bool read_table(virtq::ChainReader& r, bool multicast, std::vector<MacAddress>& out,
                           bool& overflow) {
        le32 n{};
        if (!r.read_obj(n) || n.get() > r.remaining() / kEthAddr) {
            return false;
        }
        overflow = n.get() > NetRxFilter::kMaxTable;
        for (std::uint32_t i = 0; i < n.get(); ++i) {
            MacAddress m{};
            r.read(m);  // cannot fail: n entries fit in remaining()
            if (is_multicast(m) != multicast) {
                return false;  // a unicast table entry that is multicast, or the reverse
            }
            if (!overflow) {
                out.push_back(m);
            }
        }
        return true;
    }

    std::uint8_t mac_table(virtq::ChainReader& r) {
        if (!dev_.has(kNetFCtrlRx)) {
            return kNetErr;
        }
        std::vector<MacAddress> uni;
        std::vector<MacAddress> multi;
        bool uni_over = false;
        bool multi_over = false;
        if (!read_table(r, false, uni, uni_over) || !read_table(r, true, multi, multi_over) ||
            r.remaining() != 0) {
            return kNetErr;
        }
        // §5.1.6.5.2.1: the table is updated before the command is consumed.
        dev_.update_filter([&](NetRxFilter& f) {
            f.unicast = std::move(uni);
            f.multicast = std::move(multi);
            f.uni_overflow = uni_over;
            f.multi_overflow = multi_over;
        });
        return kNetOk;
    }

    std::uint8_t mac_addr(virtq::ChainReader& r) {
        MacAddress m{};
        if (!dev_.has(kNetFCtrlMacAddr) || r.remaining() != kEthAddr || !r.read(m) ||
            is_multicast(m)) {
            return kNetErr;
        }
        // §5.1.6.5.2.1: config space `mac` reflects it before the command is consumed.
        dev_.update_filter([&](NetRxFilter& f) {
            f.mac = m;
            std::ranges::copy(m, dev_.config_.mac);
        });
        return kNetOk;
    }

    std::uint8_t mq(std::uint8_t cmd, virtq::ChainReader& r) {
        le16 n{};
        // §5.1.6.5.6: 1 <= virtqueue_pairs <= max_virtqueue_pairs. RSS/HASH_CONFIG not offered.
        if (!dev_.has(kNetFMq) || cmd != kNetCtrlMqVqPairsSet || r.remaining() != sizeof n ||
            !r.read_obj(n) || n.get() < kNetMqPairsMin || n.get() > dev_.pairs_) {
            return kNetErr;
        }
        dev_.active_pairs_.store(n.get(), std::memory_order_relaxed);
        dev_.backend_->set_active_pairs(n.get());
        return kNetOk;
    }

    void publish() {
        if (pushed_) {
            pushed_ = false;
            q_.publish_and_notify();
        }
    }

    NetDevice& dev_;
    QueueHandle q_;
    virtq::DescriptorChain chain_;
    bool pushed_ = false;
    bool needs_reset_ = false;
};

// ---------------------------------------------------------------------------------------------

NetDevice::~NetDevice() = default;

std::expected<std::unique_ptr<NetDevice>, std::string> NetDevice::create(NetOptions o) {
    if (!o.backend) {
        return std::unexpected(std::string("net: no back end given"));
    }
    if (o.queue_pairs == 0 || o.queue_pairs > kMaxPairs) {
        return std::unexpected(
            fmt::format("net: queue pairs {} out of range (1..{})", o.queue_pairs, kMaxPairs));
    }
    if (o.backend->queue_pairs() != o.queue_pairs) {
        return std::unexpected(fmt::format("net: back end has {} queue pairs, device wants {}",
                                           o.backend->queue_pairs(), o.queue_pairs));
    }
    if (o.queue_size == 0 || o.queue_size > virtq::kMaxQueueSize ||
        !std::has_single_bit(o.queue_size)) {
        return std::unexpected(fmt::format("net: queue size {} must be a power of two in 1..{}",
                                           o.queue_size, virtq::kMaxQueueSize));
    }
    if (o.mac && (is_multicast(*o.mac) || *o.mac == MacAddress{})) {
        return std::unexpected(
            fmt::format("net: MAC {} is not a unicast station address", to_string(*o.mac)));
    }
    auto dev = std::make_unique<NetDevice>(PrivateTag{});
    dev->pairs_ = o.queue_pairs;
    dev->queue_size_ = o.queue_size;
    dev->backend_ = std::move(o.backend);
    dev->default_mac_ = o.mac ? *o.mac : random_mac();
    dev->counters_ = std::make_unique<PairCounters[]>(o.queue_pairs);
    dev->config_.status.set(kNetSLinkUp);
    dev->config_.max_virtqueue_pairs.set(o.queue_pairs);
    dev->reset();
    return dev;
}

std::uint64_t NetDevice::device_features() const {
    std::uint64_t f = bit(kNetFCsum) | bit(kNetFGuestCsum) | bit(kNetFMac) | bit(kNetFGuestTso4) |
                      bit(kNetFGuestTso6) | bit(kNetFHostTso4) | bit(kNetFHostTso6) |
                      bit(kNetFMrgRxbuf) | bit(kNetFStatus) | bit(kNetFCtrlVq) | bit(kNetFCtrlRx) |
                      bit(kNetFCtrlMacAddr) | bit(virtq::kFVersion1) | bit(virtq::kFRingPacked) |
                      bit(virtq::kFEventIdx) | bit(virtq::kFIndirectDesc);
    if (pairs_ > 1) {
        f |= bit(kNetFMq);
    }
    return f;
}

std::span<const std::uint8_t> NetDevice::config() const {
    // Only `mac` ever changes after creation (MAC_ADDR_SET, on the control queue's thread); a
    // racing config read may see a half-updated address, as with a real NIC register.
    return {reinterpret_cast<const std::uint8_t*>(&config_), sizeof config_};
}

void NetDevice::set_features(std::uint64_t negotiated) {
    std::uint64_t f = negotiated & device_features();
    // §5.1.3.1: a feature whose prerequisite is missing is treated as not negotiated.
    auto requires_bit = [&](unsigned feature, std::uint64_t needs) {
        if ((f & bit(feature)) != 0 && (f & needs) == 0) {
            f &= ~bit(feature);
        }
    };
    requires_bit(kNetFGuestTso4, bit(kNetFGuestCsum));
    requires_bit(kNetFGuestTso6, bit(kNetFGuestCsum));
    requires_bit(kNetFHostTso4, bit(kNetFCsum));
    requires_bit(kNetFHostTso6, bit(kNetFCsum));
    requires_bit(kNetFCtrlRx, bit(kNetFCtrlVq));
    requires_bit(kNetFMq, bit(kNetFCtrlVq));
    requires_bit(kNetFCtrlMacAddr, bit(kNetFCtrlVq));
    negotiated_ = f;
    tx_offloads_ = {has(kNetFCsum), has(kNetFHostTso4), has(kNetFHostTso6)};
    rx_offloads_ = {has(kNetFGuestCsum), has(kNetFGuestTso4), has(kNetFGuestTso6),
                    has(kNetFMrgRxbuf)};
    backend_->set_rx_offloads(rx_offloads_);
}

void NetDevice::update_filter(const std::function<void(NetRxFilter&)>& change) {
    std::lock_guard lock(filter_mu_);
    change(filter_);
    filter_gen_.fetch_add(1, std::memory_order_release);
}

void NetDevice::reset() {
    negotiated_ = 0;
    tx_offloads_ = {};
    rx_offloads_ = {};
    backend_->set_rx_offloads(rx_offloads_);
    // §5.1.6.5.6.1: after reset only receiveq1 is used.
    active_pairs_.store(1, std::memory_order_relaxed);
    backend_->set_active_pairs(1);
    // §5.1.6.5.2.1: an empty MAC table after reset; the default address again.
    update_filter([&](NetRxFilter& f) {
        f = NetRxFilter{};
        f.mac = default_mac_;
        std::ranges::copy(default_mac_, config_.mac);
    });
}

std::unique_ptr<QueueHandler> NetDevice::start_queue(std::uint16_t index, QueueHandle q) {
    // §5.1.2: the control queue follows the data queues actually negotiated.
    const std::uint32_t data_queues = has(kNetFMq) ? 2u * pairs_ : 2u;
    if (index < data_queues) {
        const auto pair = static_cast<std::uint16_t>(index / 2);
        if (index % 2 == 0) {
            return std::make_unique<NetRxQueue>(*this, pair, q);
        }
        return std::make_unique<NetTxQueue>(*this, pair, q);
    }
    if (index == data_queues && has(kNetFCtrlVq)) {
        return std::make_unique<NetCtrlQueue>(*this, q);
    }
    return nullptr;
}

MacAddress NetDevice::mac() const {
    std::lock_guard lock(filter_mu_);
    return filter_.mac;
}

NetRxFilter NetDevice::rx_filter() const {
    std::lock_guard lock(filter_mu_);
    return filter_;
}

NetStats NetDevice::stats() const {
    NetStats s;
    s.ctrl_errors = ctrl_errors_.load(std::memory_order_relaxed);
    for (std::uint16_t i = 0; i < pairs_; ++i) {
        const PairCounters& c = counters_[i];
        auto get = [](const std::atomic<std::uint64_t>& a) {
            return a.load(std::memory_order_relaxed);
        };
        s.tx_packets += get(c.tx_packets);
        s.tx_bytes += get(c.tx_bytes);
        s.tx_errors += get(c.tx_errors);
        s.tx_dropped += get(c.tx_dropped);
        s.rx_packets += get(c.rx_packets);
        s.rx_bytes += get(c.rx_bytes);
        s.rx_dropped += get(c.rx_dropped);
        s.rx_filtered += get(c.rx_filtered);
        s.rx_bad_chains += get(c.rx_bad_chains);
    }
    return s;
}

}  // namespace vireo::dev
