// Test-side guest: RAM in a GuestMemory region, a bump allocator for device-visible buffers,
// register helpers over a Bus, interrupt recorders, and a virtio-blk driver written against a
// transport-neutral VirtioGuest interface (implemented for mmio and pci in the tests), using the
// freestanding SplitDriver exactly as a bare-metal guest would.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/log.hpp"
#include "devices/blk.hpp"
#include "driver/split_driver.hpp"
#include "memory/guest_memory.hpp"
#include "transport/bus.hpp"
#include "transport/device_status.hpp"
#include "transport/irq.hpp"
#include "virtq/features.hpp"

namespace vireo::transport::test {

using virtq::bit;

inline constexpr std::uint64_t kRamSize = 16ull << 20;

struct GuestRam {
    GuestMemory mem;
    std::uint8_t* host = nullptr;
    std::uint64_t next = 0x100000;  // allocations above 1 MiB

    GuestRam() {
        if (!mem.add_anonymous(0, kRamSize)) {
            throw std::runtime_error("guest memory");
        }
        host = mem.translate(0, kRamSize);
    }
    std::uint64_t alloc(std::uint64_t size, std::uint64_t align = 4096) {
        next = (next + align - 1) & ~(align - 1);
        const std::uint64_t at = next;
        next += size;
        return at;
    }
    std::uint8_t* at(std::uint64_t gpa) { return host + gpa; }
    driver::DmaWindow window() const { return driver::DmaWindow(host, 0, kRamSize); }
};

// Register access as a guest does it.
struct Regs {
    const Bus& bus;
    std::uint64_t read(std::uint64_t addr, std::size_t size) const {
        std::uint8_t b[8] = {};
        bus.read(addr, std::span(b, size));
        std::uint64_t v = 0;
        std::memcpy(&v, b, size);
        return v;
    }
    void write(std::uint64_t addr, std::size_t size, std::uint64_t v) const {
        std::uint8_t b[8];
        std::memcpy(b, &v, 8);
        bus.write(addr, std::span<const std::uint8_t>(b, size));
    }
    std::uint32_t r32(std::uint64_t a) const { return static_cast<std::uint32_t>(read(a, 4)); }
    std::uint16_t r16(std::uint64_t a) const { return static_cast<std::uint16_t>(read(a, 2)); }
    std::uint8_t r8(std::uint64_t a) const { return static_cast<std::uint8_t>(read(a, 1)); }
    void w32(std::uint64_t a, std::uint32_t v) const { write(a, 4, v); }
    void w16(std::uint64_t a, std::uint16_t v) const { write(a, 2, v); }
    void w8(std::uint64_t a, std::uint8_t v) const { write(a, 1, v); }
};

class RecordingLine final : public IrqLine {
  public:
    void set_level(bool high) override {
        if (high && !level.exchange(true)) {
            ++rising;
        } else if (!high) {
            level = false;
        }
    }
    std::atomic<bool> level{false};
    std::atomic<int> rising{0};
};

class RecordingMsi final : public MsiSink {
  public:
    struct Msg {
        std::uint64_t addr;
        std::uint32_t data;
    };
    void send(std::uint64_t addr, std::uint32_t data) override {
        const std::lock_guard lock(mu);
        msgs.push_back({addr, data});
    }
    std::vector<Msg> snapshot() const {
        const std::lock_guard lock(mu);
        return msgs;
    }
    bool has(std::uint64_t addr, std::uint32_t data) const {
        for (const Msg& m : snapshot()) {
            if (m.addr == addr && m.data == data) {
                return true;
            }
        }
        return false;
    }
    mutable std::mutex mu;
    std::vector<Msg> msgs;
};

// Polls `pred` until it holds or ~10 s pass (a hang guard, not a timing assertion).
template <typename P>
bool eventually(P pred) {
    for (int i = 0; i < 10000; ++i) {
        if (pred()) {
            return true;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return pred();
}

// Silences the expected warnings of hostile-guest tests; counts them instead.
struct QuietLog {
    std::shared_ptr<std::atomic<int>> lines = std::make_shared<std::atomic<int>>(0);
    QuietLog() {
        auto l = lines;
        log::set_sink([l](log::Level, std::string_view) { ++*l; });
    }
    ~QuietLog() { log::set_sink({}); }
};

// A temp raw image for BlkDevice.
struct TempImage {
    std::string path;
    int fd = -1;
    explicit TempImage(std::uint64_t bytes) {
        char tmpl[] = "/tmp/vireo-transport-XXXXXX";
        fd = ::mkstemp(tmpl);
        path = tmpl;
        if (fd < 0 || ::ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
            throw std::runtime_error("temp image");
        }
    }
    ~TempImage() {
        ::close(fd);
        ::unlink(path.c_str());
    }
};

inline std::unique_ptr<dev::BlkDevice> open_blk(const std::string& path) {
    dev::BlkOptions o;
    o.path = path;
    o.engine = dev::BlkEngine::kSync;
    o.queue_size = 128;
    auto d = dev::BlkDevice::open(o);
    if (!d) {
        throw std::runtime_error(d.error());
    }
    return std::move(*d);
}

// What the blk driver needs from a transport, in guest terms.
class VirtioGuest {
  public:
    virtual ~VirtioGuest() = default;
    virtual std::uint8_t status() = 0;
    virtual void set_status(std::uint8_t s) = 0;
    virtual std::uint64_t device_features() = 0;
    virtual void driver_features(std::uint64_t f) = 0;
    virtual std::uint16_t queue_max(std::uint16_t q) = 0;
    // Programs queue q and makes it ready; returns whether the device accepted it.
    virtual bool setup_queue(std::uint16_t q, const virtq::QueueConfig& cfg) = 0;
    virtual void notify(std::uint16_t q) = 0;
    virtual std::uint32_t config32(std::uint32_t off) = 0;
    // Acknowledges interrupts; returns the cause bits (ISR / InterruptStatus semantics).
    virtual std::uint32_t ack_interrupt() = 0;
    virtual bool modern() const { return true; }

    // §3.1.1 steps 1–6; true if the device accepted FEATURES_OK (modern) / the features.
    bool negotiate(std::uint64_t want) {
        set_status(0);
        set_status(kStatusAcknowledge);
        set_status(kStatusAcknowledge | kStatusDriver);
        driver_features(want & device_features());
        if (!modern()) {
            return true;
        }
        set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
        return (status() & kStatusFeaturesOk) != 0;
    }
};

// The guest side of a virtio-blk device on queue 0.
class BlkDriver {
  public:
    static constexpr std::uint16_t kSize = 64;

    BlkDriver(VirtioGuest& t, GuestRam& ram) : t_(t), ram_(ram) {}

    // Full initialisation: negotiation, queue 0, DRIVER_OK.
    void init(std::uint64_t features = bit(virtq::kFVersion1)) {
        ASSERT_TRUE(t_.negotiate(features));
        setup();
        const std::uint8_t s = t_.modern() ? kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk
                                           : kStatusAcknowledge | kStatusDriver;
        t_.set_status(s | kStatusDriverOk);
        ASSERT_EQ(t_.status() & kStatusDriverOk, kStatusDriverOk);
    }
    void setup(std::uint64_t features = bit(virtq::kFVersion1)) {
        ring_ = ram_.alloc(driver::split_ring_bytes(kSize));
        ASSERT_EQ(vq_.init(kSize, driver::DriverFeatures::from_bits(features), ram_.window(),
                           {ram_.at(ring_), driver::split_ring_bytes(kSize)}),
                  driver::DriverError::kOk);
        ASSERT_GE(t_.queue_max(0), kSize);
        ASSERT_TRUE(t_.setup_queue(0, vq_.config()));
    }

    // One request, waited for by polling the used ring. Returns the status byte.
    std::uint8_t request(std::uint32_t type, std::uint64_t sector, std::uint8_t* data,
                         std::uint32_t len) {
        const std::uint64_t hdr = ram_.alloc(16, 16);
        const std::uint64_t buf = ram_.alloc(len == 0 ? 1 : len, 512);
        const std::uint64_t st = ram_.alloc(1, 1);
        dev::BlkReqHeader h{};
        h.type.set(type);
        h.sector.set(sector);
        std::memcpy(ram_.at(hdr), &h, sizeof h);
        *ram_.at(st) = 0xff;
        const bool write = type == dev::kBlkTOut;
        if (write) {
            std::memcpy(ram_.at(buf), data, len);
        }
        driver::Segment out[2] = {{hdr, 16}, {buf, len}};
        driver::Segment in[2] = {{buf, len}, {st, 1}};
        int token = 0;
        const auto e = write ? vq_.add_buf({out, 2}, {in + 1, 1}, &token)
                             : vq_.add_buf({out, 1}, {in, 2}, &token);
        EXPECT_EQ(e, driver::DriverError::kOk);
        if (vq_.kick_prepare()) {
            t_.notify(0);
        }
        std::uint32_t used = 0;
        void* got = nullptr;
        EXPECT_TRUE(eventually([&] { return (got = vq_.get_buf(&used)) != nullptr; }));
        EXPECT_EQ(got, &token);
        if (!write) {
            std::memcpy(data, ram_.at(buf), len);
        }
        return *ram_.at(st);
    }

    driver::SplitDriver<kSize>& vq() { return vq_; }
    std::uint64_t ring() const { return ring_; }

  private:
    VirtioGuest& t_;
    GuestRam& ram_;
    std::uint64_t ring_ = 0;
    driver::SplitDriver<kSize> vq_;
};

// Writes sector 3 with a pattern, reads it back, and checks the image file too.
inline void blk_round_trip(BlkDriver& d, const TempImage& img) {
    std::vector<std::uint8_t> w(dev::kSectorSize), r(dev::kSectorSize, 0);
    for (std::size_t i = 0; i < w.size(); ++i) {
        w[i] = static_cast<std::uint8_t>(i * 7 + 1);
    }
    ASSERT_EQ(d.request(dev::kBlkTOut, 3, w.data(), dev::kSectorSize), dev::kBlkSOk);
    ASSERT_EQ(d.request(dev::kBlkTIn, 3, r.data(), dev::kSectorSize), dev::kBlkSOk);
    EXPECT_EQ(w, r);
    std::vector<std::uint8_t> file(dev::kSectorSize);
    ASSERT_EQ(::pread(img.fd, file.data(), file.size(), 3 * dev::kSectorSize),
              static_cast<ssize_t>(file.size()));
    EXPECT_EQ(file, w);
}

}  // namespace vireo::transport::test
