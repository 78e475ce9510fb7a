// Hostile guests and front ends against real device models (virtio-blk, sync engine, memfd
// images) behind the vhost-user back end. Each attack targets one device while a second,
// healthy device on its own connection keeps completing I/O; the attacked device answers with
// error replies, error statuses or DEVICE_NEEDS_RESET, and the process survives. Guest regions
// are fenced by guard pages (GuestMemory), so any stray access would fault; run under ASan too.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <thread>

#include "../vhost_user/front_end.hpp"
#include "devices/blk.hpp"
#include "vhost_user/backend.hpp"

namespace vireo::vhost_user::test {
namespace {

constexpr std::uint16_t kSize = 16;
constexpr std::uint64_t kRingBase = kGuestBase;

std::unique_ptr<dev::BlkDevice> make_blk(std::uint64_t bytes = 1 << 20) {
    UniqueFd fd(::memfd_create("hostile-blk", MFD_CLOEXEC));
    EXPECT_EQ(::ftruncate(fd.get(), static_cast<off_t>(bytes)), 0);
    dev::BlkOptions o;
    o.path = "/proc/self/fd/" + std::to_string(fd.get());
    o.engine = dev::BlkEngine::kSync;
    o.serial = "hostile";
    auto d = dev::BlkDevice::open(o);  // opens its own descriptor: ours may close
    EXPECT_TRUE(d.has_value()) << (d ? "" : d.error());
    return d ? std::move(*d) : nullptr;
}

// A front end with one started blk ring, able to issue GET_ID requests and check them.
struct BlkSession {
    std::unique_ptr<dev::BlkDevice> dev = make_blk();
    FrontEnd fe{*dev};
    SplitRing ring{fe, 0, kRingBase, kSize};
    std::uint16_t next_head = 0;

    BlkSession() {
        const std::uint64_t pf = fe.get_u64(Request::kGetProtocolFeatures);
        EXPECT_TRUE(fe.send(Request::kSetProtocolFeatures, pf));
        negotiate_and_start();
    }
    void negotiate_and_start() {
        ASSERT_NO_FATAL_FAILURE(fe.negotiate());
        ASSERT_NO_FATAL_FAILURE(ring.setup());
    }
    Backend& backend() { return fe.conn().backend(); }
    bool needs_reset() { return (backend().status() & kStatusNeedsReset) != 0; }

    // GET_ID (§5.2.6): header, 20 writable id bytes, status. Three descriptors from `head`.
    std::uint16_t post_get_id() {
        const std::uint16_t h = next_head;
        next_head = static_cast<std::uint16_t>((next_head + 3) % (kSize - kSize % 3));
        dev::BlkReqHeader hdr{};
        hdr.type.set(dev::kBlkTGetId);
        std::memcpy(fe.at(ring.buffer(h, 0)), &hdr, sizeof hdr);
        std::memset(fe.at(ring.buffer(h, 1)), 0xff, 256);
        ring.write_desc(h, ring.buffer(h, 0), sizeof hdr, virtq::kDescFNext, h + 1);
        ring.write_desc(h + 1, ring.buffer(h, 1), dev::kBlkIdBytes,
                        virtq::kDescFNext | virtq::kDescFWrite, h + 2);
        ring.write_desc(h + 2, ring.buffer(h, 1) + 128, 1, virtq::kDescFWrite, 0);
        ring.make_available(h);
        ring.kick();
        return h;
    }
    // One GET_ID round trip: the id is the serial and the status OK.
    bool round_trip() {
        const std::uint16_t before = ring.used_idx();
        const std::uint16_t h = post_get_id();
        for (int i = 0; i < 100 && ring.used_idx() == before; ++i) {
            if (!ring.wait_call()) {
                return false;
            }
        }
        const std::uint8_t* id = fe.at(ring.buffer(h, 1));
        return ring.used_idx() != before && std::memcmp(id, "hostile", 7) == 0 &&
               fe.at(ring.buffer(h, 1) + 128)[0] == dev::kBlkSOk;
    }
};

// Waits (bounded; not a timing assertion) until the session's device reports NEEDS_RESET.
bool eventually_needs_reset(BlkSession& s) {
    for (int i = 0; i < 500; ++i) {
        if (s.needs_reset()) {
            return true;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
}

class HostileGuest : public ::testing::Test {
  protected:
    BlkSession healthy;
    void SetUp() override { ASSERT_TRUE(healthy.round_trip()); }
    void TearDown() override {
        EXPECT_TRUE(healthy.round_trip()) << "the healthy device stopped serving";
        EXPECT_FALSE(healthy.needs_reset());
    }
};

TEST_F(HostileGuest, DescriptorLoopNeedsReset) {
    BlkSession bad;
    bad.ring.write_desc(0, bad.ring.buffer(0, 0), 16, virtq::kDescFNext, 1);
    bad.ring.write_desc(1, bad.ring.buffer(0, 1), 16, virtq::kDescFNext, 0);  // back to 0
    bad.ring.make_available(0);
    bad.ring.kick();
    EXPECT_TRUE(eventually_needs_reset(bad));
    EXPECT_TRUE(healthy.round_trip());
}

TEST_F(HostileGuest, DescriptorOutsideGuestMemory) {
    BlkSession bad;
    // Header outside every region, then a status byte at the very end of memory + 1.
    bad.ring.write_desc(0, kGuestBase + kGuestSize - 4, 16, virtq::kDescFNext, 1);
    bad.ring.write_desc(1, kGuestBase + kGuestSize, 1, virtq::kDescFWrite, 0);
    bad.ring.make_available(0);
    bad.ring.kick();
    // Either the queue fails (NEEDS_RESET) or the request is refused without touching memory
    // outside the region; both leave the healthy device alone.
    eventually_needs_reset(bad);
    EXPECT_TRUE(healthy.round_trip());
}

TEST_F(HostileGuest, HugeLengthsAndWrappingAddresses) {
    BlkSession bad;
    dev::BlkReqHeader hdr{};
    hdr.type.set(dev::kBlkTIn);
    std::memcpy(bad.fe.at(bad.ring.buffer(0, 0)), &hdr, sizeof hdr);
    bad.ring.write_desc(0, bad.ring.buffer(0, 0), sizeof hdr, virtq::kDescFNext, 1);
    bad.ring.write_desc(1, ~0ull - 8, 0xffffffffu, virtq::kDescFNext | virtq::kDescFWrite, 2);
    bad.ring.write_desc(2, bad.ring.buffer(0, 1), 1, virtq::kDescFWrite, 0);
    bad.ring.make_available(0);
    bad.ring.kick();
    eventually_needs_reset(bad);
    EXPECT_TRUE(healthy.round_trip());
}

TEST_F(HostileGuest, AvailIndexJumpNeedsReset) {
    BlkSession bad;
    // avail.idx far beyond next_avail + size (§2.7.6: the driver never does that).
    auto* idx =
        reinterpret_cast<std::uint16_t*>(bad.fe.at(kRingBase + virtq::split_desc_bytes(kSize) + 2));
    __atomic_store_n(idx, static_cast<std::uint16_t>(1000), __ATOMIC_RELEASE);
    bad.ring.kick();
    EXPECT_TRUE(eventually_needs_reset(bad));
    EXPECT_TRUE(healthy.round_trip());
}

TEST_F(HostileGuest, OverlappingAndHugeMemoryTables) {
    BlkSession bad;
    struct {
        MemTableHeader h;
        MemRegion r[2];
    } overlap{{2, 0},
              {{kGuestBase, kGuestSize, bad.fe.uva(kGuestBase), 0},
               {kGuestBase + 4096, kGuestSize, bad.fe.uva(kGuestBase), 0}}};
    const int fds[2] = {bad.fe.mem_fd(), bad.fe.mem_fd()};
    EXPECT_NE(bad.fe.acked(Request::kSetMemTable, overlap, std::span(fds, 2)), 0u);
    struct {
        MemTableHeader h;
        MemRegion r;
    } huge{{1, 0}, {kGuestBase, 1ull << 62, bad.fe.uva(kGuestBase), 0}};
    EXPECT_NE(bad.fe.acked(Request::kSetMemTable, huge, std::span(fds, 1)), 0u);
    huge.r = {~0ull - 4095, 8192, bad.fe.uva(kGuestBase), 0};  // wraps around 2^64
    EXPECT_NE(bad.fe.acked(Request::kSetMemTable, huge, std::span(fds, 1)), 0u);
    EXPECT_TRUE(healthy.round_trip());
}

// A region larger than the file behind it: touching the tail would raise SIGBUS in the back end
// (a crash of every device it serves), so the table must be refused up front.
TEST_F(HostileGuest, RegionLargerThanItsFileIsRefused) {
    BlkSession bad;
    UniqueFd small(::memfd_create("small", MFD_CLOEXEC));
    ASSERT_EQ(::ftruncate(small.get(), 4096), 0);
    struct {
        MemTableHeader h;
        MemRegion r;
    } t{{1, 0}, {kGuestBase, kGuestSize, bad.fe.uva(kGuestBase), 0}};
    const int fd = small.get();
    EXPECT_NE(bad.fe.acked(Request::kSetMemTable, t, std::span(&fd, 1)), 0u);
    // The same with an offset past the end of the file.
    t.r = {kGuestBase, 4096, bad.fe.uva(kGuestBase), 8192};
    EXPECT_NE(bad.fe.acked(Request::kSetMemTable, t, std::span(&fd, 1)), 0u);
    EXPECT_TRUE(healthy.round_trip());
}

TEST_F(HostileGuest, InflightAreaSmallerThanClaimedIsRefused) {
    BlkSession bad;
    UniqueFd small(::memfd_create("small-inflight", MFD_CLOEXEC));
    ASSERT_EQ(::ftruncate(small.get(), 64), 0);
    const InflightDesc d{1 << 20, 0, 1, kSize, 0};
    const int fd = small.get();
    EXPECT_NE(bad.fe.acked(Request::kSetInflightFd, d, std::span(&fd, 1)), 0u);
    EXPECT_TRUE(healthy.round_trip());
}

TEST_F(HostileGuest, CorruptedInflightStateAfterReconnect) {
    BlkSession bad;
    const InflightDesc want{0, 0, 1, kSize, 0};
    ASSERT_TRUE(bad.fe.send(Request::kGetInflightFd, want, {}, false));
    auto rep = bad.fe.reply();
    ASSERT_TRUE(rep.has_value());
    ASSERT_EQ(rep->fds.size(), 1u);
    InflightDesc got{};
    std::memcpy(&got, rep->payload.data(), std::min(sizeof got, rep->payload.size()));
    // Scribble over the whole area: bogus inflight flags, counters, heads, free lists.
    void* p = ::mmap(nullptr, got.mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, rep->fds[0].get(),
                     static_cast<off_t>(got.mmap_offset));
    ASSERT_NE(p, MAP_FAILED);
    std::mt19937 rng(7);
    for (std::uint64_t i = 0; i < got.mmap_size; ++i) {
        static_cast<std::uint8_t*>(p)[i] = static_cast<std::uint8_t>(rng());
    }
    ::munmap(p, got.mmap_size);
    // Reconnect as QEMU does after a back-end restart and hand the corrupted area back.
    bad.fe.reconnect();
    const std::uint64_t pf = bad.fe.get_u64(Request::kGetProtocolFeatures);
    ASSERT_TRUE(bad.fe.send(Request::kSetProtocolFeatures, pf));
    const int fd = rep->fds[0].get();
    bad.fe.acked(Request::kSetInflightFd, got, std::span(&fd, 1));  // either answer is fine
    ASSERT_NO_FATAL_FAILURE(bad.fe.negotiate());
    ASSERT_NO_FATAL_FAILURE(bad.ring.setup());
    bad.ring.kick();
    eventually_needs_reset(bad);  // a corrupted area may fail the ring; it must not crash
    EXPECT_TRUE(healthy.round_trip());
}

// Random messages (wrong sizes, fd counts, unknown requests, garbage payloads), seeded so a
// failure reproduces; the back end may hang up, never crash.
TEST_F(HostileGuest, GarbageMessages) {
    std::mt19937 rng(12345);
    for (int round = 0; round < 20; ++round) {
        BlkSession bad;
        UniqueFd extra(::memfd_create("garbage", MFD_CLOEXEC));
        ASSERT_EQ(::ftruncate(extra.get(), 1 << 16), 0);
        for (int m = 0; m < 50 && bad.fe.alive(); ++m) {
            std::vector<std::uint8_t> payload(rng() % 300);
            for (auto& b : payload) {
                b = static_cast<std::uint8_t>(rng());
            }
            const int fds[3] = {extra.get(), bad.ring.kick_fd(), bad.ring.call_fd()};
            const std::uint32_t request = 1 + rng() % 42;
            if (request == static_cast<std::uint32_t>(Request::kSetLogBase) ||
                request == static_cast<std::uint32_t>(Request::kSetLogFd)) {
                continue;  // logging is not offered; the validator refuses both anyway
            }
            bad.fe.send_raw(request, payload, std::span(fds, rng() % 4),
                            kVersion | ((rng() & 1) != 0 ? kFlagNeedReply : 0));
            while (bad.fe.alive() && bad.fe.reply()) {
            }
        }
    }
    EXPECT_TRUE(healthy.round_trip());
}

// A guest flooding one device with notifications (and requests) does not starve another device
// of the same process: the healthy device's requests all complete meanwhile.
TEST_F(HostileGuest, KickFloodDoesNotStarveAnotherDevice) {
    BlkSession flooded;
    for (int i = 0; i < 5; ++i) {
        flooded.post_get_id();  // real work for the flooded queue too
    }
    std::atomic<bool> stop{false};
    std::atomic<std::uint64_t> kicks{0};
    std::thread flood([&] {
        while (!stop.load(std::memory_order_relaxed)) {
            ::eventfd_write(flooded.ring.kick_fd(), 1);
            kicks.fetch_add(1, std::memory_order_relaxed);
        }
    });
    while (kicks.load(std::memory_order_relaxed) < 10000) {
        std::this_thread::yield();  // the flood is on before the healthy device is measured
    }
    int completed = 0;
    for (int i = 0; i < 200; ++i) {
        completed += healthy.round_trip() ? 1 : 0;
    }
    stop = true;
    flood.join();
    EXPECT_EQ(completed, 200);
    EXPECT_FALSE(flooded.needs_reset());
    EXPECT_TRUE(flooded.round_trip());  // and the flooded device itself still works
}

}  // namespace
}  // namespace vireo::vhost_user::test
