// The edu device behind the PCI host, every register function and each interrupt path.
#include "transport/edu.hpp"

#include "guest.hpp"
#include "transport/pci_host.hpp"

namespace vireo::transport::test {
namespace {

constexpr int kSlot = 4;
constexpr std::uint64_t kBar = 0xc000'0000;
constexpr std::uint64_t kMsiAddr = 0xfee0'1000;

class EduTest : public ::testing::Test {
  protected:
    EduTest() {
        edu = std::make_shared<EduDevice>(ram.mem, msi);
        edu->connect_intx(intx);
        EXPECT_TRUE(host.add(kSlot, edu));
        EXPECT_TRUE(host.attach_ecam(kEcam));
        // Size and place BAR 0, enable memory decoding and bus mastering.
        cfg_w32(kPciBar0, 0xffff'ffff);
        EXPECT_EQ(~(cfg_r32(kPciBar0) & ~0xfu) + 1, kEduBarSize);
        cfg_w32(kPciBar0, static_cast<std::uint32_t>(kBar));
        cfg_w32(kPciCommand, kPciCommandMemory | kPciCommandMaster);
        EXPECT_EQ(host.mapped_bar(kSlot, 0), kBar);
    }
    static constexpr std::uint64_t kEcam = 0xb000'0000;
    std::uint32_t cfg_r32(std::uint32_t off) { return r.r32(kEcam + (kSlot << 15) + off); }
    void cfg_w32(std::uint32_t off, std::uint32_t v) { r.w32(kEcam + (kSlot << 15) + off, v); }
    std::uint32_t reg(std::uint64_t off) { return r.r32(kBar + off); }
    void set(std::uint64_t off, std::uint32_t v) { r.w32(kBar + off, v); }
    std::uint32_t msi_cap() {
        for (std::uint32_t p = cfg_r32(kPciCapabilityList) & 0xff; p != 0;
             p = (cfg_r32(p) >> 8) & 0xff) {
            if ((cfg_r32(p) & 0xff) == kPciCapIdMsi) {
                return p;
            }
        }
        return 0;
    }

    GuestRam ram;
    RecordingMsi msi;
    RecordingLine intx;
    Bus mmio;
    Regs r{mmio};
    PciHost host{mmio, nullptr};
    std::shared_ptr<EduDevice> edu;
};

TEST_F(EduTest, IdentificationAndLiveness) {
    EXPECT_EQ(cfg_r32(kPciVendorId), (std::uint32_t{kEduDevice} << 16) | kEduVendor);
    EXPECT_EQ(reg(kEduId), kEduIdValue);
    set(kEduLiveness, 0x1234'5678);
    EXPECT_EQ(reg(kEduLiveness), ~0x1234'5678u);
    // Only 4-byte accesses below 0x80: others read all ones, writes are dropped.
    EXPECT_EQ(r.read(kBar + kEduId, 2), 0xffffu);
    EXPECT_EQ(r.read(kBar + kEduId, 8), ~0ull);
    r.write(kBar + kEduLiveness, 2, 0);
    EXPECT_EQ(reg(kEduLiveness), ~0x1234'5678u);
}

TEST_F(EduTest, FactorialWithInterrupt) {
    set(kEduStatus, kEduStatusIrqFactorial);
    set(kEduFactorial, 10);
    EXPECT_TRUE(eventually([&] { return (reg(kEduStatus) & kEduStatusComputing) == 0; }));
    EXPECT_EQ(reg(kEduFactorial), 3628800u);
    EXPECT_TRUE(eventually([&] { return intx.level.load(); }));
    EXPECT_EQ(reg(kEduIrqStatus), kEduIrqFactorial);
    set(kEduIrqAck, kEduIrqFactorial);
    EXPECT_EQ(reg(kEduIrqStatus), 0u);
    EXPECT_FALSE(intx.level.load());
    // Huge inputs are bounded (the 32-bit product is 0 from 34 on).
    set(kEduStatus, 0);
    set(kEduFactorial, 0xffff'ffff);
    EXPECT_TRUE(eventually([&] { return (reg(kEduStatus) & kEduStatusComputing) == 0; }));
    EXPECT_EQ(reg(kEduFactorial), 0u);
    EXPECT_EQ(reg(kEduIrqStatus), 0u);  // no interrupt without status bit 0x80
}

TEST_F(EduTest, IncrementWithInterrupt) {
    set(kEduStatus, kEduStatusIrqIncrement);
    set(kEduIncrement, 41);
    EXPECT_TRUE(eventually([&] { return (reg(kEduStatus) & kEduStatusIncrementing) == 0; }));
    EXPECT_EQ(reg(kEduIncrement), 42u);
    EXPECT_TRUE(eventually([&] { return (reg(kEduIrqStatus) & kEduIrqIncrement) != 0; }));
    EXPECT_TRUE(intx.level.load());
    set(kEduIrqAck, kEduIrqIncrement);
    EXPECT_FALSE(intx.level.load());
    // Status bits 0x01/0x02 are read-only.
    set(kEduStatus, kEduStatusComputing | kEduStatusIncrementing);
    EXPECT_EQ(reg(kEduStatus) & (kEduStatusComputing | kEduStatusIncrementing), 0u);
}

TEST_F(EduTest, IncrementIgnoresWritesWhileBusy) {
    // The worker may or may not have finished the first increment when the second write
    // arrives: a write while 0x02 is set is dropped, so the result is exactly one input + 1.
    for (std::uint32_t i = 0; i < 100; ++i) {
        set(kEduIncrement, i * 10);
        set(kEduIncrement, 7);  // ignored if the first is still running
        EXPECT_TRUE(eventually([&] { return (reg(kEduStatus) & kEduStatusIncrementing) == 0; }));
        const std::uint32_t v = reg(kEduIncrement);
        EXPECT_TRUE(v == i * 10 + 1 || v == 8) << v;
    }
}

TEST_F(EduTest, RaiseAckAndMsi) {
    set(kEduIrqRaise, 0x30);
    EXPECT_TRUE(intx.level.load());
    EXPECT_EQ(reg(kEduIrqStatus), 0x30u);
    set(kEduIrqAck, 0x10);
    EXPECT_TRUE(intx.level.load());
    set(kEduIrqAck, 0x20);
    EXPECT_FALSE(intx.level.load());
    // Enable MSI: address, data, then the enable bit.
    const std::uint32_t cap = msi_cap();
    ASSERT_NE(cap, 0u);
    cfg_w32(cap + 4, static_cast<std::uint32_t>(kMsiAddr));
    cfg_w32(cap + 8, 0);
    cfg_w32(cap + 12, 0x55);
    cfg_w32(cap, (cfg_r32(cap) & 0xffff) | (1u << 16));
    set(kEduIrqRaise, 0x4);
    EXPECT_TRUE(msi.has(kMsiAddr, 0x55));
    EXPECT_FALSE(intx.level.load());
    EXPECT_EQ(reg(kEduIrqStatus), 0x4u);  // still acknowledged by the driver
    set(kEduIrqAck, 0x4);
}

TEST_F(EduTest, DmaRoundTripWithInterrupt) {
    const std::uint64_t src = 0x20000, dst = 0x30000;
    for (int i = 0; i < 100; ++i) {
        ram.at(src)[i] = static_cast<std::uint8_t>(i + 3);
    }
    auto run = [&](std::uint64_t from, std::uint64_t to, std::uint64_t n, std::uint64_t cmd) {
        r.write(kBar + kEduDmaSrc, 8, from);
        r.write(kBar + kEduDmaDst, 8, to);
        r.write(kBar + kEduDmaCount, 8, n);
        r.write(kBar + kEduDmaCmd, 8, cmd);
        EXPECT_TRUE(eventually([&] { return (r.read(kBar + kEduDmaCmd, 8) & kEduDmaStart) == 0; }));
    };
    run(src, kEduBuffer, 100, kEduDmaStart);
    EXPECT_EQ(reg(kEduBuffer + 4), 0x0a090807u);
    run(kEduBuffer, dst + 100, 100, kEduDmaStart | kEduDmaToRam | kEduDmaIrq);
    EXPECT_EQ(std::memcmp(ram.at(src), ram.at(dst + 100), 100), 0);
    EXPECT_TRUE(eventually([&] { return (reg(kEduIrqStatus) & kEduIrqDma) != 0; }));
    EXPECT_TRUE(intx.level.load());
    set(kEduIrqAck, kEduIrqDma);
    EXPECT_EQ(edu->dma_errors(), 0u);
}

TEST_F(EduTest, DmaBoundsChecked) {
    QuietLog quiet;
    auto run = [&](std::uint64_t from, std::uint64_t to, std::uint64_t n, std::uint64_t cmd) {
        r.write(kBar + kEduDmaSrc, 8, from);
        r.write(kBar + kEduDmaDst, 8, to);
        r.write(kBar + kEduDmaCount, 8, n);
        r.write(kBar + kEduDmaCmd, 8, cmd);
        EXPECT_TRUE(eventually([&] { return (r.read(kBar + kEduDmaCmd, 8) & kEduDmaStart) == 0; }));
    };
    run(0x1000, kEduBuffer + 4000, 200, kEduDmaStart);             // past the buffer's end
    run(kRamSize - 16, kEduBuffer, 64, kEduDmaStart);              // past guest RAM
    run(1ull << 28, kEduBuffer, 16, kEduDmaStart);                 // beyond the 28-bit mask
    run(kEduBuffer - 8, 0x1000, 16, kEduDmaStart | kEduDmaToRam);  // before the buffer
    run(0x1000, ~0ull - 4, 16, kEduDmaStart);                      // wrap-around
    EXPECT_EQ(edu->dma_errors(), 5u);
    // Without bus mastering nothing moves either.
    cfg_w32(kPciCommand, kPciCommandMemory);
    ram.at(0x1000)[0] = 0xee;
    run(0x1000, kEduBuffer, 1, kEduDmaStart | kEduDmaIrq);
    EXPECT_EQ(edu->dma_errors(), 6u);
    EXPECT_NE(reg(kEduBuffer) & 0xff, 0xeeu);
    EXPECT_TRUE(eventually([&] { return (reg(kEduIrqStatus) & kEduIrqDma) != 0; }));
}

}  // namespace
}  // namespace vireo::transport::test
