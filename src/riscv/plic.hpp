// Platform-level interrupt controller (RISC-V PLIC spec 1.0.0; SiFive layout as on QEMU virt).
// Sources are level-triggered wires (virtio-mmio, UART). Two contexts per hart: 2h is M-mode
// (drives MEIP), 2h+1 is S-mode (drives SEIP).
#pragma once

#include <cstdint>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "riscv/hart.hpp"
#include "transport/bus.hpp"
#include "transport/irq.hpp"

namespace vireo::riscv {

inline constexpr unsigned kPlicSources = 32;  // source 0 is "no interrupt"; 1..31 usable
inline constexpr std::uint64_t kPlicPriority = 0x000000;  // 4 bytes per source
inline constexpr std::uint64_t kPlicPending = 0x001000;   // bit array
inline constexpr std::uint64_t kPlicEnable = 0x002000;    // per context
inline constexpr std::uint64_t kPlicEnableStride = 0x80;
inline constexpr std::uint64_t kPlicContext = 0x200000;  // threshold, then claim/complete
inline constexpr std::uint64_t kPlicContextStride = 0x1000;
inline constexpr std::uint64_t kPlicClaim = 4;
inline constexpr std::uint64_t kPlicSize = 0x4000000;
inline constexpr std::uint32_t kPlicMaxPriority = 7;

class Plic final : public transport::BusDevice {
  public:
    explicit Plic(std::span<HartIrq* const> irqs);

    void read(std::uint64_t offset, std::span<std::uint8_t> data) override;
    void write(std::uint64_t offset, std::span<const std::uint8_t> data) override;

    // Levels, pending, claimed and per-context enables/thresholds, for a hang diagnostic.
    std::string describe();

    // A device's wire changed level. Sources outside 1..31 are ignored.
    void set_level(unsigned source, bool high);

    // An IrqLine for one source.
    class Line final : public transport::IrqLine {
      public:
        Line(Plic& plic, unsigned source) : plic_(plic), source_(source) {}
        void set_level(bool high) override { plic_.set_level(source_, high); }

      private:
        Plic& plic_;
        unsigned source_;
    };

  private:
    std::uint32_t read_reg(std::uint64_t offset);
    void write_reg(std::uint64_t offset, std::uint32_t value);
    std::uint32_t claim(unsigned ctx);
    void update();  // recompute every context's output line (mu_ held)

    std::vector<HartIrq*> irqs_;
    unsigned contexts_;
    std::mutex mu_;
    std::uint32_t priority_[kPlicSources] = {};
    std::uint32_t level_ = 0;    // wire levels
    std::uint32_t pending_ = 0;  // gateway: pending until claimed
    std::uint32_t claimed_ = 0;  // in service: not re-pended until completed
    std::vector<std::uint32_t> enable_;
    std::vector<std::uint32_t> threshold_;
};

}  // namespace vireo::riscv
