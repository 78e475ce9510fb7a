// A 16550A UART (COM1) for guest output, enough for a polling driver: THR writes go to a host fd,
// LSR always reports the transmitter empty, the divisor latch and scratch registers read back.
// There is no receive path (RBR reads 0, LSR.DR stays clear) and no interrupt (IIR reads "none
// pending"; IER is stored only).
#pragma once

#include <cstdint>
#include <mutex>

#include "transport/bus.hpp"

namespace vireo::vmm {

// Register offsets from the base port (PC16550D datasheet, table II).
inline constexpr std::uint64_t kUartRbrThr = 0;  // DLAB=0; DLL with DLAB=1
inline constexpr std::uint64_t kUartIer = 1;     // DLAB=0; DLM with DLAB=1
inline constexpr std::uint64_t kUartIirFcr = 2;  // IIR on read, FCR on write
inline constexpr std::uint64_t kUartLcr = 3;
inline constexpr std::uint64_t kUartMcr = 4;
inline constexpr std::uint64_t kUartLsr = 5;
inline constexpr std::uint64_t kUartMsr = 6;
inline constexpr std::uint64_t kUartScr = 7;
inline constexpr std::uint64_t kUartPorts = 8;

inline constexpr std::uint8_t kUartLcrDlab = 0x80;
inline constexpr std::uint8_t kUartLsrThre = 0x20;  // THR empty
inline constexpr std::uint8_t kUartLsrTemt = 0x40;  // transmitter empty
inline constexpr std::uint8_t kUartIirNone = 0x01;  // no interrupt pending
inline constexpr std::uint8_t kUartIirFifo = 0xc0;  // FIFOs enabled (after FCR bit 0)
inline constexpr std::uint8_t kUartFcrEnable = 0x01;
inline constexpr std::uint8_t kUartMcrLoop = 0x10;
// MSR with no loopback: carrier, data set ready, clear to send.
inline constexpr std::uint8_t kUartMsrIdle = 0xb0;

class Uart16550 final : public transport::BusDevice {
  public:
    // Bytes the guest transmits are written to `out_fd` (not owned).
    explicit Uart16550(int out_fd) : out_fd_(out_fd) {}

    void read(std::uint64_t offset, std::span<std::uint8_t> data) override;
    void write(std::uint64_t offset, std::span<const std::uint8_t> data) override;

  private:
    void transmit(std::uint8_t byte);

    const int out_fd_;
    std::mutex mu_;
    std::uint8_t ier_ = 0;
    std::uint8_t fcr_ = 0;
    std::uint8_t lcr_ = 0;
    std::uint8_t mcr_ = 0;
    std::uint8_t scr_ = 0;
    std::uint8_t dll_ = 0x0c;  // 9600 baud, as a BIOS leaves it
    std::uint8_t dlm_ = 0;
};

}  // namespace vireo::vmm
