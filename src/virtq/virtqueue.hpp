// The device-side virtqueue that device models use: one interface over both ring formats, the
// format chosen by the negotiated VIRTIO_F_RING_PACKED at activation.
//
// The queue holds ring state only; guest memory is passed into each call that touches buffers
// (as in rust-vmm's virtio-queue), so ownership stays with the transport.
#pragma once

#include <algorithm>
#include <cstdint>
#include <expected>
#include <variant>
#include <vector>

#include "virtq/packed_queue.hpp"
#include "virtq/split_queue.hpp"

namespace vireo::virtq {

class Virtqueue {
  public:
    std::expected<void, QueueError> activate(const GuestMemory& mem, const QueueConfig& cfg,
                                             QueueFeatures features) {
        if (features.packed) {
            return ring_.emplace<PackedQueue>().activate(mem, cfg, features);
        }
        return ring_.emplace<SplitQueue>().activate(mem, cfg, features);
    }
    // Queue reset (§2.6.1 VIRTIO_F_RING_RESET, and device reset): forget all ring state.
    void reset() {
        ring_.emplace<std::monostate>();
        resubmit_.clear();
        resubmit_packed_.clear();
    }
    // Split rings: heads of chains to hand out again, in this order, before any new chain
    // (vhost-user inflight I/O recovery after a back-end restart). Set after activate/restore.
    void set_resubmit(std::vector<std::uint16_t> heads) {
        resubmit_ = std::move(heads);
        std::reverse(resubmit_.begin(), resubmit_.end());  // popped from the back
    }
    // Packed rings: the same, with each chain given by saved copies of its descriptors.
    void set_resubmit(std::vector<std::vector<PackedDesc>> chains) {
        resubmit_packed_ = std::move(chains);
        std::reverse(resubmit_packed_.begin(), resubmit_packed_.end());
    }
    bool ready() const { return !std::holds_alternative<std::monostate>(ring_) && !broken(); }
    bool broken() const {
        return visit([](const auto& q) { return q.broken(); }, false);
    }
    bool packed() const { return std::holds_alternative<PackedQueue>(ring_); }

    std::expected<bool, QueueError> pop(const GuestMemory& mem, DescriptorChain& out) {
        if (auto* s = std::get_if<SplitQueue>(&ring_)) [[likely]] {
            if (!resubmit_.empty()) [[unlikely]] {
                return pop_resubmitted(*s, mem, out);
            }
            return s->pop(mem, out);
        }
        if (auto* p = std::get_if<PackedQueue>(&ring_)) {
            if (!resubmit_packed_.empty()) [[unlikely]] {
                return pop_resubmitted(*p, mem, out);
            }
            return p->pop(mem, out);
        }
        return std::unexpected(QueueError::kNotReady);
    }
    void push(UsedToken token, std::uint32_t len) {
        visit([&](auto& q) { q.push(token, len); });
    }
    bool publish() {
        return visit([](auto& q) { return q.publish(); }, false);
    }
    void disable_notifications() {
        visit([](auto& q) { q.disable_notifications(); });
    }
    bool enable_notifications() {
        return visit([](auto& q) { return q.enable_notifications(); }, false);
    }

    std::expected<QueueState, QueueError> save() const {
        return visit(
            [](const auto& q) -> std::expected<QueueState, QueueError> { return q.save(); },
            std::expected<QueueState, QueueError>(std::unexpect, QueueError::kNotReady));
    }
    std::expected<void, QueueError> restore(const GuestMemory& mem, const QueueState& state) {
        if (state.features.packed) {
            return ring_.emplace<PackedQueue>().restore(mem, state);
        }
        return ring_.emplace<SplitQueue>().restore(mem, state);
    }
    // The avail position vhost-user GET_VRING_BASE reports (packed: wrap counter in bit 15).
    std::uint16_t next_avail() const {
        return visit([](const auto& q) { return q.next_avail(); }, std::uint16_t{0});
    }
    std::uint16_t size() const {
        return visit([](const auto& q) { return q.size(); }, std::uint16_t{0});
    }

  private:
    std::expected<bool, QueueError> pop_resubmitted(SplitQueue& s, const GuestMemory& mem,
                                                    DescriptorChain& out) {
        const std::uint16_t head = resubmit_.back();
        resubmit_.pop_back();
        if (auto ok = s.chain_at(mem, head, out); !ok) {
            return std::unexpected(ok.error());
        }
        return true;
    }

    std::expected<bool, QueueError> pop_resubmitted(PackedQueue& p, const GuestMemory& mem,
                                                    DescriptorChain& out) {
        const std::vector<PackedDesc> descs = std::move(resubmit_packed_.back());
        resubmit_packed_.pop_back();
        if (auto ok = p.chain_from(mem, descs, out); !ok) {
            return std::unexpected(ok.error());
        }
        return true;
    }

    // Calls f on the active ring; returns `none` when no ring is active.
    template <typename F, typename R>
    R visit(F&& f, R none) const {
        return visit_ring(*this, f, none);
    }
    template <typename F, typename R>
    R visit(F&& f, R none) {
        return visit_ring(*this, f, none);
    }
    template <typename F>
    void visit(F&& f) {
        visit_ring(
            *this, [&](auto& q) { return f(q), 0; }, 0);
    }
    template <typename Self, typename F, typename R>
    static R visit_ring(Self& self, F&& f, R none) {
        if (auto* s = std::get_if<SplitQueue>(&self.ring_)) {
            return f(*s);
        }
        if (auto* p = std::get_if<PackedQueue>(&self.ring_)) {
            return f(*p);
        }
        return none;
    }

    std::variant<std::monostate, SplitQueue, PackedQueue> ring_;
    std::vector<std::uint16_t> resubmit_;  // reversed: the next head is at the back
    std::vector<std::vector<PackedDesc>> resubmit_packed_;  // reversed likewise
};

}  // namespace vireo::virtq
