#include "devices/queue_loop.hpp"

#include <sys/epoll.h>
#include <sys/eventfd.h>

#include <cerrno>
#include <cstdint>

#include "memory/unique_fd.hpp"

namespace vireo::dev {

namespace {

using Reason = QueueLoopEnd::Reason;

QueueLoopEnd failed(const char* call) {
    return {Reason::kFailed, call, errno};
}

QueueLoopEnd serve(QueueHandler& handler, int kick_fd, int stop_fd,
                   const std::function<bool()>& broken, int poll_ms) {
    // The handler's own wait point, if it has one (it returns false having consumed nothing
    // if it cannot, e.g. blk's sync engine). Polling mode has no kick eventfd to give it.
    if (kick_fd >= 0 && handler.run(kick_fd, stop_fd)) {
        return {broken() ? Reason::kBroken : Reason::kStopped};
    }
    enum : std::uint64_t { kKick, kEvent, kStop };
    UniqueFd ep(::epoll_create1(EPOLL_CLOEXEC));
    if (!ep) {
        return failed("epoll_create1");
    }
    auto watch = [&](int fd, std::uint64_t tag) {
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = tag;
        return ::epoll_ctl(ep.get(), EPOLL_CTL_ADD, fd, &ev) == 0;
    };
    const int event_fd = handler.event_fd();
    if (!watch(stop_fd, kStop) || (kick_fd >= 0 && !watch(kick_fd, kKick)) ||
        (event_fd >= 0 && !watch(event_fd, kEvent))) {
        return failed("epoll_ctl");
    }
    // Buffers may have been made available before the queue started (or are being
    // resubmitted): look once without waiting for a kick.
    handler.on_kick();
    const int timeout = kick_fd >= 0 ? -1 : poll_ms;
    for (;;) {
        if (broken()) {
            return {Reason::kBroken};
        }
        epoll_event evs[3];
        const int n = ::epoll_wait(ep.get(), evs, 3, timeout);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return failed("epoll_wait");
        }
        if (n == 0) {
            handler.on_kick();  // polling mode: the interval passed
            continue;
        }
        bool stop = false;
        for (int i = 0; i < n; ++i) {
            eventfd_t v;
            switch (evs[i].data.u64) {
                case kStop:
                    stop = true;  // the rest of the batch is still served
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
        if (stop) {
            return {Reason::kStopped};
        }
    }
}

}  // namespace

QueueLoopEnd run_queue_loop(QueueHandler& handler, int kick_fd, int stop_fd,
                            const std::function<bool()>& broken, int poll_ms) {
    const QueueLoopEnd end = serve(handler, kick_fd, stop_fd, broken, poll_ms);
    // Never leave a chain unanswered: complete or fail everything in flight.
    handler.drain();
    return end;
}

}  // namespace vireo::dev
