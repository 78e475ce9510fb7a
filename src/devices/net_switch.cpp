#include "devices/net_switch.hpp"

#include <fmt/format.h>
#include <sys/eventfd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <map>

namespace vireo::dev {

namespace {

constexpr std::uint16_t kMaxPortPairs = 256;
// A learned entry's timestamp is refreshed at most this often, so a busy sender does not write
// the shared entry on every frame.
constexpr std::int64_t kRefreshMs = 1000;

std::uint64_t mac_key(const MacAddress& m) {
    std::uint64_t k = 0;
    for (auto b : m) {
        k = k << 8 | b;
    }
    return k;
}

MacAddress mac_at(std::span<const std::uint8_t> frame, std::size_t off) {
    MacAddress m;
    std::copy_n(frame.begin() + static_cast<std::ptrdiff_t>(off), kEthAddr, m.begin());
    return m;
}

std::int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

// A hash of the frame's flow (IP addresses and TCP/UDP ports, else the MAC addresses) to steer
// it to one RX queue when the guest enabled several (§5.1.6.5.6: "automatic receive steering").
// Frames of one flow always land on the same queue, so they stay in order.
std::uint32_t flow_hash(std::span<const std::uint8_t> f) {
    std::uint32_t h = 2166136261u;  // FNV-1a
    auto mix = [&](std::size_t off, std::size_t n) {
        for (std::size_t i = off; i < off + n && i < f.size(); ++i) {
            h = (h ^ f[i]) * 16777619u;
        }
    };
    const std::uint16_t type =
        static_cast<std::uint16_t>(f[kEthTypeOffset] << 8 | f[kEthTypeOffset + 1]);
    std::size_t l4 = 0;
    std::uint8_t proto = 0;
    if (type == kEthTypeIpv4 && f.size() >= kEthHeader + 20) {
        const std::size_t ihl = std::size_t{f[kEthHeader] & 0x0fu} * 4;
        proto = f[kEthHeader + 9];
        mix(kEthHeader + 12, 8);  // source and destination address
        l4 = kEthHeader + ihl;
    } else if (type == kEthTypeIpv6 && f.size() >= kEthHeader + 40) {
        proto = f[kEthHeader + 6];
        mix(kEthHeader + 8, 32);
        l4 = kEthHeader + 40;
    } else {
        mix(0, 2 * kEthAddr);
        return h;
    }
    if ((proto == kIpProtoTcp || proto == kIpProtoUdp) && f.size() >= l4 + 4) {
        mix(l4, 4);  // source and destination port
    }
    return h;
}

}  // namespace

// --- NetSwitch -------------------------------------------------------------------------------

NetSwitch::NetSwitch(PrivateTag, std::string name, NetSwitchOptions options)
    : name_(std::move(name)), options_(options) {}

NetSwitch::~NetSwitch() = default;

std::shared_ptr<NetSwitch> NetSwitch::create(std::string name, NetSwitchOptions options) {
    options.port_queue_frames = std::max<std::size_t>(options.port_queue_frames, 1);
    return std::make_shared<NetSwitch>(PrivateTag{}, std::move(name), options);
}

std::shared_ptr<NetSwitch> NetSwitch::get(const std::string& name, NetSwitchOptions options) {
    static std::mutex mu;
    static std::map<std::string, std::weak_ptr<NetSwitch>> registry;
    std::lock_guard lock(mu);
    auto& slot = registry[name];
    if (auto sw = slot.lock()) {
        return sw;
    }
    auto sw = create(name, options);
    slot = sw;
    return sw;
}

std::expected<std::shared_ptr<NetSwitchPort>, std::string> NetSwitch::add_port(
    std::uint16_t queue_pairs) {
    if (queue_pairs == 0 || queue_pairs > kMaxPortPairs) {
        return std::unexpected(fmt::format("switch {}: queue pairs {} out of range (1..{})", name_,
                                           queue_pairs, kMaxPortPairs));
    }
    auto port = std::make_shared<NetSwitchPort>(NetSwitchPort::PrivateTag{}, shared_from_this(),
                                                next_id_.fetch_add(1), queue_pairs,
                                                options_.port_queue_frames);
    for (const auto& q : port->rx_) {
        if (!q->event) {
            return std::unexpected(
                fmt::format("switch {}: eventfd: {}", name_, std::strerror(errno)));
        }
    }
    std::unique_lock lock(mu_);
    ports_.push_back(port.get());
    return port;
}

std::size_t NetSwitch::port_count() const {
    std::shared_lock lock(mu_);
    return ports_.size();
}

std::optional<std::uint32_t> NetSwitch::lookup(const MacAddress& mac) const {
    std::shared_lock lock(mu_);
    auto it = table_.find(mac_key(mac));
    if (it == table_.end() || !fresh(it->second, now_ms())) {
        return std::nullopt;
    }
    return it->second.port->id();
}

bool NetSwitch::fresh(const Entry& e, std::int64_t now) const {
    return options_.aging.count() == 0 ||
           now - e.seen_ms.load(std::memory_order_relaxed) <= options_.aging.count();
}

void NetSwitch::remove_port(NetSwitchPort* port) {
    std::unique_lock lock(mu_);
    std::erase(ports_, port);
    std::erase_if(table_, [&](const auto& kv) { return kv.second.port == port; });
}

void NetSwitch::learn(NetSwitchPort& from, const MacAddress& src, std::int64_t now) {
    const std::uint64_t key = mac_key(src);
    {
        // The common case: already known on this port. Shared lock only.
        std::shared_lock lock(mu_);
        auto it = table_.find(key);
        if (it != table_.end() && it->second.port == &from) {
            if (now - it->second.seen_ms.load(std::memory_order_relaxed) > kRefreshMs) {
                it->second.seen_ms.store(now, std::memory_order_relaxed);
            }
            return;
        }
    }
    std::unique_lock lock(mu_);
    if (auto it = table_.find(key); it != table_.end()) {
        it->second.port = &from;  // the station moved (or is spoofed): last sender wins
        it->second.seen_ms.store(now, std::memory_order_relaxed);
        return;
    }
    if (table_.size() >= options_.max_addresses) {
        std::erase_if(table_, [&](const auto& kv) { return !fresh(kv.second, now); });
        if (table_.size() >= options_.max_addresses) {
            return;  // full of live entries: this source stays unknown (its replies flood)
        }
    }
    table_.try_emplace(key, &from, now);
}

void NetSwitch::forward(NetSwitchPort& from, const std::shared_ptr<const NetFrame>& frame) {
    const auto bytes = frame->bytes();
    const MacAddress dst = mac_at(bytes, 0);
    const MacAddress src = mac_at(bytes, kEthAddr);
    const std::int64_t now = now_ms();
    if (!is_multicast(src)) {
        learn(from, src, now);
    }
    std::shared_lock lock(mu_);
    if (!is_multicast(dst)) {
        auto it = table_.find(mac_key(dst));
        if (it != table_.end() && fresh(it->second, now)) {
            // A destination behind the sender's own port needs no forwarding.
            if (it->second.port != &from) {
                it->second.port->enqueue(frame);
            }
            return;
        }
    }
    from.flooded_.fetch_add(1, std::memory_order_relaxed);
    for (NetSwitchPort* p : ports_) {
        if (p != &from) {
            p->enqueue(frame);  // the same frame for every port: shared, not copied
        }
    }
}

// --- NetSwitchPort ---------------------------------------------------------------------------

NetSwitchPort::NetSwitchPort(PrivateTag, std::shared_ptr<NetSwitch> sw, std::uint32_t id,
                             std::uint16_t pairs, std::size_t bound)
    : switch_(std::move(sw)), id_(id), bound_(bound) {
    rx_.reserve(pairs);
    for (std::uint16_t i = 0; i < pairs; ++i) {
        auto q = std::make_unique<RxQueue>();
        q->event = UniqueFd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
        rx_.push_back(std::move(q));
    }
}

NetSwitchPort::~NetSwitchPort() {
    switch_->remove_port(this);
}

NetPortStats NetSwitchPort::stats() const {
    auto get = [](const std::atomic<std::uint64_t>& a) {
        return a.load(std::memory_order_relaxed);
    };
    return {get(tx_packets_), get(tx_bytes_),   get(flooded_),    get(rx_packets_),
            get(rx_bytes_),   get(rx_dropped_), get(rx_filtered_)};
}

std::size_t NetSwitchPort::queued(std::uint16_t pair) const {
    if (pair >= rx_.size()) {
        return 0;
    }
    std::lock_guard lock(rx_[pair]->mu);
    return rx_[pair]->frames.size();
}

int NetSwitchPort::rx_event_fd(std::uint16_t pair) const {
    return pair < rx_.size() ? rx_[pair]->event.get() : -1;
}

void NetSwitchPort::set_active_pairs(std::uint16_t n) {
    active_pairs_.store(std::clamp<std::uint16_t>(n, 1, queue_pairs()), std::memory_order_relaxed);
}

bool NetSwitchPort::transmit(std::uint16_t /*pair*/, const NetTxFrame& tx) {
    // Copy 1 of 2: guest TX chain → shared frame buffer. The guest may rewrite its buffer once
    // the chain is completed, so the frame must be ours before forwarding.
    auto frame = std::make_shared<NetFrame>();
    frame->hdr = tx.hdr;
    frame->len = tx.len;
    frame->data = std::make_unique_for_overwrite<std::uint8_t[]>(tx.len);
    virtq::ChainReader(tx.frame).read({frame->data.get(), tx.len});
    tx_packets_.fetch_add(1, std::memory_order_relaxed);
    tx_bytes_.fetch_add(tx.len, std::memory_order_relaxed);
    switch_->forward(*this, std::move(frame));
    return true;
}

void NetSwitchPort::enqueue(const std::shared_ptr<const NetFrame>& frame) {
    const std::uint16_t active = active_pairs_.load(std::memory_order_relaxed);
    const std::size_t pair = active > 1 ? flow_hash(frame->bytes()) % active : 0;
    RxQueue& q = *rx_[pair];
    bool wake = false;
    {
        std::lock_guard lock(q.mu);
        if (q.frames.size() >= bound_) {
            rx_dropped_.fetch_add(1, std::memory_order_relaxed);
            return;
        }
        // The consumer drains until empty, so only the first frame of a batch needs a wakeup.
        wake = q.frames.empty();
        q.frames.push_back(frame);
    }
    if (wake) {
        ::eventfd_write(q.event.get(), 1);
    }
}

void NetSwitchPort::receive(std::uint16_t pair, NetRxSink& sink) {
    if (pair >= rx_.size()) {
        return;
    }
    RxQueue& q = *rx_[pair];
    eventfd_t ignored;
    ::eventfd_read(q.event.get(), &ignored);  // non-blocking; cleared before looking
    for (;;) {
        std::shared_ptr<const NetFrame> f;
        {
            std::lock_guard lock(q.mu);
            if (q.frames.empty()) {
                return;
            }
            f = q.frames.front();  // only this thread pops: it stays the front
        }
        if (deliver(*f, sink, q) == Delivery::kNoBuffers) {
            return;  // it waits for buffers (bounded: senders drop beyond the bound)
        }
        std::lock_guard lock(q.mu);
        q.frames.pop_front();
    }
}

NetSwitchPort::Delivery NetSwitchPort::count_drop(NetRxSink& sink) {
    sink.count_drop();
    rx_dropped_.fetch_add(1, std::memory_order_relaxed);
    return Delivery::kDone;
}

NetSwitchPort::Delivery NetSwitchPort::deliver_segments(const NetFrame& frame, const TcpGso& g,
                                                        NetRxSink& sink, RxQueue& q) {
    const auto bytes = frame.bytes();
    std::array<std::uint8_t, kGsoMaxHeaders> headers{};
    const std::span<const std::uint8_t> h(headers.data(), g.payload);
    const NetHdr out{};  // complete checksums, no GSO
    for (; q.gso_next < g.segments; ++q.gso_next) {
        const auto data = tcp_gso_segment(bytes, g, q.gso_next, headers);
        const std::size_t len = g.payload + data.size();
        const std::size_t need = kNetHdrSize + len;
        const auto iov = sink.buffers(need);
        if (iov.empty()) {
            return Delivery::kNoBuffers;  // resumes at this segment
        }
        std::size_t have = 0;
        for (const auto& v : iov) {
            have += v.iov_len;
        }
        if (have < need) {
            if (sink.offloads().mrg_rxbuf) return Delivery::kNoBuffers;
            q.gso_next = 0;
            return count_drop(sink);  // segments do not fit this guest's buffers
        }
        // Copy 2 of 2, as for any frame: the new headers, then the sender's payload slice.
        virtq::ChainWriter w(iov);
        w.write_obj(out);
        w.write(h);
        w.write(data);
        sink.commit(need);
        rx_packets_.fetch_add(1, std::memory_order_relaxed);
        rx_bytes_.fetch_add(len, std::memory_order_relaxed);
    }
    q.gso_next = 0;
    return Delivery::kDone;
}

NetSwitchPort::Delivery NetSwitchPort::deliver(const NetFrame& frame, NetRxSink& sink, RxQueue& q) {
    const auto bytes = frame.bytes();
    auto drop = [&] { return count_drop(sink); };
    if (!sink.accepts(mac_at(bytes, 0))) {
        sink.count_filtered();
        rx_filtered_.fetch_add(1, std::memory_order_relaxed);
        return Delivery::kDone;
    }
    NetHdr hdr = frame.hdr;
    // A partial checksum for a guest without GUEST_CSUM is completed here (§5.1.6.4.1: such a
    // guest gets flags 0 and a checksummed packet). The sender's csum field holds the
    // pseudo-header sum (§5.1.6.2), so the ones' complement of the sum from csum_start to the
    // end is the final value; parse_net_tx checked that the field lies inside the frame.
    std::size_t csum_pos = 0;
    std::uint8_t csum_be[2] = {};
    bool patch = false;
    if (!sink.offloads().accepts(hdr)) {
        if (hdr.gso_type != kNetHdrGsoNone) {
            const auto g = plan_tcp_gso(bytes, hdr);
            return g ? deliver_segments(frame, *g, sink, q) : drop();
        }
        if ((hdr.flags & kNetHdrFNeedsCsum) == 0) {
            return drop();
        }
        const std::size_t start = hdr.csum_start.get();
        csum_pos = start + hdr.csum_offset.get();
        std::uint16_t c = static_cast<std::uint16_t>(~csum_fold(csum_add(0, bytes.subspan(start))));
        if (c == 0) {
            c = 0xffff;  // as Linux: 0 means "no checksum" for UDP (RFC 768)
        }
        csum_be[0] = static_cast<std::uint8_t>(c >> 8);
        csum_be[1] = static_cast<std::uint8_t>(c);
        patch = true;
        hdr.flags = 0;
        hdr.csum_start.set(0);
        hdr.csum_offset.set(0);
    }
    const std::size_t need = kNetHdrSize + frame.len;
    const auto iov = sink.buffers(need);
    if (iov.empty()) {
        return Delivery::kNoBuffers;
    }
    std::size_t have = 0;
    for (const auto& v : iov) {
        have += v.iov_len;
    }
    if (have < need) {
        // With MRG_RXBUF the ring ran out part way: wait for more. Without it the one chain is
        // too small for this frame (the driver posts 1526-byte buffers, the frame is larger).
        return sink.offloads().mrg_rxbuf ? Delivery::kNoBuffers : drop();
    }
    // Copy 2 of 2: shared frame buffer → guest RX chains (the checksum patched on the way).
    virtq::ChainWriter w(iov);
    w.write_obj(hdr);
    if (patch) {
        w.write(bytes.first(csum_pos));
        w.write(csum_be);
        w.write(bytes.subspan(csum_pos + 2));
    } else {
        w.write(bytes);
    }
    sink.commit(need);
    rx_packets_.fetch_add(1, std::memory_order_relaxed);
    rx_bytes_.fetch_add(frame.len, std::memory_order_relaxed);
    return Delivery::kDone;
}

}  // namespace vireo::dev
