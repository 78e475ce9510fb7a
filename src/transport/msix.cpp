#include "transport/msix.hpp"

#include <algorithm>
#include <stdexcept>

#include "transport/pci_device.hpp"
#include "transport/reg.hpp"

namespace vireo::transport {

Msix::Msix(std::uint16_t vectors, MsiSink& sink)
    : sink_(sink), table_(vectors), pba_((vectors + 63) / 64, 0) {
    if (vectors == 0 || vectors > kMsixMaxVectors) {
        throw std::invalid_argument("Msix: 1..2048 vectors");
    }
}

std::array<std::uint8_t, kMsixCapSize> Msix::capability(int table_bar, std::uint32_t table_offset,
                                                        int pba_bar,
                                                        std::uint32_t pba_offset) const {
    std::array<std::uint8_t, kMsixCapSize> c{};
    c[0] = kPciCapIdMsix;
    store_le(std::span(c).subspan(kMsixControl, 2), size() - 1u);
    store_le(std::span(c).subspan(kMsixTable, 4),
             table_offset | static_cast<std::uint32_t>(table_bar));
    store_le(std::span(c).subspan(kMsixPba, 4), pba_offset | static_cast<std::uint32_t>(pba_bar));
    return c;
}

std::array<std::uint8_t, kMsixCapSize> Msix::capability_wmask() {
    std::array<std::uint8_t, kMsixCapSize> m{};
    store_le(std::span(m).subspan(kMsixControl, 2), kMsixControlEnable | kMsixControlFunctionMask);
    return m;
}

void Msix::set_control(std::uint16_t control) {
    std::vector<Message> msgs;
    {
        const std::lock_guard lock(mu_);
        enabled_.store((control & kMsixControlEnable) != 0, std::memory_order_release);
        function_mask_ = (control & kMsixControlFunctionMask) != 0;
        collect_unmasked(msgs);
    }
    send(msgs);
}

bool Msix::masked(std::uint16_t v) const {
    return function_mask_ || (table_[v].control & kMsixEntryMasked) != 0;
}

void Msix::collect_unmasked(std::vector<Message>& out) {
    if (!enabled()) {
        return;
    }
    for (std::uint16_t v = 0; v < size(); ++v) {
        const std::uint64_t bit = std::uint64_t{1} << (v % 64);
        if ((pba_[v / 64] & bit) != 0 && !masked(v)) {
            pba_[v / 64] &= ~bit;
            out.push_back(
                {v, table_[v].addr_lo | (std::uint64_t{table_[v].addr_hi} << 32), table_[v].data});
        }
    }
}

void Msix::send(const std::vector<Message>& msgs) {
    for (const Message& m : msgs) {
        sink_.send_vector(m.vector, m.addr, m.data);
    }
}

void Msix::table_read(std::uint64_t offset, std::span<std::uint8_t> data) {
    const std::lock_guard lock(mu_);
    if ((data.size() != 4 && data.size() != 8) || offset % data.size() != 0 ||
        offset >= table_bytes()) {
        store_le(data, 0);
        return;
    }
    for (std::size_t done = 0; done < data.size(); done += 4) {
        const std::uint64_t off = offset + done;
        const Entry& e = table_[off / kMsixEntrySize];
        std::uint32_t v = 0;
        switch (off % kMsixEntrySize) {
            case kMsixEntryAddrLo:
                v = e.addr_lo;
                break;
            case kMsixEntryAddrHi:
                v = e.addr_hi;
                break;
            case kMsixEntryData:
                v = e.data;
                break;
            default:
                v = e.control;
                break;
        }
        store_le(data.subspan(done, 4), v);
    }
}

void Msix::table_write(std::uint64_t offset, std::span<const std::uint8_t> data) {
    std::vector<Message> msgs;
    {
        const std::lock_guard lock(mu_);
        if ((data.size() != 4 && data.size() != 8) || offset % data.size() != 0 ||
            offset >= table_bytes()) {
            return;
        }
        for (std::size_t done = 0; done < data.size(); done += 4) {
            const std::uint64_t off = offset + done;
            Entry& e = table_[off / kMsixEntrySize];
            const auto v = static_cast<std::uint32_t>(load_le(data.subspan(done, 4)));
            switch (off % kMsixEntrySize) {
                case kMsixEntryAddrLo:
                    e.addr_lo = v & ~3u;
                    break;  // dword-aligned addresses
                case kMsixEntryAddrHi:
                    e.addr_hi = v;
                    break;
                case kMsixEntryData:
                    e.data = v;
                    break;
                default:
                    e.control = v & kMsixEntryMasked;
                    break;
            }
        }
        collect_unmasked(msgs);
    }
    send(msgs);
}

void Msix::pba_read(std::uint64_t offset, std::span<std::uint8_t> data) {
    const std::lock_guard lock(mu_);
    if ((data.size() != 4 && data.size() != 8) || offset % data.size() != 0 ||
        offset >= pba_bytes()) {
        store_le(data, 0);
        return;
    }
    const std::uint64_t word = pba_[offset / 8];
    store_le(data, data.size() == 8 ? word : word >> (8 * (offset % 8)));
}

bool Msix::fire(std::uint16_t v) {
    Message m{};
    {
        const std::lock_guard lock(mu_);
        if (v >= size()) {
            return false;
        }
        if (!enabled() || masked(v)) {
            pba_[v / 64] |= std::uint64_t{1} << (v % 64);
            return true;
        }
        m = {v, table_[v].addr_lo | (std::uint64_t{table_[v].addr_hi} << 32), table_[v].data};
    }
    sink_.send_vector(m.vector, m.addr, m.data);
    return true;
}

bool Msix::pending(std::uint16_t v) const {
    const std::lock_guard lock(mu_);
    return v < size() && (pba_[v / 64] >> (v % 64)) & 1;
}

}  // namespace vireo::transport
