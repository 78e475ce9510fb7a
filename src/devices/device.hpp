// The contract between a device model and whatever transport reaches it (vhost-user, virtio-mmio,
// virtio-pci, the hypervisor bridge). A device model never knows its transport: it sees feature
// bits, a config space, and running queues it pops chains from and pushes used chains to.
#pragma once

#include <cstdint>
#include <expected>
#include <memory>
#include <span>

#include "memory/guest_memory.hpp"
#include "spec/virtio.hpp"
#include "virtq/virtqueue.hpp"

namespace vireo::dev {

// Device models are written in the spec's terms (src/spec: device IDs, feature bits, request
// and configuration layouts): dev::kBlkTIn is spec::kBlkTIn.
using namespace spec;

// How a queue tells the driver that used buffers are ready (an eventfd write, an injected IRQ).
class Interrupt {
  public:
    virtual ~Interrupt() = default;
    virtual void signal() = 0;
};

// Tracks chains between pop and push so a restarted back end can resubmit them (vhost-user
// inflight I/O tracking). Optional: transports without it pass nullptr.
class InflightTracker {
  public:
    virtual ~InflightTracker() = default;
    virtual void on_pop(virtq::UsedToken token) = 0;
    virtual void on_push(virtq::UsedToken token) = 0;
    virtual void on_publish() = 0;
};

// A running queue as a device sees it. Only the thread that runs the queue's handler touches it.
class QueueHandle {
  public:
    QueueHandle(const GuestMemory& mem, virtq::Virtqueue& vq, Interrupt& irq,
                InflightTracker* inflight = nullptr)
        : mem_(&mem), vq_(&vq), irq_(&irq), inflight_(inflight) {}

    const GuestMemory& memory() const { return *mem_; }
    virtq::Virtqueue& queue() { return *vq_; }

    std::expected<bool, virtq::QueueError> pop(virtq::DescriptorChain& out) {
        auto r = vq_->pop(*mem_, out);
        if (inflight_ != nullptr && r && *r) {
            inflight_->on_pop(out.token());
        }
        return r;
    }
    void push(virtq::UsedToken token, std::uint32_t len) {
        vq_->push(token, len);
        if (inflight_ != nullptr) {
            inflight_->on_push(token);
        }
    }
    // Publishes what was pushed and interrupts the driver if it asked for it.
    void publish_and_notify() {
        const bool notify = vq_->publish();
        if (inflight_ != nullptr) {
            inflight_->on_publish();
        }
        if (notify) {
            irq_->signal();
        }
    }

  private:
    const GuestMemory* mem_;
    virtq::Virtqueue* vq_;
    Interrupt* irq_;
    InflightTracker* inflight_;
};

// Serves one queue. The transport runs it on one thread with run_queue_loop (queue_loop.hpp):
// on_kick() when the driver notifies, on_event() when event_fd() (if any, e.g. io_uring
// completions) becomes readable.
class QueueHandler {
  public:
    virtual ~QueueHandler() = default;
    virtual void on_kick() = 0;
    virtual int event_fd() const { return -1; }
    virtual void on_event() {}
    // Optional single wait point. A handler that can wait on the driver's kick eventfd and the
    // transport's stop eventfd itself (e.g. in the io_uring that runs its I/O, so one system call
    // both submits and sleeps) serves the queue here: it behaves as if on_kick() ran whenever
    // kick_fd was signalled (consuming the signal) and once at the start, handles its own events,
    // and returns true once stop_fd is readable or needs_reset() holds. It returns false at once,
    // having consumed nothing, if it cannot: the transport then runs its own loop. Either way the
    // transport calls drain() afterwards.
    virtual bool run(int /*kick_fd*/, int /*stop_fd*/) { return false; }
    // Completes (or fails) everything in flight and publishes it; called before the queue stops
    // (vhost-user GET_VRING_BASE, device reset, shutdown). Must not leave a chain unanswered.
    virtual void drain() = 0;
    // True once the queue met a malformed ring (a virtq::QueueError) and stopped: the transport
    // should set DEVICE_NEEDS_RESET (§2.1.2) and notify a configuration change.
    virtual bool needs_reset() const { return false; }
};

class VirtioDevice {
  public:
    virtual ~VirtioDevice() = default;

    virtual std::uint32_t device_id() const = 0;
    // Device-specific feature bits plus the transport-independent ones the model supports
    // (VERSION_1, RING_PACKED, EVENT_IDX, INDIRECT_DESC, …).
    virtual std::uint64_t device_features() const = 0;
    virtual std::uint16_t num_queues() const = 0;
    virtual std::uint16_t max_queue_size() const = 0;

    // Device configuration space (§4.x "device-specific configuration"). Reads may be at any
    // offset and width the transport allows; writes only where the device spec permits.
    virtual std::span<const std::uint8_t> config() const = 0;
    virtual void write_config(std::uint32_t /*offset*/, std::span<const std::uint8_t> /*data*/) {}

    // The driver's accepted features, before any queue starts.
    virtual void set_features(std::uint64_t negotiated) = 0;
    // Creates the handler for a queue that the driver made ready. `q` stays valid until the
    // handler is destroyed.
    virtual std::unique_ptr<QueueHandler> start_queue(std::uint16_t index, QueueHandle q) = 0;
    // Device reset (§2.4): every queue handler has been drained and destroyed before this.
    virtual void reset() {}
};

}  // namespace vireo::dev
