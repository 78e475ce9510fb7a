// virtio-mmio (§4.2) driven through the bus exactly as a guest would, against a real
// virtio-blk device on a temp image.
#include "guest.hpp"
#include "transport/virtio_mmio.hpp"

namespace vireo::transport::test {
namespace {

constexpr std::uint64_t kBase = 0xd000'0000;

class MmioGuest final : public VirtioGuest {
  public:
    MmioGuest(const Bus& bus, bool legacy) : r{bus}, legacy_(legacy) {}
    std::uint32_t reg(std::uint64_t off) { return r.r32(kBase + off); }
    void set(std::uint64_t off, std::uint32_t v) { r.w32(kBase + off, v); }

    std::uint8_t status() override { return static_cast<std::uint8_t>(reg(kMmioStatus)); }
    void set_status(std::uint8_t s) override { set(kMmioStatus, s); }
    std::uint64_t device_features() override {
        set(kMmioDeviceFeaturesSel, 0);
        const std::uint64_t lo = reg(kMmioDeviceFeatures);
        set(kMmioDeviceFeaturesSel, 1);
        return lo | (std::uint64_t{reg(kMmioDeviceFeatures)} << 32);
    }
    void driver_features(std::uint64_t f) override {
        set(kMmioDriverFeaturesSel, 0);
        set(kMmioDriverFeatures, static_cast<std::uint32_t>(f));
        set(kMmioDriverFeaturesSel, 1);
        set(kMmioDriverFeatures, static_cast<std::uint32_t>(f >> 32));
    }
    std::uint16_t queue_max(std::uint16_t q) override {
        set(kMmioQueueSel, q);
        return static_cast<std::uint16_t>(reg(kMmioQueueNumMax));
    }
    bool setup_queue(std::uint16_t q, const virtq::QueueConfig& c) override {
        set(kMmioQueueSel, q);
        set(kMmioQueueNum, c.size);
        if (legacy_) {
            // The driver's layout (used ring aligned to 4) is the legacy one with QueueAlign 4.
            set(kMmioGuestPageSize, 4096);
            set(kMmioQueueAlign, 4);
            set(kMmioQueuePfn, static_cast<std::uint32_t>(c.desc_addr / 4096));
            return reg(kMmioQueuePfn) != 0;
        }
        set(kMmioQueueDescLow, static_cast<std::uint32_t>(c.desc_addr));
        set(kMmioQueueDescHigh, static_cast<std::uint32_t>(c.desc_addr >> 32));
        set(kMmioQueueDriverLow, static_cast<std::uint32_t>(c.driver_addr));
        set(kMmioQueueDriverHigh, static_cast<std::uint32_t>(c.driver_addr >> 32));
        set(kMmioQueueDeviceLow, static_cast<std::uint32_t>(c.device_addr));
        set(kMmioQueueDeviceHigh, static_cast<std::uint32_t>(c.device_addr >> 32));
        set(kMmioQueueReady, 1);
        return reg(kMmioQueueReady) == 1;
    }
    void notify(std::uint16_t q) override { set(kMmioQueueNotify, q); }
    std::uint32_t config32(std::uint32_t off) override { return reg(kMmioConfig + off); }
    std::uint32_t ack_interrupt() override {
        const std::uint32_t s = reg(kMmioInterruptStatus);
        set(kMmioInterruptAck, s);
        return s;
    }
    bool modern() const override { return !legacy_; }

    Regs r;

  private:
    bool legacy_;
};

class MmioTest : public ::testing::Test {
  protected:
    explicit MmioTest(bool legacy = false) { build(legacy); }
    void build(bool legacy) {
        mmio.reset();
        if (bus.size() != 0) {
            bus.remove(kBase);
        }
        mmio = std::make_shared<VirtioMmio>(*blk, ram.mem, line,
                                            legacy ? MmioVersion::kLegacy : MmioVersion::kModern);
        ASSERT_TRUE(bus.insert(kBase, kMmioSize, mmio));
        guest = std::make_unique<MmioGuest>(bus, legacy);
    }

    TempImage img{1 << 20};
    GuestRam ram;
    std::unique_ptr<dev::BlkDevice> blk = open_blk(img.path);
    RecordingLine line;
    Bus bus;
    std::shared_ptr<VirtioMmio> mmio;
    std::unique_ptr<MmioGuest> guest;
};

TEST_F(MmioTest, Identification) {
    EXPECT_EQ(guest->reg(kMmioMagicValue), kMmioMagic);
    EXPECT_EQ(guest->reg(kMmioVersion), 2u);
    EXPECT_EQ(guest->reg(kMmioDeviceId), dev::kIdBlock);
    EXPECT_EQ(guest->reg(kMmioVendorId), kMmioVendor);
    // No shared memory regions: length reads all ones (§4.2.2).
    guest->set(kMmioShmSel, 0);
    EXPECT_EQ(guest->reg(kMmioShmLenLow), 0xffff'ffffu);
    EXPECT_EQ(guest->reg(kMmioShmLenHigh), 0xffff'ffffu);
    // Capacity through the config space, as two 32-bit halves.
    EXPECT_EQ(guest->config32(0), (1u << 20) / 512);
    EXPECT_EQ(guest->config32(4), 0u);
}

TEST_F(MmioTest, BlkRoundTripAndUsedBufferInterrupt) {
    BlkDriver d(*guest, ram);
    d.init();
    blk_round_trip(d, img);
    // The used-buffer interrupt: InterruptStatus bit 0, the line high until acknowledged.
    EXPECT_TRUE(eventually([&] { return line.level.load(); }));
    EXPECT_EQ(guest->reg(kMmioInterruptStatus) & kMmioIntUsedBuffer, kMmioIntUsedBuffer);
    EXPECT_EQ(guest->ack_interrupt() & kMmioIntUsedBuffer, kMmioIntUsedBuffer);
    EXPECT_EQ(guest->reg(kMmioInterruptStatus), 0u);
    EXPECT_FALSE(line.level.load());
}

TEST_F(MmioTest, NotifyEventfdIsTheKickPath) {
    BlkDriver d(*guest, ram);
    d.init();
    // A VMM's ioeventfd writes the eventfd directly, never calling the bus.
    const int fd = mmio->notify_fd(0);
    ASSERT_GE(fd, 0);
    EXPECT_EQ(mmio->notify_fd(1), -1);
    std::vector<std::uint8_t> w(512, 0x5a);
    const std::uint64_t hdr = ram.alloc(16, 16), buf = ram.alloc(512, 512), st = ram.alloc(1, 1);
    dev::BlkReqHeader h{};
    h.type.set(dev::kBlkTOut);
    std::memcpy(ram.at(hdr), &h, sizeof h);
    std::memcpy(ram.at(buf), w.data(), 512);
    driver::Segment out[2] = {{hdr, 16}, {buf, 512}};
    driver::Segment in[1] = {{st, 1}};
    int token;
    ASSERT_EQ(d.vq().add_buf(out, in, &token), driver::DriverError::kOk);
    ASSERT_TRUE(d.vq().kick_prepare());
    ASSERT_EQ(::eventfd_write(fd, 1), 0);
    std::uint32_t len;
    EXPECT_TRUE(eventually([&] { return d.vq().get_buf(&len) == &token; }));
}

TEST_F(MmioTest, LegacyRoundTrip) {
    build(/*legacy=*/true);
    EXPECT_EQ(guest->reg(kMmioVersion), 1u);
    // Legacy devices offer 32 feature bits only (no VERSION_1).
    EXPECT_EQ(guest->device_features() >> 32, 0u);
    BlkDriver d(*guest, ram);
    d.init(0);
    blk_round_trip(d, img);
    // Writing 0 to QueuePFN stops the queue.
    guest->set(kMmioQueueSel, 0);
    EXPECT_NE(guest->reg(kMmioQueuePfn), 0u);
    guest->set(kMmioQueuePfn, 0);
    EXPECT_EQ(guest->reg(kMmioQueuePfn), 0u);
}

// Linux writes GuestPageSize once at probe and then resets the device (register_virtio_device):
// the page size must survive the reset, or every QueuePFN after it is refused.
TEST_F(MmioTest, LegacyGuestPageSizeSurvivesReset) {
    build(/*legacy=*/true);
    std::string warned;
    log::set_sink([&](log::Level, std::string_view l) { warned += std::string(l) + "\n"; });
    guest->set(kMmioGuestPageSize, 4096);
    guest->set(kMmioStatus, 0);
    guest->set(kMmioStatus, 1);      // ACKNOWLEDGE
    guest->set(kMmioStatus, 1 | 2);  // DRIVER
    guest->set(kMmioDriverFeaturesSel, 0);
    guest->set(kMmioDriverFeatures, 0);  // legacy: no FEATURES_OK step
    guest->set(kMmioQueueSel, 0);
    guest->set(kMmioQueueNum, 8);
    guest->set(kMmioQueueAlign, 4096);
    guest->set(kMmioQueuePfn, 0x100);  // within the guest's RAM window
    EXPECT_EQ(guest->reg(kMmioQueuePfn), 0x100u) << warned;
    log::set_sink(nullptr);
}

TEST_F(MmioTest, RefusesFeaturesNeverOffered) {
    QuietLog quiet;
    const std::uint64_t offered = guest->device_features();
    EXPECT_NE(offered & bit(virtq::kFVersion1), 0u);
    EXPECT_NE(offered & bit(virtq::kFRingReset), 0u);
    // Bit 50 is never offered; the guest writes it anyway.
    guest->set_status(kStatusAcknowledge);
    guest->set_status(kStatusAcknowledge | kStatusDriver);
    guest->driver_features(bit(virtq::kFVersion1) | bit(50));
    guest->set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
    EXPECT_EQ(guest->status() & kStatusFeaturesOk, 0);
    // Without VERSION_1 a modern device refuses too.
    guest->driver_features(0);
    guest->set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
    EXPECT_EQ(guest->status() & kStatusFeaturesOk, 0);
    // A clean subset is accepted; afterwards the features are frozen.
    EXPECT_TRUE(guest->negotiate(bit(virtq::kFVersion1)));
    guest->set(kMmioDriverFeaturesSel, 0);
    guest->set(kMmioDriverFeatures, 0xffff'ffff);
    guest->set(kMmioDriverFeaturesSel, 0);
    EXPECT_EQ(guest->reg(kMmioDriverFeatures), 0u);
}

TEST_F(MmioTest, StatusTransitionsFollowTheTable) {
    QuietLog quiet;
    guest->set_status(kStatusAcknowledge | kStatusDriver);  // skips ACKNOWLEDGE
    EXPECT_EQ(guest->status(), 0);
    guest->set_status(kStatusAcknowledge);
    guest->set_status(kStatusAcknowledge | kStatusDriver | kStatusDriverOk);  // skips FEATURES_OK
    EXPECT_EQ(guest->status(), kStatusAcknowledge);
    guest->set_status(kStatusAcknowledge | kStatusFailed);
    EXPECT_EQ(guest->status(), kStatusAcknowledge | kStatusFailed);
    guest->set_status(kStatusAcknowledge | kStatusDriver | kStatusFailed);
    EXPECT_EQ(guest->status(), kStatusAcknowledge | kStatusFailed);
    guest->set_status(0);
    EXPECT_EQ(guest->status(), 0);
    EXPECT_GT(*quiet.lines, 0);
}

TEST_F(MmioTest, QueueRegistersAreGatedAndValidated) {
    QuietLog quiet;
    // Before FEATURES_OK queue registers are frozen.
    guest->set(kMmioQueueSel, 0);
    guest->set(kMmioQueueNum, 8);
    EXPECT_EQ(guest->reg(kMmioQueueReady), 0u);
    ASSERT_TRUE(guest->negotiate(bit(virtq::kFVersion1)));
    // Out-of-range QueueSel: reads 0, writes ignored.
    guest->set(kMmioQueueSel, 7);
    EXPECT_EQ(guest->reg(kMmioQueueNumMax), 0u);
    guest->set(kMmioQueueReady, 1);
    EXPECT_EQ(guest->reg(kMmioQueueReady), 0u);
    const std::uint64_t ring = ram.alloc(driver::split_ring_bytes(64));
    const auto layout = driver::split_layout(64);
    auto try_size = [&](std::uint32_t n, std::uint64_t desc) {
        guest->set(kMmioQueueSel, 0);
        guest->set(kMmioQueueNum, n);
        guest->set(kMmioQueueDescLow, static_cast<std::uint32_t>(desc));
        guest->set(kMmioQueueDriverLow, static_cast<std::uint32_t>(ring + layout.avail));
        guest->set(kMmioQueueDeviceLow, static_cast<std::uint32_t>(ring + layout.used));
        guest->set(kMmioQueueReady, 1);
        return guest->reg(kMmioQueueReady);
    };
    EXPECT_EQ(try_size(48, ring), 0u);   // not a power of two (split)
    EXPECT_EQ(try_size(256, ring), 0u);  // above QueueNumMax (128)
    EXPECT_EQ(try_size(0, ring), 0u);
    EXPECT_EQ(try_size(64, ring + 8), 0u);  // misaligned descriptor table
    EXPECT_EQ(try_size(64, kRamSize), 0u);  // outside guest memory
    EXPECT_EQ(try_size(64, ring), 1u);
    // Ready queues are frozen.
    guest->set(kMmioQueueNum, 32);
    guest->set(kMmioQueueReady, 0);
    EXPECT_EQ(guest->reg(kMmioQueueReady), 0u);
    // Wrong-width and unaligned accesses: read 0, writes dropped, never a crash.
    EXPECT_EQ(guest->r.read(kBase + kMmioMagicValue, 2), 0u);
    EXPECT_EQ(guest->r.read(kBase + kMmioMagicValue + 1, 4), 0u);
    EXPECT_EQ(guest->r.read(kBase + kMmioConfig + 1, 2), 0u);
    EXPECT_EQ(guest->r.read(kBase + kMmioConfig, 8), 0u);
    guest->r.write(kBase + kMmioStatus, 1, 0);
    EXPECT_NE(guest->status(), 0);
}

TEST_F(MmioTest, ConfigGenerationAndConfigInterrupt) {
    BlkDriver d(*guest, ram);
    d.init(bit(virtq::kFVersion1) | bit(dev::kBlkFConfigWce));
    const std::uint32_t gen = guest->reg(kMmioConfigGeneration);
    EXPECT_EQ(guest->reg(kMmioConfigGeneration), gen);
    // writeback (offset 32) is writable with CONFIG_WCE: the config changes, the generation too.
    const std::uint8_t wb = guest->r.r8(kBase + kMmioConfig + 32);
    guest->r.w8(kBase + kMmioConfig + 32, wb ^ 1);
    EXPECT_EQ(guest->r.r8(kBase + kMmioConfig + 32), wb ^ 1);
    EXPECT_NE(guest->reg(kMmioConfigGeneration), gen);
    // The owner announces a change: InterruptStatus bit 1.
    mmio->config_changed();
    EXPECT_EQ(guest->reg(kMmioInterruptStatus) & kMmioIntConfigChange, kMmioIntConfigChange);
    EXPECT_TRUE(line.level.load());
    guest->set(kMmioInterruptAck, kMmioIntConfigChange);
    EXPECT_FALSE(line.level.load());
}

TEST_F(MmioTest, QueueResetAndReenable) {
    BlkDriver d(*guest, ram);
    d.init(bit(virtq::kFVersion1) | bit(virtq::kFRingReset));
    blk_round_trip(d, img);
    guest->set(kMmioQueueSel, 0);
    guest->set(kMmioQueueReset, 1);
    EXPECT_EQ(guest->reg(kMmioQueueReset), 0u);
    EXPECT_EQ(guest->reg(kMmioQueueReady), 0u);
    // §2.6.1.2: re-enable with fresh rings while the device stays DRIVER_OK.
    BlkDriver d2(*guest, ram);
    d2.setup(bit(virtq::kFVersion1) | bit(virtq::kFRingReset));
    EXPECT_EQ(guest->status() & kStatusDriverOk, kStatusDriverOk);
    blk_round_trip(d2, img);
}

TEST_F(MmioTest, MalformedRingSetsNeedsResetAndConfigInterrupt) {
    QuietLog quiet;
    BlkDriver d(*guest, ram);
    d.init();
    // The avail index jumps by more than the queue size: the device must stop the queue.
    auto* avail = reinterpret_cast<virtq::SplitAvailHeader*>(
        ram.at(d.ring() + driver::split_layout(BlkDriver::kSize).avail));
    avail->idx.set(1000);
    guest->notify(0);
    EXPECT_TRUE(eventually([&] { return (guest->status() & kStatusNeedsReset) != 0; }));
    EXPECT_TRUE(
        eventually([&] { return (guest->reg(kMmioInterruptStatus) & kMmioIntConfigChange) != 0; }));
    // The driver writes the status back with NEEDS_RESET: ignored (device-owned bit).
    guest->set_status(guest->status());
    // Reset clears everything; the device works again.
    guest->set_status(0);
    EXPECT_EQ(guest->status(), 0);
    EXPECT_EQ(guest->reg(kMmioInterruptStatus), 0u);
    BlkDriver d2(*guest, ram);
    d2.init();
    blk_round_trip(d2, img);
}

TEST_F(MmioTest, ResetWhileRunningDrainsAndRestarts) {
    for (int i = 0; i < 3; ++i) {
        BlkDriver d(*guest, ram);
        d.init();
        blk_round_trip(d, img);
        guest->set_status(0);
        EXPECT_EQ(guest->status(), 0);
    }
}

}  // namespace
}  // namespace vireo::transport::test
