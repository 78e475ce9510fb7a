// Random straight-line RV64GC programs for the differential test (docs/riscv.md): a seeded,
// reproducible generator of legal instructions whose effects stay inside a scratch buffer,
// wrapped in a prologue that loads every x and f register and fcsr with chosen values and an
// epilogue that writes the scratch buffer, all registers and fcsr to stdout and exits.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace vireo::riscv::diff {

// One encoded instruction with its assembly text (for failure reports).
struct Insn {
    std::uint32_t bits = 0;
    unsigned len = 4;  // 2 for compressed
    std::string text;
};

inline constexpr std::uint64_t kCodeAddr = 0x10000;
inline constexpr std::uint64_t kDataAddr = 0x200000;  // sp holds it throughout the program
inline constexpr unsigned kScratchSize = 512;         // loads/stores/AMOs stay in here

// The program's initial state and its instructions, in groups that belong together (an
// address computation and the access it feeds, a branch and the instruction it skips).
struct Program {
    std::uint64_t seed = 0;
    std::array<std::uint64_t, 32> x{};  // x0 and x2 (sp) are not loaded
    std::array<std::uint64_t, 32> f{};
    std::uint64_t fcsr = 0;  // frm must be 0..4
    std::array<std::uint8_t, kScratchSize> scratch{};
    std::vector<std::vector<Insn>> items;
    // Install a SIGILL handler that reports each illegal instruction (kIllegalRecordMagic and
    // its address on stdout) and resumes after it.
    bool sigill_handler = false;
    std::size_t insn_count() const;
};

// What the epilogue writes: scratch, x0..x31, f0..f31, fcsr; before it, the addresses of the
// illegal instructions the SIGILL handler (if any) skipped.
struct State {
    std::array<std::uint8_t, kScratchSize> scratch{};
    std::array<std::uint64_t, 32> x{};
    std::array<std::uint64_t, 32> f{};
    std::uint64_t fcsr = 0;
    std::vector<std::uint64_t> illegal;
};
inline constexpr std::size_t kStateBytes = kScratchSize + 32 * 8 + 32 * 8 + 8;
bool parse_state(const std::string& out, State& s);
// Register-by-register differences ("x5: 0x... vs 0x..."), empty if equal.
std::string describe_diff(const State& a, const State& b, const char* a_name, const char* b_name);

// `insns` random instructions (a little more: groups are not split) from `seed`.
Program generate(std::uint64_t seed, unsigned insns);

// Decoder fuzzing: like generate(), but half the groups are random encodings in the integer,
// FP, FMA, MISC-MEM, load/store, AMO, CSR and RVC spaces (legal or not; kept from writing sp,
// jumping or reaching outside the scratch buffer), with the SIGILL handler installed so that
// both implementations must agree on which are illegal.
Program generate_encodings(std::uint64_t seed, unsigned insns);

// An initial state like generate()'s, with no instructions (for hand-written regressions).
Program blank_program(std::uint64_t seed);

// The ELF of the program with only its first `items` groups.
std::vector<std::uint8_t> build_elf(const Program& p, std::size_t items);
std::string listing(const Program& p, std::size_t first, std::size_t last);

// Encoders for hand-written programs (text as the GNU assembler would print it).
namespace enc {
Insn r(const char* name, std::uint32_t opc, std::uint32_t f3, std::uint32_t f7, std::uint32_t rd,
       std::uint32_t rs1, std::uint32_t rs2);
Insn i(const char* name, std::uint32_t opc, std::uint32_t f3, std::uint32_t rd, std::uint32_t rs1,
       std::int32_t imm);
// FP op with a rounding mode (OP-FP: funct7 = f7, rs2 field = rs2).
Insn fp(const char* name, std::uint32_t f7, std::uint32_t rm, std::uint32_t rd, std::uint32_t rs1,
        std::uint32_t rs2);
// Fused multiply-add family: opc is MADD/MSUB/NMSUB/NMADD, fmt 0 = S, 1 = D.
Insn fma(const char* name, std::uint32_t opc, std::uint32_t fmt, std::uint32_t rm, std::uint32_t rd,
         std::uint32_t rs1, std::uint32_t rs2, std::uint32_t rs3);
Insn raw16(std::uint16_t bits, const std::string& text);
Insn raw32(std::uint32_t bits, const std::string& text);
}  // namespace enc

}  // namespace vireo::riscv::diff
