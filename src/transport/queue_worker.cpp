#include "transport/queue_worker.hpp"

#include <poll.h>
#include <sys/eventfd.h>

#include <cerrno>
#include <cstring>

#include "base/log.hpp"
#include "devices/queue_loop.hpp"

namespace vireo::transport {

bool QueueWorker::start(dev::QueueHandler& handler, int kick_fd, std::function<bool()> broken,
                        std::function<void()> on_broken) {
    stop();
    stop_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!stop_) {
        return false;
    }
    stopping_.store(false, std::memory_order_relaxed);
    thread_ = std::thread(
        [this, &handler, kick_fd, broken = std::move(broken), on_broken = std::move(on_broken)] {
            run(handler, kick_fd, broken, on_broken);
        });
    return true;
}

void QueueWorker::stop() {
    if (!thread_.joinable()) {
        return;
    }
    stopping_.store(true, std::memory_order_release);
    ::eventfd_write(stop_.get(), 1);
    thread_.join();
    stop_.reset();
}

void QueueWorker::run(dev::QueueHandler& handler, int kick_fd, const std::function<bool()>& broken,
                      const std::function<void()>& on_broken) {
    using Reason = dev::QueueLoopEnd::Reason;
    const dev::QueueLoopEnd end = dev::run_queue_loop(handler, kick_fd, stop_.get(), broken);
    if (end.reason == Reason::kStopped) {
        return;
    }
    if (end.reason == Reason::kFailed) {
        log::error("queue worker: {}: {}", end.call, std::strerror(end.error));
    }
    on_broken();
    // Idle until stop(): the owner joins us as part of the reset the driver must now perform.
    // The flag, not the eventfd alone: a stop that came with the breakage may have been
    // consumed by the handler's own wait point already.
    pollfd pfd{stop_.get(), POLLIN, 0};
    while (!stopping_.load(std::memory_order_acquire)) {
        if (::poll(&pfd, 1, -1) < 0 && errno != EINTR) {
            return;
        }
    }
}

}  // namespace vireo::transport
