// One thread per running queue: it owns the queue's QueueHandler while it runs and serves it
// with the devices layer's queue loop (devices/queue_loop.hpp) on the queue's notify eventfd
// (which the VMM may register as a KVM ioeventfd, so a guest kick wakes this thread without a
// trip through user space on the vCPU), the handler's own event_fd() and a stop eventfd — or in
// the handler's own wait point (virtio-blk's io_uring) when it has one.
#pragma once

#include <atomic>
#include <functional>
#include <thread>

#include "devices/device.hpp"
#include "memory/unique_fd.hpp"

namespace vireo::transport {

class QueueWorker {
  public:
    QueueWorker() = default;
    ~QueueWorker() { stop(); }
    QueueWorker(const QueueWorker&) = delete;
    QueueWorker& operator=(const QueueWorker&) = delete;

    // Starts the thread. `broken` is polled after every batch (the queue met a malformed ring);
    // then the worker drains the handler, calls `on_broken` on its own thread and idles until
    // stop(). False if the eventfd/thread could not be created (nothing runs then).
    bool start(dev::QueueHandler& handler, int kick_fd, std::function<bool()> broken,
               std::function<void()> on_broken);
    // Stops the thread; the handler has been drained (QueueHandler::drain) when this returns.
    // Idempotent. Must not be called from the worker itself.
    void stop();
    bool running() const { return thread_.joinable(); }

  private:
    void run(dev::QueueHandler& handler, int kick_fd, const std::function<bool()>& broken,
             const std::function<void()>& on_broken);

    UniqueFd stop_;
    // Set before stop_ is signalled: the handler's own wait point may consume the eventfd's
    // count (blk's io_uring reads it), so a worker idling after a broken queue checks this.
    std::atomic<bool> stopping_{false};
    std::thread thread_;
};

}  // namespace vireo::transport
