#include "diff_gen.hpp"

#include <cstdio>
#include <cstring>
#include <random>

#include "diff_support.hpp"
#include "riscv/opcodes.hpp"

namespace vireo::riscv::diff {

namespace {

using u16 = std::uint16_t;
using u32 = std::uint32_t;
using u64 = std::uint64_t;
using i32 = std::int32_t;
using i64 = std::int64_t;

constexpr u32 kSp = 2;
constexpr u32 kFcsr = 0x003, kFflags = 0x001, kFrm = 0x002;

// Data segment layout (offsets from sp = kDataAddr): what the epilogue writes comes first.
constexpr u32 kDumpX = kScratchSize;     // x0..x31
constexpr u32 kDumpF = kDumpX + 32 * 8;  // f0..f31
constexpr u32 kDumpFcsr = kDumpF + 32 * 8;
constexpr u32 kInitX = kDumpFcsr + 8;
constexpr u32 kInitF = kInitX + 32 * 8;
constexpr u32 kInitFcsr = kInitF + 32 * 8;
constexpr u32 kAct = kInitFcsr + 8;  // struct sigaction for the SIGILL handler
constexpr u32 kRec = kAct + 32;      // the handler's record
constexpr u32 kSs = kRec + 16;       // stack_t for sigaltstack
constexpr u32 kDataSize = kSs + 24;
// The handler's signal stack (sp points at the data, with nothing mapped below it).
constexpr u32 kAltStack = 0x1000, kAltStackSize = 0x2000;
static_assert(kDumpFcsr + 8 == kStateBytes);
static_assert(kDataSize < 2048, "every slot must be reachable with a 12-bit offset from sp");
static_assert(kDataSize <= kAltStack);

constexpr const char* kRmName[8] = {"rne", "rtz", "rdn", "rup", "rmm", "rm5", "rm6", "dyn"};

std::string xr(u32 r) {
    return "x" + std::to_string(r);
}
std::string fr(u32 r) {
    return "f" + std::to_string(r);
}
std::string fmt_str(const char* f, auto... args) {
    char buf[160];
    std::snprintf(buf, sizeof buf, f, args...);
    return buf;
}

Insn c16(u32 bits, std::string text) {
    return Insn{bits & 0xffff, 2, std::move(text)};
}
Insn w32(u32 bits, std::string text) {
    return Insn{bits, 4, std::move(text)};
}

// --- RVC encoders (Unprivileged §16.8 tables) ---------------------------------------------
u32 c_ci(u32 f3, u32 opq, u32 rd, u32 imm6) {
    return (f3 << 13) | (((imm6 >> 5) & 1) << 12) | (rd << 7) | ((imm6 & 0x1f) << 2) | opq;
}
// CB-format shift/andi: funct2 at 11:10 (0 srli, 1 srai, 2 andi).
u32 c_cb_alu(u32 funct2, u32 rdp, u32 imm6) {
    return (4u << 13) | (((imm6 >> 5) & 1) << 12) | (funct2 << 10) | ((rdp - 8) << 7) |
           ((imm6 & 0x1f) << 2) | 1;
}
// CA format: bit 12 selects the W forms, 6:5 the operation.
u32 c_ca(u32 w, u32 funct2, u32 rdp, u32 rs2p) {
    return (4u << 13) | (w << 12) | (3u << 10) | ((rdp - 8) << 7) | (funct2 << 5) |
           ((rs2p - 8) << 2) | 1;
}
// C.LW/C.SW layout (f3 2 or 6), uimm[5:3] at 12:10, [2] at 6, [6] at 5.
u32 c_w(u32 f3, u32 rs1p, u32 rp, u32 u) {
    return (f3 << 13) | (((u >> 3) & 7) << 10) | ((rs1p - 8) << 7) | (((u >> 2) & 1) << 6) |
           (((u >> 6) & 1) << 5) | ((rp - 8) << 2);
}
// C.LD/C.SD/C.FLD/C.FSD layout, uimm[5:3] at 12:10, [7:6] at 6:5.
u32 c_d(u32 f3, u32 rs1p, u32 rp, u32 u) {
    return (f3 << 13) | (((u >> 3) & 7) << 10) | ((rs1p - 8) << 7) | (((u >> 6) & 3) << 5) |
           ((rp - 8) << 2);
}
u32 c_lwsp(u32 rd, u32 u) {
    return (2u << 13) | (((u >> 5) & 1) << 12) | (rd << 7) | (((u >> 2) & 7) << 4) |
           (((u >> 6) & 3) << 2) | 2;
}
u32 c_ldsp(u32 f3, u32 rd, u32 u) {
    return (f3 << 13) | (((u >> 5) & 1) << 12) | (rd << 7) | (((u >> 3) & 3) << 5) |
           (((u >> 6) & 7) << 2) | 2;
}
u32 c_swsp(u32 rs2, u32 u) {
    return (6u << 13) | (((u >> 2) & 0xf) << 9) | (((u >> 6) & 3) << 7) | (rs2 << 2) | 2;
}
u32 c_sdsp(u32 f3, u32 rs2, u32 u) {
    return (f3 << 13) | (((u >> 3) & 7) << 10) | (((u >> 6) & 7) << 7) | (rs2 << 2) | 2;
}
u32 c_addi4spn(u32 rdp, u32 u) {
    return (((u >> 4) & 3) << 11) | (((u >> 6) & 0xf) << 7) | (((u >> 2) & 1) << 6) |
           (((u >> 3) & 1) << 5) | ((rdp - 8) << 2);
}
u32 c_bz(u32 f3, u32 rs1p, u32 o) {
    return (f3 << 13) | (((o >> 8) & 1) << 12) | (((o >> 3) & 3) << 10) | ((rs1p - 8) << 7) |
           (((o >> 6) & 3) << 5) | (((o >> 1) & 3) << 3) | (((o >> 5) & 1) << 2) | 1;
}
u32 c_j(u32 o) {
    return (5u << 13) | (((o >> 11) & 1) << 12) | (((o >> 4) & 1) << 11) | (((o >> 8) & 3) << 9) |
           (((o >> 10) & 1) << 8) | (((o >> 6) & 1) << 7) | (((o >> 7) & 1) << 6) |
           (((o >> 1) & 7) << 3) | (((o >> 5) & 1) << 2) | 1;
}

// Interesting single-precision bit patterns: zeros, infinities, quiet and signalling NaNs with
// payloads, subnormals, extremes, integer-conversion boundaries and rounding ties.
constexpr u32 kSingles[] = {
    0x00000000, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0xffc00000, 0x7fc12345,
    0x7f800001, 0xff812345, 0x00000001, 0x80000001, 0x007fffff, 0x00800000, 0x80800000,
    0x7f7fffff, 0xff7fffff, 0x3f800000, 0xbf800000, 0x3f000000, 0xbf000000, 0x3fc00000,
    0x40200000, 0xc0200000, 0x40600000, 0x4f000000, 0xcf000000, 0x4effffff, 0x4f800000,
    0x4f7fffff, 0x5f000000, 0xdf000000, 0x5f800000, 0x4b800000, 0x4b800001, 0x33800000,
    0x34000000, 0x3eaaaaab, 0x00400000, 0x3f800001, 0xcf000001, 0x5effffff, 0xbf400000,
};
constexpr u64 kDoubles[] = {
    0x0000000000000000, 0x8000000000000000, 0x7ff0000000000000, 0xfff0000000000000,
    0x7ff8000000000000, 0xfff8000000000000, 0x7ff8000000012345, 0x7ff0000000000001,
    0xfff4000000000000, 0x0000000000000001, 0x800fffffffffffff, 0x0010000000000000,
    0x7fefffffffffffff, 0xffefffffffffffff, 0x3ff0000000000000, 0xbff0000000000000,
    0x3fe0000000000000, 0xbfe0000000000000, 0x3ff8000000000000, 0x4004000000000000,
    0xc004000000000000, 0x41e0000000000000, 0xc1e0000000000000, 0x41dfffffffc00000,
    0x41dfffffffe00000, 0x41f0000000000000, 0x41efffffffe00000, 0x43e0000000000000,
    0xc3e0000000000000, 0x43f0000000000000, 0x43efffffffffffff, 0x4340000000000000,
    0x4340000000000001, 0x3ca0000000000000, 0x3fd5555555555555, 0x47efffffe0000000,
    0x47effffff0000000, 0x3810000000000000, 0x36a0000000000000, 0x3690000000000000,
    0x3ff0000010000000, 0x3ff0000008000000, 0xc1e0000000100000, 0x0008000000000000,
};
constexpr u64 kInts[] = {
    0,
    1,
    ~0ull,
    0x8000000000000000,
    0x7fffffffffffffff,
    0x80000000,
    0x7fffffff,
    0xffffffff,
    0xffffffff80000000,
    0x100000000,
    0x8000000000000001,
    0xffffffff7fffffff,
    0x1000001,
    0x20000000000001,
    0xfffffffffeffffff,
};

class Gen {
  public:
    explicit Gen(Program& p) : p_(p), rng_(p.seed) {}

    u64 next() { return rng_(); }
    u64 below(u64 n) { return rng_() % n; }
    bool chance(u64 percent) { return below(100) < percent; }

    u64 int_value() {
        switch (below(10)) {
            case 0:
                return static_cast<u64>(static_cast<i64>(below(33)) - 16);
            case 1:
                return kInts[below(std::size(kInts))];
            case 2:
                return static_cast<u64>(static_cast<i64>(static_cast<i32>(next())));
            case 3:
                return static_cast<u32>(next());
            case 4:
                return 1ull << below(64);
            case 5:
                return (1ull << below(64)) - 1;
            case 6: {
                // Conversion boundaries: 2^k plus or minus a little, either sign.
                static constexpr unsigned kBits[] = {24, 25, 31, 32, 53, 54, 63};
                u64 v = (1ull << kBits[below(std::size(kBits))]) + below(5) - 2;
                return chance(50) ? v : 0 - v;
            }
            default:
                return next();
        }
    }

    u64 fp_value() {
        constexpr u64 box = 0xffffffff00000000ull;
        switch (below(9)) {
            case 0:
            case 1:
                return box | kSingles[below(std::size(kSingles))];
            case 2:
            case 3:
                return kDoubles[below(std::size(kDoubles))];
            case 4:
                return next();
            case 5: {  // a normal single within a few binades of 1, random mantissa
                const u64 e = 127 - 30 + below(61);
                return box | (below(2) << 31) | (e << 23) | (next() & 0x7fffff);
            }
            case 6: {  // a double within a few binades of 1, few mantissa bits: ties happen
                const u64 e = 1023 - 60 + below(121);
                u64 m = next() & (chance(50) ? 0xfffffffffffffull : 0xff00000001fffull);
                return (below(2) << 63) | (e << 52) | m;
            }
            case 7: {  // a single with few mantissa bits
                const u64 e = 127 - 30 + below(61);
                return box | (below(2) << 31) | (e << 23) | (next() & 0x7f0007);
            }
            default:  // not NaN-boxed: single-precision reads must see the canonical NaN
                return (next() & 0x7fffffff00000000ull) | kSingles[below(std::size(kSingles))];
        }
    }

    // Destination integer register: never x0 (pointless) or sp (the scratch base).
    u32 rd() {
        for (;;) {
            const u32 r = static_cast<u32>(below(32));
            if (r != 0 && r != kSp) return r;
        }
    }
    u32 rs() { return static_cast<u32>(below(32)); }
    u32 frs() { return static_cast<u32>(below(32)); }
    u32 rdp() { return 8 + static_cast<u32>(below(8)); }  // x8..x15
    u32 rm() {
        static constexpr u32 kRm[] = {0, 1, 2, 3, 4, 7, 7, 4};
        return kRm[below(std::size(kRm))];
    }

    void init_state() {
        for (u32 r = 1; r < 32; ++r) p_.x[r] = r == kSp ? 0 : int_value();
        for (u32 r = 0; r < 32; ++r) p_.f[r] = fp_value();
        p_.fcsr = (below(5) << 5) | below(32);
        for (unsigned i = 0; i < kScratchSize; i += 8) {
            const u64 v = chance(50) ? fp_value() : int_value();
            std::memcpy(&p_.scratch[i], &v, 8);
        }
    }

    // --- groups ---------------------------------------------------------------------------
    void item() {
        items_.clear();
        static constexpr unsigned kWeights[] = {
            14,  // 0 integer reg-reg
            10,  // 1 M
            14,  // 2 integer reg-imm, lui, auipc
            8,   // 3 loads
            6,   // 4 stores
            4,   // 5 FP loads/stores
            4,   // 6 AMOs
            2,   // 7 LR/SC
            12,  // 8 FP arithmetic
            5,   // 9 FMA
            8,   // 10 sign injection, min/max, compare, class, moves
            10,  // 11 conversions
            2,   // 12 FP CSRs
            10,  // 13 compressed ALU
            5,   // 14 compressed loads/stores
            4,   // 15 control flow over one instruction
            1,   // 16 fences
        };
        unsigned total = 0;
        for (unsigned w : kWeights) total += w;
        unsigned cls = 0;
        do {
            u64 pick = below(total);
            cls = 0;
            while (pick >= kWeights[cls]) pick -= kWeights[cls++];
        } while (cls == 7 && no_lr_sc_);
        switch (cls) {
            case 0:
                int_rr(false);
                break;
            case 1:
                int_rr(true);
                break;
            case 2:
                int_ri();
                break;
            case 3:
                load();
                break;
            case 4:
                store();
                break;
            case 5:
                fp_mem();
                break;
            case 6:
                amo();
                break;
            case 7:
                lr_sc();
                break;
            case 8:
                fp_arith();
                break;
            case 9:
                fp_fma();
                break;
            case 10:
                fp_misc();
                break;
            case 11:
                fp_cvt();
                break;
            case 12:
                fp_csr();
                break;
            case 13:
                c_alu(rd());
                break;
            case 14:
                c_mem();
                break;
            case 15:
                control();
                break;
            default:
                items_.push_back(chance(50) ? w32(0x0ff0000f, "fence iorw,iorw")
                                            : w32(0x0000100f, "fence.i"));
                break;
        }
        p_.items.push_back(items_);
    }

    void int_rr(bool m) {
        struct Op {
            const char* name;
            u32 opc, f3, f7;
        };
        static constexpr Op kBase[] = {
            {"add", op::kOp, 0, 0},    {"sub", op::kOp, 0, 0x20}, {"sll", op::kOp, 1, 0},
            {"slt", op::kOp, 2, 0},    {"sltu", op::kOp, 3, 0},   {"xor", op::kOp, 4, 0},
            {"srl", op::kOp, 5, 0},    {"sra", op::kOp, 5, 0x20}, {"or", op::kOp, 6, 0},
            {"and", op::kOp, 7, 0},    {"addw", op::kOp32, 0, 0}, {"subw", op::kOp32, 0, 0x20},
            {"sllw", op::kOp32, 1, 0}, {"srlw", op::kOp32, 5, 0}, {"sraw", op::kOp32, 5, 0x20},
        };
        static constexpr Op kM[] = {
            {"mul", op::kOp, 0, 1},     {"mulh", op::kOp, 1, 1},    {"mulhsu", op::kOp, 2, 1},
            {"mulhu", op::kOp, 3, 1},   {"div", op::kOp, 4, 1},     {"divu", op::kOp, 5, 1},
            {"rem", op::kOp, 6, 1},     {"remu", op::kOp, 7, 1},    {"mulw", op::kOp32, 0, 1},
            {"divw", op::kOp32, 4, 1},  {"divuw", op::kOp32, 5, 1}, {"remw", op::kOp32, 6, 1},
            {"remuw", op::kOp32, 7, 1},
        };
        const Op& o = m ? kM[below(std::size(kM))] : kBase[below(std::size(kBase))];
        items_.push_back(enc::r(o.name, o.opc, o.f3, o.f7, rd(), rs(), rs()));
    }

    i32 imm12() {
        switch (below(4)) {
            case 0:
                return static_cast<i32>(below(4096)) - 2048;
            case 1:
                return static_cast<i32>(below(33)) - 16;
            case 2:
                return chance(50) ? 2047 : -2048;
            default:
                return static_cast<i32>(below(256)) - 128;
        }
    }

    // One simple integer instruction (also what branches skip).
    Insn simple_alu() {
        const u32 d = rd(), s = rs();
        switch (below(12)) {
            case 0:
                return enc::i("addi", op::kOpImm, 0, d, s, imm12());
            case 1:
                return enc::i("slti", op::kOpImm, 2, d, s, imm12());
            case 2:
                return enc::i("sltiu", op::kOpImm, 3, d, s, imm12());
            case 3:
                return enc::i("xori", op::kOpImm, 4, d, s, imm12());
            case 4:
                return enc::i("ori", op::kOpImm, 6, d, s, imm12());
            case 5:
                return enc::i("andi", op::kOpImm, 7, d, s, imm12());
            case 6:
                return enc::i("slli", op::kOpImm, 1, d, s, static_cast<i32>(below(64)));
            case 7:
                return enc::i("srli", op::kOpImm, 5, d, s, static_cast<i32>(below(64)));
            case 8: {
                const i32 sh = static_cast<i32>(below(64));
                Insn in = enc::i("srai", op::kOpImm, 5, d, s, 0x400 | sh);
                in.text = fmt_str("srai %s, %s, %d", xr(d).c_str(), xr(s).c_str(), sh);
                return in;
            }
            case 9:
                return enc::i("addiw", op::kOpImm32, 0, d, s, imm12());
            case 10: {
                static constexpr const char* kName[] = {"slliw", "srliw", "sraiw"};
                const unsigned k = static_cast<unsigned>(below(3));
                const i32 sh = static_cast<i32>(below(32));
                Insn in =
                    enc::i(kName[k], op::kOpImm32, k == 0 ? 1 : 5, d, s, (k == 2 ? 0x400 : 0) | sh);
                in.text = fmt_str("%s %s, %s, %d", kName[k], xr(d).c_str(), xr(s).c_str(), sh);
                return in;
            }
            default: {
                const u32 imm = static_cast<u32>(next()) & 0xfffff000u;
                const bool lui = chance(50);
                return w32(enc_u(lui ? op::kLui : op::kAuipc, d, imm),
                           fmt_str("%s %s, %#x", lui ? "lui" : "auipc", xr(d).c_str(), imm >> 12));
            }
        }
    }

    void int_ri() { items_.push_back(simple_alu()); }

    // andi t, src, mask; add t, t, sp: a random address inside the scratch buffer.
    u32 scratch_addr(u32 mask, bool compressed_base) {
        const u32 t = compressed_base ? rdp() : rd();
        items_.push_back(enc::i("andi", op::kOpImm, 7, t, rs(), static_cast<i32>(mask)));
        items_.push_back(enc::r("add", op::kOp, 0, 0, t, t, kSp));
        return t;
    }

    // An offset in [0, 16 - size]: mostly naturally aligned, sometimes not (qemu-riscv64 and
    // the hart both perform misaligned ordinary loads and stores; AMOs stay aligned).
    i32 offset(unsigned size) {
        if (chance(25)) return static_cast<i32>(below(17 - size));
        return static_cast<i32>(below(16 / size) * size);
    }

    void load() {
        static constexpr const char* kName[] = {"lb", "lh", "lw", "ld", "lbu", "lhu", "lwu"};
        static constexpr unsigned kSize[] = {1, 2, 4, 8, 1, 2, 4};
        const u32 f3 = static_cast<u32>(below(7));
        const u32 t = scratch_addr(0x1f0, false);
        const i32 off = offset(kSize[f3]);
        const u32 d = rd();
        Insn in = enc::i(kName[f3], op::kLoad, f3, d, t, off);
        in.text = fmt_str("%s %s, %d(%s)", kName[f3], xr(d).c_str(), off, xr(t).c_str());
        items_.push_back(in);
    }

    void store() {
        static constexpr const char* kName[] = {"sb", "sh", "sw", "sd"};
        const u32 f3 = static_cast<u32>(below(4));
        const u32 t = scratch_addr(0x1f0, false);
        const i32 off = offset(1u << f3);
        const u32 s = rs();
        items_.push_back(
            w32(enc_s(op::kStore, f3, t, s, static_cast<u32>(off)),
                fmt_str("%s %s, %d(%s)", kName[f3], xr(s).c_str(), off, xr(t).c_str())));
    }

    void fp_mem() {
        const bool dbl = chance(50);
        const u32 f3 = dbl ? 3 : 2;
        const u32 t = scratch_addr(0x1f0, false);
        const i32 off = offset(dbl ? 8 : 4);
        const u32 fd = frs();
        if (chance(50)) {
            const char* n = dbl ? "fld" : "flw";
            Insn in = enc::i(n, op::kLoadFp, f3, fd, t, off);
            in.text = fmt_str("%s %s, %d(%s)", n, fr(fd).c_str(), off, xr(t).c_str());
            items_.push_back(in);
        } else {
            items_.push_back(w32(
                enc_s(op::kStoreFp, f3, t, fd, static_cast<u32>(off)),
                fmt_str("%s %s, %d(%s)", dbl ? "fsd" : "fsw", fr(fd).c_str(), off, xr(t).c_str())));
        }
    }

    Insn amo_insn(const char* name, u32 f5, bool dbl, u32 d, u32 s2, u32 base) {
        const u32 aqrl = static_cast<u32>(below(4));
        const u32 f7 = (f5 << 2) | aqrl;
        static constexpr const char* kOrd[] = {"", ".rl", ".aq", ".aqrl"};
        Insn in = enc::r(name, op::kAmo, dbl ? 3 : 2, f7, d, base, s2);
        if (f5 == 2) {
            in.text = fmt_str("%s.%s%s %s, (%s)", name, dbl ? "d" : "w", kOrd[aqrl], xr(d).c_str(),
                              xr(base).c_str());
        } else {
            in.text = fmt_str("%s.%s%s %s, %s, (%s)", name, dbl ? "d" : "w", kOrd[aqrl],
                              xr(d).c_str(), xr(s2).c_str(), xr(base).c_str());
        }
        return in;
    }

    void amo() {
        struct Op {
            const char* name;
            u32 f5;
        };
        static constexpr Op kOps[] = {{"amoadd", 0x00}, {"amoswap", 0x01}, {"amoxor", 0x04},
                                      {"amoor", 0x08},  {"amoand", 0x0c},  {"amomin", 0x10},
                                      {"amomax", 0x14}, {"amominu", 0x18}, {"amomaxu", 0x1c}};
        const Op& o = kOps[below(std::size(kOps))];
        const bool dbl = chance(50);
        const u32 t = scratch_addr(dbl ? 0x1f8 : 0x1fc, false);
        items_.push_back(amo_insn(o.name, o.f5, dbl, rd(), rs(), t));
    }

    void lr_sc() {
        // 0, 3: LR then SC; 1: something else in between; 2: a store to the reserved word in
        // between (the same hart's); 4: an LR alone; 5: an SC alone.
        const u64 kind = below(6);
        // An SC is always as wide as the LR before it: an SC.W in the reservation of an LR.D
        // may succeed or fail (the pair is not a constrained LR/SC loop, §8.3), and QEMU
        // fails it where vireo lets it succeed (regression ScWidthMismatchMayGoEitherWay).
        bool dbl = chance(50);
        if (kind == 5 && last_lr_ >= 0) dbl = last_lr_ != 0;
        if (kind != 5) last_lr_ = dbl ? 1 : 0;
        const u32 t = scratch_addr(dbl ? 0x1f8 : 0x1fc, false);
        auto not_t = [&] {
            for (;;) {
                const u32 r = rd();
                if (r != t) return r;
            }
        };
        if (kind != 5) items_.push_back(amo_insn("lr", 2, dbl, not_t(), 0, t));
        if (kind == 1) {
            // Something in between that does not touch the address register.
            Insn a = simple_alu();
            if (((a.bits >> 7) & 31) == t) a = enc::r("add", op::kOp, 0, 0, not_t(), rs(), rs());
            items_.push_back(a);
        }
        if (kind == 2) {
            // A store to the reserved word in between (same hart).
            const u32 s = rs();
            items_.push_back(
                w32(enc_s(op::kStore, dbl ? 3 : 2, t, s, 0),
                    fmt_str("%s %s, 0(%s)", dbl ? "sd" : "sw", xr(s).c_str(), xr(t).c_str())));
        }
        if (kind == 4) return;  // an LR left alone: a later SC decides with it
        items_.push_back(amo_insn("sc", 3, dbl, rd(), rs(), t));
    }

    void fp_arith() {
        static constexpr const char* kName[] = {"fadd", "fsub", "fmul", "fdiv", "fsqrt"};
        static constexpr u32 kF5[] = {0x00, 0x01, 0x02, 0x03, 0x0b};
        const unsigned k = static_cast<unsigned>(below(5));
        const u32 fmt = static_cast<u32>(below(2));
        const std::string n = std::string(kName[k]) + (fmt ? ".d" : ".s");
        const u32 r2 = k == 4 ? 0 : frs();
        Insn in = enc::fp(n.c_str(), (kF5[k] << 2) | fmt, rm(), frs(), frs(), r2);
        if (k == 4) {  // fsqrt has no rs2
            const u32 rmv = (in.bits >> 12) & 7;
            in.text = fmt_str("%s %s, %s, %s", n.c_str(), fr((in.bits >> 7) & 31).c_str(),
                              fr((in.bits >> 15) & 31).c_str(), kRmName[rmv]);
        }
        items_.push_back(in);
    }

    void fp_fma() {
        static constexpr const char* kName[] = {"fmadd", "fmsub", "fnmsub", "fnmadd"};
        static constexpr u32 kOpc[] = {op::kMadd, op::kMsub, op::kNmsub, op::kNmadd};
        const unsigned k = static_cast<unsigned>(below(4));
        const u32 fmt = static_cast<u32>(below(2));
        const std::string n = std::string(kName[k]) + (fmt ? ".d" : ".s");
        items_.push_back(enc::fma(n.c_str(), kOpc[k], fmt, rm(), frs(), frs(), frs(), frs()));
    }

    void fp_misc() {
        const u32 fmt = static_cast<u32>(below(2));
        const char* sfx = fmt ? ".d" : ".s";
        const u32 d = frs(), a = frs(), b = frs();
        switch (below(6)) {
            case 0: {
                static constexpr const char* kName[] = {"fsgnj", "fsgnjn", "fsgnjx"};
                const u32 f3 = static_cast<u32>(below(3));
                items_.push_back(enc::r((std::string(kName[f3]) + sfx).c_str(), op::kOpFp, f3,
                                        (0x04 << 2) | fmt, d, a, b));
                items_.back().text = fmt_str("%s%s %s, %s, %s", kName[f3], sfx, fr(d).c_str(),
                                             fr(a).c_str(), fr(b).c_str());
                break;
            }
            case 1: {
                const u32 f3 = static_cast<u32>(below(2));
                const char* n = f3 ? "fmax" : "fmin";
                items_.push_back(enc::r(n, op::kOpFp, f3, (0x05 << 2) | fmt, d, a, b));
                items_.back().text =
                    fmt_str("%s%s %s, %s, %s", n, sfx, fr(d).c_str(), fr(a).c_str(), fr(b).c_str());
                break;
            }
            case 2: {
                static constexpr const char* kName[] = {"fle", "flt", "feq"};
                const u32 f3 = static_cast<u32>(below(3));
                const u32 x = rd();
                items_.push_back(enc::r(kName[f3], op::kOpFp, f3, (0x14 << 2) | fmt, x, a, b));
                items_.back().text = fmt_str("%s%s %s, %s, %s", kName[f3], sfx, xr(x).c_str(),
                                             fr(a).c_str(), fr(b).c_str());
                break;
            }
            case 3: {
                const u32 x = rd();
                items_.push_back(enc::r("fclass", op::kOpFp, 1, (0x1c << 2) | fmt, x, a, 0));
                items_.back().text = fmt_str("fclass%s %s, %s", sfx, xr(x).c_str(), fr(a).c_str());
                break;
            }
            case 4: {
                const u32 x = rd();
                items_.push_back(enc::r("fmv.x", op::kOpFp, 0, (0x1c << 2) | fmt, x, a, 0));
                items_.back().text =
                    fmt_str("fmv.x.%s %s, %s", fmt ? "d" : "w", xr(x).c_str(), fr(a).c_str());
                break;
            }
            default: {
                const u32 x = rs();
                items_.push_back(enc::r("fmv.x", op::kOpFp, 0, (0x1e << 2) | fmt, d, x, 0));
                items_.back().text =
                    fmt_str("fmv.%s.x %s, %s", fmt ? "d" : "w", fr(d).c_str(), xr(x).c_str());
                break;
            }
        }
    }

    void fp_cvt() {
        static constexpr const char* kInt[] = {"w", "wu", "l", "lu"};
        const u32 fmt = static_cast<u32>(below(2));
        const char* fs = fmt ? "d" : "s";
        const u32 r = rm();
        switch (below(3)) {
            case 0: {  // float to integer
                const u32 k = static_cast<u32>(below(4)), x = rd(), a = frs();
                Insn in = enc::fp("fcvt", (0x18 << 2) | fmt, r, x, a, k);
                in.text = fmt_str("fcvt.%s.%s %s, %s, %s", kInt[k], fs, xr(x).c_str(),
                                  fr(a).c_str(), kRmName[r]);
                items_.push_back(in);
                break;
            }
            case 1: {  // integer to float
                const u32 k = static_cast<u32>(below(4)), d = frs(), x = rs();
                Insn in = enc::fp("fcvt", (0x1a << 2) | fmt, r, d, x, k);
                in.text = fmt_str("fcvt.%s.%s %s, %s, %s", fs, kInt[k], fr(d).c_str(),
                                  xr(x).c_str(), kRmName[r]);
                items_.push_back(in);
                break;
            }
            default: {  // between formats: fcvt.s.d (f7 0x20, rs2 1) / fcvt.d.s (0x21, 0)
                const u32 d = frs(), a = frs();
                Insn in = enc::fp("fcvt", 0x20 | (1 - fmt), r, d, a, fmt);
                in.text = fmt_str("fcvt.%s.%s %s, %s, %s", fmt ? "s" : "d", fmt ? "d" : "s",
                                  fr(d).c_str(), fr(a).c_str(), kRmName[r]);
                items_.push_back(in);
                break;
            }
        }
    }

    void fp_csr() {
        auto csr = [&](const char* name, u32 f3, u32 num, u32 d, u32 src, const char* cname) {
            const bool imm = f3 >= 5;
            items_.push_back(
                w32(enc_i(op::kSystem, d, f3, src, num),
                    imm ? fmt_str("%s %s, %s, %u", name, xr(d).c_str(), cname, src)
                        : fmt_str("%s %s, %s, %s", name, xr(d).c_str(), cname, xr(src).c_str())));
        };
        switch (below(7)) {
            case 0:
                csr("csrrs", 2, kFflags, rd(), 0, "fflags");
                break;
            case 1:
                csr("csrrs", 2, kFrm, rd(), 0, "frm");
                break;
            case 2:
                csr("csrrs", 2, kFcsr, rd(), 0, "fcsr");
                break;
            case 3:
                csr("csrrw", 1, kFflags, rd(), rs(), "fflags");
                break;
            case 4:
                csr("csrrwi", 5, kFrm, rd(), static_cast<u32>(below(5)), "frm");
                break;
            case 5: {
                const bool set = chance(50);
                csr(set ? "csrrsi" : "csrrci", set ? 6 : 7, kFflags, rd(),
                    static_cast<u32>(below(32)), "fflags");
                break;
            }
            default:
                csr("csrrwi", 5, kFcsr, rd(), static_cast<u32>(below(32)), "fcsr");
                break;
        }
    }

    i32 imm6(bool nonzero) {
        for (;;) {
            const i32 v = static_cast<i32>(below(64)) - 32;
            if (!nonzero || v != 0) return v;
        }
    }

    // A compressed integer instruction writing `d` (x1..x31 but not sp) or an x8..x15
    // register.
    void c_alu(u32 d) {
        const u32 dp = rdp(), sp2 = rdp();
        switch (below(17)) {
            case 0: {
                const i32 v = imm6(true);
                items_.push_back(c16(c_ci(0, 1, d, static_cast<u32>(v)),
                                     fmt_str("c.addi %s, %d", xr(d).c_str(), v)));
                break;
            }
            case 1: {
                const i32 v = imm6(false);
                items_.push_back(c16(c_ci(1, 1, d, static_cast<u32>(v)),
                                     fmt_str("c.addiw %s, %d", xr(d).c_str(), v)));
                break;
            }
            case 2: {
                const i32 v = imm6(false);
                items_.push_back(c16(c_ci(2, 1, d, static_cast<u32>(v)),
                                     fmt_str("c.li %s, %d", xr(d).c_str(), v)));
                break;
            }
            case 3: {
                const i32 v = imm6(true);
                items_.push_back(c16(c_ci(3, 1, d, static_cast<u32>(v)),
                                     fmt_str("c.lui %s, %#x", xr(d).c_str(), v & 0xfffff)));
                break;
            }
            case 4:
            case 5: {
                const u32 sh = 1 + static_cast<u32>(below(63));
                const bool sra = below(2) != 0;
                items_.push_back(
                    c16(c_cb_alu(sra ? 1 : 0, dp, sh),
                        fmt_str("%s %s, %u", sra ? "c.srai" : "c.srli", xr(dp).c_str(), sh)));
                break;
            }
            case 6: {
                const i32 v = imm6(false);
                items_.push_back(c16(c_cb_alu(2, dp, static_cast<u32>(v)),
                                     fmt_str("c.andi %s, %d", xr(dp).c_str(), v)));
                break;
            }
            case 7:
            case 8:
            case 9:
            case 10:
            case 11:
            case 12: {
                static constexpr const char* kName[] = {"c.sub", "c.xor",  "c.or",
                                                        "c.and", "c.subw", "c.addw"};
                const u32 k = static_cast<u32>(below(6));
                items_.push_back(
                    c16(c_ca(k >= 4 ? 1 : 0, k & 3, dp, sp2),
                        fmt_str("%s %s, %s", kName[k], xr(dp).c_str(), xr(sp2).c_str())));
                break;
            }
            case 13: {
                const u32 sh = 1 + static_cast<u32>(below(63));
                items_.push_back(
                    c16(c_ci(0, 2, d, sh), fmt_str("c.slli %s, %u", xr(d).c_str(), sh)));
                break;
            }
            case 14:
            case 15: {
                u32 s = rs();
                if (s == 0) s = 1;
                const bool add = below(2) != 0;
                items_.push_back(c16(
                    (4u << 13) | ((add ? 1u : 0u) << 12) | (d << 7) | (s << 2) | 2,
                    fmt_str("%s %s, %s", add ? "c.add" : "c.mv", xr(d).c_str(), xr(s).c_str())));
                break;
            }
            default: {
                const u32 u = 4 * (1 + static_cast<u32>(below(255)));
                items_.push_back(
                    c16(c_addi4spn(dp, u), fmt_str("c.addi4spn %s, sp, %u", xr(dp).c_str(), u)));
                break;
            }
        }
    }

    void c_mem() {
        if (chance(50)) {
            // sp-relative forms: the offsets stay inside the scratch buffer.
            const u32 d = rd();
            const u32 fd = frs();
            const u32 uw = 4 * static_cast<u32>(below(64));
            const u32 ud = 8 * static_cast<u32>(below(64));
            switch (below(6)) {
                case 0:
                    items_.push_back(
                        c16(c_lwsp(d, uw), fmt_str("c.lwsp %s, %u(sp)", xr(d).c_str(), uw)));
                    break;
                case 1:
                    items_.push_back(
                        c16(c_ldsp(3, d, ud), fmt_str("c.ldsp %s, %u(sp)", xr(d).c_str(), ud)));
                    break;
                case 2:
                    items_.push_back(
                        c16(c_ldsp(1, fd, ud), fmt_str("c.fldsp %s, %u(sp)", fr(fd).c_str(), ud)));
                    break;
                case 3: {
                    const u32 s = rs();
                    items_.push_back(
                        c16(c_swsp(s, uw), fmt_str("c.swsp %s, %u(sp)", xr(s).c_str(), uw)));
                    break;
                }
                case 4: {
                    const u32 s = rs();
                    items_.push_back(
                        c16(c_sdsp(7, s, ud), fmt_str("c.sdsp %s, %u(sp)", xr(s).c_str(), ud)));
                    break;
                }
                default:
                    items_.push_back(
                        c16(c_sdsp(5, fd, ud), fmt_str("c.fsdsp %s, %u(sp)", fr(fd).c_str(), ud)));
                    break;
            }
            return;
        }
        const u32 t = scratch_addr(0xf0, true);
        const u32 p = rdp();
        const u32 uw = 4 * static_cast<u32>(below(32));
        const u32 ud = 8 * static_cast<u32>(below(32));
        const std::string b = "(" + xr(t) + ")";
        switch (below(6)) {
            case 0:
                items_.push_back(
                    c16(c_w(2, t, p, uw), fmt_str("c.lw %s, %u%s", xr(p).c_str(), uw, b.c_str())));
                break;
            case 1:
                items_.push_back(
                    c16(c_d(3, t, p, ud), fmt_str("c.ld %s, %u%s", xr(p).c_str(), ud, b.c_str())));
                break;
            case 2:
                items_.push_back(
                    c16(c_d(1, t, p, ud), fmt_str("c.fld %s, %u%s", fr(p).c_str(), ud, b.c_str())));
                break;
            case 3:
                items_.push_back(
                    c16(c_w(6, t, p, uw), fmt_str("c.sw %s, %u%s", xr(p).c_str(), uw, b.c_str())));
                break;
            case 4:
                items_.push_back(
                    c16(c_d(7, t, p, ud), fmt_str("c.sd %s, %u%s", xr(p).c_str(), ud, b.c_str())));
                break;
            default:
                items_.push_back(
                    c16(c_d(5, t, p, ud), fmt_str("c.fsd %s, %u%s", fr(p).c_str(), ud, b.c_str())));
                break;
        }
    }

    // A branch or jump over one simple instruction (which runs only if the branch falls
    // through), so the outcome shows in the registers.
    void control() {
        Insn skipped;
        if (chance(70)) {
            skipped = simple_alu();
        } else {
            items_.clear();
            c_alu(rd());
            skipped = items_.back();
            items_.clear();
        }
        const u32 over = skipped.len;
        switch (below(7)) {
            case 0:
            case 1: {
                static constexpr const char* kName[] = {"beq", "bne", "",     "",
                                                        "blt", "bge", "bltu", "bgeu"};
                static constexpr u32 kF3[] = {0, 1, 4, 5, 6, 7};
                const u32 f3 = kF3[below(std::size(kF3))];
                const u32 a = rs(), b = rs();
                items_.push_back(w32(
                    enc_b(f3, a, b, 4 + over),
                    fmt_str("%s %s, %s, .+%u", kName[f3], xr(a).c_str(), xr(b).c_str(), 4 + over)));
                break;
            }
            case 2: {
                const u32 a = rdp();
                const bool ne = below(2) != 0;
                items_.push_back(
                    c16(c_bz(ne ? 7 : 6, a, 2 + over),
                        fmt_str("%s %s, .+%u", ne ? "c.bnez" : "c.beqz", xr(a).c_str(), 2 + over)));
                break;
            }
            case 3:
                items_.push_back(c16(c_j(2 + over), fmt_str("c.j .+%u", 2 + over)));
                break;
            case 4: {
                const u32 d = rd();
                items_.push_back(
                    w32(enc_j(d, 4 + over), fmt_str("jal %s, .+%u", xr(d).c_str(), 4 + over)));
                break;
            }
            case 5: {
                // auipc t, 0; jalr d, 8 + over(t)
                const u32 t = rd(), d = rd();
                items_.push_back(
                    w32(enc_u(op::kAuipc, t, 0), fmt_str("auipc %s, 0", xr(t).c_str())));
                items_.push_back(
                    w32(enc_i(op::kJalr, d, 0, t, 8 + over),
                        fmt_str("jalr %s, %u(%s)", xr(d).c_str(), 8 + over, xr(t).c_str())));
                break;
            }
            default: {
                // auipc t, 0; addi t, t, 10 + over; c.jr t / c.jalr t
                const u32 t = rd();
                const bool link = below(2) != 0;
                items_.push_back(
                    w32(enc_u(op::kAuipc, t, 0), fmt_str("auipc %s, 0", xr(t).c_str())));
                items_.push_back(enc::i("addi", op::kOpImm, 0, t, t, static_cast<i32>(10 + over)));
                items_.push_back(c16((4u << 13) | ((link ? 1u : 0u) << 12) | (t << 7) | 2,
                                     fmt_str("%s %s", link ? "c.jalr" : "c.jr", xr(t).c_str())));
                break;
            }
        }
        items_.push_back(skipped);
    }

    // --- random encodings (generate_encodings) ------------------------------------------
    // A 32-bit word of major opcode `opc` with random other bits, rd never sp.
    u32 random_word(u32 opc) {
        u32 w = (static_cast<u32>(next()) & ~0x7fu) | opc;
        if (((w >> 7) & 31) == kSp) w ^= 1u << 7;  // rd = x3
        return w;
    }

    void raw_item() {
        items_.clear();
        auto word = [&](u32 w, const char* what) {
            items_.push_back(w32(w, fmt_str("%s %#010x", what, w)));
        };
        switch (below(12)) {
            case 0:
                word(random_word(chance(50) ? op::kOp : op::kOp32), ".word/op");
                break;
            case 1: {
                // Mostly plausible funct7 values, so the legal ones come up often.
                static constexpr u32 kF7[] = {0x00, 0x01, 0x20, 0x21, 0x04, 0x05, 0x30, 0x24};
                u32 w = random_word(chance(50) ? op::kOp : op::kOp32);
                w = (w & 0x01ffffff) | (kF7[below(std::size(kF7))] << 25);
                word(w, ".word/op");
                break;
            }
            case 2:
                word(random_word(chance(50) ? op::kOpImm : op::kOpImm32), ".word/op-imm");
                break;
            case 3:
            case 4: {
                u32 w = random_word(op::kOpFp);
                if (chance(50)) w = (w & ~(7u << 12)) | (rm() << 12);  // fewer reserved modes
                word(w, ".word/op-fp");
                break;
            }
            case 5: {
                static constexpr u32 kOpc[] = {op::kMadd, op::kMsub, op::kNmsub, op::kNmadd};
                word(random_word(kOpc[below(4)]), ".word/fma");
                break;
            }
            case 6:
                word(random_word(op::kMiscMem), ".word/misc-mem");
                break;
            case 7: {  // loads and stores with any funct3, into the scratch buffer
                static constexpr u32 kOpc[] = {op::kLoad, op::kStore, op::kLoadFp, op::kStoreFp};
                const u32 opc = kOpc[below(4)];
                const u32 t = scratch_addr(0x1f0, false);
                const u32 f3 = static_cast<u32>(below(8));
                const u32 off = static_cast<u32>(below(9));
                const u32 w = opc == op::kLoad || opc == op::kLoadFp ? enc_i(opc, rd(), f3, t, off)
                                                                     : enc_s(opc, f3, t, rs(), off);
                word(w, ".word/mem");
                break;
            }
            case 8: {  // AMOs with any funct5/funct3 (but not LR/SC), 8-byte aligned
                const u32 t = scratch_addr(0x1f8, false);
                u32 f5;
                do {
                    f5 = static_cast<u32>(below(32));
                } while (f5 == 2 || f5 == 3);
                const u32 w = enc_r(op::kAmo, rd(), static_cast<u32>(below(8)), t, rs(),
                                    (f5 << 2) | static_cast<u32>(below(4)));
                word(w, ".word/amo");
                break;
            }
            case 9: {  // CSR instructions on any CSR but the counters (readable under QEMU's
                       // user mode, not on a hart whose mcounteren is 0)
                static constexpr u32 kF3[] = {1, 2, 3, 4, 5, 6, 7};
                u32 num;
                do {
                    num = chance(50) ? static_cast<u32>(below(4)) : static_cast<u32>(below(4096));
                } while (num >= 0xc00 && num < 0xd00);
                word(enc_i(op::kSystem, rd(), kF3[below(7)], rs(), num), ".word/csr");
                break;
            }
            default: {
                // RVC: anything but control flow, writes to sp, and loads/stores off a base
                // other than sp or a prepared scratch pointer.
                for (;;) {
                    u32 c = static_cast<u32>(next()) & 0xffff;
                    const u32 q = c & 3, f3 = c >> 13, r = (c >> 7) & 31;
                    if (q == 3) continue;
                    if (q == 1 && f3 >= 5) continue;
                    if (q == 1 && f3 <= 3 && r == kSp) continue;
                    if (q == 2 && (f3 == 0 || f3 == 2 || f3 == 3 || f3 == 4) && r == kSp) continue;
                    if (q == 2 && f3 == 4 && ((c >> 2) & 31) == 0) continue;
                    if (q == 0 && f3 != 0 && f3 != 4) {
                        const u32 t = scratch_addr(0xf0, true);
                        c = (c & ~(7u << 7)) | ((t - 8) << 7);
                    }
                    items_.push_back(c16(c, fmt_str(".half %#06x", c)));
                    break;
                }
                break;
            }
        }
        p_.items.push_back(items_);
    }

  private:
    Program& p_;
    std::mt19937_64 rng_;
    std::vector<Insn> items_;
    int last_lr_ = -1;  // width of the latest LR: -1 none, 0 word, 1 doubleword

  public:
    // No LR/SC groups: a trap in between (an illegal encoding) drops the hart's reservation,
    // as Linux's trap return does, while QEMU keeps it across the signal handler (regression
    // ReservationDoesNotSurviveATrap).
    bool no_lr_sc_ = false;
};

void emit(std::vector<std::uint8_t>& code, const Insn& in) {
    const u32 b = in.bits;
    code.push_back(static_cast<std::uint8_t>(b));
    code.push_back(static_cast<std::uint8_t>(b >> 8));
    if (in.len == 4) {
        code.push_back(static_cast<std::uint8_t>(b >> 16));
        code.push_back(static_cast<std::uint8_t>(b >> 24));
    }
}

}  // namespace

namespace enc {

Insn r(const char* name, u32 opc, u32 f3, u32 f7, u32 rd, u32 rs1, u32 rs2) {
    return w32(enc_r(opc, rd, f3, rs1, rs2, f7),
               fmt_str("%s %s, %s, %s", name, xr(rd).c_str(), xr(rs1).c_str(), xr(rs2).c_str()));
}

Insn i(const char* name, u32 opc, u32 f3, u32 rd, u32 rs1, i32 imm) {
    return w32(enc_i(opc, rd, f3, rs1, static_cast<u32>(imm)),
               fmt_str("%s %s, %s, %d", name, xr(rd).c_str(), xr(rs1).c_str(), imm));
}

Insn fp(const char* name, u32 f7, u32 rm, u32 rd, u32 rs1, u32 rs2) {
    return w32(enc_r(op::kOpFp, rd, rm, rs1, rs2, f7),
               fmt_str("%s %s, %s, %s, %s", name, fr(rd).c_str(), fr(rs1).c_str(), fr(rs2).c_str(),
                       kRmName[rm & 7]));
}

Insn fma(const char* name, u32 opc, u32 fmt, u32 rm, u32 rd, u32 rs1, u32 rs2, u32 rs3) {
    return w32((rs3 << 27) | (fmt << 25) | (rs2 << 20) | (rs1 << 15) | (rm << 12) | (rd << 7) | opc,
               fmt_str("%s %s, %s, %s, %s, %s", name, fr(rd).c_str(), fr(rs1).c_str(),
                       fr(rs2).c_str(), fr(rs3).c_str(), kRmName[rm & 7]));
}

Insn raw16(std::uint16_t bits, const std::string& text) {
    return c16(bits, text);
}

Insn raw32(std::uint32_t bits, const std::string& text) {
    return w32(bits, text);
}

}  // namespace enc

std::size_t Program::insn_count() const {
    std::size_t n = 0;
    for (const auto& g : items) n += g.size();
    return n;
}

Program generate_encodings(std::uint64_t seed, unsigned insns) {
    Program p;
    p.seed = seed;
    p.sigill_handler = true;
    Gen g(p);
    g.no_lr_sc_ = true;
    g.init_state();
    while (p.insn_count() < insns) {
        if (g.chance(50)) {
            g.raw_item();
        } else {
            g.item();
        }
    }
    return p;
}

Program blank_program(std::uint64_t seed) {
    Program p;
    p.seed = seed;
    Gen g(p);
    g.init_state();
    return p;
}

Program generate(std::uint64_t seed, unsigned insns) {
    Program p;
    p.seed = seed;
    Gen g(p);
    g.init_state();
    while (p.insn_count() < insns) g.item();
    return p;
}

std::vector<std::uint8_t> build_elf(const Program& p, std::size_t items) {
    std::vector<std::uint8_t> code;
    auto put = [&](u32 bits) { emit(code, Insn{bits, 4, {}}); };
    constexpr u32 t0 = 5, t1 = 6, t2 = 7, t3 = 28, t4 = 29, a0 = 10, a1 = 11, a2 = 12, a3 = 13,
                  a7 = 17, ra = 1;
    // Prologue: sp = data; fcsr, f0..f31, x1..x31 from the init slots (x5 carries fcsr).
    put(enc_u(op::kLui, kSp, static_cast<u32>(kDataAddr)));
    std::size_t patch_at = 0;
    if (p.sigill_handler) {
        // rt_sigaction(SIGILL, {handler, SA_SIGINFO, mask 0}, NULL, 8); the handler's address
        // is patched in once the code before it is laid out.
        patch_at = code.size();
        put(0);  // auipc t0, hi
        put(0);  // addi t0, t0, lo
        put(enc_s(op::kStore, 3, kSp, t0, kAct));
        put(enc_u(op::kLui, t1, 0x08000000));  // SA_ONSTACK
        put(enc_i(op::kOpImm, t1, 0, t1, 4));  // | SA_SIGINFO
        put(enc_s(op::kStore, 3, kSp, t1, kAct + 8));
        // sigaltstack({data + kAltStack, 0, kAltStackSize}, NULL)
        put(enc_u(op::kLui, t1, static_cast<u32>(kDataAddr + kAltStack)));
        put(enc_s(op::kStore, 3, kSp, t1, kSs));
        put(enc_u(op::kLui, t1, kAltStackSize));
        put(enc_s(op::kStore, 3, kSp, t1, kSs + 16));
        put(enc_i(op::kOpImm, a0, 0, kSp, kSs));
        put(enc_i(op::kOpImm, a1, 0, 0, 0));
        put(enc_i(op::kOpImm, a7, 0, 0, 132));
        put(kEcall);
        put(enc_i(op::kOpImm, a0, 0, 0, 4));
        put(enc_i(op::kOpImm, a1, 0, kSp, kAct));
        put(enc_i(op::kOpImm, a2, 0, 0, 0));
        put(enc_i(op::kOpImm, a3, 0, 0, 8));
        put(enc_i(op::kOpImm, a7, 0, 0, 134));
        put(kEcall);
    }
    put(enc_i(op::kLoad, 5, 3, kSp, kInitFcsr));
    put(enc_i(op::kSystem, 0, 1, 5, kFcsr));
    for (u32 r = 0; r < 32; ++r) put(enc_i(op::kLoadFp, r, 3, kSp, kInitF + 8 * r));
    for (u32 r = 1; r < 32; ++r) {
        if (r != kSp) put(enc_i(op::kLoad, r, 3, kSp, kInitX + 8 * r));
    }
    for (std::size_t k = 0; k < items && k < p.items.size(); ++k) {
        for (const Insn& in : p.items[k]) emit(code, in);
    }
    // Epilogue: x1..x31, f0..f31, fcsr into the dump slots; write(1, sp, kStateBytes); exit(0).
    for (u32 r = 1; r < 32; ++r) put(enc_s(op::kStore, 3, kSp, r, kDumpX + 8 * r));
    for (u32 r = 0; r < 32; ++r) put(enc_s(op::kStoreFp, 3, kSp, r, kDumpF + 8 * r));
    put(enc_i(op::kSystem, 5, 2, 0, kFcsr));
    put(enc_s(op::kStore, 3, kSp, 5, kDumpFcsr));
    put(enc_i(op::kOpImm, 10, 0, 0, 1));
    put(enc_i(op::kOpImm, 11, 0, kSp, 0));
    put(enc_i(op::kOpImm, 12, 0, 0, static_cast<u32>(kStateBytes)));
    put(enc_i(op::kOpImm, 17, 0, 0, 64));
    put(kEcall);
    put(enc_i(op::kOpImm, 10, 0, 0, 0));
    put(enc_i(op::kOpImm, 17, 0, 0, 93));
    put(kEcall);
    if (p.sigill_handler) {
        // handler(sig, info, ucontext in a2): write {magic, pc} and resume after the
        // instruction (pc is uc_mcontext's first field, at 176 in the riscv64 ucontext).
        // sigreturn restores every register the handler touches.
        const u32 delta = static_cast<u32>(code.size() - patch_at);
        const u32 hi = (delta + 0x800) & 0xfffff000u;
        const u32 lo = delta - hi;
        const u32 auipc = enc_u(op::kAuipc, t0, hi), addi = enc_i(op::kOpImm, t0, 0, t0, lo);
        std::memcpy(code.data() + patch_at, &auipc, 4);
        std::memcpy(code.data() + patch_at + 4, &addi, 4);
        constexpr u32 kUcPc = 176;
        static_assert(kIllegalRecordMagic == 0x494c5000 - 0x400);
        put(enc_i(op::kLoad, t0, 3, a2, kUcPc));
        put(enc_u(op::kLui, t1, static_cast<u32>(kDataAddr)));
        put(enc_i(op::kOpImm, t1, 0, t1, kRec));
        put(enc_u(op::kLui, t2, 0x494c5000));
        put(enc_i(op::kOpImm, t2, 0, t2, static_cast<u32>(-0x400)));
        put(enc_s(op::kStore, 3, t1, t2, 0));
        put(enc_s(op::kStore, 3, t1, t0, 8));
        put(enc_i(op::kLoad, t2, 5, t0, 0));  // lhu: the instruction's low half
        put(enc_i(op::kOpImm, t2, 7, t2, 3));
        put(enc_i(op::kOpImm, t3, 0, 0, 3));
        put(enc_i(op::kOpImm, t4, 0, 0, 2));
        put(enc_b(1, t2, t3, 8));  // bne t2, t3, +8: compressed
        put(enc_i(op::kOpImm, t4, 0, 0, 4));
        put(enc_r(op::kOp, t0, 0, t0, t4, 0));
        put(enc_s(op::kStore, 3, a2, t0, kUcPc));
        put(enc_i(op::kOpImm, a0, 0, 0, 1));
        put(enc_i(op::kOpImm, a1, 0, t1, 0));
        put(enc_i(op::kOpImm, a2, 0, 0, 16));
        put(enc_i(op::kOpImm, a7, 0, 0, 64));
        put(kEcall);
        put(enc_i(op::kJalr, 0, 0, ra, 0));
    }

    std::vector<std::uint8_t> data(p.sigill_handler ? kAltStack + kAltStackSize : kDataSize);
    std::memcpy(data.data(), p.scratch.data(), kScratchSize);
    std::memcpy(data.data() + kInitX, p.x.data(), 32 * 8);
    std::memcpy(data.data() + kInitF, p.f.data(), 32 * 8);
    std::memcpy(data.data() + kInitFcsr, &p.fcsr, 8);
    return make_elf(code, kCodeAddr, data, kDataAddr);
}

std::string listing(const Program& p, std::size_t first, std::size_t last) {
    std::string s;
    for (std::size_t k = first; k < last && k < p.items.size(); ++k) {
        for (const Insn& in : p.items[k]) {
            s += fmt_str("  [%4zu] %0*x  %s\n", k, in.len == 2 ? 4 : 8, in.bits, in.text.c_str());
        }
    }
    return s;
}

bool parse_state(const std::string& out, State& s) {
    // Any SIGILL handler records come first, then the state.
    if (out.size() < kStateBytes || (out.size() - kStateBytes) % 16 != 0) return false;
    s.illegal.clear();
    for (std::size_t at = 0; at + kStateBytes < out.size(); at += 16) {
        u64 rec[2];
        std::memcpy(rec, out.data() + at, 16);
        if (rec[0] != kIllegalRecordMagic) return false;
        s.illegal.push_back(rec[1]);
    }
    const char* d = out.data() + out.size() - kStateBytes;
    std::memcpy(s.scratch.data(), d, kScratchSize);
    std::memcpy(s.x.data(), d + kDumpX, 32 * 8);
    std::memcpy(s.f.data(), d + kDumpF, 32 * 8);
    std::memcpy(&s.fcsr, d + kDumpFcsr, 8);
    return true;
}

std::string describe_diff(const State& a, const State& b, const char* an, const char* bn) {
    std::string s;
    auto line = [&](const std::string& what, u64 va, u64 vb) {
        s += fmt_str("  %-8s %s %#018llx  %s %#018llx\n", what.c_str(), an,
                     static_cast<unsigned long long>(va), bn, static_cast<unsigned long long>(vb));
    };
    for (u32 r = 0; r < 32; ++r) {
        if (a.x[r] != b.x[r]) line(xr(r), a.x[r], b.x[r]);
    }
    for (u32 r = 0; r < 32; ++r) {
        if (a.f[r] != b.f[r]) line(fr(r), a.f[r], b.f[r]);
    }
    if (a.fcsr != b.fcsr) line("fcsr", a.fcsr, b.fcsr);
    if (a.illegal != b.illegal) {
        auto pcs = [](const std::vector<u64>& v) {
            std::string t;
            for (u64 pc : v) t += fmt_str(" %#llx", static_cast<unsigned long long>(pc));
            return t.empty() ? std::string(" none") : t;
        };
        s += std::string("  illegal instructions at\n    ") + an + ":" + pcs(a.illegal) + "\n    " +
             bn + ":" + pcs(b.illegal) + "\n";
    }
    for (unsigned i = 0; i < kScratchSize; i += 8) {
        u64 va, vb;
        std::memcpy(&va, &a.scratch[i], 8);
        std::memcpy(&vb, &b.scratch[i], 8);
        if (va != vb) line("mem+" + std::to_string(i), va, vb);
    }
    return s;
}

}  // namespace vireo::riscv::diff
