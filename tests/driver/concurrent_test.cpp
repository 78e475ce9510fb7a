// Driver and device on two threads, sleeping only through the real suppression protocol: a side
// that finds no work re-enables notifications, re-checks, and then waits on a doorbell that the
// other side rings only when kick_prepare()/publish() says so. A missing barrier or a wrong
// suppression decision shows up as a lost wakeup: both threads wait forever. The waits give up
// after a generous no-progress limit so a bug fails the test instead of hanging CI; nothing
// here measures time.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>

#include "loopback_env.hpp"

namespace vireo::driver::testing {
namespace {

constexpr int kChains = 200'000;
constexpr std::uint16_t kSize = 8;
constexpr std::uint16_t kSlots = kSize / 2;  // buffers of two descriptors each
constexpr auto kNoProgressLimit = std::chrono::seconds(60);

struct Doorbell {
    std::atomic<std::uint64_t> rings{0};
    void ring() { rings.fetch_add(1, std::memory_order_seq_cst); }
};

// Waits until the bell rang since `seen` or `stop` is set; false on the no-progress limit.
bool wait(const Doorbell& bell, std::uint64_t seen, const std::atomic<bool>& stop) {
    const auto deadline = std::chrono::steady_clock::now() + kNoProgressLimit;
    while (bell.rings.load(std::memory_order_seq_cst) == seen && !stop.load()) {
        if (std::chrono::steady_clock::now() > deadline) {
            return false;
        }
        std::this_thread::yield();
    }
    return true;
}

template <typename Driver>
void run(bool event_idx) {
    Loopback<Driver> lb;
    lb.init(kSize, {event_idx, false});
    if (::testing::Test::HasFatalFailure()) {
        return;
    }
    // Buffer slot per ring slot: 8 readable bytes (a sequence number), 8 writable.
    std::uint8_t* data = lb.shm.alloc(16 * kSlots);
    Doorbell to_device;
    Doorbell to_driver;
    std::atomic<bool> stop{false};
    std::atomic<bool> device_failed{false};
    std::atomic<long> device_sleeps{0};
    long driver_sleeps = 0;

    std::thread device([&] {
        virtq::DescriptorChain chain;
        while (!stop.load()) {
            lb.device.disable_notifications();
            bool any = false;
            while (true) {
                auto r = lb.device.pop(lb.shm.mem, chain);
                if (!r) {
                    device_failed = true;
                    stop = true;
                    return;
                }
                if (!*r) {
                    break;
                }
                if (chain.readable().size() != 1 || chain.writable().size() != 1) {
                    device_failed = true;
                    stop = true;
                    return;
                }
                std::uint64_t seq;
                std::memcpy(&seq, chain.readable()[0].iov_base, sizeof seq);
                seq = ~seq;
                std::memcpy(chain.writable()[0].iov_base, &seq, sizeof seq);
                lb.device.push(chain.token(), sizeof seq);
                any = true;
            }
            if (any && lb.device.publish()) {
                to_driver.ring();
            }
            const std::uint64_t seen = to_device.rings.load();
            if (lb.device.enable_notifications()) {
                continue;  // the driver published while we were enabling
            }
            ++device_sleeps;
            if (!wait(to_device, seen, stop)) {
                device_failed = true;  // lost kick
                stop = true;
                return;
            }
        }
    });

    std::uint64_t tokens[kSlots];
    bool busy[kSlots] = {};
    int submitted = 0;
    int completed = 0;
    bool lost_interrupt = false;
    bool driver_failed = false;
    while (completed < kChains && !stop.load()) {
        // Submit into every free slot.
        bool added = false;
        for (std::uint16_t i = 0; i < kSlots && submitted < kChains; ++i) {
            if (busy[i]) {
                continue;
            }
            std::uint8_t* p = data + 16 * i;
            const std::uint64_t seq = static_cast<std::uint64_t>(submitted) * 2654435761u;
            std::memcpy(p, &seq, sizeof seq);
            std::memset(p + 8, 0, 8);
            tokens[i] = i;
            const Segment out[] = {{lb.shm.gpa(p), 8}};
            const Segment in[] = {{lb.shm.gpa(p + 8), 8}};
            if (lb.driver.add_buf(out, in, &tokens[i]) != DriverError::kOk) {
                driver_failed = true;
                break;
            }
            busy[i] = true;
            ++submitted;
            added = true;
        }
        if (added && lb.driver.kick_prepare()) {
            to_device.ring();
        }
        lb.driver.disable_cb();
        bool reaped = false;
        std::uint32_t len = 0;
        while (void* t = lb.driver.get_buf(&len)) {
            const auto i = *static_cast<std::uint64_t*>(t);
            std::uint64_t seq;
            std::uint64_t got;
            std::memcpy(&seq, data + 16 * i, 8);
            std::memcpy(&got, data + 16 * i + 8, 8);
            EXPECT_EQ(len, 8u);
            EXPECT_EQ(got, ~seq);
            driver_failed |= len != 8 || got != ~seq;
            busy[i] = false;
            ++completed;
            reaped = true;
        }
        if (driver_failed || lb.driver.error() != DriverError::kOk) {
            driver_failed = true;
            break;
        }
        // Every slot is busy (or everything is submitted) and nothing came back: sleep.
        if (reaped) {
            continue;
        }
        const std::uint64_t seen = to_driver.rings.load();
        if (!lb.driver.enable_cb()) {
            continue;  // the device published while we were enabling
        }
        ++driver_sleeps;
        if (!wait(to_driver, seen, stop)) {
            lost_interrupt = true;
            break;
        }
    }
    stop = true;
    to_device.ring();
    device.join();
    EXPECT_FALSE(device_failed.load()) << "device failed or missed a kick";
    EXPECT_FALSE(lost_interrupt) << "driver missed an interrupt after " << completed;
    EXPECT_FALSE(driver_failed) << to_string(lb.driver.error());
    EXPECT_EQ(completed, kChains);
    // How often each side went through the sleep protocol (the path this test is about).
    ::testing::Test::RecordProperty("device_sleeps", std::to_string(device_sleeps.load()));
    ::testing::Test::RecordProperty("driver_sleeps", std::to_string(driver_sleeps));
}

TEST(DriverConcurrent, SplitFlags) {
    run<SplitDriver<kSize>>(false);
}
TEST(DriverConcurrent, SplitEventIdx) {
    run<SplitDriver<kSize>>(true);
}
TEST(DriverConcurrent, PackedFlags) {
    run<PackedDriver<kSize>>(false);
}
TEST(DriverConcurrent, PackedEventIdx) {
    run<PackedDriver<kSize>>(true);
}

}  // namespace
}  // namespace vireo::driver::testing
