/* F and D edge cases for the differential test: arithmetic in every static rounding mode and
 * through frm, accrued flags per operation, NaN boxing (single-precision operands that are not
 * NaN-boxed), canonical NaNs, fmin/fmax with NaNs and signed zeros, comparisons, fclass,
 * saturating conversions to integers, conversions from integers (rounding ties), between
 * formats, and fused multiply-add. One result and its fflags a line, in hex. */
#include "rt.h"

#define BOX(x) (0xffffffff00000000ull | (x))
static const u64 svals[] = {
    BOX(0x00000000), BOX(0x80000000), BOX(0x7f800000), BOX(0xff800000), BOX(0x7fc00000),
    BOX(0x7fc12345), BOX(0x7f800001), BOX(0xff812345), BOX(0x00000001), BOX(0x807fffff),
    BOX(0x00800000), BOX(0x7f7fffff), BOX(0x3f800000), BOX(0xbf800000), BOX(0x3fc00000),
    BOX(0x40200000), BOX(0x33800000), BOX(0x34400000), BOX(0x3f800001), BOX(0x4f000000),
    BOX(0x3eaaaaab), BOX(0x0c000000), 0x000000003f800000ull, 0x7fffffff40000000ull,
    BOX(0x40000000), BOX(0x3f000000), BOX(0x00000005),
};
static const u64 dvals[] = {
    0x0000000000000000ull, 0x8000000000000000ull, 0x7ff0000000000000ull, 0xfff0000000000000ull,
    0x7ff8000000000000ull, 0x7ff8000000012345ull, 0x7ff0000000000001ull, 0xfff4000000000000ull,
    0x0000000000000001ull, 0x800fffffffffffffull, 0x0010000000000000ull, 0x7fefffffffffffffull,
    0x3ff0000000000000ull, 0xbff0000000000000ull, 0x3ff8000000000000ull, 0x4004000000000000ull,
    0x3ca0000000000000ull, 0x3cb8000000000000ull, 0x3ff0000000000001ull, 0x43e0000000000000ull,
    0x3fd5555555555555ull, 0x2000000000000000ull, 0xffffffff3f800000ull, 0x47effffff0000000ull,
    0x4000000000000000ull, 0x3fe0000000000000ull, 0x0000000000000005ull,
};
/* Operands of float-to-integer conversions. */
static const u64 cvt_s[] = {
    BOX(0x00000000), BOX(0x80000000), BOX(0x3f000000), BOX(0xbf000000), BOX(0x3fc00000),
    BOX(0xbfc00000), BOX(0x40200000), BOX(0xc0200000), BOX(0x3effffff), BOX(0xbf666666),
    BOX(0x4f000000), BOX(0xcf000000), BOX(0xcf000001), BOX(0x4effffff), BOX(0x4f800000),
    BOX(0x4f7fffff), BOX(0x5f000000), BOX(0xdf000000), BOX(0x5f800000), BOX(0x5effffff),
    BOX(0x7f800000), BOX(0xff800000), BOX(0x7fc00000), BOX(0xffc00000), BOX(0x7f800001),
    BOX(0x00000001), BOX(0xbf800000), BOX(0x4f7fffff), 0x1234567800000000ull,
};
static const u64 cvt_d[] = {
    0x0000000000000000ull, 0x8000000000000000ull, 0x3fe0000000000000ull, 0xbfe0000000000000ull,
    0x3ff8000000000000ull, 0xbff8000000000000ull, 0x4004000000000000ull, 0xc004000000000000ull,
    0x41dfffffffc00000ull, 0x41dfffffffe00000ull, 0x41e0000000000000ull, 0xc1e0000000000000ull,
    0xc1e0000000100000ull, 0xc1e0000000200000ull, 0x41efffffffe00000ull, 0x41effffffff00000ull,
    0x41f0000000000000ull, 0x43e0000000000000ull, 0xc3e0000000000000ull, 0x43f0000000000000ull,
    0x43efffffffffffffull, 0x7ff0000000000000ull, 0xfff0000000000000ull, 0x7ff8000000000000ull,
    0xfff8000000000001ull, 0x7ff0000000000001ull, 0x0000000000000001ull, 0xbff0000000000000ull,
    0xbfeccccccccccccdull, 0xc3e0000000000001ull,
};
/* Operands of integer-to-float conversions: ties for single and double rounding. */
static const u64 ivals[] = {
    0, 1, (u64)-1, 0x1000001ull, 0x1000003ull, (u64)-0x1000001ll, 0x20000000000001ull,
    0x20000000000003ull, 0x8000000000000000ull, 0x7fffffffffffffffull, 0x80000000ull,
    0x7fffffffull, 0xffffffffull, 0x80000001ull, 0x8000000000000400ull, 0x8000000000000401ull,
    0x8000008000000000ull, 0xffffffff00000080ull, 0x00000000ff000080ull, 0x123456789ull,
};
/* Fused multiply-add operands. */
static const u64 fma_s[] = {
    BOX(0x00000000), BOX(0x80000000), BOX(0x3f800000), BOX(0xbf800000), BOX(0x7f800000),
    BOX(0x7fc00000), BOX(0x7f800001), BOX(0x3f800001), BOX(0x33800000), BOX(0x00000001),
};
static const u64 fma_d[] = {
    0x0000000000000000ull, 0x8000000000000000ull, 0x3ff0000000000000ull, 0xbff0000000000000ull,
    0x7ff0000000000000ull, 0x7ff8000000000000ull, 0x7ff0000000000001ull, 0x3ff0000000000001ull,
    0x3ca0000000000000ull, 0x0000000000000001ull,
};
#define N(a) (sizeof(a) / sizeof((a)[0]))

static const char* const rm_names[] = {"rne", "rtz", "rdn", "rup", "rmm"};

static void out(const char* name, const char* rm, u64 a, u64 b, u64 c, u64 r, u64 fl) {
    put_str(name);
    put_char(' ');
    put_str(rm);
    put_char(' ');
    put_hex(a);
    put_char(' ');
    put_hex(b);
    if (c != 0xdeadull) {
        put_char(' ');
        put_hex(c);
    }
    put_str(" -> ");
    put_hex(r);
    put_char(' ');
    put_hex32((u32)fl);
    put_char('\n');
}

/* f-reg = op(f, f) with a static rounding mode */
#define BIN(fn, insn, rm)                                                                 \
    static __attribute__((unused)) u64 fn(u64 a, u64 b, u64* fl) {                                                \
        u64 r, f;                                                                         \
        __asm__ volatile("fmv.d.x ft0, %2\n fmv.d.x ft1, %3\n fsflags zero\n" insn         \
                         " ft2, ft0, ft1" rm "\n frflags %1\n fmv.x.d %0, ft2"            \
                         : "=&r"(r), "=&r"(f)                                             \
                         : "r"(a), "r"(b)                                                 \
                         : "ft0", "ft1", "ft2");                                          \
        *fl = f;                                                                          \
        return r;                                                                         \
    }
/* x-reg = op(f, f) */
#define CMP(fn, insn)                                                                     \
    static __attribute__((unused)) u64 fn(u64 a, u64 b, u64* fl) {                                                \
        u64 r, f;                                                                         \
        __asm__ volatile("fmv.d.x ft0, %2\n fmv.d.x ft1, %3\n fsflags zero\n" insn         \
                         " %0, ft0, ft1\n frflags %1"                                     \
                         : "=&r"(r), "=&r"(f)                                             \
                         : "r"(a), "r"(b)                                                 \
                         : "ft0", "ft1");                                                 \
        *fl = f;                                                                          \
        return r;                                                                         \
    }
/* f-reg = op(f) */
#define UN(fn, insn, rm)                                                                  \
    static __attribute__((unused)) u64 fn(u64 a, u64 b, u64* fl) {                                                \
        u64 r, f;                                                                         \
        (void)b;                                                                          \
        __asm__ volatile("fmv.d.x ft0, %2\n fsflags zero\n" insn " ft2, ft0" rm            \
                         "\n frflags %1\n fmv.x.d %0, ft2"                                \
                         : "=&r"(r), "=&r"(f)                                             \
                         : "r"(a)                                                         \
                         : "ft0", "ft2");                                                 \
        *fl = f;                                                                          \
        return r;                                                                         \
    }
/* x-reg = op(f) */
#define TOX(fn, insn, rm)                                                                 \
    static __attribute__((unused)) u64 fn(u64 a, u64 b, u64* fl) {                                                \
        u64 r, f;                                                                         \
        (void)b;                                                                          \
        __asm__ volatile("fmv.d.x ft0, %2\n fsflags zero\n" insn " %0, ft0" rm             \
                         "\n frflags %1"                                                  \
                         : "=&r"(r), "=&r"(f)                                             \
                         : "r"(a)                                                         \
                         : "ft0");                                                        \
        *fl = f;                                                                          \
        return r;                                                                         \
    }
/* f-reg = op(x) */
#define FROMX(fn, insn, rm)                                                               \
    static __attribute__((unused)) u64 fn(u64 a, u64 b, u64* fl) {                                                \
        u64 r, f;                                                                         \
        (void)b;                                                                          \
        __asm__ volatile("fsflags zero\n" insn " ft2, %2" rm "\n frflags %1\n fmv.x.d %0, ft2" \
                         : "=&r"(r), "=&r"(f)                                             \
                         : "r"(a)                                                         \
                         : "ft2");                                                        \
        *fl = f;                                                                          \
        return r;                                                                         \
    }
#define TER(fn, insn, rm)                                                                 \
    static __attribute__((unused)) u64 fn(u64 a, u64 b, u64 c, u64* fl) {                                         \
        u64 r, f;                                                                         \
        __asm__ volatile("fmv.d.x ft0, %2\n fmv.d.x ft1, %3\n fmv.d.x ft2, %4\n"          \
                         "fsflags zero\n" insn " ft3, ft0, ft1, ft2" rm                    \
                         "\n frflags %1\n fmv.x.d %0, ft3"                                \
                         : "=&r"(r), "=&r"(f)                                             \
                         : "r"(a), "r"(b), "r"(c)                                         \
                         : "ft0", "ft1", "ft2", "ft3");                                   \
        *fl = f;                                                                          \
        return r;                                                                         \
    }

typedef u64 (*fn2)(u64, u64, u64*);
typedef u64 (*fn3)(u64, u64, u64, u64*);

/* One function per static rounding mode, in a table indexed by rm. */
#define ALL_RM(KIND, base, insn)                                                          \
    KIND(base##_0, insn, ", rne")                                                         \
    KIND(base##_1, insn, ", rtz")                                                         \
    KIND(base##_2, insn, ", rdn")                                                         \
    KIND(base##_3, insn, ", rup")                                                         \
    KIND(base##_4, insn, ", rmm")                                                         \
    KIND(base##_7, insn, "")
#define RM_TABLE(base) {base##_0, base##_1, base##_2, base##_3, base##_4}

ALL_RM(BIN, fadd_s, "fadd.s") ALL_RM(BIN, fsub_s, "fsub.s") ALL_RM(BIN, fmul_s, "fmul.s")
ALL_RM(BIN, fdiv_s, "fdiv.s") ALL_RM(BIN, fadd_d, "fadd.d") ALL_RM(BIN, fsub_d, "fsub.d")
ALL_RM(BIN, fmul_d, "fmul.d") ALL_RM(BIN, fdiv_d, "fdiv.d")
ALL_RM(UN, fsqrt_s, "fsqrt.s") ALL_RM(UN, fsqrt_d, "fsqrt.d")
ALL_RM(UN, fcvt_s_d, "fcvt.s.d")
ALL_RM(TOX, fcvt_w_s, "fcvt.w.s") ALL_RM(TOX, fcvt_wu_s, "fcvt.wu.s")
ALL_RM(TOX, fcvt_l_s, "fcvt.l.s") ALL_RM(TOX, fcvt_lu_s, "fcvt.lu.s")
ALL_RM(TOX, fcvt_w_d, "fcvt.w.d") ALL_RM(TOX, fcvt_wu_d, "fcvt.wu.d")
ALL_RM(TOX, fcvt_l_d, "fcvt.l.d") ALL_RM(TOX, fcvt_lu_d, "fcvt.lu.d")
ALL_RM(FROMX, fcvt_s_w, "fcvt.s.w") ALL_RM(FROMX, fcvt_s_wu, "fcvt.s.wu")
ALL_RM(FROMX, fcvt_s_l, "fcvt.s.l") ALL_RM(FROMX, fcvt_s_lu, "fcvt.s.lu")
ALL_RM(FROMX, fcvt_d_l, "fcvt.d.l") ALL_RM(FROMX, fcvt_d_lu, "fcvt.d.lu")
ALL_RM(TER, fmadd_s, "fmadd.s") ALL_RM(TER, fmsub_s, "fmsub.s")
ALL_RM(TER, fnmsub_s, "fnmsub.s") ALL_RM(TER, fnmadd_s, "fnmadd.s")
ALL_RM(TER, fmadd_d, "fmadd.d") ALL_RM(TER, fmsub_d, "fmsub.d")
ALL_RM(TER, fnmsub_d, "fnmsub.d") ALL_RM(TER, fnmadd_d, "fnmadd.d")
UN(fcvt_d_s, "fcvt.d.s", "") FROMX(fcvt_d_w, "fcvt.d.w", "") FROMX(fcvt_d_wu, "fcvt.d.wu", "")
CMP(feq_s, "feq.s") CMP(flt_s, "flt.s") CMP(fle_s, "fle.s")
CMP(feq_d, "feq.d") CMP(flt_d, "flt.d") CMP(fle_d, "fle.d")
TOX(fclass_s, "fclass.s", "") TOX(fclass_d, "fclass.d", "") TOX(fmv_x_w, "fmv.x.w", "")
TOX(fmv_x_d, "fmv.x.d", "")
FROMX(fmv_w_x, "fmv.w.x", "")

/* fmin/fmax/sign injection write an f register: wrap them to return its bits. */
#define FREG2(fn, insn)                                                                   \
    static __attribute__((unused)) u64 fn(u64 a, u64 b, u64* fl) {                                                \
        u64 r, f;                                                                         \
        __asm__ volatile("fmv.d.x ft0, %2\n fmv.d.x ft1, %3\n fsflags zero\n" insn         \
                         " ft2, ft0, ft1\n frflags %1\n fmv.x.d %0, ft2"                  \
                         : "=&r"(r), "=&r"(f)                                             \
                         : "r"(a), "r"(b)                                                 \
                         : "ft0", "ft1", "ft2");                                          \
        *fl = f;                                                                          \
        return r;                                                                         \
    }
FREG2(fmin_sf, "fmin.s") FREG2(fmax_sf, "fmax.s") FREG2(fmin_df, "fmin.d")
FREG2(fmax_df, "fmax.d") FREG2(fsgnj_s, "fsgnj.s") FREG2(fsgnjn_s, "fsgnjn.s")
FREG2(fsgnjx_s, "fsgnjx.s") FREG2(fsgnj_d, "fsgnj.d") FREG2(fsgnjn_d, "fsgnjn.d")
FREG2(fsgnjx_d, "fsgnjx.d")

static void set_frm(u64 rm) {
    __asm__ volatile("fsrm %0" : : "r"(rm));
}

static void all_rm2(const char* name, const fn2 t[5], fn2 dyn, const u64* v, unsigned n,
                    const u64* w, unsigned m) {
    for (unsigned rm = 0; rm < 5; ++rm) {
        for (unsigned i = 0; i < n; ++i) {
            for (unsigned j = 0; j < m; ++j) {
                u64 fl;
                const u64 r = t[rm](v[i], w ? w[j] : 0, &fl);
                out(name, rm_names[rm], v[i], w ? w[j] : 0, 0xdead, r, fl);
            }
        }
    }
    /* The same through frm (dynamic rounding). */
    for (unsigned rm = 0; rm < 5; ++rm) {
        set_frm(rm);
        for (unsigned i = 0; i < n; i += 3) {
            for (unsigned j = 0; j < m; ++j) {
                u64 fl;
                const u64 r = dyn(v[i], w ? w[j] : 0, &fl);
                out(name, "dyn", v[i], w ? w[j] : 0, rm, r, fl);
            }
        }
    }
    set_frm(0);
}

static void plain2(const char* name, fn2 f, const u64* v, unsigned n, const u64* w,
                   unsigned m) {
    for (unsigned i = 0; i < n; ++i) {
        for (unsigned j = 0; j < m; ++j) {
            u64 fl;
            const u64 r = f(v[i], w ? w[j] : 0, &fl);
            out(name, "-", v[i], w ? w[j] : 0, 0xdead, r, fl);
        }
    }
}

static void fma_all(const char* name, const fn3 t[5], const u64* v, unsigned n, int all_rm) {
    for (unsigned rm = 0; rm < 5; ++rm) {
        if (!all_rm && rm != 0 && rm != 4) continue;
        for (unsigned i = 0; i < n; ++i) {
            for (unsigned j = 0; j < n; ++j) {
                for (unsigned k = 0; k < n; ++k) {
                    u64 fl;
                    const u64 r = t[rm](v[i], v[j], v[k], &fl);
                    out(name, rm_names[rm], v[i], v[j], v[k], r, fl);
                }
            }
        }
    }
}

#define RM2(name, vals1, vals2)                                                           \
    do {                                                                                  \
        static const fn2 t[5] = RM_TABLE(name);                                           \
        all_rm2(#name, t, name##_7, vals1, N(vals1), vals2, N(vals2));                    \
    } while (0)
#define RM1(name, vals1)                                                                  \
    do {                                                                                  \
        static const fn2 t[5] = RM_TABLE(name);                                           \
        all_rm2(#name, t, name##_7, vals1, N(vals1), 0, 1);                               \
    } while (0)
#define FMA(name, vals1, all)                                                             \
    do {                                                                                  \
        static const fn3 t[5] = RM_TABLE(name);                                           \
        fma_all(#name, t, vals1, N(vals1), all);                                          \
    } while (0)

int main(void) {
    RM2(fadd_s, svals, svals);
    RM2(fsub_s, svals, svals);
    RM2(fmul_s, svals, svals);
    RM2(fdiv_s, svals, svals);
    RM2(fadd_d, dvals, dvals);
    RM2(fsub_d, dvals, dvals);
    RM2(fmul_d, dvals, dvals);
    RM2(fdiv_d, dvals, dvals);
    RM1(fsqrt_s, svals);
    RM1(fsqrt_d, dvals);
    RM1(fcvt_s_d, dvals);
    RM1(fcvt_s_d, cvt_d);
    RM1(fcvt_w_s, cvt_s);
    RM1(fcvt_wu_s, cvt_s);
    RM1(fcvt_l_s, cvt_s);
    RM1(fcvt_lu_s, cvt_s);
    RM1(fcvt_w_d, cvt_d);
    RM1(fcvt_wu_d, cvt_d);
    RM1(fcvt_l_d, cvt_d);
    RM1(fcvt_lu_d, cvt_d);
    RM1(fcvt_s_w, ivals);
    RM1(fcvt_s_wu, ivals);
    RM1(fcvt_s_l, ivals);
    RM1(fcvt_s_lu, ivals);
    RM1(fcvt_d_l, ivals);
    RM1(fcvt_d_lu, ivals);
    plain2("fcvt_d_s", fcvt_d_s, svals, N(svals), 0, 1);
    plain2("fcvt_d_w", fcvt_d_w, ivals, N(ivals), 0, 1);
    plain2("fcvt_d_wu", fcvt_d_wu, ivals, N(ivals), 0, 1);
    plain2("fmin_s", fmin_sf, svals, N(svals), svals, N(svals));
    plain2("fmax_s", fmax_sf, svals, N(svals), svals, N(svals));
    plain2("fmin_d", fmin_df, dvals, N(dvals), dvals, N(dvals));
    plain2("fmax_d", fmax_df, dvals, N(dvals), dvals, N(dvals));
    plain2("fsgnj_s", fsgnj_s, svals, N(svals), svals, N(svals));
    plain2("fsgnjn_s", fsgnjn_s, svals, N(svals), svals, N(svals));
    plain2("fsgnjx_s", fsgnjx_s, svals, N(svals), svals, N(svals));
    plain2("fsgnj_d", fsgnj_d, dvals, N(dvals), dvals, N(dvals));
    plain2("fsgnjn_d", fsgnjn_d, dvals, N(dvals), dvals, N(dvals));
    plain2("fsgnjx_d", fsgnjx_d, dvals, N(dvals), dvals, N(dvals));
    plain2("feq_s", feq_s, svals, N(svals), svals, N(svals));
    plain2("flt_s", flt_s, svals, N(svals), svals, N(svals));
    plain2("fle_s", fle_s, svals, N(svals), svals, N(svals));
    plain2("feq_d", feq_d, dvals, N(dvals), dvals, N(dvals));
    plain2("flt_d", flt_d, dvals, N(dvals), dvals, N(dvals));
    plain2("fle_d", fle_d, dvals, N(dvals), dvals, N(dvals));
    plain2("fclass_s", fclass_s, svals, N(svals), 0, 1);
    plain2("fclass_d", fclass_d, dvals, N(dvals), 0, 1);
    plain2("fmv_x_w", fmv_x_w, svals, N(svals), 0, 1);
    plain2("fmv_x_d", fmv_x_d, dvals, N(dvals), 0, 1);
    plain2("fmv_w_x", fmv_w_x, ivals, N(ivals), 0, 1);
    FMA(fmadd_s, fma_s, 1);
    FMA(fmsub_s, fma_s, 0);
    FMA(fnmsub_s, fma_s, 0);
    FMA(fnmadd_s, fma_s, 0);
    FMA(fmadd_d, fma_d, 1);
    FMA(fmsub_d, fma_d, 0);
    FMA(fnmsub_d, fma_d, 0);
    FMA(fnmadd_d, fma_d, 0);
    /* Flags accrue: a run of operations without clearing, then fcsr. */
    {
        u64 fcsr;
        __asm__ volatile("fscsr zero\n"
                         "fmv.d.x ft0, %1\n fmv.d.x ft1, %2\n"
                         "fdiv.d ft2, ft0, ft1\n fadd.d ft2, ft2, ft0\n"
                         "fcvt.w.d t0, ft1, rtz\n frcsr %0"
                         : "=r"(fcsr)
                         : "r"(dvals[12]), "r"(dvals[0])
                         : "ft0", "ft1", "ft2", "t0");
        out("accrue", "-", 0, 0, 0xdead, fcsr, 0);
        __asm__ volatile("li t0, 0xff\n fscsr t0\n frcsr %0" : "=r"(fcsr) : : "t0");
        out("fcsr-write", "-", 0, 0, 0xdead, fcsr, 0);
        __asm__ volatile("fscsr zero");
    }
    return 0;
}
