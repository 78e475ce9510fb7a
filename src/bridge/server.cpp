#include "bridge/server.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <thread>

#include "base/log.hpp"
#include "bridge/channel.hpp"
#include "devices/blk.hpp"
#include "devices/console.hpp"
#include "devices/net.hpp"
#include "devices/net_switch.hpp"
#include "devices/net_tap.hpp"
#include "transport/virtio_mmio.hpp"

namespace vireo::bridge {

namespace {

// How long the zone thread polls an empty ring before it sleeps on the doorbell: a guest
// driver's register accesses come in bursts (a probe, a queue setup), and catching the next
// one without a wakeup saves two context switches. Short: the host's cores are shared.
constexpr int kPollSpins = 256;
constexpr int kPollYields = 64;
// Bounded wait for a full irq ring (a hypervisor that stopped draining must not stall us).
constexpr int kIrqPushRetries = 10000;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

std::uint32_t reply_for(const Request& r, const ZoneDispatch& zone, std::uint64_t& value) {
    value = ~std::uint64_t{0};
    if (r.vm_id != zone.vm_id) {
        return kReplyBadVm;
    }
    if (!valid_access_size(r.size)) {
        return kReplyBadSize;
    }
    auto* bytes = reinterpret_cast<std::uint8_t*>(&value);
    if (r.is_write != 0) {
        std::uint64_t v = r.value;
        const bool ok = zone.bus->write(
            r.addr, std::span<const std::uint8_t>(reinterpret_cast<std::uint8_t*>(&v), r.size));
        return ok ? kReplyOk : kReplyNoDevice;
    }
    value = 0;
    if (!zone.bus->read(r.addr, std::span<std::uint8_t>(bytes, r.size))) {
        value = ~std::uint64_t{0};
        return kReplyNoDevice;
    }
    return kReplyOk;
}

}  // namespace

std::size_t serve_requests(Area& area, const ZoneDispatch& zone) {
    std::size_t n = 0;
    const std::uint32_t budget = area.requests().capacity();  // bounded per call
    while (n < budget) {
        auto r = area.requests().try_pop();
        if (!r) {
            break;
        }
        ++n;
        zone.stats->requests.fetch_add(1, std::memory_order_relaxed);
        if (r->vcpu >= area.vcpus()) {
            // Nobody to answer: a hostile or broken hypervisor. Drop it, count it.
            zone.stats->bad_vcpu.fetch_add(1, std::memory_order_relaxed);
            continue;
        }
        std::uint64_t value = 0;
        const std::uint32_t status = reply_for(*r, zone, value);
        if (status != kReplyOk) {
            zone.stats->errors.fetch_add(1, std::memory_order_relaxed);
        }
        ReplySlot& s = area.slot(r->vcpu);
        aref(s.value).store(value, std::memory_order_relaxed);
        aref(s.status).store(status, std::memory_order_relaxed);
        aref(s.tag).store(r->tag, std::memory_order_relaxed);
        // Release: value/status/tag are visible before the vCPU sees kSlotDone. Only a vCPU that
        // announced it sleeps (kSlotWaiting) costs a futex syscall.
        const std::uint32_t old = aref(s.state).exchange(kSlotDone, std::memory_order_acq_rel);
        if (old == kSlotWaiting) {
            futex_wake(s.state);
        }
    }
    return n;
}

// --- zones and sessions -------------------------------------------------------------------

struct BridgeServer::ZoneState {
    Zone cfg;
    ZoneStats stats;
    std::vector<std::unique_ptr<dev::VirtioDevice>> models;  // parallel to cfg.devices
    std::unique_ptr<Session> session;
};

namespace {

// A virtio-mmio device's interrupt line, as requests on the zone's irq ring.
class RingIrqLine final : public transport::IrqLine {
  public:
    RingIrqLine(Area& area, int doorbell, std::uint32_t vm_id, std::uint32_t irq, ZoneStats& stats)
        : area_(area), doorbell_(doorbell), vm_id_(vm_id), irq_(irq), stats_(stats) {}

    void set_level(bool high) override {
        const IrqRequest r{vm_id_, irq_, high ? 1u : 0u, 0};
        // Producers are the zone thread and queue workers: the ring is multi-producer.
        for (int i = 0; !area_.irqs().try_push(r); ++i) {
            if (i == kIrqPushRetries) {
                stats_.irq_drops.fetch_add(1, std::memory_order_relaxed);
                return;
            }
            ring_doorbell(doorbell_);  // back-pressure: make sure the consumer is awake
            std::this_thread::yield();
        }
        stats_.irqs.fetch_add(1, std::memory_order_relaxed);
        if (area_.irqs().needs_wakeup()) {
            ring_doorbell(doorbell_);
        }
    }

  private:
    Area& area_;
    int doorbell_;
    std::uint32_t vm_id_;
    std::uint32_t irq_;
    ZoneStats& stats_;
};

// A restarted hypervisor may say Hello before the zone thread noticed its predecessor's
// socket close: look at the old socket directly.
bool peer_alive(int sock) {
    pollfd p{sock, POLLIN | POLLRDHUP, 0};
    return ::poll(&p, 1, 0) == 0;
}

std::expected<std::unique_ptr<dev::VirtioDevice>, std::string> make_model(const ZoneDevice& d) {
    switch (d.type) {
        case ZoneDeviceType::kBlk: {
            auto b = dev::BlkDevice::open(d.blk);
            if (!b) {
                return std::unexpected(b.error());
            }
            return std::unique_ptr<dev::VirtioDevice>(std::move(*b));
        }
        case ZoneDeviceType::kNet: {
            dev::NetOptions o;
            o.mac = d.mac;
            if (!d.net_switch.empty()) {
                // Zones naming the same switch share one L2 segment inside the daemon.
                auto port = dev::NetSwitch::get(d.net_switch)->add_port(1);
                if (!port) {
                    return std::unexpected(port.error());
                }
                o.backend = std::move(*port);
            } else {
                auto tap = dev::NetTap::open(d.tap, 1);
                if (!tap) {
                    return std::unexpected(tap.error());
                }
                o.backend = std::move(*tap);
            }
            auto n = dev::NetDevice::create(std::move(o));
            if (!n) {
                return std::unexpected(n.error());
            }
            return std::unique_ptr<dev::VirtioDevice>(std::move(*n));
        }
        case ZoneDeviceType::kConsole: {
            dev::ConsoleOptions o;
            if (!d.console_file.empty()) {
                o.ports[0].kind = dev::ConsoleBackendKind::kFile;
                o.ports[0].path = d.console_file;
            }
            auto c = dev::ConsoleDevice::create(o);
            if (!c) {
                return std::unexpected(c.error());
            }
            return std::unique_ptr<dev::VirtioDevice>(std::move(*c));
        }
    }
    return std::unexpected("unknown device type");
}

}  // namespace

struct BridgeServer::Session {
    ZoneState& zone;
    UniqueFd conn;
    GuestMemory mem;  // this zone's configured regions only
    Area area;
    UniqueFd req_doorbell;
    UniqueFd irq_doorbell;
    UniqueFd stop;
    std::vector<std::unique_ptr<RingIrqLine>> lines;
    transport::Bus bus;
    std::vector<std::shared_ptr<transport::VirtioMmio>> mmio;
    std::thread thread;
    std::atomic<bool> ended{false};
    int reap_fd = -1;

    explicit Session(ZoneState& z) : zone(z) {}
    ~Session() {
        if (thread.joinable()) {
            ring_doorbell(stop.get());
            thread.join();
        }
        for (const ZoneDevice& d : zone.cfg.devices) {
            bus.remove(d.addr);
        }
        // Last references: the transports stop their queue workers (handlers drained) and
        // reset the devices, while lines, area and memory are still alive.
        mmio.clear();
    }

    void loop();
};

void BridgeServer::Session::loop() {
    UniqueFd ep(::epoll_create1(EPOLL_CLOEXEC));
    auto add = [&](int fd, std::uint32_t events) {
        epoll_event ev{};
        ev.events = events;
        ev.data.fd = fd;
        ::epoll_ctl(ep.get(), EPOLL_CTL_ADD, fd, &ev);
    };
    add(req_doorbell.get(), EPOLLIN);
    add(conn.get(), EPOLLIN | EPOLLRDHUP);
    add(stop.get(), EPOLLIN);
    const ZoneDispatch d{zone.cfg.id, &bus, &zone.stats};
    Ring<Request>& ring = area.requests();
    for (;;) {
        if (serve_requests(area, d) > 0) {
            continue;
        }
        bool more = false;
        for (int i = 0; i < kPollSpins + kPollYields && !more; ++i) {
            if (i < kPollSpins) {
                cpu_relax();
            } else {
                std::this_thread::yield();  // a loaded host: let the vCPU thread run
            }
            more = !ring.empty();
        }
        if (more) {
            continue;
        }
        ring.set_need_wakeup(true);
        if (!ring.empty()) {  // pushed before the producer could see the flag
            ring.set_need_wakeup(false);
            continue;
        }
        epoll_event evs[3];
        const int n = ::epoll_wait(ep.get(), evs, 3, -1);
        ring.set_need_wakeup(false);
        zone.stats.wakeups.fetch_add(1, std::memory_order_relaxed);
        for (int i = 0; i < n; ++i) {
            const int fd = evs[i].data.fd;
            if (fd == req_doorbell.get()) {
                drain_doorbell(fd);
            } else if (fd == stop.get()) {
                return;
            } else if (fd == conn.get()) {
                // The hypervisor sends nothing after Hello: readable means it went away (or
                // sent junk, which we discard).
                char buf[64];
                const ssize_t r = ::recv(conn.get(), buf, sizeof(buf), MSG_DONTWAIT);
                if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR) ||
                    (evs[i].events & (EPOLLHUP | EPOLLRDHUP | EPOLLERR)) != 0) {
                    log::info("zone {}: hypervisor disconnected", zone.cfg.id);
                    ended.store(true);
                    ring_doorbell(reap_fd);
                    return;
                }
            }
        }
    }
}

BridgeServer::BridgeServer(BridgeConfig cfg) : cfg_(std::move(cfg)) {}

BridgeServer::~BridgeServer() {
    const std::lock_guard lock(mu_);
    for (auto& z : zones_) {
        z->session.reset();
    }
    if (listen_) {
        ::unlink(cfg_.socket.c_str());
    }
}

std::expected<std::unique_ptr<BridgeServer>, std::string> BridgeServer::create(BridgeConfig cfg) {
    auto s = std::unique_ptr<BridgeServer>(new BridgeServer(std::move(cfg)));
    for (const Zone& z : s->cfg_.zones) {
        auto zs = std::make_unique<ZoneState>();
        zs->cfg = z;
        for (const ZoneDevice& d : z.devices) {
            auto m = make_model(d);
            if (!m) {
                return std::unexpected(
                    fmt::format("{} ({}): {}", d.where, to_string(d.type), m.error()));
            }
            log::info("zone {}: {} at {:#x} (+{:#x}), irq {}", z.id, to_string(d.type), d.addr,
                      d.len, d.irq);
            zs->models.push_back(std::move(*m));
        }
        s->zones_.push_back(std::move(zs));
    }
    auto l = listen_unix(s->cfg_.socket);
    if (!l) {
        return std::unexpected(l.error());
    }
    s->listen_ = std::move(*l);
    s->stop_fd_ = make_eventfd();
    log::info("bridge: listening on {} for {} zone(s)", s->cfg_.socket, s->zones_.size());
    return s;
}

void BridgeServer::stop() {
    stop_requested_.store(true);
    ring_doorbell(stop_fd_.get());
}

const ZoneStats& BridgeServer::stats(std::uint32_t zone_id) const {
    for (const auto& z : zones_) {
        if (z->cfg.id == zone_id) {
            return z->stats;
        }
    }
    static const ZoneStats kNone;
    return kNone;
}

std::expected<std::unique_ptr<BridgeServer::Session>, std::string> BridgeServer::open_session(
    ZoneState& z, const Hello& hello, UniqueFd mem_fd) {
    auto s = std::make_unique<Session>(z);
    // Memory: only the configured regions, each checked against what backs it (a mapping past
    // the end of a file would turn guest accesses into SIGBUS in the daemon).
    for (std::size_t i = 0; i < z.cfg.regions.size(); ++i) {
        const ZoneRegion& r = z.cfg.regions[i];
        UniqueFd fd;
        if (!r.file.empty()) {
            fd.reset(::open(r.file.c_str(), O_RDWR | O_CLOEXEC));
        } else if (mem_fd) {
            fd.reset(::fcntl(mem_fd.get(), F_DUPFD_CLOEXEC, 0));
        } else {
            return std::unexpected(
                fmt::format("memory_region[{}]: no file in the config and no memory fd passed", i));
        }
        struct stat st {};
        if (!fd || ::fstat(fd.get(), &st) != 0) {
            return std::unexpected(fmt::format("memory_region[{}]: {}", i, std::strerror(errno)));
        }
        if (static_cast<std::uint64_t>(st.st_size) < r.zone0_ipa ||
            static_cast<std::uint64_t>(st.st_size) - r.zone0_ipa < r.size) {
            return std::unexpected(fmt::format(
                "memory_region[{}]: {:#x}+{:#x} lies beyond the backing memory ({:#x} bytes)", i,
                r.zone0_ipa, r.size, st.st_size));
        }
        if (auto a = s->mem.add_fd(r.zonex_ipa, r.size, std::move(fd), r.zone0_ipa); !a) {
            return std::unexpected(
                fmt::format("memory_region[{}]: {}", i, vireo::to_string(a.error())));
        }
    }
    const std::uint32_t req = hello.req_entries != 0 ? hello.req_entries : cfg_.ring_entries;
    const std::uint32_t irq = hello.irq_entries != 0 ? hello.irq_entries : cfg_.irq_entries;
    auto area = Area::create(z.cfg.id, hello.vcpus, req, irq);
    if (!area) {
        return std::unexpected(area.error());
    }
    s->area = std::move(*area);
    s->req_doorbell = make_eventfd();
    s->irq_doorbell = make_eventfd();
    s->stop = make_eventfd();
    if (!s->req_doorbell || !s->irq_doorbell || !s->stop) {
        return std::unexpected(fmt::format("eventfd: {}", std::strerror(errno)));
    }
    for (std::size_t i = 0; i < z.cfg.devices.size(); ++i) {
        const ZoneDevice& d = z.cfg.devices[i];
        s->lines.push_back(std::make_unique<RingIrqLine>(s->area, s->irq_doorbell.get(), z.cfg.id,
                                                         d.irq, z.stats));
        auto t = std::make_shared<transport::VirtioMmio>(*z.models[i], s->mem, *s->lines.back());
        // A region longer than one page still reaches the transport: offsets past kMmioSize
        // read as missing registers there.
        if (!s->bus.insert(d.addr, d.len, t)) {
            return std::unexpected(fmt::format("{}: address range unavailable", d.where));
        }
        s->mmio.push_back(std::move(t));
    }
    return s;
}

void BridgeServer::accept_one(UniqueFd conn) {
    const timeval tv{2, 0};  // a peer that connects and says nothing does not stall us long
    ::setsockopt(conn.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    Hello hello{};
    std::vector<UniqueFd> fds;
    if (auto r = recv_msg(conn.get(), bytes_of(hello), fds); !r) {
        log::warn("bridge: setup: {}", r.error());
        return;
    }
    HelloAck ack{};
    ack.magic = kHelloMagic;
    ack.version = kProtocolVersion;
    auto refuse = [&](const std::string& why) {
        log::warn("bridge: zone {}: refused: {}", hello.vm_id, why);
        ack.status = kHelloRefused;
        std::snprintf(ack.reason, sizeof(ack.reason), "%s", why.c_str());
        (void)send_msg(conn.get(), bytes_of(ack), {});
    };
    if (hello.magic != kHelloMagic || hello.version != kProtocolVersion) {
        return refuse(
            fmt::format("protocol version {} (want {})", hello.version, kProtocolVersion));
    }
    ZoneState* z = nullptr;
    for (auto& zs : zones_) {
        if (zs->cfg.id == hello.vm_id) {
            z = zs.get();
        }
    }
    if (z == nullptr) {
        return refuse(fmt::format("no zone {} in the config", hello.vm_id));
    }
    const std::lock_guard lock(mu_);
    if (z->session && !z->session->ended.load() && peer_alive(z->session->conn.get())) {
        return refuse(fmt::format("zone {} already has a hypervisor", hello.vm_id));
    }
    z->session.reset();  // an ended one: devices reset before the new session starts
    UniqueFd mem_fd = fds.empty() ? UniqueFd() : std::move(fds[0]);
    auto s = open_session(*z, hello, std::move(mem_fd));
    if (!s) {
        return refuse(s.error());
    }
    Session& ss = **s;
    ss.conn = std::move(conn);
    std::vector<std::uint8_t> msg(sizeof(HelloAck) + z->cfg.devices.size() * sizeof(DeviceInfo));
    ack.status = kHelloOk;
    ack.devices = static_cast<std::uint32_t>(z->cfg.devices.size());
    ack.area_size = ss.area.size();
    std::memcpy(msg.data(), &ack, sizeof(ack));
    for (std::size_t i = 0; i < z->cfg.devices.size(); ++i) {
        const ZoneDevice& d = z->cfg.devices[i];
        const DeviceInfo info{d.addr, d.len, d.irq, z->models[i]->device_id()};
        std::memcpy(msg.data() + sizeof(ack) + i * sizeof(info), &info, sizeof(info));
    }
    const int fds_out[] = {ss.area.fd(), ss.req_doorbell.get(), ss.irq_doorbell.get()};
    if (auto r = send_msg(ss.conn.get(), msg, fds_out); !r) {
        log::warn("bridge: zone {}: {}", hello.vm_id, r.error());
        return;
    }
    ss.reap_fd = stop_fd_.get();  // wakes run() to reap the session promptly
    ss.thread = std::thread([&ss] { ss.loop(); });
    z->stats.sessions.fetch_add(1, std::memory_order_relaxed);
    log::info("bridge: zone {}: hypervisor connected, {} vCPU(s), rings {}/{}", hello.vm_id,
              hello.vcpus, ss.area.requests().capacity(), ss.area.irqs().capacity());
    z->session = std::move(*s);
}

void BridgeServer::reap_sessions() {
    const std::lock_guard lock(mu_);
    for (auto& z : zones_) {
        if (z->session && z->session->ended.load()) {
            z->session.reset();
            log::info("zone {}: devices reset, waiting for the hypervisor", z->cfg.id);
        }
    }
}

int BridgeServer::run(bool handle_signals) {
    UniqueFd sig;
    if (handle_signals) {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGTERM);
        ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
        sig.reset(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
    }
    UniqueFd ep(::epoll_create1(EPOLL_CLOEXEC));
    for (int fd : {listen_.get(), stop_fd_.get(), sig.get()}) {
        if (fd >= 0) {
            epoll_event ev{};
            ev.events = EPOLLIN;
            ev.data.fd = fd;
            ::epoll_ctl(ep.get(), EPOLL_CTL_ADD, fd, &ev);
        }
    }
    for (;;) {
        epoll_event evs[3];
        const int n = ::epoll_wait(ep.get(), evs, 3, -1);
        if (n < 0 && errno != EINTR) {
            break;
        }
        bool quit = false;
        for (int i = 0; i < n; ++i) {
            const int fd = evs[i].data.fd;
            if (fd == listen_.get()) {
                UniqueFd c(::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC));
                if (c) {
                    accept_one(std::move(c));
                }
            } else if (fd == stop_fd_.get()) {
                drain_doorbell(fd);
                reap_sessions();
                quit = stop_requested_.exchange(false);
            } else if (fd == sig.get()) {
                quit = true;
            }
        }
        if (quit) {
            break;
        }
    }
    log::info("bridge: shutting down");
    const std::lock_guard lock(mu_);
    for (auto& z : zones_) {
        z->session.reset();
    }
    for (auto& z : zones_) {
        for (auto& m : z->models) {
            if (auto* b = dynamic_cast<dev::BlkDevice*>(m.get()); b != nullptr) {
                b->flush_all();
            }
        }
    }
    return 0;
}

}  // namespace vireo::bridge
