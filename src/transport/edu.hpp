// The QEMU "edu" teaching device (docs/specs/edu.rst, here /work/shared/spec/qemu-edu.rst):
// PCI 1234:11e8, BAR 0 of 1 MiB MMIO with an identification register, a liveness check, a
// factorial computed by a worker thread, an interrupt controller (INTx or MSI) and a DMA engine
// between guest RAM and a 4 KiB buffer at BAR offset 0x40000.
//
// vireo's extension: an increment unit at 0x10. Writing v starts the worker on v + 1; while it
// runs, status bit 0x02 is set and further writes to 0x10 are ignored; with status bit 0x40 set,
// completion raises interrupt status 0x02. Reading 0x10 returns the last result.
//
// DMA is checked completely before any byte moves: bus mastering enabled, the RAM address
// within the DMA mask and inside guest memory, the device side inside the 4 KiB buffer. A
// transfer that fails a check moves nothing, completes (the start bit clears, the interrupt is
// raised if asked for, so a waiting driver wakes) and is counted in dma_errors().
#pragma once

#include <array>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

#include "memory/guest_memory.hpp"
#include "transport/irq.hpp"
#include "transport/pci_device.hpp"

namespace vireo::transport {

inline constexpr std::uint16_t kEduVendor = 0x1234;
inline constexpr std::uint16_t kEduDevice = 0x11e8;
inline constexpr std::uint64_t kEduBarSize = 1u << 20;

// Registers (BAR 0 offsets).
inline constexpr std::uint64_t kEduId = 0x00;
inline constexpr std::uint64_t kEduLiveness = 0x04;
inline constexpr std::uint64_t kEduFactorial = 0x08;
inline constexpr std::uint64_t kEduIncrement = 0x10;
inline constexpr std::uint64_t kEduStatus = 0x20;
inline constexpr std::uint64_t kEduIrqStatus = 0x24;
inline constexpr std::uint64_t kEduIrqRaise = 0x60;
inline constexpr std::uint64_t kEduIrqAck = 0x64;
inline constexpr std::uint64_t kEduDmaSrc = 0x80;
inline constexpr std::uint64_t kEduDmaDst = 0x88;
inline constexpr std::uint64_t kEduDmaCount = 0x90;
inline constexpr std::uint64_t kEduDmaCmd = 0x98;
inline constexpr std::uint64_t kEduBuffer = 0x40000;
inline constexpr std::uint64_t kEduBufferSize = 4096;

inline constexpr std::uint32_t kEduIdValue = 0x010000ed;  // version 1.0

inline constexpr std::uint32_t kEduStatusComputing = 0x01;     // factorial running (RO)
inline constexpr std::uint32_t kEduStatusIncrementing = 0x02;  // increment running (RO)
inline constexpr std::uint32_t kEduStatusIrqIncrement = 0x40;  // raise 0x02 when increment ends
inline constexpr std::uint32_t kEduStatusIrqFactorial = 0x80;  // raise 0x01 when factorial ends
inline constexpr std::uint32_t kEduStatusWritable = kEduStatusIrqIncrement | kEduStatusIrqFactorial;

inline constexpr std::uint32_t kEduIrqFactorial = 0x01;
inline constexpr std::uint32_t kEduIrqIncrement = 0x02;
inline constexpr std::uint32_t kEduIrqDma = 0x100;

inline constexpr std::uint64_t kEduDmaStart = 0x1;
inline constexpr std::uint64_t kEduDmaToRam = 0x2;  // direction: 0 RAM → EDU, 1 EDU → RAM
inline constexpr std::uint64_t kEduDmaIrq = 0x4;

inline constexpr std::uint64_t kEduDefaultDmaMask = (1ull << 28) - 1;  // as QEMU's default

class EduDevice final : public PciDevice {
  public:
    EduDevice(const GuestMemory& mem, MsiSink& msi, std::uint64_t dma_mask = kEduDefaultDmaMask);
    ~EduDevice() override;

    void bar_read(int bar, std::uint64_t offset, std::span<std::uint8_t> data) override;
    void bar_write(int bar, std::uint64_t offset, std::span<const std::uint8_t> data) override;

    std::uint64_t dma_errors() const;

  private:
    void run();
    void raise(std::uint32_t bits);  // mu_ held
    void lower(std::uint32_t bits);  // mu_ held
    void dma();                      // mu_ held, on the worker
    std::uint64_t read_reg(std::uint64_t offset, std::size_t size);
    void write_reg(std::uint64_t offset, std::size_t size, std::uint64_t value);

    const GuestMemory& mem_;
    MsiSink& msi_;
    const std::uint64_t dma_mask_;
    std::uint8_t msi_cap_ = 0;

    mutable std::mutex mu_;
    std::condition_variable cv_;
    bool stop_ = false;
    bool dma_pending_ = false;
    std::uint32_t liveness_ = 0;
    std::uint32_t factorial_ = 0;
    std::uint32_t increment_ = 0;
    std::uint32_t status_ = 0;
    std::uint32_t irq_status_ = 0;
    std::uint64_t dma_src_ = 0;
    std::uint64_t dma_dst_ = 0;
    std::uint64_t dma_count_ = 0;
    std::uint64_t dma_cmd_ = 0;
    std::uint64_t dma_errors_ = 0;
    std::array<std::uint8_t, kEduBufferSize> buffer_{};
    std::thread worker_;
};

}  // namespace vireo::transport
