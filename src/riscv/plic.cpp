#include "riscv/plic.hpp"

#include <cstdio>
#include <cstring>

namespace vireo::riscv {

Plic::Plic(std::span<HartIrq* const> irqs)
    : irqs_(irqs.begin(), irqs.end()),
      contexts_(static_cast<unsigned>(irqs.size() * 2)),
      enable_(contexts_, 0),
      threshold_(contexts_, 0) {}

void Plic::set_level(unsigned source, bool high) {
    if (source == 0 || source >= kPlicSources) return;
    const std::lock_guard lock(mu_);
    const std::uint32_t bit = 1u << source;
    if (high) {
        level_ |= bit;
        if ((claimed_ & bit) == 0) pending_ |= bit;
    } else {
        // Level-triggered: a wire that dropped before being claimed is no longer pending.
        level_ &= ~bit;
        pending_ &= ~bit;
    }
    update();
}

std::string Plic::describe() {
    const std::lock_guard lock(mu_);
    char buf[128];
    std::snprintf(buf, sizeof buf, "plic: level=%#x pending=%#x claimed=%#x", level_, pending_,
                  claimed_);
    std::string out = buf;
    for (unsigned ctx = 0; ctx < contexts_; ++ctx) {
        std::snprintf(buf, sizeof buf, " ctx%u(en=%#x thr=%u)", ctx, enable_[ctx], threshold_[ctx]);
        out += buf;
    }
    return out;
}

void Plic::update() {
    for (unsigned ctx = 0; ctx < contexts_; ++ctx) {
        bool any = false;
        const std::uint32_t cand = pending_ & enable_[ctx];
        for (unsigned s = 1; s < kPlicSources && !any; ++s) {
            any = ((cand >> s) & 1) != 0 && priority_[s] > threshold_[ctx];
        }
        irqs_[ctx / 2]->set(ctx % 2 == 0 ? irq::kMeip : irq::kSeip, any);
    }
}

// Claim (PLIC spec §8): the highest-priority pending enabled source above the threshold, ties
// to the lowest id; 0 if none.
std::uint32_t Plic::claim(unsigned ctx) {
    const std::uint32_t cand = pending_ & enable_[ctx];
    std::uint32_t best = 0, best_prio = threshold_[ctx];
    for (unsigned s = 1; s < kPlicSources; ++s) {
        if (((cand >> s) & 1) != 0 && priority_[s] > best_prio) {
            best = s;
            best_prio = priority_[s];
        }
    }
    if (best != 0) {
        pending_ &= ~(1u << best);
        claimed_ |= 1u << best;
        update();
    }
    return best;
}

std::uint32_t Plic::read_reg(std::uint64_t offset) {
    const std::lock_guard lock(mu_);
    if (offset < kPlicPending) {
        const std::uint64_t s = offset / 4;
        return s < kPlicSources ? priority_[s] : 0;
    }
    if (offset < kPlicEnable) {
        return offset == kPlicPending ? pending_ : 0;
    }
    if (offset < kPlicContext) {
        const std::uint64_t ctx = (offset - kPlicEnable) / kPlicEnableStride;
        const std::uint64_t word = (offset - kPlicEnable) % kPlicEnableStride;
        return (ctx < contexts_ && word == 0) ? enable_[ctx] : 0;
    }
    const std::uint64_t ctx = (offset - kPlicContext) / kPlicContextStride;
    const std::uint64_t reg = (offset - kPlicContext) % kPlicContextStride;
    if (ctx >= contexts_) return 0;
    if (reg == 0) return threshold_[ctx];
    if (reg == kPlicClaim) return claim(static_cast<unsigned>(ctx));
    return 0;
}

void Plic::write_reg(std::uint64_t offset, std::uint32_t value) {
    const std::lock_guard lock(mu_);
    if (offset < kPlicPending) {
        const std::uint64_t s = offset / 4;
        if (s > 0 && s < kPlicSources) priority_[s] = value & kPlicMaxPriority;
    } else if (offset >= kPlicEnable && offset < kPlicContext) {
        const std::uint64_t ctx = (offset - kPlicEnable) / kPlicEnableStride;
        const std::uint64_t word = (offset - kPlicEnable) % kPlicEnableStride;
        if (ctx < contexts_ && word == 0) enable_[ctx] = value & ~1u;  // source 0 does not exist
    } else if (offset >= kPlicContext) {
        const std::uint64_t ctx = (offset - kPlicContext) / kPlicContextStride;
        const std::uint64_t reg = (offset - kPlicContext) % kPlicContextStride;
        if (ctx >= contexts_) return;
        if (reg == 0) {
            threshold_[ctx] = value & kPlicMaxPriority;
        } else if (reg == kPlicClaim) {
            // Completion: the gateway may forward the source again; a wire still high re-pends.
            if (value == 0 || value >= kPlicSources) return;
            const std::uint32_t bit = 1u << value;
            claimed_ &= ~bit;
            if (level_ & bit) pending_ |= bit;
        } else {
            return;
        }
    } else {
        return;
    }
    update();
}

void Plic::read(std::uint64_t offset, std::span<std::uint8_t> data) {
    std::memset(data.data(), 0, data.size());
    if (data.size() != 4 || offset % 4 != 0) return;  // 32-bit registers only
    const std::uint32_t v = read_reg(offset);
    std::memcpy(data.data(), &v, 4);
}

void Plic::write(std::uint64_t offset, std::span<const std::uint8_t> data) {
    if (data.size() != 4 || offset % 4 != 0) return;
    std::uint32_t v;
    std::memcpy(&v, data.data(), 4);
    write_reg(offset, v);
}

}  // namespace vireo::riscv
