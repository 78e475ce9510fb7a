// Entry point and interrupt stubs of the bare-metal x86-64 guest runtime.
//
// vireo-vmm enters _start in 64-bit long mode with paging on, interrupts off,
// RDI = BootInfo* (docs/boot-protocol.md). The runtime is compiled with
// -mgeneral-regs-only, so the stubs save only the general-purpose registers.

    .section .text.start, "ax"
    .globl _start
_start:
    cli
    cld
    mov     %rdi, %r12                  // BootInfo*: rep stosb below clobbers rdi
    // Zero .bss: the loader copies PT_LOAD file bytes; do not rely on it zeroing the tail.
    lea     __bss_start(%rip), %rdi
    lea     __bss_end(%rip), %rcx
    sub     %rdi, %rcx
    xor     %eax, %eax
    rep stosb
    lea     __stack_top(%rip), %rsp     // our own stack in .bss (16-byte aligned)
    xor     %ebp, %ebp
    mov     %r12, %rdi
    call    vireo_guest_start           // never returns
1:  hlt
    jmp     1b

// Interrupt and exception stubs: each pushes a dummy error code where the CPU does not
// push one, then the vector, and joins the common path. Frame layout after the pushes
// (see struct InterruptFrame in platform_x86.cpp): r15..rax, vector, error, rip, cs, rflags,
// rsp, ss. The CPU aligned RSP to 16 before its 5 pushes, so after error + vector + 15 GPRs
// RSP is 16-byte aligned again, as the C++ call requires.
    .text
.macro ISR_NOERR n
isr_\n:
    pushq   $0
    pushq   $\n
    jmp     isr_common
.endm
.macro ISR_ERR n
isr_\n:
    pushq   $\n
    jmp     isr_common
.endm

ISR_NOERR 0
ISR_NOERR 1
ISR_NOERR 2
ISR_NOERR 3
ISR_NOERR 4
ISR_NOERR 5
ISR_NOERR 6
ISR_NOERR 7
ISR_ERR   8
ISR_NOERR 9
ISR_ERR   10
ISR_ERR   11
ISR_ERR   12
ISR_ERR   13
ISR_ERR   14
ISR_NOERR 15
ISR_NOERR 16
ISR_ERR   17
ISR_NOERR 18
ISR_NOERR 19
ISR_NOERR 20
ISR_ERR   21
.irp n, 22,23,24,25,26,27,28
ISR_NOERR \n
.endr
ISR_ERR   29
ISR_ERR   30
.irp n, 31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,49,50,51,52,53,54,55,56,57,58,59,60,61,62,63
ISR_NOERR \n
.endr

isr_common:
    push    %rax
    push    %rbx
    push    %rcx
    push    %rdx
    push    %rsi
    push    %rdi
    push    %rbp
    push    %r8
    push    %r9
    push    %r10
    push    %r11
    push    %r12
    push    %r13
    push    %r14
    push    %r15
    mov     %rsp, %rdi
    call    vireo_isr_dispatch
    pop     %r15
    pop     %r14
    pop     %r13
    pop     %r12
    pop     %r11
    pop     %r10
    pop     %r9
    pop     %r8
    pop     %rbp
    pop     %rdi
    pop     %rsi
    pop     %rdx
    pop     %rcx
    pop     %rbx
    pop     %rax
    add     $16, %rsp                   // vector and error code
    iretq

// LAPIC spurious vector: no EOI (Intel SDM vol. 3 §10.9).
    .globl vireo_isr_spurious
vireo_isr_spurious:
    iretq

    .section .rodata
    .balign 8
    .globl vireo_isr_stubs
vireo_isr_stubs:
.irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .quad isr_\n
.endr
.irp n, 32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,49,50,51,52,53,54,55,56,57,58,59,60,61,62,63
    .quad isr_\n
.endr

    .section .bss
    .balign 16
__stack_bottom:
    .skip   32768
__stack_top:

    .section .note.GNU-stack, "", @progbits
