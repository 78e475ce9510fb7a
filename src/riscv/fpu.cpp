// F and D extensions (Unprivileged spec §11-12) on the host's IEEE-754 arithmetic: the host FPU
// rounds (fesetround for the static/dynamic rounding mode) and reports exceptions (fetestexcept,
// mapped to fflags); RISC-V specifics are done here: NaN boxing of singles, canonical NaNs,
// min/max and comparison rules, saturating conversions. Compiled with -frounding-math so the
// compiler keeps FP operations between the fenv calls.
#include <algorithm>
#include <bit>
#include <cfenv>
#include <cmath>
#include <limits>

#include "riscv/hart.hpp"
#include "riscv/hart_inl.hpp"
#include "riscv/opcodes.hpp"

namespace vireo::riscv {

namespace {

using u64 = std::uint64_t;
using u32 = std::uint32_t;

constexpr u64 kBoxMask = 0xffffffff00000000ull;  // upper half of a NaN-boxed single (§12.2)
constexpr u32 kCanonicalNanS = 0x7fc00000u;
constexpr u64 kCanonicalNanD = 0x7ff8000000000000ull;

// Rounding modes (§11.2).
constexpr u32 kRne = 0, kRtz = 1, kRdn = 2, kRup = 3, kRmm = 4, kDyn = 7;

template <typename F>
struct FpTraits;
template <>
struct FpTraits<float> {
    using Bits = u32;
    static constexpr Bits kNan = kCanonicalNanS;
    static constexpr Bits kSign = 0x80000000u;
    static constexpr Bits kQuiet = 0x00400000u;
};
template <>
struct FpTraits<double> {
    using Bits = u64;
    static constexpr Bits kNan = kCanonicalNanD;
    static constexpr Bits kSign = 0x8000000000000000ull;
    static constexpr Bits kQuiet = 0x0008000000000000ull;
};

template <typename F>
bool is_snan(F v) {
    using T = FpTraits<F>;
    return std::isnan(v) && (std::bit_cast<typename T::Bits>(v) & T::kQuiet) == 0;
}

template <typename F>
u32 fclass(F v) {
    const bool neg = std::signbit(v);
    switch (std::fpclassify(v)) {
        case FP_INFINITE:
            return neg ? 1u << 0 : 1u << 7;
        case FP_NORMAL:
            return neg ? 1u << 1 : 1u << 6;
        case FP_SUBNORMAL:
            return neg ? 1u << 2 : 1u << 5;
        case FP_ZERO:
            return neg ? 1u << 3 : 1u << 4;
        default:
            return is_snan(v) ? 1u << 8 : 1u << 9;
    }
}

u32 host_flags_to_fflags(int e) {
    u32 f = 0;
    if (e & FE_INEXACT) f |= fflag::kNx;
    if (e & FE_UNDERFLOW) f |= fflag::kUf;
    if (e & FE_OVERFLOW) f |= fflag::kOf;
    if (e & FE_DIVBYZERO) f |= fflag::kDz;
    if (e & FE_INVALID) f |= fflag::kNv;
    return f;
}

int host_round(u32 rm) {
    switch (rm) {
        case kRtz:
            return FE_TOWARDZERO;
        case kRdn:
            return FE_DOWNWARD;
        case kRup:
            return FE_UPWARD;
        default:
            return FE_TONEAREST;  // RNE; RMM differs only on exact ties (to_int, tie_away)
    }
}

// Runs host FP code under a RISC-V rounding mode and collects the exceptions it raised.
class HostFpScope {
  public:
    explicit HostFpScope(u32 rm) : rm_(rm) {
        std::feclearexcept(FE_ALL_EXCEPT);
        if (rm != kRne) std::fesetround(host_round(rm));
    }
    ~HostFpScope() {
        if (rm_ != kRne) std::fesetround(FE_TONEAREST);
    }
    u32 flags() const { return host_flags_to_fflags(std::fetestexcept(FE_ALL_EXCEPT)); }

  private:
    u32 rm_;
};

// Float to integer with RISC-V saturation (§11.7 table 11.4): NaN and +overflow give the
// maximum, -overflow the minimum, all with NV; an inexact in-range result sets NX.
template <typename I, typename F>
u64 to_int(F v, u32 rm, u32& flags) {
    if (std::isnan(v)) {
        flags |= fflag::kNv;
        return static_cast<u64>(std::numeric_limits<I>::max());
    }
    F r;
    if (rm == kRmm) {
        r = std::round(v);
    } else {
        const int old = std::fegetround();
        std::fesetround(host_round(rm));
        r = std::nearbyint(v);
        std::fesetround(old);
    }
    // Bounds as floating point: 2^bits (exact) and -2^(bits-1) or 0.
    const F hi = std::ldexp(F(1), std::numeric_limits<I>::digits);
    const F lo = std::numeric_limits<I>::is_signed ? -hi : F(0);
    if (r >= hi) {
        flags |= fflag::kNv;
        return static_cast<u64>(std::numeric_limits<I>::max());
    }
    if (r < lo) {
        flags |= fflag::kNv;
        return static_cast<u64>(std::numeric_limits<I>::min());
    }
    if (r != v) flags |= fflag::kNx;
    return static_cast<u64>(static_cast<I>(r));
}

// --- RMM ------------------------------------------------------------------------------------
// The host has no round-to-nearest-ties-to-max-magnitude mode. It differs from the host's
// nearest-even only when the exact result lies exactly halfway between two representable
// numbers, so operations under RMM run in nearest-even and then recompute the exact result in
// integers to find such ties (and take the neighbour away from zero instead). The flags are
// those of nearest-even: a tie is inexact either way, and the two modes overflow and underflow
// at the same ties.

using u128 = unsigned __int128;

// (-1)^neg * mag * 2^exp; `sticky` when nonzero bits below 2^exp were dropped (then the value
// is not exactly representable this way and cannot be a tie).
struct Exact {
    bool neg = false;
    u128 mag = 0;
    int exp = 0;
    bool sticky = false;
};

int msb(u128 v) {
    const u64 hi = static_cast<u64>(v >> 64);
    return hi != 0 ? 127 - std::countl_zero(hi) : 63 - std::countl_zero(static_cast<u64>(v));
}

// A finite float or double.
template <typename F>
Exact exact(F v) {
    using B = typename FpTraits<F>::Bits;
    constexpr int kMant = std::numeric_limits<F>::digits - 1;
    constexpr int kBias = std::numeric_limits<F>::max_exponent - 1;
    const B b = std::bit_cast<B>(v);
    const u64 frac = b & ((B{1} << kMant) - 1);
    const int e = static_cast<int>((b & ~FpTraits<F>::kSign) >> kMant);
    Exact x;
    x.neg = (b & FpTraits<F>::kSign) != 0;
    x.mag = e == 0 ? frac : frac | (u64{1} << kMant);
    x.exp = (e == 0 ? 1 : e) - kBias - kMant;
    return x;
}

Exact exact_int(u64 v, bool is_signed) {
    Exact x;
    x.neg = is_signed && static_cast<std::int64_t>(v) < 0;
    x.mag = x.neg ? 0 - v : v;
    return x;
}

Exact negate(Exact x) {
    x.neg = !x.neg;
    return x;
}

// Products of float/double significands: below 2^106.
Exact exact_mul(const Exact& a, const Exact& b) {
    return Exact{a.neg != b.neg, a.mag * b.mag, a.exp + b.exp, false};
}

// Sum of two exact values with magnitudes below 2^107.
Exact exact_add(Exact a, Exact b) {
    if (a.mag == 0) return b;
    if (b.mag == 0) return a;
    if (a.exp + msb(a.mag) < b.exp + msb(b.mag)) std::swap(a, b);  // a has the higher top bit
    u128 am = a.mag, bm = b.mag;
    int exp;
    bool sticky = false;
    if (a.exp <= b.exp) {
        bm <<= b.exp - a.exp;  // b's top bit is not above a's: fits
        exp = a.exp;
    } else {
        // Shift a up as far as it goes (top bit at 125, room for the carry); what of b falls
        // below a's new last bit only matters as sticky: it is far below a's top.
        const int up = std::min(a.exp - b.exp, 125 - msb(am));
        am <<= up;
        exp = a.exp - up;
        const int down = exp - b.exp;
        if (down >= 128) {
            sticky = bm != 0;
            bm = 0;
        } else if (down > 0) {
            sticky = (bm & ((u128{1} << down) - 1)) != 0;
            bm >>= down;
        }
    }
    Exact r;
    r.exp = exp;
    r.sticky = sticky;
    if (a.neg == b.neg) {
        r.neg = a.neg;
        r.mag = am + bm;
    } else if (am >= bm) {
        r.neg = a.neg;
        r.mag = am - bm;
    } else {
        r.neg = b.neg;
        r.mag = bm - am;
    }
    return r;
}

// If `x` lies exactly halfway between two representable values of F, sets `out` to the one
// of larger magnitude and returns true.
template <typename F>
bool tie_away(const Exact& x, F& out) {
    if (x.mag == 0 || x.sticky) return false;
    // q: the exponent of the result's last place (never below the subnormals' last place);
    // k: how many low bits of mag rounding drops.
    constexpr int kPrec = std::numeric_limits<F>::digits;
    constexpr int kMinExp = std::numeric_limits<F>::min_exponent - kPrec;
    const int q = std::max(x.exp + msb(x.mag) - (kPrec - 1), kMinExp);
    const int k = q - x.exp;
    if (k <= 0 || k >= 128) return false;
    if ((x.mag & ((u128{1} << k) - 1)) != u128{1} << (k - 1)) return false;
    const u64 kept = static_cast<u64>(x.mag >> k) + 1;  // at most 2^kPrec: exact in F
    const F r = std::ldexp(static_cast<F>(kept), q);
    out = x.neg ? -r : r;
    return true;
}

template <typename F>
F rmm_of(F rne, const Exact& x) {
    F out;
    return tie_away(x, out) ? out : rne;
}

// A quotient can be a tie only when it is subnormal (a normal midpoint has one significant bit
// more than any dividend can give): try the two midpoints next to the nearest-even result.
template <typename F>
F rmm_div(F a, F b, F r) {
    if (!(std::fabs(r) < std::numeric_limits<F>::min())) return r;
    const Exact er = exact(r), ea = exact(a), eb = exact(b);
    for (int side = 0; side < 2; ++side) {
        if (side == 1 && er.mag == 0) break;
        const Exact mid{er.neg, side == 0 ? er.mag * 2 + 1 : er.mag * 2 - 1, er.exp - 1, false};
        const Exact rest = exact_add(exact_mul(eb, mid), negate(ea));
        F out;
        if (rest.mag == 0 && !rest.sticky && tie_away(mid, out)) return out;
    }
    return r;
}

}  // namespace

void Hart::exec_fp(u32 insn, u64 next) {
    if (!fp_enabled()) {
        illegal(insn);
        return;
    }
    const u32 opc = insn & 0x7f;
    const u32 rd = (insn >> 7) & 31;
    const u32 rs1 = (insn >> 15) & 31;
    const u32 rs2 = (insn >> 20) & 31;
    const u32 rs3 = insn >> 27;
    const u32 f3 = (insn >> 12) & 7;

    auto get_s = [&](u32 r) {
        const u64 v = f[r];
        return std::bit_cast<float>((v & kBoxMask) == kBoxMask ? static_cast<u32>(v)
                                                               : kCanonicalNanS);
    };
    auto get_d = [&](u32 r) { return std::bit_cast<double>(f[r]); };
    auto put_s = [&](float v) {
        const u32 b = std::isnan(v) ? kCanonicalNanS : std::bit_cast<u32>(v);
        f[rd] = kBoxMask | b;
        fp_dirty();
    };
    auto put_d = [&](double v) {
        f[rd] = std::isnan(v) ? kCanonicalNanD : std::bit_cast<u64>(v);
        fp_dirty();
    };
    auto put_x = [&](u64 v) {
        if (rd != 0) x[rd] = v;
    };

    if (opc == op::kLoadFp || opc == op::kStoreFp) {
        const bool is_load = opc == op::kLoadFp;
        const u64 imm = is_load ? imm_i(insn) : imm_s(insn);
        const u64 va = x[rs1] + imm;
        if (f3 == 2) {
            if (is_load) {
                u32 v;
                if (!load(va, v)) return;
                f[rd] = kBoxMask | v;
                fp_dirty();
            } else if (!store(va, static_cast<u32>(f[rs2]))) {
                return;
            }
        } else if (f3 == 3) {
            if (is_load) {
                u64 v;
                if (!load(va, v)) return;
                f[rd] = v;
                fp_dirty();
            } else if (!store(va, f[rs2])) {
                return;
            }
        } else {
            illegal(insn);
            return;
        }
        pc = next;
        return;
    }

    const u32 fmt = (insn >> 25) & 3;  // 0 = S, 1 = D
    if (fmt > 1) {
        illegal(insn);
        return;
    }
    u32 rm = f3 == kDyn ? frm_ : f3;
    const u32 f7 = insn >> 25;
    // The rounding mode matters only for arithmetic and conversions; others use f3 as funct3.
    const bool uses_rm =
        opc != op::kOpFp || !(f7 >> 2 == 0x04 || f7 >> 2 == 0x05 || f7 >> 2 == 0x14 ||
                              f7 >> 2 == 0x1c || f7 >> 2 == 0x1e);
    if (uses_rm && rm > kRmm) {
        illegal(insn);
        return;
    }
    u32 flags = 0;

    if (opc != op::kOpFp) {
        // Fused multiply-add family (§11.6): one rounding.
        const bool neg_prod = opc == op::kNmsub || opc == op::kNmadd;
        const bool neg_add = opc == op::kMsub || opc == op::kNmadd;
        // Infinity times zero is invalid even when the addend is a quiet NaN (§11.6); the
        // host's fma (x86 and glibc alike) lets the quiet NaN through without NV.
        auto inf_times_zero = [](auto a, auto b) {
            return (std::isinf(a) && b == 0) || (a == 0 && std::isinf(b));
        };
        auto fused = [&]<typename F>(F a, F b, F c, auto put) {
            const F pa = neg_prod ? -a : a, pc3 = neg_add ? -c : c;
            F r;
            {
                HostFpScope s(rm);
                r = std::fma(pa, b, pc3);
                flags = s.flags();
            }
            if (inf_times_zero(a, b)) flags |= fflag::kNv;
            if (rm == kRmm && (flags & fflag::kNx) != 0 && std::isfinite(r)) {
                r = rmm_of(r, exact_add(exact_mul(exact(pa), exact(b)), exact(pc3)));
            }
            put(r);
        };
        if (fmt == 0) {
            fused(get_s(rs1), get_s(rs2), get_s(rs3), put_s);
        } else {
            fused(get_d(rs1), get_d(rs2), get_d(rs3), put_d);
        }
        fflags_ |= flags;
        pc = next;
        return;
    }

    auto arith = [&]<typename F>(F a, F b, auto put) {
        HostFpScope s(rm);
        F r;
        switch (f7 >> 2) {
            case 0x00:
                r = a + b;
                break;
            case 0x01:
                r = a - b;
                break;
            case 0x02:
                r = a * b;
                break;
            case 0x03:
                r = a / b;
                break;
            default:
                r = std::sqrt(a);
                break;  // 0x0b
        }
        flags = s.flags();
        if (rm == kRmm && (flags & fflag::kNx) != 0 && std::isfinite(r)) {
            switch (f7 >> 2) {
                case 0x00:
                    r = rmm_of(r, exact_add(exact(a), exact(b)));
                    break;
                case 0x01:
                    r = rmm_of(r, exact_add(exact(a), negate(exact(b))));
                    break;
                case 0x02:
                    r = rmm_of(r, exact_mul(exact(a), exact(b)));
                    break;
                case 0x03:
                    r = rmm_div(a, b, r);
                    break;
                default:
                    break;  // a square root is never halfway
            }
        }
        put(r);
    };
    auto sgnj = [&]<typename F>(F a, F b) -> F {
        using B = typename FpTraits<F>::Bits;
        const B s = FpTraits<F>::kSign;
        const B ab = std::bit_cast<B>(a), bb = std::bit_cast<B>(b);
        B sign;
        switch (f3) {
            case 0:
                sign = bb & s;
                break;
            case 1:
                sign = ~bb & s;
                break;
            default:
                sign = (ab ^ bb) & s;
                break;
        }
        return std::bit_cast<F>(static_cast<B>((ab & ~s) | sign));
    };
    auto minmax = [&]<typename F>(F a, F b) -> F {
        if (is_snan(a) || is_snan(b)) flags |= fflag::kNv;
        if (std::isnan(a) && std::isnan(b)) return std::bit_cast<F>(FpTraits<F>::kNan);
        if (std::isnan(a)) return b;
        if (std::isnan(b)) return a;
        if (a == b) {  // -0.0 is less than +0.0 here (§11.6)
            const bool want_neg = f3 == 0;
            return std::signbit(a) == want_neg ? a : b;
        }
        return (f3 == 0) == (a < b) ? a : b;
    };
    auto compare = [&]<typename F>(F a, F b) -> u64 {
        if (std::isnan(a) || std::isnan(b)) {
            // FEQ is quiet (NV for signalling NaNs only); FLT/FLE signal on any NaN.
            if (f3 != 2 || is_snan(a) || is_snan(b)) flags |= fflag::kNv;
            return 0;
        }
        switch (f3) {
            case 2:
                return a == b;
            case 1:
                return a < b;
            default:
                return a <= b;
        }
    };
    auto to_x = [&]<typename F>(F v) -> u64 {
        switch (rs2) {
            case 0:
                return static_cast<u64>(static_cast<std::int64_t>(
                    static_cast<std::int32_t>(to_int<std::int32_t>(v, rm, flags))));
            case 1:
                return static_cast<u64>(static_cast<std::int64_t>(
                    static_cast<std::int32_t>(to_int<std::uint32_t>(v, rm, flags))));
            case 2:
                return to_int<std::int64_t>(v, rm, flags);
            default:
                return to_int<std::uint64_t>(v, rm, flags);
        }
    };
    auto from_x = [&]<typename F>(F*) -> F {
        const u64 v = x[rs1];
        HostFpScope s(rm);
        F r;
        switch (rs2) {
            case 0:
                r = static_cast<F>(static_cast<std::int32_t>(v));
                break;
            case 1:
                r = static_cast<F>(static_cast<u32>(v));
                break;
            case 2:
                r = static_cast<F>(static_cast<std::int64_t>(v));
                break;
            default:
                r = static_cast<F>(v);
                break;
        }
        flags = s.flags();
        if (rm == kRmm && (flags & fflag::kNx) != 0) {
            const u64 iv = rs2 == 0   ? static_cast<u64>(static_cast<std::int32_t>(v))
                           : rs2 == 1 ? static_cast<u32>(v)
                                      : v;
            r = rmm_of(r, exact_int(iv, rs2 == 0 || rs2 == 2));
        }
        return r;
    };
    if (rs2 > 3 && (f7 >> 2 == 0x18 || f7 >> 2 == 0x1a)) {
        illegal(insn);
        return;
    }

    switch (f7) {
        case 0x00:
        case 0x04:
        case 0x08:
        case 0x0c:
            arith(get_s(rs1), get_s(rs2), put_s);
            break;
        case 0x01:
        case 0x05:
        case 0x09:
        case 0x0d:
            arith(get_d(rs1), get_d(rs2), put_d);
            break;
        case 0x2c:
            if (rs2 != 0) {
                illegal(insn);
                return;
            }
            arith(get_s(rs1), 0.0f, put_s);
            break;
        case 0x2d:
            if (rs2 != 0) {
                illegal(insn);
                return;
            }
            arith(get_d(rs1), 0.0, put_d);
            break;
        case 0x10:
            if (f3 > 2) {
                illegal(insn);
                return;
            }
            // Sign injection is bit manipulation: the NaN payload is kept (no canonicalising).
            f[rd] = kBoxMask | std::bit_cast<u32>(sgnj(get_s(rs1), get_s(rs2)));
            fp_dirty();
            break;
        case 0x11:
            if (f3 > 2) {
                illegal(insn);
                return;
            }
            f[rd] = std::bit_cast<u64>(sgnj(get_d(rs1), get_d(rs2)));
            fp_dirty();
            break;
        case 0x14:
            if (f3 > 1) {
                illegal(insn);
                return;
            }
            put_s(minmax(get_s(rs1), get_s(rs2)));
            break;
        case 0x15:
            if (f3 > 1) {
                illegal(insn);
                return;
            }
            put_d(minmax(get_d(rs1), get_d(rs2)));
            break;
        case 0x20: {  // FCVT.S.D
            if (rs2 != 1) {
                illegal(insn);
                return;
            }
            const double a = get_d(rs1);
            HostFpScope s(rm);
            float r = static_cast<float>(a);
            flags = s.flags();
            if (rm == kRmm && (flags & fflag::kNx) != 0 && std::isfinite(r)) {
                r = rmm_of(r, exact(a));
            }
            put_s(r);
            break;
        }
        case 0x21: {  // FCVT.D.S
            if (rs2 != 0) {
                illegal(insn);
                return;
            }
            const float a = get_s(rs1);
            if (is_snan(a)) flags |= fflag::kNv;
            put_d(static_cast<double>(a));
            break;
        }
        case 0x50:
            if (f3 > 2) {
                illegal(insn);
                return;
            }
            put_x(compare(get_s(rs1), get_s(rs2)));
            break;
        case 0x51:
            if (f3 > 2) {
                illegal(insn);
                return;
            }
            put_x(compare(get_d(rs1), get_d(rs2)));
            break;
        case 0x60:
            put_x(to_x(get_s(rs1)));
            break;
        case 0x61:
            put_x(to_x(get_d(rs1)));
            break;
        case 0x68:
            put_s(from_x(static_cast<float*>(nullptr)));
            break;
        case 0x69:
            put_d(from_x(static_cast<double*>(nullptr)));
            break;
        case 0x70:
            if (rs2 != 0) {
                illegal(insn);
                return;
            }
            if (f3 == 0)
                put_x(
                    static_cast<u64>(static_cast<std::int64_t>(static_cast<std::int32_t>(f[rs1]))));
            else if (f3 == 1)
                put_x(fclass(get_s(rs1)));
            else {
                illegal(insn);
                return;
            }
            break;
        case 0x71:
            if (rs2 != 0) {
                illegal(insn);
                return;
            }
            if (f3 == 0)
                put_x(f[rs1]);
            else if (f3 == 1)
                put_x(fclass(get_d(rs1)));
            else {
                illegal(insn);
                return;
            }
            break;
        case 0x78:
            if (rs2 != 0 || f3 != 0) {
                illegal(insn);
                return;
            }
            f[rd] = kBoxMask | static_cast<u32>(x[rs1]);
            fp_dirty();
            break;
        case 0x79:
            if (rs2 != 0 || f3 != 0) {
                illegal(insn);
                return;
            }
            f[rd] = x[rs1];
            fp_dirty();
            break;
        default:
            illegal(insn);
            return;
    }
    if (flags != 0) {
        fflags_ |= flags;
        fp_dirty();
    }
    pc = next;
}

}  // namespace vireo::riscv
