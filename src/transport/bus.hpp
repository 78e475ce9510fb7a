// An address-space bus: guest port I/O or MMIO accesses dispatched to devices by range.
//
// The trapping host (a KVM exit, the RISC-V emulator, the hypervisor bridge) turns a guest
// access into bus.read()/bus.write(); the device sees an offset into its own range. Accesses
// that hit nothing are a normal guest action: reads return all ones, writes are dropped.
//
// Lookups take no lock: the range table is an immutable snapshot published through an atomic
// shared_ptr and replaced whole (copy on write) by insert()/remove(). Registration is rare (VM
// setup, a guest re-programming a PCI BAR); lookups happen on every trapped access, from every
// vCPU thread. A vCPU that loaded the old snapshot keeps its device alive until the access ends.
#pragma once

#include <atomic>
#include <cstdint>
#include <expected>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

namespace vireo::transport {

// A device on the bus. Accesses are 1, 2, 4 or 8 bytes, little-endian in `data`.
// Called from any vCPU thread; a device serialises its own state.
class BusDevice {
  public:
    virtual ~BusDevice() = default;
    virtual void read(std::uint64_t offset, std::span<std::uint8_t> data) = 0;
    virtual void write(std::uint64_t offset, std::span<const std::uint8_t> data) = 0;
};

enum class BusError {
    kOverlap,  // the range overlaps one already registered
    kEmpty,    // zero length or wraps around the address space
};

class Bus {
  public:
    Bus();

    // Registers [base, base + len). Overlapping registrations are rejected.
    std::expected<void, BusError> insert(std::uint64_t base, std::uint64_t len,
                                         std::shared_ptr<BusDevice> device);
    // Unregisters the range that starts at `base`; false if there is none.
    bool remove(std::uint64_t base);

    // Dispatches an access; false if no device claims the whole access (reads then see ~0).
    // Accesses wider than 8 bytes or of length 0 are refused the same way.
    bool read(std::uint64_t addr, std::span<std::uint8_t> data) const;
    bool write(std::uint64_t addr, std::span<const std::uint8_t> data) const;

    std::size_t size() const { return table_.load(std::memory_order_acquire)->size(); }

  private:
    struct Range {
        std::uint64_t base;
        std::uint64_t len;
        std::shared_ptr<BusDevice> device;
    };
    using Table = std::vector<Range>;  // sorted by base, non-overlapping

    // The device covering [addr, addr + size) in `t`, with the offset of addr in it.
    static const Range* find(const Table& t, std::uint64_t addr, std::uint64_t size);

    std::mutex write_mu_;  // serialises writers; readers never take it
    std::atomic<std::shared_ptr<const Table>> table_;
};

}  // namespace vireo::transport
