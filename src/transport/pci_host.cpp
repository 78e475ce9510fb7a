#include "transport/pci_host.hpp"

#include "base/log.hpp"
#include "transport/reg.hpp"

namespace vireo::transport {

namespace {

// The bridge at 00:00.0: identification only.
class HostBridge final : public PciDevice {
  public:
    HostBridge() : PciDevice(kHostBridgeVendor, kHostBridgeDevice, 0x06, 0x00, 0x00, 0) {}
    void bar_read(int, std::uint64_t, std::span<std::uint8_t> data) override { store_le(data, 0); }
    void bar_write(int, std::uint64_t, std::span<const std::uint8_t>) override {}
};

// Forwards bus accesses inside a mapped BAR to its function.
class BarWindow final : public BusDevice {
  public:
    BarWindow(std::shared_ptr<PciDevice> dev, int bar) : dev_(std::move(dev)), bar_(bar) {}
    void read(std::uint64_t offset, std::span<std::uint8_t> data) override {
        dev_->bar_read(bar_, offset, data);
    }
    void write(std::uint64_t offset, std::span<const std::uint8_t> data) override {
        dev_->bar_write(bar_, offset, data);
    }

  private:
    std::shared_ptr<PciDevice> dev_;
    int bar_;
};

// A configuration access must be 1, 2 or 4 bytes and stay inside one dword.
bool valid_cfg_access(std::uint32_t offset, std::size_t size) {
    return (size == 1 || size == 2 || size == 4) && offset % 4 + size <= 4;
}

}  // namespace

class PciHost::PortWindow final : public BusDevice {
  public:
    explicit PortWindow(PciHost& h) : host_(h) {}
    void read(std::uint64_t offset, std::span<std::uint8_t> data) override {
        if (offset == 0 && data.size() == 4) {
            const std::lock_guard lock(host_.host_mu_);
            store_le(data, host_.address_);
            return;
        }
        if (offset < 4 || offset - 4 + data.size() > 4) {
            store_le(data, ~0ull);  // only dword accesses reach the address latch
            return;
        }
        std::uint32_t addr;
        {
            const std::lock_guard lock(host_.host_mu_);
            addr = host_.address_;
        }
        if ((addr & kPciConfigEnable) == 0 || ((addr >> 16) & 0xff) != 0) {
            store_le(data, ~0ull);  // disabled, or a bus that does not exist
            return;
        }
        host_.config_read(static_cast<int>((addr >> 11) & 0x1f), static_cast<int>((addr >> 8) & 7),
                          (addr & 0xfc) + static_cast<std::uint32_t>(offset - 4), data);
    }
    void write(std::uint64_t offset, std::span<const std::uint8_t> data) override {
        if (offset == 0 && data.size() == 4) {
            const std::lock_guard lock(host_.host_mu_);
            // Bits 1:0 are reserved (0); bits 30:24 reserved as well.
            host_.address_ = static_cast<std::uint32_t>(load_le(data)) & 0x80ff'fffcu;
            return;
        }
        if (offset < 4 || offset - 4 + data.size() > 4) {
            return;
        }
        std::uint32_t addr;
        {
            const std::lock_guard lock(host_.host_mu_);
            addr = host_.address_;
        }
        if ((addr & kPciConfigEnable) == 0 || ((addr >> 16) & 0xff) != 0) {
            return;
        }
        host_.config_write(static_cast<int>((addr >> 11) & 0x1f), static_cast<int>((addr >> 8) & 7),
                           (addr & 0xfc) + static_cast<std::uint32_t>(offset - 4), data);
    }

  private:
    PciHost& host_;
};

class PciHost::EcamWindow final : public BusDevice {
  public:
    explicit EcamWindow(PciHost& h) : host_(h) {}
    void read(std::uint64_t offset, std::span<std::uint8_t> data) override {
        host_.config_read(static_cast<int>((offset >> 15) & 0x1f),
                          static_cast<int>((offset >> 12) & 7),
                          static_cast<std::uint32_t>(offset & 0xfff), data);
    }
    void write(std::uint64_t offset, std::span<const std::uint8_t> data) override {
        host_.config_write(static_cast<int>((offset >> 15) & 0x1f),
                           static_cast<int>((offset >> 12) & 7),
                           static_cast<std::uint32_t>(offset & 0xfff), data);
    }

  private:
    PciHost& host_;
};

PciHost::PciHost(Bus& mmio, Bus* pio) : mmio_(mmio), pio_(pio) {
    slots_[0] = std::make_shared<HostBridge>();
}

PciHost::~PciHost() {
    const std::lock_guard lock(host_mu_);
    if (ports_ != nullptr && pio_ != nullptr) {
        pio_->remove(kPciConfigAddressPort);
    }
    if (ecam_base_) {
        mmio_.remove(*ecam_base_);
    }
    for (int s = 0; s < kPciSlots; ++s) {
        for (int b = 0; b < kPciNumBars; ++b) {
            if (mapped_[s][b] && slots_[s] != nullptr) {
                (slots_[s]->bar(b).kind == BarKind::kIo ? *pio_ : mmio_).remove(*mapped_[s][b]);
            }
        }
    }
}

std::expected<void, PciError> PciHost::add(int slot, std::shared_ptr<PciDevice> device) {
    if (slot <= 0 || slot >= kPciSlots || device == nullptr) {
        return std::unexpected(PciError::kBadSlot);
    }
    const std::lock_guard lock(host_mu_);
    if (slots_[slot] != nullptr) {
        return std::unexpected(PciError::kSlotUsed);
    }
    slots_[slot] = std::move(device);
    return {};
}

std::expected<void, BusError> PciHost::attach_cf8() {
    if (pio_ == nullptr) {
        return std::unexpected(BusError::kEmpty);
    }
    ports_ = std::make_shared<PortWindow>(*this);
    return pio_->insert(kPciConfigAddressPort, kPciConfigPortsLen, ports_);
}

std::expected<void, BusError> PciHost::attach_ecam(std::uint64_t base) {
    ecam_ = std::make_shared<EcamWindow>(*this);
    auto r = mmio_.insert(base, kEcamBusSize, ecam_);
    if (r) {
        ecam_base_ = base;
    }
    return r;
}

void PciHost::config_read(int slot, int function, std::uint32_t offset,
                          std::span<std::uint8_t> data) {
    std::shared_ptr<PciDevice> dev;
    {
        const std::lock_guard lock(host_mu_);
        if (slot >= 0 && slot < kPciSlots && function == 0) {
            dev = slots_[slot];
        }
    }
    if (dev == nullptr || !valid_cfg_access(offset, data.size()) || offset >= kPciExtConfigSize) {
        store_le(data, ~0ull);  // no function: master abort, all ones
        return;
    }
    dev->config_read(offset, data);
}

void PciHost::config_write(int slot, int function, std::uint32_t offset,
                           std::span<const std::uint8_t> data) {
    if (slot < 0 || slot >= kPciSlots || function != 0 || !valid_cfg_access(offset, data.size()) ||
        offset >= kPciExtConfigSize) {
        return;
    }
    // host_mu_ across the write and the re-map: two vCPUs must not race a BAR's placement.
    const std::lock_guard lock(host_mu_);
    if (slots_[slot] == nullptr) {
        return;
    }
    slots_[slot]->config_write(offset, data);
    const bool header = offset < kPciBar0 + 4 * kPciNumBars && offset + data.size() > kPciCommand;
    if (header) {
        remap(slot);
    }
}

void PciHost::remap(int slot) {
    PciDevice& dev = *slots_[slot];
    for (int b = 0; b < kPciNumBars; ++b) {
        const BarInfo& info = dev.bar(b);
        if (info.kind == BarKind::kNone) {
            continue;
        }
        Bus* bus = info.kind == BarKind::kIo ? pio_ : &mmio_;
        if (bus == nullptr) {
            continue;
        }
        const std::optional<std::uint64_t> want = dev.bar_address(b);
        if (want == mapped_[slot][b]) {
            continue;
        }
        if (mapped_[slot][b]) {
            bus->remove(*mapped_[slot][b]);
            mapped_[slot][b].reset();
        }
        if (!want) {
            continue;
        }
        auto win = std::make_shared<BarWindow>(slots_[slot], b);
        if (auto ok = bus->insert(*want, info.size, std::move(win)); !ok) {
            // The guest placed the BAR over something else (or across the top of the address
            // space): it stays unmapped, as a real bridge would not decode it either.
            log::guest_warn("pci: 00:{:02x}.0 BAR{} at {:#x} (+{:#x}) not mapped: {}", slot, b,
                            *want, info.size,
                            ok.error() == BusError::kOverlap ? "overlap" : "wraps");
            continue;
        }
        mapped_[slot][b] = want;
    }
}

std::optional<std::uint64_t> PciHost::mapped_bar(int slot, int bar) const {
    const std::lock_guard lock(host_mu_);
    if (slot < 0 || slot >= kPciSlots || bar < 0 || bar >= kPciNumBars) {
        return std::nullopt;
    }
    return mapped_[slot][bar];
}

}  // namespace vireo::transport
