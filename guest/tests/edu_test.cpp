// edu guest: identification, liveness, factorial, increment, interrupt raise/ack and DMA both
// ways, with completion by polling (irq=none), INTx (irq=intx) or MSI (irq=msi).
#include "drivers/edu.hpp"

#include "common.hpp"

using namespace vireo::guest;

namespace {

constexpr std::uint32_t kDmaBytes = 256;
constinit EduDevice dev;
alignas(16) std::uint8_t out[kDmaBytes];
alignas(16) std::uint8_t back[kDmaBytes];

}  // namespace

int guest_main() {
    EduDevice::Irq mode = EduDevice::Irq::kNone;
    if (opt_is("irq", "intx")) {
        mode = EduDevice::Irq::kIntx;
    } else if (opt_is("irq", "msi")) {
        mode = EduDevice::Irq::kMsi;
    }
    bool found = false;
    pci_for_each([&](const PciFunction& f) {
        found = dev.probe(f, test::bar_window());
        return found;
    });
    if (!found) {
        print("edu: device not found\n");
        return 1;
    }
    print("edu: 00:%02x.0 BAR0 %lx, irq %s\n", dev.function().dev(), dev.function().bar(0),
          mode == EduDevice::Irq::kNone   ? "none"
          : mode == EduDevice::Irq::kIntx ? "intx"
                                          : "msi");
    if (!dev.irq_setup(mode)) {
        print("edu: interrupt setup failed\n");
        return 2;
    }
    const std::uint32_t id = dev.id();
    if ((id & edu::kIdLowMask) != edu::kIdLow) {
        print("edu: bad id %x\n", id);
        return 3;
    }
    if (dev.liveness(0x12345678) != ~0x12345678u) {
        print("edu: liveness check failed\n");
        return 4;
    }
    std::uint32_t r = 0;
    if (!dev.factorial(10, &r) || r != 3628800) {
        print("edu: 10! = %u\n", r);
        return 5;
    }
    if (!dev.increment(41, &r) || r != 42) {
        print("edu: increment(41) = %u\n", r);
        return 6;
    }
    if (mode != EduDevice::Irq::kNone && !dev.raise(0x1000)) {
        print("edu: raised interrupt not delivered\n");
        return 7;
    }
    for (std::uint32_t i = 0; i < kDmaBytes; ++i) {
        out[i] = static_cast<std::uint8_t>(i * 13 + 7);
    }
    const std::uint64_t window_off = 0x100;
    if (!dev.dma(dma_addr(out), window_off, kDmaBytes, false) ||
        !dev.dma(dma_addr(back), window_off, kDmaBytes, true)) {
        print("edu: DMA did not complete\n");
        return 8;
    }
    if (!test::mem_equal(out, back, kDmaBytes)) {
        print("edu: DMA round trip corrupted the data\n");
        return 9;
    }
    print("edu: id %x, 10! ok, increment ok, DMA %u bytes ok, interrupts %u (%u without a cause)\n",
          id, kDmaBytes, dev.interrupts(), dev.spurious_interrupts());
    if (mode != EduDevice::Irq::kNone && dev.interrupts() < 4) {
        return 10;
    }
    if (!test::check_spurious("edu", dev.interrupts(), dev.spurious_interrupts())) {
        return 11;
    }
    print("edu: PASS\n");
    return 0;
}
