// The virtio-net device model on its own: factory, features and config, TX validation, RX chain
// handling and the control queue (valid and malformed commands), over split and packed rings;
// and the TAP back end inside a private network namespace.
#include "devices/net.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "devices/net_switch.hpp"
#include "devices/net_tap.hpp"
#include "net_harness.hpp"

namespace vireo::dev::testing {
namespace {

constexpr MacAddress kMacA{0x52, 0x54, 0, 0, 0, 0x0a};
constexpr MacAddress kMacB{0x52, 0x54, 0, 0, 0, 0x0b};

std::shared_ptr<NetSwitchPort> port(std::uint16_t pairs = 1) {
    static auto sw = NetSwitch::create("net-test");
    return *sw->add_port(pairs);
}

TEST(NetDevice, FactoryValidatesOptions) {
    EXPECT_FALSE(NetDevice::create(NetOptions{}).has_value());  // no back end
    EXPECT_FALSE(NetDevice::create(NetOptions{std::nullopt, 2, 256, port(1)}).has_value());
    EXPECT_FALSE(NetDevice::create(NetOptions{std::nullopt, 1, 100, port(1)}).has_value());
    EXPECT_FALSE(NetDevice::create(NetOptions{std::nullopt, 0, 256, port(1)}).has_value());
    const MacAddress multicast{0x01, 0, 0x5e, 0, 0, 1};
    EXPECT_FALSE(NetDevice::create(NetOptions{multicast, 1, 256, port(1)}).has_value());
    auto d = NetDevice::create(NetOptions{std::nullopt, 1, 256, port(1)});
    ASSERT_TRUE(d.has_value());
    const MacAddress m = (*d)->mac();
    EXPECT_EQ(m[0] & 0x03, 0x02) << "random MACs are locally administered unicast";
}

TEST(NetDevice, FeaturesAndConfig) {
    auto d = *NetDevice::create(NetOptions{kMacA, 4, 256, port(4)});
    EXPECT_EQ(d->device_id(), kIdNet);
    EXPECT_EQ(d->num_queues(), 9);
    const std::uint64_t f = d->device_features();
    for (unsigned b : {kNetFCsum, kNetFGuestCsum, kNetFMac, kNetFGuestTso4, kNetFGuestTso6,
                       kNetFHostTso4, kNetFHostTso6, kNetFMrgRxbuf, kNetFStatus, kNetFCtrlVq,
                       kNetFCtrlRx, kNetFCtrlMacAddr, kNetFMq}) {
        EXPECT_NE(f & bit(b), 0u) << b;
    }
    for (unsigned b :
         {virtq::kFVersion1, virtq::kFRingPacked, virtq::kFEventIdx, virtq::kFIndirectDesc}) {
        EXPECT_NE(f & bit(b), 0u) << b;
    }
    EXPECT_EQ(f & bit(kNetFHostUfo), 0u);
    NetConfig c;
    ASSERT_EQ(d->config().size(), sizeof c);
    std::memcpy(&c, d->config().data(), sizeof c);
    EXPECT_TRUE(std::equal(kMacA.begin(), kMacA.end(), c.mac));
    EXPECT_EQ(c.status.get(), kNetSLinkUp);
    EXPECT_EQ(c.max_virtqueue_pairs.get(), 4);
    // Features never offered are not accepted; dependent ones need their prerequisite.
    d->set_features(bit(kNetFGuestTso4) | bit(kNetFHostUfo) | bit(kNetFCtrlRx));
    EXPECT_EQ(d->negotiated(), 0u);
    // Without MQ the control queue is index 2 and there are no further data queues.
    EXPECT_EQ(d->device_features() & bit(kNetFMq), bit(kNetFMq));
}

TEST(NetDevice, MacParsing) {
    auto m = parse_mac("52:54:00:12:34:ab");
    ASSERT_TRUE(m.has_value());
    EXPECT_EQ(to_string(*m), "52:54:00:12:34:ab");
    EXPECT_FALSE(parse_mac("52:54:00:12:34").has_value());
    EXPECT_FALSE(parse_mac("52-54-00-12-34-ab").has_value());
    EXPECT_FALSE(parse_mac("52:54:00:12:34:zz").has_value());
}

template <typename T>
class NetDeviceQueues : public ::testing::Test {
  protected:
    using G = Guest<T::value>;
};
using RingKinds = ::testing::Types<std::false_type, std::true_type>;
struct RingName {
    template <typename T>
    static std::string GetName(int) {
        return T::value ? "Packed" : "Split";
    }
};
TYPED_TEST_SUITE(NetDeviceQueues, RingKinds, RingName);

TYPED_TEST(NetDeviceQueues, MalformedTxChainsCompleteWithoutSending) {
    using G = typename TestFixture::G;
    auto p = port();
    G g(p, bit(kNetFMac));
    const auto ok = make_frame(kMacB, kMacA, 60, 1);
    // Header only, header cut short, short frame, oversize frame.
    EXPECT_EQ(g.send({}, {}), 0);
    std::uint8_t* h = g.alloc_tx(8);
    EXPECT_EQ(g.send_raw({{g.gpa(h), 8}}, {}), 0);
    EXPECT_EQ(g.send(std::span(ok).first(13)), 0);
    std::vector<std::uint8_t> big(kNetMaxFrame + 1, 0x11);
    EXPECT_EQ(g.send(big), 0);
    // Offloads that were not negotiated, and flags a driver must not set.
    NetHdr csum{};
    csum.flags = kNetHdrFNeedsCsum;
    EXPECT_EQ(g.send(ok, csum), 0);
    NetHdr gso{};
    gso.flags = kNetHdrFNeedsCsum;
    gso.gso_type = kNetHdrGsoTcpv4;
    gso.gso_size.set(1000);
    EXPECT_EQ(g.send(ok, gso), 0);
    NetHdr valid{};
    valid.flags = kNetHdrFDataValid;
    EXPECT_EQ(g.send(ok, valid), 0);
    EXPECT_EQ(g.dev->stats().tx_errors, 7u);
    EXPECT_EQ(p->stats().tx_packets, 0u);
    // A TX chain with a writable tail is still sent and completed with used length 0.
    std::uint8_t* buf = g.alloc_tx(kNetHdrSize + ok.size() + 16);
    std::memset(buf, 0, kNetHdrSize);
    std::memcpy(buf + kNetHdrSize, ok.data(), ok.size());
    EXPECT_EQ(g.send_raw({{g.gpa(buf), static_cast<std::uint32_t>(kNetHdrSize + ok.size())}},
                         {{g.gpa(buf + kNetHdrSize + ok.size()), 16}}),
              0);
    EXPECT_EQ(g.dev->stats().tx_packets, 1u);
    EXPECT_EQ(p->stats().tx_packets, 1u);
    EXPECT_FALSE(g.txq().handler->needs_reset());
}

TYPED_TEST(NetDeviceQueues, TxValidationAcceptsNegotiatedOffloads) {
    using G = typename TestFixture::G;
    auto p = port();
    G g(p, bit(kNetFCsum) | bit(kNetFHostTso4) | bit(kNetFHostTso6));
    const auto f = make_frame(kMacB, kMacA, 200, 1);
    NetHdr h{};
    h.flags = kNetHdrFNeedsCsum;
    h.csum_start.set(34);
    h.csum_offset.set(16);
    EXPECT_EQ(g.send(f, h), 0);
    h.csum_start.set(190);  // the checksum field would end past the frame
    EXPECT_EQ(g.send(f, h), 0);
    h.csum_start.set(34);
    h.gso_type = kNetHdrGsoTcpv6;
    h.gso_size.set(1440);
    EXPECT_EQ(g.send(f, h), 0);
    h.gso_size.set(0);  // GSO without an MSS
    EXPECT_EQ(g.send(f, h), 0);
    h.gso_size.set(1440);
    h.gso_type = kNetHdrGsoUdp;  // UFO: not offered
    EXPECT_EQ(g.send(f, h), 0);
    EXPECT_EQ(g.dev->stats().tx_packets, 2u);
    EXPECT_EQ(g.dev->stats().tx_errors, 3u);
}

TYPED_TEST(NetDeviceQueues, RxChainsTooSmallForAHeaderAreReturnedEmpty) {
    using G = typename TestFixture::G;
    auto sw = NetSwitch::create("rx-small");
    auto pa = *sw->add_port();
    auto pb = *sw->add_port();
    G a(pa, bit(kNetFMac), 1, kMacA);
    G b(pb, bit(kNetFMac), 1, kMacB);
    b.post_rx(1, 8);  // shorter than virtio_net_hdr
    b.post_rx(1, 2048);
    a.send(make_frame(kMacB, kMacA, 64, 1));
    auto& q = b.rxq();
    ASSERT_TRUE(readable(q.handler->event_fd()));
    q.handler->on_event();
    std::uint32_t len = 0;
    ASSERT_NE(q.driver.get_buf(&len), nullptr);
    EXPECT_EQ(len, 0u);
    ASSERT_NE(q.driver.get_buf(&len), nullptr);
    EXPECT_EQ(len, kNetHdrSize + 64);
    EXPECT_EQ(b.dev->stats().rx_bad_chains, 1u);
    EXPECT_EQ(b.dev->stats().rx_packets, 1u);
}

TYPED_TEST(NetDeviceQueues, DrainReturnsHeldRxChains) {
    using G = typename TestFixture::G;
    auto sw = NetSwitch::create("drain");
    auto pa = *sw->add_port();
    auto pb = *sw->add_port();
    G a(pa, bit(kNetFMac), 1, kMacA);
    G b(pb, bit(kNetFMac) | bit(kNetFMrgRxbuf), 1, kMacB);
    b.post_rx(1, 512);
    a.send(make_frame(kMacB, kMacA, 1500, 1));  // needs more buffers: the one posted is held
    EXPECT_TRUE(b.receive().empty());
    b.rxq().handler->drain();
    std::uint32_t len = 1;
    EXPECT_NE(b.rxq().driver.get_buf(&len), nullptr);
    EXPECT_EQ(len, 0u);
}

TYPED_TEST(NetDeviceQueues, ControlQueueCommands) {
    using G = typename TestFixture::G;
    G g(port(2),
        bit(kNetFMac) | bit(kNetFCtrlVq) | bit(kNetFCtrlRx) | bit(kNetFCtrlMacAddr) | bit(kNetFMq),
        2, kMacA);
    ASSERT_EQ(g.queues.size(), 5u);
    const std::uint8_t on[1] = {1};
    const std::uint8_t two_bytes[2] = {1, 0};
    const std::uint8_t bad_value[1] = {2};
    EXPECT_EQ(g.ctrl(kNetCtrlRx, kNetCtrlRxPromisc, on), kNetOk);
    EXPECT_EQ(g.ctrl(kNetCtrlRx, kNetCtrlRxAllmulti, on), kNetOk);
    EXPECT_TRUE(g.dev->rx_filter().allmulti);
    EXPECT_EQ(g.ctrl(kNetCtrlRx, kNetCtrlRxPromisc, two_bytes), kNetErr);
    EXPECT_EQ(g.ctrl(kNetCtrlRx, kNetCtrlRxPromisc, bad_value), kNetErr);
    EXPECT_EQ(g.ctrl(kNetCtrlRx, 2 /*ALLUNI: needs CTRL_RX_EXTRA*/, on), kNetErr);
    EXPECT_EQ(g.ctrl(kNetCtrlRx, kNetCtrlRxPromisc, {}), kNetErr);

    // MAC table: one unicast, two multicast entries.
    std::vector<std::uint8_t> t = {1, 0,    0, 0,    0x52, 0x54, 0, 0,    0,    0x99, 2, 0, 0,
                                   0, 0x01, 0, 0x5e, 0,    0,    1, 0x33, 0x33, 0,    0, 0, 1};
    EXPECT_EQ(g.ctrl(kNetCtrlMac, kNetCtrlMacTableSet, t), kNetOk);
    auto f = g.dev->rx_filter();
    EXPECT_EQ(f.unicast.size(), 1u);
    EXPECT_EQ(f.multicast.size(), 2u);
    auto trailing = t;
    trailing.push_back(0);
    EXPECT_EQ(g.ctrl(kNetCtrlMac, kNetCtrlMacTableSet, trailing), kNetErr);
    auto truncated = t;
    truncated.resize(t.size() - 1);
    EXPECT_EQ(g.ctrl(kNetCtrlMac, kNetCtrlMacTableSet, truncated), kNetErr);
    std::vector<std::uint8_t> huge = {0xff, 0xff, 0xff, 0xff};  // entries beyond the data
    EXPECT_EQ(g.ctrl(kNetCtrlMac, kNetCtrlMacTableSet, huge), kNetErr);
    std::vector<std::uint8_t> wrong_kind = {1, 0, 0, 0, 0x01, 0, 0x5e, 0, 0, 1, 0, 0, 0, 0};
    EXPECT_EQ(g.ctrl(kNetCtrlMac, kNetCtrlMacTableSet, wrong_kind), kNetErr);
    EXPECT_EQ(g.dev->rx_filter().unicast.size(), 1u) << "a refused command changes nothing";

    // Address set: reflected in config space.
    EXPECT_EQ(g.ctrl(kNetCtrlMac, kNetCtrlMacAddrSet, kMacB), kNetOk);
    EXPECT_EQ(g.dev->mac(), kMacB);
    EXPECT_TRUE(std::equal(kMacB.begin(), kMacB.end(), g.dev->config().begin()));
    const std::uint8_t mcast[6] = {1, 0, 0x5e, 0, 0, 1};
    EXPECT_EQ(g.ctrl(kNetCtrlMac, kNetCtrlMacAddrSet, mcast), kNetErr);
    EXPECT_EQ(g.ctrl(kNetCtrlMac, kNetCtrlMacAddrSet, std::span(kMacA).first(5)), kNetErr);
    EXPECT_EQ(g.ctrl(kNetCtrlMac, 7, {}), kNetErr);

    // MQ pairs.
    const std::uint8_t zero[2] = {0, 0};
    const std::uint8_t three[2] = {3, 0};
    const std::uint8_t two[2] = {2, 0};
    EXPECT_EQ(g.ctrl(kNetCtrlMq, kNetCtrlMqVqPairsSet, zero), kNetErr);
    EXPECT_EQ(g.ctrl(kNetCtrlMq, kNetCtrlMqVqPairsSet, three), kNetErr);
    EXPECT_EQ(g.ctrl(kNetCtrlMq, kNetCtrlMqVqPairsSet, on), kNetErr);
    EXPECT_EQ(g.ctrl(kNetCtrlMq, 1 /*RSS_CONFIG*/, two), kNetErr);
    EXPECT_EQ(g.ctrl(kNetCtrlMq, kNetCtrlMqVqPairsSet, two), kNetOk);
    EXPECT_EQ(g.dev->active_pairs(), 2);

    // Classes not offered, a command without data, a chain without an ack byte.
    EXPECT_EQ(g.ctrl(kNetCtrlVlan, 0, two), kNetErr);
    EXPECT_EQ(g.ctrl(kNetCtrlGuestOffloads, 0, std::vector<std::uint8_t>(8)), kNetErr);
    EXPECT_EQ(g.ctrl(9, 0, {}), kNetErr);
    EXPECT_EQ(g.ctrl(kNetCtrlRx, kNetCtrlRxPromisc, on, /*with_ack=*/false), -1);
    EXPECT_FALSE(g.ctrlq().handler->needs_reset());

    // Reset restores the defaults.
    g.dev->reset();
    EXPECT_EQ(g.dev->active_pairs(), 1);
    EXPECT_EQ(g.dev->mac(), kMacA);
    EXPECT_TRUE(g.dev->rx_filter().promisc);
    EXPECT_TRUE(g.dev->rx_filter().unicast.empty());
}

TYPED_TEST(NetDeviceQueues, ControlCommandsNeedTheirFeatures) {
    using G = typename TestFixture::G;
    G g(port(), bit(kNetFCtrlVq), 1, kMacA);  // CTRL_VQ only
    ASSERT_EQ(g.queues.size(), 3u);
    const std::uint8_t on[1] = {1};
    const std::uint8_t one[2] = {1, 0};
    EXPECT_EQ(g.ctrl(kNetCtrlRx, kNetCtrlRxPromisc, on), kNetErr);
    EXPECT_EQ(g.ctrl(kNetCtrlMac, kNetCtrlMacAddrSet, kMacB), kNetErr);
    EXPECT_EQ(g.ctrl(kNetCtrlMq, kNetCtrlMqVqPairsSet, one), kNetErr);
    EXPECT_EQ(g.dev->stats().ctrl_errors, 3u);
}

// --- TAP ---------------------------------------------------------------------------------------

// Runs `body` on a thread that moved into a fresh network namespace: the TAP, the packet
// socket and the interface configuration are private to it and vanish with it.
template <typename F>
void in_new_netns(F&& body) {
    std::thread t([&] {
        ASSERT_EQ(::unshare(CLONE_NEWNET), 0) << std::strerror(errno);
        body();
    });
    t.join();
}

bool set_up(const std::string& ifname) {
    UniqueFd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, ifname.c_str(), IFNAMSIZ - 1);
    if (!s || ::ioctl(s.get(), SIOCGIFFLAGS, &ifr) != 0) {
        return false;
    }
    ifr.ifr_flags |= IFF_UP;
    return ::ioctl(s.get(), SIOCSIFFLAGS, &ifr) == 0;
}

TYPED_TEST(NetDeviceQueues, TapCarriesFramesBothWays) {
    if (::access("/dev/net/tun", R_OK | W_OK) != 0) {
        GTEST_SKIP() << "/dev/net/tun is missing";
    }
    using G = typename TestFixture::G;
    in_new_netns([&] {
        auto tap = NetTap::open("vireo-t%d", 1);
        ASSERT_TRUE(tap.has_value()) << tap.error();
        const std::string name = (*tap)->name();
        ASSERT_TRUE(set_up(name));
        G g(*tap, bit(kNetFMac) | bit(kNetFMrgRxbuf) | bit(kNetFCsum) | bit(kNetFGuestCsum), 1,
            kMacA);
        const int ifindex = static_cast<int>(::if_nametoindex(name.c_str()));
        ASSERT_GT(ifindex, 0);
        UniqueFd pk(::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(kTestEtherType)));
        ASSERT_TRUE(pk.valid()) << std::strerror(errno);
        sockaddr_ll sll{};
        sll.sll_family = AF_PACKET;
        sll.sll_protocol = htons(kTestEtherType);
        sll.sll_ifindex = ifindex;
        ASSERT_EQ(::bind(pk.get(), reinterpret_cast<sockaddr*>(&sll), sizeof sll), 0);

        // Guest → TAP: appears on the interface.
        const auto out = make_frame(kMacB, kMacA, 1000, 7);
        EXPECT_EQ(g.send(out), 0);
        std::vector<std::uint8_t> buf(4096);
        pollfd p{pk.get(), POLLIN, 0};
        ASSERT_EQ(::poll(&p, 1, 5000), 1);
        const ssize_t n = ::recv(pk.get(), buf.data(), buf.size(), 0);
        ASSERT_EQ(n, static_cast<ssize_t>(out.size()));
        buf.resize(static_cast<std::size_t>(n));
        EXPECT_EQ(buf, out);
        EXPECT_EQ(g.dev->stats().tx_packets, 1u);

        // Interface → guest: a frame sent on the interface arrives in the RX queue.
        g.post_rx(16, 1024);
        const auto in = make_frame(kMacA, kMacB, 1400, 8);
        ASSERT_EQ(::sendto(pk.get(), in.data(), in.size(), 0, reinterpret_cast<sockaddr*>(&sll),
                           sizeof sll),
                  static_cast<ssize_t>(in.size()));
        // The kernel may send its own frames (IPv6 neighbour discovery) first: skip them.
        bool found = false;
        for (int tries = 0; tries < 50 && !found; ++tries) {
            pollfd t{g.rxq().handler->event_fd(), POLLIN, 0};
            if (::poll(&t, 1, 100) != 1) {
                continue;
            }
            for (const auto& r : g.receive()) {
                if (r.frame == in) {
                    found = true;
                    EXPECT_EQ(r.hdr.num_buffers.get(), 2);  // 12 + 1400 bytes in 1 KiB chains
                }
            }
        }
        EXPECT_TRUE(found);
        EXPECT_GE(g.dev->stats().rx_packets, 1u);
    });
}

TEST(NetTap, RejectsBadNames) {
    EXPECT_FALSE(NetTap::open("", 1).has_value());
    EXPECT_FALSE(NetTap::open("a-name-that-is-far-too-long", 1).has_value());
}

}  // namespace
}  // namespace vireo::dev::testing
