#include "transport/uart_16550.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace vireo::transport {

std::uint8_t Uart16550::iir() const {
    const std::uint8_t fifo = fifo_enabled_ ? kUartIirFifo : 0;
    if ((ier_ & kUartIerRxData) && !rx_.empty()) return fifo | kUartIirRxData;
    if ((ier_ & kUartIerThre) && thre_pending_) return fifo | kUartIirThre;
    return fifo | kUartIirNone;
}

void Uart16550::update() {
    const bool high = (iir() & kUartIirNone) == 0;
    if (irq_ != nullptr && high != line_high_) {
        line_high_ = high;
        irq_->set_level(high);
    }
}

std::size_t Uart16550::receive(std::span<const std::uint8_t> bytes) {
    const std::lock_guard lock(mu_);
    const std::size_t n = std::min(bytes.size(), kRxFifo - rx_.size());
    rx_.insert(rx_.end(), bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n));
    update();
    return n;
}

void Uart16550::read(std::uint64_t offset, std::span<std::uint8_t> data) {
    std::memset(data.data(), 0, data.size());
    if (data.size() != 1) return;
    const std::lock_guard lock(mu_);
    const bool dlab = (lcr_ & kUartLcrDlab) != 0;
    std::uint8_t v = 0;
    switch (offset) {
        case kUartRbrThr:
            if (dlab) {
                v = dll_;
            } else if (!rx_.empty()) {
                v = rx_.front();
                rx_.pop_front();
            }
            break;
        case kUartIer:
            v = dlab ? dlm_ : ier_;
            break;
        case kUartIirFcr:
            v = iir();
            // Reading IIR while it reports THRE clears that interrupt (datasheet table IV).
            if ((v & 0x0f) == kUartIirThre) thre_pending_ = false;
            break;
        case kUartLcr:
            v = lcr_;
            break;
        case kUartMcr:
            v = mcr_;
            break;
        case kUartLsr:
            v = kUartLsrThre | kUartLsrTemt | (rx_.empty() ? 0 : kUartLsrDataReady);
            break;
        case kUartMsr:
            // In loopback the modem inputs follow MCR outputs; drivers probe the UART that way.
            v = (mcr_ & kUartMcrLoop) ? static_cast<std::uint8_t>((mcr_ & 0x0f) << 4)
                                      : kUartMsrIdle;
            break;
        case kUartScr:
            v = scr_;
            break;
        default:
            break;
    }
    data[0] = v;
    update();
}

void Uart16550::write(std::uint64_t offset, std::span<const std::uint8_t> data) {
    if (data.size() != 1) return;
    const std::uint8_t v = data[0];
    const std::lock_guard lock(mu_);
    const bool dlab = (lcr_ & kUartLcrDlab) != 0;
    switch (offset) {
        case kUartRbrThr:
            if (dlab) {
                dll_ = v;
            } else {
                if (!(mcr_ & kUartMcrLoop)) transmit(v);
                thre_pending_ = true;
            }
            break;
        case kUartIer:
            if (dlab) {
                dlm_ = v;
            } else {
                // Enabling ETBEI with an empty THR raises the interrupt at once.
                if ((v & kUartIerThre) && !(ier_ & kUartIerThre)) thre_pending_ = true;
                ier_ = v & 0x0f;
            }
            break;
        case kUartIirFcr:
            fifo_enabled_ = (v & kUartFcrEnable) != 0;
            if (v & kUartFcrClearRx) rx_.clear();
            break;
        case kUartLcr:
            lcr_ = v;
            break;
        case kUartMcr:
            mcr_ = v;
            break;
        case kUartScr:
            scr_ = v;
            break;
        default:
            break;  // LSR and MSR are read-only
    }
    update();
}

void Uart16550::transmit(std::uint8_t byte) {
    // Unbuffered: a guest may die at any moment and its last words matter most. A failed host
    // write loses the byte (a line with nobody listening); EINTR is retried.
    while (::write(out_fd_, &byte, 1) < 0 && errno == EINTR) {
    }
}

}  // namespace vireo::transport
