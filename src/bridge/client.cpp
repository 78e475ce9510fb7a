#include "bridge/client.hpp"

#include <fmt/format.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "bridge/channel.hpp"

namespace vireo::bridge {

namespace {

// A futex sleep is bounded so a vCPU notices a daemon that died mid-request.
constexpr long kFutexTimeoutNs = 50'000'000;
constexpr int kYields = 64;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

class ForwardingDevice final : public transport::BusDevice {
  public:
    ForwardingDevice(BridgeClient& c, std::uint64_t base, std::function<std::uint32_t()> slot)
        : c_(c), base_(base), slot_(std::move(slot)) {}
    void read(std::uint64_t offset, std::span<std::uint8_t> data) override {
        const AccessResult r =
            c_.access(slot_(), base_ + offset, static_cast<std::uint8_t>(data.size()), false);
        std::memcpy(data.data(), &r.value, data.size());  // little-endian low bytes
    }
    void write(std::uint64_t offset, std::span<const std::uint8_t> data) override {
        std::uint64_t v = 0;
        std::memcpy(&v, data.data(), data.size());
        c_.access(slot_(), base_ + offset, static_cast<std::uint8_t>(data.size()), true, v);
    }

  private:
    BridgeClient& c_;
    std::uint64_t base_;
    std::function<std::uint32_t()> slot_;
};

}  // namespace

std::expected<std::unique_ptr<BridgeClient>, std::string> BridgeClient::connect(
    const ClientOptions& o) {
    auto c = std::unique_ptr<BridgeClient>(new BridgeClient());
    auto s = connect_unix(o.socket);
    if (!s) {
        return std::unexpected(s.error());
    }
    c->sock_ = std::move(*s);
    c->vm_id_ = o.vm_id;
    c->spin_ = o.spin;
    const Hello hello{kHelloMagic, kProtocolVersion, o.vm_id,
                      o.vcpus,     o.ring_entries,   o.irq_entries};
    std::vector<int> fds;
    if (o.mem_fd >= 0) {
        fds.push_back(o.mem_fd);
    }
    if (auto r = send_msg(c->sock_.get(), bytes_of(hello), fds); !r) {
        return std::unexpected(r.error());
    }
    HelloAck ack{};
    std::vector<UniqueFd> got;
    if (auto r = recv_msg(c->sock_.get(), bytes_of(ack), got); !r) {
        return std::unexpected("bridge setup: " + r.error());
    }
    if (ack.magic != kHelloMagic || ack.version != kProtocolVersion) {
        return std::unexpected(fmt::format("bridge setup: daemon speaks version {}", ack.version));
    }
    if (ack.status != kHelloOk) {
        ack.reason[sizeof(ack.reason) - 1] = '\0';
        return std::unexpected(fmt::format("bridge setup refused: {}", ack.reason));
    }
    if (ack.devices > kMaxDevices) {
        return std::unexpected("bridge setup: too many devices");
    }
    c->devices_.resize(ack.devices);
    for (auto& d : c->devices_) {
        if (auto r = recv_msg(c->sock_.get(), bytes_of(d), got); !r) {
            return std::unexpected("bridge setup: " + r.error());
        }
    }
    if (got.size() != 3) {
        return std::unexpected(fmt::format("bridge setup: {} fds instead of 3", got.size()));
    }
    auto area = Area::attach(std::move(got[0]), ack.area_size);
    if (!area) {
        return std::unexpected(area.error());
    }
    c->area_ = std::move(*area);
    if (c->area_.vcpus() < o.vcpus) {
        return std::unexpected("bridge setup: fewer reply slots than vCPUs");
    }
    c->req_doorbell_ = std::move(got[1]);
    c->irq_doorbell_ = std::move(got[2]);
    c->stop_ = make_eventfd();
    c->tags_.assign(c->area_.vcpus(), 0);
    return c;
}

BridgeClient::~BridgeClient() {
    if (irq_thread_.joinable()) {
        ring_doorbell(stop_.get());
        irq_thread_.join();
    }
}

AccessResult BridgeClient::access(std::uint32_t vcpu, std::uint64_t addr, std::uint8_t size,
                                  bool write, std::uint64_t value) {
    if (vcpu >= area_.vcpus() || !alive_.load(std::memory_order_relaxed)) {
        return {kReplyBadVcpu, ~std::uint64_t{0}};
    }
    ReplySlot& slot = area_.slot(vcpu);
    const std::uint32_t tag = ++tags_[vcpu];
    aref(slot.state).store(kSlotPending, std::memory_order_relaxed);
    const Request req{
        vcpu, vm_id_, addr, write ? value : 0, tag, size, write ? std::uint8_t{1} : std::uint8_t{0},
        0};
    Ring<Request>& ring = area_.requests();
    // Back-pressure: a full ring means the daemon is behind; make sure it is awake and retry.
    while (!ring.try_push(req)) {
        ring_doorbell(req_doorbell_.get());
        if (!alive_.load(std::memory_order_relaxed)) {
            return {kReplyBadVcpu, ~std::uint64_t{0}};
        }
        std::this_thread::yield();
    }
    if (ring.needs_wakeup()) {
        ring_doorbell(req_doorbell_.get());
    }
    // Acquire on kSlotDone pairs with the daemon's release exchange: the reply is complete.
    std::uint32_t st = kSlotPending;
    // Spin briefly, then yield (on a loaded host the daemon's thread may need our core), then
    // sleep on the futex.
    for (int i = 0; i < spin_ + kYields; ++i) {
        st = aref(slot.state).load(std::memory_order_acquire);
        if (st == kSlotDone) {
            break;
        }
        if (i < spin_) {
            cpu_relax();
        } else {
            std::this_thread::yield();
        }
    }
    if (st != kSlotDone) {
        std::uint32_t expected = kSlotPending;
        if (aref(slot.state)
                .compare_exchange_strong(expected, kSlotWaiting, std::memory_order_acq_rel)) {
            while (aref(slot.state).load(std::memory_order_acquire) == kSlotWaiting) {
                if (!alive_.load(std::memory_order_relaxed)) {
                    return {kReplyBadVcpu, ~std::uint64_t{0}};
                }
                futex_wait(slot.state, kSlotWaiting, kFutexTimeoutNs);
            }
        }
    }
    AccessResult r;
    r.status = aref(slot.status).load(std::memory_order_relaxed);
    r.value = aref(slot.value).load(std::memory_order_relaxed);
    if (aref(slot.tag).load(std::memory_order_relaxed) != tag) {
        r = {kReplyBadVcpu, ~std::uint64_t{0}};
    }
    aref(slot.state).store(kSlotIdle, std::memory_order_relaxed);
    if (write && inject_) {
        // A write may have changed an interrupt level (InterruptAck lowers the line). The daemon
        // queued that change before it replied: apply it before the guest runs on, as an
        // in-process device would, or the guest's EOI could see the line still high and take a
        // spurious interrupt.
        poll_irqs(inject_);
    }
    return r;
}

std::size_t BridgeClient::poll_irqs(const std::function<void(std::uint32_t, bool)>& inject) {
    // The irq thread and vCPU threads (after writes) both consume: one at a time, and an entry is
    // injected before the lock is released, so whoever returns from here saw every earlier one
    // applied.
    const std::lock_guard lock(irq_mu_);
    std::size_t n = 0;
    const std::uint32_t budget = area_.irqs().capacity();
    while (n < budget) {
        auto r = area_.irqs().try_pop();
        if (!r) {
            break;
        }
        ++n;
        if (r->vm_id == vm_id_) {
            inject(r->irq, r->level != 0);
        }
    }
    return n;
}

void BridgeClient::start_irq_thread(std::function<void(std::uint32_t, bool)> inject) {
    inject_ = std::move(inject);
    irq_thread_ = std::thread([this] { irq_loop(); });
}

void BridgeClient::irq_loop() {
    UniqueFd ep(::epoll_create1(EPOLL_CLOEXEC));
    for (int fd : {irq_doorbell_.get(), sock_.get(), stop_.get()}) {
        epoll_event ev{};
        ev.events =
            fd == sock_.get() ? std::uint32_t{EPOLLIN | EPOLLRDHUP} : std::uint32_t{EPOLLIN};
        ev.data.fd = fd;
        ::epoll_ctl(ep.get(), EPOLL_CTL_ADD, fd, &ev);
    }
    Ring<IrqRequest>& ring = area_.irqs();
    for (;;) {
        if (poll_irqs(inject_) > 0) {
            continue;
        }
        ring.set_need_wakeup(true);
        if (!ring.empty()) {
            ring.set_need_wakeup(false);
            continue;
        }
        epoll_event evs[3];
        const int n = ::epoll_wait(ep.get(), evs, 3, -1);
        ring.set_need_wakeup(false);
        for (int i = 0; i < n; ++i) {
            const int fd = evs[i].data.fd;
            if (fd == irq_doorbell_.get()) {
                drain_doorbell(fd);
            } else if (fd == stop_.get()) {
                return;
            } else {
                // The daemon sends nothing after setup: readable means it is gone.
                alive_.store(false);
                for (std::uint32_t v = 0; v < area_.vcpus(); ++v) {
                    futex_wake(area_.slot(v).state);
                }
                return;
            }
        }
    }
}

std::uint32_t BridgeClient::thread_slot() {
    // One slot per calling thread, per client.
    struct Assigned {
        const BridgeClient* owner = nullptr;
        std::uint32_t slot = 0;
    };
    thread_local Assigned a;
    if (a.owner != this) {
        a.owner = this;
        a.slot = next_slot_.fetch_add(1, std::memory_order_relaxed);
    }
    return a.slot;  // beyond vcpus(): access() refuses (more threads than reply slots)
}

std::shared_ptr<transport::BusDevice> BridgeClient::bus_device(std::uint64_t base) {
    return std::make_shared<ForwardingDevice>(*this, base, [this] { return thread_slot(); });
}

}  // namespace vireo::bridge
