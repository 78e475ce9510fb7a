#include "transport/pci_device.hpp"

#include <algorithm>
#include <bit>
#include <stdexcept>

#include "transport/reg.hpp"

namespace vireo::transport {

namespace {
void put16(std::span<std::uint8_t> b, std::uint32_t off, std::uint16_t v) {
    b[off] = static_cast<std::uint8_t>(v);
    b[off + 1] = static_cast<std::uint8_t>(v >> 8);
}
void put32(std::span<std::uint8_t> b, std::uint32_t off, std::uint32_t v) {
    put16(b, off, static_cast<std::uint16_t>(v));
    put16(b, off + 2, static_cast<std::uint16_t>(v >> 16));
}
}  // namespace

PciDevice::PciDevice(std::uint16_t vendor, std::uint16_t device, std::uint8_t class_code,
                     std::uint8_t subclass, std::uint8_t prog_if, std::uint8_t revision) {
    put16(cfg_, kPciVendorId, vendor);
    put16(cfg_, kPciDeviceId, device);
    cfg_[kPciRevision] = revision;
    cfg_[kPciProgIf] = prog_if;
    cfg_[kPciSubclass] = subclass;
    cfg_[kPciClass] = class_code;
    cfg_[kPciHeaderType] = 0;  // type 0, single function
    // Writable: I/O, memory, bus master, INTx disable; the interrupt line (for the OS's notes).
    put16(wmask_, kPciCommand,
          kPciCommandIo | kPciCommandMemory | kPciCommandMaster | kPciCommandIntxDisable);
    wmask_[kPciInterruptLine] = 0xff;
}

void PciDevice::set_subsystem(std::uint16_t vendor, std::uint16_t id) {
    put16(cfg_, kPciSubsystemVendorId, vendor);
    put16(cfg_, kPciSubsystemId, id);
}

void PciDevice::set_interrupt_pin(std::uint8_t pin) {
    cfg_[kPciInterruptPin] = pin;
}

void PciDevice::add_bar(int index, BarKind kind, std::uint64_t size, bool prefetchable) {
    const bool mem64 = kind == BarKind::kMem64;
    if (index < 0 || index + (mem64 ? 1 : 0) >= kPciNumBars || !std::has_single_bit(size) ||
        size < (kind == BarKind::kIo ? 4u : 16u) ||
        (kind != BarKind::kMem64 && size > (1ull << 31))) {
        throw std::invalid_argument("PciDevice::add_bar: invalid BAR");
    }
    bars_[index] = {kind, size};
    const std::uint32_t off = kPciBar0 + 4 * static_cast<std::uint32_t>(index);
    const std::uint64_t mask = ~(size - 1);
    std::uint32_t flags = kind == BarKind::kIo ? kPciBarIo : (mem64 ? kPciBarMem64 : 0);
    if (prefetchable && kind != BarKind::kIo) {
        flags |= kPciBarPrefetch;
    }
    put32(cfg_, off, flags);
    put32(wmask_, off, static_cast<std::uint32_t>(mask) & (kind == BarKind::kIo ? ~3u : ~15u));
    if (mem64) {
        put32(wmask_, off + 4, static_cast<std::uint32_t>(mask >> 32));
    }
}

std::uint8_t PciDevice::add_capability(std::span<const std::uint8_t> body,
                                       std::span<const std::uint8_t> wmask) {
    const std::size_t len = (body.size() + 3) & ~std::size_t{3};  // dword aligned
    if (body.size() < 2 || cap_end_ + len > kPciConfigSize ||
        (!wmask.empty() && wmask.size() != body.size())) {
        throw std::invalid_argument("PciDevice::add_capability: does not fit");
    }
    const std::uint8_t at = cap_end_;
    std::copy(body.begin(), body.end(), cfg_.begin() + at);
    cfg_[at + 1] = 0;
    if (!wmask.empty()) {
        std::copy(wmask.begin(), wmask.end(), wmask_.begin() + at);
    }
    wmask_[at] = wmask_[at + 1] = 0;  // ID and next pointer are never writable
    if (last_cap_ == 0) {
        cfg_[kPciCapabilityList] = at;
    } else {
        cfg_[last_cap_ + 1] = at;
    }
    cfg_[kPciStatus] |= kPciStatusCapList;
    last_cap_ = at;
    cap_end_ = static_cast<std::uint8_t>(at + len);
    return at;
}

std::uint32_t PciDevice::cfg_dword(std::uint32_t offset) const {
    return static_cast<std::uint32_t>(load_le(std::span(cfg_).subspan(offset, 4)));
}

std::uint16_t PciDevice::cfg_word(std::uint32_t offset) const {
    return static_cast<std::uint16_t>(load_le(std::span(cfg_).subspan(offset, 2)));
}

void PciDevice::config_read(std::uint32_t offset, std::span<std::uint8_t> data) {
    const std::lock_guard lock(cfg_mu_);
    if (offset >= kPciConfigSize || data.size() > kPciConfigSize - offset) {
        store_le(data, 0);  // no extended capabilities: the PCIe space reads 0
        return;
    }
    if (config_read_hook(offset, data)) {
        return;
    }
    std::copy_n(cfg_.begin() + offset, data.size(), data.begin());
    // Status bit 3 mirrors the INTx level (kept outside cfg_ so interrupt paths need no lock).
    if (offset <= kPciStatus && offset + data.size() > kPciStatus && intx_level()) {
        data[kPciStatus - offset] |= kPciStatusInterrupt;
    }
}

void PciDevice::config_write(std::uint32_t offset, std::span<const std::uint8_t> data) {
    std::unique_lock lock(cfg_mu_);
    if (offset >= kPciConfigSize || data.size() > kPciConfigSize - offset) {
        return;
    }
    for (std::size_t i = 0; i < data.size(); ++i) {
        const std::uint8_t m = wmask_[offset + i];
        const std::uint8_t v = static_cast<std::uint8_t>((cfg_[offset + i] & ~m) | (data[i] & m));
        cfg_[offset + i] = v;
    }
    const std::uint16_t old_command = command_.load(std::memory_order_relaxed);
    command_.store(cfg_word(kPciCommand), std::memory_order_release);
    // Hooks see every write, changed or not (a pci_cfg data write performs the access even if
    // the value repeats).
    config_written(offset, data.size());
    lock.unlock();
    if (((old_command ^ command()) & kPciCommandIntxDisable) != 0) {
        apply_intx();
    }
}

std::optional<std::uint64_t> PciDevice::bar_address(int index) const {
    if (index < 0 || index >= kPciNumBars) {
        return std::nullopt;
    }
    const BarInfo& b = bars_[index];
    const std::uint16_t cmd = command();
    std::uint64_t addr = 0;
    {
        const std::lock_guard lock(cfg_mu_);
        const std::uint32_t off = kPciBar0 + 4 * static_cast<std::uint32_t>(index);
        switch (b.kind) {
            case BarKind::kNone:
                return std::nullopt;
            case BarKind::kIo:
                if ((cmd & kPciCommandIo) == 0) {
                    return std::nullopt;
                }
                addr = cfg_dword(off) & ~3u;
                break;
            case BarKind::kMem32:
                if ((cmd & kPciCommandMemory) == 0) {
                    return std::nullopt;
                }
                addr = cfg_dword(off) & ~15u;
                break;
            case BarKind::kMem64:
                if ((cmd & kPciCommandMemory) == 0) {
                    return std::nullopt;
                }
                addr = (cfg_dword(off) & ~15u) | (std::uint64_t{cfg_dword(off + 4)} << 32);
                break;
        }
    }
    if (addr == 0) {
        return std::nullopt;  // not assigned yet
    }
    return addr;
}

void PciDevice::set_intx(bool level) {
    intx_level_.store(level, std::memory_order_release);
    apply_intx();
}

void PciDevice::apply_intx() {
    const std::lock_guard lock(intx_mu_);
    if (intx_ != nullptr) {
        intx_->set_level(intx_level() && (command() & kPciCommandIntxDisable) == 0);
    }
}

}  // namespace vireo::transport
