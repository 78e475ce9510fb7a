# vireo-vmm self-test guest: checks the entry state of docs/boot-protocol.md and exits with 7
# when all holds, else with the number of the first failed check (1..6).
        .code64
        .text
        .globl _start
_start:
        mov     $1, %ebx
        cmpl    $0x6f726976, (%rdi)     # BootInfo.magic "vrio"
        jne     fail
        mov     $2, %ebx
        cmpl    $1, 4(%rdi)             # version
        jne     fail
        mov     $3, %ebx
        cmp     8(%rdi), %rsp           # RSP = mem_size (top of RAM)
        jne     fail
        mov     $4, %ebx
        mov     %cs, %ax
        cmp     $0x08, %ax
        jne     fail
        mov     $5, %ebx
        cmpb    $'x', 304(%rdi)         # cmdline[0]: offsetof(BootInfo, cmdline) == 304
        jne     fail
        mov     $6, %ebx
        mov     %cr3, %rax
        cmp     $0x9000, %rax
        jne     fail
        mov     $7, %ebx
fail:
        mov     $0xf4, %dx
        mov     %ebx, %eax
        outl    %eax, %dx
1:      hlt
        jmp     1b
