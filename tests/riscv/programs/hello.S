# Bare-metal M-mode program for the vireo RISC-V machine: prints a line through the 16550 UART
# (polling LSR.THRE) and ends the machine through the sifive_test finisher with status 0.
    .equ UART, 0x10000000
    .equ LSR_THRE, 0x20
    .equ FINISHER, 0x100000
    .equ PASS, 0x5555
    .section .text
    .globl _start
_start:
    csrr t0, mhartid
    bnez t0, park
    la a0, msg
    li a1, UART
1:  lbu t1, 0(a0)
    beqz t1, done
2:  lbu t2, 5(a1)
    andi t2, t2, LSR_THRE
    beqz t2, 2b
    sb t1, 0(a1)
    addi a0, a0, 1
    j 1b
done:
    li t0, FINISHER
    li t1, PASS
    sw t1, 0(t0)
park:
    wfi
    j park
    .section .rodata
msg: .asciz "hello from rv64\n"
