# S-mode payload for OpenSBI (fw_dynamic next stage at 0x80200000): prints a line through the
# SBI debug console (legacy console_putchar, EID 0x01), then asks for a shutdown through the
# SBI system reset extension (EID "SRST", type 0), which OpenSBI performs via sifive_test.
    .equ SBI_PUTCHAR, 0x01
    .equ SBI_SRST, 0x53525354
    .section .text
    .globl _start
_start:
    lla s0, msg
1:  lbu a0, 0(s0)
    beqz a0, 2f
    li a7, SBI_PUTCHAR
    ecall
    addi s0, s0, 1
    j 1b
2:  li a7, SBI_SRST
    li a6, 0          # FID 0: system_reset
    li a0, 0          # type: shutdown
    li a1, 0          # reason: none
    ecall
3:  wfi
    j 3b
msg: .asciz "payload: hello from S-mode\n"
