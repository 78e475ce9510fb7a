// MSI-X (PCI Local Bus 3.0 §6.8.2): the capability, the vector table and the pending bit array.
//
// A vector fires as a message (address, data) to the MsiSink unless it is masked — per vector
// (Vector Control bit 0) or for the whole function (Function Mask) — in which case its pending
// bit is set and the message goes out when it is unmasked. Table entries start masked.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <span>
#include <vector>

#include "transport/irq.hpp"

namespace vireo::transport {

// Capability layout (offsets from the capability start).
inline constexpr std::uint32_t kMsixControl = 2;
inline constexpr std::uint32_t kMsixTable = 4;  // offset | BIR
inline constexpr std::uint32_t kMsixPba = 8;    // offset | BIR
inline constexpr std::uint32_t kMsixCapSize = 12;
inline constexpr std::uint16_t kMsixControlEnable = 1u << 15;
inline constexpr std::uint16_t kMsixControlFunctionMask = 1u << 14;
inline constexpr std::uint16_t kMsixControlTableSize = 0x7ff;  // N - 1

inline constexpr std::uint32_t kMsixEntrySize = 16;
inline constexpr std::uint32_t kMsixEntryAddrLo = 0;
inline constexpr std::uint32_t kMsixEntryAddrHi = 4;
inline constexpr std::uint32_t kMsixEntryData = 8;
inline constexpr std::uint32_t kMsixEntryControl = 12;
inline constexpr std::uint32_t kMsixEntryMasked = 1;
inline constexpr std::uint16_t kMsixMaxVectors = 2048;

class Msix {
  public:
    Msix(std::uint16_t vectors, MsiSink& sink);

    std::uint16_t size() const { return static_cast<std::uint16_t>(table_.size()); }
    // The capability body (ID first) and its guest-writable bits, for PciDevice::add_capability.
    std::array<std::uint8_t, kMsixCapSize> capability(int table_bar, std::uint32_t table_offset,
                                                      int pba_bar, std::uint32_t pba_offset) const;
    static std::array<std::uint8_t, kMsixCapSize> capability_wmask();

    // The guest wrote Message Control: enable / function mask; unmasking flushes pending ones.
    void set_control(std::uint16_t control);
    bool enabled() const { return enabled_.load(std::memory_order_acquire); }

    // Table and PBA accesses: dword or qword, aligned (§6.8.2.x); others read 0 / are dropped.
    void table_read(std::uint64_t offset, std::span<std::uint8_t> data);
    void table_write(std::uint64_t offset, std::span<const std::uint8_t> data);
    void pba_read(std::uint64_t offset, std::span<std::uint8_t> data);
    std::uint64_t table_bytes() const { return std::uint64_t{size()} * kMsixEntrySize; }
    std::uint64_t pba_bytes() const { return ((size() + 63) / 64) * 8; }

    // Sends vector `v` or marks it pending; false if v is outside the table.
    bool fire(std::uint16_t v);
    bool pending(std::uint16_t v) const;

  private:
    struct Entry {
        std::uint32_t addr_lo = 0;
        std::uint32_t addr_hi = 0;
        std::uint32_t data = 0;
        std::uint32_t control = kMsixEntryMasked;
    };
    struct Message {
        std::uint16_t vector;
        std::uint64_t addr;
        std::uint32_t data;
    };
    bool masked(std::uint16_t v) const;
    // Collects messages for pending vectors that are no longer masked (mu_ held).
    void collect_unmasked(std::vector<Message>& out);
    void send(const std::vector<Message>& msgs);

    MsiSink& sink_;
    mutable std::mutex mu_;
    std::vector<Entry> table_;
    std::vector<std::uint64_t> pba_;
    std::atomic<bool> enabled_{false};
    bool function_mask_ = false;
};

}  // namespace vireo::transport
