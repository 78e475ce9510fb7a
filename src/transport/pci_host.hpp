// A PCI host bridge for bus 0: the bridge itself at 00:00.0, functions at slots 1..31, reached
// through configuration mechanism #1 (ports 0xCF8 address / 0xCFC data, PCI Local Bus 3.0
// §3.2.2.3.2) and through an ECAM window (PCIe §7.2.2: bus << 20 | device << 15 | function
// << 12 | register). When the guest writes a BAR or the command register, the host re-maps
// the function's BARs: memory BARs on the MMIO bus, I/O BARs on the port bus.
#pragma once

#include <array>
#include <cstdint>
#include <expected>
#include <memory>
#include <mutex>
#include <optional>

#include "transport/bus.hpp"
#include "transport/pci_device.hpp"

namespace vireo::transport {

inline constexpr std::uint64_t kPciConfigAddressPort = 0xcf8;
inline constexpr std::uint64_t kPciConfigPortsLen = 8;  // 0xCF8..0xCFF
inline constexpr std::uint32_t kPciConfigEnable = 1u << 31;
inline constexpr std::uint64_t kEcamBusSize = 1u << 20;  // one bus: 32 devices × 8 functions
inline constexpr int kPciSlots = 32;

inline constexpr std::uint16_t kHostBridgeVendor = 0x1b36;  // Red Hat, as QEMU's bridges
inline constexpr std::uint16_t kHostBridgeDevice = 0x0008;

enum class PciError {
    kBadSlot,   // slot 0 (the bridge) or ≥ 32
    kSlotUsed,  // a function is already there
};

class PciHost {
  public:
    // `mmio` receives memory BARs (and the ECAM window, if attached); `pio` I/O BARs and the
    // 0xCF8 ports (may be null on architectures without port I/O).
    PciHost(Bus& mmio, Bus* pio);
    ~PciHost();
    PciHost(const PciHost&) = delete;
    PciHost& operator=(const PciHost&) = delete;

    std::expected<void, PciError> add(int slot, std::shared_ptr<PciDevice> device);
    // Registers the 0xCF8..0xCFF ports on the port bus.
    std::expected<void, BusError> attach_cf8();
    // Registers the ECAM window for bus 0 at `base` on the MMIO bus.
    std::expected<void, BusError> attach_ecam(std::uint64_t base);

    // Configuration access to bus 0, `slot`, function 0..7 (absent functions read all ones).
    void config_read(int slot, int function, std::uint32_t offset, std::span<std::uint8_t> data);
    void config_write(int slot, int function, std::uint32_t offset,
                      std::span<const std::uint8_t> data);

    // Where BAR `bar` of `slot` is currently mapped (nullopt: not mapped).
    std::optional<std::uint64_t> mapped_bar(int slot, int bar) const;

  private:
    class PortWindow;
    class EcamWindow;
    void remap(int slot);  // host_mu_ held

    Bus& mmio_;
    Bus* pio_;
    mutable std::mutex host_mu_;  // configuration cycles and BAR mappings
    std::uint32_t address_ = 0;   // the 0xCF8 latch
    std::array<std::shared_ptr<PciDevice>, kPciSlots> slots_{};
    std::array<std::array<std::optional<std::uint64_t>, kPciNumBars>, kPciSlots> mapped_{};
    std::shared_ptr<PortWindow> ports_;
    std::shared_ptr<EcamWindow> ecam_;
    std::optional<std::uint64_t> ecam_base_;
};

}  // namespace vireo::transport
