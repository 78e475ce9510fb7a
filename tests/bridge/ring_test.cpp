// The bridge's shared-memory rings: wrap-around, back-pressure, need-wakeup, reply routing.
#include "bridge/ring.hpp"

#include <gtest/gtest.h>
#include <poll.h>

#include <atomic>
#include <set>
#include <thread>
#include <vector>

#include "bridge/protocol.hpp"

namespace vireo::bridge {
namespace {

Request req(std::uint32_t vcpu, std::uint64_t addr) {
    return Request{vcpu, 7, addr, 0, 0, 4, 0, 0};
}

TEST(BridgeLayout, OffsetsFollowSizes) {
    const Layout a = layout_for(1, 4, 4);
    const Layout b = layout_for(300, 4096, 512);  // beyond hvisor-tool's 32/32 limits
    EXPECT_EQ(a.req_offset, sizeof(Header));
    EXPECT_EQ(a.reply_offset % kCacheLine, 0u);
    EXPECT_GT(b.irq_offset, b.reply_offset + 299 * sizeof(ReplySlot));
    EXPECT_EQ(b.total_size % 4096, 0u);
}

TEST(BridgeArea, CreateRejectsBadSizes) {
    EXPECT_FALSE(Area::create(1, 0, 8, 8));
    EXPECT_FALSE(Area::create(1, 2, 6, 8));  // not a power of two
    EXPECT_FALSE(Area::create(1, 2, 8, 0));
    EXPECT_FALSE(Area::create(1, kMaxVcpus + 1, 8, 8));
    EXPECT_TRUE(Area::create(1, 64, 1024, 1024));  // 64 vCPUs, 1024 entries
}

TEST(BridgeArea, AttachChecksHeader) {
    auto a = Area::create(3, 2, 8, 8);
    ASSERT_TRUE(a);
    auto b = Area::attach(UniqueFd(::dup(a->fd())), a->size());
    ASSERT_TRUE(b) << b.error();
    EXPECT_EQ(b->vm_id(), 3u);
    EXPECT_EQ(b->vcpus(), 2u);
    // A peer that lies about the ring size is refused (the layout no longer matches).
    a->header().req_entries = 16;
    EXPECT_FALSE(Area::attach(UniqueFd(::dup(a->fd())), a->size()));
    a->header().req_entries = 8;
    a->header().version = 99;
    EXPECT_FALSE(Area::attach(UniqueFd(::dup(a->fd())), a->size()));
    EXPECT_FALSE(Area::attach(UniqueFd(::dup(a->fd())), 8));  // too small to hold a header
}

TEST(BridgeRing, WrapsAroundManyLaps) {
    auto a = Area::create(7, 1, 4, 4);
    ASSERT_TRUE(a);
    Ring<Request>& r = a->requests();
    std::uint64_t next = 0;
    for (std::uint64_t i = 0; i < 1000; ++i) {  // 250 laps of a 4-entry ring
        ASSERT_TRUE(r.try_push(req(0, i)));
        if (i % 3 == 2) {
            while (auto v = r.try_pop()) {
                EXPECT_EQ(v->addr, next++);
            }
        }
    }
    while (auto v = r.try_pop()) {
        EXPECT_EQ(v->addr, next++);
    }
    EXPECT_EQ(next, 1000u);
}

TEST(BridgeRing, FullRingPushesBack) {
    auto a = Area::create(7, 1, 8, 8);
    ASSERT_TRUE(a);
    Ring<Request>& r = a->requests();
    for (int i = 0; i < 8; ++i) {
        ASSERT_TRUE(r.try_push(req(0, i)));
    }
    EXPECT_FALSE(r.try_push(req(0, 8)));  // full: the producer must wait, nothing is lost
    ASSERT_TRUE(r.try_pop());
    EXPECT_TRUE(r.try_push(req(0, 8)));
    EXPECT_FALSE(r.try_push(req(0, 9)));
}

TEST(BridgeRing, ManyProducersNoLossNoDuplicate) {
    auto a = Area::create(7, 4, 16, 8);
    ASSERT_TRUE(a);
    Ring<Request>& r = a->requests();
    constexpr int kPerThread = 5000;
    std::vector<std::thread> producers;
    for (std::uint32_t t = 0; t < 4; ++t) {
        producers.emplace_back([&r, t] {
            for (int i = 0; i < kPerThread; ++i) {
                while (!r.try_push(req(t, static_cast<std::uint64_t>(i)))) {
                    std::this_thread::yield();
                }
            }
        });
    }
    std::vector<std::uint64_t> next(4, 0);
    int got = 0;
    while (got < 4 * kPerThread) {
        if (auto v = r.try_pop()) {
            // Per producer, order is preserved.
            ASSERT_EQ(v->addr, next[v->vcpu]++);
            ++got;
        }
    }
    for (auto& p : producers) {
        p.join();
    }
    EXPECT_FALSE(r.try_pop());
}

TEST(BridgeRing, NeedWakeupSuppressesDoorbell) {
    auto a = Area::create(7, 1, 8, 8);
    ASSERT_TRUE(a);
    Ring<Request>& r = a->requests();
    // A busy consumer leaves the flag clear: producers do not signal.
    ASSERT_TRUE(r.try_push(req(0, 1)));
    EXPECT_FALSE(r.needs_wakeup());
    // A consumer about to sleep sets it: the next producer signals.
    r.set_need_wakeup(true);
    ASSERT_TRUE(r.try_push(req(0, 2)));
    EXPECT_TRUE(r.needs_wakeup());
}

TEST(BridgeRing, ConsumerIgnoresForgedSequence) {
    auto a = Area::create(7, 1, 4, 4);
    ASSERT_TRUE(a);
    // A hostile producer writes a cell's sequence for a position the consumer is not at.
    auto* cells = reinterpret_cast<Cell<Request>*>(reinterpret_cast<std::uint8_t*>(&a->header()) +
                                                   a->header().req_offset + sizeof(RingControl));
    cells[1].seq = 2;  // "published" position 1 while position 0 is empty
    EXPECT_FALSE(a->requests().try_pop());
    cells[0].seq = 12345;  // garbage
    EXPECT_FALSE(a->requests().try_pop());
}

TEST(BridgeDoorbell, EventfdSignals) {
    UniqueFd e = make_eventfd();
    ASSERT_TRUE(e);
    pollfd p{e.get(), POLLIN, 0};
    EXPECT_EQ(::poll(&p, 1, 0), 0);
    ring_doorbell(e.get());
    EXPECT_EQ(::poll(&p, 1, 0), 1);
    drain_doorbell(e.get());
    EXPECT_EQ(::poll(&p, 1, 0), 0);
}

}  // namespace
}  // namespace vireo::bridge
