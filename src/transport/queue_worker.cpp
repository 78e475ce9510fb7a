#include "transport/queue_worker.hpp"

#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

#include <cerrno>

#include "base/log.hpp"

namespace vireo::transport {

bool QueueWorker::start(dev::QueueHandler& handler, int kick_fd, std::function<bool()> broken,
                        std::function<void()> on_broken) {
    stop();
    stop_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!stop_) {
        return false;
    }
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
    ::eventfd_write(stop_.get(), 1);
    thread_.join();
    stop_.reset();
}

void QueueWorker::run(dev::QueueHandler& handler, int kick_fd, const std::function<bool()>& broken,
                      const std::function<void()>& on_broken) {
    enum : std::uint64_t { kKick, kEvent, kStop };
    UniqueFd ep(::epoll_create1(EPOLL_CLOEXEC));
    auto watch = [&](int fd, std::uint64_t tag) {
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = tag;
        return ::epoll_ctl(ep.get(), EPOLL_CTL_ADD, fd, &ev) == 0;
    };
    bool ok = ep.valid() && watch(stop_.get(), kStop) && watch(kick_fd, kKick);
    if (ok && handler.event_fd() >= 0) {
        ok = watch(handler.event_fd(), kEvent);
    }
    bool failed = !ok;
    if (ok) {
        // Buffers may have been made available before the queue started: look once unprompted.
        handler.on_kick();
        bool stop = false;
        while (!stop && !(failed = broken())) {
            epoll_event evs[3];
            const int n = ::epoll_wait(ep.get(), evs, 3, -1);
            if (n < 0) {
                if (errno == EINTR) {
                    continue;
                }
                failed = true;
                break;
            }
            for (int i = 0; i < n; ++i) {
                eventfd_t v;
                switch (evs[i].data.u64) {
                    case kStop:
                        stop = true;
                        break;
                    case kKick:
                        // Consume the count first: a kick arriving during on_kick() re-arms.
                        ::eventfd_read(kick_fd, &v);
                        handler.on_kick();
                        break;
                    case kEvent:
                        handler.on_event();
                        break;
                    default:
                        break;
                }
            }
        }
    }
    // Never leave a chain unanswered: complete or fail everything in flight.
    handler.drain();
    if (!failed) {
        return;
    }
    if (!ok) {
        log::guest_warn("queue worker: epoll setup failed (errno {})", errno);
    }
    on_broken();
    // Idle until stop(): the owner joins us as part of the reset the driver must now perform.
    pollfd pfd{stop_.get(), POLLIN, 0};
    while (::poll(&pfd, 1, -1) < 0 && errno == EINTR) {
    }
}

}  // namespace vireo::transport
