# Every hart adds 1 to a shared counter kIters times, half with AMOADD.D and half with an
# LR/SC loop, then counts itself done. Hart 0 waits for all harts and exits with status 0 if the
# counter is exact, else 1 (through the sifive_test finisher). a0 = hartid at entry; the
# number of harts is the `nharts` word at _start + 8, which the host writes before the run.
    .equ FINISHER, 0x100000
    .equ PASS, 0x5555
    .equ FAIL1, 0x13333
    .equ ITERS, 20000
    .section .text
    .globl _start
_start:
    j start
    .balign 8
nharts: .word 1
start:
    la t0, counter
    li t1, ITERS
1:  li t2, 1
    amoadd.d zero, t2, (t0)
2:  lr.d t3, (t0)
    addi t3, t3, 1
    sc.d t4, t3, (t0)
    bnez t4, 2b
    addi t1, t1, -1
    bnez t1, 1b
    la t0, done_count
    li t2, 1
    amoadd.w zero, t2, (t0)
    bnez a0, park
    # hart 0: wait for everyone
    la t5, nharts
    lw t5, 0(t5)
3:  lw t6, 0(t0)
    bne t6, t5, 3b
    la t0, counter
    ld t1, 0(t0)
    li t2, ITERS * 2
    mul t2, t2, t5
    li t0, FINISHER
    li t3, PASS
    beq t1, t2, 4f
    li t3, FAIL1
4:  sw t3, 0(t0)
park:
    wfi
    j park
    .section .data
    .balign 8
counter: .dword 0
done_count: .word 0
