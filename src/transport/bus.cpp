#include "transport/bus.hpp"

#include <algorithm>
#include <cstring>

namespace vireo::transport {

namespace {
constexpr std::size_t kMaxAccess = 8;
}

Bus::Bus() : table_(std::make_shared<const Table>()) {}

std::expected<void, BusError> Bus::insert(std::uint64_t base, std::uint64_t len,
                                          std::shared_ptr<BusDevice> device) {
    if (len == 0 || len - 1 > UINT64_MAX - base || device == nullptr) {
        return std::unexpected(BusError::kEmpty);
    }
    const std::lock_guard lock(write_mu_);
    auto old = table_.load(std::memory_order_acquire);
    // First range whose base is above ours; the one before it is the only left neighbour.
    auto it = std::upper_bound(old->begin(), old->end(), base,
                               [](std::uint64_t b, const Range& r) { return b < r.base; });
    const std::uint64_t last = base + (len - 1);  // inclusive: base + len may be 2^64
    if (it != old->end() && it->base <= last) {
        return std::unexpected(BusError::kOverlap);
    }
    if (it != old->begin()) {
        const Range& prev = *std::prev(it);
        if (prev.base + (prev.len - 1) >= base) {
            return std::unexpected(BusError::kOverlap);
        }
    }
    auto next = std::make_shared<Table>(*old);
    next->insert(next->begin() + (it - old->begin()), Range{base, len, std::move(device)});
    table_.store(std::move(next), std::memory_order_release);
    return {};
}

bool Bus::remove(std::uint64_t base) {
    const std::lock_guard lock(write_mu_);
    auto old = table_.load(std::memory_order_acquire);
    auto it =
        std::find_if(old->begin(), old->end(), [&](const Range& r) { return r.base == base; });
    if (it == old->end()) {
        return false;
    }
    auto next = std::make_shared<Table>(*old);
    next->erase(next->begin() + (it - old->begin()));
    table_.store(std::move(next), std::memory_order_release);
    return true;
}

const Bus::Range* Bus::find(const Table& t, std::uint64_t addr, std::uint64_t size) {
    auto it = std::upper_bound(t.begin(), t.end(), addr,
                               [](std::uint64_t a, const Range& r) { return a < r.base; });
    if (it == t.begin()) {
        return nullptr;
    }
    const Range& r = *std::prev(it);
    const std::uint64_t off = addr - r.base;
    // The whole access must lie inside the range (an access straddling two devices is refused).
    if (off >= r.len || size > r.len - off) {
        return nullptr;
    }
    return &r;
}

bool Bus::read(std::uint64_t addr, std::span<std::uint8_t> data) const {
    const auto t = table_.load(std::memory_order_acquire);
    const Range* r =
        data.empty() || data.size() > kMaxAccess ? nullptr : find(*t, addr, data.size());
    if (r == nullptr) {
        std::memset(data.data(), 0xff, data.size());
        return false;
    }
    r->device->read(addr - r->base, data);
    return true;
}

bool Bus::write(std::uint64_t addr, std::span<const std::uint8_t> data) const {
    const auto t = table_.load(std::memory_order_acquire);
    const Range* r =
        data.empty() || data.size() > kMaxAccess ? nullptr : find(*t, addr, data.size());
    if (r == nullptr) {
        return false;
    }
    r->device->write(addr - r->base, data);
    return true;
}

}  // namespace vireo::transport
