// The core-local interruptor (SiFive CLINT layout, as on QEMU virt): per-hart msip (machine
// software interrupt) and mtimecmp, and the shared mtime counter.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "riscv/hart.hpp"
#include "transport/bus.hpp"

namespace vireo::riscv {

inline constexpr std::uint64_t kClintMsip = 0x0000;      // 4 bytes per hart
inline constexpr std::uint64_t kClintMtimecmp = 0x4000;  // 8 bytes per hart
inline constexpr std::uint64_t kClintMtime = 0xbff8;
inline constexpr std::uint64_t kClintSize = 0x10000;

class Clint final : public transport::BusDevice {
  public:
    // irqs[i] belongs to hart i; the vector must outlive the CLINT.
    Clint(const TimeBase& time, std::span<HartIrq* const> irqs);

    void read(std::uint64_t offset, std::span<std::uint8_t> data) override;
    void write(std::uint64_t offset, std::span<const std::uint8_t> data) override;

  private:
    const TimeBase& time_;
    std::vector<HartIrq*> irqs_;
};

}  // namespace vireo::riscv
