// Boot tables, BootInfo and the UART, checked in plain memory (no KVM needed).
#include <gtest/gtest.h>
#include <unistd.h>

#include "memory/unique_fd.hpp"
#include "vmm/x86_boot.hpp"

namespace vireo::vmm {
namespace {

TEST(BootTables, IdentityMapsTheLowFourGiB) {
    GuestMemory mem;
    ASSERT_TRUE(mem.add_anonymous(0, 4 << 20));
    ASSERT_TRUE(write_boot_tables(mem));
    std::uint64_t e = 0;
    ASSERT_TRUE(mem.read_obj(boot::kPml4Addr, e));
    EXPECT_EQ(e, boot::kPdptAddr | kPtePresent | kPteWrite);
    for (unsigned i = 0; i < kPageDirs; ++i) {
        ASSERT_TRUE(mem.read_obj(boot::kPdptAddr + 8 * i, e));
        EXPECT_EQ(e & ~0xfffull, boot::kPageDirAddr + 0x1000 * i);
    }
    // 2 MiB page 1 (RAM): write-back; the page holding the LAPIC: uncached.
    ASSERT_TRUE(mem.read_obj(boot::kPageDirAddr + 8, e));
    EXPECT_EQ(e, kLargePageSize | kPtePresent | kPteWrite | kPteLarge);
    const std::uint64_t lapic_pde = boot::kLapicBase / kLargePageSize;
    ASSERT_TRUE(mem.read_obj(boot::kPageDirAddr + 8 * lapic_pde, e));
    EXPECT_EQ(e & ~0xfffull, boot::kLapicBase & ~(kLargePageSize - 1));
    EXPECT_TRUE(e & kPtePcd);
    std::uint64_t gdt[kGdtEntries];
    ASSERT_TRUE(mem.read(boot::kGdtAddr, gdt, sizeof(gdt)));
    EXPECT_EQ(gdt[0], 0u);
    EXPECT_EQ(gdt[boot::kCodeSelector / 8], kGdtCode64);
    EXPECT_EQ(gdt[boot::kDataSelector / 8], kGdtData);
}

TEST(BootTables, FillsBootInfo) {
    GuestMemory mem;
    ASSERT_TRUE(mem.add_anonymous(0, 4 << 20));
    BootInfoParams p;
    p.mem_size = 4 << 20;
    p.num_vcpus = 2;
    p.mmio = {{boot::kMmioBase, boot::kMmioSlotSize, boot::kMmioFirstGsi},
              {boot::kMmioBase + boot::kMmioStride, boot::kMmioSlotSize, boot::kMmioFirstGsi + 1}};
    p.cmdline = "console=uart";
    ASSERT_TRUE(write_boot_info(mem, p));
    boot::BootInfo bi{};
    ASSERT_TRUE(mem.read_obj(boot::kBootInfoAddr, bi));
    EXPECT_EQ(bi.magic.get(), boot::kBootMagic);
    EXPECT_EQ(bi.version.get(), boot::kBootVersion);
    EXPECT_EQ(bi.mem_size.get(), 4u << 20);
    EXPECT_EQ(bi.num_vcpus.get(), 2u);
    EXPECT_EQ(bi.num_mmio.get(), 2u);
    EXPECT_EQ(bi.mmio[1].base.get(), boot::kMmioBase + boot::kMmioStride);
    EXPECT_EQ(bi.mmio[1].gsi.get(), boot::kMmioFirstGsi + 1);
    EXPECT_EQ(bi.pci_ecam_base.get(), boot::kPciEcamBase);
    EXPECT_STREQ(bi.cmdline, "console=uart");
    p.cmdline = std::string(300, 'x');
    EXPECT_FALSE(write_boot_info(mem, p));
}

}  // namespace
}  // namespace vireo::vmm
