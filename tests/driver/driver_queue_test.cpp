// Driver queues, deterministic cases: setup and caller errors, a lying device (bad used ids,
// ids not in flight, used lengths above the writable length, a used idx that jumps), and the
// notification-suppression decisions on both sides (kick_prepare, enable_cb and its race).
#include <gtest/gtest.h>

#include <cstdint>
#include <set>

#include "loopback_env.hpp"
#include "memory/ordering.hpp"

namespace vireo::driver::testing {
namespace {

using virtq::DescriptorChain;

constexpr std::uint16_t kCap = 16;
using Split = SplitDriver<kCap>;
using Packed = PackedDriver<kCap>;

// ---------------------------------------------------------------------------------------------
// A device that lies: writes used entries straight into the rings.

struct RawSplitDevice {
    RawSplitDevice(std::uint8_t* ring, std::uint16_t size) : size(size) {
        const SplitLayout l = split_layout(size);
        used = reinterpret_cast<virtq::SplitUsedHeader*>(ring + l.used);
        elems = reinterpret_cast<virtq::SplitUsedElem*>(used + 1);
        avail = reinterpret_cast<virtq::SplitAvailHeader*>(ring + l.avail);
    }
    void complete(std::uint32_t id, std::uint32_t len) {
        virtq::SplitUsedElem& e = elems[idx & (size - 1)];
        e.id.set(id);
        e.len.set(len);
        store_release(&used->idx, ++idx);
    }
    std::uint16_t used_event() const {  // §2.7.6: after avail ring[size]
        return reinterpret_cast<const le16*>(avail + 1)[size].get();
    }
    std::uint16_t size;
    std::uint16_t idx = 0;
    virtq::SplitUsedHeader* used;
    virtq::SplitUsedElem* elems;
    virtq::SplitAvailHeader* avail;
};

struct RawPackedDevice {
    RawPackedDevice(std::uint8_t* ring, std::uint16_t size) : size(size) {
        const PackedLayout l = packed_layout(size);
        desc = reinterpret_cast<virtq::PackedDesc*>(ring + l.desc);
        driver_event = reinterpret_cast<virtq::PackedEvent*>(ring + l.driver_event);
        device_event = reinterpret_cast<virtq::PackedEvent*>(ring + l.device_event);
    }
    // Writes a used descriptor at the device's used position and skips `slots` (§2.8.7).
    void complete(std::uint16_t id, std::uint32_t len, std::uint16_t slots = 1) {
        virtq::PackedDesc& d = desc[pos];
        d.id.set(id);
        d.len.set(len);
        const std::uint16_t f = wrap ? (virtq::kPackedDescFAvail | virtq::kPackedDescFUsed) : 0;
        store_release(&d.flags, f);
        pos = static_cast<std::uint16_t>(pos + slots);
        if (pos >= size) {
            pos = static_cast<std::uint16_t>(pos - size);
            wrap = !wrap;
        }
    }
    void set_device_event(std::uint16_t flags, std::uint16_t off = 0, bool ev_wrap = true) {
        device_event->off_wrap.set(static_cast<std::uint16_t>(off | (ev_wrap ? 0x8000 : 0)));
        device_event->flags.set(flags);
    }
    std::uint16_t size;
    std::uint16_t pos = 0;
    bool wrap = true;
    virtq::PackedDesc* desc;
    virtq::PackedEvent* driver_event;
    virtq::PackedEvent* device_event;
};

// A driver over shared memory with no device-side queue (the tests play the device by hand).
template <typename Driver>
struct Bare {
    explicit Bare(std::uint16_t size, DriverFeatures f = {}, std::uint16_t per_slot = 0) {
        const std::size_t bytes = DriverTraits<Driver>::ring_bytes(size);
        ring = shm.alloc(bytes);
        IndirectPool pool;
        if (per_slot > 0) {
            pool = {shm.alloc(indirect_pool_bytes(size, per_slot)),
                    indirect_pool_bytes(size, per_slot), per_slot};
        }
        EXPECT_EQ(driver.init(size, f, shm.window, {ring, bytes}, pool), DriverError::kOk);
        buf = shm.alloc(4096);
    }
    Segment seg(std::size_t off, std::uint32_t len) { return {shm.gpa(buf + off), len}; }
    // One readable + one writable segment of 16 bytes each.
    DriverError add(void* token, std::uint32_t writable = 16) {
        const Segment out[] = {seg(0, 16)};
        const Segment in[] = {seg(64, writable)};
        return driver.add_buf(out, in, token);
    }

    SharedMemory shm;
    Driver driver;
    std::uint8_t* ring;
    std::uint8_t* buf;
};

int tokens[64];

// ---------------------------------------------------------------------------------------------
// Setup and caller errors.

TEST(DriverSetup, RejectsBadGeometry) {
    SharedMemory shm;
    Split split;
    Packed packed;
    std::uint8_t* ring = shm.alloc(split_ring_bytes(kCap));
    const RingMemory mem{ring, split_ring_bytes(kCap)};
    EXPECT_EQ(split.init(0, {}, shm.window, mem), DriverError::kBadSize);
    EXPECT_EQ(split.init(6, {}, shm.window, mem), DriverError::kBadSize);  // not a power of 2
    EXPECT_EQ(split.init(2 * kCap, {}, shm.window, mem), DriverError::kBadSize);
    EXPECT_EQ(packed.init(0, {}, shm.window, mem), DriverError::kBadSize);
    EXPECT_EQ(packed.init(kCap + 1, {}, shm.window, mem), DriverError::kBadSize);
    EXPECT_EQ(packed.init(6, {}, shm.window, mem), DriverError::kOk);  // packed: any size
    EXPECT_EQ(split.init(kCap, {}, shm.window, {ring, split_ring_bytes(kCap) - 1}),
              DriverError::kTooSmall);
    EXPECT_EQ(split.init(kCap, {}, shm.window, {ring + 8, split_ring_bytes(kCap)}),
              DriverError::kBadAlignment);
    alignas(16) static std::uint8_t outside[split_ring_bytes(kCap)];
    EXPECT_EQ(split.init(kCap, {}, shm.window, {outside, sizeof outside}),
              DriverError::kOutsideWindow);
    // An indirect pool outside the window is refused too; without the feature it is ignored.
    alignas(16) static std::uint8_t pool[indirect_pool_bytes(kCap, 4)];
    EXPECT_EQ(split.init(kCap, {false, true}, shm.window, mem, {pool, sizeof pool, 4}),
              DriverError::kOutsideWindow);
    EXPECT_EQ(split.init(kCap, {false, false}, shm.window, mem, {pool, sizeof pool, 4}),
              DriverError::kOk);
    // Identity window: device addresses are the pointers themselves.
    EXPECT_EQ(split.init(kCap, {}, DmaWindow::identity(), {outside, sizeof outside}),
              DriverError::kOk);
    EXPECT_EQ(split.config().desc_addr, reinterpret_cast<std::uintptr_t>(outside));
}

TEST(DriverSetup, ConfigIsDeviceAddresses) {
    Bare<Split> b(8);
    const auto cfg = b.driver.config();
    EXPECT_EQ(cfg.size, 8);
    EXPECT_EQ(cfg.desc_addr, b.shm.gpa(b.ring));
    EXPECT_EQ(cfg.driver_addr, b.shm.gpa(b.ring + split_layout(8).avail));
    EXPECT_EQ(cfg.device_addr, b.shm.gpa(b.ring + split_layout(8).used));
    EXPECT_EQ(cfg.device_addr % virtq::kSplitUsedAlign, 0u);
    Bare<Packed> p(5);
    EXPECT_EQ(p.driver.config().driver_addr, p.shm.gpa(p.ring + 16 * 5));
    EXPECT_EQ(p.driver.config().device_addr, p.shm.gpa(p.ring + 16 * 5 + 4));
}

template <typename Driver>
class DriverBoth : public ::testing::Test {};
using DriverTypes = ::testing::Types<Split, Packed>;
TYPED_TEST_SUITE(DriverBoth, DriverTypes);

TYPED_TEST(DriverBoth, CallerErrors) {
    TypeParam uninit;
    EXPECT_EQ(uninit.add_buf({}, {}, &tokens[0]), DriverError::kNotReady);
    std::uint32_t len;
    EXPECT_EQ(uninit.get_buf(&len), nullptr);
    EXPECT_FALSE(uninit.kick_prepare());

    Bare<TypeParam> b(4);
    EXPECT_EQ(b.driver.add_buf({}, {}, &tokens[0]), DriverError::kEmptyChain);
    EXPECT_EQ(b.add(nullptr), DriverError::kNullToken);
    const Segment huge[] = {b.seg(0, 0x80000000u), b.seg(0, 0x80000000u)};
    EXPECT_EQ(b.driver.add_buf(huge, {}, &tokens[0]), DriverError::kLengthOverflow);
    const Segment five[] = {b.seg(0, 1), b.seg(1, 1), b.seg(2, 1), b.seg(3, 1), b.seg(4, 1)};
    EXPECT_EQ(b.driver.add_buf(five, {}, &tokens[0]), DriverError::kChainTooLong);
    for (int i = 0; i < 2; ++i) {
        EXPECT_EQ(b.add(&tokens[i]), DriverError::kOk);  // two descriptors each
    }
    EXPECT_EQ(b.driver.num_free(), 0);
    EXPECT_EQ(b.add(&tokens[2]), DriverError::kNoSpace);
    EXPECT_EQ(b.driver.error(), DriverError::kOk);  // caller errors do not break the queue
    EXPECT_FALSE(b.driver.broken());
}

TYPED_TEST(DriverBoth, IndirectTakesOneSlotAndFallsBack) {
    Bare<TypeParam> b(4, {false, true}, 3);
    const Segment three[] = {b.seg(0, 8), b.seg(8, 8), b.seg(16, 8)};
    ASSERT_EQ(b.driver.add_buf(three, {}, &tokens[0]), DriverError::kOk);
    EXPECT_EQ(b.driver.num_free(), 3);  // one ring descriptor for a 3-segment chain
    const Segment one[] = {b.seg(0, 8)};
    ASSERT_EQ(b.driver.add_buf(one, {}, &tokens[1]), DriverError::kOk);
    EXPECT_EQ(b.driver.num_free(), 2);  // a single segment goes direct
    const Segment four[] = {b.seg(0, 8), b.seg(8, 8), b.seg(16, 8), b.seg(24, 8)};
    EXPECT_EQ(b.driver.add_buf(four, {}, &tokens[2]), DriverError::kNoSpace);  // > per_slot
    const Segment two[] = {b.seg(0, 8), b.seg(8, 8)};
    ASSERT_EQ(b.driver.add_buf(two, {}, &tokens[3]), DriverError::kOk);
    EXPECT_EQ(b.driver.num_free(), 1);
}

TYPED_TEST(DriverBoth, DetachUnusedReclaimsEverythingOnce) {
    Bare<TypeParam> b(8);
    for (int i = 0; i < 4; ++i) {
        ASSERT_EQ(b.add(&tokens[i]), DriverError::kOk);
    }
    (void)b.driver.kick_prepare();
    std::set<void*> seen;
    while (void* t = b.driver.detach_unused()) {
        EXPECT_TRUE(seen.insert(t).second);
    }
    EXPECT_EQ(seen.size(), 4u);
    EXPECT_EQ(b.driver.num_free(), 8);
    // After a device reset the queue is set up again from scratch.
    EXPECT_EQ(b.driver.init(8, {}, b.shm.window, {b.ring, DriverTraits<TypeParam>::ring_bytes(8)}),
              DriverError::kOk);
    EXPECT_EQ(b.driver.detach_unused(), nullptr);
}

// ---------------------------------------------------------------------------------------------
// A lying device: every violation stops the queue with a specific error instead of acting on it.

template <typename Driver>
void expect_broken_then_recoverable(Bare<Driver>& b, DriverError why, int in_flight) {
    std::uint32_t len = 0;
    EXPECT_EQ(b.driver.get_buf(&len), nullptr);
    EXPECT_EQ(b.driver.error(), why);
    EXPECT_TRUE(b.driver.broken());
    EXPECT_EQ(b.driver.get_buf(&len), nullptr);  // and stays stopped
    EXPECT_EQ(b.add(&tokens[9]), DriverError::kBroken);
    EXPECT_FALSE(b.driver.kick_prepare());
    EXPECT_TRUE(b.driver.enable_cb());  // nothing to wait for on a broken queue
    int reclaimed = 0;
    while (b.driver.detach_unused() != nullptr) {
        ++reclaimed;
    }
    EXPECT_EQ(reclaimed, in_flight);
    EXPECT_EQ(b.driver.num_free(), b.driver.size());
}

TEST(SplitLyingDevice, UsedIdOutOfRange) {
    Bare<Split> b(8);
    ASSERT_EQ(b.add(&tokens[0]), DriverError::kOk);
    (void)b.driver.kick_prepare();
    RawSplitDevice dev(b.ring, 8);
    dev.complete(8, 0);
    expect_broken_then_recoverable(b, DriverError::kUsedIdOutOfRange, 1);
}

TEST(SplitLyingDevice, UsedIdNotAHead) {
    Bare<Split> b(8);
    ASSERT_EQ(b.add(&tokens[0]), DriverError::kOk);  // descriptors 0 and 1
    (void)b.driver.kick_prepare();
    RawSplitDevice dev(b.ring, 8);
    dev.complete(1, 0);  // in range, but a chain's second descriptor, not a head
    expect_broken_then_recoverable(b, DriverError::kUsedIdNotInFlight, 1);
}

TEST(SplitLyingDevice, SameIdTwice) {
    Bare<Split> b(8);
    ASSERT_EQ(b.add(&tokens[0]), DriverError::kOk);
    ASSERT_EQ(b.add(&tokens[1]), DriverError::kOk);
    (void)b.driver.kick_prepare();
    RawSplitDevice dev(b.ring, 8);
    dev.complete(0, 16);  // exactly the writable length: fine
    std::uint32_t len = 0;
    EXPECT_EQ(b.driver.get_buf(&len), &tokens[0]);
    EXPECT_EQ(len, 16u);
    dev.complete(0, 0);  // again: no longer in flight
    expect_broken_then_recoverable(b, DriverError::kUsedIdNotInFlight, 1);
}

TEST(SplitLyingDevice, UsedLenAboveWritable) {
    Bare<Split> b(8);
    ASSERT_EQ(b.add(&tokens[0], 16), DriverError::kOk);
    (void)b.driver.kick_prepare();
    RawSplitDevice dev(b.ring, 8);
    dev.complete(0, 17);
    expect_broken_then_recoverable(b, DriverError::kUsedLenTooLong, 1);
}

TEST(SplitLyingDevice, ReadOnlyBufferWithUsedLen) {
    Bare<Split> b(8);
    const Segment out[] = {b.seg(0, 16)};
    ASSERT_EQ(b.driver.add_buf(out, {}, &tokens[0]), DriverError::kOk);
    (void)b.driver.kick_prepare();
    RawSplitDevice dev(b.ring, 8);
    dev.complete(0, 1);  // nothing was writable
    expect_broken_then_recoverable(b, DriverError::kUsedLenTooLong, 1);
}

TEST(SplitLyingDevice, UsedIdxBeyondPublished) {
    Bare<Split> b(8);
    ASSERT_EQ(b.add(&tokens[0]), DriverError::kOk);
    (void)b.driver.kick_prepare();
    ASSERT_EQ(b.add(&tokens[1]), DriverError::kOk);  // staged, not published
    RawSplitDevice dev(b.ring, 8);
    dev.complete(0, 0);
    dev.complete(2, 0);  // two used entries for one published buffer
    expect_broken_then_recoverable(b, DriverError::kUsedIndexJump, 2);
}

TEST(PackedLyingDevice, UsedIdOutOfRange) {
    Bare<Packed> b(8);
    ASSERT_EQ(b.add(&tokens[0]), DriverError::kOk);
    (void)b.driver.kick_prepare();
    RawPackedDevice dev(b.ring, 8);
    dev.complete(8, 0);
    expect_broken_then_recoverable(b, DriverError::kUsedIdOutOfRange, 1);
}

TEST(PackedLyingDevice, UsedIdNotInFlight) {
    Bare<Packed> b(8);
    ASSERT_EQ(b.add(&tokens[0]), DriverError::kOk);  // buffer id 0
    (void)b.driver.kick_prepare();
    RawPackedDevice dev(b.ring, 8);
    dev.complete(3, 0);  // a free id
    expect_broken_then_recoverable(b, DriverError::kUsedIdNotInFlight, 1);
}

TEST(PackedLyingDevice, SameIdTwice) {
    Bare<Packed> b(8);
    ASSERT_EQ(b.add(&tokens[0]), DriverError::kOk);  // id 0, slots 0-1
    ASSERT_EQ(b.add(&tokens[1]), DriverError::kOk);  // id 1, slots 2-3
    (void)b.driver.kick_prepare();
    RawPackedDevice dev(b.ring, 8);
    dev.complete(0, 16, 2);
    std::uint32_t len = 0;
    EXPECT_EQ(b.driver.get_buf(&len), &tokens[0]);
    EXPECT_EQ(len, 16u);
    dev.complete(0, 0, 2);
    expect_broken_then_recoverable(b, DriverError::kUsedIdNotInFlight, 1);
}

TEST(PackedLyingDevice, UsedLenAboveWritable) {
    Bare<Packed> b(8);
    ASSERT_EQ(b.add(&tokens[0], 16), DriverError::kOk);
    (void)b.driver.kick_prepare();
    RawPackedDevice dev(b.ring, 8);
    dev.complete(0, 17, 2);
    expect_broken_then_recoverable(b, DriverError::kUsedLenTooLong, 1);
}

TEST(PackedLyingDevice, UsedFlagsWithNothingInFlightAreIgnored) {
    Bare<Packed> b(8);
    RawPackedDevice dev(b.ring, 8);
    dev.complete(0, 0);
    std::uint32_t len = 0;
    EXPECT_EQ(b.driver.get_buf(&len), nullptr);
    EXPECT_EQ(b.driver.error(), DriverError::kOk);
    EXPECT_TRUE(b.driver.enable_cb());
}

TEST(PackedDriver, OutOfOrderCompletionSkipsChainSlots) {
    Bare<Packed> b(8);
    ASSERT_EQ(b.add(&tokens[0]), DriverError::kOk);  // id 0: slots 0-1
    const Segment one[] = {b.seg(0, 4)};
    ASSERT_EQ(b.driver.add_buf({}, one, &tokens[1]), DriverError::kOk);  // id 1: slot 2
    (void)b.driver.kick_prepare();
    RawPackedDevice dev(b.ring, 8);
    dev.complete(1, 4, 1);   // used slot 0: buffer 1 (one slot)
    dev.complete(0, 10, 2);  // used slot 1: buffer 0 (two slots)
    std::uint32_t len = 0;
    EXPECT_EQ(b.driver.get_buf(&len), &tokens[1]);
    EXPECT_EQ(len, 4u);
    EXPECT_EQ(b.driver.get_buf(&len), &tokens[0]);
    EXPECT_EQ(len, 10u);
    EXPECT_EQ(b.driver.get_buf(&len), nullptr);
    EXPECT_EQ(b.driver.num_free(), 8);
}

// ---------------------------------------------------------------------------------------------
// Notification suppression, split ring, against the real device queue.

void add_one(Loopback<Split>& lb, int i) {
    std::uint8_t* p = lb.shm.alloc(16);
    const Segment in[] = {{lb.shm.gpa(p), 16}};
    ASSERT_EQ(lb.driver.add_buf({}, in, &tokens[i]), DriverError::kOk);
}

int device_drain(Loopback<Split>& lb) {
    int n = 0;
    DescriptorChain c;
    while (true) {
        auto r = lb.device.pop(lb.shm.mem, c);
        EXPECT_TRUE(r.has_value());
        if (!r || !*r) {
            return n;
        }
        lb.device.push(c.token(), 4);
        ++n;
    }
}

TEST(SplitNotify, KickFollowsUsedFlags) {
    Loopback<Split> lb;
    lb.init(8, {false, false});
    EXPECT_FALSE(lb.driver.kick_prepare());  // nothing staged
    add_one(lb, 0);
    EXPECT_TRUE(lb.driver.kick_prepare());   // flags 0: notify
    EXPECT_FALSE(lb.driver.kick_prepare());  // nothing new
    lb.device.disable_notifications();
    add_one(lb, 1);
    EXPECT_FALSE(lb.driver.kick_prepare());         // NO_NOTIFY
    EXPECT_TRUE(lb.device.enable_notifications());  // and the device sees the pending buffer
    add_one(lb, 2);
    EXPECT_TRUE(lb.driver.kick_prepare());
}

TEST(SplitNotify, KickFollowsAvailEvent) {
    Loopback<Split> lb;
    lb.init(8, {true, false});
    add_one(lb, 0);
    EXPECT_TRUE(lb.driver.kick_prepare());  // avail_event 0 is crossed by the first buffer
    add_one(lb, 1);
    EXPECT_FALSE(lb.driver.kick_prepare());  // the device has not asked again
    EXPECT_EQ(device_drain(lb), 2);
    EXPECT_FALSE(lb.device.enable_notifications());  // avail_event = 2
    add_one(lb, 2);
    add_one(lb, 3);
    EXPECT_TRUE(lb.driver.kick_prepare());  // batch [2, 4) contains 2
}

TEST(SplitNotify, EnableCbRaceAndInterruptDecisions) {
    for (bool event_idx : {false, true}) {
        SCOPED_TRACE(event_idx ? "event_idx" : "flags");
        Loopback<Split> lb;
        lb.init(8, {event_idx, false});
        EXPECT_TRUE(lb.driver.enable_cb());  // nothing pending: may sleep
        add_one(lb, 0);
        (void)lb.driver.kick_prepare();
        ASSERT_EQ(device_drain(lb), 1);
        EXPECT_TRUE(lb.device.publish());  // enabled: interrupt
        // The race: the driver re-enables after the device published. It must not sleep.
        EXPECT_FALSE(lb.driver.enable_cb());
        std::uint32_t len = 0;
        EXPECT_EQ(lb.driver.get_buf(&len), &tokens[0]);
        EXPECT_EQ(len, 4u);
        EXPECT_TRUE(lb.driver.enable_cb());
        // Disabled: no interrupt for the next completion.
        lb.driver.disable_cb();
        add_one(lb, 1);
        (void)lb.driver.kick_prepare();
        ASSERT_EQ(device_drain(lb), 1);
        EXPECT_FALSE(lb.device.publish());
        EXPECT_EQ(lb.driver.get_buf(&len), &tokens[1]);
        EXPECT_TRUE(lb.driver.enable_cb());
        add_one(lb, 2);
        (void)lb.driver.kick_prepare();
        ASSERT_EQ(device_drain(lb), 1);
        EXPECT_TRUE(lb.device.publish());
        if (event_idx) {
            // used_event stays at the entry we asked for: a further completion without
            // re-enabling raises no interrupt.
            add_one(lb, 3);
            (void)lb.driver.kick_prepare();
            ASSERT_EQ(device_drain(lb), 1);
            EXPECT_FALSE(lb.device.publish());
        }
    }
}

TEST(SplitNotify, EventIdxFieldsWritten) {
    Bare<Split> b(8, {true, false});
    RawSplitDevice dev(b.ring, 8);
    ASSERT_EQ(b.add(&tokens[0]), DriverError::kOk);
    (void)b.driver.kick_prepare();
    dev.complete(0, 0);
    std::uint32_t len = 0;
    ASSERT_EQ(b.driver.get_buf(&len), &tokens[0]);
    EXPECT_TRUE(b.driver.enable_cb());
    EXPECT_EQ(dev.used_event(), 1);  // interrupt when entry 1 is written
    b.driver.disable_cb();
    EXPECT_EQ(dev.used_event(), 0);  // behind: no interrupt until 2^16 more entries
    EXPECT_EQ(b.shm.host(b.driver.config().driver_addr)[0], 0);  // flags stay 0 (§2.7.7.1)
}

// ---------------------------------------------------------------------------------------------
// Notification suppression, packed ring (device event area written by hand).

TEST(PackedNotify, KickFollowsDeviceEventFlags) {
    Bare<Packed> b(8);
    RawPackedDevice dev(b.ring, 8);
    EXPECT_FALSE(b.driver.kick_prepare());  // nothing staged
    ASSERT_EQ(b.add(&tokens[0]), DriverError::kOk);
    EXPECT_TRUE(b.driver.kick_prepare());  // ENABLE (zeroed area)
    dev.set_device_event(virtq::kEventFlagsDisable);
    ASSERT_EQ(b.add(&tokens[1]), DriverError::kOk);
    EXPECT_FALSE(b.driver.kick_prepare());
    dev.set_device_event(virtq::kEventFlagsDesc, 0);  // DESC without EVENT_IDX: be safe, kick
    ASSERT_EQ(b.add(&tokens[2]), DriverError::kOk);
    EXPECT_TRUE(b.driver.kick_prepare());
}

TEST(PackedNotify, KickFollowsDescEventAcrossWraps) {
    Bare<Packed> b(4, {true, false});
    RawPackedDevice dev(b.ring, 4);
    const Segment one[] = {b.seg(0, 4)};
    auto add = [&](int i) { ASSERT_EQ(b.driver.add_buf(one, {}, &tokens[i]), DriverError::kOk); };
    std::uint32_t len = 0;
    // Event at slot 2 of lap 1 (wrap 1).
    dev.set_device_event(virtq::kEventFlagsDesc, 2, true);
    add(0);  // slot 0
    EXPECT_FALSE(b.driver.kick_prepare());
    add(1);  // slot 1
    add(2);  // slot 2: the event
    EXPECT_TRUE(b.driver.kick_prepare());
    for (int i = 0; i < 3; ++i) {
        dev.complete(static_cast<std::uint16_t>(i), 0);
        ASSERT_EQ(b.driver.get_buf(&len), &tokens[i]);
    }
    // Event at slot 1 of lap 2 (wrap 0); the batch spans slot 3 of lap 1 and slots 0-1 of lap 2.
    dev.set_device_event(virtq::kEventFlagsDesc, 1, false);
    add(3);  // slot 3, lap 1
    EXPECT_FALSE(b.driver.kick_prepare());
    add(4);  // slot 0, lap 2
    EXPECT_FALSE(b.driver.kick_prepare());
    add(5);  // slot 1, lap 2: the event
    EXPECT_TRUE(b.driver.kick_prepare());
    // An event left in the previous lap (slot 3, wrap 1) is not crossed again by slot 2 of lap 2.
    dev.set_device_event(virtq::kEventFlagsDesc, 3, true);
    add(6);
    EXPECT_FALSE(b.driver.kick_prepare());
}

TEST(PackedNotify, DriverEventWrittenAndEnableCbRace) {
    for (bool event_idx : {false, true}) {
        SCOPED_TRACE(event_idx ? "event_idx" : "flags");
        Bare<Packed> b(4, {event_idx, false});
        RawPackedDevice dev(b.ring, 4);
        b.driver.disable_cb();
        EXPECT_EQ(dev.driver_event->flags.get(), virtq::kEventFlagsDisable);
        EXPECT_TRUE(b.driver.enable_cb());
        EXPECT_EQ(dev.driver_event->flags.get(),
                  event_idx ? virtq::kEventFlagsDesc : virtq::kEventFlagsEnable);
        if (event_idx) {
            EXPECT_EQ(dev.driver_event->off_wrap.get(), 0x8000);  // slot 0, wrap 1
        }
        ASSERT_EQ(b.add(&tokens[0]), DriverError::kOk);  // id 0, slots 0-1
        (void)b.driver.kick_prepare();
        dev.complete(0, 3, 2);
        EXPECT_FALSE(b.driver.enable_cb());  // the race: pending before re-enable
        std::uint32_t len = 0;
        ASSERT_EQ(b.driver.get_buf(&len), &tokens[0]);
        EXPECT_TRUE(b.driver.enable_cb());
        if (event_idx) {
            EXPECT_EQ(dev.driver_event->off_wrap.get(), 0x8002);  // next used: slot 2, wrap 1
        }
        // Wrap the used position: the event point carries the new wrap counter.
        for (int i = 0; i < 2; ++i) {
            ASSERT_EQ(b.add(&tokens[1]), DriverError::kOk);
            (void)b.driver.kick_prepare();
            dev.complete(0, 0, 2);
            ASSERT_EQ(b.driver.get_buf(&len), &tokens[1]);
        }
        EXPECT_TRUE(b.driver.enable_cb());
        if (event_idx) {
            EXPECT_EQ(dev.driver_event->off_wrap.get(), 0x0002);  // slot 2, wrap 0
        }
    }
}

}  // namespace
}  // namespace vireo::driver::testing
