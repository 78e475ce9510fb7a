// A small epoll set for device models whose queue handlers wait on several descriptors (back-end
// sockets, a wake-up eventfd). The epoll fd itself is pollable, so it serves as the handler's
// QueueHandler::event_fd(): the transport wakes the handler when anything in the set is ready,
// and on_event() collects what was with poll() (never blocking).
#pragma once

#include <sys/epoll.h>
#include <sys/eventfd.h>

#include <cerrno>
#include <cstdint>
#include <span>

#include "memory/unique_fd.hpp"

namespace vireo::dev {

class EventSet {
  public:
    EventSet() : ep_(::epoll_create1(EPOLL_CLOEXEC)) {}

    bool valid() const { return ep_.valid(); }
    int fd() const { return ep_.get(); }

    bool add(int fd, std::uint32_t events, std::uint64_t tag) {
        return ctl(EPOLL_CTL_ADD, fd, events, tag);
    }
    bool modify(int fd, std::uint32_t events, std::uint64_t tag) {
        return ctl(EPOLL_CTL_MOD, fd, events, tag);
    }
    // Adds, or modifies if the fd is already in the set.
    bool set(int fd, std::uint32_t events, std::uint64_t tag) {
        return add(fd, events, tag) || (errno == EEXIST && modify(fd, events, tag));
    }
    void remove(int fd) { ::epoll_ctl(ep_.get(), EPOLL_CTL_DEL, fd, nullptr); }

    // Ready events without waiting; 0 when none.
    std::size_t poll(std::span<epoll_event> out) {
        const int n = ::epoll_wait(ep_.get(), out.data(), static_cast<int>(out.size()), 0);
        return n > 0 ? static_cast<std::size_t>(n) : 0;
    }

  private:
    bool ctl(int op, int fd, std::uint32_t events, std::uint64_t tag) {
        epoll_event ev{};
        ev.events = events;
        ev.data.u64 = tag;
        return ::epoll_ctl(ep_.get(), op, fd, &ev) == 0;
    }

    UniqueFd ep_;
};

// Eventfds used to wake another queue's handler.
inline UniqueFd make_wake_fd() {
    return UniqueFd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
}
inline void wake(int efd) {
    ::eventfd_write(efd, 1);
}
inline void clear_wake(int efd) {
    eventfd_t v;
    ::eventfd_read(efd, &v);  // EAGAIN when not signalled: nothing to clear
}

}  // namespace vireo::dev
