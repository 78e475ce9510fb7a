#include "devices/console.hpp"

#include <fmt/format.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cstring>

#include "base/log.hpp"
#include "devices/event_set.hpp"
#include "virtq/features.hpp"

namespace vireo::dev {

namespace {

using virtq::bit;

enum Tag : std::uint64_t { kTagWake, kTagListen, kTagIn, kTagOut };
constexpr std::size_t kMaxEvents = 8;

void log_queue_error(std::string_view what, virtq::QueueError e) {
    log::guest_warn("console: {}: {}; stopping until reset", what, virtq::to_string(e));
}

// The readable/writable iovecs of a chain from byte `offset` on, at most IOV_MAX of them.
std::vector<iovec>& iov_from(std::span<const iovec> segs, std::size_t offset,
                             std::vector<iovec>& out) {
    out.clear();
    for (const iovec& s : segs) {
        if (out.size() == IOV_MAX) {
            break;
        }
        if (offset >= s.iov_len) {
            offset -= s.iov_len;
            continue;
        }
        out.push_back({static_cast<std::uint8_t*>(s.iov_base) + offset, s.iov_len - offset});
        offset = 0;
    }
    return out;
}

}  // namespace

// --- port receiveq: back-end → guest ------------------------------------------------------------

class ConsolePortRx final : public QueueHandler {
  public:
    ConsolePortRx(ConsoleDevice& dev, std::size_t port, QueueHandle q)
        : dev_(dev), port_(*dev.ports_[port]), index_(port), q_(q) {
        events_.add(port_.rx_wake.get(), EPOLLIN, kTagWake);
        std::lock_guard lock(port_.mu);
        if (port_.backend->listen_fd() >= 0) {
            events_.add(port_.backend->listen_fd(), EPOLLIN | EPOLLET, kTagListen);
        }
        sync_input(*port_.backend);
    }
    bool ok() const { return events_.valid(); }

    void on_kick() override { serve(); }
    int event_fd() const override { return events_.fd(); }
    void on_event() override {
        std::array<epoll_event, kMaxEvents> evs;
        const std::size_t n = events_.poll(evs);
        for (std::size_t i = 0; i < n; ++i) {
            switch (evs[i].data.u64) {
                case kTagWake:
                    clear_wake(port_.rx_wake.get());
                    break;
                case kTagListen:
                    accept_pending_ = true;
                    break;
                default:
                    readable_ = true;  // EPOLLIN, or HUP/ERR: the next read reports it
                    break;
            }
        }
        serve();
    }
    void drain() override {
        if (held_) {
            q_.push(chain_.token(), 0);
            held_ = false;
        }
        q_.publish_and_notify();
    }
    bool needs_reset() const override { return needs_reset_; }

  private:
    void serve() {
        {
            std::lock_guard lock(port_.mu);
            ConsoleBackend& b = *port_.backend;
            if (accept_pending_ || !b.connected()) {
                accept_pending_ = false;
                if (b.accept_client()) {
                    dev_.post_control(static_cast<std::uint32_t>(index_), kConsolePortOpen, 1);
                    wake(port_.tx_wake.get());
                }
            }
            sync_input(b);
            if (!dev_.multiport() || port_.guest_open.load(std::memory_order_acquire)) {
                transfer(b);
            }
        }
        q_.publish_and_notify();
    }

    // Watches the back-end's current input (it changes when a unix client comes or goes).
    void sync_input(ConsoleBackend& b) {
        if (watched_gen_ == b.generation() && watched_) {
            return;
        }
        watched_gen_ = b.generation();
        watched_ = true;
        const int fd = b.in_fd();
        if (fd >= 0) {
            // Edge-triggered: readable_ remembers the edge until a read returns EAGAIN, so
            // input that waits for guest buffers does not make the transport spin.
            if (!events_.set(fd, EPOLLIN | EPOLLRDHUP | EPOLLET, kTagIn)) {
                // Not pollable (a regular file on stdin): no input from it.
                log::warn("console: port {}: input not pollable; ignored", index_);
                b.disconnect();
                watched_gen_ = b.generation();
                return;
            }
            readable_ = true;
        }
    }

    // Reads back-end input straight into guest receive buffers while both are available.
    void transfer(ConsoleBackend& b) {
        while (readable_ && !needs_reset_) {
            const int fd = b.in_fd();
            if (fd < 0) {
                readable_ = false;
                return;
            }
            if (!held_) {
                q_.queue().disable_notifications();
                auto r = q_.pop(chain_);
                if (!r) {
                    log_queue_error("receiveq", r.error());
                    needs_reset_ = true;
                    return;
                }
                if (!*r) {
                    // No buffer: wait for a kick (notifications back on, then look again).
                    if (!q_.queue().enable_notifications()) {
                        return;
                    }
                    continue;
                }
                held_ = true;
                if (chain_.writable_bytes() == 0) {
                    // §5.3.6.1: receive buffers must be device-writable.
                    q_.push(chain_.token(), 0);
                    held_ = false;
                    continue;
                }
            }
            iov_from(chain_.writable(), 0, iov_);
            const ssize_t n = ::readv(fd, iov_.data(), static_cast<int>(iov_.size()));
            if (n > 0) {
                q_.push(chain_.token(), static_cast<std::uint32_t>(n));
                held_ = false;
                dev_.stats_.to_guest.fetch_add(static_cast<std::uint64_t>(n),
                                               std::memory_order_relaxed);
                continue;
            }
            if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
                if (errno == EAGAIN) {
                    readable_ = false;
                }
                continue;
            }
            // EOF or a hard error: the host program left. The buffer stays held for later input.
            const bool had_client = b.connected();
            b.disconnect();
            readable_ = false;
            if (had_client && !b.connected()) {
                dev_.post_control(static_cast<std::uint32_t>(index_), kConsolePortOpen, 0);
                wake(port_.tx_wake.get());
                if (b.accept_client()) {  // the next client may already be waiting
                    dev_.post_control(static_cast<std::uint32_t>(index_), kConsolePortOpen, 1);
                }
                sync_input(b);
            }
        }
    }

    ConsoleDevice& dev_;
    ConsoleDevice::Port& port_;
    std::size_t index_;
    QueueHandle q_;
    EventSet events_;
    virtq::DescriptorChain chain_;
    std::vector<iovec> iov_;
    bool held_ = false;
    bool readable_ = false;
    bool accept_pending_ = true;
    bool watched_ = false;
    std::uint64_t watched_gen_ = 0;
    bool needs_reset_ = false;
};

// --- port transmitq: guest → back-end -----------------------------------------------------------

class ConsolePortTx final : public QueueHandler {
  public:
    ConsolePortTx(ConsoleDevice& dev, std::size_t port, QueueHandle q)
        : dev_(dev), port_(*dev.ports_[port]), index_(port), q_(q) {
        events_.add(port_.tx_wake.get(), EPOLLIN, kTagWake);
    }
    bool ok() const { return events_.valid(); }

    void on_kick() override { serve(); }
    int event_fd() const override { return events_.fd(); }
    void on_event() override {
        std::array<epoll_event, kMaxEvents> evs;
        const std::size_t n = events_.poll(evs);
        for (std::size_t i = 0; i < n; ++i) {
            if (evs[i].data.u64 == kTagWake) {
                clear_wake(port_.tx_wake.get());
            } else {
                waiting_fd_ = -1;  // one-shot: the registration is spent
            }
        }
        serve();
    }
    void drain() override {
        if (held_) {
            // The queue stops with output the back-end never took: one last try, then the rest
            // is lost (the ring cannot take a chain back).
            std::lock_guard lock(port_.mu);
            write_held(*port_.backend);
            if (held_) {
                dev_.stats_.dropped.fetch_add(chain_.readable_bytes() - offset_,
                                              std::memory_order_relaxed);
                finish();
            }
        }
        q_.publish_and_notify();
    }
    bool needs_reset() const override { return needs_reset_; }

  private:
    void serve() {
        {
            std::lock_guard lock(port_.mu);
            ConsoleBackend& b = *port_.backend;
            while (!needs_reset_) {
                if (held_) {
                    if (!write_held(b)) {
                        break;  // would block: EPOLLOUT wakes us
                    }
                    continue;
                }
                q_.queue().disable_notifications();
                auto r = q_.pop(chain_);
                if (!r) {
                    log_queue_error("transmitq", r.error());
                    needs_reset_ = true;
                    break;
                }
                if (!*r) {
                    if (!q_.queue().enable_notifications()) {
                        break;
                    }
                    continue;
                }
                held_ = true;
                offset_ = 0;
                gen_ = b.generation();
            }
        }
        q_.publish_and_notify();
    }

    // Writes the rest of the held chain. False if the back-end would block.
    bool write_held(ConsoleBackend& b) {
        const int fd = b.out_fd();
        const std::uint32_t total = chain_.readable_bytes();
        if (fd < 0 || (offset_ > 0 && gen_ != b.generation())) {
            // Nobody to take it (or the client that got the first part is gone): drop.
            dev_.stats_.dropped.fetch_add(total - offset_, std::memory_order_relaxed);
            finish();
            return true;
        }
        gen_ = b.generation();
        while (offset_ < total) {
            iov_from(chain_.readable(), offset_, iov_);
            ssize_t n;
            if (b.out_is_socket()) {
                msghdr m{};
                m.msg_iov = iov_.data();
                m.msg_iovlen = iov_.size();
                n = ::sendmsg(fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
            } else {
                n = ::writev(fd, iov_.data(), static_cast<int>(iov_.size()));
            }
            if (n > 0) {
                offset_ += static_cast<std::uint32_t>(n);
                dev_.stats_.to_host.fetch_add(static_cast<std::uint64_t>(n),
                                              std::memory_order_relaxed);
                continue;
            }
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n < 0 && errno == EAGAIN) {
                // Poll for writability (one-shot, re-armed each time we block).
                if (waiting_fd_ != fd) {
                    if (events_.set(fd, EPOLLOUT | EPOLLONESHOT, kTagOut)) {
                        waiting_fd_ = fd;
                    }
                } else {
                    events_.modify(fd, EPOLLOUT | EPOLLONESHOT, kTagOut);
                }
                return false;
            }
            // EPIPE, ECONNRESET, …: the reader is gone; its output is dropped.
            dev_.stats_.dropped.fetch_add(total - offset_, std::memory_order_relaxed);
            if (b.kind() == ConsoleBackendKind::kUnix) {
                b.disconnect();
                dev_.post_control(static_cast<std::uint32_t>(index_), kConsolePortOpen, 0);
                wake(port_.rx_wake.get());
            }
            break;
        }
        finish();
        return true;
    }

    void finish() {
        q_.push(chain_.token(), 0);  // the device wrote nothing into a transmit buffer
        held_ = false;
        offset_ = 0;
    }

    ConsoleDevice& dev_;
    ConsoleDevice::Port& port_;
    std::size_t index_;
    QueueHandle q_;
    EventSet events_;
    virtq::DescriptorChain chain_;
    std::vector<iovec> iov_;
    bool held_ = false;
    std::uint32_t offset_ = 0;  // bytes of the held chain already written
    std::uint64_t gen_ = 0;     // back-end generation the held chain started writing to
    int waiting_fd_ = -1;       // fd registered for EPOLLOUT
    bool needs_reset_ = false;
};

// --- control queues (MULTIPORT) -----------------------------------------------------------------

class ConsoleControlRxQueue final : public QueueHandler {
  public:
    ConsoleControlRxQueue(ConsoleDevice& dev, QueueHandle q) : dev_(dev), q_(q) {}

    void on_kick() override { serve(); }
    int event_fd() const override { return dev_.control_wake_.get(); }
    void on_event() override {
        clear_wake(dev_.control_wake_.get());
        serve();
    }
    void drain() override { q_.publish_and_notify(); }
    bool needs_reset() const override { return needs_reset_; }

  private:
    void serve() {
        {
            std::lock_guard lock(dev_.control_mu_);
            // Buffers are popped only while messages wait, so none is ever held.
            while (!dev_.control_out_.empty() && !needs_reset_) {
                q_.queue().disable_notifications();
                auto r = q_.pop(chain_);
                if (!r) {
                    log_queue_error("control receiveq", r.error());
                    needs_reset_ = true;
                    break;
                }
                if (!*r) {
                    if (!q_.queue().enable_notifications()) {
                        break;
                    }
                    continue;
                }
                const auto& msg = dev_.control_out_.front();
                virtq::ChainWriter w(chain_.writable());
                if (!w.write(msg)) {
                    dev_.stats_.control_dropped.fetch_add(1, std::memory_order_relaxed);
                }
                q_.push(chain_.token(), static_cast<std::uint32_t>(w.written()));
                dev_.control_out_.pop_front();
            }
        }
        q_.publish_and_notify();
    }

    ConsoleDevice& dev_;
    QueueHandle q_;
    virtq::DescriptorChain chain_;
    bool needs_reset_ = false;
};

class ConsoleControlTxQueue final : public QueueHandler {
  public:
    ConsoleControlTxQueue(ConsoleDevice& dev, QueueHandle q) : dev_(dev), q_(q) {}

    void on_kick() override {
        while (!needs_reset_) {
            q_.queue().disable_notifications();
            auto r = q_.pop(chain_);
            if (!r) {
                log_queue_error("control transmitq", r.error());
                needs_reset_ = true;
                break;
            }
            if (!*r) {
                if (!q_.queue().enable_notifications()) {
                    break;
                }
                continue;
            }
            ConsoleControl msg{};
            virtq::ChainReader rd(chain_.readable());
            if (rd.read_obj(msg)) {
                dev_.handle_control(msg);
            } else {
                dev_.stats_.bad_control.fetch_add(1, std::memory_order_relaxed);
            }
            q_.push(chain_.token(), 0);
        }
        q_.publish_and_notify();
    }
    void drain() override { q_.publish_and_notify(); }
    bool needs_reset() const override { return needs_reset_; }

  private:
    ConsoleDevice& dev_;
    QueueHandle q_;
    virtq::DescriptorChain chain_;
    bool needs_reset_ = false;
};

// --- the device ---------------------------------------------------------------------------------

ConsoleDevice::~ConsoleDevice() = default;

std::expected<std::unique_ptr<ConsoleDevice>, std::string> ConsoleDevice::create(
    const ConsoleOptions& o) {
    if (o.ports.empty() || o.ports.size() > kConsoleMaxPorts) {
        return std::unexpected(
            fmt::format("1 to {} ports, not {}", kConsoleMaxPorts, o.ports.size()));
    }
    if (o.queue_size == 0 || o.queue_size > virtq::kMaxQueueSize) {
        return std::unexpected(
            fmt::format("queue size {}: must be 1..{}", o.queue_size, virtq::kMaxQueueSize));
    }
    auto dev = std::make_unique<ConsoleDevice>(PrivateTag{});
    dev->queue_size_ = o.queue_size;
    for (std::size_t i = 0; i < o.ports.size(); ++i) {
        const ConsolePortOptions& po = o.ports[i];
        if (po.name.size() > kConsoleMaxNameBytes) {
            return std::unexpected(
                fmt::format("port {}: name longer than {} bytes", i, kConsoleMaxNameBytes));
        }
        auto backend = ConsoleBackend::open(po);
        if (!backend) {
            return std::unexpected(fmt::format("port {}: {}", i, backend.error()));
        }
        auto p = std::make_unique<Port>();
        p->backend = std::move(*backend);
        p->name = po.name;
        p->rx_wake = make_wake_fd();
        p->tx_wake = make_wake_fd();
        if (!p->rx_wake || !p->tx_wake) {
            return std::unexpected("eventfd failed");
        }
        dev->multiport_offered_ |= !po.name.empty();
        dev->ports_.push_back(std::move(p));
    }
    dev->control_wake_ = make_wake_fd();
    if (!dev->control_wake_) {
        return std::unexpected("eventfd failed");
    }
    dev->multiport_offered_ |= o.multiport || o.ports.size() > 1;

    std::uint16_t cols = o.cols;
    std::uint16_t rows = o.rows;
    if ((cols == 0 || rows == 0) && o.ports[0].kind == ConsoleBackendKind::kStdio) {
        winsize ws{};
        if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col != 0 && ws.ws_row != 0) {
            cols = ws.ws_col;
            rows = ws.ws_row;
        }
    }
    dev->size_offered_ = cols != 0 && rows != 0;
    dev->config_.cols.set(cols);
    dev->config_.rows.set(rows);
    dev->config_.max_nr_ports.set(static_cast<std::uint32_t>(o.ports.size()));
    dev->reset();
    return dev;
}

std::uint64_t ConsoleDevice::device_features() const {
    std::uint64_t f = bit(kConsoleFEmergWrite) | bit(virtq::kFVersion1) | bit(virtq::kFRingPacked) |
                      bit(virtq::kFEventIdx) | bit(virtq::kFIndirectDesc) | bit(virtq::kFRingReset);
    if (size_offered_) {
        f |= bit(kConsoleFSize);
    }
    if (multiport_offered_) {
        f |= bit(kConsoleFMultiport);
    }
    return f;
}

std::uint16_t ConsoleDevice::num_queues() const {
    // §5.3.2: port 0's pair always; the control pair and one pair per further port with
    // MULTIPORT.
    return multiport_offered_ ? static_cast<std::uint16_t>(2 + 2 * ports_.size()) : 2;
}

std::span<const std::uint8_t> ConsoleDevice::config() const {
    return {reinterpret_cast<const std::uint8_t*>(&config_), sizeof config_};
}

void ConsoleDevice::write_config(std::uint32_t offset, std::span<const std::uint8_t> data) {
    // §5.3.5.1: the low byte written to emerg_wr goes to the console (port 0), best effort.
    if (offset != offsetof(ConsoleConfig, emerg_wr) || data.empty() || data.size() > 4) {
        return;
    }
    Port& p = *ports_[0];
    std::lock_guard lock(p.mu);
    const int fd = p.backend->out_fd();
    if (fd >= 0) {
        const std::uint8_t c = data[0];
        if (p.backend->out_is_socket()) {
            [[maybe_unused]] auto n = ::send(fd, &c, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        } else {
            [[maybe_unused]] auto n = ::write(fd, &c, 1);
        }
    }
}

void ConsoleDevice::set_features(std::uint64_t negotiated) {
    const bool mp = (negotiated & device_features() & bit(kConsoleFMultiport)) != 0;
    multiport_.store(mp, std::memory_order_release);
}

void ConsoleDevice::reset() {
    multiport_.store(false, std::memory_order_release);
    for (auto& p : ports_) {
        p->guest_open.store(false, std::memory_order_release);
    }
    std::lock_guard lock(control_mu_);
    control_out_.clear();
}

std::string ConsoleDevice::port_path(std::size_t port) const {
    if (port >= ports_.size()) {
        return {};
    }
    std::lock_guard lock(ports_[port]->mu);
    return ports_[port]->backend->path();
}

std::unique_ptr<QueueHandler> ConsoleDevice::start_queue(std::uint16_t index, QueueHandle q) {
    std::size_t port = 0;
    bool rx = true;
    if (index == kConsolePort0Rx || index == kConsolePort0Tx) {
        rx = index == kConsolePort0Rx;
    } else if (!multiport() || index >= num_queues()) {
        return nullptr;
    } else if (index == kConsoleControlRx) {
        return std::make_unique<ConsoleControlRxQueue>(*this, q);
    } else if (index == kConsoleControlTx) {
        return std::make_unique<ConsoleControlTxQueue>(*this, q);
    } else {
        port = 1 + (index - kConsolePort1Rx) / 2u;
        rx = (index - kConsolePort1Rx) % 2 == 0;
    }
    if (rx) {
        auto h = std::make_unique<ConsolePortRx>(*this, port, q);
        return h->ok() ? std::move(h) : nullptr;
    }
    auto h = std::make_unique<ConsolePortTx>(*this, port, q);
    return h->ok() ? std::move(h) : nullptr;
}

void ConsoleDevice::post_control(std::uint32_t port, std::uint16_t event, std::uint16_t value,
                                 std::string_view payload) {
    if (!multiport()) {
        return;
    }
    ConsoleControl c{};
    c.id.set(port);
    c.event.set(event);
    c.value.set(value);
    std::vector<std::uint8_t> msg(sizeof c + payload.size());
    std::memcpy(msg.data(), &c, sizeof c);
    if (!payload.empty()) {
        std::memcpy(msg.data() + sizeof c, payload.data(), payload.size());
    }
    {
        std::lock_guard lock(control_mu_);
        if (control_out_.size() >= kConsoleMaxPendingControl) {
            stats_.control_dropped.fetch_add(1, std::memory_order_relaxed);
            return;
        }
        control_out_.push_back(std::move(msg));
    }
    wake(control_wake_.get());
}

void ConsoleDevice::handle_control(const ConsoleControl& msg) {
    const std::uint32_t id = msg.id.get();
    const std::uint16_t value = msg.value.get();
    switch (msg.event.get()) {
        case kConsoleDeviceReady:
            if (value != 1) {
                log::guest_warn("console: driver failed to initialise (DEVICE_READY 0)");
                return;
            }
            for (std::size_t i = 0; i < ports_.size(); ++i) {
                post_control(static_cast<std::uint32_t>(i), kConsoleDeviceAdd, 0);
            }
            return;
        case kConsolePortReady: {
            if (id >= ports_.size()) {
                stats_.bad_control.fetch_add(1, std::memory_order_relaxed);
                return;
            }
            if (value != 1) {
                log::guest_warn("console: driver failed to add port {}", id);
                return;
            }
            Port& p = *ports_[id];
            if (id == 0) {
                post_control(id, kConsoleConsolePort, 1);  // port 0 is the console (hvc0)
            }
            if (!p.name.empty()) {
                post_control(id, kConsolePortName, 1, p.name);
            }
            bool connected;
            {
                std::lock_guard lock(p.mu);
                connected = p.backend->connected();
            }
            if (connected) {
                post_control(id, kConsolePortOpen, 1);
            }
            return;
        }
        case kConsolePortOpen:
            if (id >= ports_.size()) {
                stats_.bad_control.fetch_add(1, std::memory_order_relaxed);
                return;
            }
            ports_[id]->guest_open.store(value != 0, std::memory_order_release);
            wake(ports_[id]->rx_wake.get());
            return;
        default:
            // Device→driver events sent by a driver, or unknown ones: ignored (§5.3.6.2).
            stats_.bad_control.fetch_add(1, std::memory_order_relaxed);
            return;
    }
}

}  // namespace vireo::dev
