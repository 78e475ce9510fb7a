// Device side of the split ring (§2.7): round trips, free-running indices, notification
// suppression, save/restore, activation checks, and hostile rings.
#include "virtq/split_queue.hpp"

#include <gtest/gtest.h>

#include <array>
#include <optional>
#include <vector>

#include "ring_builder.hpp"
#include "virtq/virtqueue.hpp"

namespace vireo::virtq {
namespace {

using test::kData2Gpa;
using test::kDataGpa;
using test::kHoleGpa;
using test::kPage;
using test::kRingGpa;
using test::SplitRing;

constexpr QueueFeatures kPlain{.packed = false, .event_idx = false, .indirect = true};
constexpr QueueFeatures kEventIdx{.packed = false, .event_idx = true, .indirect = true};

class SplitQueueTest : public ::testing::Test {
  protected:
    void SetUp() override { test::add_test_regions(guarded_); }

    const GuestMemory& mem() const { return guarded_.mem(); }

    // Descriptor table at the start of the ring page, used ring after it, available ring flush
    // against the page's end (so its trailing used_event is the region's last two bytes).
    static QueueConfig config(std::uint16_t size) {
        return QueueConfig{size, kRingGpa, kRingGpa + kPage - split_avail_bytes(size),
                           kRingGpa + split_desc_bytes(size)};
    }
    void start(std::uint16_t size, QueueFeatures f = kPlain) {
        const std::vector<std::uint8_t> zero(kPage, 0);
        test::fill(mem(), kRingGpa, zero);
        cfg_ = config(size);
        ring_.emplace(mem(), cfg_);
        auto ok = q_.activate(mem(), cfg_, f);
        ASSERT_TRUE(ok) << to_string(ok.error());
    }
    std::expected<bool, QueueError> pop() { return q_.pop(mem(), chain_); }

    // The queue refuses the ring with exactly `e` and stays stopped.
    void expect_hostile(QueueError e) {
        const std::uint16_t before = q_.next_avail();
        auto r = pop();
        ASSERT_FALSE(r.has_value());
        EXPECT_EQ(r.error(), e) << to_string(r.error());
        EXPECT_TRUE(q_.broken());
        EXPECT_EQ(q_.next_avail(), before);
        auto again = pop();
        ASSERT_FALSE(again.has_value());
        EXPECT_EQ(again.error(), QueueError::kBroken);
    }
    // A one-descriptor chain at `head`, made available.
    void offer(std::uint16_t head, std::uint64_t addr = kDataGpa, std::uint32_t len = 8,
               std::uint16_t flags = 0) {
        ring_->desc(head, addr, len, flags);
        ring_->make_available(head);
    }
    void pop_push(std::uint32_t len) {
        auto r = pop();
        ASSERT_TRUE(r.has_value() && *r);
        q_.push(chain_.token(), len);
    }

    test::GuardedMemory guarded_;
    QueueConfig cfg_;
    std::optional<SplitRing> ring_;
    SplitQueue q_;
    DescriptorChain chain_;
};

TEST_F(SplitQueueTest, TestMemoryHasGuardPages) {
    // Not a queue property: documents that out-of-region accesses in these tests would fault.
    const volatile std::uint8_t* start = mem().translate(kRingGpa, kPage);
    EXPECT_DEATH((void)start[kPage], "");
    EXPECT_DEATH((void)start[-1], "");
}

// --- basic operation ----------------------------------------------------------------------

TEST_F(SplitQueueTest, EmptyRingPopsNothing) {
    start(8);
    auto r = pop();
    ASSERT_TRUE(r.has_value());
    EXPECT_FALSE(*r);
}

TEST_F(SplitQueueTest, RoundTrip) {
    start(8);
    const auto request = test::pattern(24, 1);
    test::fill(mem(), kDataGpa, request);
    ring_->desc(5, kDataGpa, 24, kDescFNext, 2);
    ring_->desc(2, kDataGpa + 0x100, 64, kDescFWrite);
    ring_->make_available(5);

    auto r = pop();
    ASSERT_TRUE(r.has_value() && *r);
    EXPECT_EQ(chain_.id(), 5);
    EXPECT_EQ(chain_.readable_bytes(), 24u);
    EXPECT_EQ(chain_.writable_bytes(), 64u);
    std::vector<std::uint8_t> got(24);
    ChainReader reader(chain_.readable());
    ASSERT_TRUE(reader.read(got));
    EXPECT_EQ(got, request);
    ChainWriter writer(chain_.writable());
    const auto reply = test::pattern(7, 3);
    ASSERT_TRUE(writer.write(reply));
    EXPECT_FALSE(pop().value());

    q_.push(chain_.token(), static_cast<std::uint32_t>(writer.written()));
    EXPECT_EQ(ring_->used_idx(), 0);  // invisible before publish
    EXPECT_TRUE(q_.publish());
    EXPECT_EQ(ring_->used_idx(), 1);
    EXPECT_EQ(ring_->used(0).id.get(), 5u);
    EXPECT_EQ(ring_->used(0).len.get(), 7u);
    EXPECT_EQ(test::bytes_at(mem(), kDataGpa + 0x100, 7), reply);
    EXPECT_FALSE(q_.publish());  // nothing new
}

TEST_F(SplitQueueTest, IndicesRunFreePast65535) {
    start(8);
    // Resume just below the 16-bit wrap, as after a long uptime.
    QueueState s = q_.save();
    s.next_avail = s.next_used = 65530;
    ASSERT_TRUE(q_.restore(mem(), s));
    ring_->set_avail_idx(65530);
    for (std::uint32_t i = 0; i < 20; ++i) {
        const auto head = static_cast<std::uint16_t>(i % 8);
        offer(head, kDataGpa + 16ull * head, 16);
        auto r = pop();
        ASSERT_TRUE(r.has_value() && *r) << i;
        ASSERT_EQ(chain_.id(), head);
        q_.push(chain_.token(), i);
        q_.publish();
        const auto used = static_cast<std::uint16_t>(65531 + i);
        ASSERT_EQ(ring_->used_idx(), used);
        ASSERT_EQ(ring_->used(static_cast<std::uint16_t>(used - 1)).len.get(), i);
    }
    EXPECT_EQ(q_.next_avail(), 14);  // 65530 + 20 mod 2^16
    EXPECT_EQ(q_.save().next_used, 14);
}

TEST_F(SplitQueueTest, ManyRoundTripsAcrossTheWrap) {
    start(4);
    // Several batches at a time, well past 65535.
    for (std::uint32_t i = 0; i < 70000; i += 3) {
        for (std::uint16_t k = 0; k < 3; ++k) {
            offer(k);
        }
        for (int k = 0; k < 3; ++k) {
            pop_push(1);
        }
        q_.publish();
    }
    EXPECT_EQ(ring_->used_idx(), static_cast<std::uint16_t>(70002));
    EXPECT_FALSE(q_.broken());
}

TEST_F(SplitQueueTest, IndirectChain) {
    start(8);
    const std::uint64_t table = kDataGpa + 0x408;  // only 8-aligned: allowed
    SplitDesc t[3] = {
        {le64::of(kDataGpa), le32::of(16), le16::of(kDescFNext), le16::of(2)},
        {le64::of(kDataGpa + 0x100), le32::of(32), le16::of(kDescFWrite), le16::of(0)},
        {le64::of(kDataGpa + 0x20), le32::of(8), le16::of(kDescFNext), le16::of(1)}};
    ASSERT_TRUE(mem().write(table, t, sizeof t));
    offer(3, table, sizeof t, kDescFIndirect);
    auto r = pop();
    ASSERT_TRUE(r.has_value() && *r);
    EXPECT_EQ(chain_.id(), 3);
    EXPECT_EQ(chain_.readable().size(), 2u);  // entries 0 then 2
    EXPECT_EQ(chain_.readable()[1].iov_base, mem().translate(kDataGpa + 0x20, 8));
    EXPECT_EQ(chain_.writable_bytes(), 32u);
}

TEST_F(SplitQueueTest, ChainThroughWholeTableIsAccepted) {
    start(8);
    for (std::uint16_t i = 0; i < 8; ++i) {
        ring_->desc(i, kDataGpa + 8ull * i, 8, i < 7 ? kDescFNext : 0, i + 1);
    }
    ring_->make_available(0);
    auto r = pop();
    ASSERT_TRUE(r.has_value() && *r);
    EXPECT_EQ(chain_.readable().size(), 8u);
}

TEST_F(SplitQueueTest, BufferSpanningAdjacentRegionsIsTwoSegments) {
    start(8);
    const auto data = test::pattern(64, 5);
    test::fill(mem(), kData2Gpa - 40, data);
    offer(0, kData2Gpa - 40, 64);
    auto r = pop();
    ASSERT_TRUE(r.has_value() && *r);
    ASSERT_EQ(chain_.readable().size(), 2u);
    EXPECT_EQ(chain_.readable()[0].iov_len, 40u);
    EXPECT_EQ(chain_.readable()[1].iov_len, 24u);
    std::vector<std::uint8_t> got(64);
    ChainReader reader(chain_.readable());
    ASSERT_TRUE(reader.read(got));
    EXPECT_EQ(got, data);
}

// --- notification suppression (§2.7.7, §2.7.10) --------------------------------------------

TEST_F(SplitQueueTest, NoInterruptFlagSuppresses) {
    start(8);
    offer(0);
    pop_push(0);
    EXPECT_TRUE(q_.publish());
    ring_->set_avail_flags(kAvailFNoInterrupt);
    offer(1);
    pop_push(0);
    EXPECT_FALSE(q_.publish());
    EXPECT_EQ(ring_->used_idx(), 2);  // published all the same
    ring_->set_avail_flags(0);
    offer(2);
    pop_push(0);
    EXPECT_TRUE(q_.publish());
}

TEST_F(SplitQueueTest, EventIdxUsedEvent) {
    start(8, kEventIdx);
    ring_->set_used_event(100);  // far away: but the first decision always interrupts
    offer(0);
    pop_push(0);
    EXPECT_TRUE(q_.publish());  // used 0 -> 1
    ring_->set_used_event(2);   // "interrupt me when used idx passes 2", i.e. reaches 3
    offer(1);
    pop_push(0);
    EXPECT_FALSE(q_.publish());  // 1 -> 2
    offer(2);
    offer(3);
    pop_push(0);
    pop_push(0);
    EXPECT_TRUE(q_.publish());  // 2 -> 4 crosses 2
    offer(4);
    pop_push(0);
    EXPECT_FALSE(q_.publish());  // 4 -> 5, event 2 long passed
    ring_->set_used_event(5);
    offer(5);
    pop_push(0);
    EXPECT_TRUE(q_.publish());  // 5 -> 6
}

TEST_F(SplitQueueTest, EventIdxAcrossIndexWrap) {
    start(8, kEventIdx);
    QueueState s = q_.save();
    s.next_avail = s.next_used = 65533;
    ASSERT_TRUE(q_.restore(mem(), s));
    ring_->set_avail_idx(65533);
    offer(0);
    pop_push(0);
    EXPECT_TRUE(q_.publish());  // first decision: 65533 -> 65534
    ring_->set_used_event(65535);
    for (std::uint16_t h = 1; h < 4; ++h) {
        offer(h);
        pop_push(0);
    }
    EXPECT_TRUE(q_.publish());  // 65534 -> 1 crosses 65535
    ring_->set_used_event(0);
    offer(4);
    pop_push(0);
    EXPECT_FALSE(q_.publish());  // 1 -> 2: event 0 already passed
    ring_->set_used_event(65534);
    offer(5);
    pop_push(0);
    EXPECT_FALSE(q_.publish());  // 2 -> 3
    ring_->set_used_event(4);
    offer(6);
    offer(7);
    pop_push(0);
    pop_push(0);
    EXPECT_TRUE(q_.publish());  // 3 -> 5 crosses 4
}

TEST_F(SplitQueueTest, DisableAndEnableWriteUsedFlags) {
    start(8);
    q_.disable_notifications();
    EXPECT_EQ(ring_->used_flags(), kUsedFNoNotify);
    EXPECT_FALSE(q_.enable_notifications());
    EXPECT_EQ(ring_->used_flags(), 0);
}

TEST_F(SplitQueueTest, EnableWithEventIdxWritesAvailEvent) {
    start(8, kEventIdx);
    for (std::uint16_t h = 0; h < 3; ++h) {
        offer(h);
        pop_push(0);
    }
    q_.disable_notifications();
    EXPECT_EQ(ring_->used_flags(), 0);  // flags are not used with EVENT_IDX
    EXPECT_FALSE(q_.enable_notifications());
    EXPECT_EQ(ring_->avail_event(), 3);  // kick me when entry 3 is made available
}

TEST_F(SplitQueueTest, EnableReportsBufferMadeAvailableMeanwhile) {
    for (QueueFeatures f : {kPlain, kEventIdx}) {
        start(8, f);
        q_.disable_notifications();
        offer(0);  // the driver saw notifications off and did not kick
        EXPECT_TRUE(q_.enable_notifications());
        ASSERT_TRUE(pop().value());
        EXPECT_FALSE(q_.enable_notifications());
    }
}

// --- save / restore -----------------------------------------------------------------------

TEST_F(SplitQueueTest, SaveRestoreResumesAtSamePosition) {
    start(8);
    for (std::uint16_t h = 0; h < 5; ++h) {
        offer(h);
    }
    pop_push(0);
    pop_push(0);
    pop_push(0);
    q_.publish();
    ASSERT_TRUE(pop().value());  // head 3 in flight, not used
    const UsedToken in_flight = chain_.token();
    const QueueState state = q_.save();
    EXPECT_EQ(state.next_avail, 4);
    EXPECT_EQ(state.next_used, 3);

    SplitQueue restored;
    ASSERT_TRUE(restored.restore(mem(), state));
    DescriptorChain c;
    ASSERT_TRUE(restored.pop(mem(), c).value());
    EXPECT_EQ(c.id(), 4);
    EXPECT_FALSE(restored.pop(mem(), c).value());
    restored.push(in_flight, 1);
    restored.push(c.token(), 2);
    restored.publish();
    EXPECT_EQ(ring_->used_idx(), 5);
    EXPECT_EQ(ring_->used(3).id.get(), 3u);
    EXPECT_EQ(ring_->used(4).id.get(), 4u);
}

// --- activation ---------------------------------------------------------------------------

TEST_F(SplitQueueTest, ActivateChecksSize) {
    SplitQueue q;
    EXPECT_EQ(q.activate(mem(), config(0), kPlain).error(), QueueError::kBadSize);
    EXPECT_TRUE(q.broken());
    EXPECT_EQ(q.activate(mem(), config(6), kPlain).error(), QueueError::kBadSize);
    QueueConfig c = config(8);
    c.size = 0xffff;
    EXPECT_EQ(q.activate(mem(), c, kPlain).error(), QueueError::kBadSize);
    EXPECT_TRUE(q.activate(mem(), config(1), kPlain).has_value());
    EXPECT_TRUE(q.activate(mem(), config(128), kPlain).has_value());
    EXPECT_FALSE(q.broken());
}

TEST_F(SplitQueueTest, ActivateChecksAlignment) {
    SplitQueue q;
    QueueConfig c = config(8);
    c.desc_addr += 8;
    EXPECT_EQ(q.activate(mem(), c, kPlain).error(), QueueError::kBadAlignment);
    c = config(8);
    c.driver_addr -= 1;
    EXPECT_EQ(q.activate(mem(), c, kPlain).error(), QueueError::kBadAlignment);
    c = config(8);
    c.device_addr += 2;
    EXPECT_EQ(q.activate(mem(), c, kPlain).error(), QueueError::kBadAlignment);
    c = config(8);
    c.driver_addr -= 2;  // 2 is enough for the available ring
    c.device_addr += 4;  // 4 for the used ring
    EXPECT_TRUE(q.activate(mem(), c, kPlain).has_value());
}

TEST_F(SplitQueueTest, ActivateRejectsRingsOutsideMemory) {
    SplitQueue q;
    QueueConfig c = config(8);
    c.desc_addr = kHoleGpa;
    EXPECT_EQ(q.activate(mem(), c, kPlain).error(), QueueError::kRingOutsideMemory);
    c = config(8);
    c.driver_addr += 2;  // used_event one past the region's end
    EXPECT_EQ(q.activate(mem(), c, kPlain).error(), QueueError::kRingOutsideMemory);
    c = config(8);
    c.device_addr = kRingGpa + kPage - split_used_bytes(8) + 2;  // 4-aligned, 2 bytes over
    EXPECT_EQ(q.activate(mem(), c, kPlain).error(), QueueError::kRingOutsideMemory);
}

TEST_F(SplitQueueTest, ActivateRejectsRingCrossingRegionBoundary) {
    SplitQueue q;
    QueueConfig c = config(8);
    c.desc_addr = kData2Gpa - 64;
    EXPECT_EQ(q.activate(mem(), c, kPlain).error(), QueueError::kRingOutsideMemory);
    c = config(8);
    c.device_addr = kData2Gpa - 32;
    EXPECT_EQ(q.activate(mem(), c, kPlain).error(), QueueError::kRingOutsideMemory);
}

TEST_F(SplitQueueTest, FailedActivationLeavesAQueueThatIgnoresWork) {
    // Regression: push() on a Virtqueue whose activation failed dereferenced a null used ring.
    Virtqueue vq;
    ASSERT_FALSE(vq.activate(mem(), config(6), kPlain).has_value());
    EXPECT_FALSE(vq.ready());
    EXPECT_EQ(vq.pop(mem(), chain_).error(), QueueError::kNotReady);
    vq.push(UsedToken{0, 1}, 8);
    EXPECT_FALSE(vq.publish());
    EXPECT_FALSE(vq.enable_notifications());
}

// --- hostile rings ------------------------------------------------------------------------

TEST_F(SplitQueueTest, HostileHeadOutOfRange) {
    start(8);
    ring_->make_available(8);
    expect_hostile(QueueError::kHeadOutOfRange);
}

TEST_F(SplitQueueTest, HostileNextOutOfRange) {
    start(8);
    ring_->desc(0, kDataGpa, 8, kDescFNext, 8);
    ring_->make_available(0);
    expect_hostile(QueueError::kNextOutOfRange);
}

TEST_F(SplitQueueTest, HostileLoop) {
    start(8);
    ring_->desc(0, kDataGpa, 8, kDescFNext, 1);
    ring_->desc(1, kDataGpa, 8, kDescFNext, 0);
    ring_->make_available(0);
    expect_hostile(QueueError::kChainTooLong);
}

TEST_F(SplitQueueTest, HostileChainLongerThanQueueSize) {
    // Every descriptor once and then back to the start: one more than the table holds.
    start(8);
    for (std::uint16_t i = 0; i < 8; ++i) {
        ring_->desc(i, kDataGpa, 8, kDescFNext, (i + 1) % 8);
    }
    ring_->make_available(3);
    expect_hostile(QueueError::kChainTooLong);
}

TEST_F(SplitQueueTest, HostileSelfLoop) {
    start(8);
    ring_->desc(2, kDataGpa, 0, kDescFNext, 2);  // zero-length: no memory work to slow it
    ring_->make_available(2);
    expect_hostile(QueueError::kChainTooLong);
}

// Writes an indirect table of `n` entries at `table`, entry i -> (addr, len, flags, next).
void write_table(const GuestMemory& mem, std::uint64_t table, std::span<const SplitDesc> t) {
    ASSERT_TRUE(mem.write(table, t.data(), t.size_bytes()));
}
SplitDesc sd(std::uint64_t addr, std::uint32_t len, std::uint16_t flags = 0,
             std::uint16_t next = 0) {
    return SplitDesc{le64::of(addr), le32::of(len), le16::of(flags), le16::of(next)};
}

TEST_F(SplitQueueTest, HostileNestedIndirect) {
    start(8);
    const std::uint64_t table = kDataGpa + 0x400;
    write_table(mem(), table,
                std::array{sd(kDataGpa, 8, kDescFNext, 1), sd(table, 32, kDescFIndirect)});
    offer(0, table, 32, kDescFIndirect);
    expect_hostile(QueueError::kNestedIndirect);
}

TEST_F(SplitQueueTest, HostileIndirectWithNext) {
    start(8);
    write_table(mem(), kDataGpa + 0x400, std::array{sd(kDataGpa, 8)});
    ring_->desc(0, kDataGpa + 0x400, 16, kDescFIndirect | kDescFNext, 1);
    ring_->desc(1, kDataGpa, 8);
    ring_->make_available(0);
    expect_hostile(QueueError::kIndirectWithNext);
}

TEST_F(SplitQueueTest, HostileIndirectLengthNotMultipleOf16) {
    start(8);
    offer(0, kDataGpa + 0x400, 40, kDescFIndirect);
    expect_hostile(QueueError::kIndirectBadLength);
}

TEST_F(SplitQueueTest, HostileIndirectLengthZero) {
    start(8);
    offer(0, kDataGpa + 0x400, 0, kDescFIndirect);
    expect_hostile(QueueError::kIndirectBadLength);
}

TEST_F(SplitQueueTest, HostileIndirectTooLarge) {
    start(8);
    offer(0, kDataGpa, 16 * (kMaxIndirectDescs + 1), kDescFIndirect);
    expect_hostile(QueueError::kIndirectTooLarge);
}

TEST_F(SplitQueueTest, HostileIndirectNotNegotiated) {
    start(8, QueueFeatures{.packed = false, .event_idx = false, .indirect = false});
    write_table(mem(), kDataGpa + 0x400, std::array{sd(kDataGpa, 8)});
    offer(0, kDataGpa + 0x400, 16, kDescFIndirect);
    expect_hostile(QueueError::kIndirectNotNegotiated);
}

TEST_F(SplitQueueTest, HostileIndirectTableOutsideMemory) {
    start(8);
    offer(0, kHoleGpa, 32, kDescFIndirect);
    expect_hostile(QueueError::kBadAddress);
}

TEST_F(SplitQueueTest, HostileIndirectTableCrossingRegions) {
    start(8);
    offer(0, kData2Gpa - 16, 32, kDescFIndirect);
    expect_hostile(QueueError::kBadAddress);
}

TEST_F(SplitQueueTest, HostileNextOutOfRangeInIndirect) {
    start(8);
    write_table(mem(), kDataGpa + 0x400,
                std::array{sd(kDataGpa, 8, kDescFNext, 1), sd(kDataGpa, 8, kDescFNext, 2)});
    offer(0, kDataGpa + 0x400, 32, kDescFIndirect);
    expect_hostile(QueueError::kNextOutOfRange);
}

TEST_F(SplitQueueTest, HostileLoopInIndirect) {
    start(8);
    write_table(mem(), kDataGpa + 0x400,
                std::array{sd(kDataGpa, 8, kDescFNext, 1), sd(kDataGpa, 8, kDescFNext, 0)});
    offer(0, kDataGpa + 0x400, 32, kDescFIndirect);
    expect_hostile(QueueError::kChainTooLong);
}

TEST_F(SplitQueueTest, HostileTotalLengthOverflow) {
    start(8);
    ring_->desc(0, kDataGpa, 16, kDescFNext, 1);
    ring_->desc(1, kDataGpa, 0xffffffff);
    ring_->make_available(0);
    expect_hostile(QueueError::kLengthOverflow);
}

TEST_F(SplitQueueTest, HostileBufferOutsideMemory) {
    start(8);
    offer(0, kHoleGpa, 8);
    expect_hostile(QueueError::kBadAddress);
}

TEST_F(SplitQueueTest, HostileBufferPartiallyOutsideMemory) {
    start(8);
    const std::uint64_t end = kData2Gpa + test::kData2Size;
    offer(0, end - 64, 65, kDescFWrite);
    expect_hostile(QueueError::kBadAddress);
}

TEST_F(SplitQueueTest, HostileBufferAddressWrapsAround) {
    start(8);
    offer(0, UINT64_MAX - 3, 8);
    expect_hostile(QueueError::kBadAddress);
}

TEST_F(SplitQueueTest, HostileReadableAfterWritable) {
    start(8);
    ring_->desc(0, kDataGpa, 8, kDescFWrite | kDescFNext, 1);
    ring_->desc(1, kDataGpa + 8, 8);
    ring_->make_available(0);
    expect_hostile(QueueError::kReadableAfterWritable);
}

TEST_F(SplitQueueTest, HostileAvailIndexJump) {
    start(8);
    offer(0);
    ASSERT_TRUE(pop().value());
    ring_->set_avail_idx(1 + 9);  // nine new entries in an eight-entry ring
    expect_hostile(QueueError::kAvailIndexJump);
}

TEST_F(SplitQueueTest, AvailIndexExactlyOneRingAheadIsAccepted) {
    start(8);
    for (std::uint16_t h = 0; h < 8; ++h) {
        offer(h);
    }
    for (int i = 0; i < 8; ++i) {
        ASSERT_TRUE(pop().value());
    }
    EXPECT_FALSE(pop().value());
}

}  // namespace
}  // namespace vireo::virtq
