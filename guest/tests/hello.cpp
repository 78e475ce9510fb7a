// Smallest guest: boots, prints, passes. Checks the runtime itself (BootInfo, UART, exit port,
// timer interrupts).
#include "drivers/platform.hpp"
#include "runtime/runtime.hpp"

using namespace vireo::guest;

int guest_main() {
    const auto& b = boot_info();
    if (b.magic.get() != vireo::boot::kBootMagic || b.version.get() != vireo::boot::kBootVersion) {
        print("hello: bad BootInfo magic %x version %u\n", b.magic.get(), b.version.get());
        return 1;
    }
    // The clock must advance: proves the LAPIC timer and the interrupt path work.
    const std::uint64_t start = platform::now_ms();
    if (!wait_until([&] { return platform::now_ms() >= start + 20; }, 1000, true)) {
        print("hello: timer does not tick\n");
        return 2;
    }
    print("hello: ok\n");
    return static_cast<int>(opt_u64("exit", 0));
}
