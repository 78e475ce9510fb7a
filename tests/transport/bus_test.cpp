// The address-space bus (dispatch, overlap rejection, misses) and the status transition table.
#include "transport/bus.hpp"

#include <gtest/gtest.h>

#include <thread>

#include "transport/device_status.hpp"

namespace vireo::transport {
namespace {

class Recorder final : public BusDevice {
  public:
    void read(std::uint64_t offset, std::span<std::uint8_t> data) override {
        last_offset = offset;
        for (auto& b : data) {
            b = 0xab;
        }
    }
    void write(std::uint64_t offset, std::span<const std::uint8_t> data) override {
        last_offset = offset;
        last_size = data.size();
    }
    std::uint64_t last_offset = ~0ull;
    std::size_t last_size = 0;
};

TEST(Bus, DispatchesByRangeWithOffset) {
    Bus bus;
    auto a = std::make_shared<Recorder>();
    auto b = std::make_shared<Recorder>();
    ASSERT_TRUE(bus.insert(0x1000, 0x100, a));
    ASSERT_TRUE(bus.insert(0x2000, 0x100, b));
    std::uint8_t buf[4] = {};
    EXPECT_TRUE(bus.read(0x1010, buf));
    EXPECT_EQ(a->last_offset, 0x10u);
    EXPECT_EQ(buf[0], 0xab);
    const std::uint8_t w[2] = {1, 2};
    EXPECT_TRUE(bus.write(0x20fe, w));
    EXPECT_EQ(b->last_offset, 0xfeu);
    EXPECT_EQ(b->last_size, 2u);
}

TEST(Bus, MissesReadAllOnesAndDropWrites) {
    Bus bus;
    auto a = std::make_shared<Recorder>();
    ASSERT_TRUE(bus.insert(0x1000, 0x100, a));
    std::uint8_t buf[4] = {};
    EXPECT_FALSE(bus.read(0x0fff, buf));
    EXPECT_EQ(buf[0], 0xff);
    EXPECT_FALSE(bus.read(0x10fe, buf));  // straddles the end
    EXPECT_EQ(buf[3], 0xff);
    EXPECT_FALSE(bus.write(0x1100, std::span<const std::uint8_t>(buf, 1)));
    std::uint8_t wide[16] = {};
    EXPECT_FALSE(bus.read(0x1000, wide));  // wider than 8 bytes
    EXPECT_EQ(a->last_offset, ~0ull);
}

TEST(Bus, RejectsOverlapsAndEmptyRanges) {
    Bus bus;
    auto d = std::make_shared<Recorder>();
    ASSERT_TRUE(bus.insert(0x1000, 0x1000, d));
    EXPECT_EQ(bus.insert(0x1fff, 1, d).error(), BusError::kOverlap);
    EXPECT_EQ(bus.insert(0x0800, 0x801, d).error(), BusError::kOverlap);
    EXPECT_EQ(bus.insert(0x0000, 0x10000, d).error(), BusError::kOverlap);
    EXPECT_EQ(bus.insert(0x1800, 0x10, d).error(), BusError::kOverlap);
    EXPECT_TRUE(bus.insert(0x0800, 0x800, d));  // adjacent below
    EXPECT_TRUE(bus.insert(0x2000, 0x10, d));   // adjacent above
    EXPECT_EQ(bus.insert(0x5000, 0, d).error(), BusError::kEmpty);
    EXPECT_EQ(bus.insert(~0ull - 3, 8, d).error(), BusError::kEmpty);  // wraps
    EXPECT_TRUE(bus.insert(~0ull - 7, 8, d));                          // ends exactly at 2^64
    std::uint8_t buf[8];
    EXPECT_TRUE(bus.read(~0ull - 7, buf));
    EXPECT_EQ(bus.size(), 4u);
}

TEST(Bus, RemoveUnmaps) {
    Bus bus;
    auto d = std::make_shared<Recorder>();
    ASSERT_TRUE(bus.insert(0x1000, 0x10, d));
    EXPECT_FALSE(bus.remove(0x1004));
    EXPECT_TRUE(bus.remove(0x1000));
    std::uint8_t buf[1];
    EXPECT_FALSE(bus.read(0x1000, buf));
    EXPECT_TRUE(bus.insert(0x1000, 0x10, d));
}

TEST(Bus, LookupsRaceRegistrationSafely) {
    Bus bus;
    auto d = std::make_shared<Recorder>();
    ASSERT_TRUE(bus.insert(0x0, 0x10, d));
    std::atomic<bool> stop{false};
    std::thread reader([&] {
        std::uint8_t buf[4];
        while (!stop) {
            ASSERT_TRUE(bus.read(0x4, buf));
            bus.read(0x1000, buf);
        }
    });
    for (int i = 0; i < 2000; ++i) {
        ASSERT_TRUE(bus.insert(0x1000, 0x10, std::make_shared<Recorder>()));
        ASSERT_TRUE(bus.remove(0x1000));
    }
    stop = true;
    reader.join();
}

TEST(DeviceStatus, ModernTable) {
    constexpr std::uint8_t A = kStatusAcknowledge, D = kStatusDriver, F = kStatusFeaturesOk,
                           O = kStatusDriverOk;
    EXPECT_EQ(classify_status(0, A, false), StatusChange::kAdvance);
    EXPECT_EQ(classify_status(A, A | D, false), StatusChange::kAdvance);
    EXPECT_EQ(classify_status(A | D, A | D | F, false), StatusChange::kAdvance);
    EXPECT_EQ(classify_status(A | D | F, A | D | F | O, false), StatusChange::kAdvance);
    EXPECT_EQ(classify_status(A | D, A | D | O, false), StatusChange::kInvalid);  // skips F
    EXPECT_EQ(classify_status(0, A | D, false), StatusChange::kInvalid);          // two steps
    EXPECT_EQ(classify_status(A | D | F, A | D, false), StatusChange::kInvalid);  // clears a bit
    EXPECT_EQ(classify_status(A | D, A | D | kStatusFailed, false), StatusChange::kAdvance);
    EXPECT_EQ(classify_status(A | kStatusFailed, A | D | kStatusFailed, false),
              StatusChange::kInvalid);
    EXPECT_EQ(classify_status(A | D | F | O, 0, false), StatusChange::kReset);
    EXPECT_EQ(classify_status(A | D, A | D, false), StatusChange::kSame);
}

TEST(DeviceStatus, LegacyTableHasNoFeaturesOk) {
    constexpr std::uint8_t A = kStatusAcknowledge, D = kStatusDriver;
    EXPECT_EQ(classify_status(A | D, A | D | kStatusDriverOk, true), StatusChange::kAdvance);
    EXPECT_EQ(classify_status(A | D, A | D | kStatusFeaturesOk, true), StatusChange::kInvalid);
}

}  // namespace
}  // namespace vireo::transport
