/* Minimal freestanding runtime for the differential-test programs (tests/riscv/diff_test.cpp):
 * no libc, so the only system calls are write and exit, which both qemu-riscv64 and the test's
 * Hart shim provide. Output is buffered and printed as hex so it compares byte for byte. */
#ifndef VIREO_DIFF_RT_H
#define VIREO_DIFF_RT_H

#include <stdint.h>

typedef uint64_t u64;
typedef int64_t i64;
typedef uint32_t u32;
typedef int32_t i32;
typedef uint16_t u16;

static long rt_syscall3(long nr, long a, long b, long c) {
    register long a0 __asm__("a0") = a;
    register long a1 __asm__("a1") = b;
    register long a2 __asm__("a2") = c;
    register long a7 __asm__("a7") = nr;
    __asm__ volatile("ecall" : "+r"(a0) : "r"(a1), "r"(a2), "r"(a7) : "memory");
    return a0;
}

static char rt_buf[4096];
static unsigned rt_len;

static void rt_flush(void) {
    unsigned done = 0;
    while (done < rt_len) {
        long n = rt_syscall3(64, 1, (long)(rt_buf + done), rt_len - done);
        if (n <= 0) break;
        done += (unsigned)n;
    }
    rt_len = 0;
}

static void put_char(char c) {
    if (rt_len == sizeof rt_buf) rt_flush();
    rt_buf[rt_len++] = c;
}

static void put_str(const char* s) {
    while (*s) put_char(*s++);
}

static void put_hex(u64 v) {
    static const char digits[] = "0123456789abcdef";
    for (int i = 60; i >= 0; i -= 4) put_char(digits[(v >> i) & 15]);
}

static inline void put_hex32(u32 v) {
    static const char digits[] = "0123456789abcdef";
    for (int i = 28; i >= 0; i -= 4) put_char(digits[(v >> i) & 15]);
}

static inline void put_dec(u64 v) {
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (n > 0) put_char(tmp[--n]);
}

/* "name a b -> r\n" */
static inline void line3(const char* name, u64 a, u64 b, u64 r) {
    put_str(name);
    put_char(' ');
    put_hex(a);
    put_char(' ');
    put_hex(b);
    put_str(" -> ");
    put_hex(r);
    put_char('\n');
}

int main(void);

__attribute__((noreturn)) static void rt_exit(int code) {
    rt_flush();
    rt_syscall3(93, code, 0, 0);
    for (;;) {
    }
}

/* The compiler may emit calls to these for struct copies and array initialisation. */
void* memcpy(void* d, const void* s, unsigned long n) {
    char* dc = d;
    const char* sc = s;
    while (n--) *dc++ = *sc++;
    return d;
}
void* memset(void* d, int c, unsigned long n) {
    char* dc = d;
    while (n--) *dc++ = (char)c;
    return d;
}

void rt_start_c(void) {
    rt_exit(main());
}

__asm__(
    ".pushsection .text._start, \"ax\"\n"
    ".globl _start\n"
    "_start:\n"
    ".option push\n"
    ".option norelax\n"
    "  la gp, __global_pointer$\n"
    ".option pop\n"
    "  andi sp, sp, -16\n"
    "  call rt_start_c\n"
    "1: j 1b\n"
    ".popsection\n");

#endif
