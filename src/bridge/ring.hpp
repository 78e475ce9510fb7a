// Views over a bridge area (protocol.hpp): the two MPSC rings, the reply slots, the doorbells.
//
// Nothing here trusts the area: the other process may write anything at any time. Positions
// are re-derived from our own counters where we own them, every cell index is masked, and the
// consumer only takes a cell whose sequence number is exactly the one it expects.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <expected>
#include <optional>
#include <span>
#include <string>

#include "bridge/protocol.hpp"
#include "memory/unique_fd.hpp"

namespace vireo::bridge {

template <typename T>
std::atomic_ref<T> aref(T& v) {
    return std::atomic_ref<T>(v);
}

// A bounded multi-producer, single-consumer ring of T in shared memory.
template <typename T>
class Ring {
  public:
    Ring() = default;
    Ring(RingControl* ctl, Cell<T>* cells, std::uint32_t entries)
        : ctl_(ctl), cells_(cells), mask_(entries - 1) {}

    // Initialises an empty ring (the area's creator only).
    void init() {
        aref(ctl_->tail).store(0, std::memory_order_relaxed);
        aref(ctl_->head).store(0, std::memory_order_relaxed);
        aref(ctl_->need_wakeup).store(0, std::memory_order_relaxed);
        for (std::uint64_t i = 0; i <= mask_; ++i) {
            aref(cells_[i].seq).store(i, std::memory_order_relaxed);
        }
        std::atomic_thread_fence(std::memory_order_release);
    }

    // Producer: false when the ring is full (back-pressure; the caller retries after kicking the
    // consumer). Lock-free: producers race only on the CAS of `tail`.
    bool try_push(const T& v) {
        std::uint64_t pos = aref(ctl_->tail).load(std::memory_order_relaxed);
        for (int spins = 0; spins < kMaxCasRetries; ++spins) {
            Cell<T>& c = cells_[pos & mask_];
            const std::uint64_t seq = aref(c.seq).load(std::memory_order_acquire);
            const auto dif = static_cast<std::int64_t>(seq - pos);
            if (dif == 0) {
                if (aref(ctl_->tail)
                        .compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
                    std::memcpy(&c.payload, &v, sizeof(T));
                    // Release: the payload is visible before the consumer sees the sequence.
                    aref(c.seq).store(pos + 1, std::memory_order_release);
                    return true;
                }
            } else if (dif < 0) {
                return false;  // the cell one lap behind is not consumed yet: full
            } else {
                pos = aref(ctl_->tail).load(std::memory_order_relaxed);
            }
        }
        return false;  // a peer that keeps moving `tail` (or garbage in it): treat as full
    }

    // Consumer: the next entry, if one is published. `head` is the consumer's own counter; the
    // copy in shared memory is informational only.
    std::optional<T> try_pop() {
        Cell<T>& c = cells_[head_ & mask_];
        const std::uint64_t seq = aref(c.seq).load(std::memory_order_acquire);
        if (seq != head_ + 1) {
            return std::nullopt;
        }
        T v;
        std::memcpy(&v, &c.payload, sizeof(T));
        // Release: our read of the payload completes before a producer may overwrite it.
        aref(c.seq).store(head_ + mask_ + 1, std::memory_order_release);
        ++head_;
        aref(ctl_->head).store(head_, std::memory_order_relaxed);
        return v;
    }

    bool empty() const {
        const Cell<T>& c = cells_[head_ & mask_];
        return aref(const_cast<std::uint64_t&>(c.seq)).load(std::memory_order_acquire) != head_ + 1;
    }

    // --- need-wakeup protocol -----------------------------------------------------------
    // Consumer, before sleeping: set the flag, then re-check (empty()) — a producer that pushed
    // before seeing the flag is caught by the re-check, one that pushed after sees the flag.
    void set_need_wakeup(bool v) {
        aref(ctl_->need_wakeup).store(v ? 1 : 0, std::memory_order_seq_cst);
    }
    // Producer, after a push: whether to ring the doorbell. The seq_cst fence orders our
    // publication before the flag load (pairs with the consumer's seq_cst store + re-check).
    bool needs_wakeup() const {
        std::atomic_thread_fence(std::memory_order_seq_cst);
        return aref(ctl_->need_wakeup).load(std::memory_order_relaxed) != 0;
    }

    std::uint32_t capacity() const { return static_cast<std::uint32_t>(mask_ + 1); }

  private:
    static constexpr int kMaxCasRetries = 1 << 16;
    RingControl* ctl_ = nullptr;
    Cell<T>* cells_ = nullptr;
    std::uint64_t mask_ = 0;
    std::uint64_t head_ = 0;  // consumer side only
};

// The bridge area mapped in this process.
class Area {
  public:
    // Creates a zeroed memfd-backed area for the given sizes (daemon side). Entries must be
    // powers of two in 1..kMaxRingEntries, vcpus in 1..kMaxVcpus.
    static std::expected<Area, std::string> create(std::uint32_t vm_id, std::uint32_t vcpus,
                                                   std::uint32_t req_entries,
                                                   std::uint32_t irq_entries);
    // Maps an area received from the daemon and checks its header (hypervisor side).
    static std::expected<Area, std::string> attach(UniqueFd fd, std::uint64_t size);

    Area() = default;
    Area(Area&& o) noexcept;
    Area& operator=(Area&& o) noexcept;
    ~Area();

    int fd() const { return fd_.get(); }
    std::uint64_t size() const { return size_; }
    std::uint32_t vm_id() const { return vm_id_; }
    std::uint32_t vcpus() const { return vcpus_; }
    Ring<Request>& requests() { return req_; }
    Ring<IrqRequest>& irqs() { return irq_; }
    ReplySlot& slot(std::uint32_t vcpu) { return slots_[vcpu]; }  // vcpu < vcpus() checked
    Header& header() { return *reinterpret_cast<Header*>(base_); }

  private:
    std::expected<void, std::string> bind(bool init);

    UniqueFd fd_;
    std::uint8_t* base_ = nullptr;
    std::uint64_t size_ = 0;
    std::uint32_t vm_id_ = 0;
    std::uint32_t vcpus_ = 0;
    Ring<Request> req_;
    Ring<IrqRequest> irq_;
    ReplySlot* slots_ = nullptr;
};

// Doorbells and futexes.
UniqueFd make_eventfd();
void ring_doorbell(int efd);
void drain_doorbell(int efd);
// FUTEX_WAIT on a shared word while it equals `expected`, at most `timeout_ns`.
void futex_wait(std::uint32_t& word, std::uint32_t expected, long timeout_ns);
void futex_wake(std::uint32_t& word);

// Size validity shared by both sides.
bool valid_access_size(std::uint32_t size);

}  // namespace vireo::bridge
