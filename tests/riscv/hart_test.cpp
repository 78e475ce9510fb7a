// ISA unit tests: instructions encoded with riscv/opcodes.hpp run on a bare Hart over 2 MiB of
// RAM at 0x80000000; results are compared register by register.
#include "riscv/hart.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "riscv/opcodes.hpp"

namespace vireo::riscv {
namespace {

constexpr std::uint64_t kBase = 0x80000000;
constexpr std::uint64_t kRamSize = 2 << 20;
constexpr std::uint64_t kData = kBase + 0x10000;  // scratch data area
constexpr std::uint64_t kTrapVec = kBase + 0x8000;

// Register numbers by ABI name.
constexpr std::uint32_t ra = 1, sp = 2, t0 = 5, t1 = 6, t2 = 7, a0 = 10, a1 = 11, a2 = 12, a3 = 13,
                        a4 = 14;

std::uint32_t addi(std::uint32_t rd, std::uint32_t rs1, std::int32_t imm) {
    return enc_i(op::kOpImm, rd, 0, rs1, static_cast<std::uint32_t>(imm));
}
std::uint32_t r_op(std::uint32_t f7, std::uint32_t f3, std::uint32_t rd, std::uint32_t rs1,
                   std::uint32_t rs2, std::uint32_t opc = op::kOp) {
    return enc_r(opc, rd, f3, rs1, rs2, f7);
}
std::uint32_t ld(std::uint32_t f3, std::uint32_t rd, std::uint32_t rs1, std::int32_t imm) {
    return enc_i(op::kLoad, rd, f3, rs1, static_cast<std::uint32_t>(imm));
}
std::uint32_t st(std::uint32_t f3, std::uint32_t rs2, std::uint32_t rs1, std::int32_t imm) {
    return enc_s(op::kStore, f3, rs1, rs2, static_cast<std::uint32_t>(imm));
}
std::uint32_t amo(std::uint32_t f5, std::uint32_t f3, std::uint32_t rd, std::uint32_t rs1,
                  std::uint32_t rs2) {
    return enc_r(op::kAmo, rd, f3, rs1, rs2, f5 << 2);
}
std::uint32_t csrr(std::uint32_t f3, std::uint32_t rd, std::uint16_t csr, std::uint32_t rs1) {
    return enc_i(op::kSystem, rd, f3, rs1, csr);
}
std::uint32_t fp_op(std::uint32_t f7, std::uint32_t rm, std::uint32_t rd, std::uint32_t rs1,
                    std::uint32_t rs2) {
    return enc_r(op::kOpFp, rd, rm, rs1, rs2, f7);
}

class HartTest : public ::testing::Test {
  protected:
    HartTest() : ram_(kRamSize), hart_(0, phys(), time_, irq_) {
        hart_.pc = kBase;
        EXPECT_TRUE(hart_.csr_write(csr::kMtvec, kTrapVec));
    }
    PhysMem phys() {
        PhysMem p;
        p.ram = ram_.data();
        p.ram_base = kBase;
        p.ram_size = kRamSize;
        p.mmio = &bus_;
        return p;
    }
    std::uint8_t* host(std::uint64_t pa) { return ram_.data() + (pa - kBase); }
    void poke64(std::uint64_t pa, std::uint64_t v) { std::memcpy(host(pa), &v, 8); }
    std::uint64_t peek64(std::uint64_t pa) {
        std::uint64_t v;
        std::memcpy(&v, host(pa), 8);
        return v;
    }
    // Places instructions at pc and runs exactly that many steps.
    void run(std::initializer_list<std::uint32_t> insns) {
        std::uint64_t at = hart_.pc;
        for (std::uint32_t i : insns) {
            std::memcpy(host(at), &i, 4);
            at += 4;
        }
        for (std::size_t i = 0; i < insns.size(); ++i) hart_.step();
    }
    void enable_fp() {
        std::uint64_t s;
        ASSERT_TRUE(hart_.csr_read(csr::kMstatus, s));
        ASSERT_TRUE(hart_.csr_write(csr::kMstatus, s | mstatus::kFs));
    }

    std::vector<std::uint8_t> ram_;
    transport::Bus bus_;
    TimeBase time_;
    HartIrq irq_;
    Hart hart_;
};

TEST_F(HartTest, IntegerArithmetic) {
    run({addi(a0, 0, -5), addi(a1, 0, 7), r_op(0, 0, a2, a0, a1), r_op(0x20, 0, a3, a0, a1),
         r_op(0, 2, a4, a0, a1), r_op(0, 3, t0, a0, a1), enc_i(op::kOpImm, t1, 5, a0, 0x400 | 1),
         enc_i(op::kOpImm, t2, 5, a0, 60)});
    EXPECT_EQ(hart_.x[a2], 2u);
    EXPECT_EQ(hart_.x[a3], static_cast<std::uint64_t>(-12));
    EXPECT_EQ(hart_.x[a4], 1u);                              // slt -5 < 7
    EXPECT_EQ(hart_.x[t0], 0u);                              // sltu: 2^64-5 > 7
    EXPECT_EQ(hart_.x[t1], static_cast<std::uint64_t>(-3));  // srai
    EXPECT_EQ(hart_.x[t2], 0xfu);                            // srli by 60
    EXPECT_EQ(hart_.pc, kBase + 32);
}

TEST_F(HartTest, WordOpsSignExtend) {
    hart_.x[a0] = 0x7fffffff;
    run({enc_i(op::kOpImm32, a1, 0, a0, 1),    // addiw overflows into bit 31
         enc_i(op::kOpImm32, a2, 1, a0, 4),    // slliw
         r_op(0x20, 0, a3, 0, a0, op::kOp32),  // subw 0 - a0
         enc_u(op::kLui, a4, 0x80000000)});    // lui sign-extends
    EXPECT_EQ(hart_.x[a1], 0xffffffff80000000u);
    EXPECT_EQ(hart_.x[a2], 0xfffffffffffffff0u);
    EXPECT_EQ(hart_.x[a3], 0xffffffff80000001u);
    EXPECT_EQ(hart_.x[a4], 0xffffffff80000000u);
}

TEST_F(HartTest, LuiAuipcJalJalr) {
    run({enc_u(op::kAuipc, a0, 0x1000), enc_j(ra, 8)});
    EXPECT_EQ(hart_.x[a0], kBase + 0x1000);
    EXPECT_EQ(hart_.x[ra], kBase + 8);
    EXPECT_EQ(hart_.pc, kBase + 12);
    run({enc_i(op::kJalr, t0, 0, ra, 3)});  // target bit 0 cleared
    EXPECT_EQ(hart_.pc, kBase + 10);
    EXPECT_EQ(hart_.x[t0], kBase + 16);
}

TEST_F(HartTest, Branches) {
    run({addi(a0, 0, -1), addi(a1, 0, 1), enc_b(4, a0, a1, 8)});  // blt taken
    EXPECT_EQ(hart_.pc, kBase + 16);
    hart_.pc = kBase;
    run({addi(a0, 0, -1), addi(a1, 0, 1), enc_b(6, a0, a1, 8)});  // bltu not taken
    EXPECT_EQ(hart_.pc, kBase + 12);
}

TEST_F(HartTest, LoadsAndStores) {
    poke64(kData, 0x8081828384858687ull);
    hart_.x[a0] = kData;
    run({ld(0, a1, a0, 0), ld(4, a2, a0, 0), ld(1, a3, a0, 2), ld(2, a4, a0, 4), ld(6, t0, a0, 4),
         ld(3, t1, a0, 0), st(1, a1, a0, 8), st(3, t1, a0, 17)});  // misaligned sd is handled
    EXPECT_EQ(hart_.x[a1], 0xffffffffffffff87u);
    EXPECT_EQ(hart_.x[a2], 0x87u);
    EXPECT_EQ(hart_.x[a3], 0xffffffffffff8485u);
    EXPECT_EQ(hart_.x[a4], 0xffffffff80818283u);
    EXPECT_EQ(hart_.x[t0], 0x80818283u);
    EXPECT_EQ(hart_.x[t1], 0x8081828384858687u);
    EXPECT_EQ(peek64(kData + 8) & 0xffff, 0xff87u);
    std::uint64_t v;
    std::memcpy(&v, host(kData + 17), 8);
    EXPECT_EQ(v, 0x8081828384858687u);
}

TEST_F(HartTest, MultiplyDivide) {
    hart_.x[a0] = static_cast<std::uint64_t>(-7);
    hart_.x[a1] = 2;
    run({r_op(1, 0, a2, a0, a1), r_op(1, 4, a3, a0, a1), r_op(1, 6, a4, a0, a1),
         r_op(1, 5, t0, a0, 0), r_op(1, 7, t1, a0, 0), r_op(1, 3, t2, a0, a0)});
    EXPECT_EQ(hart_.x[a2], static_cast<std::uint64_t>(-14));
    EXPECT_EQ(hart_.x[a3], static_cast<std::uint64_t>(-3));  // rounds toward zero
    EXPECT_EQ(hart_.x[a4], static_cast<std::uint64_t>(-1));
    EXPECT_EQ(hart_.x[t0], ~0ull);                           // divu by zero
    EXPECT_EQ(hart_.x[t1], static_cast<std::uint64_t>(-7));  // remu by zero
    EXPECT_EQ(hart_.x[t2], 0xfffffffffffffff2u);             // mulhu (2^64-7)^2 >> 64
    hart_.x[a0] = 1ull << 63;
    hart_.x[a1] = static_cast<std::uint64_t>(-1);
    run({r_op(1, 4, a2, a0, a1), r_op(1, 6, a3, a0, a1), r_op(1, 1, a4, a0, a1),
         r_op(1, 2, t0, a1, a0)});
    EXPECT_EQ(hart_.x[a2], 1ull << 63);  // overflow: the dividend
    EXPECT_EQ(hart_.x[a3], 0u);
    EXPECT_EQ(hart_.x[a4], 0u);     // mulh(-2^63, -1) = 2^63 -> high word 0
    EXPECT_EQ(hart_.x[t0], ~0ull);  // mulhsu(-1, 2^63) = -2^63: high word all ones
    hart_.x[a0] = 0xffffffff80000000ull;
    hart_.x[a1] = static_cast<std::uint64_t>(-1);
    run({r_op(1, 4, a2, a0, a1, op::kOp32), r_op(1, 6, a3, a0, 0, op::kOp32)});
    EXPECT_EQ(hart_.x[a2], 0xffffffff80000000u);  // divw overflow
    EXPECT_EQ(hart_.x[a3], 0xffffffff80000000u);  // remw by zero
}

TEST_F(HartTest, AtomicsAndReservations) {
    poke64(kData, 5);
    hart_.x[a0] = kData;
    hart_.x[a1] = 3;
    run({amo(0x00, 3, a2, a0, a1),    // amoadd.d -> old 5, mem 8
         amo(0x02, 3, a3, a0, 0),     // lr.d
         amo(0x03, 3, a4, a0, a1),    // sc.d succeeds (0), mem 3
         amo(0x03, 3, t0, a0, a1),    // sc.d without reservation fails (1)
         amo(0x14, 2, t1, a0, a2)});  // amomax.w(3, 5) -> old 3, mem 5
    EXPECT_EQ(hart_.x[a2], 5u);
    EXPECT_EQ(hart_.x[a3], 8u);
    EXPECT_EQ(hart_.x[a4], 0u);
    EXPECT_EQ(hart_.x[t0], 1u);
    EXPECT_EQ(hart_.x[t1], 3u);
    EXPECT_EQ(peek64(kData), 5u);
    // A store from elsewhere between LR and SC breaks the reservation.
    run({amo(0x02, 2, a3, a0, 0)});
    poke64(kData, 99);
    run({amo(0x03, 2, a4, a0, a1)});
    EXPECT_EQ(hart_.x[a4], 1u);
    EXPECT_EQ(peek64(kData), 99u);
    // amoswap.w returns the sign-extended old word.
    poke64(kData, 0x80000000u);
    run({amo(0x01, 2, a2, a0, a1)});
    EXPECT_EQ(hart_.x[a2], 0xffffffff80000000u);
    // Misaligned AMO: store/AMO address misaligned.
    hart_.x[a0] = kData + 4;
    run({amo(0x00, 3, a2, a0, a1)});
    EXPECT_EQ(hart_.mcause(), static_cast<std::uint64_t>(Exc::kStoreMisaligned));
    EXPECT_EQ(hart_.mtval(), kData + 4);
    EXPECT_EQ(hart_.pc, kTrapVec);
}

TEST_F(HartTest, CompressedInstructionsExecute) {
    // c.li a0, -17; c.addi a0, 1; c.mv a1, a0; c.slli a1, 1 (all 16-bit).
    const std::uint16_t code[] = {0x553d, 0x0505, 0x85aa, 0x0586};
    std::memcpy(host(kBase), code, sizeof code);
    for (int i = 0; i < 4; ++i) hart_.step();
    EXPECT_EQ(hart_.x[a0], static_cast<std::uint64_t>(-16));
    EXPECT_EQ(hart_.x[a1], static_cast<std::uint64_t>(-32));
    EXPECT_EQ(hart_.pc, kBase + 8);
}

TEST_F(HartTest, FloatingPoint) {
    // FP instructions are illegal while mstatus.FS is Off.
    run({fp_op(0x01, 0, 1, 2, 3)});
    EXPECT_EQ(hart_.mcause(), static_cast<std::uint64_t>(Exc::kIllegalInsn));
    hart_.pc = kBase;
    enable_fp();
    const double a = 1.5, b = -2.25;
    std::memcpy(&hart_.f[1], &a, 8);
    std::memcpy(&hart_.f[2], &b, 8);
    hart_.x[a0] = static_cast<std::uint64_t>(-7);
    run({fp_op(0x01, 0, 3, 1, 2),     // fadd.d f3 = -0.75
         fp_op(0x09, 0, 4, 1, 2),     // fmul.d f4 = -3.375
         fp_op(0x61, 1, a1, 4, 0),    // fcvt.w.d rtz -> -3
         fp_op(0x61, 2, a2, 4, 0),    // fcvt.w.d rdn -> -4
         fp_op(0x51, 1, a3, 2, 1),    // flt.d -> 1
         fp_op(0x69, 0, 5, a0, 2),    // fcvt.d.l f5 = -7
         fp_op(0x71, 1, a4, 3, 0),    // fclass.d(-0.75) -> negative normal
         fp_op(0x68, 0, 6, a0, 0)});  // fcvt.s.w f6 = -7.0f, NaN-boxed
    double r;
    std::memcpy(&r, &hart_.f[3], 8);
    EXPECT_EQ(r, -0.75);
    std::memcpy(&r, &hart_.f[4], 8);
    EXPECT_EQ(r, -3.375);
    EXPECT_EQ(hart_.x[a1], static_cast<std::uint64_t>(-3));
    EXPECT_EQ(hart_.x[a2], static_cast<std::uint64_t>(-4));
    EXPECT_EQ(hart_.x[a3], 1u);
    std::memcpy(&r, &hart_.f[5], 8);
    EXPECT_EQ(r, -7.0);
    EXPECT_EQ(hart_.x[a4], 1u << 1);
    EXPECT_EQ(hart_.f[6], 0xffffffff00000000ull | 0xc0e00000u);
    std::uint64_t flags;
    ASSERT_TRUE(hart_.csr_read(csr::kFflags, flags));
    EXPECT_EQ(flags, fflag::kNx);  // the inexact conversions
}

TEST_F(HartTest, FloatingPointSpecialCases) {
    enable_fp();
    const double nan = __builtin_nan(""), big = 1e30, mz = -0.0, pz = 0.0;
    std::memcpy(&hart_.f[1], &nan, 8);
    std::memcpy(&hart_.f[2], &big, 8);
    std::memcpy(&hart_.f[3], &mz, 8);
    std::memcpy(&hart_.f[4], &pz, 8);
    hart_.f[5] = 0x3f800000;  // a single 1.0f that is NOT NaN-boxed: reads as the canonical NaN
    run({fp_op(0x61, 1, a0, 1, 0),   // fcvt.w.d(NaN) -> INT32_MAX, NV
         fp_op(0x61, 1, a1, 2, 2),   // fcvt.l.d(1e30) -> INT64_MAX, NV
         fp_op(0x15, 0, 6, 3, 4),    // fmin.d(-0, +0) -> -0
         fp_op(0x15, 0, 7, 1, 4),    // fmin.d(NaN, +0) -> +0
         fp_op(0x51, 2, a2, 1, 1),   // feq.d(NaN, NaN) -> 0, quiet
         fp_op(0x70, 1, a3, 5, 0),   // fclass.s(unboxed) -> quiet NaN
         fp_op(0x11, 1, 8, 4, 4)});  // fsgnjn.d f8 = -(+0)
    EXPECT_EQ(hart_.x[a0], 0x7fffffffu);
    EXPECT_EQ(hart_.x[a1], 0x7fffffffffffffffu);
    EXPECT_EQ(hart_.f[6], 0x8000000000000000u);
    EXPECT_EQ(hart_.f[7], 0u);
    EXPECT_EQ(hart_.x[a2], 0u);
    EXPECT_EQ(hart_.x[a3], 1u << 9);
    EXPECT_EQ(hart_.f[8], 0x8000000000000000u);
    std::uint64_t flags;
    ASSERT_TRUE(hart_.csr_read(csr::kFflags, flags));
    EXPECT_EQ(flags, fflag::kNv);
}

TEST_F(HartTest, CsrInstructions) {
    hart_.x[a0] = 0xf0;
    run({csrr(1, a1, csr::kMscratch, a0),  // csrrw: old 0
         csrr(2, a2, csr::kMscratch, 0),   // csrr
         csrr(6, 0, csr::kMscratch, 3),    // csrrsi 3
         csrr(7, a3, csr::kMscratch, 1),   // csrrci 1
         csrr(2, a4, csr::kMhartid, 0), csrr(2, t0, csr::kMisa, 0)});
    EXPECT_EQ(hart_.x[a1], 0u);
    EXPECT_EQ(hart_.x[a2], 0xf0u);
    EXPECT_EQ(hart_.x[a3], 0xf3u);
    std::uint64_t v;
    ASSERT_TRUE(hart_.csr_read(csr::kMscratch, v));
    EXPECT_EQ(v, 0xf2u);
    EXPECT_EQ(hart_.x[a4], 0u);
    EXPECT_EQ(hart_.x[t0], kMisa);
    // Writing a read-only CSR is illegal; the instruction word goes to mtval.
    const std::uint32_t bad = csrr(1, 0, csr::kMhartid, a0);
    run({bad});
    EXPECT_EQ(hart_.mcause(), static_cast<std::uint64_t>(Exc::kIllegalInsn));
    EXPECT_EQ(hart_.mtval(), bad);
}

// Drops to `p` through MRET at mepc = target.
void drop_to(Hart& h, Priv p, std::uint64_t target) {
    std::uint64_t s;
    ASSERT_TRUE(h.csr_read(csr::kMstatus, s));
    s = (s & ~mstatus::kMpp) | (static_cast<std::uint64_t>(p) << mstatus::kMppShift);
    ASSERT_TRUE(h.csr_write(csr::kMstatus, s));
    ASSERT_TRUE(h.csr_write(csr::kMepc, target));
}

TEST_F(HartTest, TrapsAndDelegation) {
    constexpr std::uint64_t kStvec = kBase + 0x9000;
    ASSERT_TRUE(hart_.csr_write(csr::kStvec, kStvec));
    ASSERT_TRUE(hart_.csr_write(csr::kMedeleg, 1u << 8));  // U-mode ECALL to S
    drop_to(hart_, Priv::kU, kBase + 0x100);
    run({kMret});
    EXPECT_EQ(hart_.priv, Priv::kU);
    EXPECT_EQ(hart_.pc, kBase + 0x100);
    // U-mode: reading an M CSR is illegal and goes to M (not delegated).
    run({csrr(2, a0, csr::kMstatus, 0)});
    EXPECT_EQ(hart_.priv, Priv::kM);
    EXPECT_EQ(hart_.pc, kTrapVec);
    EXPECT_EQ(hart_.mcause(), static_cast<std::uint64_t>(Exc::kIllegalInsn));
    std::uint64_t s;
    ASSERT_TRUE(hart_.csr_read(csr::kMstatus, s));
    EXPECT_EQ((s & mstatus::kMpp) >> mstatus::kMppShift, 0u);  // came from U
    // Back to U; ECALL is delegated to S.
    drop_to(hart_, Priv::kU, kBase + 0x200);
    run({kMret});
    run({kEcall});
    EXPECT_EQ(hart_.priv, Priv::kS);
    EXPECT_EQ(hart_.pc, kStvec);
    EXPECT_EQ(hart_.scause(), static_cast<std::uint64_t>(Exc::kEcallU));
    std::uint64_t sepc;
    ASSERT_TRUE(hart_.csr_read(csr::kSepc, sepc));
    EXPECT_EQ(sepc, kBase + 0x200);
    // SRET returns to U at sepc.
    run({kSret});
    EXPECT_EQ(hart_.priv, Priv::kU);
    EXPECT_EQ(hart_.pc, kBase + 0x200);
}

TEST_F(HartTest, TimerInterrupt) {
    irq_.set_mtimecmp(0);   // already due
    run({addi(a0, 0, 1)});  // interrupts disabled: runs normally
    EXPECT_EQ(hart_.x[a0], 1u);
    ASSERT_TRUE(hart_.csr_write(csr::kMie, irq::kMtip));
    ASSERT_TRUE(hart_.csr_write(csr::kMstatus, mstatus::kMie));
    hart_.step();
    EXPECT_EQ(hart_.pc, kTrapVec);
    EXPECT_EQ(hart_.mcause(), irq::kInterruptBit | irq::kMti);
    std::uint64_t mepc;
    ASSERT_TRUE(hart_.csr_read(csr::kMepc, mepc));
    EXPECT_EQ(mepc, kBase + 4);
    // A delegated supervisor interrupt (SSIP written by software) is taken in S from U.
    ASSERT_TRUE(hart_.csr_write(csr::kMideleg, irq::kSsip));
    ASSERT_TRUE(hart_.csr_write(csr::kMie, irq::kSsip));
    ASSERT_TRUE(hart_.csr_write(csr::kStvec, kBase + 0x9000));
    drop_to(hart_, Priv::kU, kBase + 0x300);
    run({kMret});
    ASSERT_TRUE(hart_.csr_write(csr::kMip, irq::kSsip));
    hart_.step();
    EXPECT_EQ(hart_.priv, Priv::kS);
    EXPECT_EQ(hart_.pc, kBase + 0x9000);
    EXPECT_EQ(hart_.scause(), irq::kInterruptBit | irq::kSsi);
}

// Writing an FP register makes FS Dirty and SD set, as sstatus shows it: Linux saves FP state
// on a context switch only when the saved sstatus has SD (a guest lost callee-saved FP
// registers across a sleeping syscall without it).
TEST_F(HartTest, FpWriteSetsDirtyAndSd) {
    ASSERT_TRUE(hart_.csr_write(csr::kMstatus, 1ull << mstatus::kFsShift));  // FS = Initial
    run({enc_i(op::kLoadFp, 1, 3, 0, 0)});  // fld f1, 0(zero): faults, FS unchanged
    std::uint64_t s;
    ASSERT_TRUE(hart_.csr_read(csr::kSstatus, s));
    EXPECT_EQ(s & mstatus::kSd, 0u);
    hart_.pc = kBase + 0x100;
    hart_.x[a0] = kData;
    run({enc_i(op::kLoadFp, 1, 3, a0, 0)});  // fld f1, 0(a0)
    ASSERT_TRUE(hart_.csr_read(csr::kSstatus, s));
    EXPECT_EQ(s & mstatus::kFs, mstatus::kFsDirty);
    EXPECT_NE(s & mstatus::kSd, 0u);
}

// mip.SEIP reads as software bit | PLIC line, but CSRRS/CSRRC modify only the software bit
// (Privileged §3.1.9). OpenSBI clears STIP with CSRRC while the PLIC may assert SEIP; a hart
// that wrote the OR back kept SEIP after the line dropped: an endless storm of external
// interrupts with nothing to claim (the Linux boot hang on virtio-blk).
TEST_F(HartTest, MipReadModifyWriteKeepsPlicLineOut) {
    hart_.x[a0] = irq::kStip;
    ASSERT_TRUE(hart_.csr_write(csr::kMip, irq::kStip));
    irq_.set(irq::kSeip, true);                       // the PLIC raises the S-mode external line
    run({csrr(3, a1, csr::kMip, a0)});                // csrrc a1, mip, a0: clear STIP
    EXPECT_EQ(hart_.x[a1], irq::kStip | irq::kSeip);  // the read shows the line
    irq_.set(irq::kSeip, false);  // the guest claimed and completed: the line drops
    std::uint64_t mip;
    ASSERT_TRUE(hart_.csr_read(csr::kMip, mip));
    EXPECT_EQ(mip & (irq::kSeip | irq::kStip), 0u);
    // The software SEIP bit itself still reads back and is kept by CSRRS.
    hart_.x[a0] = irq::kSeip;
    run({csrr(2, 0, csr::kMip, a0)});  // csrrs zero, mip, a0
    ASSERT_TRUE(hart_.csr_read(csr::kMip, mip));
    EXPECT_EQ(mip & irq::kSeip, irq::kSeip);
}

// Sv39: root at 0x80100000 with an identity gigapage for RAM (code) and a 4 KiB-page tree for
// VA 0x5000..0x9fff.
class PagingTest : public HartTest {
  protected:
    static constexpr std::uint64_t kRoot = kBase + 0x100000;
    static constexpr std::uint64_t kL1 = kBase + 0x101000;
    static constexpr std::uint64_t kL0 = kBase + 0x102000;
    static constexpr std::uint64_t kPage = kBase + 0x150000;
    static std::uint64_t pte_of(std::uint64_t pa, std::uint64_t flags) {
        return ((pa >> kPageShift) << pte::kPpnShift) | flags | pte::kV;
    }
    void SetUp() override {
        poke64(kRoot + 2 * 8, pte_of(kBase, pte::kR | pte::kW | pte::kX | pte::kA | pte::kD));
        poke64(kRoot + 0 * 8, pte_of(kL1, 0));
        poke64(kL1 + 0 * 8, pte_of(kL0, 0));
        poke64(kL0 + 5 * 8, pte_of(kPage, pte::kR | pte::kW));  // no A/D yet
        poke64(kL0 + 6 * 8, pte_of(kPage, pte::kR | pte::kA));  // read-only
        poke64(kL0 + 7 * 8, pte_of(kPage, pte::kR | pte::kW | pte::kU | pte::kA | pte::kD));
        poke64(kL0 + 8 * 8, pte_of(kPage, pte::kW | pte::kA | pte::kD));  // W without R
        poke64(kPage, 0x1122334455667788ull);
        ASSERT_TRUE(hart_.csr_write(csr::kSatp,
                                    (satp::kModeSv39 << satp::kModeShift) | (kRoot >> kPageShift)));
        drop_to(hart_, Priv::kS, kBase + 0x400);
        run({kMret});
        ASSERT_EQ(hart_.priv, Priv::kS);
    }
    void expect_fault(Exc e, std::uint64_t tval) {
        EXPECT_EQ(hart_.priv, Priv::kM);
        EXPECT_EQ(hart_.mcause(), static_cast<std::uint64_t>(e));
        EXPECT_EQ(hart_.mtval(), tval);
    }
};

TEST_F(PagingTest, TranslatesAndSetsAccessedDirty) {
    hart_.x[a0] = 0x5000;
    run({ld(3, a1, a0, 8), ld(3, a2, a0, 0)});
    EXPECT_EQ(hart_.x[a2], 0x1122334455667788u);
    EXPECT_NE(peek64(kL0 + 5 * 8) & pte::kA, 0u);
    EXPECT_EQ(peek64(kL0 + 5 * 8) & pte::kD, 0u);
    hart_.x[a3] = 42;
    run({st(3, a3, a0, 16)});
    EXPECT_NE(peek64(kL0 + 5 * 8) & pte::kD, 0u);
    EXPECT_EQ(peek64(kPage + 16), 42u);
    std::uint64_t pa;
    EXPECT_TRUE(hart_.debug_translate(0x5123, Hart::Access::kRead, pa));
    EXPECT_EQ(pa, kPage + 0x123);
    EXPECT_TRUE(hart_.debug_translate(kBase + 0x1234, Hart::Access::kExec, pa));
    EXPECT_EQ(pa, kBase + 0x1234);
}

TEST_F(PagingTest, StoreToReadOnlyPageFaults) {
    hart_.x[a0] = 0x6000;
    run({st(3, a0, a0, 8)});
    expect_fault(Exc::kStorePageFault, 0x6008);
}

TEST_F(PagingTest, UserPageNeedsSum) {
    hart_.x[a0] = 0x7000;
    run({ld(3, a1, a0, 0)});
    expect_fault(Exc::kLoadPageFault, 0x7000);
}

TEST_F(PagingTest, SumAllowsUserPageAfterFlush) {
    std::uint64_t s;
    ASSERT_TRUE(hart_.csr_read(csr::kSstatus, s));
    ASSERT_TRUE(hart_.csr_write(csr::kSstatus, s | mstatus::kSum));
    hart_.x[a0] = 0x7000;
    run({ld(3, a1, a0, 0)});
    EXPECT_EQ(hart_.priv, Priv::kS);
    EXPECT_EQ(hart_.x[a1], 0x1122334455667788u);
}

TEST_F(PagingTest, UnmappedAndReservedEncodingsFault) {
    hart_.x[a0] = 0x9000;
    run({ld(3, a1, a0, 0)});
    expect_fault(Exc::kLoadPageFault, 0x9000);
    drop_to(hart_, Priv::kS, kBase + 0x400);
    run({kMret});
    hart_.x[a0] = 0x8000;  // W without R is reserved
    run({ld(3, a1, a0, 0)});
    expect_fault(Exc::kLoadPageFault, 0x8000);
    drop_to(hart_, Priv::kS, kBase + 0x400);
    run({kMret});
    hart_.x[a0] = 0x0000004000000000ull;  // not sign-extended from bit 38
    run({ld(3, a1, a0, 0)});
    expect_fault(Exc::kLoadPageFault, 0x0000004000000000ull);
}

TEST_F(PagingTest, SfenceVmaDropsStaleTranslations) {
    hart_.x[a0] = 0x5000;
    run({ld(3, a1, a0, 0)});
    EXPECT_EQ(hart_.x[a1], 0x1122334455667788u);
    poke64(kL0 + 5 * 8, 0);  // unmap; the TLB still has it
    run({ld(3, a1, a0, 0)});
    EXPECT_EQ(hart_.priv, Priv::kS);
    run({enc_r(op::kSystem, 0, 0, 0, 0, kSfenceVmaFunct7), ld(3, a1, a0, 0)});
    expect_fault(Exc::kLoadPageFault, 0x5000);
}

TEST_F(HartTest, Sv48AndUnsupportedModes) {
    constexpr std::uint64_t kL3 = kBase + 0x100000, kL2 = kBase + 0x101000;
    poke64(kL3 + 8 * 0, ((kL2 >> kPageShift) << pte::kPpnShift) | pte::kV);
    poke64(kL2 + 8 * 2, ((kBase >> kPageShift) << pte::kPpnShift) | pte::kV | pte::kR | pte::kW |
                            pte::kX | pte::kA | pte::kD);
    // Sv57 is not implemented: the write is ignored (how Linux probes the widest mode).
    ASSERT_TRUE(hart_.csr_write(csr::kSatp, (10ull << satp::kModeShift) | 1));
    std::uint64_t v;
    ASSERT_TRUE(hart_.csr_read(csr::kSatp, v));
    EXPECT_EQ(v, 0u);
    ASSERT_TRUE(
        hart_.csr_write(csr::kSatp, (satp::kModeSv48 << satp::kModeShift) | (kL3 >> kPageShift)));
    drop_to(hart_, Priv::kS, kBase + 0x400);
    run({kMret});
    std::uint64_t pa;
    EXPECT_TRUE(hart_.debug_translate(kBase + 0x4321, Hart::Access::kRead, pa));
    EXPECT_EQ(pa, kBase + 0x4321);
    EXPECT_FALSE(hart_.debug_translate(0x1000, Hart::Access::kRead, pa));
}

// Two harts hammer one counter with AMOADD and LR/SC loops from two threads.
TEST(HartSmp, AtomicsAcrossHarts) {
    std::vector<std::uint8_t> ram(kRamSize);
    transport::Bus bus;
    TimeBase time;
    PhysMem p{ram.data(), kBase, kRamSize, &bus};
    constexpr int kIters = 50000;
    // loop: amoadd.d zero, t1, (a0); lr.d t2,(a0); addi t2,t2,1; sc.d t0,t2,(a0);
    //       bnez t0, -12 (retry lr); addi a1, a1, -1; bnez a1, loop; j self
    const std::uint32_t prog[] = {amo(0x00, 3, 0, a0, t1),
                                  amo(0x02, 3, t2, a0, 0),
                                  addi(t2, t2, 1),
                                  amo(0x03, 3, t0, a0, t2),
                                  enc_b(1, t0, 0, static_cast<std::uint32_t>(-12)),
                                  addi(a1, a1, -1),
                                  enc_b(1, a1, 0, static_cast<std::uint32_t>(-24)),
                                  enc_j(0, 0)};
    std::memcpy(ram.data(), prog, sizeof prog);
    HartIrq i0, i1;
    Hart h0(0, p, time, i0), h1(1, p, time, i1);
    for (Hart* h : {&h0, &h1}) {
        h->pc = kBase;
        h->x[a0] = kData;
        h->x[a1] = kIters;
        h->x[t1] = 1;
    }
    std::atomic<bool> stop{false};
    auto body = [&](Hart& h) {
        while (h.x[a1] != 0) h.run(1000, stop);
    };
    std::thread th(body, std::ref(h1));
    body(h0);
    th.join();
    std::uint64_t v;
    std::memcpy(&v, ram.data() + (kData - kBase), 8);
    EXPECT_EQ(v, 2u * 2 * kIters);
}

}  // namespace
}  // namespace vireo::riscv
