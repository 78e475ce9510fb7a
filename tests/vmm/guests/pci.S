# vireo-vmm self-test guest: PCI through 0xCF8/0xCFC. Expects edu at slot 1 and a virtio-pci
# function at slot 2. Assigns both BAR 0s, enables memory decoding, checks edu's ID register
# (exit 1 if wrong), runs edu's increment unit on 41 and exits with the result (42).
        .code64
        .text
        .globl _start
        .set CFG_ADDR, 0xcf8
        .set CFG_DATA, 0xcfc
        .set ENABLE, 0x80000000
        .set EDU_BAR, 0xc0000000
        .set VIRTIO_BAR, 0xc0100000

# cfg_write32 slot, reg, value
.macro cfg_write32 slot, reg, value
        mov     $CFG_ADDR, %dx
        mov     $(ENABLE | (\slot << 11) | \reg), %eax
        outl    %eax, %dx
        mov     $CFG_DATA, %dx
        mov     $\value, %eax
        outl    %eax, %dx
.endm

_start:
        cfg_write32 1, 0x10, EDU_BAR
        cfg_write32 1, 0x04, 0x6        # memory space + bus master
        cfg_write32 2, 0x10, VIRTIO_BAR # 64-bit BAR: low half ...
        cfg_write32 2, 0x14, 0          # ... high half
        cfg_write32 2, 0x04, 0x6
        mov     $1, %ebx
        mov     $EDU_BAR, %rsi
        cmpl    $0x010000ed, (%rsi)     # identification
        jne     out
        movl    $41, 0x10(%rsi)         # increment unit
1:      testl   $0x02, 0x20(%rsi)       # status: incrementing
        jnz     1b
        mov     0x10(%rsi), %ebx
out:
        mov     $0xf4, %dx
        mov     %ebx, %eax
        outl    %eax, %dx
2:      hlt
        jmp     2b
