// The one event loop that serves a queue on its worker thread, for every transport (the VMM's
// virtio-mmio/pci queue workers, the vhost-user back end's ring workers).
//
// It sleeps in epoll on the driver's kick eventfd, the handler's own event_fd() (e.g. io_uring
// completions) and the transport's stop eventfd, or — when the handler offers it — lets the
// handler wait on the kick and stop eventfds itself (QueueHandler::run: virtio-blk's io_uring
// engine submits its I/O and sleeps in one io_uring_enter). Without a kick eventfd (vhost-user
// SET_VRING_KICK with the "no fd" flag) it polls the ring instead.
#pragma once

#include <functional>

#include "devices/device.hpp"

namespace vireo::dev {

// How a queue loop ended. The handler has been drained (QueueHandler::drain) in every case.
struct QueueLoopEnd {
    enum class Reason {
        kStopped,  // stop_fd became readable; the queue may be broken too (callers that care ask)
        kBroken,   // broken() held; a stop may have arrived at the same time
        kFailed,   // epoll could not be set up or waited on: `call` failed with `error`
    };
    Reason reason = Reason::kStopped;
    const char* call = "";  // "epoll_create1", "epoll_ctl", "epoll_wait"
    int error = 0;          // errno of `call`
};

// Serves `handler` on the calling thread until stop_fd (an eventfd, never read here unless the
// handler's run() reads it) becomes readable or `broken` holds, then drains it. `broken` is asked
// after every batch of events (the queue met a malformed ring, or the handler needs a reset).
// kick_fd < 0: no kick eventfd; the ring is looked at every `poll_ms` milliseconds.
// Buffers may be available before the queue starts: the handler looks once unprompted.
QueueLoopEnd run_queue_loop(QueueHandler& handler, int kick_fd, int stop_fd,
                            const std::function<bool()>& broken, int poll_ms = 1);

}  // namespace vireo::dev
