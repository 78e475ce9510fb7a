// What virtio-mmio and virtio-pci share (§2, §3): device status and its transition table,
// feature negotiation, the per-queue register file, queue start/stop with one worker thread
// per running queue, device configuration access with a generation counter, and
// DEVICE_NEEDS_RESET. The transports only map their register layouts onto this.
//
// Threading: everything except notify() is called with the owning transport's register lock
// held (one vCPU at a time). Queue workers never take that lock: they reach the transport
// only through VirtioSignals (used-buffer and configuration-change interrupts).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "devices/device.hpp"
#include "memory/guest_memory.hpp"
#include "memory/unique_fd.hpp"
#include "spec/virtio_pci.hpp"
#include "transport/device_status.hpp"
#include "transport/queue_worker.hpp"
#include "virtq/virtqueue.hpp"

namespace vireo::transport {

// How the core asks its transport to interrupt the driver. Called from queue worker threads
// (used buffers, a broken queue) and from vCPU threads (configuration writes).
class VirtioSignals {
  public:
    virtual ~VirtioSignals() = default;
    virtual void used_buffer(std::uint16_t queue) = 0;
    virtual void config_change() = 0;
};

struct QueueRegs {
    std::uint16_t size = 0;  // driver's choice; reset to the maximum (§4.1.4.3, §4.2.2)
    std::uint64_t desc = 0;
    std::uint64_t driver = 0;
    std::uint64_t device = 0;
    bool ready = false;
    std::uint16_t msix_vector = kNoVector;  // virtio-pci only
};

class VirtioCore {
  public:
    // `legacy`: virtio-mmio version 1 rules (no FEATURES_OK, 32 feature bits, PFN rings).
    VirtioCore(dev::VirtioDevice& device, const GuestMemory& mem, VirtioSignals& signals,
               bool legacy);
    ~VirtioCore();
    VirtioCore(const VirtioCore&) = delete;
    VirtioCore& operator=(const VirtioCore&) = delete;

    dev::VirtioDevice& device() { return device_; }
    bool legacy() const { return legacy_; }

    // --- features (§2.2) -------------------------------------------------------------------
    std::uint64_t offered_features() const { return offered_; }
    std::uint32_t device_features_word(std::uint32_t sel) const;
    std::uint32_t driver_features_word(std::uint32_t sel) const;
    // Ignored (logged) outside the negotiation window: DRIVER set, FEATURES_OK not yet.
    void write_driver_features_word(std::uint32_t sel, std::uint32_t value);
    std::uint64_t negotiated() const { return committed_ ? driver_features_ : 0; }
    bool has_feature(unsigned bit) const { return (negotiated() >> bit) & 1; }

    // --- status (§2.1) ---------------------------------------------------------------------
    std::uint8_t status() const;
    // Applies the transition table; returns what happened (kReset: the core is back to its
    // initial state and the transport must clear its own interrupt state).
    StatusChange write_status(std::uint8_t value);
    bool driver_ok() const { return (status_ & kStatusDriverOk) != 0; }

    // --- queues (§2.6) -----------------------------------------------------------------------
    std::uint16_t num_queues() const { return static_cast<std::uint16_t>(queues_.size()); }
    std::uint16_t max_queue_size() const { return max_size_; }
    // The register file of queue q; nullptr if q is out of range (a hostile QueueSel).
    const QueueRegs* queue(std::uint16_t q) const;
    // The register file for a write; nullptr (logged) if q is out of range or its registers
    // are frozen: the queue is ready, features are not settled, or the driver is running and
    // VIRTIO_F_RING_RESET was not negotiated.
    QueueRegs* writable_queue(std::uint16_t q, const char* reg);
    // QueueReady / queue_enable. true validates the geometry (§2.7 size rules, ring placement
    // in guest memory) and refuses the queue if it is invalid; false stops the queue.
    bool set_queue_ready(std::uint16_t q, bool ready);
    // §2.6.1 queue reset (VIRTIO_F_RING_RESET): stop and return the registers to defaults.
    void reset_queue(std::uint16_t q);
    // Available-buffer notification: wakes the queue's worker. Lock-free; callable anywhere.
    void notify(std::uint16_t q) const;
    // The eventfd a notification signals (for a KVM ioeventfd); -1 if q is out of range.
    int notify_fd(std::uint16_t q) const;

    // --- device configuration (§2.5) -------------------------------------------------------
    void read_config(std::uint64_t offset, std::span<std::uint8_t> out);
    void write_config(std::uint64_t offset, std::span<const std::uint8_t> data);
    std::uint32_t config_size() const;
    // Bumps the generation if the device's configuration changed since it was last seen.
    std::uint32_t config_generation();
    // The device owner changed the configuration (e.g. a resized disk): bump and interrupt.
    void config_changed();

  private:
    struct Queue;
    void commit_features();
    void start_queue(Queue& q);
    void stop_queue(Queue& q);
    void reset();
    void refresh_generation();

    dev::VirtioDevice& device_;
    const GuestMemory& mem_;
    VirtioSignals& signals_;
    const bool legacy_;
    const std::uint64_t offered_;
    const std::uint16_t max_size_;

    std::uint8_t status_ = 0;
    std::atomic<bool> needs_reset_{false};  // set by a worker whose queue broke
    std::uint64_t driver_features_ = 0;
    bool committed_ = false;  // set_features() called for this negotiation
    std::vector<std::unique_ptr<Queue>> queues_;
    std::uint32_t generation_ = 0;
    std::vector<std::uint8_t> config_seen_;
};

}  // namespace vireo::transport
