// RVC (Unprivileged spec §16, RV64 column): each 16-bit instruction is expanded to the 32-bit
// instruction it stands for, so the interpreter has one implementation of each operation.
#include "riscv/hart.hpp"
#include "riscv/opcodes.hpp"

namespace vireo::riscv {

namespace {

using std::uint32_t;

constexpr uint32_t bits(uint32_t v, unsigned hi, unsigned lo) {
    return (v >> lo) & ((1u << (hi - lo + 1)) - 1);
}
constexpr uint32_t bit(uint32_t v, unsigned b) {
    return (v >> b) & 1;
}
// Sign-extends the low `width` bits of v.
constexpr uint32_t sext(uint32_t v, unsigned width) {
    const uint32_t m = 1u << (width - 1);
    return ((v & ((1u << width) - 1)) ^ m) - m;
}

// The compressed register fields rd'/rs1'/rs2' name x8..x15 (§16.2).
constexpr uint32_t creg(uint32_t three_bits) {
    return three_bits + 8;
}

}  // namespace

std::uint32_t expand_compressed(std::uint16_t ci) {
    const uint32_t c = ci;
    const uint32_t f3 = bits(c, 15, 13);
    const uint32_t rd = bits(c, 11, 7);         // full rd/rs1 (quadrants 1, 2)
    const uint32_t rs2 = bits(c, 6, 2);         // full rs2 (quadrant 2)
    const uint32_t rdp = creg(bits(c, 4, 2));   // rd'/rs2' at 4:2
    const uint32_t rs1p = creg(bits(c, 9, 7));  // rs1'/rd' at 9:7
    // 6-bit signed immediate of CI instructions: imm[5] = bit 12, imm[4:0] = bits 6:2.
    const uint32_t imm6 = sext((bit(c, 12) << 5) | bits(c, 6, 2), 6);
    // Zero-extended offsets of the doubleword and word loads/stores.
    const uint32_t off_d = (bits(c, 12, 10) << 3) | (bits(c, 6, 5) << 6);
    const uint32_t off_w = (bits(c, 12, 10) << 3) | (bit(c, 6) << 2) | (bit(c, 5) << 6);

    switch (c & 3) {
        case 0:
            switch (f3) {
                case 0: {  // C.ADDI4SPN
                    const uint32_t imm = (bits(c, 12, 11) << 4) | (bits(c, 10, 7) << 6) |
                                         (bit(c, 6) << 2) | (bit(c, 5) << 3);
                    return imm == 0 ? 0 : enc_i(op::kOpImm, rdp, 0, 2, imm);
                }
                case 1:
                    return enc_i(op::kLoadFp, rdp, 3, rs1p, off_d);  // C.FLD
                case 2:
                    return enc_i(op::kLoad, rdp, 2, rs1p, off_w);  // C.LW
                case 3:
                    return enc_i(op::kLoad, rdp, 3, rs1p, off_d);  // C.LD
                case 5:
                    return enc_s(op::kStoreFp, 3, rs1p, rdp, off_d);  // C.FSD
                case 6:
                    return enc_s(op::kStore, 2, rs1p, rdp, off_w);  // C.SW
                case 7:
                    return enc_s(op::kStore, 3, rs1p, rdp, off_d);  // C.SD
                default:
                    return 0;
            }
        case 1:
            switch (f3) {
                case 0:
                    return enc_i(op::kOpImm, rd, 0, rd, imm6);  // C.ADDI (C.NOP)
                case 1:
                    return rd == 0 ? 0 : enc_i(op::kOpImm32, rd, 0, rd, imm6);  // C.ADDIW
                case 2:
                    return enc_i(op::kOpImm, rd, 0, 0, imm6);  // C.LI
                case 3:
                    if (rd == 2) {  // C.ADDI16SP
                        const uint32_t imm =
                            sext((bit(c, 12) << 9) | (bit(c, 6) << 4) | (bit(c, 5) << 6) |
                                     (bits(c, 4, 3) << 7) | (bit(c, 2) << 5),
                                 10);
                        return imm == 0 ? 0 : enc_i(op::kOpImm, 2, 0, 2, imm);
                    } else {  // C.LUI
                        if (imm6 == 0) {
                            return 0;
                        }
                        return (imm6 << 12) | (rd << 7) | op::kLui;
                    }
                case 4: {
                    const uint32_t shamt = (bit(c, 12) << 5) | bits(c, 6, 2);
                    switch (bits(c, 11, 10)) {
                        case 0:
                            return enc_i(op::kOpImm, rs1p, 5, rs1p, shamt);  // C.SRLI
                        case 1:
                            return enc_i(op::kOpImm, rs1p, 5, rs1p, shamt | 0x400);  // C.SRAI
                        case 2:
                            return enc_i(op::kOpImm, rs1p, 7, rs1p, imm6);  // C.ANDI
                        default: {
                            const uint32_t sel = bits(c, 6, 5);
                            if (bit(c, 12) == 0) {
                                // C.SUB, C.XOR, C.OR, C.AND.
                                static constexpr uint32_t kF3[4] = {0, 4, 6, 7};
                                return enc_r(op::kOp, rs1p, kF3[sel], rs1p, rdp,
                                             sel == 0 ? 0x20 : 0);
                            }
                            if (sel == 0) {
                                return enc_r(op::kOp32, rs1p, 0, rs1p, rdp, 0x20);  // C.SUBW
                            }
                            if (sel == 1) {
                                return enc_r(op::kOp32, rs1p, 0, rs1p, rdp, 0);  // C.ADDW
                            }
                            return 0;
                        }
                    }
                }
                case 5: {  // C.J
                    const uint32_t off =
                        sext((bit(c, 12) << 11) | (bit(c, 11) << 4) | (bits(c, 10, 9) << 8) |
                                 (bit(c, 8) << 10) | (bit(c, 7) << 6) | (bit(c, 6) << 7) |
                                 (bits(c, 5, 3) << 1) | (bit(c, 2) << 5),
                             12);
                    return enc_j(0, off);
                }
                default: {  // C.BEQZ, C.BNEZ
                    const uint32_t off =
                        sext((bit(c, 12) << 8) | (bits(c, 11, 10) << 3) | (bits(c, 6, 5) << 6) |
                                 (bits(c, 4, 3) << 1) | (bit(c, 2) << 5),
                             9);
                    return enc_b(f3 == 6 ? 0 : 1, rs1p, 0, off);
                }
            }
        case 2:
            switch (f3) {
                case 0: {  // C.SLLI
                    const uint32_t shamt = (bit(c, 12) << 5) | bits(c, 6, 2);
                    return enc_i(op::kOpImm, rd, 1, rd, shamt);
                }
                case 1: {  // C.FLDSP
                    const uint32_t off =
                        (bit(c, 12) << 5) | (bits(c, 6, 5) << 3) | (bits(c, 4, 2) << 6);
                    return enc_i(op::kLoadFp, rd, 3, 2, off);
                }
                case 2: {  // C.LWSP
                    const uint32_t off =
                        (bit(c, 12) << 5) | (bits(c, 6, 4) << 2) | (bits(c, 3, 2) << 6);
                    return rd == 0 ? 0 : enc_i(op::kLoad, rd, 2, 2, off);
                }
                case 3: {  // C.LDSP
                    const uint32_t off =
                        (bit(c, 12) << 5) | (bits(c, 6, 5) << 3) | (bits(c, 4, 2) << 6);
                    return rd == 0 ? 0 : enc_i(op::kLoad, rd, 3, 2, off);
                }
                case 4:
                    if (bit(c, 12) == 0) {
                        if (rs2 == 0) {  // C.JR
                            return rd == 0 ? 0 : enc_i(op::kJalr, 0, 0, rd, 0);
                        }
                        return enc_r(op::kOp, rd, 0, 0, rs2, 0);  // C.MV
                    }
                    if (rs2 == 0) {
                        if (rd == 0) {
                            return kEbreak;  // C.EBREAK
                        }
                        return enc_i(op::kJalr, 1, 0, rd, 0);  // C.JALR
                    }
                    return enc_r(op::kOp, rd, 0, rd, rs2, 0);  // C.ADD
                case 5: {                                      // C.FSDSP
                    const uint32_t off = (bits(c, 12, 10) << 3) | (bits(c, 9, 7) << 6);
                    return enc_s(op::kStoreFp, 3, 2, rs2, off);
                }
                case 6: {  // C.SWSP
                    const uint32_t off = (bits(c, 12, 9) << 2) | (bits(c, 8, 7) << 6);
                    return enc_s(op::kStore, 2, 2, rs2, off);
                }
                default: {  // C.SDSP
                    const uint32_t off = (bits(c, 12, 10) << 3) | (bits(c, 9, 7) << 6);
                    return enc_s(op::kStore, 3, 2, rs2, off);
                }
            }
        default:
            return 0;  // not a compressed instruction
    }
}

}  // namespace vireo::riscv
