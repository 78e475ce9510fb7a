// The built-in L2 switch with real NetDevices on both ends: frames go through the guests' TX
// virtqueues, the switch and the receivers' RX virtqueues (split and packed rings).
#include "devices/net_switch.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "net_harness.hpp"

namespace vireo::dev::testing {
namespace {

constexpr std::uint64_t kBasic = bit(kNetFMac) | bit(kNetFStatus);
constexpr MacAddress kMacA{0x52, 0x54, 0, 0, 0, 0x0a};
constexpr MacAddress kMacB{0x52, 0x54, 0, 0, 0, 0x0b};
constexpr MacAddress kMacC{0x52, 0x54, 0, 0, 0, 0x0c};
constexpr MacAddress kBroadcast{0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

template <typename T>
class NetSwitchTest : public ::testing::Test {
  protected:
    using G = Guest<T::value>;

    std::unique_ptr<G> guest(std::uint64_t features, const MacAddress& mac,
                             std::shared_ptr<NetSwitchPort>* port_out = nullptr,
                             std::uint16_t pairs = 1) {
        auto port = sw->add_port(pairs);
        EXPECT_TRUE(port.has_value());
        if (port_out != nullptr) {
            *port_out = *port;
        }
        return std::make_unique<G>(*port, features, pairs, mac);
    }

    std::shared_ptr<NetSwitch> sw = NetSwitch::create("test", NetSwitchOptions{16, 4096, {}});
};

using RingKinds = ::testing::Types<std::false_type, std::true_type>;
struct RingName {
    template <typename T>
    static std::string GetName(int) {
        return T::value ? "Packed" : "Split";
    }
};
TYPED_TEST_SUITE(NetSwitchTest, RingKinds, RingName);

TYPED_TEST(NetSwitchTest, ExchangeBothWays) {
    std::shared_ptr<NetSwitchPort> pa, pb;
    auto a = this->guest(kBasic, kMacA, &pa);
    auto b = this->guest(kBasic, kMacB, &pb);
    a->post_rx(8, 2048);
    b->post_rx(8, 2048);
    for (std::size_t len : {64u, 1500u}) {
        const auto f1 = make_frame(kMacB, kMacA, len, 1);
        EXPECT_EQ(a->send(f1), 0);  // TX chains complete with used length 0
        auto got = b->receive();
        ASSERT_EQ(got.size(), 1u);
        EXPECT_EQ(got[0].frame, f1);
        EXPECT_EQ(got[0].hdr.num_buffers.get(), 1);
        EXPECT_EQ(got[0].hdr.flags, 0);
        EXPECT_EQ(got[0].used_lens[0], kNetHdrSize + len);

        const auto f2 = make_frame(kMacA, kMacB, len, 2);
        EXPECT_EQ(b->send(f2, {}, 0, /*one_desc=*/true), 0);
        got = a->receive();
        ASSERT_EQ(got.size(), 1u);
        EXPECT_EQ(got[0].frame, f2);
    }
    EXPECT_TRUE(a->receive().empty());
    EXPECT_TRUE(b->receive().empty());
    const auto sa = pa->stats();
    EXPECT_EQ(sa.tx_packets, 2u);
    EXPECT_EQ(sa.tx_bytes, 1564u);
    EXPECT_EQ(sa.rx_packets, 2u);
    EXPECT_EQ(sa.rx_bytes, 1564u);
    EXPECT_EQ(sa.rx_dropped, 0u);
    EXPECT_EQ(a->dev->stats().tx_packets, 2u);
    EXPECT_EQ(b->dev->stats().rx_packets, 2u);
    EXPECT_EQ(b->dev->stats().rx_bytes, 1564u);
}

TYPED_TEST(NetSwitchTest, BroadcastFloodsAndLearningStopsFlooding) {
    std::shared_ptr<NetSwitchPort> pa, pb, pc;
    auto a = this->guest(kBasic, kMacA, &pa);
    auto b = this->guest(kBasic, kMacB, &pb);
    auto c = this->guest(kBasic, kMacC, &pc);
    for (auto* g : {a.get(), b.get(), c.get()}) {
        g->post_rx(8, 2048);
    }
    const auto bc = make_frame(kBroadcast, kMacA, 100, 3);
    a->send(bc);
    EXPECT_EQ(b->receive().size(), 1u);
    EXPECT_EQ(c->receive().size(), 1u);
    EXPECT_TRUE(a->receive().empty());  // never back to the sender
    EXPECT_EQ(pa->stats().flooded, 1u);
    ASSERT_EQ(this->sw->lookup(kMacA), pa->id());

    // B answers A: A is known, so only A gets it.
    const auto uni = make_frame(kMacA, kMacB, 200, 4);
    b->send(uni);
    auto got = a->receive();
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].frame, uni);
    EXPECT_TRUE(c->receive().empty());
    EXPECT_EQ(pb->stats().flooded, 0u);

    // A to the still unknown C floods (B and C), C then learned: no more flooding.
    a->send(make_frame(kMacC, kMacA, 60, 5));
    EXPECT_EQ(b->receive().size(), 1u);
    EXPECT_EQ(c->receive().size(), 1u);
    c->send(make_frame(kMacA, kMacC, 60, 6));
    EXPECT_EQ(a->receive().size(), 1u);
    a->send(make_frame(kMacC, kMacA, 60, 7));
    EXPECT_TRUE(b->receive().empty());
    EXPECT_EQ(c->receive().size(), 1u);
    EXPECT_EQ(pa->stats().flooded, 2u);

    // A port that goes away is forgotten.
    const auto id_c = pc->id();
    EXPECT_EQ(this->sw->lookup(kMacC), id_c);
    c.reset();
    pc.reset();
    EXPECT_FALSE(this->sw->lookup(kMacC).has_value());
    EXPECT_EQ(this->sw->port_count(), 2u);
}

TYPED_TEST(NetSwitchTest, PortWithoutRxBuffersDropsAndCountsOthersKeepFlowing) {
    std::shared_ptr<NetSwitchPort> pa, pb, pc;
    auto a = this->guest(kBasic, kMacA, &pa);
    auto b = this->guest(kBasic, kMacB, &pb);
    auto c = this->guest(kBasic, kMacC, &pc);
    a->post_rx(8, 2048);
    c->post_rx(64, 2048);
    b->send(make_frame(kMacA, kMacB, 64, 1));  // B learned; A unknown: floods to A and C
    const auto from_c = make_frame(kMacA, kMacC, 64, 2);
    c->send(from_c);  // C learned; floods to A and B (B's queue holds it)
    EXPECT_EQ(a->receive().size(), 2u);
    EXPECT_EQ(c->receive().size(), 1u);

    // B posted no RX buffer: 16 frames wait (the bound), the rest is dropped and counted.
    std::vector<std::vector<std::uint8_t>> sent;
    unsigned to_c = 0;
    for (unsigned i = 0; i < 40; ++i) {
        sent.push_back(make_frame(kMacB, kMacA, 64 + i, 100 + i));
        EXPECT_EQ(a->send(sent.back()), 0);
        EXPECT_EQ(a->send(make_frame(kMacC, kMacA, 128, i)), 0);
        to_c += static_cast<unsigned>(c->receive().size());  // never held up by B
    }
    EXPECT_EQ(to_c, 40u);
    EXPECT_EQ(pc->stats().rx_dropped, 0u);
    EXPECT_TRUE(b->receive().empty());
    EXPECT_EQ(pb->queued(0), 16u);
    EXPECT_EQ(pb->stats().rx_dropped, 25u);

    // Buffers arrive: the 16 queued frames are delivered, oldest first.
    b->post_rx(32, 2048);
    auto got = b->receive();
    ASSERT_EQ(got.size(), 16u);
    EXPECT_EQ(got[0].frame, from_c);
    for (unsigned i = 1; i < 16; ++i) {
        EXPECT_EQ(got[i].frame, sent[i - 1]);
    }
    EXPECT_EQ(pb->queued(0), 0u);
}

TYPED_TEST(NetSwitchTest, MergeableRxBuffersSplitFrames) {
    auto a = this->guest(kBasic, kMacA);
    std::shared_ptr<NetSwitchPort> pb;
    auto b = this->guest(kBasic | bit(kNetFMrgRxbuf), kMacB, &pb);
    b->post_rx(6, 512, 0, 2);
    const auto f = make_frame(kMacB, kMacA, 1500, 9);
    a->send(f);
    auto got = b->receive();
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].hdr.num_buffers.get(), 3);
    EXPECT_EQ(got[0].used_lens, (std::vector<std::uint32_t>{512, 512, 488}));
    EXPECT_EQ(got[0].frame, f);

    // Three buffers left; the next frame needs four: it waits (nothing is lost or half
    // written) until the driver posts more.
    const auto g = make_frame(kMacB, kMacA, 1800, 10);
    a->send(g);
    EXPECT_TRUE(b->receive().empty());
    EXPECT_EQ(pb->queued(0), 1u);
    b->post_rx(1, 512);
    got = b->receive();
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].hdr.num_buffers.get(), 4);
    EXPECT_EQ(got[0].frame, g);
    EXPECT_EQ(b->dev->stats().rx_dropped, 0u);
}

TYPED_TEST(NetSwitchTest, WithoutMergeableBuffersTooLargeFramesAreDropped) {
    auto a = this->guest(kBasic, kMacA);
    std::shared_ptr<NetSwitchPort> pb;
    auto b = this->guest(kBasic, kMacB, &pb);
    b->post_rx(2, 1000);
    a->send(make_frame(kMacB, kMacA, 1500, 1));
    const auto small = make_frame(kMacB, kMacA, 900, 2);
    a->send(small);
    auto got = b->receive();
    ASSERT_EQ(got.size(), 1u);  // the chain the big frame could not use took the small one
    EXPECT_EQ(got[0].frame, small);
    EXPECT_EQ(b->dev->stats().rx_dropped, 1u);
    EXPECT_EQ(pb->stats().rx_dropped, 1u);
}

TYPED_TEST(NetSwitchTest, GsoFramePassesToCapableGuestAndUnparsableOnesAreDropped) {
    auto a = this->guest(kBasic | bit(kNetFCsum) | bit(kNetFHostTso4), kMacA);
    std::shared_ptr<NetSwitchPort> pb, pc;
    auto b = this->guest(kBasic | bit(kNetFGuestCsum) | bit(kNetFGuestTso4) | bit(kNetFMrgRxbuf),
                         kMacB, &pb);
    auto c = this->guest(kBasic | bit(kNetFMrgRxbuf), kMacC, &pc);
    b->post_rx(24, 4096, 0, 2);
    c->post_rx(24, 4096);
    // A 64 KiB "TCP/IPv4" GSO frame whose headers are noise: a capable guest takes it as is;
    // for C it would need software segmentation, which cannot parse it.
    auto f = make_frame(kMacB, kMacA, 65536, 11);
    f[12] = 0x08;
    f[13] = 0x00;
    NetHdr h{};
    h.flags = kNetHdrFNeedsCsum;
    h.gso_type = kNetHdrGsoTcpv4;
    h.hdr_len.set(54);
    h.gso_size.set(1448);
    h.csum_start.set(34);
    h.csum_offset.set(16);
    // Unknown destination: flooded to B (takes it) and C (cannot: no GUEST_TSO4).
    EXPECT_EQ(a->send(f, h), 0);
    auto got = b->receive();
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].frame, f);
    EXPECT_EQ(got[0].hdr.num_buffers.get(), (kNetHdrSize + f.size() + 4095) / 4096);
    EXPECT_EQ(got[0].hdr.gso_type, kNetHdrGsoTcpv4);
    EXPECT_EQ(got[0].hdr.flags, kNetHdrFNeedsCsum);
    EXPECT_EQ(got[0].hdr.gso_size.get(), 1448);
    EXPECT_EQ(got[0].hdr.csum_start.get(), 34);
    EXPECT_EQ(got[0].hdr.csum_offset.get(), 16);
    EXPECT_TRUE(c->receive().empty());
    EXPECT_EQ(pc->stats().rx_dropped, 1u);
    EXPECT_EQ(c->dev->stats().rx_dropped, 1u);
}

// A guest without GUEST_TSO4/6 gets a TSO sender's frame segmented in software: every
// segment a valid frame (IP length and id, checksums, sequence numbers; FIN and PSH only on the
// last, CWR only on the first), together exactly the sender's payload. When its buffers run
// out part way, delivery resumes at the next segment: none lost, none twice.
TYPED_TEST(NetSwitchTest, GsoSegmentedInSoftwareForGuestWithoutTso) {
    auto a = this->guest(kBasic | bit(kNetFCsum) | bit(kNetFHostTso4) | bit(kNetFHostTso6), kMacA);
    std::shared_ptr<NetSwitchPort> pb;
    auto b = this->guest(kBasic, kMacB, &pb);  // no GUEST_CSUM, no GUEST_TSO, no MRG_RXBUF
    for (const bool ipv6 : {false, true}) {
        for (const bool vlan : {false, true}) {
            constexpr std::size_t kPayload = 10000;
            constexpr std::uint16_t kMss = 1400;
            auto t = make_tcp_gso(kMacB, kMacA, ipv6, vlan, kPayload, kMss, 0x80 | 0x18 | 0x01,
                                  ipv6 * 2 + vlan);
            b->post_rx(3, 1600);  // 8 segments: the first three now, the rest later
            ASSERT_EQ(a->send(t.frame, t.hdr), 0);
            auto got = b->receive();
            EXPECT_EQ(got.size(), 3u);
            EXPECT_EQ(pb->queued(0), 1u);  // the frame waits, part delivered
            b->post_rx(5, 1600);           // exactly the rest
            for (auto& r : b->receive()) got.push_back(std::move(r));
            ASSERT_EQ(got.size(), (kPayload + kMss - 1) / kMss);
            std::vector<std::uint8_t> payload;
            for (std::size_t i = 0; i < got.size(); ++i) {
                const auto& s = got[i].frame;
                SCOPED_TRACE(::testing::Message()
                             << "ipv6 " << ipv6 << " vlan " << vlan << " seg " << i);
                EXPECT_EQ(got[i].hdr.flags, 0);
                EXPECT_EQ(got[i].hdr.gso_type, kNetHdrGsoNone);
                ASSERT_GT(s.size(), t.payload);
                EXPECT_TRUE(tcp_segment_ok(s, t.l3, t.l4, ipv6));
                const std::uint32_t seq = static_cast<std::uint32_t>(
                    s[t.l4 + 4] << 24 | s[t.l4 + 5] << 16 | s[t.l4 + 6] << 8 | s[t.l4 + 7]);
                EXPECT_EQ(seq, 1000 + i * kMss);
                const bool last = i + 1 == got.size();
                EXPECT_EQ(s[t.l4 + 13], (i == 0 ? 0x80 : 0) | 0x10 | (last ? 0x09 : 0));
                if (!ipv6) {
                    EXPECT_EQ(s[t.l3 + 4] << 8 | s[t.l3 + 5], 0x1234 + static_cast<int>(i));
                }
                EXPECT_TRUE(std::equal(s.begin(), s.begin() + 12, t.frame.begin()));  // MACs
                payload.insert(payload.end(), s.begin() + static_cast<long>(t.payload), s.end());
            }
            EXPECT_TRUE(std::equal(payload.begin(), payload.end(),
                                   t.frame.begin() + static_cast<long>(t.payload), t.frame.end()));
            EXPECT_EQ(payload.size(), kPayload);
        }
    }
    EXPECT_EQ(pb->stats().rx_dropped, 0u);
    // A GSO frame that is not TCP it can parse (here: UDP) is dropped and counted.
    auto u = make_tcp_gso(kMacB, kMacA, false, false, 3000, 1400, 0x10, 9);
    u.frame[u.l3 + 9] = 17;
    b->post_rx(4, 1600);
    ASSERT_EQ(a->send(u.frame, u.hdr), 0);
    EXPECT_TRUE(b->receive().empty());
    EXPECT_EQ(pb->stats().rx_dropped, 1u);
}

TYPED_TEST(NetSwitchTest, PartialChecksumCompletedForGuestWithoutGuestCsum) {
    auto a = this->guest(kBasic | bit(kNetFCsum), kMacA);
    auto b = this->guest(kBasic, kMacB);                        // no GUEST_CSUM
    auto c = this->guest(kBasic | bit(kNetFGuestCsum), kMacC);  // takes it partial
    b->post_rx(4, 2048);
    c->post_rx(4, 2048);
    for (std::size_t payload : {18u, 1001u, 1472u}) {
        auto p = make_udp_partial(kBroadcast, kMacA, payload, static_cast<unsigned>(payload));
        ASSERT_FALSE(udp_checksum_ok(p.frame));
        EXPECT_EQ(a->send(p.frame, p.hdr), 0);
        auto gb = b->receive();
        ASSERT_EQ(gb.size(), 1u);
        EXPECT_EQ(gb[0].hdr.flags, 0);
        EXPECT_TRUE(udp_checksum_ok(gb[0].frame)) << payload;
        auto gc = c->receive();
        ASSERT_EQ(gc.size(), 1u);
        EXPECT_EQ(gc[0].hdr.flags, kNetHdrFNeedsCsum);
        EXPECT_EQ(gc[0].hdr.csum_start.get(), 34);
        EXPECT_EQ(gc[0].frame, p.frame);  // untouched: the guest completes it
        b->post_rx(1, 2048);
        c->post_rx(1, 2048);
    }
}

TYPED_TEST(NetSwitchTest, ReceiveFilterFollowsControlCommands) {
    auto a = this->guest(kBasic, kMacA);
    std::shared_ptr<NetSwitchPort> pb;
    auto b = this->guest(kBasic | bit(kNetFCtrlVq) | bit(kNetFCtrlRx), kMacB, &pb);
    b->post_rx(16, 2048);
    const MacAddress other{0x52, 0x54, 0, 0, 0, 0x77};
    const MacAddress mcast{0x01, 0x00, 0x5e, 0, 0, 1};
    // Promiscuous after reset: a frame for someone else (flooded: unknown) arrives.
    a->send(make_frame(other, kMacA, 64, 1));
    EXPECT_EQ(b->receive().size(), 1u);
    const std::uint8_t off[1] = {0};
    ASSERT_EQ(b->ctrl(kNetCtrlRx, kNetCtrlRxPromisc, off), kNetOk);
    a->send(make_frame(other, kMacA, 64, 2));
    a->send(make_frame(mcast, kMacA, 64, 3));
    EXPECT_TRUE(b->receive().empty());
    EXPECT_EQ(pb->stats().rx_filtered, 2u);
    a->send(make_frame(kMacB, kMacA, 64, 4));
    a->send(make_frame(kBroadcast, kMacA, 64, 5));
    EXPECT_EQ(b->receive().size(), 2u);
    // The multicast address in the table: accepted.
    std::vector<std::uint8_t> table = {0, 0, 0, 0, 1, 0, 0, 0};
    table.insert(table.end(), mcast.begin(), mcast.end());
    ASSERT_EQ(b->ctrl(kNetCtrlMac, kNetCtrlMacTableSet, table), kNetOk);
    a->send(make_frame(mcast, kMacA, 64, 6));
    EXPECT_EQ(b->receive().size(), 1u);
    EXPECT_EQ(b->dev->stats().rx_filtered, 2u);
}

TYPED_TEST(NetSwitchTest, MultiqueueSteersFlowsOnlyToEnabledQueues) {
    auto a = this->guest(kBasic, kMacA);
    std::shared_ptr<NetSwitchPort> pb;
    auto b = this->guest(kBasic | bit(kNetFCtrlVq) | bit(kNetFMq), kMacB, &pb, 2);
    ASSERT_EQ(b->queues.size(), 5u);
    b->post_rx(64, 2048, 0);
    b->post_rx(64, 2048, 1);
    auto udp = [&](unsigned port) {
        auto p = make_udp_partial(kMacB, kMacA, 32, port);
        p.frame[34] = static_cast<std::uint8_t>(port);  // source port: a different flow
        return p.frame;
    };
    for (unsigned i = 0; i < 16; ++i) {
        a->send(udp(i));
    }
    EXPECT_EQ(b->receive(0).size(), 16u);  // after reset: receiveq1 only
    EXPECT_TRUE(b->receive(1).empty());
    const std::uint8_t two[2] = {2, 0};
    ASSERT_EQ(b->ctrl(kNetCtrlMq, kNetCtrlMqVqPairsSet, two), kNetOk);
    EXPECT_EQ(b->dev->active_pairs(), 2);
    for (unsigned i = 0; i < 32; ++i) {
        a->send(udp(i));
    }
    const auto q0 = b->receive(0).size();
    const auto q1 = b->receive(1).size();
    EXPECT_EQ(q0 + q1, 32u);
    EXPECT_GT(q0, 0u);
    EXPECT_GT(q1, 0u);
    // TX on the second pair reaches the switch too.
    b->send(make_frame(kMacA, kMacB, 64, 1), {}, 1);
    a->post_rx(4, 2048);
    EXPECT_EQ(a->receive().size(), 1u);
}

// Two guests send to each other from their own threads while their RX handlers run on others,
// as a transport would run them: every frame is either delivered or counted as dropped.
TYPED_TEST(NetSwitchTest, ConcurrentPortsLoseNothingUncounted) {
    std::shared_ptr<NetSwitchPort> pa, pb;
    auto a = this->guest(kBasic, kMacA, &pa);
    auto b = this->guest(kBasic, kMacB, &pb);
    a->post_rx(200, 2048);
    b->post_rx(200, 2048);
    a->send(make_frame(kMacB, kMacA, 64, 0));
    b->send(make_frame(kMacA, kMacB, 64, 0));
    constexpr unsigned kFrames = 150;
    std::atomic<bool> done{false};
    auto rx_loop = [&](auto& g) {
        while (!done.load()) {
            pollfd p{g.rxq().handler->event_fd(), POLLIN, 0};
            if (::poll(&p, 1, 10) == 1) {
                g.rxq().handler->on_event();
            }
        }
    };
    auto tx_loop = [&](auto& g, const MacAddress& dst, const MacAddress& src) {
        for (unsigned i = 0; i < kFrames; ++i) {
            g.send(make_frame(dst, src, 64 + i, i));
        }
    };
    std::thread ra([&] { rx_loop(*a); });
    std::thread rb([&] { rx_loop(*b); });
    std::thread ta([&] { tx_loop(*a, kMacB, kMacA); });
    std::thread tb([&] { tx_loop(*b, kMacA, kMacB); });
    ta.join();
    tb.join();
    // Let the RX threads empty what is queued (no timing assertion: we wait until it is).
    while (pa->queued(0) + pb->queued(0) > 0) {
        std::this_thread::yield();
    }
    done = true;
    ra.join();
    rb.join();
    for (auto* p : {pa.get(), pb.get()}) {
        const auto s = p->stats();
        EXPECT_EQ(s.rx_packets + s.rx_dropped, kFrames + 1);
    }
    EXPECT_EQ(a->receive().size() + pa->stats().rx_dropped, kFrames + 1);
}

TEST(NetSwitchRegistry, SameNameSameSwitch) {
    auto s1 = NetSwitch::get("br-test");
    auto s2 = NetSwitch::get("br-test");
    auto s3 = NetSwitch::get("br-other");
    EXPECT_EQ(s1, s2);
    EXPECT_NE(s1, s3);
    EXPECT_EQ(s1->name(), "br-test");
    EXPECT_FALSE(s1->add_port(0).has_value());
}

}  // namespace
}  // namespace vireo::dev::testing
