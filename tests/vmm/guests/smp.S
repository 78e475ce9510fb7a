# vireo-vmm self-test guest (run with --vcpus 2): vCPU 0 starts vCPU 1 through port 0xF8 with
# BootInfo.ap_entry/ap_stack; vCPU 1 stores RSI (its index, 1) + 41 in `flag`; vCPU 0 waits for
# it and exits with it (42). RDI must point at BootInfo on both.
        .code64
        .text
        .globl _start
        .set AP_ENTRY, 560              # offsetof(BootInfo, ap_entry)
        .set AP_STACK, 568
_start:
        lea     ap(%rip), %rax
        mov     %rax, AP_ENTRY(%rdi)
        movq    $0x200000, AP_STACK(%rdi)
        mov     $0xf8, %dx
        mov     $1, %eax
        outl    %eax, %dx
1:      pause
        mov     flag(%rip), %eax
        test    %eax, %eax
        jz      1b
        mov     $0xf4, %dx
        outl    %eax, %dx
2:      hlt
        jmp     2b
ap:
        mov     $1, %eax                # exit 1 if RDI is not the BootInfo
        cmp     $0x7000, %rdi
        jne     3f
        cmp     $0x200000, %rsp
        jne     3f
        lea     41(%rsi), %eax
3:      mov     %eax, flag(%rip)
4:      cli
        hlt
        jmp     4b
        .data
flag:   .long   0
