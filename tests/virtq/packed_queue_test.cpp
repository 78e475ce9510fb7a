// Device side of the packed ring (§2.8): round trips, wrap counters, out-of-order completion,
// batching, event suppression, save/restore, activation checks, and hostile rings.
#include "virtq/packed_queue.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <optional>
#include <vector>

#include "ring_builder.hpp"
#include "virtq/split_queue.hpp"
#include "virtq/virtqueue.hpp"

namespace vireo::virtq {
namespace {

using test::Buf;
using test::kData2Gpa;
using test::kDataGpa;
using test::kDataSize;
using test::kHoleGpa;
using test::kPage;
using test::kRingGpa;
using test::PackedRing;
using test::RawDesc;

constexpr QueueFeatures kPlain{.packed = true, .event_idx = false, .indirect = true};
constexpr QueueFeatures kEventIdx{.packed = true, .event_idx = true, .indirect = true};
constexpr std::uint16_t kWrapBit = 1u << 15;

class PackedQueueTest : public ::testing::Test {
  protected:
    void SetUp() override { test::add_test_regions(guarded_); }

    const GuestMemory& mem() const { return guarded_.mem(); }

    // Event areas at the start of the ring page, the descriptor ring flush against its end.
    static QueueConfig config(std::uint16_t size) {
        return QueueConfig{size, kRingGpa + kPage - 16ull * size, kRingGpa, kRingGpa + 4};
    }
    void start(std::uint16_t size, QueueFeatures f = kPlain) {
        // A zeroed ring page, as a freshly reset driver would provide (§2.8.13).
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
        EXPECT_EQ(q_.next_avail(), before);  // nothing consumed
        auto again = pop();
        ASSERT_FALSE(again.has_value());
        EXPECT_EQ(again.error(), QueueError::kBroken);
    }

    // Pops one chain, completes it with `len` and publishes.
    UsedToken pop_push(std::uint32_t len) {
        auto r = pop();
        EXPECT_TRUE(r.has_value() && *r);
        q_.push(chain_.token(), len);
        q_.publish();
        return chain_.token();
    }

    test::GuardedMemory guarded_;
    QueueConfig cfg_;
    std::optional<PackedRing> ring_;
    PackedQueue q_;
    DescriptorChain chain_;
};

TEST_F(PackedQueueTest, TestMemoryHasGuardPages) {
    // Not a queue property: documents that out-of-region accesses in these tests would fault.
    const volatile std::uint8_t* end = mem().translate(kRingGpa, kPage) + kPage;
    const volatile std::uint8_t* start = mem().translate(kRingGpa, kPage);
    EXPECT_DEATH((void)end[0], "");
    EXPECT_DEATH((void)start[-1], "");
}

// --- basic operation ----------------------------------------------------------------------

TEST_F(PackedQueueTest, EmptyRingPopsNothing) {
    start(8);
    auto r = pop();
    ASSERT_TRUE(r.has_value());
    EXPECT_FALSE(*r);
    EXPECT_FALSE(q_.broken());
}

TEST_F(PackedQueueTest, RoundTrip) {
    start(8);
    const auto request = test::pattern(24, 1);
    test::fill(mem(), kDataGpa, request);
    const std::array bufs{Buf{kDataGpa, 24, false}, Buf{kDataGpa + 0x100, 64, true}};
    ring_->add_chain(bufs, 0x1234);

    auto r = pop();
    ASSERT_TRUE(r.has_value() && *r);
    EXPECT_EQ(chain_.id(), 0x1234);
    EXPECT_EQ(chain_.token().descs, 2);
    EXPECT_EQ(chain_.readable_bytes(), 24u);
    EXPECT_EQ(chain_.writable_bytes(), 64u);
    ASSERT_EQ(chain_.readable().size(), 1u);
    ASSERT_EQ(chain_.writable().size(), 1u);

    std::vector<std::uint8_t> got(24);
    ChainReader reader(chain_.readable());
    ASSERT_TRUE(reader.read(got));
    EXPECT_EQ(got, request);
    ChainWriter writer(chain_.writable());
    const auto reply = test::pattern(5, 9);
    ASSERT_TRUE(writer.write(reply));

    // Nothing more available.
    auto none = pop();
    ASSERT_TRUE(none.has_value());
    EXPECT_FALSE(*none);

    q_.push(chain_.token(), static_cast<std::uint32_t>(writer.written()));
    EXPECT_FALSE(ring_->poll_used().has_value());  // invisible before publish
    EXPECT_TRUE(q_.publish());                     // driver event area zero: ENABLE
    auto used = ring_->poll_used();
    ASSERT_TRUE(used.has_value());
    EXPECT_EQ(used->id, 0x1234);
    EXPECT_EQ(used->len, 5u);
    EXPECT_EQ(used->flags, kPackedDescFAvail | kPackedDescFUsed | kDescFWrite);
    EXPECT_EQ(test::bytes_at(mem(), kDataGpa + 0x100, 5), reply);
    EXPECT_FALSE(q_.publish());  // nothing new to publish
}

TEST_F(PackedQueueTest, UsedWithoutDataHasNoWriteFlag) {
    start(8);
    const std::array bufs{Buf{kDataGpa, 16, false}};
    ring_->add_chain(bufs, 3);
    pop_push(0);
    auto used = ring_->poll_used();
    ASSERT_TRUE(used.has_value());
    EXPECT_EQ(used->flags & kDescFWrite, 0);
    EXPECT_EQ(used->len, 0u);
}

TEST_F(PackedQueueTest, ChainWrapsAroundRingEnd) {
    start(4);
    const std::array three{Buf{kDataGpa, 8}, Buf{kDataGpa + 8, 8}, Buf{kDataGpa + 16, 8, true}};
    ring_->add_chain(three, 1);
    pop_push(0);
    ASSERT_TRUE(ring_->poll_used().has_value());
    // Slots 3, 0, 1: the chain crosses the ring end, where the driver's wrap counter flips.
    const std::array wrapping{Buf{kDataGpa + 0x100, 4}, Buf{kDataGpa + 0x200, 4},
                              Buf{kDataGpa + 0x300, 4, true}};
    EXPECT_EQ(ring_->add_chain(wrapping, 2), 3);
    auto r = pop();
    ASSERT_TRUE(r.has_value() && *r);
    EXPECT_EQ(chain_.id(), 2);
    EXPECT_EQ(chain_.token().descs, 3);
    ASSERT_EQ(chain_.readable().size(), 2u);
    EXPECT_EQ(chain_.readable()[0].iov_base, mem().translate(kDataGpa + 0x100, 4));
    EXPECT_EQ(chain_.readable()[1].iov_base, mem().translate(kDataGpa + 0x200, 4));
    EXPECT_EQ(chain_.writable()[0].iov_base, mem().translate(kDataGpa + 0x300, 4));
    EXPECT_EQ(q_.next_avail(), 2);  // slot 2, avail wrap counter now 0
    q_.push(chain_.token(), 4);
    q_.publish();
    auto used = ring_->poll_used();
    ASSERT_TRUE(used.has_value());
    EXPECT_EQ(used->id, 2);
    EXPECT_EQ(ring_->desc_flags(3), kPackedDescFAvail | kPackedDescFUsed | kDescFWrite);
}

TEST_F(PackedQueueTest, WrapCountersToggleManyTimes) {
    // An odd size, chains of 1..3 descriptors: chain boundaries fall at every position
    // relative to the ring end, over hundreds of wraps.
    constexpr std::uint16_t kSize = 5;
    start(kSize);
    std::uint32_t slots = 0;
    for (std::uint16_t i = 0; i < 2000; ++i) {
        const std::uint16_t n = 1 + i % 3;
        std::vector<Buf> bufs;
        for (std::uint16_t k = 0; k < n; ++k) {
            bufs.push_back({kDataGpa + 64ull * k, 16, n > 1 && k == n - 1});
        }
        test::fill(mem(), kDataGpa, test::pattern(16, static_cast<std::uint8_t>(i)));
        ring_->add_chain(bufs, i);
        auto r = pop();
        ASSERT_TRUE(r.has_value() && *r) << "chain " << i;
        ASSERT_EQ(chain_.id(), i);
        ASSERT_EQ(chain_.token().descs, n);
        std::vector<std::uint8_t> got(16);
        ChainReader reader(chain_.readable());
        ASSERT_TRUE(reader.read(got));
        ASSERT_EQ(got, test::pattern(16, static_cast<std::uint8_t>(i)));
        q_.push(chain_.token(), i);
        q_.publish();
        auto used = ring_->poll_used();
        ASSERT_TRUE(used.has_value()) << "chain " << i;
        ASSERT_EQ(used->id, i);
        ASSERT_EQ(used->len, i);
        slots += n;
    }
    const bool wrap = (slots / kSize) % 2 == 0;  // starts at 1, flips once per lap
    EXPECT_EQ(q_.next_avail(), (slots % kSize) | (wrap ? kWrapBit : 0));
    EXPECT_EQ(q_.save().next_used, q_.next_avail());
    EXPECT_EQ(ring_->used_wrap(), wrap);
}

TEST_F(PackedQueueTest, OutOfOrderCompletion) {
    start(8);
    const std::array a{Buf{kDataGpa, 8}, Buf{kDataGpa + 8, 8, true}};
    const std::array b{Buf{kDataGpa + 16, 8, true}};
    const std::array c{Buf{kDataGpa + 32, 8}, Buf{kDataGpa + 40, 8}, Buf{kDataGpa + 48, 8, true}};
    ring_->add_chain(a, 10);  // slots 0-1
    ring_->add_chain(b, 11);  // slot 2
    ring_->add_chain(c, 12);  // slots 3-5
    std::vector<UsedToken> tokens;
    for (int i = 0; i < 3; ++i) {
        auto r = pop();
        ASSERT_TRUE(r.has_value() && *r);
        tokens.push_back(chain_.token());
    }
    // Complete c, then a, then b: used descriptors go to slots 0, 3, 5 in completion order,
    // each followed by a skip of its chain's slot count.
    q_.push(tokens[2], 3);
    q_.push(tokens[0], 1);
    q_.publish();
    auto u1 = ring_->poll_used();
    auto u2 = ring_->poll_used();
    ASSERT_TRUE(u1 && u2);
    EXPECT_EQ(u1->id, 12);
    EXPECT_EQ(u1->len, 3u);
    EXPECT_EQ(u2->id, 10);
    EXPECT_EQ(u2->len, 1u);
    EXPECT_FALSE(ring_->poll_used().has_value());
    q_.push(tokens[1], 2);
    q_.publish();
    auto u3 = ring_->poll_used();
    ASSERT_TRUE(u3);
    EXPECT_EQ(u3->id, 11);
    EXPECT_EQ(ring_->used_slot(), 6);
    // The ring slots themselves: the used descriptors sit where the device wrote them.
    const std::uint16_t used = kPackedDescFAvail | kPackedDescFUsed | kDescFWrite;
    EXPECT_EQ(ring_->desc_flags(0), used);
    EXPECT_EQ(ring_->desc_flags(3), used);
    EXPECT_EQ(ring_->desc_flags(5), used);
}

TEST_F(PackedQueueTest, BatchBecomesVisibleOnlyAtPublish) {
    start(8);
    for (std::uint16_t id = 0; id < 3; ++id) {
        const std::array bufs{Buf{kDataGpa + 64ull * id, 8, true}};
        ring_->add_chain(bufs, id);
    }
    for (int i = 0; i < 3; ++i) {
        auto r = pop();
        ASSERT_TRUE(r.has_value() && *r);
        q_.push(chain_.token(), 8);
    }
    // The first slot of the batch still reads as available, so the driver, which polls in
    // ring order, sees none of the batch.
    EXPECT_EQ(ring_->desc_flags(0), PackedRing::avail_bits(true) | kDescFWrite);
    EXPECT_FALSE(ring_->poll_used().has_value());
    EXPECT_TRUE(q_.publish());
    for (std::uint16_t id = 0; id < 3; ++id) {
        auto u = ring_->poll_used();
        ASSERT_TRUE(u.has_value());
        EXPECT_EQ(u->id, id);
    }
}

TEST_F(PackedQueueTest, IndirectChain) {
    start(8);
    const auto request = test::pattern(40, 3);
    test::fill(mem(), kDataGpa + 0x100, request);
    const std::array bufs{Buf{kDataGpa + 0x100, 16}, Buf{kDataGpa + 0x110, 24},
                          Buf{kDataGpa + 0x200, 100, true}};
    ring_->add_indirect(kDataGpa + 8, bufs, 77);  // table only 8-aligned: allowed
    auto r = pop();
    ASSERT_TRUE(r.has_value() && *r);
    EXPECT_EQ(chain_.id(), 77);
    EXPECT_EQ(chain_.token().descs, 1);
    EXPECT_EQ(chain_.readable().size(), 2u);
    EXPECT_EQ(chain_.readable_bytes(), 40u);
    EXPECT_EQ(chain_.writable_bytes(), 100u);
    std::vector<std::uint8_t> got(40);
    ChainReader reader(chain_.readable());
    ASSERT_TRUE(reader.read(got));
    EXPECT_EQ(got, request);
    q_.push(chain_.token(), 100);
    q_.publish();
    auto u = ring_->poll_used();
    ASSERT_TRUE(u.has_value());
    EXPECT_EQ(u->id, 77);
    EXPECT_EQ(ring_->used_slot(), 1);
}

TEST_F(PackedQueueTest, NextFlagInsideIndirectTableIsIgnored) {
    // §2.8.7: only WRITE is valid in an indirect table; entries are used in order regardless.
    start(8);
    const std::array bufs{Buf{kDataGpa, 16}, Buf{kDataGpa + 16, 16}};
    ring_->write_table(kDataGpa + 0x400, bufs, kDescFNext);
    const RawDesc d{kDataGpa + 0x400, 32, kDescFIndirect};
    ring_->add_raw(std::span(&d, 1), 5);
    auto r = pop();
    ASSERT_TRUE(r.has_value() && *r);
    EXPECT_EQ(chain_.readable().size(), 2u);
}

TEST_F(PackedQueueTest, ChainAsLongAsTheRingIsAccepted) {
    start(4);
    const std::array one{Buf{kDataGpa, 8}};
    ring_->add_chain(one, 0);
    pop_push(0);
    ASSERT_TRUE(ring_->poll_used().has_value());
    // Four descriptors from slot 1 round to slot 0: the whole ring.
    const std::array four{Buf{kDataGpa, 8}, Buf{kDataGpa + 8, 8}, Buf{kDataGpa + 16, 8},
                          Buf{kDataGpa + 24, 8}};
    ring_->add_chain(four, 9);
    auto r = pop();
    ASSERT_TRUE(r.has_value() && *r);
    EXPECT_EQ(chain_.token().descs, 4);
    EXPECT_EQ(q_.next_avail(), 1);  // back at slot 1, one lap later
}

TEST_F(PackedQueueTest, BufferSpanningAdjacentRegionsIsTwoSegments) {
    start(8);
    const auto data = test::pattern(64, 5);
    test::fill(mem(), kData2Gpa - 16, data);
    const std::array bufs{Buf{kData2Gpa - 16, 64}};
    ring_->add_chain(bufs, 1);
    auto r = pop();
    ASSERT_TRUE(r.has_value() && *r);
    ASSERT_EQ(chain_.readable().size(), 2u);
    EXPECT_EQ(chain_.readable()[0].iov_len, 16u);
    EXPECT_EQ(chain_.readable()[1].iov_len, 48u);
    std::vector<std::uint8_t> got(64);
    ChainReader reader(chain_.readable());
    ASSERT_TRUE(reader.read(got));
    EXPECT_EQ(got, data);
}

TEST_F(PackedQueueTest, ZeroLengthDescriptorIsNotTranslated) {
    start(8);
    const std::array bufs{Buf{kHoleGpa, 0}, Buf{kDataGpa, 8, true}};
    ring_->add_chain(bufs, 1);
    auto r = pop();
    ASSERT_TRUE(r.has_value() && *r);
    EXPECT_EQ(chain_.readable().size(), 0u);
    EXPECT_EQ(chain_.writable().size(), 1u);
}

TEST_F(PackedQueueTest, WorksThroughVirtqueue) {
    Virtqueue vq;
    const QueueConfig cfg = config(8);
    ASSERT_TRUE(vq.activate(mem(), cfg, kPlain));
    EXPECT_TRUE(vq.packed());
    PackedRing ring(mem(), cfg);
    const std::array bufs{Buf{kDataGpa, 8, true}};
    ring.add_chain(bufs, 42);
    auto r = vq.pop(mem(), chain_);
    ASSERT_TRUE(r.has_value() && *r);
    vq.push(chain_.token(), 8);
    EXPECT_TRUE(vq.publish());
    auto u = ring.poll_used();
    ASSERT_TRUE(u.has_value());
    EXPECT_EQ(u->id, 42);
}

// --- notification suppression (§2.8.10) ----------------------------------------------------

TEST_F(PackedQueueTest, PublishFollowsDriverEventFlags) {
    start(8);
    const std::array bufs{Buf{kDataGpa, 8}};
    const struct {
        std::uint16_t flags;
        bool expect;
    } cases[] = {{kEventFlagsEnable, true},
                 {kEventFlagsDisable, false},
                 {0x3, true},               // reserved: interrupt
                 {kEventFlagsDesc, true}};  // DESC without EVENT_IDX: not valid, interrupt
    for (const auto& c : cases) {
        ring_->set_driver_event(c.flags, 0);
        ring_->add_chain(bufs, 1);
        auto r = pop();
        ASSERT_TRUE(r.has_value() && *r);
        q_.push(chain_.token(), 0);
        EXPECT_EQ(q_.publish(), c.expect) << "flags " << c.flags;
        ASSERT_TRUE(ring_->poll_used().has_value());
    }
}

// Drives a fresh event-idx queue of `size` until its used position is `slot`, having just
// published (so the next decision measures from there), with one chain of `pending` slots
// popped and ready to complete.
class PackedEventIdxTest : public PackedQueueTest {
  protected:
    void prepare(std::uint16_t size, std::uint16_t slot, std::uint16_t pending) {
        start(size, kEventIdx);
        const std::array one{Buf{kDataGpa, 8}};
        // Two laps plus `slot` single-descriptor chains: the used wrap counter is back at 1.
        for (std::uint32_t i = 0; i < 2u * size + slot; ++i) {
            ring_->add_chain(one, 1);
            pop_push(0);
            ASSERT_TRUE(ring_->poll_used().has_value());
        }
        std::vector<Buf> bufs(pending, Buf{kDataGpa, 8});
        ring_->add_chain(bufs, 2);
        auto r = pop();
        ASSERT_TRUE(r.has_value() && *r);
    }
    bool complete_with_event(std::uint16_t off, bool wrap) {
        ring_->set_driver_event(kEventFlagsDesc,
                                static_cast<std::uint16_t>(off | (wrap ? kWrapBit : 0)));
        q_.push(chain_.token(), 0);
        return q_.publish();
    }
};

TEST_F(PackedEventIdxTest, FirstDecisionAlwaysInterrupts) {
    start(8, kEventIdx);
    ring_->set_driver_event(kEventFlagsDesc, 7 | kWrapBit);  // far away
    const std::array one{Buf{kDataGpa, 8}};
    ring_->add_chain(one, 1);
    ASSERT_TRUE(pop().value());
    q_.push(chain_.token(), 0);
    EXPECT_TRUE(q_.publish());  // no earlier decision to measure from
}

TEST_F(PackedEventIdxTest, DescEventWithinOneLap) {
    // Used 2 -> 4 (slots 2 and 3 used) with the wrap counter at 1.
    prepare(8, 2, 2);
    EXPECT_TRUE(complete_with_event(3, true));
    prepare(8, 2, 2);
    EXPECT_TRUE(complete_with_event(2, true));
    prepare(8, 2, 2);
    EXPECT_FALSE(complete_with_event(4, true));  // the next slot: not yet
    prepare(8, 2, 2);
    EXPECT_FALSE(complete_with_event(1, true));  // already passed at the last decision
    prepare(8, 2, 2);
    EXPECT_FALSE(complete_with_event(3, false));  // a slot of the next lap
}

TEST_F(PackedEventIdxTest, DescEventAcrossTheWrap) {
    // Used 6 -> 2 of the next lap (slots 6, 7, 0, 1), the used wrap counter flipping to 0.
    prepare(8, 6, 4);
    EXPECT_TRUE(complete_with_event(7, true));  // previous lap, inside the window
    prepare(8, 6, 4);
    EXPECT_TRUE(complete_with_event(6, true));
    prepare(8, 6, 4);
    EXPECT_TRUE(complete_with_event(1, false));  // current lap, inside the window
    prepare(8, 6, 4);
    EXPECT_TRUE(complete_with_event(0, false));
    prepare(8, 6, 4);
    EXPECT_FALSE(complete_with_event(2, false));  // the next slot
    prepare(8, 6, 4);
    EXPECT_FALSE(complete_with_event(5, true));  // before the window
}

TEST_F(PackedEventIdxTest, DescEventWithOddSizeAndFullLap) {
    // Size 5: a chain of all five slots moves used from 3 round to 3 of the next lap.
    prepare(5, 3, 5);
    EXPECT_TRUE(complete_with_event(2, false));
    prepare(5, 3, 5);
    EXPECT_TRUE(complete_with_event(3, true));
    prepare(5, 3, 5);
    EXPECT_FALSE(complete_with_event(3, false));
}

TEST_F(PackedQueueTest, DisableAndEnableWriteDeviceEventArea) {
    start(8);
    q_.disable_notifications();
    EXPECT_EQ(ring_->device_event().flags.get(), kEventFlagsDisable);
    EXPECT_FALSE(q_.enable_notifications());
    EXPECT_EQ(ring_->device_event().flags.get(), kEventFlagsEnable);
}

TEST_F(PackedQueueTest, EnableWithEventIdxAsksForNextDescriptor) {
    start(4, kEventIdx);
    const std::array one{Buf{kDataGpa, 8}};
    for (int i = 0; i < 5; ++i) {  // one lap and a slot: avail slot 1, wrap 0
        ring_->add_chain(one, 1);
        pop_push(0);
        ASSERT_TRUE(ring_->poll_used().has_value());
    }
    q_.disable_notifications();
    EXPECT_EQ(ring_->device_event().flags.get(), kEventFlagsDisable);
    EXPECT_FALSE(q_.enable_notifications());
    EXPECT_EQ(ring_->device_event().flags.get(), kEventFlagsDesc);
    EXPECT_EQ(ring_->device_event().off_wrap.get(), 1);  // slot 1, wrap counter 0
}

TEST_F(PackedQueueTest, EnableReportsBufferMadeAvailableMeanwhile) {
    for (QueueFeatures f : {kPlain, kEventIdx}) {
        start(8, f);
        q_.disable_notifications();
        const std::array one{Buf{kDataGpa, 8}};
        ring_->add_chain(one, 1);  // the driver saw DISABLE and did not kick
        EXPECT_TRUE(q_.enable_notifications());
        ASSERT_TRUE(pop().value());
        EXPECT_FALSE(q_.enable_notifications());
    }
}

// --- save / restore -----------------------------------------------------------------------

TEST_F(PackedQueueTest, SaveRestoreResumesAtSamePosition) {
    start(4);
    const std::array one{Buf{kDataGpa, 8, true}};
    for (int i = 0; i < 5; ++i) {
        ring_->add_chain(one, 1);
        pop_push(0);
        ASSERT_TRUE(ring_->poll_used().has_value());
    }
    const std::array two{Buf{kDataGpa, 8}, Buf{kDataGpa + 8, 8, true}};
    ring_->add_chain(two, 20);  // slots 1-2
    ring_->add_chain(one, 21);  // slot 3
    ASSERT_TRUE(pop().value());
    const UsedToken first = chain_.token();
    q_.push(first, 8);
    q_.publish();
    const QueueState state = q_.save();
    EXPECT_EQ(state.next_avail, 3);  // wrap counter 0 after the first lap
    EXPECT_EQ(state.next_used, 3);
    EXPECT_EQ(q_.next_avail(), state.next_avail);

    PackedQueue restored;
    ASSERT_TRUE(restored.restore(mem(), state));
    EXPECT_EQ(restored.next_avail(), state.next_avail);
    DescriptorChain c;
    auto r = restored.pop(mem(), c);
    ASSERT_TRUE(r.has_value() && *r);
    EXPECT_EQ(c.id(), 21);
    restored.push(c.token(), 8);
    restored.publish();
    auto u1 = ring_->poll_used();
    auto u2 = ring_->poll_used();
    ASSERT_TRUE(u1 && u2);
    EXPECT_EQ(u1->id, 20);
    EXPECT_EQ(u2->id, 21);
    EXPECT_EQ(restored.save().next_used, kWrapBit | 0);  // wrapped again, counter back to 1
}

TEST_F(PackedQueueTest, RestoreRejectsPositionOutsideRing) {
    QueueState state{config(8), kPlain, 8 | kWrapBit, 0};
    PackedQueue q;
    auto r = q.restore(mem(), state);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error(), QueueError::kHeadOutOfRange);
    state.next_avail = 7;
    state.next_used = 0x7fff;
    EXPECT_FALSE(q.restore(mem(), state).has_value());
    state.next_used = 7;
    EXPECT_TRUE(q.restore(mem(), state).has_value());
    EXPECT_EQ(q.next_avail(), 7);
}

// --- activation ---------------------------------------------------------------------------

TEST_F(PackedQueueTest, ActivateChecksSize) {
    PackedQueue q;
    EXPECT_EQ(q.activate(mem(), config(0), kPlain).error(), QueueError::kBadSize);
    EXPECT_TRUE(q.broken());
    QueueConfig big = config(1);
    big.size = kMaxQueueSize + 1;
    EXPECT_EQ(q.activate(mem(), big, kPlain).error(), QueueError::kBadSize);
    big.size = 0xffff;
    EXPECT_EQ(q.activate(mem(), big, kPlain).error(), QueueError::kBadSize);
    EXPECT_TRUE(q.activate(mem(), config(1), kPlain).has_value());
    EXPECT_TRUE(q.activate(mem(), config(255), kPlain).has_value());  // not a power of two
    EXPECT_FALSE(q.broken());
    // The largest size is valid; here it just does not fit in memory.
    big = QueueConfig{kMaxQueueSize, kDataGpa, kRingGpa, kRingGpa + 4};
    EXPECT_EQ(q.activate(mem(), big, kPlain).error(), QueueError::kRingOutsideMemory);
}

TEST_F(PackedQueueTest, ActivateChecksAlignment) {
    PackedQueue q;
    QueueConfig c = config(8);
    c.desc_addr -= 8;
    EXPECT_EQ(q.activate(mem(), c, kPlain).error(), QueueError::kBadAlignment);
    c = config(8);
    c.driver_addr += 2;
    EXPECT_EQ(q.activate(mem(), c, kPlain).error(), QueueError::kBadAlignment);
    c = config(8);
    c.device_addr += 1;
    EXPECT_EQ(q.activate(mem(), c, kPlain).error(), QueueError::kBadAlignment);
    c = config(8);
    c.desc_addr -= 16;  // 16 is enough
    c.driver_addr += 8;
    EXPECT_TRUE(q.activate(mem(), c, kPlain).has_value());
}

TEST_F(PackedQueueTest, ActivateRejectsRingsOutsideMemory) {
    PackedQueue q;
    QueueConfig c = config(8);
    c.desc_addr = kHoleGpa;
    EXPECT_EQ(q.activate(mem(), c, kPlain).error(), QueueError::kRingOutsideMemory);
    c = config(8);
    c.desc_addr += 16;  // the last descriptor one slot past the region's end
    EXPECT_EQ(q.activate(mem(), c, kPlain).error(), QueueError::kRingOutsideMemory);
    c = config(8);
    c.driver_addr = kHoleGpa;
    EXPECT_EQ(q.activate(mem(), c, kPlain).error(), QueueError::kRingOutsideMemory);
    c = config(8);
    c.device_addr = kRingGpa + kPage;  // just past the end
    EXPECT_EQ(q.activate(mem(), c, kPlain).error(), QueueError::kRingOutsideMemory);
    c = config(8);
    c.device_addr = kRingGpa + kPage - 4;  // flush with the end: fine
    c.desc_addr -= 16;
    EXPECT_TRUE(q.activate(mem(), c, kPlain).has_value());
}

TEST_F(PackedQueueTest, ActivateRejectsRingCrossingRegionBoundary) {
    PackedQueue q;
    QueueConfig c = config(8);
    c.desc_addr = kData2Gpa - 64;  // 4 descriptors in each of two adjacent regions
    EXPECT_EQ(q.activate(mem(), c, kPlain).error(), QueueError::kRingOutsideMemory);
}

TEST_F(PackedQueueTest, UnactivatedQueueRefusesWork) {
    PackedQueue q;
    auto r = q.pop(mem(), chain_);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error(), QueueError::kNotReady);
    q.push(UsedToken{1, 1}, 8);  // ignored, no ring to write
    EXPECT_FALSE(q.publish());
    EXPECT_FALSE(q.enable_notifications());
    ASSERT_FALSE(q.activate(mem(), config(0), kPlain).has_value());
    EXPECT_EQ(q.pop(mem(), chain_).error(), QueueError::kNotReady);
    q.push(UsedToken{1, 1}, 8);
    EXPECT_FALSE(q.publish());
}

TEST_F(PackedQueueTest, PushWithImpossibleSlotCountStopsQueue) {
    start(8);
    q_.push(UsedToken{1, 0}, 8);
    EXPECT_TRUE(q_.broken());
    start(8);
    q_.push(UsedToken{1, 9}, 8);
    EXPECT_TRUE(q_.broken());
    EXPECT_FALSE(q_.publish());
    EXPECT_FALSE(ring_->poll_used().has_value());
}

// --- hostile rings ------------------------------------------------------------------------

TEST_F(PackedQueueTest, HostileChainLongerThanRing) {
    start(4);
    // Every slot says NEXT: the chain would run round the ring forever.
    const std::array d{RawDesc{kDataGpa, 8, kDescFNext}, RawDesc{kDataGpa, 8, kDescFNext},
                       RawDesc{kDataGpa, 8, kDescFNext}, RawDesc{kDataGpa, 8, kDescFNext}};
    ring_->add_raw(d, 1);
    expect_hostile(QueueError::kChainTooLong);
}

TEST_F(PackedQueueTest, HostileChainLoopsBackToItsHead) {
    // From a head in mid-ring, NEXT on every slot: the walk comes round to the head again.
    start(8);
    for (std::uint16_t id = 0; id < 3; ++id) {
        ring_->add_chain(std::array{Buf{kDataGpa, 8}}, id);
        ASSERT_TRUE(pop().value());
    }
    std::vector<RawDesc> d(8, RawDesc{kDataGpa, 0, kDescFNext});
    ring_->add_raw(d, 7);
    expect_hostile(QueueError::kChainTooLong);
}

TEST_F(PackedQueueTest, HostileNestedIndirect) {
    start(8);
    const std::array bufs{Buf{kDataGpa, 8}, Buf{kDataGpa + 0x100, 32}};
    ring_->write_table(kDataGpa + 0x200, bufs);
    ring_->write_table(kDataGpa + 0x210, std::span(bufs).subspan(1), kDescFIndirect);
    const RawDesc d{kDataGpa + 0x200, 32, kDescFIndirect};
    ring_->add_raw(std::span(&d, 1), 1);
    expect_hostile(QueueError::kNestedIndirect);
}

TEST_F(PackedQueueTest, HostileIndirectWithNext) {
    start(8);
    ring_->write_table(kDataGpa + 0x200, std::array{Buf{kDataGpa, 8}});
    const std::array d{RawDesc{kDataGpa + 0x200, 16, kDescFIndirect | kDescFNext},
                       RawDesc{kDataGpa, 8, 0}};
    ring_->add_raw(d, 1);
    expect_hostile(QueueError::kIndirectWithNext);
}

TEST_F(PackedQueueTest, HostileIndirectAfterNext) {
    start(8);
    ring_->write_table(kDataGpa + 0x200, std::array{Buf{kDataGpa, 8}});
    const std::array d{RawDesc{kDataGpa, 8, kDescFNext},
                       RawDesc{kDataGpa + 0x200, 16, kDescFIndirect}};
    ring_->add_raw(d, 1);
    expect_hostile(QueueError::kIndirectWithNext);
}

TEST_F(PackedQueueTest, HostileIndirectLengthNotMultipleOf16) {
    start(8);
    ring_->write_table(kDataGpa + 0x200, std::array{Buf{kDataGpa, 8}, Buf{kDataGpa, 8}});
    const RawDesc d{kDataGpa + 0x200, 24, kDescFIndirect};
    ring_->add_raw(std::span(&d, 1), 1);
    expect_hostile(QueueError::kIndirectBadLength);
}

TEST_F(PackedQueueTest, HostileIndirectLengthZero) {
    start(8);
    const RawDesc d{kDataGpa + 0x200, 0, kDescFIndirect};
    ring_->add_raw(std::span(&d, 1), 1);
    expect_hostile(QueueError::kIndirectBadLength);
}

TEST_F(PackedQueueTest, HostileIndirectTooLarge) {
    start(8);
    const RawDesc d{kDataGpa, 16 * (kMaxIndirectDescs + 1), kDescFIndirect};
    ring_->add_raw(std::span(&d, 1), 1);
    expect_hostile(QueueError::kIndirectTooLarge);
}

TEST_F(PackedQueueTest, HostileIndirectNotNegotiated) {
    start(8, QueueFeatures{.packed = true, .event_idx = false, .indirect = false});
    ring_->write_table(kDataGpa + 0x200, std::array{Buf{kDataGpa, 8}});
    const RawDesc d{kDataGpa + 0x200, 16, kDescFIndirect};
    ring_->add_raw(std::span(&d, 1), 1);
    expect_hostile(QueueError::kIndirectNotNegotiated);
}

TEST_F(PackedQueueTest, HostileIndirectTableOutsideMemory) {
    start(8);
    const RawDesc d{kHoleGpa, 32, kDescFIndirect};
    ring_->add_raw(std::span(&d, 1), 1);
    expect_hostile(QueueError::kBadAddress);
}

TEST_F(PackedQueueTest, HostileIndirectTableCrossingRegions) {
    // The table is read as one array, so it must lie in one region.
    start(8);
    const RawDesc d{kData2Gpa - 16, 32, kDescFIndirect};
    ring_->add_raw(std::span(&d, 1), 1);
    expect_hostile(QueueError::kBadAddress);
}

TEST_F(PackedQueueTest, HostileIndirectTableRunningOffRegionEnd) {
    // The table's last entry would be the 16 bytes after the last region.
    start(8);
    const std::uint64_t end = kData2Gpa + test::kData2Size;
    const RawDesc d{end - 16, 32, kDescFIndirect};
    ring_->add_raw(std::span(&d, 1), 1);
    expect_hostile(QueueError::kBadAddress);
}

TEST_F(PackedQueueTest, HostileTotalLengthOverflow) {
    start(8);
    const std::array d{RawDesc{kDataGpa, 16, kDescFNext}, RawDesc{kDataGpa, 0xffffffff, 0}};
    ring_->add_raw(d, 1);
    expect_hostile(QueueError::kLengthOverflow);
}

TEST_F(PackedQueueTest, HostileTotalLengthOverflowInIndirect) {
    start(8);
    ring_->write_table(kDataGpa + 0x200,
                       std::array{Buf{kDataGpa, 0x1000}, Buf{kDataGpa, 0xfffff001, true}});
    const RawDesc d{kDataGpa + 0x200, 32, kDescFIndirect};
    ring_->add_raw(std::span(&d, 1), 1);
    expect_hostile(QueueError::kLengthOverflow);
}

TEST_F(PackedQueueTest, HostileBufferOutsideMemory) {
    start(8);
    ring_->add_chain(std::array{Buf{kHoleGpa, 8}}, 1);
    expect_hostile(QueueError::kBadAddress);
}

TEST_F(PackedQueueTest, HostileBufferPartiallyOutsideMemory) {
    // Starts in the last data region, ends one byte past it.
    start(8);
    const std::uint64_t end = kData2Gpa + test::kData2Size;
    ring_->add_chain(std::array{Buf{end - 64, 65, true}}, 1);
    expect_hostile(QueueError::kBadAddress);
}

TEST_F(PackedQueueTest, HostileBufferAddressWrapsAround) {
    start(8);
    ring_->add_chain(std::array{Buf{UINT64_MAX - 3, 8}}, 1);
    expect_hostile(QueueError::kBadAddress);
}

TEST_F(PackedQueueTest, HostileReadableAfterWritable) {
    start(8);
    ring_->add_chain(std::array{Buf{kDataGpa, 8, true}, Buf{kDataGpa + 8, 8, false}}, 1);
    expect_hostile(QueueError::kReadableAfterWritable);
}

TEST_F(PackedQueueTest, HostileReadableAfterWritableInIndirect) {
    start(8);
    ring_->add_indirect(kDataGpa + 0x200,
                        std::array{Buf{kDataGpa, 8, true}, Buf{kDataGpa + 8, 8, false}}, 1);
    expect_hostile(QueueError::kReadableAfterWritable);
}

TEST_F(PackedQueueTest, HostileChainAfterGoodOnesStopsOnlyThere) {
    start(8);
    ring_->add_chain(std::array{Buf{kDataGpa, 8}}, 1);
    ring_->add_chain(std::array{Buf{kHoleGpa, 8}}, 2);
    ASSERT_TRUE(pop().value());
    EXPECT_EQ(chain_.id(), 1);
    expect_hostile(QueueError::kBadAddress);
}

TEST_F(PackedQueueTest, HostileSlotsReusedWhileInFlight) {
    start(4);
    const std::array one{Buf{kDataGpa, 8}};
    for (std::uint16_t id = 0; id < 4; ++id) {
        ring_->add_chain(one, id);
        auto r = pop();
        ASSERT_TRUE(r.has_value() && *r);
    }
    // The ring is full of chains the device still holds; a driver that marks a slot available
    // again before it was used would make a fifth descriptor in flight on a four-slot ring.
    ring_->add_chain(one, 4);
    expect_hostile(QueueError::kTooManyInFlight);
}

}  // namespace
}  // namespace vireo::virtq
