// Test harness for the virtio-net device model: a "guest" owns a memfd-backed GuestMemory, a
// NetDevice and, per queue, a real device-side Virtqueue driven through the freestanding guest
// driver (SplitDriver / PackedDriver) over the same rings. Single-threaded unless a test runs
// handlers on threads itself: the test calls the handlers as the transport would.
#pragma once

#include <gtest/gtest.h>
#include <poll.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "devices/net.hpp"
#include "driver/packed_driver.hpp"
#include "driver/split_driver.hpp"
#include "virtq/features.hpp"
#include "virtq/virtqueue.hpp"

namespace vireo::dev::testing {

using virtq::bit;

class CountingIrq : public Interrupt {
  public:
    void signal() override { ++count; }
    int count = 0;
};

struct Received {
    NetHdr hdr{};
    std::vector<std::uint8_t> frame;
    std::vector<std::uint32_t> used_lens;  // per RX chain
};

inline constexpr std::uint64_t kRingFeatures =
    bit(virtq::kFVersion1) | bit(virtq::kFEventIdx) | bit(virtq::kFIndirectDesc);

inline bool readable(int fd) {
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, 0) == 1 && (p.revents & POLLIN) != 0;
}

template <bool Packed>
class Guest {
  public:
    static constexpr std::uint16_t kSize = 256;
    static constexpr std::uint64_t kGpa = 0x1'0000'0000;
    static constexpr std::uint64_t kBytes = 96ull << 20;
    static constexpr std::uint64_t kRxArena = 48ull << 20;  // bump, never reused
    using Driver =
        std::conditional_t<Packed, driver::PackedDriver<kSize>, driver::SplitDriver<kSize>>;

    struct Queue {
        Driver driver;
        virtq::Virtqueue vq;
        CountingIrq irq;
        std::unique_ptr<QueueHandler> handler;
    };

    // Creates the device on `backend` and starts every queue the features allow.
    Guest(std::shared_ptr<NetBackend> backend, std::uint64_t features, std::uint16_t pairs = 1,
          std::optional<MacAddress> mac = std::nullopt) {
        EXPECT_TRUE(mem.add_memfd(kGpa, kBytes, "net-test").has_value());
        base_ = mem.regions()[0]->host();
        window_ = driver::DmaWindow(base_, kGpa, kBytes);
        auto d = NetDevice::create(NetOptions{mac, pairs, kSize, std::move(backend)});
        EXPECT_TRUE(d.has_value()) << (d ? "" : d.error());
        dev = std::move(*d);
        features |= kRingFeatures | (Packed ? bit(virtq::kFRingPacked) : 0);
        dev->set_features(features & dev->device_features());
        const std::uint64_t neg = dev->negotiated();
        const std::uint16_t data = (neg & bit(kNetFMq)) != 0 ? 2 * pairs : 2;
        const std::uint16_t total = data + ((neg & bit(kNetFCtrlVq)) != 0 ? 1 : 0);
        tx_next_ = kRxArena;
        for (std::uint16_t i = 0; i < total; ++i) {
            auto q = std::make_unique<Queue>();
            const auto df = driver::DriverFeatures::from_bits(neg);
            const std::size_t ring_bytes =
                Packed ? driver::packed_ring_bytes(kSize) : driver::split_ring_bytes(kSize);
            driver::RingMemory ring{alloc_fixed(ring_bytes), ring_bytes};
            const std::size_t pool_bytes = driver::indirect_pool_bytes(kSize, 4);
            driver::IndirectPool pool{alloc_fixed(pool_bytes), pool_bytes, 4};
            EXPECT_EQ(q->driver.init(kSize, df, window_, ring, pool), driver::DriverError::kOk);
            auto ok = q->vq.activate(mem, q->driver.config(), virtq::QueueFeatures::from_bits(neg));
            EXPECT_TRUE(ok.has_value());
            q->handler = dev->start_queue(i, QueueHandle(mem, q->vq, q->irq));
            EXPECT_NE(q->handler, nullptr) << "queue " << i;
            queues.push_back(std::move(q));
        }
        EXPECT_EQ(dev->start_queue(total, QueueHandle(mem, queues[0]->vq, queues[0]->irq)),
                  nullptr);
    }

    Queue& rxq(std::uint16_t pair = 0) { return *queues[2 * pair]; }
    Queue& txq(std::uint16_t pair = 0) { return *queues[2 * pair + 1]; }
    Queue& ctrlq() { return *queues.back(); }

    // Posts `n` RX buffers of `size` bytes each, each as `segs` descriptors.
    void post_rx(unsigned n, std::uint32_t size, std::uint16_t pair = 0, unsigned segs = 1) {
        Queue& q = rxq(pair);
        for (unsigned i = 0; i < n; ++i) {
            std::uint8_t* p = alloc_rx(size);
            std::memset(p, 0xEE, size);
            std::vector<driver::Segment> in;
            const std::uint32_t piece = size / segs;
            for (unsigned s = 0; s < segs; ++s) {
                const std::uint32_t len = s + 1 == segs ? size - piece * (segs - 1) : piece;
                in.push_back({window_.to_device(p + piece * s), len});
            }
            ASSERT_EQ(q.driver.add_buf({}, {in.data(), in.size()}, p), driver::DriverError::kOk);
            rx_sizes_[p] = size;
        }
        (void)q.driver.kick_prepare();
        q.handler->on_kick();
    }

    // Sends one frame on transmitq `pair`: header and frame as separate descriptors unless
    // `one_desc`. Returns the used length of the completed chain (-1: not completed).
    std::int64_t send(std::span<const std::uint8_t> frame, NetHdr hdr = {}, std::uint16_t pair = 0,
                      bool one_desc = false) {
        std::uint8_t* p = alloc_tx(sizeof hdr + frame.size());
        std::memcpy(p, &hdr, sizeof hdr);
        if (!frame.empty()) {
            std::memcpy(p + sizeof hdr, frame.data(), frame.size());
        }
        std::vector<driver::Segment> out;
        if (one_desc) {
            out.push_back(
                {window_.to_device(p), static_cast<std::uint32_t>(sizeof hdr + frame.size())});
        } else {
            out.push_back({window_.to_device(p), sizeof hdr});
            if (!frame.empty()) {
                out.push_back(
                    {window_.to_device(p + sizeof hdr), static_cast<std::uint32_t>(frame.size())});
            }
        }
        return send_raw(out, {}, pair);
    }

    // Sends an arbitrary chain on transmitq `pair`.
    std::int64_t send_raw(const std::vector<driver::Segment>& out,
                          const std::vector<driver::Segment>& in, std::uint16_t pair = 0) {
        Queue& q = txq(pair);
        static int token;
        EXPECT_EQ(q.driver.add_buf({out.data(), out.size()}, {in.data(), in.size()}, &token),
                  driver::DriverError::kOk);
        (void)q.driver.kick_prepare();
        q.handler->on_kick();
        std::uint32_t len = 0;
        void* t = q.driver.get_buf(&len);
        return t == nullptr ? -1 : std::int64_t{len};
    }

    // Lets the RX handler run if its back end signalled, then collects whole frames (merging
    // MRG_RXBUF chains by num_buffers).
    std::vector<Received> receive(std::uint16_t pair = 0) {
        Queue& q = rxq(pair);
        if (readable(q.handler->event_fd())) {
            q.handler->on_event();
        }
        std::vector<Received> out;
        std::uint32_t len = 0;
        while (void* t = q.driver.get_buf(&len)) {
            auto* p = static_cast<std::uint8_t*>(t);
            if (pending_left_ == 0) {
                EXPECT_GE(len, sizeof(NetHdr));
                pending_ = Received{};
                std::memcpy(&pending_.hdr, p, sizeof(NetHdr));
                pending_left_ = pending_.hdr.num_buffers.get();
                EXPECT_GE(pending_left_, 1u);
                pending_.frame.assign(p + sizeof(NetHdr), p + len);
            } else {
                pending_.frame.insert(pending_.frame.end(), p, p + len);
            }
            pending_.used_lens.push_back(len);
            if (pending_left_ > 0 && --pending_left_ == 0) {
                out.push_back(std::move(pending_));
            }
        }
        return out;
    }

    // Sends a control command; returns the ack byte (or -1 if not completed / nothing written).
    int ctrl(std::uint8_t cls, std::uint8_t cmd, std::span<const std::uint8_t> data,
             bool with_ack = true) {
        std::uint8_t* p = alloc_tx(2 + data.size() + 1);
        p[0] = cls;
        p[1] = cmd;
        if (!data.empty()) {
            std::memcpy(p + 2, data.data(), data.size());
        }
        std::uint8_t* ack = p + 2 + data.size();
        *ack = 0xAA;
        driver::Segment out{window_.to_device(p), static_cast<std::uint32_t>(2 + data.size())};
        driver::Segment in{window_.to_device(ack), 1};
        Queue& q = ctrlq();
        static int token;
        EXPECT_EQ(q.driver.add_buf({&out, 1}, {&in, with_ack ? 1u : 0u}, &token),
                  driver::DriverError::kOk);
        (void)q.driver.kick_prepare();
        q.handler->on_kick();
        std::uint32_t len = 0;
        if (q.driver.get_buf(&len) == nullptr || len != 1) {
            return -1;
        }
        return *ack;
    }

    std::uint64_t gpa(const void* p) const { return window_.to_device(p); }
    std::uint8_t* alloc_tx(std::size_t n) {
        tx_next_ = (tx_next_ + 15) / 16 * 16;
        if (tx_next_ + n > kBytes) {
            tx_next_ = kRxArena;  // TX chains complete at once: the arena can wrap
        }
        std::uint8_t* p = base_ + tx_next_;
        tx_next_ += n;
        return p;
    }

    GuestMemory mem;
    std::unique_ptr<NetDevice> dev;
    std::vector<std::unique_ptr<Queue>> queues;

  private:
    std::uint8_t* alloc_fixed(std::size_t n) { return alloc_rx(n); }
    std::uint8_t* alloc_rx(std::size_t n) {
        rx_next_ = (rx_next_ + 63) / 64 * 64;
        EXPECT_LE(rx_next_ + n, kRxArena) << "RX arena exhausted";
        std::uint8_t* p = base_ + rx_next_;
        rx_next_ += n;
        return p;
    }

    std::uint8_t* base_ = nullptr;
    driver::DmaWindow window_;
    std::size_t rx_next_ = 0;
    std::size_t tx_next_ = 0;
    std::unordered_map<void*, std::uint32_t> rx_sizes_;
    Received pending_;
    unsigned pending_left_ = 0;
};

// Frame builders. -----------------------------------------------------------------------------

inline constexpr std::uint16_t kTestEtherType = 0x88b5;  // IEEE local experimental

inline std::vector<std::uint8_t> make_frame(const MacAddress& dst, const MacAddress& src,
                                            std::size_t len, unsigned seed) {
    std::vector<std::uint8_t> f(len);
    std::copy(dst.begin(), dst.end(), f.begin());
    std::copy(src.begin(), src.end(), f.begin() + 6);
    f[12] = kTestEtherType >> 8;
    f[13] = kTestEtherType & 0xff;
    std::uint32_t x = seed * 2654435761u + 1;
    for (std::size_t i = kEthHeader; i < len; ++i) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        f[i] = static_cast<std::uint8_t>(x);
    }
    return f;
}

// An IPv4/UDP frame whose UDP checksum field holds only the pseudo-header sum, as a driver with
// VIRTIO_NET_F_CSUM sends it (§5.1.6.2); with the matching NEEDS_CSUM header.
struct PartialCsumFrame {
    std::vector<std::uint8_t> frame;
    NetHdr hdr{};
};

inline std::uint32_t udp_pseudo_sum(std::span<const std::uint8_t> f) {
    constexpr std::size_t ip = kEthHeader;
    const std::size_t udp_len = f.size() - ip - 20;
    std::uint32_t s = csum_add(0, f.subspan(ip + 12, 8));  // addresses
    const std::uint8_t rest[4] = {0, 17, static_cast<std::uint8_t>(udp_len >> 8),
                                  static_cast<std::uint8_t>(udp_len)};
    return csum_add(s, rest);
}

inline PartialCsumFrame make_udp_partial(const MacAddress& dst, const MacAddress& src,
                                         std::size_t payload, unsigned seed) {
    constexpr std::size_t ip = kEthHeader;
    constexpr std::size_t udp = ip + 20;
    PartialCsumFrame p;
    auto& f = p.frame;
    f = make_frame(dst, src, udp + 8 + payload, seed);
    f[12] = 0x08;
    f[13] = 0x00;
    const std::size_t ip_len = 20 + 8 + payload;
    const std::uint8_t iph[20] = {0x45,
                                  0,
                                  static_cast<std::uint8_t>(ip_len >> 8),
                                  static_cast<std::uint8_t>(ip_len),
                                  0,
                                  1,
                                  0,
                                  0,
                                  64,
                                  17,
                                  0,
                                  0,
                                  10,
                                  0,
                                  0,
                                  1,
                                  10,
                                  0,
                                  0,
                                  2};
    std::memcpy(&f[ip], iph, 20);
    const std::uint16_t ipc = static_cast<std::uint16_t>(~csum_fold(csum_add(0, {&f[ip], 20})));
    f[ip + 10] = static_cast<std::uint8_t>(ipc >> 8);
    f[ip + 11] = static_cast<std::uint8_t>(ipc);
    const std::size_t udp_len = 8 + payload;
    const std::uint8_t udph[8] = {0x30,
                                  0x39,
                                  0x00,
                                  0x35,
                                  static_cast<std::uint8_t>(udp_len >> 8),
                                  static_cast<std::uint8_t>(udp_len),
                                  0,
                                  0};
    std::memcpy(&f[udp], udph, 8);
    const std::uint16_t pseudo = csum_fold(udp_pseudo_sum(f));
    f[udp + 6] = static_cast<std::uint8_t>(pseudo >> 8);
    f[udp + 7] = static_cast<std::uint8_t>(pseudo);
    p.hdr.flags = kNetHdrFNeedsCsum;
    p.hdr.csum_start.set(udp);
    p.hdr.csum_offset.set(6);
    return p;
}

// True if the UDP checksum of `f` (an IPv4/UDP frame from make_udp_partial) verifies.
inline bool udp_checksum_ok(std::span<const std::uint8_t> f) {
    const std::uint32_t s = csum_add(udp_pseudo_sum(f), f.subspan(kEthHeader + 20));
    return csum_fold(s) == 0xffff;
}

// A TCP GSO frame as a Linux guest with HOST_TSO4/6 sends it: Ethernet (optionally with an
// 802.1Q tag), IPv4 (id 0x1234, DF) or IPv6, TCP (seq 1000, ACK | PSH | FIN | CWR as given), a
// seeded payload, and a header asking for gso_size segments with a partial checksum.
struct TcpGsoFrame {
    std::vector<std::uint8_t> frame;
    NetHdr hdr{};
    std::size_t l3 = 0, l4 = 0, payload = 0;
};
inline TcpGsoFrame make_tcp_gso(const MacAddress& dst, const MacAddress& src, bool ipv6, bool vlan,
                                std::size_t payload, std::uint16_t mss, std::uint8_t tcp_flags,
                                unsigned seed) {
    TcpGsoFrame t;
    t.l3 = kEthHeader + (vlan ? 4 : 0);
    t.l4 = t.l3 + (ipv6 ? 40 : 20);
    t.payload = t.l4 + 20;
    auto& f = t.frame;
    f = make_frame(dst, src, t.payload + payload, seed);
    std::size_t e = 12;
    if (vlan) {
        f[12] = 0x81, f[13] = 0x00, f[14] = 0x00, f[15] = 0x05;
        e = 16;
    }
    f[e] = ipv6 ? 0x86 : 0x08;
    f[e + 1] = ipv6 ? 0xdd : 0x00;
    std::fill(f.begin() + static_cast<long>(t.l3), f.begin() + static_cast<long>(t.payload), 0);
    if (ipv6) {
        f[t.l3] = 0x60;
        f[t.l3 + 6] = 6;
        f[t.l3 + 7] = 64;
        for (int i = 0; i < 16; ++i) {
            f[t.l3 + 8 + i] = static_cast<std::uint8_t>(0xfd + i);
            f[t.l3 + 24 + i] = static_cast<std::uint8_t>(0x20 + i);
        }
    } else {
        f[t.l3] = 0x45;
        f[t.l3 + 4] = 0x12, f[t.l3 + 5] = 0x34;  // id
        f[t.l3 + 6] = 0x40;                      // DF
        f[t.l3 + 8] = 64;
        f[t.l3 + 9] = 6;
        const std::uint8_t addrs[8] = {10, 0, 0, 1, 10, 0, 0, 2};
        std::memcpy(&f[t.l3 + 12], addrs, 8);
    }
    f[t.l4] = 0x30, f[t.l4 + 1] = 0x39, f[t.l4 + 2] = 0x1f, f[t.l4 + 3] = 0x90;
    f[t.l4 + 6] = 0x03, f[t.l4 + 7] = 0xe8;  // seq 1000
    f[t.l4 + 12] = 0x50;
    f[t.l4 + 13] = tcp_flags;
    f[t.l4 + 14] = 0xff, f[t.l4 + 15] = 0xff;
    t.hdr.flags = kNetHdrFNeedsCsum;
    t.hdr.gso_type = ipv6 ? kNetHdrGsoTcpv6 : kNetHdrGsoTcpv4;
    t.hdr.hdr_len.set(static_cast<std::uint16_t>(t.payload));
    t.hdr.gso_size.set(mss);
    t.hdr.csum_start.set(static_cast<std::uint16_t>(t.l4));
    t.hdr.csum_offset.set(16);
    return t;
}

// Checks one received segment like a receiving stack would: the IPv4 header checksum, the IP
// length, and the TCP checksum over the pseudo header.
inline ::testing::AssertionResult tcp_segment_ok(std::span<const std::uint8_t> f, std::size_t l3,
                                                 std::size_t l4, bool ipv6) {
    const std::size_t tcp_len = f.size() - l4;
    std::uint32_t pseudo = 6 + static_cast<std::uint32_t>(tcp_len);
    if (ipv6) {
        if (((f[l3 + 4] << 8) | f[l3 + 5]) != static_cast<int>(tcp_len)) {
            return ::testing::AssertionFailure() << "IPv6 payload length";
        }
        pseudo = csum_add(pseudo, f.subspan(l3 + 8, 32));
    } else {
        if (csum_fold(csum_add(0, f.subspan(l3, l4 - l3))) != 0xffff) {
            return ::testing::AssertionFailure() << "IPv4 header checksum";
        }
        if (((f[l3 + 2] << 8) | f[l3 + 3]) != static_cast<int>(f.size() - l3)) {
            return ::testing::AssertionFailure() << "IPv4 total length";
        }
        pseudo = csum_add(pseudo, f.subspan(l3 + 12, 8));
    }
    if (csum_fold(csum_add(pseudo, f.subspan(l4))) != 0xffff) {
        return ::testing::AssertionFailure() << "TCP checksum";
    }
    return ::testing::AssertionSuccess();
}

}  // namespace vireo::dev::testing
