#include "devices/net_tap.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>

#include "base/log.hpp"

namespace vireo::dev {

namespace {

constexpr const char* kTunPath = "/dev/net/tun";
// Frames read per receive() call before returning to the event loop; the fd is polled
// level-triggered, so what is left wakes us again at once.
constexpr unsigned kRxBudget = 256;
constexpr std::size_t kMaxIov = IOV_MAX;

}  // namespace

std::expected<std::shared_ptr<NetTap>, std::string> NetTap::open(const std::string& name,
                                                                 std::uint16_t queue_pairs) {
    if (name.empty() || name.size() >= IFNAMSIZ) {
        return std::unexpected(
            fmt::format("tap '{}': interface names are 1..{} characters", name, IFNAMSIZ - 1));
    }
    if (queue_pairs == 0) {
        return std::unexpected(fmt::format("tap {}: at least one queue pair", name));
    }
    auto tap = std::make_shared<NetTap>(PrivateTag{});
    tap->name_ = name;
    tap->queues_.resize(queue_pairs);
    auto fail = [&](std::string_view what) {
        return std::unexpected(
            fmt::format("tap {}: {}: {}", tap->name_, what, std::strerror(errno)));
    };
    for (auto& q : tap->queues_) {
        q.fd = UniqueFd(::open(kTunPath, O_RDWR | O_NONBLOCK | O_CLOEXEC));
        if (!q.fd) {
            return fail(kTunPath);
        }
        ifreq ifr{};
        std::memcpy(ifr.ifr_name, tap->name_.c_str(), tap->name_.size() + 1);
        ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | IFF_MULTI_QUEUE;
        if (::ioctl(q.fd.get(), TUNSETIFF, &ifr) != 0) {
            return fail(errno == EINVAL ? "TUNSETIFF (an existing TAP that is not multi-queue?)"
                                        : "TUNSETIFF");
        }
        tap->name_ = ifr.ifr_name;  // the kernel's name, if a pattern was given
        // virtio 1.x headers: 12 bytes with num_buffers, little endian (§5.1.6).
        int hdr_size = static_cast<int>(kNetHdrSize);
        if (::ioctl(q.fd.get(), TUNSETVNETHDRSZ, &hdr_size) != 0) {
            return fail("TUNSETVNETHDRSZ");
        }
        int le = 1;
        if (::ioctl(q.fd.get(), TUNSETVNETLE, &le) != 0 && errno != EINVAL) {
            return fail("TUNSETVNETLE");
        }
    }
    // Nothing offloaded to the guest until it negotiates offloads.
    tap->set_rx_offloads({});
    return tap;
}

void NetTap::set_rx_offloads(const NetRxOffloads& o) {
    unsigned flags = 0;
    if (o.csum) {
        flags |= TUN_F_CSUM;
        if (o.tso4) {
            flags |= TUN_F_TSO4;
        }
        if (o.tso6) {
            flags |= TUN_F_TSO6;
        }
    }
    // One setting for the whole TAP; any queue's fd reaches it.
    if (!queues_.empty() && ::ioctl(queues_[0].fd.get(), TUNSETOFFLOAD, flags) != 0) {
        log::guest_warn("net: tap {}: TUNSETOFFLOAD {:#x}: {}", name_, flags, std::strerror(errno));
    }
}

void NetTap::set_active_pairs(std::uint16_t n) {
    // A detached queue gets no frames from the kernel's steering: the guest uses only
    // receiveq1..n (§5.1.6.5.6.1).
    for (std::size_t i = 0; i < queues_.size(); ++i) {
        Queue& q = queues_[i];
        const bool want = i < n || i == 0;
        if (want == q.attached) {
            continue;
        }
        ifreq ifr{};
        ifr.ifr_flags = want ? IFF_ATTACH_QUEUE : IFF_DETACH_QUEUE;
        if (::ioctl(q.fd.get(), TUNSETQUEUE, &ifr) != 0) {
            log::guest_warn("net: tap {}: TUNSETQUEUE {}: {}", name_, i, std::strerror(errno));
            continue;
        }
        q.attached = want;
    }
}

bool NetTap::transmit(std::uint16_t pair, const NetTxFrame& frame) {
    if (pair >= queues_.size()) {
        return false;
    }
    Queue& q = queues_[pair];
    // The header as validated (not re-read from guest memory), then the guest's frame buffers.
    q.tx_iov.clear();
    q.tx_iov.push_back({const_cast<NetHdr*>(&frame.hdr), kNetHdrSize});
    if (frame.frame.size() < kMaxIov) {
        q.tx_iov.insert(q.tx_iov.end(), frame.frame.begin(), frame.frame.end());
    } else {
        // More pieces than writev takes: gather them once (rare: a chain of tiny buffers).
        q.tx_linear.resize(std::max(q.tx_linear.size(), frame.len));
        virtq::ChainReader(frame.frame).read({q.tx_linear.data(), frame.len});
        q.tx_iov.push_back({q.tx_linear.data(), frame.len});
    }
    for (;;) {
        const ssize_t n = ::writev(q.fd.get(), q.tx_iov.data(), static_cast<int>(q.tx_iov.size()));
        if (n >= 0) {
            return true;
        }
        if (errno != EINTR) {
            return false;  // EAGAIN (queue full), EIO (interface down), EINVAL (kernel refused)
        }
    }
}

void NetTap::receive(std::uint16_t pair, NetRxSink& sink) {
    if (pair >= queues_.size()) {
        return;
    }
    Queue& q = queues_[pair];
    const std::size_t max = kNetHdrSize + sink.offloads().max_frame();
    for (unsigned i = 0; i < kRxBudget; ++i) {
        const auto iov = sink.buffers(max);
        ssize_t n;
        if (iov.empty()) {
            // No RX buffer: read the frame anyway and drop it (see the header comment).
            q.rx_scratch.resize(kNetHdrSize + kNetMaxFrame);
            n = ::read(q.fd.get(), q.rx_scratch.data(), q.rx_scratch.size());
            if (n > 0) {
                sink.count_drop();
                continue;
            }
        } else {
            n = ::readv(q.fd.get(), iov.data(),
                        static_cast<int>(std::min<std::size_t>(iov.size(), kMaxIov)));
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        }
        if (n < 0) {
            // EFAULT/EINVAL: the frame did not fit the buffers and the kernel dropped it.
            read_errors_.fetch_add(1, std::memory_order_relaxed);
            sink.count_drop();
            if (errno == EFAULT || errno == EINVAL) {
                continue;
            }
            return;  // EBADFD & co: the interface is gone; nothing more to read
        }
        const auto len = static_cast<std::size_t>(n);
        if (len < kNetHdrSize + kEthHeader) {
            sink.count_drop();  // the chains stay with the queue for the next frame
            continue;
        }
        virtq::ChainReader r(iov);
        MacAddress dst{};
        r.skip(kNetHdrSize);
        r.read(dst);
        if (!sink.accepts(dst)) {
            sink.count_filtered();
            continue;
        }
        sink.commit(len);
    }
}

}  // namespace vireo::dev
