/* A extension edge cases for the differential test: every AMO in both widths on boundary
 * values (the old value returned, sign-extended for .w, and the memory after, at both words of
 * a doubleword), LR/SC pairs that succeed, SC without a reservation, SC to another address, SC
 * after the reserved word was overwritten with a different or the same value, LR.W sign
 * extension. */
#include "rt.h"

static const u64 vals[] = {
    0, 1, (u64)-1, 0x8000000000000000ull, 0x7fffffffffffffffull, 0x80000000ull, 0x7fffffffull,
    0xffffffff80000000ull, 0x00000001ffffffffull, 0x123456789abcdef0ull,
};
#define NV (sizeof vals / sizeof vals[0])

static u64 mem[4] __attribute__((aligned(16)));

typedef u64 (*amo_fn)(u64*, u64);
#define AMO(fn, insn)                                                                     \
    static u64 fn(u64* p, u64 v) {                                                        \
        u64 r;                                                                            \
        __asm__ volatile(insn " %0, %2, (%1)" : "=&r"(r) : "r"(p), "r"(v) : "memory");     \
        return r;                                                                         \
    }
AMO(swap_d, "amoswap.d") AMO(add_d, "amoadd.d") AMO(xor_d, "amoxor.d") AMO(and_d, "amoand.d")
AMO(or_d, "amoor.d") AMO(min_d, "amomin.d") AMO(max_d, "amomax.d") AMO(minu_d, "amominu.d")
AMO(maxu_d, "amomaxu.d") AMO(swap_w, "amoswap.w") AMO(add_w, "amoadd.w") AMO(xor_w, "amoxor.w")
AMO(and_w, "amoand.w") AMO(or_w, "amoor.w") AMO(min_w, "amomin.w") AMO(max_w, "amomax.w")
AMO(minu_w, "amominu.w") AMO(maxu_w, "amomaxu.w") AMO(add_d_aqrl, "amoadd.d.aqrl")
AMO(swap_w_aq, "amoswap.w.aq") AMO(maxu_w_rl, "amomaxu.w.rl")

static const struct {
    const char* name;
    amo_fn fn;
    int word;
} amos[] = {
    {"amoswap.d", swap_d, 0}, {"amoadd.d", add_d, 0},   {"amoxor.d", xor_d, 0},
    {"amoand.d", and_d, 0},   {"amoor.d", or_d, 0},     {"amomin.d", min_d, 0},
    {"amomax.d", max_d, 0},   {"amominu.d", minu_d, 0}, {"amomaxu.d", maxu_d, 0},
    {"amoswap.w", swap_w, 1}, {"amoadd.w", add_w, 1},   {"amoxor.w", xor_w, 1},
    {"amoand.w", and_w, 1},   {"amoor.w", or_w, 1},     {"amomin.w", min_w, 1},
    {"amomax.w", max_w, 1},   {"amominu.w", minu_w, 1}, {"amomaxu.w", maxu_w, 1},
    {"amoadd.d.aqrl", add_d_aqrl, 0}, {"amoswap.w.aq", swap_w_aq, 1},
    {"amomaxu.w.rl", maxu_w_rl, 1},
};

static u64 lr_d(u64* p) {
    u64 r;
    __asm__ volatile("lr.d %0, (%1)" : "=r"(r) : "r"(p) : "memory");
    return r;
}
static u64 lr_w(void* p) {
    u64 r;
    __asm__ volatile("lr.w %0, (%1)" : "=r"(r) : "r"(p) : "memory");
    return r;
}
static u64 sc_d(u64* p, u64 v) {
    u64 r;
    __asm__ volatile("sc.d %0, %2, (%1)" : "=&r"(r) : "r"(p), "r"(v) : "memory");
    return r;
}
static u64 sc_w(void* p, u64 v) {
    u64 r;
    __asm__ volatile("sc.w %0, %2, (%1)" : "=&r"(r) : "r"(p), "r"(v) : "memory");
    return r;
}

static void show(const char* what, u64 r) {
    line3(what, mem[0], mem[1], r);
}

int main(void) {
    for (unsigned k = 0; k < sizeof amos / sizeof amos[0]; ++k) {
        for (unsigned i = 0; i < NV; ++i) {
            for (unsigned j = 0; j < NV; ++j) {
                for (unsigned hi = 0; hi <= (unsigned)amos[k].word; ++hi) {
                    mem[0] = vals[i];
                    mem[1] = 0x5555555555555555ull;
                    u64* p = hi ? (u64*)((u32*)mem + 1) : mem;
                    const u64 old = amos[k].fn(p, vals[j]);
                    line3(amos[k].name, vals[i], vals[j], old);
                    line3(hi ? "  mem+4" : "  mem", mem[0], mem[1], 0);
                }
            }
        }
    }
    /* LR/SC. */
    for (unsigned i = 0; i < NV; ++i) {
        mem[0] = vals[i];
        mem[1] = 0;
        u64 r = lr_d(mem);
        show("lr.d", r);
        show("sc.d after lr.d", sc_d(mem, ~vals[i]));
        show("sc.d again (no reservation)", sc_d(mem, 42));
        r = lr_w(mem);
        show("lr.w", r);
        show("sc.w after lr.w", sc_w(mem, vals[i] >> 7));
        r = lr_w((u32*)mem + 1);
        show("lr.w high", r);
        show("sc.w to the other word", sc_w(mem, 7));
        show("sc.w to the reserved word after a failed sc", sc_w((u32*)mem + 1, 9));
        r = lr_d(mem);
        mem[0] = vals[i] + 1;
        show("sc.d after a store of another value", sc_d(mem, 5));
        r = lr_d(mem);
        mem[0] = mem[0];
        __asm__ volatile("" ::: "memory");
        show("sc.d after a store of the same value", sc_d(mem, 6));
        r = lr_d(&mem[1]);
        show("sc.d other address", sc_d(&mem[0], 8));
        (void)r;
    }
    return 0;
}
