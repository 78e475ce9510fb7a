# vireo-vmm self-test guest: faults with no IDT loaded (IDTR limit 0 at entry) -> triple fault.
        .code64
        .text
        .globl _start
_start:
        ud2
