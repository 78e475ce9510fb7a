#include "vhost_user/message.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

namespace vireo::vhost_user {

std::string_view to_string(IoError e) {
    switch (e) {
        case IoError::kClosed:
            return "connection closed";
        case IoError::kTruncated:
            return "connection closed in the middle of a message";
        case IoError::kTooLarge:
            return "message payload larger than the limit";
        case IoError::kTooManyFds:
            return "too many file descriptors with a message";
        case IoError::kSystem:
            return "socket error";
    }
    return "unknown I/O error";
}

namespace {

// Reads exactly len bytes (the rest of a message). 0 on success.
std::expected<void, IoError> read_exact(int sock, std::uint8_t* p, std::size_t len) {
    while (len > 0) {
        const ssize_t n = ::recv(sock, p, len, MSG_WAITALL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            // EAGAIN here is the receive timeout: a peer that stalls mid-message.
            return std::unexpected(errno == EAGAIN ? IoError::kTruncated : IoError::kSystem);
        }
        if (n == 0) {
            return std::unexpected(IoError::kTruncated);
        }
        p += n;
        len -= static_cast<std::size_t>(n);
    }
    return {};
}

}  // namespace

std::expected<Message, IoError> receive(int sock) {
    Message msg;
    alignas(cmsghdr) std::uint8_t control[CMSG_SPACE(sizeof(int) * kMaxFds)];
    iovec iov{&msg.hdr, sizeof(Header)};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = control;
    mh.msg_controllen = sizeof control;

    ssize_t n;
    do {
        n = ::recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        return std::unexpected(IoError::kSystem);
    }
    if (n == 0) {
        return std::unexpected(IoError::kClosed);
    }
    // Take ownership of every received fd first, so each error path below closes them.
    for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c != nullptr; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) {
            continue;
        }
        const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (std::size_t i = 0; i < count; ++i) {
            int fd;
            std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
            msg.fds.emplace_back(fd);
        }
    }
    if ((mh.msg_flags & MSG_CTRUNC) != 0) {
        return std::unexpected(IoError::kTooManyFds);
    }
    if (static_cast<std::size_t>(n) < sizeof(Header)) {
        auto* p = reinterpret_cast<std::uint8_t*>(&msg.hdr);
        if (auto ok = read_exact(sock, p + n, sizeof(Header) - n); !ok) {
            return std::unexpected(ok.error());
        }
    }
    if (msg.hdr.size > kMaxPayload) {
        return std::unexpected(IoError::kTooLarge);
    }
    msg.payload.resize(msg.hdr.size);
    if (auto ok = read_exact(sock, msg.payload.data(), msg.payload.size()); !ok) {
        return std::unexpected(ok.error());
    }
    return msg;
}

bool send(int sock, const Header& hdr, std::span<const std::uint8_t> payload,
          std::span<const int> fds) {
    std::vector<std::uint8_t> buf(sizeof(Header) + payload.size());
    std::memcpy(buf.data(), &hdr, sizeof hdr);
    std::copy(payload.begin(), payload.end(), buf.begin() + sizeof hdr);
    iovec iov{buf.data(), buf.size()};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    alignas(cmsghdr) std::uint8_t control[CMSG_SPACE(sizeof(int) * kMaxFds)]{};
    if (!fds.empty() && fds.size() <= kMaxFds) {
        mh.msg_control = control;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
        cmsghdr* c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
        std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
    }
    std::size_t off = 0;
    while (off < buf.size()) {
        ssize_t n;
        do {
            n = ::sendmsg(sock, &mh, MSG_NOSIGNAL);
        } while (n < 0 && errno == EINTR);
        if (n <= 0) {
            return false;
        }
        off += static_cast<std::size_t>(n);
        // A partial write: send the rest without the fds (they went with the first bytes).
        iov.iov_base = buf.data() + off;
        iov.iov_len = buf.size() - off;
        mh.msg_control = nullptr;
        mh.msg_controllen = 0;
    }
    return true;
}

}  // namespace vireo::vhost_user
