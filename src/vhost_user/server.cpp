#include "vhost_user/server.hpp"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/log.hpp"

namespace vireo::vhost_user {

namespace {

// A front end that stops in the middle of a message must not stall the event loop (and every
// other device served by it) forever.
constexpr int kReceiveTimeoutSec = 5;

std::expected<sockaddr_un, std::string> unix_address(const std::string& path) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
        return std::unexpected(fmt::format("socket path '{}' is empty or longer than {} bytes",
                                           path, sizeof(addr.sun_path) - 1));
    }
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    return addr;
}

}  // namespace

std::expected<UniqueFd, std::string> listen_unix(const std::string& path) {
    auto addr = unix_address(path);
    if (!addr) {
        return std::unexpected(addr.error());
    }
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            return std::unexpected(
                fmt::format("socket path '{}' exists and is not a socket", path));
        }
        // Is anybody listening? A refused connection means a stale file from a dead process.
        UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        if (probe &&
            ::connect(probe.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr) == 0) {
            return std::unexpected(fmt::format(
                "socket path '{}' is in use by a running process (another back end?)", path));
        }
        log::info("replacing stale socket file '{}'", path);
        if (::unlink(path.c_str()) != 0) {
            return std::unexpected(
                fmt::format("removing stale socket '{}': {}", path, std::strerror(errno)));
        }
    }
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd) {
        return std::unexpected(fmt::format("socket(): {}", std::strerror(errno)));
    }
    if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr) != 0) {
        return std::unexpected(fmt::format("binding socket '{}': {}", path, std::strerror(errno)));
    }
    if (::listen(fd.get(), 4) != 0) {
        return std::unexpected(
            fmt::format("listening on socket '{}': {}", path, std::strerror(errno)));
    }
    return fd;
}

// --- Connection ---------------------------------------------------------------------------

Connection::Connection(UniqueFd sock, dev::VirtioDevice& device, std::string name,
                       std::function<std::expected<void, std::string>()> worker_init)
    : sock_(std::move(sock)),
      name_(name),
      backend_(std::make_unique<Backend>(device, std::move(name), std::move(worker_init))) {
    timeval tv{kReceiveTimeoutSec, 0};
    ::setsockopt(sock_.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

bool Connection::on_readable() {
    auto msg = receive(sock_.get());
    if (!msg) {
        if (msg.error() == IoError::kClosed) {
            log::info("[{}] front end disconnected", name_);
        } else {
            log::warn("[{}] dropping front end: {}", name_, to_string(msg.error()));
        }
        return false;
    }
    if (!backend_->handle(*msg, sock_.get())) {
        log::warn("[{}] dropping front end after a fatal protocol error", name_);
        return false;
    }
    return true;
}

// --- Server -------------------------------------------------------------------------------

namespace {
enum : std::uint64_t { kTagSignal = ~0ull, kTagStop = ~0ull - 1 };
// Slot i's listener is tagged 2i, its connection 2i+1.
constexpr std::uint64_t listener_tag(std::size_t i) {
    return 2 * i;
}
constexpr std::uint64_t conn_tag(std::size_t i) {
    return 2 * i + 1;
}
}  // namespace

namespace {

// An inherited vhost-user fd must be a unix stream socket; true if it listens.
std::expected<bool, std::string> inherited_socket(int fd) {
    int type = 0, domain = 0, listening = 0;
    socklen_t len = sizeof type;
    if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) {
        return std::unexpected(fmt::format("--fd {}: not a socket ({})", fd, std::strerror(errno)));
    }
    len = sizeof domain;
    ::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len);
    if (type != SOCK_STREAM || domain != AF_UNIX) {
        return std::unexpected(fmt::format("--fd {}: not a unix stream socket", fd));
    }
    len = sizeof listening;
    ::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len);
    return listening != 0;
}

}  // namespace

std::expected<std::unique_ptr<Server>, std::string> Server::create(std::vector<Endpoint> eps) {
    std::unique_ptr<Server> s(new Server());
    // Blocked before any worker thread exists, so every thread inherits the mask and the
    // signals are only ever seen through the signalfd.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    if (::pthread_sigmask(SIG_BLOCK, &set, nullptr) != 0) {
        return std::unexpected(std::string("blocking signals failed"));
    }
    s->signal_fd_.reset(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
    s->stop_fd_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    s->epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
    if (!s->signal_fd_ || !s->stop_fd_ || !s->epoll_) {
        return std::unexpected(fmt::format("event loop setup: {}", std::strerror(errno)));
    }
    auto watch = [&](int fd, std::uint64_t tag) {
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = tag;
        return ::epoll_ctl(s->epoll_.get(), EPOLL_CTL_ADD, fd, &ev) == 0;
    };
    watch(s->signal_fd_.get(), kTagSignal);
    watch(s->stop_fd_.get(), kTagStop);
    for (auto& ep : eps) {
        auto slot = std::make_unique<Slot>();
        slot->ep = std::move(ep);
        Slot& sl = *slot;
        s->slots_.push_back(std::move(slot));
        if (sl.ep.socket_fd >= 0) {
            auto kind = inherited_socket(sl.ep.socket_fd);
            if (!kind) {
                return std::unexpected(fmt::format("[{}] {}", sl.ep.name, kind.error()));
            }
            UniqueFd fd(::fcntl(sl.ep.socket_fd, F_DUPFD_CLOEXEC, 0));
            ::close(sl.ep.socket_fd);
            if (!fd) {
                return std::unexpected(fmt::format("[{}] {}", sl.ep.name, std::strerror(errno)));
            }
            if (*kind) {
                // Non-blocking like our own listeners: a client that leaves between EPOLLIN
                // and accept must not block the event loop.
                ::fcntl(fd.get(), F_SETFL, ::fcntl(fd.get(), F_GETFL) | O_NONBLOCK);
                sl.listener = std::move(fd);
                watch(sl.listener.get(), listener_tag(s->slots_.size() - 1));
                log::info("[{}] listening on the inherited socket", sl.ep.name);
            } else {
                s->adopt(sl, std::move(fd));
            }
            continue;
        }
        auto fd = listen_unix(sl.ep.socket_path);
        if (!fd) {
            return std::unexpected(fd.error());
        }
        sl.listener = std::move(*fd);
        sl.owns_path = true;
        watch(sl.listener.get(), listener_tag(s->slots_.size() - 1));
        log::info("[{}] listening on {}", sl.ep.name, sl.ep.socket_path);
    }
    return s;
}

Server::~Server() {
    shutdown();
}

void Server::request_stop() {
    ::eventfd_write(stop_fd_.get(), 1);
}

void Server::accept_on(Slot& s) {
    UniqueFd fd(::accept4(s.listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!fd) {
        return;  // EAGAIN: the client went away already
    }
    if (s.conn) {
        // One front end per device: a second one would fight the first over the rings.
        log::warn("[{}] refusing a second front end while one is connected", s.ep.name);
        return;
    }
    log::info("[{}] front end connected", s.ep.name);
    adopt(s, std::move(fd));
}

void Server::adopt(Slot& s, UniqueFd fd) {
    s.conn = std::make_unique<Connection>(std::move(fd), *s.ep.device, s.ep.name, s.ep.worker_init);
    for (std::size_t k = 0; k < slots_.size(); ++k) {
        if (slots_[k].get() == &s) {
            epoll_event ev{};
            ev.events = EPOLLIN | EPOLLRDHUP;
            ev.data.u64 = conn_tag(k);
            ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, s.conn->fd(), &ev);
        }
    }
}

void Server::close_connection(Slot& s, std::string_view why) {
    if (!s.conn) {
        return;
    }
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, s.conn->fd(), nullptr);
    // Destroying the connection drains every ring, unmaps guest memory and resets the device;
    // the listener stays, so the front end can reconnect.
    s.conn.reset();
    log::info("[{}] session ended ({}); waiting for a new front end", s.ep.name, why);
}

int Server::run() {
    for (;;) {
        epoll_event evs[16];
        const int n = ::epoll_wait(epoll_.get(), evs, 16, -1);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            log::error("event loop: {}", std::strerror(errno));
            shutdown();
            return 1;
        }
        for (int e = 0; e < n; ++e) {
            const std::uint64_t tag = evs[e].data.u64;
            if (tag == kTagSignal || tag == kTagStop) {
                if (tag == kTagSignal) {
                    signalfd_siginfo si{};
                    if (::read(signal_fd_.get(), &si, sizeof si) == sizeof si) {
                        log::info("received {}, shutting down", strsignal(si.ssi_signo));
                    }
                } else {
                    log::info("stop requested, shutting down");
                }
                shutdown();
                return 0;
            }
            Slot& s = *slots_[tag / 2];
            if (tag % 2 == 0) {
                accept_on(s);
            } else if (s.conn && !s.conn->on_readable()) {
                close_connection(s, "disconnected");
                // A front end handed over as a connected fd cannot come back.
                const bool any = std::ranges::any_of(
                    slots_, [](const auto& x) { return x->listener.valid() || x->conn; });
                if (!any) {
                    log::info("no front end left to serve, shutting down");
                    shutdown();
                    return 0;
                }
            }
        }
    }
}

void Server::shutdown() {
    // Stop accepting first, then drain every ring, then make the data durable.
    for (auto& s : slots_) {
        if (s->listener) {
            s->listener.reset();
            if (s->owns_path) ::unlink(s->ep.socket_path.c_str());
        }
    }
    for (auto& s : slots_) {
        close_connection(*s, "shutdown");
    }
    for (auto& s : slots_) {
        if (s->ep.flush) {
            s->ep.flush();
            s->ep.flush = nullptr;
        }
    }
}

}  // namespace vireo::vhost_user
