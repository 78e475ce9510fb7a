// A 16550A UART with an interrupt line, as Linux's 8250 driver and OpenSBI's uart8250 expect:
// transmit is instant (THR writes go straight to a host fd, so THRE is always set and the
// "THR empty" interrupt re-arms after each write), receive takes bytes pushed by the host
// (receive()) into a small FIFO. Register names and bits from the PC16550D datasheet; the
// offsets are shared with the x86 VMM's polled UART (vmm/uart.hpp), which has no interrupts.
#pragma once

#include <cstdint>
#include <deque>
#include <mutex>

#include "transport/bus.hpp"
#include "transport/irq.hpp"

namespace vireo::riscv {

class Uart final : public transport::BusDevice {
  public:
    // Transmitted bytes go to `out_fd` (not owned); the interrupt leaves through `irq`.
    Uart(int out_fd, transport::IrqLine& irq) : out_fd_(out_fd), irq_(irq) {}

    void read(std::uint64_t offset, std::span<std::uint8_t> data) override;
    void write(std::uint64_t offset, std::span<const std::uint8_t> data) override;

    // A byte from the host side (console input).
    void receive(std::uint8_t byte);

    static constexpr std::uint64_t kSize = 0x100;

  private:
    std::uint8_t iir() const;  // mu_ held
    void update();             // mu_ held: drive the line from IIR

    int out_fd_;
    transport::IrqLine& irq_;
    std::mutex mu_;
    std::uint8_t ier_ = 0, lcr_ = 0, mcr_ = 0, scr_ = 0, dll_ = 0, dlm_ = 0;
    bool fifo_enabled_ = false;
    bool thre_pending_ =
        false;  // the "THR empty" interrupt, until IIR reports it or THR is written
    bool line_high_ = false;
    std::deque<std::uint8_t> rx_;
};

}  // namespace vireo::riscv
