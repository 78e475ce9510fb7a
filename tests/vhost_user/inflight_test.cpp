// Inflight I/O tracking (vhost-user.rst "Inflight I/O tracking"): the back end records popped
// chains in the shared buffer and, after a reconnect, resubmits them in counter order.
#include "vhost_user/inflight.hpp"

#include <gtest/gtest.h>
#include <sys/mman.h>

#include "front_end.hpp"
#include "vhost_user/backend.hpp"

namespace vireo::vhost_user::test {
namespace {

constexpr std::uint16_t kSize = 16;

struct Mapped {
    std::uint8_t* p = nullptr;
    std::size_t len = 0;
    Mapped(int fd, std::size_t n) : len(n) {
        void* m = ::mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        EXPECT_NE(m, MAP_FAILED);
        p = static_cast<std::uint8_t*>(m);
    }
    ~Mapped() { ::munmap(p, len); }
    QueueRegionSplit* hdr(std::uint16_t q) {
        return reinterpret_cast<QueueRegionSplit*>(p + inflight_queue_bytes(kSize) * q);
    }
    DescStateSplit* desc(std::uint16_t q) {
        return reinterpret_cast<DescStateSplit*>(reinterpret_cast<std::uint8_t*>(hdr(q)) +
                                                 sizeof(QueueRegionSplit));
    }
};

// GET_INFLIGHT_FD: returns the description and the memfd.
std::pair<InflightDesc, UniqueFd> get_inflight(FrontEnd& fe) {
    const InflightDesc req{0, 0, 2, kSize, 0};
    EXPECT_TRUE(fe.send(Request::kGetInflightFd, req));
    auto rep = fe.reply();
    EXPECT_TRUE(rep.has_value());
    InflightDesc d{};
    if (!rep || rep->fds.size() != 1) {
        ADD_FAILURE() << "no inflight fd";
        return {d, UniqueFd{}};
    }
    std::memcpy(&d, rep->payload.data(), std::min(rep->payload.size(), sizeof d));
    return {d, std::move(rep->fds[0])};
}

TEST(Inflight, TracksPopAndPush) {
    EchoDevice dev;
    FrontEnd fe(dev);
    ASSERT_NO_FATAL_FAILURE(fe.negotiate());
    auto [desc, fd] = get_inflight(fe);
    ASSERT_TRUE(fd.valid());
    EXPECT_EQ(desc.num_queues, 2);
    EXPECT_EQ(desc.queue_size, kSize);
    EXPECT_GE(desc.mmap_size, 2 * inflight_queue_bytes(kSize));
    Mapped m(fd.get(), desc.mmap_size);

    SplitRing r(fe, 0, kGuestBase, kSize);
    ASSERT_NO_FATAL_FAILURE(r.setup());
    r.add(6, "tracked", 16);
    r.kick();
    ASSERT_TRUE(r.wait_call());
    EXPECT_EQ(m.hdr(0)->version, kInflightVersion);
    EXPECT_EQ(m.hdr(0)->desc_num, kSize);
    EXPECT_EQ(m.hdr(0)->used_idx, 1);
    EXPECT_EQ(m.hdr(0)->last_batch_head, 6);
    EXPECT_EQ(m.desc(0)[6].inflight, 0);
    EXPECT_GT(m.desc(0)[6].counter, 0u);
}

TEST(Inflight, ResubmitsInCounterOrderAfterReconnect) {
    EchoDevice dev;
    UniqueFd buffer;
    InflightDesc desc{};
    {
        // The first back end hands out the buffer (as QEMU asks at start)...
        FrontEnd fe(dev);
        ASSERT_NO_FATAL_FAILURE(fe.negotiate());
        std::tie(desc, buffer) = get_inflight(fe);
        ASSERT_TRUE(buffer.valid());
        fe.disconnect();
    }
    // ...and "crashes" with heads 2 (popped first) and 0 (popped second) still inflight.
    Mapped m(buffer.get(), desc.mmap_size);
    *m.hdr(0) = QueueRegionSplit{0, kInflightVersion, kSize, 0, 0};
    m.desc(0)[0] = DescStateSplit{1, {}, 0, 7};
    m.desc(0)[2] = DescStateSplit{1, {}, 0, 5};

    FrontEnd fe(dev);
    ASSERT_NO_FATAL_FAILURE(fe.negotiate());
    SplitRing r(fe, 0, kGuestBase, kSize);
    // Guest view: heads 0 and 2 were made available (and popped); head 4 is new.
    r.add(0, "zero", 16);
    r.add(2, "two", 16);
    r.add(4, "four", 16);
    const int fd = buffer.get();
    EXPECT_EQ(fe.acked(Request::kSetInflightFd, desc, std::span(&fd, 1)), 0u);
    // QEMU restores last_avail_idx to the used index when the back end died (0 here).
    ASSERT_NO_FATAL_FAILURE(r.setup(true, 0));
    for (int i = 0; i < 3 && r.used_idx() < 3; ++i) {
        r.kick();
        ASSERT_TRUE(r.wait_call());
    }
    ASSERT_EQ(r.used_idx(), 3);
    // Oldest inflight first (counter 5, then 7), then the new chain.
    EXPECT_EQ(r.used_elem(0).id.get(), 2u);
    EXPECT_EQ(r.used_elem(1).id.get(), 0u);
    EXPECT_EQ(r.used_elem(2).id.get(), 4u);
    EXPECT_EQ(r.written(2, 3), "TWO");
    EXPECT_EQ(r.written(0, 4), "ZERO");
    EXPECT_EQ(r.written(4, 4), "FOUR");
    EXPECT_EQ(m.desc(0)[0].inflight, 0);
    EXPECT_EQ(m.desc(0)[2].inflight, 0);
    EXPECT_EQ(m.hdr(0)->used_idx, 3);
}

TEST(Inflight, SplitCrashMidRequestThenResubmit) {
    EchoDevice dev;
    FrontEnd fe(dev);
    ASSERT_NO_FATAL_FAILURE(fe.negotiate());
    auto [desc, buffer] = get_inflight(fe);
    ASSERT_TRUE(buffer.valid());
    SplitRing r(fe, 0, kGuestBase, kSize);
    ASSERT_NO_FATAL_FAILURE(r.setup());
    dev.hold = true;  // the back end will "crash" with head 0 in flight
    r.add(0, "!held", 16);
    r.add(2, "done", 16);
    r.kick();
    ASSERT_TRUE(r.wait_call());
    ASSERT_EQ(r.used_idx(), 1);
    EXPECT_EQ(r.used_elem(0).id.get(), 2u);

    // Reconnect (same guest memory) with the buffer the front end kept; QEMU restores the
    // ring's avail position to the used index when the back end died.
    fe.reconnect();
    dev.hold = false;
    ASSERT_NO_FATAL_FAILURE(fe.negotiate());
    const int fd = buffer.get();
    EXPECT_EQ(fe.acked(Request::kSetInflightFd, desc, std::span(&fd, 1)), 0u);
    r.add(4, "new", 16);
    ASSERT_NO_FATAL_FAILURE(r.setup(true, r.used_idx()));
    for (int i = 0; i < 3 && r.used_idx() < 3; ++i) {
        r.kick();
        ASSERT_TRUE(r.wait_call());
    }
    ASSERT_EQ(r.used_idx(), 3);
    EXPECT_EQ(r.used_elem(1).id.get(), 0u);  // resubmitted first
    EXPECT_EQ(r.used_elem(2).id.get(), 4u);
    EXPECT_EQ(r.written(0, 5), "!HELD");
    EXPECT_EQ(r.written(4, 3), "NEW");
}

TEST(Inflight, PackedRoundTripIsTracked) {
    EchoDevice dev;
    FrontEnd fe(dev);
    ASSERT_NO_FATAL_FAILURE(fe.negotiate(virtq::bit(virtq::kFRingPacked)));
    auto [desc, fd] = get_inflight(fe);
    ASSERT_TRUE(fd.valid());
    Mapped m(fd.get(), desc.mmap_size);
    auto* hdr = reinterpret_cast<QueueRegionPacked*>(m.p);
    auto* ent = reinterpret_cast<DescStatePacked*>(m.p + sizeof(QueueRegionPacked));
    PackedRing r(fe, 0, kGuestBase, kSize);
    ASSERT_NO_FATAL_FAILURE(r.setup());
    r.add(3, "packed", 32);
    r.kick();
    ASSERT_TRUE(r.wait_call());
    auto u = r.take_used();
    ASSERT_TRUE(u.has_value());
    EXPECT_EQ(u->first, 3);
    EXPECT_EQ(u->second, 6u);
    EXPECT_EQ(r.written(3, 6), "PACKED");
    EXPECT_EQ(hdr->version, kInflightVersion);
    EXPECT_EQ(hdr->used_idx, 2);  // one used element covering the chain's two slots
    EXPECT_EQ(hdr->used_wrap_counter, 1);
    EXPECT_EQ(hdr->old_used_idx, 2);
    EXPECT_EQ(ent[0].inflight, 0);
    EXPECT_EQ(ent[0].num, 2);
    EXPECT_EQ(ent[0].id, 3);  // copies of the descriptors
    EXPECT_EQ(ent[1].id, 3);
}

TEST(Inflight, PackedCrashMidRequestThenResubmit) {
    EchoDevice dev;
    FrontEnd fe(dev);
    ASSERT_NO_FATAL_FAILURE(fe.negotiate(virtq::bit(virtq::kFRingPacked)));
    auto [desc, buffer] = get_inflight(fe);
    ASSERT_TRUE(buffer.valid());
    PackedRing r(fe, 0, kGuestBase, kSize);
    ASSERT_NO_FATAL_FAILURE(r.setup());
    dev.hold = true;
    r.add(1, "!held", 16);
    r.add(2, "two", 16);
    r.kick();
    ASSERT_TRUE(r.wait_call());
    auto u = r.take_used();
    ASSERT_TRUE(u.has_value());
    EXPECT_EQ(u->first, 2);

    fe.reconnect();
    dev.hold = false;
    ASSERT_NO_FATAL_FAILURE(fe.negotiate(virtq::bit(virtq::kFRingPacked)));
    const int fd = buffer.get();
    EXPECT_EQ(fe.acked(Request::kSetInflightFd, desc, std::span(&fd, 1)), 0u);
    r.add(3, "three", 16);
    // A stale base (the initial one), as QEMU 7.2 sends after a crash: the area knows better.
    ASSERT_NO_FATAL_FAILURE(r.setup(0x80008000u));
    std::vector<std::uint16_t> ids;
    for (int i = 0; i < 3 && ids.size() < 2; ++i) {
        r.kick();
        ASSERT_TRUE(r.wait_call());
        while (auto e = r.take_used()) {
            ids.push_back(e->first);
        }
    }
    ASSERT_EQ(ids.size(), 2u);
    EXPECT_EQ(ids[0], 1);  // resubmitted first
    EXPECT_EQ(ids[1], 3);
    EXPECT_EQ(r.written(1, 5), "!HELD");
    EXPECT_EQ(r.written(3, 5), "THREE");
}

TEST(Inflight, LastBatchRepairedWhenUsedIdxAdvanced) {
    // A crash after used->idx was published but before the batch's flags were cleared.
    std::vector<std::uint8_t> area(inflight_queue_bytes(kSize), 0);
    auto* hdr = reinterpret_cast<QueueRegionSplit*>(area.data());
    auto* d = reinterpret_cast<DescStateSplit*>(area.data() + sizeof(QueueRegionSplit));
    *hdr = QueueRegionSplit{0, kInflightVersion, kSize, 3, 10};
    d[3] = DescStateSplit{1, {}, 5, 1};  // batch: 3 -> 5
    d[5] = DescStateSplit{1, {}, 0, 2};
    d[7] = DescStateSplit{1, {}, 0, 3};  // genuinely inflight
    SplitInflight t(area, kSize);
    const auto heads = t.recover(12);  // two more used than recorded
    ASSERT_EQ(heads.size(), 1u);
    EXPECT_EQ(heads[0], 7);
    EXPECT_EQ(hdr->used_idx, 12);
}

}  // namespace
}  // namespace vireo::vhost_user::test
