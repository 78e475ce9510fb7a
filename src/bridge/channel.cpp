#include "bridge/channel.hpp"

#include <fmt/format.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace vireo::bridge {

namespace {

std::expected<sockaddr_un, std::string> address(const std::string& path) {
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof(a.sun_path)) {
        return std::unexpected(fmt::format("socket path '{}' is empty or too long", path));
    }
    std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
    return a;
}

}  // namespace

std::expected<void, std::string> send_msg(int sock, std::span<const std::uint8_t> bytes,
                                          std::span<const int> fds) {
    if (fds.size() > kMaxSetupFds) {
        return std::unexpected("too many fds");
    }
    iovec iov{const_cast<std::uint8_t*>(bytes.data()), bytes.size()};
    alignas(cmsghdr) char ctl[CMSG_SPACE(sizeof(int) * kMaxSetupFds)]{};
    msghdr m{};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    if (!fds.empty()) {
        m.msg_control = ctl;
        m.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
        cmsghdr* c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
        std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
    }
    ssize_t n;
    do {
        n = ::sendmsg(sock, &m, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n != static_cast<ssize_t>(bytes.size())) {
        return std::unexpected(fmt::format("send: {}", n < 0 ? std::strerror(errno) : "short"));
    }
    return {};
}

std::expected<void, std::string> recv_msg(int sock, std::span<std::uint8_t> out,
                                          std::vector<UniqueFd>& fds) {
    std::size_t got = 0;
    while (got < out.size()) {
        iovec iov{out.data() + got, out.size() - got};
        alignas(cmsghdr) char ctl[CMSG_SPACE(sizeof(int) * kMaxSetupFds)]{};
        msghdr m{};
        m.msg_iov = &iov;
        m.msg_iovlen = 1;
        m.msg_control = ctl;
        m.msg_controllen = sizeof(ctl);
        const ssize_t n = ::recvmsg(sock, &m, MSG_CMSG_CLOEXEC);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return std::unexpected(
                fmt::format("receive: {}", n < 0 ? std::strerror(errno) : "peer closed"));
        }
        for (cmsghdr* c = CMSG_FIRSTHDR(&m); c != nullptr; c = CMSG_NXTHDR(&m, c)) {
            if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) {
                continue;
            }
            const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (std::size_t i = 0; i < count; ++i) {
                int fd;
                std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                UniqueFd owned(fd);  // closed unless kept
                if (fds.size() < kMaxSetupFds) {
                    fds.push_back(std::move(owned));
                }
            }
        }
        got += static_cast<std::size_t>(n);
    }
    return {};
}

std::expected<UniqueFd, std::string> listen_unix(const std::string& path) {
    auto a = address(path);
    if (!a) {
        return std::unexpected(a.error());
    }
    UniqueFd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!s) {
        return std::unexpected(fmt::format("socket: {}", std::strerror(errno)));
    }
    ::unlink(path.c_str());  // a stale socket left by a crash
    if (::bind(s.get(), reinterpret_cast<sockaddr*>(&*a), sizeof(*a)) != 0 ||
        ::listen(s.get(), 16) != 0) {
        return std::unexpected(fmt::format("socket '{}': {}", path, std::strerror(errno)));
    }
    return s;
}

std::expected<UniqueFd, std::string> connect_unix(const std::string& path) {
    auto a = address(path);
    if (!a) {
        return std::unexpected(a.error());
    }
    UniqueFd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!s || ::connect(s.get(), reinterpret_cast<sockaddr*>(&*a), sizeof(*a)) != 0) {
        return std::unexpected(fmt::format("connect '{}': {}", path, std::strerror(errno)));
    }
    return s;
}

}  // namespace vireo::bridge
