#include "devices/console_backend.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "base/log.hpp"

namespace vireo::dev {

namespace {

std::string errno_text(const char* what) {
    return fmt::format("{}: {}", what, std::strerror(errno));
}

// Sets O_NONBLOCK; returns the previous flags (-1 on failure).
int set_nonblocking(int fd) {
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
        return -1;
    }
    return flags;
}

bool is_socket(int fd) {
    struct stat st {};
    return ::fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

std::expected<UniqueFd, std::string> listen_unix(const std::string& path) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof addr.sun_path) {
        return std::unexpected(fmt::format("{}: socket path empty or too long", path));
    }
    std::memcpy(addr.sun_path, path.data(), path.size());
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) {
        return std::unexpected(errno_text("socket"));
    }
    auto* sa = reinterpret_cast<const sockaddr*>(&addr);
    if (::bind(fd.get(), sa, sizeof addr) != 0) {
        if (errno != EADDRINUSE) {
            return std::unexpected(fmt::format("{}: bind: {}", path, std::strerror(errno)));
        }
        // A stale socket left by a dead process is replaced; a live one is not stolen.
        UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        if (probe && ::connect(probe.get(), sa, sizeof addr) == 0) {
            return std::unexpected(fmt::format("{}: in use by another process", path));
        }
        ::unlink(path.c_str());
        if (::bind(fd.get(), sa, sizeof addr) != 0) {
            return std::unexpected(fmt::format("{}: bind: {}", path, std::strerror(errno)));
        }
    }
    // Backlog 1: one client at a time; the next waits in the kernel until the first leaves.
    if (::listen(fd.get(), 1) != 0) {
        return std::unexpected(fmt::format("{}: listen: {}", path, std::strerror(errno)));
    }
    return fd;
}

}  // namespace

ConsoleBackend::~ConsoleBackend() {
    if (saved_in_flags_ >= 0) {
        ::fcntl(borrowed_in_, F_SETFL, saved_in_flags_);
    }
    if (saved_out_flags_ >= 0) {
        ::fcntl(borrowed_out_, F_SETFL, saved_out_flags_);
    }
    if (kind_ == ConsoleBackendKind::kUnix && listen_) {
        ::unlink(path_.c_str());
    }
}

int ConsoleBackend::out_fd() const {
    if (out_) {
        return out_.get();
    }
    if (kind_ == ConsoleBackendKind::kUnix || kind_ == ConsoleBackendKind::kPty) {
        return in_.get();  // one descriptor both ways (-1 without a client)
    }
    return borrowed_out_;
}

std::expected<std::unique_ptr<ConsoleBackend>, std::string> ConsoleBackend::open(
    const ConsolePortOptions& o) {
    auto b = std::make_unique<ConsoleBackend>(PrivateTag{});
    b->kind_ = o.kind;
    switch (o.kind) {
        case ConsoleBackendKind::kStdio: {
            b->borrowed_in_ = STDIN_FILENO;
            b->borrowed_out_ = STDOUT_FILENO;
            b->saved_in_flags_ = set_nonblocking(STDIN_FILENO);
            b->saved_out_flags_ = set_nonblocking(STDOUT_FILENO);
            if (b->saved_out_flags_ < 0) {
                return std::unexpected(errno_text("stdout: fcntl"));
            }
            b->out_is_socket_ = is_socket(STDOUT_FILENO);
            // A terminal on stdin goes raw: the guest's line discipline does the editing, and
            // keys like ^C reach the guest instead of the daemon.
            b->raw_terminal_.emplace(STDIN_FILENO, RawTerminal::Signals::kToGuest);
            break;
        }
        case ConsoleBackendKind::kPty: {
            UniqueFd master(::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC));
            if (!master || ::grantpt(master.get()) != 0 || ::unlockpt(master.get()) != 0) {
                return std::unexpected(errno_text("posix_openpt"));
            }
            char name[128];
            if (::ptsname_r(master.get(), name, sizeof name) != 0) {
                return std::unexpected(errno_text("ptsname"));
            }
            // Holding the slave open ourselves keeps the master from reporting EIO/HUP while no
            // program has the terminal open: output then waits in the pty buffer (bounded; the
            // transmit queue stalls when it is full).
            UniqueFd slave(::open(name, O_RDWR | O_NOCTTY | O_CLOEXEC));
            if (!slave) {
                return std::unexpected(fmt::format("{}: {}", name, std::strerror(errno)));
            }
            termios t{};
            if (::tcgetattr(slave.get(), &t) == 0) {
                ::cfmakeraw(&t);
                ::tcsetattr(slave.get(), TCSANOW, &t);
            }
            if (set_nonblocking(master.get()) < 0) {
                return std::unexpected(errno_text("pty: fcntl"));
            }
            b->in_ = std::move(master);
            b->pty_slave_ = std::move(slave);
            b->path_ = name;
            log::info("console: pty {}", b->path_);
            break;
        }
        case ConsoleBackendKind::kUnix: {
            auto fd = listen_unix(o.path);
            if (!fd) {
                return std::unexpected(fd.error());
            }
            b->listen_ = std::move(*fd);
            b->path_ = o.path;
            b->out_is_socket_ = true;
            break;
        }
        case ConsoleBackendKind::kFile: {
            // Guest output only; the guest's reads see a console without input.
            b->out_.reset(::open(o.path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
            if (!b->out_ || set_nonblocking(b->out_.get()) < 0) {
                return std::unexpected(errno_text(("cannot open '" + o.path + "'").c_str()));
            }
            b->in_eof_ = true;
            b->path_ = o.path;
            break;
        }
        case ConsoleBackendKind::kFds: {
            if (o.in_fd < 0 && o.out_fd < 0) {
                return std::unexpected("no file descriptors given");
            }
            if (o.in_fd >= 0) {
                b->in_.reset(::fcntl(o.in_fd, F_DUPFD_CLOEXEC, 0));
                if (!b->in_ || set_nonblocking(b->in_.get()) < 0) {
                    return std::unexpected(errno_text("input fd"));
                }
            } else {
                b->in_eof_ = true;
            }
            if (o.out_fd >= 0) {
                b->out_.reset(::fcntl(o.out_fd, F_DUPFD_CLOEXEC, 0));
                if (!b->out_ || set_nonblocking(b->out_.get()) < 0) {
                    return std::unexpected(errno_text("output fd"));
                }
                b->out_is_socket_ = is_socket(b->out_.get());
            }
            break;
        }
    }
    return b;
}

bool ConsoleBackend::accept_client() {
    if (kind_ != ConsoleBackendKind::kUnix || in_) {
        return false;
    }
    UniqueFd c(::accept4(listen_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!c) {
        return false;
    }
    in_ = std::move(c);
    ++generation_;
    return true;
}

void ConsoleBackend::disconnect() {
    if (kind_ == ConsoleBackendKind::kUnix) {
        if (in_) {
            in_.reset();
            ++generation_;
        }
        return;
    }
    // stdio / fds / pty: input ended; output stays (a closed stdin does not close stdout).
    if (!in_eof_) {
        in_eof_ = true;
        ++generation_;
    }
}

}  // namespace vireo::dev
