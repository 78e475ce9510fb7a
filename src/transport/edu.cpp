#include "transport/edu.hpp"

#include "base/log.hpp"
#include "transport/reg.hpp"

namespace vireo::transport {

namespace {

// MSI capability, 64-bit address variant (PCI Local Bus 3.0 §6.8.1).
constexpr std::uint32_t kMsiControl = 2;
constexpr std::uint32_t kMsiAddrLo = 4;
constexpr std::uint32_t kMsiAddrHi = 8;
constexpr std::uint32_t kMsiData = 12;
constexpr std::uint32_t kMsiCapSize = 14;
constexpr std::uint16_t kMsiEnable = 1u << 0;
constexpr std::uint16_t kMsi64Bit = 1u << 7;

// 32-bit factorial with wrap-around, as the guest sees it. From 34 on the product holds 2^32
// as a factor and is 0, which bounds the loop whatever the guest writes.
std::uint32_t factorial(std::uint32_t n) {
    if (n >= 34) {
        return 0;
    }
    std::uint32_t r = 1;
    for (std::uint32_t i = 2; i <= n; ++i) {
        r *= i;
    }
    return r;
}

}  // namespace

EduDevice::EduDevice(const GuestMemory& mem, MsiSink& msi, std::uint64_t dma_mask)
    : PciDevice(kEduVendor, kEduDevice, 0x00, 0xff, 0x00, 0x10),
      mem_(mem),
      msi_(msi),
      dma_mask_(dma_mask) {
    set_subsystem(0x1af4, 0x1100);
    set_interrupt_pin(1);
    add_bar(0, BarKind::kMem32, kEduBarSize);
    std::array<std::uint8_t, kMsiCapSize> cap{};
    std::array<std::uint8_t, kMsiCapSize> mask{};
    cap[0] = kPciCapIdMsi;
    cap[kMsiControl] = kMsi64Bit;  // one message, 64-bit address, no per-vector masking
    mask[kMsiControl] = kMsiEnable;
    store_le(std::span(mask).subspan(kMsiAddrLo, 4), 0xffff'fffcu);
    store_le(std::span(mask).subspan(kMsiAddrHi, 4), 0xffff'ffffu);
    store_le(std::span(mask).subspan(kMsiData, 2), 0xffffu);
    msi_cap_ = add_capability(cap, mask);
    worker_ = std::thread([this] { run(); });
}

EduDevice::~EduDevice() {
    {
        const std::lock_guard lock(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    worker_.join();
}

std::uint64_t EduDevice::dma_errors() const {
    const std::lock_guard lock(mu_);
    return dma_errors_;
}

void EduDevice::bar_read(int bar, std::uint64_t offset, std::span<std::uint8_t> data) {
    // The spec allows only 4-byte accesses below 0x80 and 4 or 8 bytes above; anything else
    // reads all ones (as QEMU's model returns for unhandled accesses).
    const bool ok = bar == 0 && offset % data.size() == 0 &&
                    (data.size() == 4 || (data.size() == 8 && offset >= kEduDmaSrc));
    if (!ok) {
        store_le(data, ~0ull);
        return;
    }
    const std::lock_guard lock(mu_);
    store_le(data, read_reg(offset, data.size()));
}

void EduDevice::bar_write(int bar, std::uint64_t offset, std::span<const std::uint8_t> data) {
    const bool ok = bar == 0 && offset % data.size() == 0 &&
                    (data.size() == 4 || (data.size() == 8 && offset >= kEduDmaSrc));
    if (!ok) {
        log::guest_warn("edu: write of {} bytes at {:#x} ignored", data.size(), offset);
        return;
    }
    const std::lock_guard lock(mu_);
    write_reg(offset, data.size(), load_le(data));
}

std::uint64_t EduDevice::read_reg(std::uint64_t offset, std::size_t size) {
    if (offset >= kEduBuffer && offset + size <= kEduBuffer + kEduBufferSize) {
        return load_le(std::span(buffer_).subspan(offset - kEduBuffer, size));
    }
    switch (offset) {
        case kEduId:
            return kEduIdValue;
        case kEduLiveness:
            return ~liveness_;
        case kEduFactorial:
            return factorial_;
        case kEduIncrement:
            return increment_;
        case kEduStatus:
            return status_;
        case kEduIrqStatus:
            return irq_status_;
        case kEduDmaSrc:
            return dma_src_;
        case kEduDmaDst:
            return dma_dst_;
        case kEduDmaCount:
            return dma_count_;
        case kEduDmaCmd:
            return dma_cmd_;
        default:
            return ~0ull;
    }
}

void EduDevice::write_reg(std::uint64_t offset, std::size_t size, std::uint64_t value) {
    const auto v32 = static_cast<std::uint32_t>(value);
    if (offset >= kEduBuffer && offset + size <= kEduBuffer + kEduBufferSize) {
        store_le(std::span(buffer_).subspan(offset - kEduBuffer, size), value);
        return;
    }
    // DMA registers are frozen while a transfer runs.
    const bool dma_busy = (dma_cmd_ & kEduDmaStart) != 0;
    switch (offset) {
        case kEduLiveness:
            liveness_ = v32;
            return;
        case kEduFactorial:
            if ((status_ & kEduStatusComputing) == 0) {
                factorial_ = v32;
                status_ |= kEduStatusComputing;
                cv_.notify_one();
            }
            return;
        case kEduIncrement:
            if ((status_ & kEduStatusIncrementing) == 0) {
                increment_ = v32;
                status_ |= kEduStatusIncrementing;
                cv_.notify_one();
            }
            return;
        case kEduStatus:
            status_ = (status_ & ~kEduStatusWritable) | (v32 & kEduStatusWritable);
            return;
        case kEduIrqRaise:
            raise(v32);
            return;
        case kEduIrqAck:
            lower(v32);
            return;
        case kEduDmaSrc:
            if (!dma_busy) {
                dma_src_ = size == 4 ? (dma_src_ & ~0xffff'ffffull) | v32 : value;
            }
            return;
        case kEduDmaDst:
            if (!dma_busy) {
                dma_dst_ = size == 4 ? (dma_dst_ & ~0xffff'ffffull) | v32 : value;
            }
            return;
        case kEduDmaCount:
            if (!dma_busy) {
                dma_count_ = value;
            }
            return;
        case kEduDmaCmd:
            if (!dma_busy) {
                dma_cmd_ = value & (kEduDmaStart | kEduDmaToRam | kEduDmaIrq);
                if ((dma_cmd_ & kEduDmaStart) != 0) {
                    dma_pending_ = true;
                    cv_.notify_one();
                }
            }
            return;
        default:
            return;  // read-only or unassigned
    }
}

void EduDevice::raise(std::uint32_t bits) {
    irq_status_ |= bits;
    if (irq_status_ == 0) {
        return;
    }
    std::uint16_t control;
    std::uint64_t addr;
    std::uint16_t data;
    {
        const std::lock_guard lock(cfg_mu_);
        control = cfg_word(msi_cap_ + kMsiControl);
        addr = cfg_dword(msi_cap_ + kMsiAddrLo) |
               (std::uint64_t{cfg_dword(msi_cap_ + kMsiAddrHi)} << 32);
        data = cfg_word(msi_cap_ + kMsiData);
    }
    if ((control & kMsiEnable) != 0) {
        msi_.send(addr, data);  // an edge per raise; the driver still acknowledges
    } else {
        set_intx(true);
    }
}

void EduDevice::lower(std::uint32_t bits) {
    irq_status_ &= ~bits;
    if (irq_status_ == 0) {
        set_intx(false);
    }
}

void EduDevice::dma() {
    const bool to_ram = (dma_cmd_ & kEduDmaToRam) != 0;
    const std::uint64_t ram = to_ram ? dma_dst_ : dma_src_;
    const std::uint64_t dev = to_ram ? dma_src_ : dma_dst_;
    const std::uint64_t n = dma_count_;
    const bool master = (command() & kPciCommandMaster) != 0;
    const bool dev_ok =
        dev >= kEduBuffer && n <= kEduBufferSize && dev - kEduBuffer <= kEduBufferSize - n;
    const bool ram_ok = n <= dma_mask_ && (ram & ~dma_mask_) == 0 &&
                        ((ram + n - 1) & ~dma_mask_) == 0 &&
                        (n == 0 || mem_.translate(ram, 0) != nullptr);
    bool done = false;
    if (master && dev_ok && ram_ok) {
        std::uint8_t* buf = buffer_.data() + (dev - kEduBuffer);
        done = to_ram ? mem_.write(ram, buf, n) : mem_.read(ram, buf, n);
    }
    if (!done && n != 0) {
        ++dma_errors_;
        log::guest_warn("edu: DMA {} of {} bytes, RAM {:#x}, buffer {:#x} refused (bus master {})",
                        to_ram ? "to RAM" : "from RAM", n, ram, dev, master);
    }
    const bool irq = (dma_cmd_ & kEduDmaIrq) != 0;
    dma_cmd_ &= ~kEduDmaStart;
    if (irq) {
        raise(kEduIrqDma);
    }
}

void EduDevice::run() {
    std::unique_lock lock(mu_);
    for (;;) {
        cv_.wait(lock, [&] {
            return stop_ || dma_pending_ ||
                   (status_ & (kEduStatusComputing | kEduStatusIncrementing)) != 0;
        });
        if (stop_) {
            return;
        }
        if ((status_ & kEduStatusComputing) != 0) {
            const std::uint32_t n = factorial_;
            lock.unlock();
            const std::uint32_t r = factorial(n);
            lock.lock();
            factorial_ = r;
            status_ &= ~kEduStatusComputing;
            if ((status_ & kEduStatusIrqFactorial) != 0) {
                raise(kEduIrqFactorial);
            }
        }
        if ((status_ & kEduStatusIncrementing) != 0) {
            increment_ += 1;
            status_ &= ~kEduStatusIncrementing;
            if ((status_ & kEduStatusIrqIncrement) != 0) {
                raise(kEduIrqIncrement);
            }
        }
        if (dma_pending_) {
            dma_pending_ = false;
            dma();
        }
    }
}

}  // namespace vireo::transport
