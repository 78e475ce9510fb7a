// ChainReader / ChainWriter: bounded sequential copies over a chain's scatter-gather list.
#include "virtq/chain.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <vector>

#include "ring_builder.hpp"
#include "virtq/packed_queue.hpp"

namespace vireo::virtq {
namespace {

// Three host buffers of 3, 5 and 8 bytes as one 16-byte scatter-gather list.
struct Sg {
    std::array<std::uint8_t, 3> a{};
    std::array<std::uint8_t, 5> b{};
    std::array<std::uint8_t, 8> c{};
    std::array<iovec, 3> iov{iovec{a.data(), a.size()}, iovec{b.data(), b.size()},
                             iovec{c.data(), c.size()}};
    Sg() {
        std::uint8_t v = 0;  // bytes 0..15 in list order
        for (auto& x : a) {
            x = v++;
        }
        for (auto& x : b) {
            x = v++;
        }
        for (auto& x : c) {
            x = v++;
        }
    }
};

TEST(ChainReader, CopiesAcrossSegments) {
    Sg sg;
    ChainReader r(sg.iov);
    EXPECT_EQ(r.remaining(), 16u);
    std::array<std::uint8_t, 2> first{};
    ASSERT_TRUE(r.read(first));
    EXPECT_EQ(first, (std::array<std::uint8_t, 2>{0, 1}));
    // A 4-byte object straddling the first and second segments.
    std::array<std::uint8_t, 4> obj{};
    ASSERT_TRUE(r.read_obj(obj));
    EXPECT_EQ(obj, (std::array<std::uint8_t, 4>{2, 3, 4, 5}));
    ASSERT_TRUE(r.skip(3));  // to the segment boundary exactly
    EXPECT_EQ(r.remaining(), 7u);
    std::array<std::uint8_t, 7> rest{};
    ASSERT_TRUE(r.read(rest));
    EXPECT_EQ(rest, (std::array<std::uint8_t, 7>{9, 10, 11, 12, 13, 14, 15}));
    EXPECT_EQ(r.remaining(), 0u);
    std::array<std::uint8_t, 1> one{};
    EXPECT_FALSE(r.read(one));
    EXPECT_TRUE(r.read(std::span<std::uint8_t>{}));  // zero bytes always fit
}

TEST(ChainReader, RefusesOverlongReadsWithoutConsuming) {
    Sg sg;
    ChainReader r(sg.iov);
    ASSERT_TRUE(r.skip(10));
    std::array<std::uint8_t, 7> too_long{};
    too_long.fill(0xee);
    EXPECT_FALSE(r.read(too_long));
    EXPECT_EQ(too_long[0], 0xee);  // nothing copied
    EXPECT_EQ(r.remaining(), 6u);  // nothing consumed
    EXPECT_FALSE(r.skip(7));
    std::vector<iovec> iovs;
    EXPECT_FALSE(r.take_iovecs(7, iovs));
    EXPECT_TRUE(iovs.empty());
    std::array<std::uint8_t, 6> exact{};
    ASSERT_TRUE(r.read(exact));
    EXPECT_EQ(exact[0], 10);
    EXPECT_EQ(exact[5], 15);
}

TEST(ChainReader, TakeIovecsSplitsAtSegmentBoundaries) {
    Sg sg;
    ChainReader r(sg.iov);
    ASSERT_TRUE(r.skip(1));
    std::vector<iovec> iovs;
    ASSERT_TRUE(r.take_iovecs(9, iovs));
    ASSERT_EQ(iovs.size(), 3u);
    EXPECT_EQ(iovs[0].iov_base, sg.a.data() + 1);
    EXPECT_EQ(iovs[0].iov_len, 2u);
    EXPECT_EQ(iovs[1].iov_len, 5u);
    EXPECT_EQ(iovs[2].iov_base, sg.c.data());
    EXPECT_EQ(iovs[2].iov_len, 2u);
    EXPECT_EQ(r.remaining(), 6u);
}

TEST(ChainWriter, WritesAcrossSegmentsAndCountsBytes) {
    Sg sg;
    ChainWriter w(sg.iov);
    const std::array<std::uint8_t, 6> data{0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5};
    ASSERT_TRUE(w.write(data));
    EXPECT_EQ(sg.a, (std::array<std::uint8_t, 3>{0xa0, 0xa1, 0xa2}));
    EXPECT_EQ(sg.b[0], 0xa3);
    EXPECT_EQ(sg.b[2], 0xa5);
    EXPECT_EQ(sg.b[3], 6);  // untouched
    ASSERT_TRUE(w.fill_zero(4));
    EXPECT_EQ(sg.b[4], 0);
    EXPECT_EQ(sg.c[1], 0);
    EXPECT_EQ(sg.c[2], 10);
    EXPECT_EQ(w.written(), 10u);
    EXPECT_EQ(w.remaining(), 6u);
    std::vector<iovec> iovs;
    ASSERT_TRUE(w.take_iovecs(2, iovs));
    EXPECT_EQ(w.written(), 12u);
    const std::uint32_t obj = 0x01020304;
    ASSERT_TRUE(w.write_obj(obj));
    EXPECT_EQ(w.written(), 16u);
    EXPECT_EQ(w.remaining(), 0u);
}

TEST(ChainWriter, RefusesOverlongWritesWithoutWriting) {
    Sg sg;
    ChainWriter w(sg.iov);
    ASSERT_TRUE(w.fill_zero(12));
    const std::array<std::uint8_t, 5> data{1, 2, 3, 4, 5};
    EXPECT_FALSE(w.write(data));
    EXPECT_EQ(sg.c[4], 12);  // the remaining bytes are untouched
    EXPECT_FALSE(w.fill_zero(5));
    EXPECT_EQ(sg.c[7], 15);
    std::vector<iovec> iovs;
    EXPECT_FALSE(w.take_iovecs(5, iovs));
    EXPECT_EQ(w.written(), 12u);
    EXPECT_EQ(w.remaining(), 4u);
}

// The same, on a chain a queue built from guest memory: a readable buffer split over two
// adjacent regions, a writable one flush against the end of the last region.
TEST(ChainReaderWriter, OnGuestChainSpanningRegions) {
    test::GuardedMemory guarded;
    test::add_test_regions(guarded);
    const GuestMemory& mem = guarded.mem();
    const QueueConfig cfg{4, test::kRingGpa + test::kPage - 64, test::kRingGpa, test::kRingGpa + 4};
    PackedQueue q;
    ASSERT_TRUE(q.activate(mem, cfg, QueueFeatures{.packed = true}));
    test::PackedRing ring(mem, cfg);
    const auto request = test::pattern(40, 17);
    test::fill(mem, test::kData2Gpa - 20, request);
    const std::uint64_t end = test::kData2Gpa + test::kData2Size;
    ring.add_chain(std::array{test::Buf{test::kData2Gpa - 20, 40}, test::Buf{end - 12, 12, true}},
                   1);
    DescriptorChain chain;
    ASSERT_TRUE(q.pop(mem, chain).value());
    ASSERT_EQ(chain.readable().size(), 2u);

    ChainReader r(chain.readable());
    std::vector<std::uint8_t> head(30);
    ASSERT_TRUE(r.read(head));
    std::vector<std::uint8_t> tail(11);
    EXPECT_FALSE(r.read(tail));  // only 10 left
    tail.resize(10);
    ASSERT_TRUE(r.read(tail));
    head.insert(head.end(), tail.begin(), tail.end());
    EXPECT_EQ(head, request);

    ChainWriter w(chain.writable());
    const auto reply = test::pattern(13, 99);
    EXPECT_FALSE(w.write(reply));  // one byte past the region: refused, nothing written
    EXPECT_EQ(test::bytes_at(mem, end - 12, 12), std::vector<std::uint8_t>(12, 0));
    ASSERT_TRUE(w.write(std::span(reply).first(12)));
    EXPECT_EQ(test::bytes_at(mem, end - 12, 12),
              std::vector<std::uint8_t>(reply.begin(), reply.begin() + 12));
    EXPECT_EQ(w.written(), 12u);
}

}  // namespace
}  // namespace vireo::virtq
