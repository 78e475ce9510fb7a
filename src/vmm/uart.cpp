#include "vmm/uart.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace vireo::vmm {

void Uart16550::read(std::uint64_t offset, std::span<std::uint8_t> data) {
    std::fill(data.begin(), data.end(), 0);
    if (data.size() != 1) {
        return;  // the 16550 has byte registers only
    }
    const std::lock_guard lock(mu_);
    const bool dlab = (lcr_ & kUartLcrDlab) != 0;
    std::uint8_t v = 0;
    switch (offset) {
        case kUartRbrThr:
            v = dlab ? dll_ : 0;  // nothing received
            break;
        case kUartIer:
            v = dlab ? dlm_ : ier_;
            break;
        case kUartIirFcr:
            v = kUartIirNone | ((fcr_ & kUartFcrEnable) ? kUartIirFifo : 0);
            break;
        case kUartLcr:
            v = lcr_;
            break;
        case kUartMcr:
            v = mcr_;
            break;
        case kUartLsr:
            v = kUartLsrThre | kUartLsrTemt;
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
}

void Uart16550::write(std::uint64_t offset, std::span<const std::uint8_t> data) {
    if (data.size() != 1) {
        return;
    }
    const std::uint8_t v = data[0];
    std::unique_lock lock(mu_);
    const bool dlab = (lcr_ & kUartLcrDlab) != 0;
    switch (offset) {
        case kUartRbrThr:
            if (dlab) {
                dll_ = v;
            } else if (!(mcr_ & kUartMcrLoop)) {
                lock.unlock();
                transmit(v);
            }
            break;
        case kUartIer:
            (dlab ? dlm_ : ier_) = v;
            break;
        case kUartIirFcr:
            fcr_ = v;
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
}

void Uart16550::transmit(std::uint8_t byte) {
    // Unbuffered: the guest may die (triple fault, timeout) at any moment and its last words
    // matter most. One write(2) per byte costs less than the exit that brought it here.
    while (::write(out_fd_, &byte, 1) < 0 && errno == EINTR) {
    }
}

}  // namespace vireo::vmm
