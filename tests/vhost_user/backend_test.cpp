// The back end driven by a C++ front end over a socketpair: negotiation, memory table, rings,
// I/O round trips through a test device, GET_VRING_BASE, reconnect, config space, queue errors.
#include "vhost_user/backend.hpp"

#include <gtest/gtest.h>

#include "front_end.hpp"

namespace vireo::vhost_user::test {
namespace {

constexpr std::uint16_t kSize = 16;
constexpr std::uint64_t kRing0 = kGuestBase;
constexpr std::uint64_t kRing1 = kGuestBase + 0x40000;

TEST(Backend, FeatureAndProtocolNegotiation) {
    EchoDevice dev;
    FrontEnd fe(dev);
    const std::uint64_t f = fe.get_u64(Request::kGetFeatures);
    EXPECT_EQ(f, kEchoFeatures | (1ull << kFProtocolFeatures));
    // Legal before SET_FEATURES ("must support this message even before SET_FEATURES").
    const std::uint64_t pf = fe.get_u64(Request::kGetProtocolFeatures);
    EXPECT_EQ(pf, kOfferedProtocolFeatures);
    for (unsigned b :
         {kPfMq, kPfReplyAck, kPfConfig, kPfInflightShmfd, kPfConfigureMemSlots, kPfStatus}) {
        EXPECT_NE(pf & (1ull << b), 0u) << b;
    }
    ASSERT_TRUE(fe.send(Request::kSetProtocolFeatures, pf));
    EXPECT_EQ(fe.conn().backend().acked_protocol_features(), pf);
    EXPECT_EQ(fe.get_u64(Request::kGetQueueNum), 2u);
    EXPECT_EQ(fe.get_u64(Request::kGetMaxMemSlots), kMaxMemSlots);
    // Features never offered are refused (and REPLY_ACK reports it), the session survives.
    EXPECT_NE(fe.acked(Request::kSetFeatures, virtq::bit(50)), 0u);
    EXPECT_TRUE(fe.alive());
    const std::uint64_t want = virtq::bit(virtq::kFVersion1) | (1ull << kFProtocolFeatures);
    EXPECT_EQ(fe.acked(Request::kSetFeatures, want), 0u);
    // The device sees the virtio features only: bit 30 belongs to vhost-user.
    EXPECT_EQ(dev.features, virtq::bit(virtq::kFVersion1));
    // Protocol features never offered are refused too.
    EXPECT_NE(fe.acked(Request::kSetProtocolFeatures, std::uint64_t{1} << kPfLogShmfd), 0u);
    // STATUS round trip.
    ASSERT_TRUE(fe.send(Request::kSetStatus, std::uint64_t{0x0f}));
    EXPECT_EQ(fe.get_u64(Request::kGetStatus), 0x0fu);
}

TEST(Backend, IoRoundTripAndGetVringBase) {
    EchoDevice dev;
    FrontEnd fe(dev);
    ASSERT_NO_FATAL_FAILURE(fe.negotiate(virtq::bit(virtq::kFEventIdx)));
    SplitRing r0(fe, 0, kRing0, kSize);
    ASSERT_NO_FATAL_FAILURE(r0.setup());
    EXPECT_TRUE(fe.conn().backend().ring_running(0));
    EXPECT_FALSE(fe.conn().backend().ring_running(1));

    r0.add(0, "hello vhost", 64);
    r0.kick();
    ASSERT_TRUE(r0.wait_call());
    ASSERT_EQ(r0.used_idx(), 1);
    EXPECT_EQ(r0.used_elem(0).id.get(), 0u);
    EXPECT_EQ(r0.used_elem(0).len.get(), 11u);
    EXPECT_EQ(r0.written(0, 11), "HELLO VHOST");

    r0.add(2, "second", 64);
    r0.kick();
    ASSERT_TRUE(r0.wait_call());
    ASSERT_EQ(r0.used_idx(), 2);
    EXPECT_EQ(r0.written(2, 6), "SECOND");

    // GET_VRING_BASE stops the ring and reports the next avail index.
    ASSERT_TRUE(fe.send(Request::kGetVringBase, VringState{0, 0}));
    auto rep = fe.reply();
    ASSERT_TRUE(rep.has_value());
    ASSERT_EQ(rep->payload.size(), sizeof(VringState));
    VringState st;
    std::memcpy(&st, rep->payload.data(), sizeof st);
    EXPECT_EQ(st.index, 0u);
    EXPECT_EQ(st.num, 2u);
    EXPECT_FALSE(fe.conn().backend().ring_running(0));

    // Restart from that base with a new kick fd: the ring resumes where it stopped.
    ASSERT_NO_FATAL_FAILURE(r0.setup(true, st.num));
    r0.add(4, "third", 64);
    r0.kick();
    ASSERT_TRUE(r0.wait_call());
    EXPECT_EQ(r0.used_idx(), 3);
    EXPECT_EQ(r0.written(4, 5), "THIRD");
}

TEST(Backend, RingsWaitForEnableWhenProtocolFeaturesNegotiated) {
    EchoDevice dev;
    FrontEnd fe(dev);
    ASSERT_NO_FATAL_FAILURE(fe.negotiate());
    SplitRing r0(fe, 0, kRing0, kSize);
    ASSERT_NO_FATAL_FAILURE(r0.setup(/*enable=*/false));
    // Started (kick fd given) but disabled: not processed.
    EXPECT_FALSE(fe.conn().backend().ring_running(0));
    r0.add(0, "queued", 32);
    r0.kick();
    ASSERT_TRUE(fe.send(Request::kSetVringEnable, VringState{0, 1}));
    EXPECT_TRUE(fe.conn().backend().ring_running(0));
    ASSERT_TRUE(r0.wait_call());
    EXPECT_EQ(r0.written(0, 6), "QUEUED");
}

TEST(Backend, MultiqueueRoundTrip) {
    EchoDevice dev;
    FrontEnd fe(dev);
    ASSERT_NO_FATAL_FAILURE(fe.negotiate());
    SplitRing r0(fe, 0, kRing0, kSize);
    SplitRing r1(fe, 1, kRing1, kSize);
    ASSERT_NO_FATAL_FAILURE(r0.setup());
    ASSERT_NO_FATAL_FAILURE(r1.setup());
    r0.add(0, "zero", 16);
    r1.add(0, "one", 16);
    r0.kick();
    r1.kick();
    ASSERT_TRUE(r0.wait_call());
    ASSERT_TRUE(r1.wait_call());
    EXPECT_EQ(r0.written(0, 4), "ZERO");
    EXPECT_EQ(r1.written(0, 3), "ONE");
}

TEST(Backend, MemTableChangeWhileRunning) {
    EchoDevice dev;
    FrontEnd fe(dev);
    ASSERT_NO_FATAL_FAILURE(fe.negotiate());
    SplitRing r0(fe, 0, kRing0, kSize);
    ASSERT_NO_FATAL_FAILURE(r0.setup());
    r0.add(0, "before", 16);
    r0.kick();
    ASSERT_TRUE(r0.wait_call());
    // A new table (same memory) while the ring runs: workers stop, memory swaps, they restart.
    ASSERT_TRUE(fe.set_mem_table());
    EXPECT_TRUE(fe.conn().backend().ring_running(0));
    r0.add(2, "after", 16);
    r0.kick();
    ASSERT_TRUE(r0.wait_call());
    EXPECT_EQ(r0.used_idx(), 2);
    EXPECT_EQ(r0.written(2, 5), "AFTER");
}

TEST(Backend, AddAndRemoveMemoryRegions) {
    EchoDevice dev;
    FrontEnd fe(dev);
    ASSERT_NO_FATAL_FAILURE(fe.negotiate());
    UniqueFd extra(::memfd_create("extra", MFD_CLOEXEC));
    ASSERT_EQ(::ftruncate(extra.get(), 0x10000), 0);
    const SingleMemRegion add{0, {0x10000000, 0x10000, 0x7000'0000'0000, 0}};
    int fd = extra.get();
    EXPECT_EQ(fe.acked(Request::kAddMemReg, add, std::span(&fd, 1)), 0u);
    EXPECT_EQ(fe.conn().backend().memory().region_count(), 2u);
    // Overlapping the first region: refused.
    const SingleMemRegion clash{0, {kGuestBase, 0x1000, 0x7100'0000'0000, 0}};
    EXPECT_NE(fe.acked(Request::kAddMemReg, clash, std::span(&fd, 1)), 0u);
    EXPECT_EQ(fe.acked(Request::kRemMemReg, add), 0u);
    EXPECT_EQ(fe.conn().backend().memory().region_count(), 1u);
    EXPECT_NE(fe.acked(Request::kRemMemReg, add), 0u);  // already gone
}

TEST(Backend, ConfigSpace) {
    EchoDevice dev;
    FrontEnd fe(dev);
    ASSERT_NO_FATAL_FAILURE(fe.negotiate());
    struct {
        ConfigHeader h;
        std::uint8_t data[20];
    } get{{4, 20, 0}, {}};
    ASSERT_TRUE(fe.send(Request::kGetConfig, get));
    auto rep = fe.reply();
    ASSERT_TRUE(rep.has_value());
    ASSERT_EQ(rep->payload.size(), sizeof get);
    // Bytes 4..15 come from the device, 16..23 (past its config) read as zero.
    for (std::size_t i = 0; i < 20; ++i) {
        const std::uint8_t want = i + 4 < 16 ? static_cast<std::uint8_t>(0xa0 + 4 + i) : 0;
        EXPECT_EQ(rep->payload[sizeof(ConfigHeader) + i], want) << i;
    }
    struct {
        ConfigHeader h;
        std::uint8_t data[4];
    } set{{2, 4, kConfigFlagWritable}, {0x11, 0x22, 0x33, 0x44}};
    EXPECT_EQ(fe.acked(Request::kSetConfig, set), 0u);
    EXPECT_EQ(dev.config()[2], 0x11);
    EXPECT_EQ(dev.config()[3], 0x22);
    EXPECT_EQ(dev.config()[5], 0x44);
    set.h.offset = 13;  // 13 + 4 > 16: beyond the config space
    EXPECT_NE(fe.acked(Request::kSetConfig, set), 0u);
}

TEST(Backend, GetConfigWithoutConfigFeatureRepliesEmpty) {
    EchoDevice dev;
    FrontEnd fe(dev);
    struct {
        ConfigHeader h;
        std::uint8_t data[4];
    } get{{0, 4, 0}, {}};
    ASSERT_TRUE(fe.send(Request::kGetConfig, get));
    auto rep = fe.reply();
    ASSERT_TRUE(rep.has_value());
    EXPECT_EQ(rep->payload.size(), 0u);  // the spec's error form for GET_CONFIG
}

TEST(Backend, ReconnectAfterDisconnect) {
    EchoDevice dev;
    {
        FrontEnd fe(dev);
        ASSERT_NO_FATAL_FAILURE(fe.negotiate());
        SplitRing r0(fe, 0, kRing0, kSize);
        ASSERT_NO_FATAL_FAILURE(r0.setup());
        r0.add(0, "first life", 32);
        r0.kick();
        ASSERT_TRUE(r0.wait_call());
        fe.disconnect();  // the back end drains, unmaps and resets the device
        EXPECT_EQ(dev.resets.load(), 1);
    }
    FrontEnd fe(dev);
    ASSERT_NO_FATAL_FAILURE(fe.negotiate());
    SplitRing r0(fe, 0, kRing0, kSize);
    ASSERT_NO_FATAL_FAILURE(r0.setup());
    r0.add(0, "second life", 32);
    r0.kick();
    ASSERT_TRUE(r0.wait_call());
    EXPECT_EQ(r0.written(0, 11), "SECOND LIFE");
}

TEST(Backend, QueueErrorSetsNeedsResetAndSparesOtherQueues) {
    EchoDevice dev;
    FrontEnd fe(dev);
    ASSERT_NO_FATAL_FAILURE(fe.negotiate());
    SplitRing r0(fe, 0, kRing0, kSize);
    SplitRing r1(fe, 1, kRing1, kSize);
    UniqueFd err(::eventfd(0, EFD_CLOEXEC));
    int fd = err.get();
    ASSERT_TRUE(fe.send(Request::kSetVringErr, std::uint64_t{0}, std::span(&fd, 1)));
    int chan[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, chan), 0);
    UniqueFd ours(chan[0]), theirs(chan[1]);
    fd = theirs.get();
    EXPECT_EQ(fe.acked(Request::kSetSlaveReqFd, std::span<const int>(&fd, 1)), 0u);
    ASSERT_NO_FATAL_FAILURE(r0.setup());
    ASSERT_NO_FATAL_FAILURE(r1.setup());
    r0.make_available(kSize + 3);  // head index out of range: a malformed ring
    r0.kick();
    pollfd p{err.get(), POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 10000), 1);  // the error eventfd fires
    EXPECT_NE(fe.get_u64(Request::kGetStatus) & kStatusNeedsReset, 0u);
    // ...and the front end hears about it as a config change (§2.1.2).
    pollfd pn{ours.get(), POLLIN, 0};
    ASSERT_EQ(::poll(&pn, 1, 10000), 1);
    auto note = receive(ours.get());
    ASSERT_TRUE(note.has_value());
    EXPECT_EQ(note->hdr.request, static_cast<std::uint32_t>(BackendRequest::kConfigChangeMsg));
    r1.add(0, "still fine", 16);
    r1.kick();
    ASSERT_TRUE(r1.wait_call());
    EXPECT_EQ(r1.written(0, 10), "STILL FINE");
}

TEST(Backend, ResetDeviceStopsRings) {
    EchoDevice dev;
    FrontEnd fe(dev);
    ASSERT_NO_FATAL_FAILURE(fe.negotiate());
    SplitRing r0(fe, 0, kRing0, kSize);
    ASSERT_NO_FATAL_FAILURE(r0.setup());
    EXPECT_EQ(fe.acked(Request::kResetDevice), 0u);
    EXPECT_FALSE(fe.conn().backend().ring_running(0));
    EXPECT_EQ(dev.resets.load(), 1);
    EXPECT_EQ(fe.conn().backend().acked_features(), 0u);
}

}  // namespace
}  // namespace vireo::vhost_user::test
