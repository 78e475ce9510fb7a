// virtio-rng device model over real split and packed rings (the freestanding driver side).
#include "devices/rng.hpp"

#include <gtest/gtest.h>

#include <algorithm>

#include "guest_queue.hpp"

namespace vireo::dev {
namespace {

using testing::GuestQueue;

template <typename Driver>
class RngTest : public ::testing::Test {};
TYPED_TEST_SUITE(RngTest, testing::Drivers);

bool all_zero(const std::vector<std::uint8_t>& v) {
    return std::all_of(v.begin(), v.end(), [](std::uint8_t b) { return b == 0; });
}

TYPED_TEST(RngTest, FillsEveryWritableByte) {
    auto dev = RngDevice::create({});
    ASSERT_TRUE(dev.has_value()) << dev.error();
    GuestQueue<TypeParam> gq;
    auto h = (*dev)->start_queue(kRngQueueRequest, gq.handle());
    ASSERT_NE(h, nullptr);
    EXPECT_EQ(h->event_fd(), -1);  // no limiter, no timer
    gq.post({}, 64);
    gq.post({}, 4096, 3);  // three descriptors
    h->on_kick();
    auto used = gq.collect();
    ASSERT_EQ(used.size(), 2u);
    EXPECT_EQ(used[0].len, 64u);
    EXPECT_EQ(used[1].len, 4096u);
    EXPECT_FALSE(all_zero(used[0].data));
    // Every descriptor of the chain got data (a 1365-byte run of zeros is not random).
    for (std::size_t off = 0; off < 4096; off += 1366) {
        std::vector<std::uint8_t> part(
            used[1].data.begin() + off,
            used[1].data.begin() + std::min<std::size_t>(off + 1365, 4096));
        EXPECT_FALSE(all_zero(part)) << off;
    }
    EXPECT_NE(used[0].data,
              std::vector<std::uint8_t>(used[1].data.begin(), used[1].data.begin() + 64));
    EXPECT_GE(gq.interrupts(), 1);
    EXPECT_EQ((*dev)->stats().bytes.load(), 64u + 4096u);
    h->drain();
}

TYPED_TEST(RngTest, ReadableOnlyChainCompletesEmpty) {
    auto dev = RngDevice::create({});
    ASSERT_TRUE(dev.has_value());
    GuestQueue<TypeParam> gq;
    auto h = (*dev)->start_queue(kRngQueueRequest, gq.handle());
    gq.post_str("not for the device");
    gq.post({}, 16);
    h->on_kick();
    auto used = gq.collect();
    ASSERT_EQ(used.size(), 2u);
    EXPECT_EQ(used[0].len, 0u);
    EXPECT_EQ(used[1].len, 16u);
    EXPECT_EQ((*dev)->stats().empty.load(), 1u);
}

TYPED_TEST(RngTest, RateLimitDefersWithoutDropping) {
    // 2000 bytes per second, a bucket of 2000: the first 31 chains of 64 bytes (1984) go at
    // once, the rest wait for the timer.
    auto dev = RngDevice::create({.max_bytes_per_sec = 2000});
    ASSERT_TRUE(dev.has_value());
    GuestQueue<TypeParam> gq;
    auto h = (*dev)->start_queue(kRngQueueRequest, gq.handle());
    ASSERT_GE(h->event_fd(), 0);
    constexpr int kChains = 34;
    for (int i = 0; i < kChains; ++i) {
        ASSERT_GE(gq.post({}, 64), 0);
    }
    h->on_kick();
    auto used = gq.collect();
    EXPECT_LT(used.size(), static_cast<std::size_t>(kChains));
    EXPECT_GE(used.size(), 31u);
    EXPECT_GE((*dev)->stats().deferred.load(), 1u);
    // Kicks while deferred do not bypass the limiter (a burst of kicks is not a burst of bytes).
    std::size_t served = used.size();
    // The rest arrive through the timer, none dropped.
    while (served < static_cast<std::size_t>(kChains)) {
        ASSERT_TRUE(testing::wait_readable(h->event_fd())) << "timer never fired";
        h->on_event();
        for (const auto& u : gq.collect()) {
            EXPECT_EQ(u.len, 64u);
            EXPECT_FALSE(all_zero(u.data));
            ++served;
        }
    }
    EXPECT_EQ(served, static_cast<std::size_t>(kChains));
    EXPECT_EQ(gq.num_free(), GuestQueue<TypeParam>::kSize);
    h->drain();
}

TYPED_TEST(RngTest, DrainAnswersAHeldChain) {
    auto dev = RngDevice::create({.max_bytes_per_sec = 1});
    ASSERT_TRUE(dev.has_value());
    GuestQueue<TypeParam> gq;
    auto h = (*dev)->start_queue(kRngQueueRequest, gq.handle());
    gq.post({}, 64);
    gq.post({}, 64);
    h->on_kick();
    auto used = gq.collect();
    ASSERT_EQ(used.size(), 1u);
    EXPECT_EQ(used[0].len, 1u);  // the bucket holds one byte: one second's worth
    h->drain();                  // the queue stops: the held chain is answered
    used = gq.collect();
    ASSERT_EQ(used.size(), 1u);
    EXPECT_GE(used[0].len, 1u);
}

TEST(RngDeviceTest, Identity) {
    auto dev = RngDevice::create({});
    ASSERT_TRUE(dev.has_value());
    EXPECT_EQ((*dev)->device_id(), kIdRng);
    EXPECT_EQ((*dev)->num_queues(), 1);
    EXPECT_TRUE((*dev)->config().empty());
    GuestQueue<driver::SplitDriver<64>> gq;
    EXPECT_EQ((*dev)->start_queue(1, gq.handle()), nullptr);
    EXPECT_FALSE(RngDevice::create({.queue_size = 0}).has_value());
}

}  // namespace
}  // namespace vireo::dev
