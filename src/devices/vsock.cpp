#include "devices/vsock.hpp"

#include <fmt/format.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cstring>
#include <optional>

#include "base/log.hpp"
#include "virtq/features.hpp"

namespace vireo::dev {

namespace {

using virtq::bit;

constexpr std::size_t kMaxEvents = 16;
// Guest data waiting for a host socket is acknowledged to the guest (CREDIT_UPDATE) once a
// quarter of the buffer was forwarded, or sooner when the guest is about to run out.
constexpr std::uint32_t kCreditThreshold = kVsockBufAlloc / 4;
constexpr std::uint32_t kShutdownBoth = kVsockShutdownRcv | kVsockShutdownSend;

std::span<std::uint8_t> hdr_bytes(VsockHdr& h) {
    return {reinterpret_cast<std::uint8_t*>(&h), kVsockHdrSize};
}

std::expected<sockaddr_un, std::string> unix_addr(const std::string& path) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof addr.sun_path) {
        return std::unexpected(fmt::format("{}: socket path empty or too long", path));
    }
    std::memcpy(addr.sun_path, path.data(), path.size());
    return addr;
}

// "CONNECT <port>\n" (a trailing \r is tolerated); the port, or nothing if malformed.
std::optional<std::uint32_t> parse_connect(std::string_view line) {
    constexpr std::string_view kPrefix = "CONNECT ";
    if (!line.starts_with(kPrefix)) {
        return std::nullopt;
    }
    line.remove_prefix(kPrefix.size());
    if (line.ends_with('\r')) {
        line.remove_suffix(1);
    }
    std::uint32_t port = 0;
    auto [end, ec] = std::from_chars(line.data(), line.data() + line.size(), port);
    if (ec != std::errc() || end != line.data() + line.size() || line.empty()) {
        return std::nullopt;
    }
    return port;
}

bool send_all_now(int fd, std::string_view s) {
    const ssize_t n = ::send(fd, s.data(), s.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    return n == static_cast<ssize_t>(s.size());
}

}  // namespace

// --- rx: device → guest -------------------------------------------------------------------------

class VsockRxQueue final : public QueueHandler {
  public:
    VsockRxQueue(VsockDevice& dev, QueueHandle q) : dev_(dev), q_(q) {}

    void on_kick() override { serve(); }
    int event_fd() const override { return dev_.events_.fd(); }
    void on_event() override {
        {
            std::lock_guard lock(dev_.mu_);
            std::array<epoll_event, kMaxEvents> evs;
            const std::size_t n = dev_.events_.poll(evs);
            for (std::size_t i = 0; i < n; ++i) {
                handle_event(static_cast<int>(evs[i].data.u64), evs[i].events);
            }
        }
        serve();
    }
    void drain() override {
        if (held_) {
            q_.push(chain_.token(), 0);  // a receive buffer with nothing in it
            held_ = false;
        }
        q_.publish_and_notify();
    }
    bool needs_reset() const override { return needs_reset_; }

  private:
    void handle_event(int fd, std::uint32_t events) {
        VsockDevice& d = dev_;
        if (fd == d.wake_.get()) {
            clear_wake(fd);
            return;
        }
        if (fd == d.listener_.get()) {
            accept_hosts();
            return;
        }
        if (d.pending_host_.contains(fd)) {
            read_connect_line(fd);
            return;
        }
        auto it = d.fd_keys_.find(fd);
        if (it == d.fd_keys_.end()) {
            return;
        }
        VsockDevice::Conn& c = *d.conns_.at(it->second);
        if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP)) != 0) {
            c.readable = true;  // a read reports the data, or EOF / the error
            d.mark(c);
        }
        if ((events & EPOLLOUT) != 0) {
            d.flush_pending(c);
        }
    }

    void accept_hosts() {
        VsockDevice& d = dev_;
        while (d.pending_host_.size() < kVsockMaxPendingHost) {
            UniqueFd s(
                ::accept4(d.listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
            if (!s) {
                return;
            }
            const int fd = s.get();
            if (!d.events_.add(fd, EPOLLIN | EPOLLRDHUP | EPOLLET,
                               static_cast<std::uint64_t>(fd))) {
                continue;
            }
            d.pending_host_.emplace(fd, VsockDevice::PendingHost{std::move(s)});
            read_connect_line(fd);  // the line may already be there (the edge came before add)
        }
    }

    // Reads "CONNECT <port>\n" without consuming anything after it (the host program's data).
    void read_connect_line(int fd) {
        VsockDevice& d = dev_;
        std::array<char, kVsockMaxConnectLine> buf;
        const ssize_t n = ::recv(fd, buf.data(), buf.size(), MSG_PEEK | MSG_DONTWAIT);
        if (n < 0 && errno == EAGAIN) {
            return;
        }
        auto drop = [&] {
            d.events_.remove(fd);
            d.pending_host_.erase(fd);
        };
        if (n <= 0) {
            drop();
            return;
        }
        const std::string_view text(buf.data(), static_cast<std::size_t>(n));
        const std::size_t nl = text.find('\n');
        if (nl == std::string_view::npos) {
            if (text.size() == buf.size()) {
                drop();  // no newline within the longest valid line
            }
            return;  // the rest of the line comes with the next edge
        }
        [[maybe_unused]] auto consumed = ::recv(fd, buf.data(), nl + 1, MSG_DONTWAIT);
        const auto port = parse_connect(text.substr(0, nl));
        if (!port || d.conns_.size() >= kVsockMaxConnections) {
            drop();
            return;
        }
        auto c = std::make_unique<VsockDevice::Conn>();
        c->sock = std::move(d.pending_host_.at(fd).sock);
        d.pending_host_.erase(fd);
        c->local_port = d.allocate_local_port();
        c->peer_port = *port;
        c->state = VsockDevice::Conn::State::kConnecting;
        c->host_initiated = true;
        c->send_request = true;
        d.events_.modify(fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                         static_cast<std::uint64_t>(fd));
        const auto k = VsockDevice::key(c->local_port, c->peer_port);
        d.fd_keys_[fd] = k;
        VsockDevice::Conn& ref = *c;
        d.conns_.emplace(k, std::move(c));
        d.mark(ref);
    }

    void serve() {
        {
            std::lock_guard lock(dev_.mu_);
            while (!needs_reset_ && (!dev_.rst_queue_.empty() || !dev_.ready_.empty())) {
                if (!held_ && !pop()) {
                    break;
                }
                if (chain_.writable_bytes() < kVsockHdrSize) {
                    // §5.10.6.5: rx buffers hold at least a header. Returned empty.
                    dev_.stats_.malformed.fetch_add(1, std::memory_order_relaxed);
                    complete(0);
                    continue;
                }
                if (!dev_.rst_queue_.empty()) {
                    VsockHdr h = dev_.rst_queue_.front();
                    dev_.rst_queue_.pop_front();
                    send_header(h);
                    continue;
                }
                const auto k = dev_.ready_.front();
                dev_.ready_.pop_front();
                auto it = dev_.conns_.find(k);
                if (it == dev_.conns_.end()) {
                    continue;  // closed since it was marked
                }
                it->second->queued = false;
                serve(k, *it->second);
            }
        }
        q_.publish_and_notify();
    }

    // Pops a receive buffer into chain_; false when none is available.
    bool pop() {
        for (;;) {
            q_.queue().disable_notifications();
            auto r = q_.pop(chain_);
            if (!r) {
                log::guest_warn("vsock: rx: {}; stopping until reset", virtq::to_string(r.error()));
                needs_reset_ = true;
                return false;
            }
            if (*r) {
                held_ = true;
                return true;
            }
            if (!q_.queue().enable_notifications()) {
                return false;
            }
        }
    }

    void complete(std::uint32_t len) {
        q_.push(chain_.token(), len);
        held_ = false;
    }

    void send_header(VsockHdr& h) {
        virtq::ChainWriter w(chain_.writable());
        w.write(hdr_bytes(h));  // fits: checked against kVsockHdrSize
        complete(kVsockHdrSize);
    }

    // Sends the one packet `c` most needs; re-marks it if more is owed.
    void serve(VsockDevice::Key k, VsockDevice::Conn& c) {
        using State = VsockDevice::Conn::State;
        VsockDevice& d = dev_;
        if (c.send_rst) {
            VsockHdr h = d.header_for(c, kVsockOpRst);
            send_header(h);
            d.stats_.rst_sent.fetch_add(1, std::memory_order_relaxed);
            d.close_conn(k);
            return;
        }
        std::uint16_t op = kVsockOpInvalid;
        std::uint32_t flags = 0;
        if (c.send_request) {
            c.send_request = false;
            op = kVsockOpRequest;
        } else if (c.send_response) {
            c.send_response = false;
            op = kVsockOpResponse;
        } else if (c.send_shutdown) {
            c.send_shutdown = false;
            op = kVsockOpShutdown;
            flags = kShutdownBoth;
            c.state = State::kClosing;
        } else if (c.send_credit_update) {
            c.send_credit_update = false;
            op = kVsockOpCreditUpdate;
        }
        if (op != kVsockOpInvalid) {
            VsockHdr h = d.header_for(c, op);
            h.flags.set(flags);
            send_header(h);
        } else if (c.state == State::kEstablished && c.readable && !c.host_eof &&
                   (c.peer_shutdown & kVsockShutdownRcv) == 0) {
            if (!send_data(c)) {
                return;  // nothing to read now, or no credit: wait for the next edge/update
            }
        } else {
            return;
        }
        if (c.send_request || c.send_response || c.send_shutdown || c.send_credit_update ||
            c.send_rst || (c.readable && c.state == State::kEstablished)) {
            d.mark(c);
        }
    }

    // One RW packet from the host socket, read straight into the guest buffer. False when
    // nothing was sent (no credit, or EAGAIN: the buffer stays held).
    bool send_data(VsockDevice::Conn& c) {
        VsockDevice& d = dev_;
        // §5.10.6.3: peer_free = buf_alloc − (tx_cnt − fwd_cnt). A guest that claims to have
        // forwarded more than it was sent yields a huge difference: no credit.
        const std::uint32_t in_flight = c.tx_cnt - c.peer_fwd_cnt;
        const std::uint32_t credit =
            in_flight > c.peer_buf_alloc ? 0 : c.peer_buf_alloc - in_flight;
        if (credit == 0) {
            return false;  // a CREDIT_UPDATE from the guest marks the connection again
        }
        virtq::ChainWriter w(chain_.writable());
        hdr_iov_.clear();
        data_iov_.clear();
        w.take_iovecs(kVsockHdrSize, hdr_iov_);
        const std::size_t max = std::min<std::size_t>({credit, w.remaining(), kVsockMaxPayload});
        w.take_iovecs(max, data_iov_);
        if (data_iov_.size() > IOV_MAX) {
            data_iov_.resize(IOV_MAX);
        }
        const ssize_t n =
            ::readv(c.sock.get(), data_iov_.data(), static_cast<int>(data_iov_.size()));
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (errno == EAGAIN) {
                c.readable = false;
            }
            return false;
        }
        VsockHdr h;
        if (n > 0) {
            h = d.header_for(c, kVsockOpRw);
            h.len.set(static_cast<std::uint32_t>(n));
            c.tx_cnt += static_cast<std::uint32_t>(n);
            d.stats_.to_guest.fetch_add(static_cast<std::uint64_t>(n), std::memory_order_relaxed);
        } else {
            // EOF (or an error): the host program is done. §5.10.6.4 clean disconnect: tell the
            // guest neither direction carries more; it answers with RST.
            c.host_eof = true;
            c.readable = false;
            c.state = VsockDevice::Conn::State::kClosing;
            h = d.header_for(c, kVsockOpShutdown);
            h.flags.set(kShutdownBoth);
        }
        virtq::ChainWriter hw(hdr_iov_);
        hw.write(hdr_bytes(h));
        complete(static_cast<std::uint32_t>(kVsockHdrSize + (n > 0 ? n : 0)));
        return true;
    }

    VsockDevice& dev_;
    QueueHandle q_;
    virtq::DescriptorChain chain_;
    std::vector<iovec> hdr_iov_;
    std::vector<iovec> data_iov_;
    bool held_ = false;
    bool needs_reset_ = false;
};

// --- tx: guest → device -------------------------------------------------------------------------

class VsockTxQueue final : public QueueHandler {
  public:
    VsockTxQueue(VsockDevice& dev, QueueHandle q) : dev_(dev), q_(q) {}

    void on_kick() override {
        bool wake_rx = false;
        while (!needs_reset_) {
            q_.queue().disable_notifications();
            auto r = q_.pop(chain_);
            if (!r) {
                log::guest_warn("vsock: tx: {}; stopping until reset", virtq::to_string(r.error()));
                needs_reset_ = true;
                break;
            }
            if (!*r) {
                if (!q_.queue().enable_notifications()) {
                    break;
                }
                continue;
            }
            {
                std::lock_guard lock(dev_.mu_);
                handle_packet();
                wake_rx = wake_rx || !dev_.ready_.empty() || !dev_.rst_queue_.empty();
            }
            // Transmit buffers are only read: used length 0 (§2.7.8.2).
            q_.push(chain_.token(), 0);
        }
        q_.publish_and_notify();
        if (wake_rx) {
            wake(dev_.wake_.get());
        }
    }
    void drain() override { q_.publish_and_notify(); }
    bool needs_reset() const override { return needs_reset_; }

  private:
    // Validates and acts on one packet, with dev_.mu_ held.
    void handle_packet() {
        using State = VsockDevice::Conn::State;
        VsockDevice& d = dev_;
        virtq::ChainReader rd(chain_.readable());
        VsockHdr h{};
        if (!rd.read(hdr_bytes(h))) {
            d.stats_.malformed.fetch_add(1, std::memory_order_relaxed);
            return;  // too short to even say whom to reset
        }
        const std::uint16_t op = h.op.get();
        const std::uint32_t len = h.len.get();
        // Addressing (§5.10.6.5: the driver uses guest_cid as source; we are the host). A packet
        // claiming another source is not answered: the reply would go to someone else.
        if (h.src_cid.get() != d.config_.guest_cid.get() || h.dst_cid.get() != kVsockHostCid) {
            d.stats_.malformed.fetch_add(1, std::memory_order_relaxed);
            return;
        }
        // §5.10.6.5: unknown type → RST. A payload longer than the chain or our per-packet
        // bound, or carried by anything but RW, is malformed: RST too.
        if (h.type.get() != kVsockTypeStream || len > rd.remaining() || len > kVsockMaxPayload ||
            (len != 0 && op != kVsockOpRw)) {
            d.stats_.malformed.fetch_add(1, std::memory_order_relaxed);
            reset_flow(h);
            return;
        }
        const auto k = VsockDevice::key(h.dst_port.get(), h.src_port.get());
        auto it = d.conns_.find(k);
        if (op == kVsockOpRequest) {
            if (it != d.conns_.end()) {
                reset_flow(h);  // a second REQUEST for a live flow: abort it
                return;
            }
            connect_host(h);
            return;
        }
        if (it == d.conns_.end()) {
            if (op != kVsockOpRst) {
                d.queue_rst(h);
            }
            return;
        }
        VsockDevice::Conn& c = *it->second;
        // §5.10.6.3: every packet of a flow carries the sender's credit.
        c.peer_buf_alloc = h.buf_alloc.get();
        c.peer_fwd_cnt = h.fwd_cnt.get();
        switch (op) {
            case kVsockOpResponse:
                if (c.state != State::kConnecting) {
                    c.send_rst = true;
                    break;
                }
                c.state = State::kEstablished;
                if (!send_all_now(c.sock.get(), fmt::format("OK {}\n", c.local_port))) {
                    c.send_rst = true;
                    break;
                }
                c.readable = true;  // the host program may have written already
                break;
            case kVsockOpRw:
                if (c.state != State::kEstablished || (c.peer_shutdown & kVsockShutdownSend) != 0) {
                    c.send_rst = true;
                    break;
                }
                // The guest must stay within the credit we gave (§5.10.6.3): buffered plus new
                // bytes at most kVsockBufAlloc. Overrunning it resets the flow.
                if (c.rx_cnt - c.fwd_cnt + std::uint64_t{len} > kVsockBufAlloc) {
                    d.stats_.malformed.fetch_add(1, std::memory_order_relaxed);
                    c.send_rst = true;
                    break;
                }
                if (c.pending_off > 0) {
                    c.pending.erase(c.pending.begin(),
                                    c.pending.begin() + static_cast<std::ptrdiff_t>(c.pending_off));
                    c.pending_off = 0;
                }
                {
                    const std::size_t old = c.pending.size();
                    c.pending.resize(old + len);
                    rd.read({c.pending.data() + old, len});  // fits: len <= remaining
                }
                c.rx_cnt += len;
                d.flush_pending(c);
                break;
            case kVsockOpCreditUpdate:
                break;  // credit taken above; mark() below lets waiting data flow
            case kVsockOpCreditRequest:
                c.send_credit_update = true;
                break;
            case kVsockOpShutdown:
                c.peer_shutdown |= h.flags.get() & kShutdownBoth;
                d.flush_pending(c);  // finishes the shutdown once buffered data is out
                break;
            case kVsockOpRst:
                d.close_conn(k);
                return;
            default:
                c.send_rst = true;  // OP_INVALID or unknown
                break;
        }
        d.mark(c);
    }

    // RST for the flow a bad packet names, closing it if it exists.
    void reset_flow(const VsockHdr& h) {
        VsockDevice& d = dev_;
        if (h.op.get() == kVsockOpRst) {
            return;  // never answer a RST with a RST
        }
        auto it = d.conns_.find(VsockDevice::key(h.dst_port.get(), h.src_port.get()));
        if (it != d.conns_.end()) {
            it->second->send_rst = true;
            d.mark(*it->second);
            return;
        }
        d.queue_rst(h);
    }

    // OP_REQUEST: connect to "<uds_path>_<port>"; RESPONSE if it accepts, RST if not.
    void connect_host(const VsockHdr& h) {
        VsockDevice& d = dev_;
        const std::uint32_t port = h.dst_port.get();
        auto addr = unix_addr(fmt::format("{}_{}", d.options_.uds_path, port));
        UniqueFd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
        // A non-blocking unix connect completes at once or fails (EAGAIN: backlog full, which
        // §5.10.6.6 answers like "insufficient resources": RST).
        if (!addr || !s || d.conns_.size() >= kVsockMaxConnections ||
            ::connect(s.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr) != 0) {
            d.queue_rst(h);
            return;
        }
        const int fd = s.get();
        if (!d.events_.add(fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                           static_cast<std::uint64_t>(fd))) {
            d.queue_rst(h);
            return;
        }
        auto c = std::make_unique<VsockDevice::Conn>();
        c->sock = std::move(s);
        c->local_port = port;
        c->peer_port = h.src_port.get();
        c->peer_buf_alloc = h.buf_alloc.get();
        c->peer_fwd_cnt = h.fwd_cnt.get();
        c->send_response = true;
        c->readable = true;
        const auto k = VsockDevice::key(c->local_port, c->peer_port);
        d.fd_keys_[fd] = k;
        VsockDevice::Conn& ref = *c;
        d.conns_.emplace(k, std::move(c));
        d.mark(ref);
    }

    VsockDevice& dev_;
    QueueHandle q_;
    virtq::DescriptorChain chain_;
    bool needs_reset_ = false;
};

// --- event queue: no events are ever sent; buffers stay in the ring -----------------------------

class VsockEventQueue final : public QueueHandler {
  public:
    void on_kick() override {}
    void drain() override {}
};

// --- the device ---------------------------------------------------------------------------------

VsockDevice::~VsockDevice() {
    if (listener_) {
        ::unlink(options_.uds_path.c_str());
    }
}

std::expected<std::unique_ptr<VsockDevice>, std::string> VsockDevice::create(
    const VsockOptions& o) {
    // §5.10.4: reserved CIDs, and the upper 32 bits are zero.
    if (o.guest_cid <= kVsockHostCid || o.guest_cid >= 0xffff'ffffu) {
        return std::unexpected(fmt::format(
            "--guest-cid {}: must be 3..4294967294 (0, 1, 2 and 0xffffffff are reserved)",
            o.guest_cid));
    }
    if (o.queue_size == 0 || o.queue_size > virtq::kMaxQueueSize) {
        return std::unexpected(
            fmt::format("queue size {}: must be 1..{}", o.queue_size, virtq::kMaxQueueSize));
    }
    auto addr = unix_addr(o.uds_path);
    // "<uds_path>_<port>" must fit too: up to 11 more bytes.
    if (!addr || o.uds_path.size() + 11 >= sizeof addr->sun_path) {
        return std::unexpected(fmt::format("--uds-path {}: empty or too long", o.uds_path));
    }
    auto dev = std::make_unique<VsockDevice>(PrivateTag{});
    dev->options_ = o;
    dev->config_.guest_cid.set(o.guest_cid);
    UniqueFd l(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!l) {
        return std::unexpected(fmt::format("socket: {}", std::strerror(errno)));
    }
    const auto* sa = reinterpret_cast<const sockaddr*>(&*addr);
    if (::bind(l.get(), sa, sizeof *addr) != 0) {
        if (errno != EADDRINUSE) {
            return std::unexpected(
                fmt::format("--uds-path {}: {}", o.uds_path, std::strerror(errno)));
        }
        // Replace a stale socket, never a live one.
        UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        if (probe && ::connect(probe.get(), sa, sizeof *addr) == 0) {
            return std::unexpected(fmt::format("--uds-path {}: in use", o.uds_path));
        }
        ::unlink(o.uds_path.c_str());
        if (::bind(l.get(), sa, sizeof *addr) != 0) {
            return std::unexpected(
                fmt::format("--uds-path {}: {}", o.uds_path, std::strerror(errno)));
        }
    }
    if (::listen(l.get(), 64) != 0) {
        return std::unexpected(
            fmt::format("--uds-path {}: listen: {}", o.uds_path, std::strerror(errno)));
    }
    dev->listener_ = std::move(l);
    dev->wake_ = make_wake_fd();
    if (!dev->events_.valid() || !dev->wake_ ||
        !dev->events_.add(dev->wake_.get(), EPOLLIN,
                          static_cast<std::uint64_t>(dev->wake_.get())) ||
        !dev->events_.add(dev->listener_.get(), EPOLLIN | EPOLLET,
                          static_cast<std::uint64_t>(dev->listener_.get()))) {
        return std::unexpected("epoll/eventfd setup failed");
    }
    return dev;
}

std::uint64_t VsockDevice::device_features() const {
    return bit(kVsockFStream) | bit(virtq::kFVersion1) | bit(virtq::kFRingPacked) |
           bit(virtq::kFEventIdx) | bit(virtq::kFIndirectDesc) | bit(virtq::kFRingReset);
}

std::span<const std::uint8_t> VsockDevice::config() const {
    return {reinterpret_cast<const std::uint8_t*>(&config_), sizeof config_};
}

std::unique_ptr<QueueHandler> VsockDevice::start_queue(std::uint16_t index, QueueHandle q) {
    switch (index) {
        case kVsockQueueRx:
            return std::make_unique<VsockRxQueue>(*this, q);
        case kVsockQueueTx:
            return std::make_unique<VsockTxQueue>(*this, q);
        case kVsockQueueEvent:
            return std::make_unique<VsockEventQueue>();
        default:
            return nullptr;
    }
}

void VsockDevice::reset() {
    std::lock_guard lock(mu_);
    for (auto& [fd, p] : pending_host_) {
        events_.remove(fd);
    }
    pending_host_.clear();
    for (auto& [k, c] : conns_) {
        events_.remove(c->sock.get());
    }
    conns_.clear();
    fd_keys_.clear();
    ready_.clear();
    rst_queue_.clear();
}

std::size_t VsockDevice::connection_count() const {
    std::lock_guard lock(mu_);
    return conns_.size();
}

void VsockDevice::mark(Conn& c) {
    if (!c.queued) {
        c.queued = true;
        ready_.push_back(key(c.local_port, c.peer_port));
    }
}

void VsockDevice::queue_rst(const VsockHdr& to) {
    if (rst_queue_.size() >= kVsockMaxQueuedRst) {
        stats_.dropped.fetch_add(1, std::memory_order_relaxed);
        return;
    }
    VsockHdr h{};
    h.src_cid.set(kVsockHostCid);
    h.dst_cid.set(config_.guest_cid.get());
    h.src_port.set(to.dst_port.get());
    h.dst_port.set(to.src_port.get());
    h.type.set(kVsockTypeStream);
    h.op.set(kVsockOpRst);
    rst_queue_.push_back(h);
    stats_.rst_sent.fetch_add(1, std::memory_order_relaxed);
}

void VsockDevice::close_conn(Key k) {
    auto it = conns_.find(k);
    if (it == conns_.end()) {
        return;
    }
    const int fd = it->second->sock.get();
    events_.remove(fd);
    fd_keys_.erase(fd);
    conns_.erase(it);  // closes the host socket
}

VsockHdr VsockDevice::header_for(Conn& c, std::uint16_t op) {
    VsockHdr h{};
    h.src_cid.set(kVsockHostCid);
    h.dst_cid.set(config_.guest_cid.get());
    h.src_port.set(c.local_port);
    h.dst_port.set(c.peer_port);
    h.type.set(kVsockTypeStream);
    h.op.set(op);
    h.buf_alloc.set(kVsockBufAlloc);
    h.fwd_cnt.set(c.fwd_cnt);
    c.last_fwd_cnt_sent = c.fwd_cnt;  // every packet tells the guest our credit
    return h;
}

bool VsockDevice::credit_update_due(const Conn& c) const {
    const std::uint32_t unannounced = c.fwd_cnt - c.last_fwd_cnt_sent;
    if (unannounced == 0) {
        return false;
    }
    // What the guest believes it may still send.
    const std::uint32_t believed_used = c.rx_cnt - c.last_fwd_cnt_sent;
    const std::uint32_t believed_free =
        believed_used >= kVsockBufAlloc ? 0 : kVsockBufAlloc - believed_used;
    return unannounced >= kCreditThreshold || believed_free < kCreditThreshold;
}

void VsockDevice::flush_pending(Conn& c) {
    while (c.pending_off < c.pending.size()) {
        const ssize_t n = ::send(c.sock.get(), c.pending.data() + c.pending_off,
                                 c.pending.size() - c.pending_off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            c.pending_off += static_cast<std::size_t>(n);
            c.fwd_cnt += static_cast<std::uint32_t>(n);
            stats_.to_host.fetch_add(static_cast<std::uint64_t>(n), std::memory_order_relaxed);
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && errno == EAGAIN) {
            break;  // EPOLLOUT (edge) resumes
        }
        c.send_rst = true;  // the host program is gone with data owed to it
        mark(c);
        return;
    }
    if (c.pending_off == c.pending.size()) {
        c.pending.clear();
        c.pending_off = 0;
        // §5.10.6.4: the guest will send no more: pass the EOF on once its data is out.
        if ((c.peer_shutdown & kVsockShutdownSend) != 0) {
            ::shutdown(c.sock.get(), SHUT_WR);
        }
        if (c.peer_shutdown == kShutdownBoth) {
            c.send_rst = true;  // clean disconnect: SHUTDOWN answered by RST
            mark(c);
            return;
        }
    }
    if (credit_update_due(c)) {
        c.send_credit_update = true;
        mark(c);
    }
}

std::uint32_t VsockDevice::allocate_local_port() {
    // Skips ports still in use by a flow (bounded: at most kVsockMaxConnections are).
    for (;;) {
        const std::uint32_t p = next_local_port_++;
        if (next_local_port_ == 0) {
            next_local_port_ = kVsockFirstLocalPort;
        }
        const bool used = std::any_of(conns_.begin(), conns_.end(),
                                      [&](const auto& kv) { return kv.second->local_port == p; });
        if (!used) {
            return p;
        }
    }
}

}  // namespace vireo::dev
