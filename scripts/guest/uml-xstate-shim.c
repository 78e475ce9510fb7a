// LD_PRELOAD shim for Debian 12's User-mode Linux (6.1) on hosts with AVX-512/AMX.
//
// Why: UML saves and restores the FPU state of its processes with
// ptrace(PTRACE_{GET,SET}REGSET, NT_X86_XSTATE) using a fixed 832-byte buffer (legacy area +
// XSAVE header + AVX). Linux accepts a short buffer for GETREGSET but rejects SETREGSET unless
// the buffer is exactly the host's full user XSTATE size (arch/x86/kernel/fpu/regset.c), so on a
// host with larger XSAVE state every UML process dies with "ptrace set fp regs failed, errno =
// 14". Newer UML kernels size the buffer from CPUID; this shim does the equivalent from outside:
// it reads the task's full XSTATE, overlays the x87/SSE/AVX parts UML manages, and writes the
// full-size buffer back. Components UML does not know (AVX-512, AMX) keep the task's own values,
// so the guest must not rely on them across context switches: the guest init tells glibc not to
// use AVX-512 (GLIBC_TUNABLES).
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/uio.h>

enum {
    kLegacyAreaSize = 512,  // FXSAVE image (x87 + SSE), SDM vol. 1 §13.4.1
    kHeaderOffset = 512,    // XSAVE header: XSTATE_BV at +0
    kHeaderSize = 64,
    kLegacyFeatures = 0x7,  // XSTATE_BV bits of x87, SSE, AVX
    kMaxXstate = 16384,     // larger than any current XSAVE area (AMX: 11008 bytes)
};

typedef long (*ptrace_fn)(int, pid_t, void*, void*);

static ptrace_fn real_ptrace(void) {
    static ptrace_fn fn;
    if (fn == NULL) fn = (ptrace_fn)dlsym(RTLD_NEXT, "ptrace");
    return fn;
}

// Write a short (UML-sized) XSTATE image by merging it into the task's full image.
static long set_short_xstate(pid_t pid, const struct iovec* in) {
    static _Alignas(64) unsigned char full[kMaxXstate];
    struct iovec fv = {.iov_base = full, .iov_len = sizeof full};
    if (real_ptrace()(PTRACE_GETREGSET, pid, (void*)NT_X86_XSTATE, &fv) < 0) return -1;
    if (in->iov_len >= fv.iov_len) {  // not short after all: let the kernel judge it
        return real_ptrace()(PTRACE_SETREGSET, pid, (void*)NT_X86_XSTATE, (void*)in);
    }
    const unsigned char* small = in->iov_base;
    size_t n = in->iov_len;
    // Legacy area, then everything after the header that UML supplied (AVX's YMM upper halves).
    memcpy(full, small, n < kLegacyAreaSize ? n : kLegacyAreaSize);
    if (n > kHeaderOffset + kHeaderSize) {
        memcpy(full + kHeaderOffset + kHeaderSize, small + kHeaderOffset + kHeaderSize,
               n - (kHeaderOffset + kHeaderSize));
    }
    if (n >= kHeaderOffset + sizeof(uint64_t)) {
        uint64_t bv_full, bv_small;
        memcpy(&bv_full, full + kHeaderOffset, sizeof bv_full);
        memcpy(&bv_small, small + kHeaderOffset, sizeof bv_small);
        bv_full = (bv_full & ~(uint64_t)kLegacyFeatures) | (bv_small & kLegacyFeatures);
        memcpy(full + kHeaderOffset, &bv_full, sizeof bv_full);
    }
    return real_ptrace()(PTRACE_SETREGSET, pid, (void*)NT_X86_XSTATE, &fv);
}

long ptrace(enum __ptrace_request request, ...) {
    va_list ap;
    va_start(ap, request);
    pid_t pid = va_arg(ap, pid_t);
    void* addr = va_arg(ap, void*);
    void* data = va_arg(ap, void*);
    va_end(ap);
    if (request == PTRACE_SETREGSET && (uintptr_t)addr == NT_X86_XSTATE && data != NULL) {
        long r = set_short_xstate(pid, (const struct iovec*)data);
        if (r == 0 || errno != EFAULT) return r;
    }
    return real_ptrace()(request, pid, addr, data);
}
