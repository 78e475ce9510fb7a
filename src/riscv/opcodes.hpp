// RV64 base opcodes (Unprivileged spec, chapter 24 "RV32/64G Instruction Set Listings") and
// instruction encoders, shared by the RVC expander, the interpreter and the tests.
#pragma once

#include <cstdint>

namespace vireo::riscv {

namespace op {
inline constexpr std::uint32_t kLoad = 0x03;
inline constexpr std::uint32_t kLoadFp = 0x07;
inline constexpr std::uint32_t kMiscMem = 0x0f;
inline constexpr std::uint32_t kOpImm = 0x13;
inline constexpr std::uint32_t kAuipc = 0x17;
inline constexpr std::uint32_t kOpImm32 = 0x1b;
inline constexpr std::uint32_t kStore = 0x23;
inline constexpr std::uint32_t kStoreFp = 0x27;
inline constexpr std::uint32_t kAmo = 0x2f;
inline constexpr std::uint32_t kOp = 0x33;
inline constexpr std::uint32_t kLui = 0x37;
inline constexpr std::uint32_t kOp32 = 0x3b;
inline constexpr std::uint32_t kMadd = 0x43;
inline constexpr std::uint32_t kMsub = 0x47;
inline constexpr std::uint32_t kNmsub = 0x4b;
inline constexpr std::uint32_t kNmadd = 0x4f;
inline constexpr std::uint32_t kOpFp = 0x53;
inline constexpr std::uint32_t kBranch = 0x63;
inline constexpr std::uint32_t kJalr = 0x67;
inline constexpr std::uint32_t kJal = 0x6f;
inline constexpr std::uint32_t kSystem = 0x73;
}  // namespace op

inline constexpr std::uint32_t kEcall = 0x00000073;
inline constexpr std::uint32_t kEbreak = 0x00100073;
inline constexpr std::uint32_t kMret = 0x30200073;
inline constexpr std::uint32_t kSret = 0x10200073;
inline constexpr std::uint32_t kWfi = 0x10500073;
inline constexpr std::uint32_t kSfenceVmaFunct7 = 0x09;

constexpr std::uint32_t enc_r(std::uint32_t opc, std::uint32_t rd, std::uint32_t f3,
                              std::uint32_t rs1, std::uint32_t rs2, std::uint32_t f7) {
    return (f7 << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | opc;
}
constexpr std::uint32_t enc_i(std::uint32_t opc, std::uint32_t rd, std::uint32_t f3,
                              std::uint32_t rs1, std::uint32_t imm) {
    return ((imm & 0xfff) << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | opc;
}
constexpr std::uint32_t enc_s(std::uint32_t opc, std::uint32_t f3, std::uint32_t rs1,
                              std::uint32_t rs2, std::uint32_t imm) {
    return (((imm >> 5) & 0x7f) << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) |
           ((imm & 0x1f) << 7) | opc;
}
constexpr std::uint32_t enc_b(std::uint32_t f3, std::uint32_t rs1, std::uint32_t rs2,
                              std::uint32_t imm) {
    return (((imm >> 12) & 1) << 31) | (((imm >> 5) & 0x3f) << 25) | (rs2 << 20) | (rs1 << 15) |
           (f3 << 12) | (((imm >> 1) & 0xf) << 8) | (((imm >> 11) & 1) << 7) | op::kBranch;
}
constexpr std::uint32_t enc_u(std::uint32_t opc, std::uint32_t rd, std::uint32_t imm) {
    return (imm & 0xfffff000u) | (rd << 7) | opc;
}
constexpr std::uint32_t enc_j(std::uint32_t rd, std::uint32_t imm) {
    return (((imm >> 20) & 1) << 31) | (((imm >> 1) & 0x3ff) << 21) | (((imm >> 11) & 1) << 20) |
           (((imm >> 12) & 0xff) << 12) | (rd << 7) | op::kJal;
}

// Immediate decoders (Unprivileged §2.3): sign-extended to 64 bits.
constexpr std::uint64_t imm_i(std::uint32_t insn) {
    return static_cast<std::uint64_t>(
        static_cast<std::int64_t>(static_cast<std::int32_t>(insn) >> 20));
}
constexpr std::uint64_t imm_s(std::uint32_t insn) {
    const std::int32_t v = ((static_cast<std::int32_t>(insn) >> 25) * 32) |
                           static_cast<std::int32_t>((insn >> 7) & 0x1f);
    return static_cast<std::uint64_t>(static_cast<std::int64_t>(v));
}
constexpr std::uint64_t imm_b(std::uint32_t insn) {
    const std::int32_t v =
        ((static_cast<std::int32_t>(insn) >> 31) * 4096) |
        static_cast<std::int32_t>((((insn >> 7) & 1) << 11) | (((insn >> 25) & 0x3f) << 5) |
                                  (((insn >> 8) & 0xf) << 1));
    return static_cast<std::uint64_t>(static_cast<std::int64_t>(v));
}
constexpr std::uint64_t imm_u(std::uint32_t insn) {
    return static_cast<std::uint64_t>(
        static_cast<std::int64_t>(static_cast<std::int32_t>(insn & 0xfffff000u)));
}
constexpr std::uint64_t imm_j(std::uint32_t insn) {
    const std::int32_t v = ((static_cast<std::int32_t>(insn) >> 31) * (1 << 20)) |
                           static_cast<std::int32_t>((insn & 0xff000) | (((insn >> 20) & 1) << 11) |
                                                     (((insn >> 21) & 0x3ff) << 1));
    return static_cast<std::uint64_t>(static_cast<std::int64_t>(v));
}

}  // namespace vireo::riscv
