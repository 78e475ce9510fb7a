# vireo-vmm self-test guest: polls the UART's LSR, prints "hello\n", exits with 42.
        .code64
        .text
        .globl _start
_start:
        lea     msg(%rip), %rsi
next:
        movb    (%rsi), %al
        test    %al, %al
        jz      done
        mov     $0x3fd, %dx             # LSR
wait:
        inb     %dx, %al
        test    $0x20, %al              # THR empty
        jz      wait
        movb    (%rsi), %al
        mov     $0x3f8, %dx             # THR
        outb    %al, %dx
        inc     %rsi
        jmp     next
done:
        mov     $0xf4, %dx              # exit port
        mov     $0x12a, %eax            # 42 in the low byte: the VMM keeps value & 0xff
        outl    %eax, %dx
1:      hlt
        jmp     1b
msg:
        .asciz  "hello\n"
