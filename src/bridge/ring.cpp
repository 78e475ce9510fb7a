#include "bridge/ring.hpp"

#include <fmt/format.h>
#include <linux/futex.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <ctime>
#include <utility>

namespace vireo::bridge {

namespace {

bool valid_entries(std::uint32_t n) {
    return n >= 1 && n <= kMaxRingEntries && std::has_single_bit(n);
}

}  // namespace

bool valid_access_size(std::uint32_t size) {
    return size == 1 || size == 2 || size == 4 || size == 8;
}

std::expected<Area, std::string> Area::create(std::uint32_t vm_id, std::uint32_t vcpus,
                                              std::uint32_t req_entries,
                                              std::uint32_t irq_entries) {
    if (vcpus < 1 || vcpus > kMaxVcpus) {
        return std::unexpected(fmt::format("vcpus {} out of range 1..{}", vcpus, kMaxVcpus));
    }
    if (!valid_entries(req_entries) || !valid_entries(irq_entries)) {
        return std::unexpected(fmt::format("ring sizes {}/{} are not powers of two in 1..{}",
                                           req_entries, irq_entries, kMaxRingEntries));
    }
    const Layout l = layout_for(vcpus, req_entries, irq_entries);
    Area a;
    a.fd_.reset(::memfd_create("vireo-bridge", MFD_CLOEXEC));
    if (!a.fd_ || ::ftruncate(a.fd_.get(), static_cast<off_t>(l.total_size)) != 0) {
        return std::unexpected(fmt::format("bridge area: {}", std::strerror(errno)));
    }
    a.size_ = l.total_size;
    void* p = ::mmap(nullptr, a.size_, PROT_READ | PROT_WRITE, MAP_SHARED, a.fd_.get(), 0);
    if (p == MAP_FAILED) {
        return std::unexpected(fmt::format("bridge area mmap: {}", std::strerror(errno)));
    }
    a.base_ = static_cast<std::uint8_t*>(p);
    Header& h = a.header();
    h.magic = kAreaMagic;
    h.version = kProtocolVersion;
    h.vm_id = vm_id;
    h.vcpus = vcpus;
    h.req_entries = req_entries;
    h.irq_entries = irq_entries;
    h.req_offset = l.req_offset;
    h.reply_offset = l.reply_offset;
    h.irq_offset = l.irq_offset;
    h.total_size = l.total_size;
    if (auto r = a.bind(/*init=*/true); !r) {
        return std::unexpected(r.error());
    }
    return a;
}

std::expected<Area, std::string> Area::attach(UniqueFd fd, std::uint64_t size) {
    if (size < sizeof(Header) || size > (1ull << 32)) {
        return std::unexpected(fmt::format("bridge area size {} out of range", size));
    }
    Area a;
    a.fd_ = std::move(fd);
    a.size_ = size;
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, a.fd_.get(), 0);
    if (p == MAP_FAILED) {
        return std::unexpected(fmt::format("bridge area mmap: {}", std::strerror(errno)));
    }
    a.base_ = static_cast<std::uint8_t*>(p);
    if (auto r = a.bind(/*init=*/false); !r) {
        return std::unexpected(r.error());
    }
    return a;
}

std::expected<void, std::string> Area::bind(bool init) {
    // Copy the header once: the peer may change it under us afterwards; we never re-read it.
    Header h;
    std::memcpy(&h, base_, sizeof(h));
    if (h.magic != kAreaMagic || h.version != kProtocolVersion) {
        return std::unexpected(
            fmt::format("bridge area: bad magic {:#x} or version {}", h.magic, h.version));
    }
    if (h.vcpus < 1 || h.vcpus > kMaxVcpus || !valid_entries(h.req_entries) ||
        !valid_entries(h.irq_entries)) {
        return std::unexpected("bridge area: sizes out of range");
    }
    const Layout l = layout_for(h.vcpus, h.req_entries, h.irq_entries);
    if (h.req_offset != l.req_offset || h.reply_offset != l.reply_offset ||
        h.irq_offset != l.irq_offset || h.total_size != l.total_size || l.total_size > size_) {
        return std::unexpected("bridge area: layout does not match its sizes");
    }
    vm_id_ = h.vm_id;
    vcpus_ = h.vcpus;
    req_ =
        Ring<Request>(reinterpret_cast<RingControl*>(base_ + l.req_offset),
                      reinterpret_cast<Cell<Request>*>(base_ + l.req_offset + sizeof(RingControl)),
                      h.req_entries);
    irq_ = Ring<IrqRequest>(
        reinterpret_cast<RingControl*>(base_ + l.irq_offset),
        reinterpret_cast<Cell<IrqRequest>*>(base_ + l.irq_offset + sizeof(RingControl)),
        h.irq_entries);
    slots_ = reinterpret_cast<ReplySlot*>(base_ + l.reply_offset);
    if (init) {
        req_.init();
        irq_.init();
    }
    return {};
}

Area::Area(Area&& o) noexcept {
    *this = std::move(o);
}

Area& Area::operator=(Area&& o) noexcept {
    if (this != &o) {
        if (base_ != nullptr) {
            ::munmap(base_, size_);
        }
        fd_ = std::move(o.fd_);
        base_ = std::exchange(o.base_, nullptr);
        size_ = std::exchange(o.size_, 0);
        vm_id_ = o.vm_id_;
        vcpus_ = o.vcpus_;
        req_ = o.req_;
        irq_ = o.irq_;
        slots_ = std::exchange(o.slots_, nullptr);
    }
    return *this;
}

Area::~Area() {
    if (base_ != nullptr) {
        ::munmap(base_, size_);
    }
}

UniqueFd make_eventfd() {
    return UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
}

void ring_doorbell(int efd) {
    const std::uint64_t one = 1;
    // EAGAIN (counter saturated) still leaves the fd readable: the wakeup is not lost.
    [[maybe_unused]] auto n = ::write(efd, &one, sizeof(one));
}

void drain_doorbell(int efd) {
    std::uint64_t v;
    [[maybe_unused]] auto n = ::read(efd, &v, sizeof(v));
}

void futex_wait(std::uint32_t& word, std::uint32_t expected, long timeout_ns) {
    timespec ts{timeout_ns / 1'000'000'000, timeout_ns % 1'000'000'000};
    // Shared (not FUTEX_PRIVATE): the word lives in memory mapped by two processes.
    ::syscall(SYS_futex, &word, FUTEX_WAIT, expected, &ts, nullptr, 0);
}

void futex_wake(std::uint32_t& word) {
    ::syscall(SYS_futex, &word, FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

}  // namespace vireo::bridge
