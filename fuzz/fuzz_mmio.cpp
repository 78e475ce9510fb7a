// virtio-mmio register sequences (v2 or legacy, chosen by the first byte) against EchoDevice.
#include "transport/virtio_mmio.hpp"
#include "transport_fuzz.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace vireo;
    if (size < 1) {
        return 0;
    }
    fuzz::quiet();
    GuestMemory mem;
    if (!mem.add_anonymous(fuzz::kRamBase, fuzz::kRamSize)) {
        return 0;
    }
    fuzz::EchoDevice device;
    transport::NullIrqLine line;
    transport::Bus bus;
    constexpr std::uint64_t kBase = 0x10000000;
    {
        auto mmio = std::make_shared<transport::VirtioMmio>(
            device, mem, line,
            (data[0] & 1) != 0 ? transport::MmioVersion::kLegacy : transport::MmioVersion::kModern);
        (void)bus.insert(kBase, transport::kMmioSize, mmio);
        // Registers live below 0x200: fold offsets there so sequences reach them.
        fuzz::run_accesses(bus, kBase, 0x200, data + 1, size - 1);
        bus.remove(kBase);
    }
    return 0;
}
