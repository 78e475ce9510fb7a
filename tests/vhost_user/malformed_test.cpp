// Hostile front ends: every malformed message gets an error reply (REPLY_ACK) or a disconnect,
// never a crash, and never disturbs another connection.
#include <gtest/gtest.h>

#include "front_end.hpp"
#include "vhost_user/backend.hpp"
#include "vhost_user/validator.hpp"

namespace vireo::vhost_user::test {
namespace {

constexpr std::uint16_t kSize = 16;

// A session with REPLY_ACK negotiated, so each refusal is observable as a non-zero ack.
struct AckedSession {
    EchoDevice dev;
    FrontEnd fe{dev};
    AckedSession() {
        const std::uint64_t pf = fe.get_u64(Request::kGetProtocolFeatures);
        EXPECT_TRUE(fe.send(Request::kSetProtocolFeatures, pf));
    }
};

struct TwoRegions {
    MemTableHeader h;
    MemRegion r[2];
};

TEST(Malformed, WrongPayloadSize) {
    AckedSession s;
    const std::uint32_t four = 1;
    EXPECT_NE(s.fe.acked(Request::kSetFeatures, four), 0u);
    EXPECT_TRUE(s.fe.alive());
    // Without need_reply there is no way to report it: the back end hangs up.
    EXPECT_FALSE(s.fe.send(Request::kSetFeatures, four));
}

TEST(Malformed, HeaderSizeBeyondLimitDisconnects) {
    AckedSession s;
    const std::uint64_t v = 0;
    EXPECT_FALSE(s.fe.send_raw(static_cast<std::uint32_t>(Request::kSetFeatures), bytes_of(v), {},
                               kVersion, kMaxPayload + 1));
}

TEST(Malformed, BadVersionOrFlags) {
    AckedSession s;
    const std::uint64_t v = virtq::bit(virtq::kFVersion1);
    EXPECT_FALSE(
        s.fe.send_raw(static_cast<std::uint32_t>(Request::kSetFeatures), bytes_of(v), {}, 0x2));
}

TEST(Malformed, WrongFdCount) {
    AckedSession s;
    UniqueFd efd(::eventfd(0, EFD_CLOEXEC));
    int fds[2] = {efd.get(), efd.get()};
    // An fd where none belongs.
    EXPECT_NE(s.fe.acked(Request::kSetOwner, std::uint64_t{0}, std::span(fds, 1)), 0u);
    EXPECT_TRUE(s.fe.alive());
    // SET_VRING_KICK without the "no fd" flag but without an fd, and with two.
    EXPECT_NE(s.fe.acked(Request::kSetVringKick, std::uint64_t{0}), 0u);
    EXPECT_NE(s.fe.acked(Request::kSetVringKick, std::uint64_t{0}, std::span(fds, 2)), 0u);
    // SET_MEM_TABLE with fewer fds than regions.
    TwoRegions t{{2, 0}, {{0, 0x1000, 0x10000, 0}, {0x1000, 0x1000, 0x20000, 0}}};
    EXPECT_NE(s.fe.acked(Request::kSetMemTable, t, std::span(fds, 1)), 0u);
    EXPECT_TRUE(s.fe.alive());
}

TEST(Malformed, QueueIndexOutOfRange) {
    AckedSession s;
    EXPECT_NE(s.fe.acked(Request::kSetVringNum, VringState{2, 16}), 0u);
    EXPECT_NE(s.fe.acked(Request::kSetVringBase, VringState{255, 0}), 0u);
    const VringAddr a{7, 0, 0, 0, 0, 0};
    EXPECT_NE(s.fe.acked(Request::kSetVringAddr, a), 0u);
    EXPECT_NE(s.fe.acked(Request::kSetVringCall, std::uint64_t{5} | kVringNoFdMask), 0u);
    // GET_VRING_BASE has an explicit reply, so a bad index means a disconnect.
    EXPECT_FALSE(s.fe.send(Request::kGetVringBase, VringState{9, 0}));
}

TEST(Malformed, BadRingSizes) {
    AckedSession s;
    EXPECT_NE(s.fe.acked(Request::kSetVringNum, VringState{0, 0}), 0u);
    EXPECT_NE(s.fe.acked(Request::kSetVringNum, VringState{0, 24}), 0u);   // not a power of 2
    EXPECT_NE(s.fe.acked(Request::kSetVringNum, VringState{0, 512}), 0u);  // above the max
    EXPECT_EQ(s.fe.acked(Request::kSetVringNum, VringState{0, 256}), 0u);
}

TEST(Malformed, BadMemoryTables) {
    AckedSession s;
    UniqueFd mfd(::memfd_create("t", MFD_CLOEXEC));
    ASSERT_EQ(::ftruncate(mfd.get(), 0x4000), 0);
    int fds[2] = {mfd.get(), mfd.get()};
    // Overlapping guest-physical ranges.
    TwoRegions overlap{{2, 0}, {{0, 0x2000, 0x10000, 0}, {0x1000, 0x2000, 0x20000, 0}}};
    EXPECT_NE(s.fe.acked(Request::kSetMemTable, overlap, std::span(fds, 2)), 0u);
    // Overflowing: gpa + size wraps 2^64.
    TwoRegions wrap{{1, 0}, {{~0ull - 0xfff, 0x2000, 0x10000, 0}, {}}};
    EXPECT_NE(s.fe.acked(Request::kSetMemTable, wrap, std::span(fds, 1)), 0u);
    // Huge: cannot be mapped.
    TwoRegions huge{{1, 0}, {{0, 1ull << 62, 0x10000, 0}, {}}};
    EXPECT_NE(s.fe.acked(Request::kSetMemTable, huge, std::span(fds, 1)), 0u);
    // Empty region, zero regions, more regions than the table holds.
    TwoRegions empty{{1, 0}, {{0, 0, 0x10000, 0}, {}}};
    EXPECT_NE(s.fe.acked(Request::kSetMemTable, empty, std::span(fds, 1)), 0u);
    TwoRegions none{{0, 0}, {}};
    EXPECT_NE(s.fe.acked(Request::kSetMemTable, none), 0u);
    TwoRegions many{{9, 0}, {}};
    EXPECT_NE(s.fe.acked(Request::kSetMemTable, many, std::span(fds, 2)), 0u);
    EXPECT_EQ(s.fe.conn().backend().memory().region_count(), 0u);
    // A well-formed table still works afterwards; the trailing unused slot (UML's fixed array)
    // is accepted.
    TwoRegions good{{1, 0}, {{0, 0x4000, 0x10000, 0}, {}}};
    EXPECT_EQ(s.fe.acked(Request::kSetMemTable, good, std::span(fds, 1)), 0u);
    EXPECT_EQ(s.fe.conn().backend().memory().region_count(), 1u);
}

TEST(Malformed, UnknownRequest) {
    AckedSession s;
    const std::uint64_t v = 0;
    ASSERT_TRUE(s.fe.send_raw(999, bytes_of(v), {}, kVersion | kFlagNeedReply));
    auto rep = s.fe.reply();
    ASSERT_TRUE(rep.has_value());
    EXPECT_NE(rep->u64(), 0u);
    // Known to the protocol but not implemented here (no LOG_SHMFD offered).
    EXPECT_NE(s.fe.acked(Request::kSetLogBase, std::uint64_t{0}), 0u);
    // SET_SLAVE_REQ_FD without its fd.
    EXPECT_NE(s.fe.acked(Request::kSetSlaveReqFd), 0u);
    EXPECT_FALSE(s.fe.send_raw(999, bytes_of(v)));
}

TEST(Malformed, RingOutsideMemoryFailsTheRingOnly) {
    AckedSession s;
    ASSERT_NO_FATAL_FAILURE(s.fe.negotiate());
    SplitRing r(s.fe, 0, kGuestBase, kSize);
    ASSERT_TRUE(s.fe.send(Request::kSetVringNum, VringState{0, kSize}));
    const VringAddr bad{0, 0, 0xdead0000, 0xdead1000, 0xdead2000, 0};
    EXPECT_EQ(s.fe.acked(Request::kSetVringAddr, bad), 0u);
    int fd = r.kick_fd();
    EXPECT_EQ(s.fe.acked(Request::kSetVringKick, std::uint64_t{0}, std::span(&fd, 1)), 0u);
    EXPECT_EQ(s.fe.acked(Request::kSetVringEnable, VringState{0, 1}), 0u);
    EXPECT_FALSE(s.fe.conn().backend().ring_running(0));
    EXPECT_NE(s.fe.get_u64(Request::kGetStatus) & kStatusNeedsReset, 0u);
}

TEST(Malformed, OtherConnectionUnaffected) {
    EchoDevice good_dev;
    FrontEnd good(good_dev);
    ASSERT_NO_FATAL_FAILURE(good.negotiate());
    SplitRing r(good, 0, kGuestBase, kSize);
    ASSERT_NO_FATAL_FAILURE(r.setup());
    {
        AckedSession bad;
        EXPECT_FALSE(bad.fe.send_raw(0xffff, {}, {}, 0x7));
    }
    r.add(0, "unaffected", 32);
    r.kick();
    ASSERT_TRUE(r.wait_call());
    EXPECT_EQ(r.written(0, 10), "UNAFFECTED");
}

// The validator on its own, for rules the sessions above do not reach.
TEST(Validator, Rules) {
    ValidationLimits lim{2, 256, false, 8};
    Message m;
    m.hdr = {static_cast<std::uint32_t>(Request::kSetVringNum), kVersion, 8};
    m.payload.resize(8);
    VringState st{0, 128};
    std::memcpy(m.payload.data(), &st, 8);
    EXPECT_TRUE(validate(m, lim));
    st.num = 100;
    std::memcpy(m.payload.data(), &st, 8);
    EXPECT_FALSE(validate(m, lim));
    lim.packed = true;  // packed rings need not be powers of two (§2.8)
    EXPECT_TRUE(validate(m, lim));
    m.hdr.size = 9;  // header and payload disagree
    EXPECT_FALSE(validate(m, lim));
    m.hdr.size = 8;
    m.hdr.flags = kVersion | kFlagReply;  // a reply sent to the back end
    EXPECT_FALSE(validate(m, lim));

    Message kick;
    kick.hdr = {static_cast<std::uint32_t>(Request::kSetVringKick), kVersion, 8};
    kick.payload.resize(8);
    const std::uint64_t reserved = 1u << 9;
    std::memcpy(kick.payload.data(), &reserved, 8);
    EXPECT_FALSE(validate(kick, lim));  // reserved bits

    Message cfg;
    cfg.hdr = {static_cast<std::uint32_t>(Request::kGetConfig), kVersion, 12 + 4};
    cfg.payload.resize(16);
    const ConfigHeader ch{kMaxConfigSize - 2, 4, 0};
    std::memcpy(cfg.payload.data(), &ch, sizeof ch);
    EXPECT_FALSE(validate(cfg, lim));  // beyond the config size limit
}

}  // namespace
}  // namespace vireo::vhost_user::test
