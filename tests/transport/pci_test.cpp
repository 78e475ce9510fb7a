// virtio-pci (§4.1) behind the PCI host: enumeration through 0xCF8/0xCFC and ECAM, BAR sizing
// and assignment, the capability walk, MSI-X, INTx through the ISR, and a blk round trip.
#include "guest.hpp"
#include "transport/pci_host.hpp"
#include "transport/virtio_pci.hpp"

namespace vireo::transport::test {
namespace {

constexpr int kSlot = 3;
constexpr std::uint64_t kEcam = 0xb000'0000;
constexpr std::uint64_t kBarAddr = 0x1'0000'0000;  // above 4 GiB: exercises the high dword
constexpr std::uint64_t kMsiAddr = 0xfee0'0000;

// Configuration mechanism #1, as a guest uses it.
struct Cf8 {
    Regs io;
    std::uint32_t addr(int slot, std::uint32_t off) const {
        return kPciConfigEnable | (static_cast<std::uint32_t>(slot) << 11) | (off & 0xfc);
    }
    std::uint64_t read(int slot, std::uint32_t off, std::size_t size) const {
        io.w32(kPciConfigAddressPort, addr(slot, off));
        return io.read(kPciConfigAddressPort + 4 + (off & 3), size);
    }
    void write(int slot, std::uint32_t off, std::size_t size, std::uint64_t v) const {
        io.w32(kPciConfigAddressPort, addr(slot, off));
        io.write(kPciConfigAddressPort + 4 + (off & 3), size, v);
    }
};

class PciGuest final : public VirtioGuest {
  public:
    PciGuest(const Bus& mmio, std::uint64_t common, std::uint64_t notify, std::uint32_t mult,
             std::uint64_t isr, std::uint64_t device)
        : m{mmio}, common_(common), notify_(notify), mult_(mult), isr_(isr), device_(device) {}

    std::uint8_t status() override { return m.r8(common_ + kCommonStatus); }
    void set_status(std::uint8_t s) override { m.w8(common_ + kCommonStatus, s); }
    std::uint64_t device_features() override {
        m.w32(common_ + kCommonDfSelect, 0);
        const std::uint64_t lo = m.r32(common_ + kCommonDf);
        m.w32(common_ + kCommonDfSelect, 1);
        return lo | (std::uint64_t{m.r32(common_ + kCommonDf)} << 32);
    }
    void driver_features(std::uint64_t f) override {
        m.w32(common_ + kCommonGfSelect, 0);
        m.w32(common_ + kCommonGf, static_cast<std::uint32_t>(f));
        m.w32(common_ + kCommonGfSelect, 1);
        m.w32(common_ + kCommonGf, static_cast<std::uint32_t>(f >> 32));
    }
    std::uint16_t queue_max(std::uint16_t q) override {
        m.w16(common_ + kCommonQueueSelect, q);
        return m.r16(common_ + kCommonQueueSize);
    }
    bool setup_queue(std::uint16_t q, const virtq::QueueConfig& c) override {
        m.w16(common_ + kCommonQueueSelect, q);
        m.w16(common_ + kCommonQueueSize, c.size);
        m.w16(common_ + kCommonQueueMsixVector, queue_vector);
        // 64-bit fields as two 32-bit halves (§4.1.3.1), and one as a whole for coverage.
        m.w32(common_ + kCommonQueueDesc, static_cast<std::uint32_t>(c.desc_addr));
        m.w32(common_ + kCommonQueueDesc + 4, static_cast<std::uint32_t>(c.desc_addr >> 32));
        m.write(common_ + kCommonQueueDriver, 8, c.driver_addr);
        m.w32(common_ + kCommonQueueDevice, static_cast<std::uint32_t>(c.device_addr));
        m.w32(common_ + kCommonQueueDevice + 4, static_cast<std::uint32_t>(c.device_addr >> 32));
        notify_off = m.r16(common_ + kCommonQueueNotifyOff);
        m.w16(common_ + kCommonQueueEnable, 1);
        return m.r16(common_ + kCommonQueueEnable) == 1;
    }
    void notify(std::uint16_t q) override { m.w16(notify_ + std::uint64_t{notify_off} * mult_, q); }
    std::uint32_t config32(std::uint32_t off) override { return m.r32(device_ + off); }
    std::uint32_t ack_interrupt() override { return m.r8(isr_); }

    Regs m;
    std::uint16_t queue_vector = kNoVector;
    std::uint16_t notify_off = 0;
    std::uint64_t common_, notify_;
    std::uint32_t mult_;
    std::uint64_t isr_, device_;
};

class PciTest : public ::testing::Test {
  protected:
    PciTest() {
        pci = std::make_shared<VirtioPci>(*blk, ram.mem, msi);
        pci->connect_intx(intx);
        EXPECT_TRUE(host.add(kSlot, pci));
        EXPECT_TRUE(host.attach_cf8());
        EXPECT_TRUE(host.attach_ecam(kEcam));
    }

    // Enumerates, sizes and places BAR 0, enables decoding, walks the capabilities.
    void enumerate() {
        Cf8 c{Regs{pio}};
        ASSERT_EQ(c.read(kSlot, kPciVendorId, 2), kVirtioPciVendor);
        ASSERT_EQ(c.read(kSlot, kPciDeviceId, 2), kVirtioPciDeviceBase + dev::kIdBlock);
        // BAR sizing: all ones, read back the mask (64-bit memory BAR: type bits 10b).
        c.write(kSlot, kPciBar0, 4, 0xffff'ffff);
        c.write(kSlot, kPciBar0 + 4, 4, 0xffff'ffff);
        const std::uint64_t lo = c.read(kSlot, kPciBar0, 4);
        const std::uint64_t hi = c.read(kSlot, kPciBar0 + 4, 4);
        ASSERT_EQ(lo & 0x7, kPciBarMem64);
        const std::uint64_t size = ~((hi << 32) | (lo & ~0xfull)) + 1;
        ASSERT_EQ(size, VirtioPci::kBarSize);
        c.write(kSlot, kPciBar0, 4, static_cast<std::uint32_t>(kBarAddr));
        c.write(kSlot, kPciBar0 + 4, 4, kBarAddr >> 32);
        EXPECT_FALSE(host.mapped_bar(kSlot, 0));  // memory decoding still off
        c.write(kSlot, kPciCommand, 2, kPciCommandMemory | kPciCommandMaster);
        ASSERT_EQ(host.mapped_bar(kSlot, 0), kBarAddr);

        // Capability walk.
        ASSERT_NE(c.read(kSlot, kPciStatus, 2) & kPciStatusCapList, 0u);
        std::uint64_t common = 0, notify = 0, isr = 0, device = 0;
        std::uint32_t mult = 0;
        auto p = static_cast<std::uint32_t>(c.read(kSlot, kPciCapabilityList, 1));
        for (int guard = 0; p != 0 && guard < 48; ++guard) {
            const auto id = c.read(kSlot, p, 1);
            if (id == kPciCapIdVendor) {
                const auto type = c.read(kSlot, p + kVirtioCapType, 1);
                EXPECT_EQ(c.read(kSlot, p + kVirtioCapBar, 1), 0u);
                const std::uint64_t at = kBarAddr + c.read(kSlot, p + kVirtioCapOffset, 4);
                switch (type) {
                    case kVirtioPciCapCommon:
                        common = at;
                        break;
                    case kVirtioPciCapNotify:
                        notify = at;
                        mult = static_cast<std::uint32_t>(
                            c.read(kSlot, p + kVirtioCapNotifyMultiplier, 4));
                        break;
                    case kVirtioPciCapIsr:
                        isr = at;
                        break;
                    case kVirtioPciCapDevice:
                        device = at;
                        break;
                    case kVirtioPciCapPci:
                        pci_cfg_cap = p;
                        break;
                    default:
                        break;
                }
            } else if (id == kPciCapIdMsix) {
                msix_cap = p;
            }
            p = static_cast<std::uint32_t>(c.read(kSlot, p + 1, 1));
        }
        ASSERT_TRUE(common && notify && isr && device && pci_cfg_cap && msix_cap);
        EXPECT_EQ(mult, VirtioPci::kNotifyMultiplier);
        guest = std::make_unique<PciGuest>(mmio, common, notify, mult, isr, device);
    }

    void enable_msix() {
        Cf8 c{Regs{pio}};
        const auto table = c.read(kSlot, msix_cap + kMsixTable, 4);
        const std::uint64_t base = kBarAddr + (table & ~7ull);
        ASSERT_EQ(table & 7, 0u);  // BIR 0
        ASSERT_GE((c.read(kSlot, msix_cap + kMsixControl, 2) & kMsixControlTableSize) + 1, 2u);
        Regs m{mmio};
        for (std::uint32_t v = 0; v < 2; ++v) {
            m.w32(base + v * 16 + kMsixEntryAddrLo, kMsiAddr);
            m.w32(base + v * 16 + kMsixEntryAddrHi, 0);
            m.w32(base + v * 16 + kMsixEntryData, 0x40 + v);
            m.w32(base + v * 16 + kMsixEntryControl, 0);  // unmask
        }
        c.write(kSlot, msix_cap + kMsixControl, 2, kMsixControlEnable);
        ASSERT_TRUE(pci->msix().enabled());
    }

    TempImage img{1 << 20};
    GuestRam ram;
    std::unique_ptr<dev::BlkDevice> blk = open_blk(img.path);
    RecordingMsi msi;
    RecordingLine intx;
    Bus mmio, pio;
    PciHost host{mmio, &pio};
    std::shared_ptr<VirtioPci> pci;
    std::unique_ptr<PciGuest> guest;
    std::uint32_t msix_cap = 0, pci_cfg_cap = 0;
};

TEST_F(PciTest, HostBridgeAndAbsentFunctions) {
    Cf8 c{Regs{pio}};
    EXPECT_EQ(c.read(0, kPciVendorId, 2), kHostBridgeVendor);
    EXPECT_EQ(c.read(0, kPciClass, 1), 0x06u);
    EXPECT_EQ(c.read(5, kPciVendorId, 4), 0xffff'ffffu);  // nothing at slot 5
    // Byte and word accesses at every offset of the data port.
    const std::uint32_t id = static_cast<std::uint32_t>(c.read(kSlot, 0, 4));
    EXPECT_EQ(c.read(kSlot, 1, 1), (id >> 8) & 0xff);
    EXPECT_EQ(c.read(kSlot, 2, 2), id >> 16);
    EXPECT_EQ(c.read(kSlot, 3, 1), id >> 24);
    // Disabled address latch: all ones.
    Regs io{pio};
    io.w32(kPciConfigAddressPort, static_cast<std::uint32_t>(kSlot) << 11);
    EXPECT_EQ(io.r32(kPciConfigAddressPort + 4), 0xffff'ffffu);
    EXPECT_EQ(io.r32(kPciConfigAddressPort), static_cast<std::uint32_t>(kSlot) << 11);
    // ECAM reaches the same space; extended space reads 0.
    Regs e{mmio};
    EXPECT_EQ(e.r32(kEcam + (kSlot << 15)), id);
    EXPECT_EQ(e.r32(kEcam + (kSlot << 15) + 0x100), 0u);
    EXPECT_EQ(e.r32(kEcam + (7 << 15)), 0xffff'ffffu);
    EXPECT_EQ(e.r32(kEcam + (kSlot << 15) + (1 << 12)), 0xffff'ffffu);  // function 1
    // Read-only fields cannot be forged.
    c.write(kSlot, kPciVendorId, 2, 0x1234);
    EXPECT_EQ(c.read(kSlot, kPciVendorId, 2), kVirtioPciVendor);
    EXPECT_EQ(c.read(kSlot, kPciRevision, 1), kVirtioPciRevision);
    EXPECT_EQ(host.add(kSlot, pci).error(), PciError::kSlotUsed);
    EXPECT_EQ(host.add(0, pci).error(), PciError::kBadSlot);
}

TEST_F(PciTest, BarRemapAndOverlap) {
    QuietLog quiet;
    enumerate();
    Cf8 c{Regs{pio}};
    // Moving the BAR re-maps it; disabling decoding unmaps it.
    c.write(kSlot, kPciBar0 + 4, 4, 2);
    EXPECT_EQ(host.mapped_bar(kSlot, 0), 0x2'0000'0000u);
    c.write(kSlot, kPciCommand, 2, 0);
    EXPECT_FALSE(host.mapped_bar(kSlot, 0));
    // A BAR placed over the ECAM window stays unmapped.
    c.write(kSlot, kPciBar0, 4, static_cast<std::uint32_t>(kEcam));
    c.write(kSlot, kPciBar0 + 4, 4, 0);
    c.write(kSlot, kPciCommand, 2, kPciCommandMemory);
    EXPECT_FALSE(host.mapped_bar(kSlot, 0));
    EXPECT_EQ(Regs{mmio}.r16(kEcam + (kSlot << 15)), kVirtioPciVendor);
}

TEST_F(PciTest, BlkRoundTripWithMsix) {
    enumerate();
    enable_msix();
    // Vector 1 for queue 0 (programmed during queue setup), vector 0 for configuration.
    guest->queue_vector = 1;
    BlkDriver d(*guest, ram);
    d.init();
    guest->m.w16(guest->common_ + kCommonMsixConfig, 0);
    EXPECT_EQ(guest->m.r16(guest->common_ + kCommonMsixConfig), 0);
    guest->m.w16(guest->common_ + kCommonQueueSelect, 0);
    EXPECT_EQ(guest->m.r16(guest->common_ + kCommonQueueMsixVector), 1);
    EXPECT_EQ(guest->m.r16(guest->common_ + kCommonNumQueues), 1);
    blk_round_trip(d, img);
    EXPECT_TRUE(eventually([&] { return msi.has(kMsiAddr, 0x41); }));
    EXPECT_FALSE(intx.level.load());  // MSI-X on: no INTx, no ISR
    EXPECT_EQ(guest->ack_interrupt(), 0u);
    pci->config_changed();
    EXPECT_TRUE(msi.has(kMsiAddr, 0x40));
}

TEST_F(PciTest, MsixMaskingSetsPendingBits) {
    enumerate();
    enable_msix();
    guest->m.w16(guest->common_ + kCommonMsixConfig, 0);
    Cf8 c{Regs{pio}};
    // Function mask: the message waits in the PBA and goes out on unmask.
    c.write(kSlot, msix_cap + kMsixControl, 2, kMsixControlEnable | kMsixControlFunctionMask);
    pci->config_changed();
    EXPECT_TRUE(msi.snapshot().empty());
    EXPECT_TRUE(pci->msix().pending(0));
    const std::uint64_t pba = kBarAddr + (c.read(kSlot, msix_cap + kMsixPba, 4) & ~7ull);
    EXPECT_EQ(Regs{mmio}.r32(pba) & 1, 1u);
    c.write(kSlot, msix_cap + kMsixControl, 2, kMsixControlEnable);
    EXPECT_TRUE(msi.has(kMsiAddr, 0x40));
    EXPECT_FALSE(pci->msix().pending(0));
    // Per-vector mask.
    const std::uint64_t table = kBarAddr + (c.read(kSlot, msix_cap + kMsixTable, 4) & ~7ull);
    Regs{mmio}.w32(table + kMsixEntryControl, kMsixEntryMasked);
    pci->config_changed();
    EXPECT_EQ(msi.snapshot().size(), 1u);
    EXPECT_TRUE(pci->msix().pending(0));
    Regs{mmio}.w32(table + kMsixEntryControl, 0);
    EXPECT_EQ(msi.snapshot().size(), 2u);
    // Vectors beyond the table read back as NO_VECTOR (§4.1.5.1.2.1).
    guest->m.w16(guest->common_ + kCommonMsixConfig, 500);
    EXPECT_EQ(guest->m.r16(guest->common_ + kCommonMsixConfig), kNoVector);
}

TEST_F(PciTest, IntxThroughIsrWhenMsixIsOff) {
    enumerate();
    BlkDriver d(*guest, ram);
    d.init();
    blk_round_trip(d, img);
    EXPECT_TRUE(eventually([&] { return intx.level.load(); }));
    Cf8 c{Regs{pio}};
    EXPECT_NE(c.read(kSlot, kPciStatus, 2) & kPciStatusInterrupt, 0u);
    // ISR: read to clear, de-asserts INTx.
    EXPECT_EQ(guest->ack_interrupt() & kIsrQueue, kIsrQueue);
    EXPECT_FALSE(intx.level.load());
    EXPECT_EQ(guest->ack_interrupt(), 0u);
    pci->config_changed();
    EXPECT_TRUE(intx.level.load());
    // INTx disable in the command register masks the line.
    c.write(kSlot, kPciCommand, 2, kPciCommandMemory | kPciCommandMaster | kPciCommandIntxDisable);
    EXPECT_FALSE(intx.level.load());
    c.write(kSlot, kPciCommand, 2, kPciCommandMemory | kPciCommandMaster);
    EXPECT_TRUE(intx.level.load());
    EXPECT_EQ(guest->ack_interrupt(), kIsrConfig);
}

TEST_F(PciTest, FeatureRefusalAndHostileCommonAccesses) {
    QuietLog quiet;
    enumerate();
    guest->set_status(kStatusAcknowledge);
    guest->set_status(kStatusAcknowledge | kStatusDriver);
    guest->driver_features(bit(virtq::kFVersion1) | bit(63));
    guest->set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
    EXPECT_EQ(guest->status() & kStatusFeaturesOk, 0);
    // Wrong widths on common cfg fields: read 0, writes dropped.
    EXPECT_EQ(guest->m.read(guest->common_ + kCommonStatus, 4), 0u);
    EXPECT_EQ(guest->m.read(guest->common_ + kCommonNumQueues + 1, 1), 0u);
    guest->m.w32(guest->common_ + kCommonQueueSelect, 0);
    // Out-of-range queue_select reads 0 everywhere.
    guest->m.w16(guest->common_ + kCommonQueueSelect, 9);
    EXPECT_EQ(guest->m.r16(guest->common_ + kCommonQueueSize), 0);
    EXPECT_EQ(guest->m.r16(guest->common_ + kCommonQueueEnable), 0);
    guest->m.w16(guest->common_ + kCommonQueueEnable, 1);
    // Notifications for nonexistent queues are dropped; so are notify reads.
    guest->m.w16(guest->notify_ + 4 * 9, 9);
    EXPECT_EQ(guest->m.r16(guest->notify_), 0);
}

TEST_F(PciTest, PciCfgCapabilityWindow) {
    enumerate();
    Cf8 c{Regs{pio}};
    // §4.1.4.9: read device_status through configuration space only.
    c.write(kSlot, pci_cfg_cap + kVirtioCapBar, 1, 0);
    c.write(kSlot, pci_cfg_cap + kVirtioCapOffset, 4, VirtioPci::kCommonOffset + kCommonNumQueues);
    c.write(kSlot, pci_cfg_cap + kVirtioCapLength, 4, 2);
    EXPECT_EQ(c.read(kSlot, pci_cfg_cap + kVirtioCapPciData, 4) & 0xffff, 1u);
    c.write(kSlot, pci_cfg_cap + kVirtioCapOffset, 4, VirtioPci::kCommonOffset + kCommonStatus);
    c.write(kSlot, pci_cfg_cap + kVirtioCapLength, 4, 1);
    c.write(kSlot, pci_cfg_cap + kVirtioCapPciData, 4, kStatusAcknowledge);
    EXPECT_EQ(guest->status(), kStatusAcknowledge);
}

TEST_F(PciTest, QueueResetReenables) {
    enumerate();
    BlkDriver d(*guest, ram);
    d.init(bit(virtq::kFVersion1) | bit(virtq::kFRingReset));
    blk_round_trip(d, img);
    guest->m.w16(guest->common_ + kCommonQueueSelect, 0);
    guest->m.w16(guest->common_ + kCommonQueueReset, 1);
    EXPECT_EQ(guest->m.r16(guest->common_ + kCommonQueueReset), 0);
    EXPECT_EQ(guest->m.r16(guest->common_ + kCommonQueueEnable), 0);
    BlkDriver d2(*guest, ram);
    d2.setup(bit(virtq::kFVersion1) | bit(virtq::kFRingReset));
    blk_round_trip(d2, img);
}

}  // namespace
}  // namespace vireo::transport::test
