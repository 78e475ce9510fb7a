// Transport-neutral virtio driver core: the Transport interface that virtio_mmio.hpp and
// virtio_pci.hpp implement, the initialisation sequence (§3.1.1), and Queue, which puts a
// SplitDriver or PackedDriver (src/driver) on a transport with interrupt or polled completion.
//
// Architecture-neutral and freestanding: only platform.hpp reaches the hardware.
#pragma once

#include <cstddef>
#include <cstdint>

#include "driver/packed_driver.hpp"
#include "driver/split_driver.hpp"
#include "drivers/platform.hpp"
#include "spec/virtio.hpp"
#include "virtq/features.hpp"
#include "virtq/queue_config.hpp"

namespace vireo::guest {

// The drivers are written in the spec's terms (src/spec: status bits, device IDs, registers,
// request and header layouts), the same definitions the host's devices and transports use.
using namespace spec;

namespace virtio {
// How long a device gets to finish a reset or an I/O before the driver gives up.
inline constexpr int kResetPollCap = 1000;
inline constexpr std::uint32_t kIoTimeoutMs = 5000;
inline constexpr int kConfigGenerationRetries = 8;
}  // namespace virtio

// What a test asks of a device: ring format and ring features, and interrupt or polled mode.
struct VirtioOptions {
    bool packed = false;     // VIRTIO_F_RING_PACKED (required when set)
    bool event_idx = false;  // VIRTIO_F_EVENT_IDX (required when set)
    bool indirect = false;   // VIRTIO_F_INDIRECT_DESC (required when set)
    bool irq = true;         // completion by interrupt; false: polling, interrupts never routed
    bool intx = false;       // virtio-pci: INTx instead of MSI-X
};

// One virtio device's transport. Objects live in static storage; no heap, no RTTI (plain
// virtual dispatch only).
class Transport {
  public:
    Transport() = default;
    Transport(const Transport&) = delete;
    Transport& operator=(const Transport&) = delete;

    virtual const char* name() const = 0;
    virtual std::uint32_t device_id() const = 0;
    virtual bool legacy() const { return false; }  // virtio-mmio version 1 (§4.2.4)

    virtual std::uint8_t status() = 0;
    virtual void set_status(std::uint8_t status) = 0;
    virtual std::uint64_t device_features() = 0;
    virtual void set_driver_features(std::uint64_t features) = 0;
    virtual std::uint16_t queue_max_size(std::uint16_t queue) = 0;  // 0: no such queue
    // Programs and enables a queue (size, ring addresses, interrupt vector); false if refused.
    virtual bool queue_enable(std::uint16_t queue, const virtq::QueueConfig& config) = 0;
    virtual void notify(std::uint16_t queue) = 0;

    virtual std::uint32_t config_generation() = 0;
    virtual std::uint32_t config_read(std::uint32_t offset, int width) = 0;  // width 1, 2 or 4

    // Interrupts: routes the device's interrupt to a CPU vector (MSI-X, INTx or the wired line
    // of an mmio slot). Called between FEATURES_OK and queue setup.
    virtual bool irq_setup(bool intx) = 0;
    // In the interrupt handler: reads and acknowledges the cause (level-triggered lines drop).
    // False when there was no cause (a level interrupt delivered again after its ack).
    virtual bool irq_ack() = 0;

    // §2.1.2 / §4.x: writing 0 resets; the driver waits for status to read back 0.
    bool reset() {
        set_status(0);
        for (int i = 0; i < virtio::kResetPollCap; ++i) {
            if (status() == 0) {
                return true;
            }
            platform::cpu_relax();
        }
        return false;
    }

    // §2.5.1: multi-field / 64-bit config reads are retried until ConfigGeneration is stable.
    std::uint64_t config_read64(std::uint32_t offset) {
        std::uint64_t v = 0;
        for (int i = 0; i < virtio::kConfigGenerationRetries; ++i) {
            const std::uint32_t before = config_generation();
            v = config_read(offset, 4) | (std::uint64_t{config_read(offset + 4, 4)} << 32);
            if (config_generation() == before) {
                break;
            }
        }
        return v;
    }

    std::uint32_t interrupts() const { return irq_count_; }
    std::uint32_t spurious_interrupts() const { return spurious_count_; }

  protected:
    ~Transport() = default;

    // Allocates a CPU vector whose handler acknowledges and counts this device's interrupts.
    int alloc_vector() {
        return platform::irq_alloc(
            [](void* ctx) {
                auto* t = static_cast<Transport*>(ctx);
                if (!t->irq_ack()) {
                    t->spurious_count_ = t->spurious_count_ + 1;
                }
                t->irq_count_ = t->irq_count_ + 1;
            },
            this);
    }

    // A device-configuration field of `width` bytes (1, 2 or 4) at `addr`, read with an access
    // of its own width (§4.1.3.1, §4.2.2.2).
    static std::uint32_t config_field(std::uint64_t addr, int width) {
        switch (width) {
            case 1:
                return mmio_read8(addr);
            case 2:
                return mmio_read16(addr);
            default:
                return mmio_read32(addr);
        }
    }

    // A 64-bit queue address into its pair of 32-bit registers, low half first (both transports
    // split them: virtio-mmio's QueueDescLow/High, virtio-pci's queue_desc).
    static void write_halves(std::uint64_t low_reg_addr, std::uint64_t v) {
        mmio_write32(low_reg_addr, static_cast<std::uint32_t>(v));
        mmio_write32(low_reg_addr + 4, static_cast<std::uint32_t>(v >> 32));
    }

  private:
    volatile std::uint32_t irq_count_ = 0;
    volatile std::uint32_t spurious_count_ = 0;
};

// §3.1.1 steps 1-6: reset, ACKNOWLEDGE, DRIVER, feature negotiation, FEATURES_OK and its
// read-back. `wanted` are optional device features; VERSION_1 (modern transports) and the ring
// features `opts` asks for must be offered. Returns false (status FAILED) when the device cannot
// be driven as asked.
inline bool virtio_negotiate(Transport& t, const VirtioOptions& opts, std::uint64_t wanted,
                             std::uint64_t* negotiated) {
    using virtq::bit;
    std::uint64_t required = 0;
    if (!t.reset()) {
        print("%s: reset did not complete\n", t.name());
        return false;
    }
    t.set_status(kStatusAcknowledge);
    t.set_status(kStatusAcknowledge | kStatusDriver);
    if (!t.legacy()) {
        required |= bit(virtq::kFVersion1);
    }
    if (opts.packed) {
        required |= bit(virtq::kFRingPacked);
    }
    if (opts.event_idx) {
        required |= bit(virtq::kFEventIdx);
    }
    if (opts.indirect) {
        required |= bit(virtq::kFIndirectDesc);
    }
    const std::uint64_t offered = t.device_features();
    if ((offered & required) != required) {
        print("%s: device offers %lx, test needs %lx\n", t.name(), offered, required);
        t.set_status(kStatusFailed);
        return false;
    }
    const std::uint64_t features = offered & (wanted | required);
    t.set_driver_features(features);
    if (!t.legacy()) {
        // §3.1.1 step 5-6: FEATURES_OK, then re-read: the device may refuse the subset.
        t.set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
        if ((t.status() & kStatusFeaturesOk) == 0) {
            print("%s: FEATURES_OK refused\n", t.name());
            t.set_status(kStatusFailed);
            return false;
        }
    }
    *negotiated = features;
    return true;
}

// §3.1.1 step 8.
inline bool virtio_driver_ok(Transport& t) {
    t.set_status(static_cast<std::uint8_t>(t.status() | kStatusDriverOk));
    const std::uint8_t s = t.status();
    if ((s & kStatusDriverOk) == 0 || (s & (kStatusNeedsReset | kStatusFailed)) != 0) {
        print("%s: DRIVER_OK not accepted (status %x)\n", t.name(), s);
        return false;
    }
    return true;
}

// The whole of §3.1.1 as every driver here does it: negotiation with `wanted` optional features
// (steps 1-6), the interrupt when `opts` asks for one, the device's queues (step 7: `init_queues`
// is called with the negotiated features and returns false on failure), DRIVER_OK (step 8).
template <typename InitQueues>
bool virtio_init(Transport& t, const VirtioOptions& opts, std::uint64_t wanted,
                 std::uint64_t* negotiated, InitQueues&& init_queues) {
    if (!virtio_negotiate(t, opts, wanted, negotiated)) {
        return false;
    }
    if (opts.irq && !t.irq_setup(opts.intx)) {
        print("%s: interrupt setup failed\n", t.name());
        return false;
    }
    return init_queues(*negotiated) && virtio_driver_ok(t);
}

// A virtqueue on a transport. `Capacity` caps the queue size; everything is static storage.
// The ring block is page aligned and laid out as §2.7's legacy layout with QueueAlign 4, so the
// same memory serves virtio-mmio version 1 (QueuePFN) and the modern transports.
template <std::uint16_t Capacity>
class Queue {
  public:
    static constexpr std::uint16_t kIndirectPerSlot = 4;
    static constexpr std::size_t kPage = 4096;

    constexpr Queue() = default;
    Queue(const Queue&) = delete;
    Queue& operator=(const Queue&) = delete;

    // Sets the queue up on the device (between FEATURES_OK and DRIVER_OK).
    bool init(Transport& t, std::uint16_t index, std::uint64_t negotiated, bool irq) {
        t_ = &t;
        index_ = index;
        irq_ = irq;
        packed_ = (negotiated & virtq::bit(virtq::kFRingPacked)) != 0;
        const std::uint16_t max = t.queue_max_size(index);
        if (max == 0) {
            print("%s: queue %u absent\n", t.name(), index);
            return false;
        }
        // Split sizes are powers of two; the largest one within both limits.
        std::uint16_t size = max < Capacity ? max : Capacity;
        if (!packed_) {
            while ((size & (size - 1)) != 0) {
                size = static_cast<std::uint16_t>(size & (size - 1));
            }
        }
        const auto features = driver::DriverFeatures::from_bits(negotiated);
        const driver::IndirectPool pool{pool_, sizeof pool_, kIndirectPerSlot};
        const driver::DriverError e =
            packed_
                ? packed_q_.init(size, features, platform::dma_window(), {ring_, sizeof ring_},
                                 pool)
                : split_.init(size, features, platform::dma_window(), {ring_, sizeof ring_}, pool);
        if (e != driver::DriverError::kOk) {
            print("%s: queue %u init: %s\n", t.name(), index, driver::to_string(e));
            return false;
        }
        if (!irq_) {
            disable_cb();  // polled: ask the device not to interrupt at all
        }
        if (!t.queue_enable(index, config())) {
            print("%s: queue %u refused by the device\n", t.name(), index);
            return false;
        }
        return true;
    }

    driver::DriverError add(driver::Segments out, driver::Segments in, void* token) {
        return packed_ ? packed_q_.add_buf(out, in, token) : split_.add_buf(out, in, token);
    }

    // Publishes staged buffers and notifies the device if it asked for it.
    void kick() {
        const bool notify = packed_ ? packed_q_.kick_prepare() : split_.kick_prepare();
        if (notify) {
            t_->notify(index_);
        }
    }

    void* get(std::uint32_t* len) { return packed_ ? packed_q_.get_buf(len) : split_.get_buf(len); }

    // Waits for the next completed buffer (interrupt or polling, as the queue was set up).
    // Null on timeout or when the device broke the queue (error() says which).
    void* wait(std::uint32_t* len, std::uint32_t timeout_ms = virtio::kIoTimeoutMs) {
        void* token = nullptr;
        if (irq_ && !enable_cb()) {
            token = get(len);  // already completed: its interrupt may have come and gone
            if (token != nullptr || broken()) {
                return token;
            }
        }
        wait_until(
            [&] {
                token = get(len);
                return token != nullptr || broken();
            },
            timeout_ms, irq_);
        return token;
    }

    // Adds one buffer, kicks, and waits for it; checks the device returned that buffer.
    bool transfer(driver::Segments out, driver::Segments in, std::uint32_t* len) {
        int token = 0;
        if (auto e = add(out, in, &token); e != driver::DriverError::kOk) {
            print("%s: queue %u add: %s\n", t_->name(), index_, driver::to_string(e));
            return false;
        }
        kick();
        void* got = wait(len);
        if (got != &token) {
            print("%s: queue %u: %s\n", t_->name(), index_,
                  got == nullptr ? (broken() ? driver::to_string(error()) : "timeout")
                                 : "unexpected buffer");
            return false;
        }
        return true;
    }

    bool enable_cb() { return packed_ ? packed_q_.enable_cb() : split_.enable_cb(); }
    void disable_cb() {
        if (packed_) {
            packed_q_.disable_cb();
        } else {
            split_.disable_cb();
        }
    }
    driver::DriverError error() const { return packed_ ? packed_q_.error() : split_.error(); }
    bool broken() const { return packed_ ? packed_q_.broken() : split_.broken(); }
    std::uint16_t size() const { return packed_ ? packed_q_.size() : split_.size(); }
    bool packed() const { return packed_; }
    virtq::QueueConfig config() const { return packed_ ? packed_q_.config() : split_.config(); }

  private:
    static constexpr std::size_t max(std::size_t a, std::size_t b) { return a > b ? a : b; }
    static constexpr std::size_t kRingBytes =
        (max(driver::split_ring_bytes(Capacity), driver::packed_ring_bytes(Capacity)) + kPage - 1) &
        ~(kPage - 1);

    Transport* t_ = nullptr;
    std::uint16_t index_ = 0;
    bool irq_ = false;
    bool packed_ = false;
    driver::SplitDriver<Capacity> split_;
    driver::PackedDriver<Capacity> packed_q_;
    alignas(kPage) std::uint8_t ring_[kRingBytes] = {};
    alignas(16) std::uint8_t pool_[driver::indirect_pool_bytes(Capacity, kIndirectPerSlot)] = {};
};

// Identity: the device address of a driver object (DMA window of this platform).
template <typename T>
inline std::uint64_t dma_addr(const T* p) {
    return platform::dma_window().to_device(p);
}

}  // namespace vireo::guest
