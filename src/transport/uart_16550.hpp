// A 16550A UART (PC16550D datasheet), shared by both machines: COM1 of the x86 VMM (port I/O,
// polled, no interrupt line) and the RISC-V machine's ns16550a (MMIO, an interrupt through the
// PLIC, as Linux's 8250 driver and OpenSBI's uart8250 use it).
//
// Transmit is instant: a THR write goes straight to a host fd, so THR is always empty and the
// "THR empty" interrupt re-arms after each write. Receive takes bytes the host pushes
// (receive()) into a bounded FIFO. Loopback (MCR bit 4) reflects MCR into MSR and sends nothing,
// as drivers probing the chip expect. Byte registers only: wider accesses read 0 and are ignored.
#pragma once

#include <cstdint>
#include <deque>
#include <mutex>

#include "transport/bus.hpp"
#include "transport/irq.hpp"

namespace vireo::transport {

// Register offsets from the base (datasheet table II).
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
inline constexpr std::uint8_t kUartLsrDataReady = 0x01;
inline constexpr std::uint8_t kUartLsrThre = 0x20;  // THR empty
inline constexpr std::uint8_t kUartLsrTemt = 0x40;  // transmitter empty
inline constexpr std::uint8_t kUartIirNone = 0x01;  // no interrupt pending
inline constexpr std::uint8_t kUartIirThre = 0x02;
inline constexpr std::uint8_t kUartIirRxData = 0x04;
inline constexpr std::uint8_t kUartIirFifo = 0xc0;    // FIFOs enabled (after FCR bit 0)
inline constexpr std::uint8_t kUartIerRxData = 0x01;  // ERBFI
inline constexpr std::uint8_t kUartIerThre = 0x02;    // ETBEI
inline constexpr std::uint8_t kUartFcrEnable = 0x01;
inline constexpr std::uint8_t kUartFcrClearRx = 0x02;
inline constexpr std::uint8_t kUartMcrLoop = 0x10;
// MSR with no loopback: carrier, data set ready, clear to send.
inline constexpr std::uint8_t kUartMsrIdle = 0xb0;

class Uart16550 final : public BusDevice {
  public:
    // Transmitted bytes go to `out_fd` (not owned). With `irq`, the interrupt output (IIR not
    // "none") drives it; without, the UART is for polling drivers.
    explicit Uart16550(int out_fd, IrqLine* irq = nullptr) : out_fd_(out_fd), irq_(irq) {}

    void read(std::uint64_t offset, std::span<std::uint8_t> data) override;
    void write(std::uint64_t offset, std::span<const std::uint8_t> data) override;

    // Bytes from the host side (console input) into the receive FIFO: returns how many fit
    // (kRxFifo bytes wait at most), so the caller can hold the rest back until the guest reads.
    std::size_t receive(std::span<const std::uint8_t> bytes);

    static constexpr std::size_t kRxFifo = 4096;

  private:
    std::uint8_t iir() const;  // mu_ held
    void update();             // mu_ held: drive the line from IIR
    void transmit(std::uint8_t byte);

    const int out_fd_;
    IrqLine* const irq_;
    std::mutex mu_;
    std::uint8_t ier_ = 0, lcr_ = 0, mcr_ = 0, scr_ = 0;
    std::uint8_t dll_ = 0x0c, dlm_ = 0;  // 9600 baud, as a BIOS leaves it
    bool fifo_enabled_ = false;
    bool thre_pending_ =
        false;  // the "THR empty" interrupt, until IIR reports it or THR is written
    bool line_high_ = false;
    std::deque<std::uint8_t> rx_;
};

}  // namespace vireo::transport
