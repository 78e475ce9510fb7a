# The CLINT timer and a trap: programs mtimecmp 1000 ticks ahead, enables MTIE and MIE, sleeps
# in WFI; the handler checks mcause is the machine timer interrupt and passes. An ECALL first
# checks synchronous traps (mcause 11, mepc advanced by the handler).
    .equ CLINT_MTIMECMP, 0x2004000
    .equ CLINT_MTIME, 0x200bff8
    .equ FINISHER, 0x100000
    .equ PASS, 0x5555
    .equ FAIL2, 0x23333
    .equ FAIL3, 0x33333
    .section .text
    .globl _start
_start:
    bnez a0, park
    la t0, handler
    csrw mtvec, t0
    ecall
    li t0, 1
    bne s1, t0, fail_ecall
    li t0, CLINT_MTIME
    ld t1, 0(t0)
    addi t1, t1, 1000
    li t0, CLINT_MTIMECMP
    sd t1, 0(t0)
    li t0, 0x80          # MTIE
    csrs mie, t0
    csrsi mstatus, 0x8   # MIE
1:  wfi
    j 1b
handler:
    csrr t0, mcause
    li t1, 11            # ECALL from M
    beq t0, t1, on_ecall
    li t1, 0x8000000000000007
    bne t0, t1, fail_irq
    li t0, FINISHER
    li t1, PASS
    sw t1, 0(t0)
    j park
on_ecall:
    li s1, 1
    csrr t0, mepc
    addi t0, t0, 4
    csrw mepc, t0
    mret
fail_ecall:
    li t0, FINISHER
    li t1, FAIL2
    sw t1, 0(t0)
fail_irq:
    li t0, FINISHER
    li t1, FAIL3
    sw t1, 0(t0)
park:
    wfi
    j park
