// Entry point and trap vector of the bare-metal riscv64 guest runtime.
//
// vireo-vmm --arch riscv64 --bios PROG.bin (no --kernel) starts every hart at 0x80000000 in
// M-mode with a0 = hartid, a1 = device tree address, interrupts off (docs/riscv.md). Hart 0 runs
// the program; any other hart parks. Everything runs in M-mode on one stack: traps arrive on
// the stack of the code they interrupt, so no mscratch swap is needed.

#define MSTATUS_MIE 0x8
#define MSTATUS_FS 0x6000

    .section .text.start, "ax"
    .globl _start
_start:
    csrw    mie, zero
    csrci   mstatus, MSTATUS_MIE
    // Floating point off: the runtime and the drivers use none, and with FS = Off any FP
    // instruction traps (reported by the trap handler), so the trap entry below need not save
    // f registers.
    li      t0, MSTATUS_FS
    csrc    mstatus, t0
    bnez    a0, park
    .option push
    .option norelax                     // gp must not be set relative to itself
    la      gp, __global_pointer$
    .option pop
    la      sp, __stack_top             // our own stack in .bss (16-byte aligned)
    mv      s0, a0
    mv      s1, a1
    // Zero .bss: the VMM loads only the binary's bytes; RAM beyond them holds whatever is
    // there. Bounds are 16-byte aligned (guest.ld).
    la      t0, __bss_start
    la      t1, __bss_end
1:  bgeu    t0, t1, 2f
    sd      zero, 0(t0)
    sd      zero, 8(t0)
    addi    t0, t0, 16
    j       1b
2:  la      t0, vireo_trap_entry        // direct mode: 4-byte aligned, low bits 0
    csrw    mtvec, t0
    mv      a0, s0
    mv      a1, s1
    call    vireo_guest_start           // never returns
park:
    wfi
    j       park

// Trap entry (direct mode: every exception and interrupt). Saves the registers the C++ ABI
// lets the dispatcher clobber (ra, t0-t6, a0-a7), calls vireo_trap_dispatch(mcause, mepc,
// mtval) and returns with mret. 144 bytes keep sp 16-byte aligned.
    .text
    .balign 4
    .globl vireo_trap_entry
vireo_trap_entry:
    addi    sp, sp, -144
    sd      ra, 0(sp)
    sd      t0, 8(sp)
    sd      t1, 16(sp)
    sd      t2, 24(sp)
    sd      t3, 32(sp)
    sd      t4, 40(sp)
    sd      t5, 48(sp)
    sd      t6, 56(sp)
    sd      a0, 64(sp)
    sd      a1, 72(sp)
    sd      a2, 80(sp)
    sd      a3, 88(sp)
    sd      a4, 96(sp)
    sd      a5, 104(sp)
    sd      a6, 112(sp)
    sd      a7, 120(sp)
    csrr    a0, mcause
    csrr    a1, mepc
    csrr    a2, mtval
    call    vireo_trap_dispatch
    ld      ra, 0(sp)
    ld      t0, 8(sp)
    ld      t1, 16(sp)
    ld      t2, 24(sp)
    ld      t3, 32(sp)
    ld      t4, 40(sp)
    ld      t5, 48(sp)
    ld      t6, 56(sp)
    ld      a0, 64(sp)
    ld      a1, 72(sp)
    ld      a2, 80(sp)
    ld      a3, 88(sp)
    ld      a4, 96(sp)
    ld      a5, 104(sp)
    ld      a6, 112(sp)
    ld      a7, 120(sp)
    addi    sp, sp, 144
    mret

    .section .bss
    .balign 16
__stack_bottom:
    .skip   32768
__stack_top:

    .section .note.GNU-stack, "", @progbits
