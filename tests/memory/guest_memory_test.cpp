#include "memory/guest_memory.hpp"

#include <gtest/gtest.h>

#include <vector>

#include "memory/ordering.hpp"

namespace vireo {
namespace {

TEST(GuestMemory, TranslateInsideRegion) {
    GuestMemory mem;
    ASSERT_TRUE(mem.add_memfd(0x1000, 0x2000));
    EXPECT_NE(mem.translate(0x1000, 0x2000), nullptr);
    EXPECT_NE(mem.translate(0x2fff, 1), nullptr);
    EXPECT_EQ(mem.translate(0x2fff, 2), nullptr);  // last byte + one past the end
    EXPECT_EQ(mem.translate(0xfff, 1), nullptr);
    EXPECT_EQ(mem.translate(0x3000, 0), nullptr);
}

TEST(GuestMemory, TranslateRejectsOverflow) {
    GuestMemory mem;
    ASSERT_TRUE(mem.add_anonymous(0x1000, 0x1000));
    EXPECT_EQ(mem.translate(0x1800, UINT64_MAX), nullptr);
    EXPECT_EQ(mem.translate(UINT64_MAX, 2), nullptr);
    EXPECT_FALSE(
        mem.for_each_segment(0x1800, UINT64_MAX - 0x100, [](const HostSegment&) { return true; }));
}

TEST(GuestMemory, RejectsOverlapAndEmptyAndWrap) {
    GuestMemory mem;
    ASSERT_TRUE(mem.add_anonymous(0x10000, 0x10000));
    EXPECT_EQ(mem.add_anonymous(0x1f000, 0x2000).error(), MemoryError::kOverlap);
    EXPECT_EQ(mem.add_anonymous(0x8000, 0x9000).error(), MemoryError::kOverlap);
    EXPECT_EQ(mem.add_anonymous(0x0, 0x100000).error(), MemoryError::kOverlap);
    EXPECT_EQ(mem.add_anonymous(0x40000, 0).error(), MemoryError::kEmpty);
    EXPECT_EQ(mem.add_anonymous(UINT64_MAX - 0xfff, 0x2000).error(), MemoryError::kWrapsAround);
    EXPECT_TRUE(mem.add_anonymous(0x20000, 0x1000));  // adjacent is fine
    EXPECT_EQ(mem.region_count(), 2u);
}

TEST(GuestMemory, CrossingRangeIsSplitIntoSegments) {
    GuestMemory mem;
    ASSERT_TRUE(mem.add_memfd(0x0, 0x1000));
    ASSERT_TRUE(mem.add_memfd(0x1000, 0x1000));
    EXPECT_EQ(mem.translate(0xff0, 0x20), nullptr);  // one pointer cannot cover two mappings
    std::vector<HostSegment> segs;
    EXPECT_TRUE(mem.for_each_segment(0xff0, 0x20, [&](const HostSegment& s) {
        segs.push_back(s);
        return true;
    }));
    ASSERT_EQ(segs.size(), 2u);
    EXPECT_EQ(segs[0].gpa, 0xff0u);
    EXPECT_EQ(segs[0].len, 0x10u);
    EXPECT_EQ(segs[1].gpa, 0x1000u);
    EXPECT_EQ(segs[1].len, 0x10u);

    const std::vector<std::uint8_t> data(0x20, 0xab);
    EXPECT_TRUE(mem.write(0xff0, data.data(), data.size()));
    std::vector<std::uint8_t> back(0x20);
    EXPECT_TRUE(mem.read(0xff0, back.data(), back.size()));
    EXPECT_EQ(back, data);
}

TEST(GuestMemory, HoleIsReported) {
    GuestMemory mem;
    ASSERT_TRUE(mem.add_anonymous(0x0, 0x1000));
    ASSERT_TRUE(mem.add_anonymous(0x2000, 0x1000));
    std::uint8_t buf[0x20] = {};
    EXPECT_FALSE(mem.read(0xff0, buf, sizeof buf));
    EXPECT_FALSE(mem.write(0x1ff0, buf, sizeof buf));
    EXPECT_TRUE(mem.read(0x2000, buf, sizeof buf));
}

TEST(GuestMemory, ManyRegionsUseBinarySearch) {
    GuestMemory mem;
    for (std::uint64_t i = 0; i < 16; ++i) {
        ASSERT_TRUE(mem.add_anonymous(i * 0x10000, 0x1000));
    }
    for (std::uint64_t i = 0; i < 16; ++i) {
        EXPECT_NE(mem.translate(i * 0x10000 + 0xfff, 1), nullptr);
        EXPECT_EQ(mem.translate(i * 0x10000 + 0x1000, 1), nullptr);
    }
    EXPECT_TRUE(mem.remove(0x50000, 0x1000));
    EXPECT_EQ(mem.translate(0x50000, 1), nullptr);
    EXPECT_EQ(mem.remove(0x50000, 0x1000).error(), MemoryError::kNotFound);
}

TEST(GuestMemory, MemfdIsSharedThroughItsFd) {
    GuestMemory a;
    ASSERT_TRUE(a.add_memfd(0x0, 0x4000));
    const int fd = a.regions()[0]->fd();
    ASSERT_GE(fd, 0);
    GuestMemory b;  // another "process" maps the same fd at an unaligned file offset
    ASSERT_TRUE(b.add_fd(0x100000, 0x1000, UniqueFd(::dup(fd)), 0x1234, 0x7f0000001234));
    const std::uint32_t v = 0xdeadbeef;
    ASSERT_TRUE(a.write_obj(0x1234, v));
    std::uint32_t got = 0;
    ASSERT_TRUE(b.read_obj(0x100000, got));
    EXPECT_EQ(got, v);
    EXPECT_EQ(*b.uva_to_gpa(0x7f0000001238), 0x100004u);
    EXPECT_FALSE(b.uva_to_gpa(0x7f0000001234 + 0x1000));
    EXPECT_FALSE(b.uva_to_gpa(0x7f0000001234 + 0xff0, 0x20));
}

TEST(GuestMemoryDeathTest, RegionsAreFencedByGuardPages) {
    // Translation never hands out such a pointer; the guard pages make sure that if a bug ever
    // did, the access faults instead of reaching other host memory.
    GuestMemory mem;
    ASSERT_TRUE(mem.add_memfd(0x0, 0x1800));  // not a page multiple: the tail page is mapped
    ASSERT_TRUE(mem.add_anonymous(0x100000, 0x1000));
    volatile std::uint8_t* a = mem.translate(0x0, 1);
    volatile std::uint8_t* b = mem.translate(0x100000, 1);
    EXPECT_DEATH(a[-1] = 1, "");
    EXPECT_DEATH(b[0x1000] = 1, "");
    EXPECT_DEATH((void)b[-1], "");
}

TEST(WireTypes, LittleEndianLayout) {
    le32 v = le32::of(0x11223344);
    std::uint8_t bytes[4];
    std::memcpy(bytes, &v, 4);
    EXPECT_EQ(bytes[0], 0x44);
    EXPECT_EQ(bytes[3], 0x11);
    le16 w{};
    store_release(&w, std::uint16_t{0xbeef});
    EXPECT_EQ(load_acquire(&w), 0xbeef);
}

}  // namespace
}  // namespace vireo
