// RVC expansion (Unprivileged §16) against the GNU assembler: each compressed encoding must
// expand to the instruction `as -march=rv64g` emits for the same source line.
#include <gtest/gtest.h>

#include "riscv/hart.hpp"
#include "riscv/opcodes.hpp"

namespace vireo::riscv {
namespace {

struct Pair {
    std::uint16_t compressed;
    std::uint32_t expanded;
    const char* text;
};

// From riscv64-linux-gnu-as 2.40: -march=rv64gc output next to -march=rv64g output.
constexpr Pair kPairs[] = {
    {0x1080, 0x06010413, "addi s0, sp, 96"},
    {0x1ffc, 0x3fc10793, "addi a5, sp, 1020"},
    {0x3de8, 0x0f85b507, "fld fa0, 248(a1)"},
    {0x5ef0, 0x07c6a603, "lw a2, 124(a3)"},
    {0x7ff8, 0x0f87b703, "ld a4, 248(a5)"},
    {0xa404, 0x00943427, "fsd fs1, 8(s0)"},
    {0xc0a8, 0x04a4a023, "sw a0, 64(s1)"},
    {0xfd24, 0x06953c23, "sd s1, 120(a0)"},
    {0x0001, 0x00000013, "nop"},
    {0x1501, 0xfe050513, "addi a0, a0, -32"},
    {0x02fd, 0x01f28293, "addi t0, t0, 31"},
    {0x35fd, 0xfff5859b, "addiw a1, a1, -1"},
    {0x563d, 0xfef00613, "li a2, -17"},
    {0x7101, 0xe0010113, "addi sp, sp, -512"},
    {0x617d, 0x1f010113, "addi sp, sp, 496"},
    {0x66fd, 0x0001f6b7, "lui a3, 0x1f"},
    {0x7681, 0xfffe06b7, "lui a3, 0xfffe0"},
    {0x907d, 0x03f45413, "srli s0, s0, 63"},
    {0x8785, 0x4017d793, "srai a5, a5, 1"},
    {0x9b7d, 0xfff77713, "andi a4, a4, -1"},
    {0x8c89, 0x40a484b3, "sub s1, s1, a0"},
    {0x8db1, 0x00c5c5b3, "xor a1, a1, a2"},
    {0x8ed9, 0x00e6e6b3, "or a3, a3, a4"},
    {0x8c7d, 0x00f47433, "and s0, s0, a5"},
    {0x9d0d, 0x40b5053b, "subw a0, a0, a1"},
    {0x9e35, 0x00d6063b, "addw a2, a2, a3"},
    {0x1306, 0x02131313, "slli t1, t1, 33"},
    {0x30fe, 0x1f813087, "fld ft1, 504(sp)"},
    {0x50fe, 0x0fc12083, "lw ra, 252(sp)"},
    {0x6da2, 0x00813d83, "ld s11, 8(sp)"},
    {0x8082, 0x00008067, "jr ra"},
    {0x854a, 0x01200533, "mv a0, s2"},
    {0x9002, 0x00100073, "ebreak"},
    {0x9282, 0x000280e7, "jalr t0"},
    {0x95fe, 0x01f585b3, "add a1, a1, t6"},
    {0xa022, 0x00813027, "fsd fs0, 0(sp)"},
    {0xde9e, 0x06712e23, "sw t2, 124(sp)"},
    {0xff86, 0x1e113c23, "sd ra, 504(sp)"},
};

TEST(Rvc, MatchesAssembler) {
    for (const Pair& p : kPairs) {
        EXPECT_EQ(expand_compressed(p.compressed), p.expanded) << p.text;
    }
}

TEST(Rvc, BranchesAndJumps) {
    // beqz a0, -128; bnez s1, +206; j -132; j +202 (offsets from the assembler listing).
    EXPECT_EQ(expand_compressed(0xd141), enc_b(0, 10, 0, static_cast<std::uint32_t>(-128)));
    EXPECT_EQ(expand_compressed(0xe4f9), enc_b(1, 9, 0, 0xce));
    EXPECT_EQ(expand_compressed(0xbfb5), enc_j(0, static_cast<std::uint32_t>(-0x84)));
    EXPECT_EQ(expand_compressed(0xa0e9), enc_j(0, 0xca));
}

TEST(Rvc, ReservedEncodingsAreIllegal) {
    EXPECT_EQ(expand_compressed(0x0000), 0u);  // all zeros: defined illegal
    EXPECT_EQ(expand_compressed(0x0004), 0u);  // C.ADDI4SPN with zero immediate
    EXPECT_EQ(expand_compressed(0x6101), 0u);  // C.ADDI16SP with zero immediate
    EXPECT_EQ(expand_compressed(0x6081), 0u);  // C.LUI with zero immediate
    EXPECT_EQ(expand_compressed(0x2001), 0u);  // C.ADDIW with rd = x0
    EXPECT_EQ(expand_compressed(0x4002), 0u);  // C.LWSP with rd = x0
    EXPECT_EQ(expand_compressed(0x8002), 0u);  // C.JR with rs1 = x0
    EXPECT_EQ(expand_compressed(0x9c41), 0u);  // reserved in the CA group (bit 12 set, 10)
}

}  // namespace
}  // namespace vireo::riscv
