#include "vmm/irq.hpp"

#include <fmt/format.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "base/log.hpp"

namespace vireo::vmm {

namespace {

// KVM's PICs: GSI 0–7 on the master, 8–15 on the slave.
inline constexpr std::uint32_t kPicPins = 8;
inline constexpr std::uint32_t kLegacyGsis = 16;

void signal_fd(int fd) {
    const std::uint64_t one = 1;
    // An eventfd write fails only when the counter would overflow: the event is pending anyway.
    (void)!::write(fd, &one, sizeof one);
}

UniqueFd make_eventfd() {
    return UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
}

}  // namespace

// --- GsiRouter -------------------------------------------------------------------------------

std::expected<void, std::string> GsiRouter::commit() {
    std::vector<kvm_irq_routing_entry> t;
    t.reserve(kLegacyGsis + kIoapicPins + msi_.size());
    auto irqchip = [&](std::uint32_t gsi, std::uint32_t chip, std::uint32_t pin) {
        kvm_irq_routing_entry e{};
        e.gsi = gsi;
        e.type = KVM_IRQ_ROUTING_IRQCHIP;
        e.u.irqchip.irqchip = chip;
        e.u.irqchip.pin = pin;
        t.push_back(e);
    };
    for (std::uint32_t gsi = 0; gsi < kIoapicPins; ++gsi) {
        if (gsi < kLegacyGsis) {
            irqchip(gsi, gsi < kPicPins ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE,
                    gsi % kPicPins);
        }
        irqchip(gsi, KVM_IRQCHIP_IOAPIC, gsi);
    }
    for (const auto& [gsi, msg] : msi_) {
        kvm_irq_routing_entry e{};
        e.gsi = gsi;
        e.type = KVM_IRQ_ROUTING_MSI;
        e.u.msi.address_lo = static_cast<std::uint32_t>(msg.first);
        e.u.msi.address_hi = static_cast<std::uint32_t>(msg.first >> 32);
        e.u.msi.data = msg.second;
        t.push_back(e);
    }
    return vm_.set_gsi_routing(t);
}

std::optional<std::uint32_t> GsiRouter::add_msi(std::uint64_t addr, std::uint32_t data) {
    const std::lock_guard lock(mu_);
    // Entries: 16 PIC + 24 IOAPIC + one per MSI route, within KVM's table size.
    if (kLegacyGsis + kIoapicPins + msi_.size() + 1 > vm_.max_gsi_routes()) {
        return std::nullopt;
    }
    const std::uint32_t gsi = next_gsi_++;
    msi_[gsi] = {addr, data};
    if (auto r = commit(); !r) {
        msi_.erase(gsi);
        log::guest_warn("vmm: MSI route for gsi {}: {}", gsi, r.error());
        return std::nullopt;
    }
    return gsi;
}

bool GsiRouter::update_msi(std::uint32_t gsi, std::uint64_t addr, std::uint32_t data) {
    const std::lock_guard lock(mu_);
    auto it = msi_.find(gsi);
    if (it == msi_.end()) {
        return false;
    }
    const auto old = it->second;
    it->second = {addr, data};
    if (auto r = commit(); !r) {
        it->second = old;
        log::guest_warn("vmm: MSI route for gsi {}: {}", gsi, r.error());
        return false;
    }
    return true;
}

// --- wired lines -----------------------------------------------------------------------------

void KvmIrqLine::set_level(bool high) {
    if (high) {
        stats_.line_ioctl.fetch_add(1, std::memory_order_relaxed);
    }
    vm_.set_irq_line(gsi_, high);
}

std::expected<std::unique_ptr<IrqfdLine>, std::string> IrqfdLine::create(const KvmVm& vm,
                                                                         std::uint32_t gsi,
                                                                         IrqStats& stats) {
    auto line = std::unique_ptr<IrqfdLine>(new IrqfdLine(gsi, stats));
    line->trigger_ = make_eventfd();
    line->resample_ = make_eventfd();
    if (!line->trigger_ || !line->resample_) {
        return std::unexpected(fmt::format("eventfd: {}", std::strerror(errno)));
    }
    // The irqfd lives until its eventfd is closed (KVM releases it on POLLHUP), so the
    // destructor needs no KVM_IRQFD deassign.
    if (auto r = vm.irqfd(gsi, line->trigger_.get(), line->resample_.get(), true); !r) {
        return std::unexpected(r.error());
    }
    return line;
}

void IrqfdLine::assert_line() {
    signal_fd(trigger_.get());
}

void IrqfdLine::set_level(bool high) {
    // The level first: a resample that runs between these two sees the new level.
    level_.store(high, std::memory_order_seq_cst);
    if (high) {
        stats_.line_irqfd.fetch_add(1, std::memory_order_relaxed);
        assert_line();
    }
}

void IrqfdLine::resample() {
    std::uint64_t n;
    (void)!::read(resample_.get(), &n, sizeof n);  // non-blocking; clears the count
    stats_.line_resample.fetch_add(1, std::memory_order_relaxed);
    if (level_.load(std::memory_order_seq_cst)) {
        stats_.line_reassert.fetch_add(1, std::memory_order_relaxed);
        assert_line();
    }
}

std::expected<void, std::string> Resampler::start() {
    epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
    stop_ = make_eventfd();
    if (!epoll_ || !stop_) {
        return std::unexpected(fmt::format("resampler: {}", std::strerror(errno)));
    }
    auto add = [&](int fd, std::uint64_t tag) {
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = tag;
        return ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) == 0;
    };
    if (!add(stop_.get(), lines_.size())) {
        return std::unexpected(fmt::format("resampler: epoll_ctl: {}", std::strerror(errno)));
    }
    for (std::size_t i = 0; i < lines_.size(); ++i) {
        if (!add(lines_[i]->resample_fd(), i)) {
            return std::unexpected(fmt::format("resampler: epoll_ctl: {}", std::strerror(errno)));
        }
    }
    thread_ = std::thread([this] { run(); });
    return {};
}

void Resampler::run() {
    std::array<epoll_event, 16> evs;
    for (;;) {
        const int n = ::epoll_wait(epoll_.get(), evs.data(), static_cast<int>(evs.size()), -1);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            log::guest_warn("vmm: resampler: epoll_wait: {}", std::strerror(errno));
            return;
        }
        for (int i = 0; i < n; ++i) {
            const std::uint64_t tag = evs[static_cast<std::size_t>(i)].data.u64;
            if (tag >= lines_.size()) {
                return;  // stop
            }
            lines_[tag]->resample();
        }
    }
}

void Resampler::stop() {
    if (thread_.joinable()) {
        signal_fd(stop_.get());
        thread_.join();
    }
}

// --- MSI -------------------------------------------------------------------------------------

void KvmMsiSink::send(std::uint64_t addr, std::uint32_t data) {
    stats_.msi_ioctl.fetch_add(1, std::memory_order_relaxed);
    vm_.signal_msi(addr, data);
}

void IrqfdMsiSink::send_vector(std::uint16_t vector, std::uint64_t addr, std::uint32_t data) {
    int fd = -1;
    {
        const std::lock_guard lock(mu_);
        auto [it, fresh] = routes_.try_emplace(vector);
        Route& r = it->second;
        if (fresh) {
            // First use of this vector: a GSI routed to its message and an irqfd on it.
            r.fd = make_eventfd();
            const auto gsi = r.fd ? router_.add_msi(addr, data) : std::nullopt;
            if (gsi) {
                r.gsi = *gsi;
                r.addr = addr;
                r.data = data;
                if (auto ok = vm_.irqfd(r.gsi, r.fd.get(), -1, true); ok) {
                    r.usable = true;
                } else {
                    log::guest_warn("vmm: {}; vector {} uses KVM_SIGNAL_MSI", ok.error(), vector);
                }
            }
        } else if (r.usable && (r.addr != addr || r.data != data)) {
            // The guest reprogrammed the vector: rewrite its route before signalling.
            r.usable = router_.update_msi(r.gsi, addr, data);
            r.addr = addr;
            r.data = data;
            stats_.msi_reroute.fetch_add(1, std::memory_order_relaxed);
        }
        if (r.usable) {
            fd = r.fd.get();
        }
    }
    if (fd < 0) {
        fallback_.send(addr, data);
        return;
    }
    stats_.msi_irqfd.fetch_add(1, std::memory_order_relaxed);
    signal_fd(fd);
}

}  // namespace vireo::vmm
