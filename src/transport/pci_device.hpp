// A PCI function as the guest sees it: a type-0 configuration space header (PCI Local Bus 3.0
// §6.1) with a capability list, up to six BARs the guest sizes and places, and an INTx pin.
//
// The configuration space is bytes plus a write mask: the guest changes only writable bits,
// so read-only fields (IDs, BAR type bits, capability bodies) cannot be forged. A BAR's
// writable bits are its address bits above the size: writing all ones reads back the size
// mask (the sizing protocol). PciHost decides where the BARs are mapped on the bus.
//
// Locking: configuration accesses are serialised by cfg_mu_ (PciHost calls in from vCPUs);
// BAR accesses come straight from the bus and are serialised by the subclass. The INTx line
// state has its own leaf lock so interrupt paths never need cfg_mu_.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <span>

#include "transport/irq.hpp"

namespace vireo::transport {

// Configuration space header offsets (type 0).
inline constexpr std::uint32_t kPciVendorId = 0x00;
inline constexpr std::uint32_t kPciDeviceId = 0x02;
inline constexpr std::uint32_t kPciCommand = 0x04;
inline constexpr std::uint32_t kPciStatus = 0x06;
inline constexpr std::uint32_t kPciRevision = 0x08;
inline constexpr std::uint32_t kPciProgIf = 0x09;
inline constexpr std::uint32_t kPciSubclass = 0x0a;
inline constexpr std::uint32_t kPciClass = 0x0b;
inline constexpr std::uint32_t kPciHeaderType = 0x0e;
inline constexpr std::uint32_t kPciBar0 = 0x10;
inline constexpr std::uint32_t kPciSubsystemVendorId = 0x2c;
inline constexpr std::uint32_t kPciSubsystemId = 0x2e;
inline constexpr std::uint32_t kPciCapabilityList = 0x34;
inline constexpr std::uint32_t kPciInterruptLine = 0x3c;
inline constexpr std::uint32_t kPciInterruptPin = 0x3d;
inline constexpr std::uint32_t kPciCapStart = 0x40;  // first byte after the header

inline constexpr std::uint16_t kPciCommandIo = 1u << 0;
inline constexpr std::uint16_t kPciCommandMemory = 1u << 1;
inline constexpr std::uint16_t kPciCommandMaster = 1u << 2;
inline constexpr std::uint16_t kPciCommandIntxDisable = 1u << 10;
inline constexpr std::uint16_t kPciStatusInterrupt = 1u << 3;
inline constexpr std::uint16_t kPciStatusCapList = 1u << 4;

inline constexpr std::uint32_t kPciBarIo = 0x1;     // BAR bit 0: I/O space
inline constexpr std::uint32_t kPciBarMem64 = 0x4;  // BAR bits 2:1 = 10b: 64-bit memory
inline constexpr std::uint32_t kPciBarPrefetch = 0x8;

inline constexpr std::uint8_t kPciCapIdMsi = 0x05;
inline constexpr std::uint8_t kPciCapIdVendor = 0x09;
inline constexpr std::uint8_t kPciCapIdMsix = 0x11;

inline constexpr std::size_t kPciConfigSize = 256;      // conventional space
inline constexpr std::size_t kPciExtConfigSize = 4096;  // PCIe (ECAM) space; the rest reads 0
inline constexpr int kPciNumBars = 6;

enum class BarKind : std::uint8_t { kNone, kIo, kMem32, kMem64 };

struct BarInfo {
    BarKind kind = BarKind::kNone;
    std::uint64_t size = 0;  // power of two
};

class PciDevice {
  public:
    virtual ~PciDevice() = default;
    PciDevice(const PciDevice&) = delete;
    PciDevice& operator=(const PciDevice&) = delete;

    // Configuration access of 1, 2 or 4 bytes at `offset` < kPciExtConfigSize, not crossing a
    // dword (PciHost checks). Reads beyond the conventional space return 0.
    void config_read(std::uint32_t offset, std::span<std::uint8_t> data);
    void config_write(std::uint32_t offset, std::span<const std::uint8_t> data);

    // An access inside BAR `bar` (PciHost maps the BAR on the bus and forwards to these).
    virtual void bar_read(int bar, std::uint64_t offset, std::span<std::uint8_t> data) = 0;
    virtual void bar_write(int bar, std::uint64_t offset, std::span<const std::uint8_t> data) = 0;

    const BarInfo& bar(int index) const { return bars_[index]; }
    // Where the guest placed BAR `index`, if it is decoded: the BAR exists, its address is
    // non-zero, and the command register enables its space.
    std::optional<std::uint64_t> bar_address(int index) const;
    std::uint16_t command() const { return command_.load(std::memory_order_acquire); }

    // Attaches the function's INTx pin to a line (before the guest runs).
    void connect_intx(IrqLine& line) { intx_ = &line; }
    // The INTx level: asserted unless the command register disables INTx.
    void set_intx(bool level);
    bool intx_level() const { return intx_level_.load(std::memory_order_acquire); }

  protected:
    PciDevice(std::uint16_t vendor, std::uint16_t device, std::uint8_t class_code,
              std::uint8_t subclass, std::uint8_t prog_if, std::uint8_t revision);

    void set_subsystem(std::uint16_t vendor, std::uint16_t id);
    void set_interrupt_pin(std::uint8_t pin);  // 1 = INTA#
    // Declares BAR `index` (and index + 1 for 64-bit ones). Setup only.
    void add_bar(int index, BarKind kind, std::uint64_t size, bool prefetchable = false);
    // Appends a capability: `body` starts with the ID byte; its second byte (next pointer) is
    // filled in here. `wmask` (same length, or empty) marks the guest-writable bits. Returns
    // the capability's offset. Setup only.
    std::uint8_t add_capability(std::span<const std::uint8_t> body,
                                std::span<const std::uint8_t> wmask = {});

    // Hooks run with cfg_mu_ held. A read hook may produce the bytes of an access itself
    // (returns true); config_written runs after a write changed configuration bytes.
    virtual bool config_read_hook(std::uint32_t, std::span<std::uint8_t>) { return false; }
    virtual void config_written(std::uint32_t, std::size_t) {}

    // Bytes of configuration space; only with cfg_mu_ held (inside hooks) or during setup.
    std::array<std::uint8_t, kPciConfigSize> cfg_{};
    std::uint32_t cfg_dword(std::uint32_t offset) const;
    std::uint16_t cfg_word(std::uint32_t offset) const;

    mutable std::mutex cfg_mu_;

  private:
    void apply_intx();

    std::array<std::uint8_t, kPciConfigSize> wmask_{};
    std::array<BarInfo, kPciNumBars> bars_{};
    std::uint8_t cap_end_ = kPciCapStart;  // where the next capability goes
    std::uint8_t last_cap_ = 0;            // offset of the last capability (0: none)
    std::atomic<std::uint16_t> command_{0};

    std::mutex intx_mu_;  // leaf lock: the line's level
    IrqLine* intx_ = nullptr;
    std::atomic<bool> intx_level_{false};
};

}  // namespace vireo::transport
