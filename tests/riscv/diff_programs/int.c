/* Integer (I, M) edge cases for the differential test: every reg-reg operation and branch on
 * every pair of boundary values, the immediate forms, sign and zero extension of loads,
 * misaligned and page-crossing loads and stores. One result per line, in hex. */
#include "rt.h"

static const u64 vals[] = {
    0,
    1,
    2,
    (u64)-1,
    (u64)-2,
    (u64)-7,
    0x8000000000000000ull,
    0x7fffffffffffffffull,
    0x80000000ull,
    0x7fffffffull,
    0xffffffffull,
    0xffffffff80000000ull,
    0x100000000ull,
    0x8000000000000001ull,
    0x123456789abcdef0ull,
    63,
    64 + 31,
};
#define NV (sizeof vals / sizeof vals[0])

typedef u64 (*rr_fn)(u64, u64);
#define RR(op)                                                                  \
    static u64 f_##op(u64 a, u64 b) {                                           \
        u64 r;                                                                  \
        __asm__ volatile(#op " %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));         \
        return r;                                                               \
    }
#define BR(op)                                                                  \
    static u64 f_##op(u64 a, u64 b) {                                           \
        u64 r = 1;                                                              \
        __asm__ volatile(#op " %1, %2, 1f\n li %0, 0\n1:" : "+r"(r) : "r"(a), "r"(b)); \
        return r;                                                               \
    }
RR(add) RR(sub) RR(sll) RR(slt) RR(sltu) RR(xor) RR(srl) RR(sra) RR(or) RR(and)
RR(addw) RR(subw) RR(sllw) RR(srlw) RR(sraw)
RR(mul) RR(mulh) RR(mulhsu) RR(mulhu) RR(div) RR(divu) RR(rem) RR(remu)
RR(mulw) RR(divw) RR(divuw) RR(remw) RR(remuw)
BR(beq) BR(bne) BR(blt) BR(bge) BR(bltu) BR(bgeu)

#define OP(op) {#op, f_##op}
static const struct {
    const char* name;
    rr_fn fn;
} rr_ops[] = {
    OP(add),  OP(sub),   OP(sll),    OP(slt),   OP(sltu), OP(xor),  OP(srl),   OP(sra),
    OP(or),   OP(and),   OP(addw),   OP(subw),  OP(sllw), OP(srlw), OP(sraw),  OP(mul),
    OP(mulh), OP(mulhsu), OP(mulhu), OP(div),   OP(divu), OP(rem),  OP(remu),  OP(mulw),
    OP(divw), OP(divuw), OP(remw),   OP(remuw), OP(beq),  OP(bne),  OP(blt),   OP(bge),
    OP(bltu), OP(bgeu),
};

#define RI(op, imm)                                                             \
    do {                                                                        \
        u64 r;                                                                  \
        __asm__ volatile(#op " %0, %1, " #imm : "=r"(r) : "r"(a));              \
        line3(#op " " #imm, a, 0, r);                                           \
    } while (0)

static void immediates(u64 a) {
    RI(addi, 0); RI(addi, 1); RI(addi, -1); RI(addi, 2047); RI(addi, -2048);
    RI(slti, 0); RI(slti, -1); RI(slti, 2047); RI(slti, -2048);
    RI(sltiu, 0); RI(sltiu, 1); RI(sltiu, -1); RI(sltiu, -2048);
    RI(xori, -1); RI(xori, 0x555); RI(ori, -2048); RI(ori, 0x7f0); RI(andi, -1); RI(andi, 0x7ff);
    RI(andi, -2048);
    RI(slli, 0); RI(slli, 1); RI(slli, 31); RI(slli, 32); RI(slli, 63);
    RI(srli, 0); RI(srli, 1); RI(srli, 31); RI(srli, 32); RI(srli, 63);
    RI(srai, 0); RI(srai, 1); RI(srai, 31); RI(srai, 32); RI(srai, 63);
    RI(addiw, 0); RI(addiw, 1); RI(addiw, -1); RI(addiw, 2047); RI(addiw, -2048);
    RI(slliw, 0); RI(slliw, 1); RI(slliw, 31);
    RI(srliw, 0); RI(srliw, 1); RI(srliw, 31);
    RI(sraiw, 0); RI(sraiw, 1); RI(sraiw, 31);
}

/* Two pages, the second page boundary at buf + 4096, for page-crossing accesses. */
static unsigned char buf[3 * 4096] __attribute__((aligned(4096)));

#define LD(op, off)                                                             \
    do {                                                                        \
        u64 r;                                                                  \
        __asm__ volatile(#op " %0, " #off "(%1)" : "=r"(r) : "r"(p) : "memory"); \
        line3(#op " " #off, (u64)(p - base), 0, r);                              \
    } while (0)

static void loads(unsigned char* base, unsigned char* p) {
    LD(lb, 0); LD(lbu, 0); LD(lh, 0); LD(lhu, 0); LD(lw, 0); LD(lwu, 0); LD(ld, 0);
    LD(lb, -1); LD(lh, 7); LD(lw, -3); LD(ld, 5); LD(lwu, 2047); LD(ld, -2048);
}

static void stores(unsigned char* base, unsigned off, u64 v) {
    unsigned char* p = base + off;
    for (int i = -8; i < 16; ++i) p[i] = 0xa5;
    __asm__ volatile("sd %1, 0(%0)\n sw %1, 9(%0)\n sh %1, -3(%0)\n sb %1, 13(%0)"
                     :
                     : "r"(p), "r"(v)
                     : "memory");
    u64 lo = 0, hi = 0, neg = 0;
    for (int i = 0; i < 8; ++i) lo |= (u64)p[i] << (8 * i);
    for (int i = 0; i < 8; ++i) hi |= (u64)p[8 + i] << (8 * i);
    for (int i = 0; i < 8; ++i) neg |= (u64)p[i - 8] << (8 * i);
    line3("stores", off, v, lo);
    line3("stores+8", off, v, hi);
    line3("stores-8", off, v, neg);
}

int main(void) {
    for (unsigned k = 0; k < sizeof rr_ops / sizeof rr_ops[0]; ++k) {
        for (unsigned i = 0; i < NV; ++i) {
            for (unsigned j = 0; j < NV; ++j) {
                line3(rr_ops[k].name, vals[i], vals[j], rr_ops[k].fn(vals[i], vals[j]));
            }
        }
    }
    for (unsigned i = 0; i < NV; ++i) immediates(vals[i]);
    {
        u64 r;
        __asm__ volatile("lui %0, 0x80000" : "=r"(r));
        line3("lui 0x80000", 0, 0, r);
        __asm__ volatile("lui %0, 0x7ffff" : "=r"(r));
        line3("lui 0x7ffff", 0, 0, r);
        __asm__ volatile("add x0, %1, %1\n mv %0, x0" : "=r"(r) : "r"(vals[3]));
        line3("x0", 0, 0, r);
    }
    for (unsigned i = 0; i < sizeof buf; ++i) buf[i] = (unsigned char)(i * 37 + 0x80);
    for (unsigned off = 2048; off < 2048 + 17; ++off) loads(buf, buf + off);
    for (unsigned off = 4096 - 9; off < 4096 + 2; ++off) loads(buf, buf + off);
    for (unsigned off = 4096 - 17; off < 4096 + 9; ++off) stores(buf, off, 0x0123456789abcdefull);
    for (unsigned off = 64; off < 72; ++off) stores(buf, off, (u64)-2);
    return 0;
}
