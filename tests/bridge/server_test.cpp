// BridgeServer + BridgeClient in one process: register round trips, reply routing, hostile
// requests, interrupt requests, and memory isolation between zones.
#include "bridge/server.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "bridge/client.hpp"
#include "transport/virtio_mmio.hpp"

namespace vireo::bridge {
namespace {

using namespace std::chrono_literals;
using transport::kMmioMagic;

constexpr std::uint64_t kDev = 0xd0000000;
constexpr std::uint64_t kRam = 1 << 20;
constexpr std::uint64_t kZone2Base = 0x10000000;  // zone 2's RAM in its own address space
constexpr char kMarker[] = "VIREO-BRIDGE-MARKER";

// A device that answers reads with its offset, for hostile-request tests.
class EchoDevice final : public transport::BusDevice {
  public:
    void read(std::uint64_t offset, std::span<std::uint8_t> data) override {
        std::memcpy(data.data(), &offset, data.size());
    }
    void write(std::uint64_t, std::span<const std::uint8_t>) override { ++writes; }
    int writes = 0;
};

TEST(BridgeServe, HostileRequestsGetErrorsNeverCrash) {
    auto area = Area::create(/*vm_id=*/4, /*vcpus=*/2, 8, 8);
    ASSERT_TRUE(area);
    transport::Bus bus;
    auto echo = std::make_shared<EchoDevice>();
    ASSERT_TRUE(bus.insert(0x1000, 0x100, echo));
    ZoneStats stats;
    const ZoneDispatch zone{4, &bus, &stats};
    auto serve_one = [&](Request r) {
        ASSERT_TRUE(area->requests().try_push(r));
        EXPECT_EQ(serve_requests(*area, zone), 1u);
    };
    ReplySlot& s = area->slot(1);
    serve_one({1, 4, 0x1010, 0, 11, 4, 0, 0});
    EXPECT_EQ(s.status, kReplyOk);
    EXPECT_EQ(s.value, 0x10u);
    EXPECT_EQ(s.tag, 11u);
    EXPECT_EQ(s.state, kSlotDone);
    serve_one({1, 5, 0x1010, 0, 12, 4, 0, 0});  // another VM's id
    EXPECT_EQ(s.status, kReplyBadVm);
    EXPECT_EQ(s.value, ~0ull);
    for (std::uint8_t size : {0, 3, 5, 16, 255}) {
        serve_one({1, 4, 0x1010, 0, 13, size, 0, 0});
        EXPECT_EQ(s.status, kReplyBadSize) << int{size};
    }
    serve_one({1, 4, 0x5000, 0, 14, 4, 0, 0});  // no device there
    EXPECT_EQ(s.status, kReplyNoDevice);
    serve_one({1, 4, 0x10fe, 0, 15, 4, 1, 0});  // straddles the device's end
    EXPECT_EQ(s.status, kReplyNoDevice);
    serve_one({1, 4, ~0ull - 1, 0, 16, 8, 1, 0});  // wraps the address space
    EXPECT_EQ(s.status, kReplyNoDevice);
    EXPECT_EQ(echo->writes, 0);
    serve_one({99, 4, 0x1010, 0, 17, 4, 0, 0});  // no such reply slot: dropped
    EXPECT_EQ(stats.bad_vcpu.load(), 1u);
    EXPECT_EQ(s.tag, 16u);  // untouched by the dropped request
    EXPECT_EQ(stats.errors.load(), 9u);
}

class BridgeServerTest : public ::testing::Test {
  protected:
    void SetUp() override {
        sock_ = "/tmp/vireo-bridge-test-" + std::to_string(::getpid()) + ".sock";
        for (int i = 0; i < 2; ++i) {
            img_[i] = "/tmp/vireo-bridge-test-" + std::to_string(::getpid()) + "-" +
                      std::to_string(i) + ".img";
            const int fd = ::open(img_[i].c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
            ASSERT_GE(fd, 0);
            ASSERT_EQ(::write(fd, kMarker, sizeof(kMarker)), static_cast<ssize_t>(sizeof(kMarker)));
            ASSERT_EQ(::ftruncate(fd, 1 << 20), 0);
            ::close(fd);
            ram_[i].reset(::memfd_create("zone-ram", MFD_CLOEXEC));
            ASSERT_EQ(::ftruncate(ram_[i].get(), kRam), 0);
            void* p = ::mmap(nullptr, kRam, PROT_READ | PROT_WRITE, MAP_SHARED, ram_[i].get(), 0);
            ASSERT_NE(p, MAP_FAILED);
            host_[i] = static_cast<std::uint8_t*>(p);
        }
        BridgeConfig cfg;
        cfg.socket = sock_;
        cfg.ring_entries = 8;  // smaller than the traffic: exercises wrap-around
        for (std::uint32_t z = 1; z <= 2; ++z) {
            Zone zone;
            zone.id = z;
            zone.regions.push_back({0, z == 1 ? 0 : kZone2Base, kRam, ""});
            ZoneDevice d;
            d.where = "test";
            d.addr = kDev;
            d.irq = 5;
            d.blk.path = img_[z - 1];
            d.blk.engine = dev::BlkEngine::kSync;
            zone.devices.push_back(d);
            cfg.zones.push_back(zone);
        }
        auto s = BridgeServer::create(cfg);
        ASSERT_TRUE(s) << s.error();
        server_ = std::move(*s);
        thread_ = std::thread([this] { server_->run(/*handle_signals=*/false); });
    }
    void TearDown() override {
        if (server_) {
            server_->stop();
            thread_.join();
            server_.reset();
        }
        for (int i = 0; i < 2; ++i) {
            ::munmap(host_[i], kRam);
            ::unlink(img_[i].c_str());
        }
    }
    std::unique_ptr<BridgeClient> connect(std::uint32_t zone, std::uint32_t vcpus = 1) {
        ClientOptions o;
        o.socket = sock_;
        o.vm_id = zone;
        o.vcpus = vcpus;
        o.mem_fd = ram_[zone - 1].get();
        auto c = BridgeClient::connect(o);
        EXPECT_TRUE(c) << c.error();
        return c ? std::move(*c) : nullptr;
    }
    std::uint32_t rd(BridgeClient& c, std::uint64_t off, std::uint32_t vcpu = 0) {
        auto r = c.access(vcpu, kDev + off, 4, false);
        EXPECT_EQ(r.status, kReplyOk);
        return static_cast<std::uint32_t>(r.value);
    }
    void wr(BridgeClient& c, std::uint64_t off, std::uint32_t v) {
        EXPECT_EQ(c.access(0, kDev + off, 4, true, v).status, kReplyOk);
    }

    // Sets up queue 0 of the blk device (rings at `base` + 0x1000.., RAM mapped at `ram`) and
    // submits one IN request for sector 0 whose data buffer is at guest-physical `data`. Returns
    // the device status afterwards.
    std::uint32_t read_sector(BridgeClient& c, std::uint8_t* ram, std::uint64_t base,
                              std::uint64_t data) {
        using namespace transport;
        wr(c, kMmioStatus, 1);
        wr(c, kMmioStatus, 1 | 2);
        wr(c, kMmioDriverFeaturesSel, 1);
        wr(c, kMmioDriverFeatures, 1);  // VIRTIO_F_VERSION_1 (bit 32)
        wr(c, kMmioStatus, 1 | 2 | 8);
        wr(c, kMmioQueueSel, 0);
        wr(c, kMmioQueueNum, 8);
        wr(c, kMmioQueueDescLow, static_cast<std::uint32_t>(base + 0x1000));
        wr(c, kMmioQueueDriverLow, static_cast<std::uint32_t>(base + 0x2000));
        wr(c, kMmioQueueDeviceLow, static_cast<std::uint32_t>(base + 0x3000));
        wr(c, kMmioQueueReady, 1);
        wr(c, kMmioStatus, 1 | 2 | 8 | 4);
        struct Desc {
            std::uint64_t addr;
            std::uint32_t len;
            std::uint16_t flags, next;
        };
        const Desc d[3] = {
            {base + 0x4000, 16, 1, 1}, {data, 512, 1 | 2, 2}, {base + 0x5000, 1, 2, 0}};
        std::memcpy(ram + 0x1000, d, sizeof(d));
        std::memset(ram + 0x4000, 0, 16);  // IN, sector 0
        ram[0x5000] = 0xff;
        const std::uint16_t avail[3] = {0, 1, 0};
        std::memcpy(ram + 0x2000, avail, sizeof(avail));
        wr(c, kMmioQueueNotify, 0);
        for (int i = 0; i < 500; ++i) {
            std::uint16_t used_idx;
            std::memcpy(&used_idx, ram + 0x3002, 2);
            const std::uint32_t st = rd(c, kMmioStatus);
            if (used_idx == 1 || (st & 0x40) != 0) {
                return st;
            }
            std::this_thread::sleep_for(10ms);
        }
        return 0;
    }

    std::string sock_;
    std::string img_[2];
    UniqueFd ram_[2];
    std::uint8_t* host_[2] = {};
    std::unique_ptr<BridgeServer> server_;
    std::thread thread_;
};

TEST_F(BridgeServerTest, RegistersThroughTheBridge) {
    auto c = connect(1);
    ASSERT_TRUE(c);
    ASSERT_EQ(c->devices().size(), 1u);
    EXPECT_EQ(c->devices()[0].addr, kDev);
    EXPECT_EQ(c->devices()[0].irq, 5u);
    EXPECT_EQ(c->devices()[0].device_id, 2u);
    EXPECT_EQ(rd(*c, transport::kMmioMagicValue), kMmioMagic);
    EXPECT_EQ(rd(*c, transport::kMmioVersion), 2u);
    EXPECT_EQ(rd(*c, transport::kMmioDeviceId), 2u);
    // Outside any device: an error reply with all ones, as a missed bus read.
    auto miss = c->access(0, 0x1234, 4, false);
    EXPECT_EQ(miss.status, kReplyNoDevice);
    EXPECT_EQ(miss.value, ~0ull);
    // Many more requests than ring entries (8): wrap-around under real traffic.
    for (int i = 0; i < 200; ++i) {
        ASSERT_EQ(rd(*c, transport::kMmioMagicValue), kMmioMagic);
    }
    EXPECT_GE(server_->stats(1).requests.load(), 204u);
}

TEST_F(BridgeServerTest, RepliesReachTheVcpuThatAsked) {
    constexpr std::uint32_t kVcpus = 4;
    auto c = connect(1, kVcpus);
    ASSERT_TRUE(c);
    // Each vCPU reads its own register: a reply routed to the wrong vCPU shows up as a value.
    const std::uint64_t regs[kVcpus] = {transport::kMmioMagicValue, transport::kMmioVersion,
                                        transport::kMmioDeviceId, transport::kMmioVendorId};
    const std::uint32_t want[kVcpus] = {kMmioMagic, 2, 2, transport::kMmioVendor};
    std::atomic<int> wrong{0};
    std::vector<std::thread> vcpus;
    for (std::uint32_t v = 0; v < kVcpus; ++v) {
        vcpus.emplace_back([&, v] {
            for (int i = 0; i < 2000; ++i) {
                auto r = c->access(v, kDev + regs[v], 4, false);
                if (r.status != kReplyOk || r.value != want[v]) {
                    wrong.fetch_add(1);
                }
            }
        });
    }
    for (auto& t : vcpus) {
        t.join();
    }
    EXPECT_EQ(wrong.load(), 0);
}

TEST_F(BridgeServerTest, SecondHypervisorForAZoneIsRefusedAndRestartWorks) {
    auto c = connect(1);
    ASSERT_TRUE(c);
    ClientOptions o;
    o.socket = sock_;
    o.vm_id = 1;
    o.mem_fd = ram_[0].get();
    auto dup = BridgeClient::connect(o);
    ASSERT_FALSE(dup);
    EXPECT_NE(dup.error().find("already has a hypervisor"), std::string::npos) << dup.error();
    o.vm_id = 9;
    auto none = BridgeClient::connect(o);
    ASSERT_FALSE(none);
    EXPECT_NE(none.error().find("no zone 9"), std::string::npos) << none.error();
    // Zone 2 keeps working while zone 1's hypervisor goes away and comes back.
    auto c2 = connect(2);
    ASSERT_TRUE(c2);
    wr(*c, transport::kMmioStatus, 1);
    c.reset();
    for (int i = 0; i < 100 && !c; ++i) {
        EXPECT_EQ(rd(*c2, transport::kMmioMagicValue), kMmioMagic);
        ClientOptions r = o;
        r.vm_id = 1;
        if (auto x = BridgeClient::connect(r); x) {
            c = std::move(*x);
        } else {
            std::this_thread::sleep_for(10ms);  // the old session is still being reaped
        }
    }
    ASSERT_TRUE(c);
    EXPECT_EQ(rd(*c, transport::kMmioStatus), 0u);  // the device was reset
    EXPECT_EQ(rd(*c2, transport::kMmioMagicValue), kMmioMagic);
}

TEST_F(BridgeServerTest, MemoryTooSmallForTheConfigIsRefused) {
    UniqueFd small(::memfd_create("small", MFD_CLOEXEC));
    ASSERT_EQ(::ftruncate(small.get(), 4096), 0);
    ClientOptions o;
    o.socket = sock_;
    o.vm_id = 1;
    o.mem_fd = small.get();
    auto c = BridgeClient::connect(o);
    ASSERT_FALSE(c);
    EXPECT_NE(c.error().find("memory_region[0]"), std::string::npos) << c.error();
    o.mem_fd = -1;  // and no memory at all
    auto none = BridgeClient::connect(o);
    ASSERT_FALSE(none);
    EXPECT_NE(none.error().find("no memory fd"), std::string::npos) << none.error();
    EXPECT_TRUE(connect(1));  // the zone is still free
}

TEST_F(BridgeServerTest, BlkRequestCompletesWithInterrupt) {
    auto c = connect(1);
    ASSERT_TRUE(c);
    std::mutex mu;
    std::vector<std::pair<std::uint32_t, bool>> irqs;
    c->start_irq_thread([&](std::uint32_t irq, bool level) {
        const std::lock_guard lock(mu);
        irqs.emplace_back(irq, level);
    });
    const std::uint32_t st = read_sector(*c, host_[0], 0, 0x6000);
    EXPECT_EQ(st & 0x40, 0u);
    EXPECT_EQ(host_[0][0x5000], 0);  // VIRTIO_BLK_S_OK
    EXPECT_EQ(std::memcmp(host_[0] + 0x6000, kMarker, sizeof(kMarker)), 0);
    for (int i = 0; i < 100; ++i) {
        {
            const std::lock_guard lock(mu);
            if (!irqs.empty()) {
                break;
            }
        }
        std::this_thread::sleep_for(10ms);
    }
    const std::lock_guard lock(mu);
    ASSERT_FALSE(irqs.empty());
    EXPECT_EQ(irqs[0], std::make_pair(5u, true));
}

TEST_F(BridgeServerTest, DescriptorIntoAnotherZoneFails) {
    auto c1 = connect(1);
    auto c2 = connect(2);
    ASSERT_TRUE(c1 && c2);
    // Zone 1 points its data buffer at kZone2Base, where zone 2's RAM lives (in zone 2's
    // address space). Zone 1's GuestMemory has nothing there: the request must fail.
    const std::uint32_t st = read_sector(*c1, host_[0], 0, kZone2Base);
    const bool failed = (st & 0x40) != 0 || host_[0][0x5000] != 0;
    EXPECT_TRUE(failed) << "status " << st << " blk status " << int{host_[0][0x5000]};
    EXPECT_NE(std::memcmp(host_[1], kMarker, sizeof(kMarker)), 0);  // zone 2 untouched
    // And zone 2 itself can use that address.
    const std::uint32_t st2 = read_sector(*c2, host_[1], kZone2Base, kZone2Base + 0x6000);
    EXPECT_EQ(st2 & 0x40, 0u);
    EXPECT_EQ(std::memcmp(host_[1] + 0x6000, kMarker, sizeof(kMarker)), 0);
}

}  // namespace
}  // namespace vireo::bridge
