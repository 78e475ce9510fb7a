// PCI as an operating system sees it: bus-0 enumeration through the platform's configuration
// mechanism (0xCF8/0xCFC on x86), capability walk, BAR sizing and assignment from the window
// the firmware (here: BootInfo) leaves for it, decoding/bus mastering, MSI and MSI-X.
#pragma once

#include <cstdint>

#include "drivers/platform.hpp"

namespace vireo::guest {

namespace pci {
// Type-0 configuration header (PCI Local Bus 3.0 §6.1).
inline constexpr std::uint16_t kVendorId = 0x00;
inline constexpr std::uint16_t kDeviceId = 0x02;
inline constexpr std::uint16_t kCommand = 0x04;
inline constexpr std::uint16_t kStatus = 0x06;
inline constexpr std::uint16_t kHeaderType = 0x0E;
inline constexpr std::uint16_t kBar0 = 0x10;
inline constexpr std::uint16_t kSubsystemId = 0x2E;
inline constexpr std::uint16_t kCapPointer = 0x34;
inline constexpr std::uint16_t kInterruptPin = 0x3D;

inline constexpr std::uint16_t kVendorNone = 0xFFFF;
inline constexpr std::uint8_t kHeaderMultiFunction = 0x80;
inline constexpr std::uint16_t kCmdMemory = 1u << 1;
inline constexpr std::uint16_t kCmdBusMaster = 1u << 2;
inline constexpr std::uint16_t kCmdIntxDisable = 1u << 10;
inline constexpr std::uint16_t kStatusCapList = 1u << 4;

inline constexpr std::uint32_t kBarIo = 1u << 0;
inline constexpr std::uint32_t kBarTypeMask = 0x6;
inline constexpr std::uint32_t kBarType64 = 0x4;
inline constexpr std::uint32_t kBarMemMask = ~std::uint32_t{0xF};
inline constexpr int kNumBars = 6;

inline constexpr std::uint8_t kCapMsi = 0x05;
inline constexpr std::uint8_t kCapVendor = 0x09;
inline constexpr std::uint8_t kCapMsix = 0x11;
inline constexpr std::uint8_t kCapFirst = 0x40;  // capabilities live after the header
inline constexpr int kCapWalkCap = 48;           // (256 - 64) / 4: more means a loop

// MSI capability (§6.8.1).
inline constexpr std::uint16_t kMsiControl = 2;
inline constexpr std::uint16_t kMsiAddrLo = 4;
inline constexpr std::uint16_t kMsiAddrHi = 8;
inline constexpr std::uint16_t kMsiData32 = 8;
inline constexpr std::uint16_t kMsiData64 = 12;
inline constexpr std::uint16_t kMsiEnable = 1u << 0;
inline constexpr std::uint16_t kMsi64Bit = 1u << 7;

// MSI-X capability (§6.8.2).
inline constexpr std::uint16_t kMsixControl = 2;
inline constexpr std::uint16_t kMsixTable = 4;
inline constexpr std::uint16_t kMsixPba = 8;
inline constexpr std::uint16_t kMsixTableSizeMask = 0x7FF;
inline constexpr std::uint16_t kMsixFunctionMask = 1u << 14;
inline constexpr std::uint16_t kMsixEnable = 1u << 15;
inline constexpr std::uint32_t kMsixBirMask = 0x7;
inline constexpr std::uint64_t kMsixEntrySize = 16;
inline constexpr std::uint64_t kMsixEntryAddrLo = 0;
inline constexpr std::uint64_t kMsixEntryAddrHi = 4;
inline constexpr std::uint64_t kMsixEntryData = 8;
inline constexpr std::uint64_t kMsixEntryControl = 12;
inline constexpr std::uint32_t kMsixEntryMasked = 1u << 0;
}  // namespace pci

// Hands out naturally aligned BAR ranges from the window the platform leaves for PCI.
class BarAllocator {
  public:
    constexpr BarAllocator() = default;
    void init(std::uint64_t base, std::uint64_t size) {
        next_ = base;
        end_ = base + size;
    }
    // 0 when the window is exhausted.
    std::uint64_t alloc(std::uint64_t size) {
        const std::uint64_t a = (next_ + size - 1) & ~(size - 1);
        if (size == 0 || a < next_ || a > end_ || end_ - a < size) {
            return 0;
        }
        next_ = a + size;
        return a;
    }

  private:
    std::uint64_t next_ = 0;
    std::uint64_t end_ = 0;
};

class PciFunction {
  public:
    constexpr PciFunction() = default;
    constexpr PciFunction(std::uint8_t bus, std::uint8_t dev, std::uint8_t fn)
        : bus_(bus), dev_(dev), fn_(fn) {}

    std::uint8_t bus() const { return bus_; }
    std::uint8_t dev() const { return dev_; }
    std::uint8_t fn() const { return fn_; }

    std::uint32_t read32(std::uint16_t off) const {
        return platform::pci_config_read32(bus_, dev_, fn_, off & 0xFC);
    }
    std::uint16_t read16(std::uint16_t off) const {
        return static_cast<std::uint16_t>(read32(off) >> ((off & 2) * 8));
    }
    std::uint8_t read8(std::uint16_t off) const {
        return static_cast<std::uint8_t>(read32(off) >> ((off & 3) * 8));
    }
    void write32(std::uint16_t off, std::uint32_t v) const {
        platform::pci_config_write32(bus_, dev_, fn_, off & 0xFC, v);
    }
    // Sub-dword writes merge into the dword. For the command register the status half is
    // written back with zeros: its error bits are write-1-to-clear.
    void write16(std::uint16_t off, std::uint16_t v) const {
        const int shift = (off & 2) * 8;
        std::uint32_t d = read32(off);
        if ((off & 0xFC) == pci::kCommand) {
            d &= 0xFFFF;
        }
        d = (d & ~(0xFFFFu << shift)) | (std::uint32_t{v} << shift);
        write32(off, d);
    }

    std::uint16_t vendor() const { return read16(pci::kVendorId); }
    std::uint16_t device() const { return read16(pci::kDeviceId); }
    bool present() const { return vendor() != pci::kVendorNone; }

    // The next capability with `id` after the one at `after` (0: from the start), or 0.
    // Bounded: a device whose list loops or points into the header ends the walk.
    std::uint8_t find_cap(std::uint8_t id, std::uint8_t after = 0) const {
        if ((read16(pci::kStatus) & pci::kStatusCapList) == 0) {
            return 0;
        }
        std::uint8_t p = after == 0 ? read8(pci::kCapPointer) : read8(after + 1);
        for (int i = 0; i < pci::kCapWalkCap && p >= pci::kCapFirst; ++i) {
            p &= 0xFC;
            if (read8(p) == id) {
                return p;
            }
            p = read8(p + 1);
        }
        return 0;
    }

    // Sizes every memory BAR, assigns it from `window` and enables memory decoding and bus
    // mastering. I/O BARs are left unassigned (this platform has no I/O window for them).
    bool assign_bars(BarAllocator& window) {
        const std::uint16_t cmd = read16(pci::kCommand);
        // Decoding off while sizing: the all-ones probe would otherwise claim the top of memory.
        write16(pci::kCommand, static_cast<std::uint16_t>(cmd & ~pci::kCmdMemory));
        bool ok = true;
        for (int i = 0; i < pci::kNumBars; ++i) {
            const std::uint16_t off = static_cast<std::uint16_t>(pci::kBar0 + 4 * i);
            const std::uint32_t orig = read32(off);
            bar_[i] = 0;
            if ((orig & pci::kBarIo) != 0) {
                continue;
            }
            const bool is64 =
                (orig & pci::kBarTypeMask) == pci::kBarType64 && i + 1 < pci::kNumBars;
            write32(off, 0xFFFF'FFFF);
            std::uint64_t mask = read32(off) & pci::kBarMemMask;
            if (is64) {
                write32(off + 4, 0xFFFF'FFFF);
                mask |= std::uint64_t{read32(off + 4)} << 32;
            } else if (mask != 0) {
                mask |= 0xFFFF'FFFF'0000'0000ull;
            }
            if (mask == 0) {  // unimplemented BAR
                write32(off, orig);
                continue;
            }
            const std::uint64_t size = ~mask + 1;
            const std::uint64_t addr = window.alloc(size);
            if (addr == 0) {
                print("pci %02x:%02x.%u: BAR %d (%lx bytes) does not fit the window\n", bus_, dev_,
                      fn_, i, size);
                ok = false;
                write32(off, orig);
                continue;
            }
            write32(off, static_cast<std::uint32_t>(addr));
            if (is64) {
                write32(off + 4, static_cast<std::uint32_t>(addr >> 32));
            }
            bar_[i] = addr;
            bar_size_[i] = size;
            if (is64) {
                ++i;  // the upper half is not a BAR of its own
                bar_[i] = 0;
            }
        }
        write16(pci::kCommand,
                static_cast<std::uint16_t>(cmd | pci::kCmdMemory | pci::kCmdBusMaster));
        return ok;
    }

    std::uint64_t bar(int i) const { return i >= 0 && i < pci::kNumBars ? bar_[i] : 0; }
    std::uint64_t bar_size(int i) const { return i >= 0 && i < pci::kNumBars ? bar_size_[i] : 0; }

    void set_intx_disabled(bool disabled) const {
        const std::uint16_t cmd = read16(pci::kCommand);
        write16(pci::kCommand, disabled ? static_cast<std::uint16_t>(cmd | pci::kCmdIntxDisable)
                                        : static_cast<std::uint16_t>(cmd & ~pci::kCmdIntxDisable));
    }

    // Programs the MSI capability with one message for `vector` and enables it.
    bool enable_msi(int vector) const {
        const std::uint8_t cap = find_cap(pci::kCapMsi);
        if (cap == 0) {
            return false;
        }
        const platform::MsiMessage m = platform::msi_message(vector);
        const std::uint16_t control = read16(cap + pci::kMsiControl);
        write32(cap + pci::kMsiAddrLo, static_cast<std::uint32_t>(m.address));
        if ((control & pci::kMsi64Bit) != 0) {
            write32(cap + pci::kMsiAddrHi, static_cast<std::uint32_t>(m.address >> 32));
            write16(cap + pci::kMsiData64, static_cast<std::uint16_t>(m.data));
        } else {
            write16(cap + pci::kMsiData32, static_cast<std::uint16_t>(m.data));
        }
        write16(cap + pci::kMsiControl, static_cast<std::uint16_t>(control | pci::kMsiEnable));
        set_intx_disabled(true);
        return (read16(cap + pci::kMsiControl) & pci::kMsiEnable) != 0;
    }

    // MSI-X (§6.8.2): enables the function with every entry masked, points entries
    // 0..table size-1 at `vector`, then unmasks them and the function. Returns the table size
    // (0: no MSI-X or its table lies outside an assigned BAR).
    std::uint16_t enable_msix(int vector) {
        const std::uint8_t cap = find_cap(pci::kCapMsix);
        if (cap == 0) {
            return 0;
        }
        const std::uint16_t control = read16(cap + pci::kMsixControl);
        const std::uint16_t entries =
            static_cast<std::uint16_t>((control & pci::kMsixTableSizeMask) + 1);
        const std::uint32_t table = read32(cap + pci::kMsixTable);
        const int bir = static_cast<int>(table & pci::kMsixBirMask);
        const std::uint64_t offset = table & ~pci::kMsixBirMask;
        if (bir >= pci::kNumBars || bar(bir) == 0 ||
            offset + entries * pci::kMsixEntrySize > bar_size(bir)) {
            return 0;
        }
        msix_table_ = bar(bir) + offset;
        write16(cap + pci::kMsixControl,
                static_cast<std::uint16_t>(control | pci::kMsixEnable | pci::kMsixFunctionMask));
        const platform::MsiMessage m = platform::msi_message(vector);
        for (std::uint16_t e = 0; e < entries; ++e) {
            const std::uint64_t a = msix_table_ + e * pci::kMsixEntrySize;
            mmio_write32(a + pci::kMsixEntryAddrLo, static_cast<std::uint32_t>(m.address));
            mmio_write32(a + pci::kMsixEntryAddrHi, static_cast<std::uint32_t>(m.address >> 32));
            mmio_write32(a + pci::kMsixEntryData, m.data);
            mmio_write32(a + pci::kMsixEntryControl, 0);  // unmasked
        }
        write16(cap + pci::kMsixControl,
                static_cast<std::uint16_t>((control | pci::kMsixEnable) & ~pci::kMsixFunctionMask));
        set_intx_disabled(true);
        return entries;
    }

  private:
    std::uint8_t bus_ = 0;
    std::uint8_t dev_ = 0;
    std::uint8_t fn_ = 0;
    std::uint64_t bar_[pci::kNumBars] = {};
    std::uint64_t bar_size_[pci::kNumBars] = {};
    std::uint64_t msix_table_ = 0;
};

// Calls `fn(PciFunction)` for every function present on bus 0; stops early when fn returns
// true. Returns whether it stopped early.
template <typename Fn>
bool pci_for_each(Fn visit) {
    for (std::uint8_t dev = 0; dev < 32; ++dev) {
        PciFunction f0(0, dev, 0);
        if (!f0.present()) {
            continue;
        }
        const bool multi = (f0.read8(pci::kHeaderType) & pci::kHeaderMultiFunction) != 0;
        for (std::uint8_t func = 0; func < (multi ? 8 : 1); ++func) {
            PciFunction f(0, dev, func);
            if (func != 0 && !f.present()) {
                continue;
            }
            if (visit(f)) {
                return true;
            }
        }
    }
    return false;
}

}  // namespace vireo::guest
