// Smallest guest: boots, prints, passes. Checks the runtime itself (BootInfo, UART, exit port or
// finisher, timer interrupts).
#include "drivers/platform.hpp"
#include "runtime/runtime.hpp"

using namespace vireo::guest;

int guest_main() {
    const auto& b = boot_info();
    if (b.magic.get() != vireo::boot::kBootMagic || b.version.get() != vireo::boot::kBootVersion) {
        print("hello: bad BootInfo magic %x version %u\n", b.magic.get(), b.version.get());
        return 1;
    }
#if defined(__x86_64__)
    if (opt_flag("debug", false)) {
        for (std::uint64_t reg :
             {0x20ull, 0x30ull, 0xF0ull, 0x320ull, 0x380ull, 0x390ull, 0x3E0ull}) {
            print("hello: lapic[%lx] = %x\n", reg, mmio_read32(vireo::boot::kLapicBase + reg));
        }
        std::uint64_t flags;
        asm volatile("pushfq; pop %0" : "=r"(flags));
        print("hello: rflags %lx\n", flags);
        std::uint32_t a = 1, b, c = 0, d;
        asm volatile("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d));
        print("hello: cpuid.1 ebx %x ecx %x edx %x\n", b, c, d);
    }
#endif
    // The clock must advance while the CPU sleeps: proves the timer interrupt (LAPIC timer, CLINT
    // mtimecmp) and the interrupt path work.
    const std::uint64_t start = platform::now_ms();
    if (!wait_until([&] { return platform::now_ms() >= start + 20; }, 1000, true)) {
        print("hello: timer does not tick\n");
        return 2;
    }
    // echo: a line typed on the VMM's stdin comes back through the UART (polled LSR.DR/RBR).
    if (opt_flag("echo", false)) {
        char line[64];
        std::size_t n = 0;
        bool done = false;
        const bool got = wait_until(
            [&] {
                for (int c; !done && (c = console_getc()) >= 0;) {
                    done = c == '\n' || c == '\r' || n + 1 == sizeof line;
                    if (!done) {
                        line[n++] = static_cast<char>(c);
                    }
                }
                return done;
            },
            5000, true);  // look at each timer tick
        line[n] = '\0';
        if (!got) {
            print("hello: no line on the UART (got '%s')\n", line);
            return 3;
        }
        print("hello: echo %s\n", line);
    }
    print("hello: ok\n");
    return static_cast<int>(opt_u64("exit", 0));
}
