# vireo-vmm self-test guest: never exits (for --timeout).
        .code64
        .text
        .globl _start
_start:
        cli
1:      hlt
        jmp     1b
