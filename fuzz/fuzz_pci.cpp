// virtio-pci behind the PCI host: the first byte picks config (ECAM) or BAR accesses per run;
// BAR 0 is pre-assigned and decoding enabled, so sequences reach common cfg, notify, ISR,
// device cfg and the MSI-X table as well as configuration space (BARs, pci_cfg window).
#include "transport/pci_host.hpp"
#include "transport/virtio_pci.hpp"
#include "transport_fuzz.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace vireo;
    using namespace vireo::transport;
    fuzz::quiet();
    GuestMemory mem;
    if (!mem.add_anonymous(fuzz::kRamBase, fuzz::kRamSize)) {
        return 0;
    }
    fuzz::EchoDevice device;
    fuzz::NullMsi msi;
    NullIrqLine intx;
    Bus mmio;
    {
        PciHost host(mmio, nullptr);
        auto pci = std::make_shared<VirtioPci>(device, mem, msi);
        pci->connect_intx(intx);
        (void)host.add(1, pci);
        constexpr std::uint64_t kEcam = 0xe0000000;
        constexpr std::uint64_t kBar = 0xf0000000;
        (void)host.attach_ecam(kEcam);
        const std::uint32_t bar = static_cast<std::uint32_t>(kBar);
        host.config_write(1, 0, kPciBar0,
                          std::span(reinterpret_cast<const std::uint8_t*>(&bar), 4));
        const std::uint16_t cmd = kPciCommandMemory | kPciCommandMaster;
        host.config_write(1, 0, kPciCommand,
                          std::span(reinterpret_cast<const std::uint8_t*>(&cmd), 2));
        // Alternate: every 8-byte access record whose op bit 3 is set goes to config space of
        // slot 1, others to the BAR.
        for (std::size_t i = 0; i + 8 <= size && i < 8 * 512; i += 8) {
            const bool config = (data[i] & 8) != 0;
            fuzz::run_accesses(mmio, config ? kEcam + (1u << 15) : kBar,
                               config ? 0x100 : VirtioPci::kBarSize, data + i, 8);
        }
        pci.reset();
    }
    return 0;
}
