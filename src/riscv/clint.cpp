#include "riscv/clint.hpp"

#include <cstring>

namespace vireo::riscv {

namespace {
// Reads `data.size()` bytes at byte `off` of the little-endian value `v`.
void read_part(std::uint64_t v, std::uint64_t off, std::span<std::uint8_t> data) {
    const std::uint64_t shifted = off < 8 ? v >> (off * 8) : 0;
    std::memcpy(data.data(), &shifted, std::min<std::size_t>(data.size(), 8));
}
// Replaces `data.size()` bytes at byte `off` of `v`.
std::uint64_t write_part(std::uint64_t v, std::uint64_t off, std::span<const std::uint8_t> data) {
    if (off >= 8 || off + data.size() > 8) return v;
    std::uint64_t in = 0;
    std::memcpy(&in, data.data(), data.size());
    const std::uint64_t mask = (data.size() == 8 ? ~0ull : ((1ull << (data.size() * 8)) - 1))
                               << (off * 8);
    return (v & ~mask) | ((in << (off * 8)) & mask);
}
}  // namespace

Clint::Clint(const TimeBase& time, std::span<HartIrq* const> irqs)
    : time_(time), irqs_(irqs.begin(), irqs.end()) {}

void Clint::read(std::uint64_t offset, std::span<std::uint8_t> data) {
    std::memset(data.data(), 0, data.size());
    const std::uint64_t n = irqs_.size();
    if (offset < kClintMsip + 4 * n) {
        const std::uint64_t h = offset / 4;
        read_part((irqs_[h]->pending() & irq::kMsip) ? 1 : 0, offset % 4, data);
    } else if (offset >= kClintMtimecmp && offset < kClintMtimecmp + 8 * n) {
        const std::uint64_t h = (offset - kClintMtimecmp) / 8;
        read_part(irqs_[h]->mtimecmp().load(std::memory_order_acquire), offset % 8, data);
    } else if (offset >= kClintMtime && offset < kClintMtime + 8) {
        read_part(time_.now(), offset - kClintMtime, data);
    }
}

void Clint::write(std::uint64_t offset, std::span<const std::uint8_t> data) {
    const std::uint64_t n = irqs_.size();
    if (offset < kClintMsip + 4 * n) {
        if (offset % 4 == 0) {
            irqs_[offset / 4]->set(irq::kMsip, (data[0] & 1) != 0);
        }
    } else if (offset >= kClintMtimecmp && offset < kClintMtimecmp + 8 * n) {
        HartIrq& h = *irqs_[(offset - kClintMtimecmp) / 8];
        // RV64 software writes it whole; a 32-bit half write is merged into the old value.
        h.set_mtimecmp(write_part(h.mtimecmp().load(std::memory_order_acquire), offset % 8, data));
    }
    // mtime is read-only here: guest time follows the host clock.
}

}  // namespace vireo::riscv
