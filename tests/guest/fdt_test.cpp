// The riscv64 guest runtime's device-tree reader (guest/runtime/riscv64/fdt.hpp) on the host:
// against the tree riscv::Machine really generates, against hand-made trees with other cell
// sizes, and against malformed blobs, which it must reject without reading out of bounds
// (run under ASan in the sanitizer build).
#include "runtime/riscv64/fdt.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "devices/rng.hpp"
#include "riscv/machine.hpp"

extern "C" {
#include <libfdt.h>
}

namespace {

using vireo::guest::fdt::BootFacts;
using vireo::guest::fdt::read;

TEST(GuestFdt, ReadsTheMachinesTree) {
    // The devices outlive the machine, whose transports refer to them.
    auto rng0 = vireo::dev::RngDevice::create({});
    auto rng1 = vireo::dev::RngDevice::create({});
    ASSERT_TRUE(rng0.has_value() && rng1.has_value());
    vireo::riscv::MachineConfig cfg;
    cfg.harts = 3;
    cfg.ram_size = 64ull << 20;
    cfg.bootargs = "ring=packed irq=1 sector=8";
    auto m = vireo::riscv::Machine::create(cfg);
    ASSERT_TRUE(m.has_value()) << m.error();
    ASSERT_TRUE((*m)->add_virtio(**rng0).has_value());
    ASSERT_TRUE((*m)->add_virtio(**rng1, /*legacy=*/true).has_value());
    auto blob = (*m)->build_fdt(0, 0);
    ASSERT_TRUE(blob.has_value()) << blob.error();

    const BootFacts f = read(blob->data());
    ASSERT_TRUE(f.valid);
    ASSERT_NE(f.bootargs, nullptr);
    EXPECT_STREQ(f.bootargs, "ring=packed irq=1 sector=8");
    EXPECT_EQ(f.mem_base, vireo::riscv::kRamBase);
    EXPECT_EQ(f.mem_size, 64ull << 20);
    EXPECT_EQ(f.cpus, 3u);
    ASSERT_EQ(f.num_virtio, 2);
    for (int i = 0; i < 2; ++i) {
        EXPECT_EQ(f.virtio[i].base, vireo::riscv::kVirtioBase + i * vireo::riscv::kVirtioStride);
        EXPECT_EQ(f.virtio[i].size, vireo::riscv::kVirtioStride);
        EXPECT_EQ(f.virtio[i].irq, vireo::riscv::kVirtioFirstIrq + static_cast<unsigned>(i));
    }
}

// A tree built with libfdt: root #address-cells/#size-cells 1/1, a virtio node without
// interrupts, a nested node deeper than the reader cares about, no bootargs.
std::vector<char> small_tree() {
    std::vector<char> buf(4096);
    void* t = buf.data();
    EXPECT_EQ(fdt_create(t, static_cast<int>(buf.size())), 0);
    EXPECT_EQ(fdt_finish_reservemap(t), 0);
    EXPECT_EQ(fdt_begin_node(t, ""), 0);
    EXPECT_EQ(fdt_property_u32(t, "#address-cells", 1), 0);
    EXPECT_EQ(fdt_property_u32(t, "#size-cells", 1), 0);
    EXPECT_EQ(fdt_begin_node(t, "chosen"), 0);
    EXPECT_EQ(fdt_property_string(t, "stdout-path", "/uart"), 0);
    EXPECT_EQ(fdt_end_node(t), 0);
    EXPECT_EQ(fdt_begin_node(t, "memory@40000000"), 0);
    const fdt32_t mem[] = {cpu_to_fdt32(0x40000000), cpu_to_fdt32(0x1000000)};
    EXPECT_EQ(fdt_property(t, "reg", mem, sizeof mem), 0);
    EXPECT_EQ(fdt_property_string(t, "device_type", "memory"), 0);
    EXPECT_EQ(fdt_end_node(t), 0);
    EXPECT_EQ(fdt_begin_node(t, "bus"), 0);
    EXPECT_EQ(fdt_property_u32(t, "#address-cells", 2), 0);
    EXPECT_EQ(fdt_property_u32(t, "#size-cells", 1), 0);
    EXPECT_EQ(fdt_begin_node(t, "virtio@1"), 0);
    static constexpr char kCompat[] = "vendor,thing\0virtio,mmio";
    EXPECT_EQ(fdt_property(t, "compatible", kCompat, sizeof kCompat), 0);
    const fdt32_t reg[] = {cpu_to_fdt32(0x1), cpu_to_fdt32(0x2000), cpu_to_fdt32(0x200)};
    EXPECT_EQ(fdt_property(t, "reg", reg, sizeof reg), 0);
    EXPECT_EQ(fdt_property_u32(t, "interrupts", 7), 0);
    EXPECT_EQ(fdt_begin_node(t, "child"), 0);
    EXPECT_EQ(fdt_property_string(t, "compatible", "virtio,mmio"), 0);  // no reg: skipped
    EXPECT_EQ(fdt_end_node(t), 0);
    EXPECT_EQ(fdt_end_node(t), 0);
    EXPECT_EQ(fdt_begin_node(t, "virtio@2"), 0);
    EXPECT_EQ(fdt_property_string(t, "compatible", "virtio,mmio-not"), 0);  // not ours
    EXPECT_EQ(fdt_property(t, "reg", reg, sizeof reg), 0);
    EXPECT_EQ(fdt_end_node(t), 0);
    EXPECT_EQ(fdt_end_node(t), 0);  // bus
    EXPECT_EQ(fdt_end_node(t), 0);  // root
    EXPECT_EQ(fdt_finish(t), 0);
    buf.resize(fdt_totalsize(t));
    return buf;
}

TEST(GuestFdt, FollowsCellSizesAndSkipsWhatIsNotVirtio) {
    const std::vector<char> t = small_tree();
    const BootFacts f = read(t.data());
    ASSERT_TRUE(f.valid);
    EXPECT_EQ(f.bootargs, nullptr);
    EXPECT_EQ(f.mem_base, 0x40000000u);
    EXPECT_EQ(f.mem_size, 0x1000000u);
    EXPECT_EQ(f.cpus, 0u);
    ASSERT_EQ(f.num_virtio, 1);
    EXPECT_EQ(f.virtio[0].base, 0x1'0000'2000u);
    EXPECT_EQ(f.virtio[0].size, 0x200u);
    EXPECT_EQ(f.virtio[0].irq, 7u);
}

TEST(GuestFdt, RejectsMalformedBlobs) {
    EXPECT_FALSE(read(nullptr).valid);
    const std::vector<char> good = small_tree();

    std::vector<char> bad = good;
    bad[0] = 0;  // magic
    EXPECT_FALSE(read(bad.data()).valid);

    // Every truncation of the structure block (before its FDT_END) is refused.
    const std::uint32_t size_struct = fdt_size_dt_struct(good.data());
    for (std::uint32_t cut = 0; cut < size_struct; cut += 4) {
        bad = good;
        fdt_set_size_dt_struct(bad.data(), cut);
        EXPECT_FALSE(read(bad.data()).valid) << "structure cut at " << cut;
    }
    // A blob cut short (totalsize says so) is refused from the header, without reading on
    // (the copies are exactly that long: ASan sees any overread).
    for (std::size_t len = 40; len < good.size(); len += 8) {
        std::vector<char> b(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(len));
        fdt_set_totalsize(b.data(), static_cast<std::uint32_t>(len));
        EXPECT_FALSE(read(b.data()).valid) << "blob cut at " << len;
    }

    // Sizes that point outside the blob.
    bad = good;
    fdt_set_size_dt_struct(bad.data(), fdt_totalsize(good.data()));
    EXPECT_FALSE(read(bad.data()).valid);
    bad = good;
    fdt_set_size_dt_strings(bad.data(), 0xffff'fff0);
    EXPECT_FALSE(read(bad.data()).valid);

    // A property name offset beyond the strings block.
    bad = good;
    fdt_set_size_dt_strings(bad.data(), 1);
    EXPECT_FALSE(read(bad.data()).valid);
}

}  // namespace
