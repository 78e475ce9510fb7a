#include "riscv/uart.hpp"

#include <unistd.h>

#include <cstring>

#include "vmm/uart.hpp"

namespace vireo::riscv {

namespace {
using namespace vireo::vmm;                // register offsets and bits
constexpr std::uint8_t kIerRxData = 0x01;  // ERBFI
constexpr std::uint8_t kIerThre = 0x02;    // ETBEI
constexpr std::uint8_t kIirThre = 0x02;
constexpr std::uint8_t kIirRxData = 0x04;
constexpr std::uint8_t kLsrDataReady = 0x01;
constexpr std::size_t kRxFifo = 4096;  // host input beyond this is dropped
}  // namespace

std::uint8_t Uart::iir() const {
    const std::uint8_t fifo = fifo_enabled_ ? kUartIirFifo : 0;
    if ((ier_ & kIerRxData) && !rx_.empty()) return fifo | kIirRxData;
    if ((ier_ & kIerThre) && thre_pending_) return fifo | kIirThre;
    return fifo | kUartIirNone;
}

void Uart::update() {
    const bool high = (iir() & kUartIirNone) == 0;
    if (high != line_high_) {
        line_high_ = high;
        irq_.set_level(high);
    }
}

void Uart::receive(std::uint8_t byte) {
    const std::lock_guard lock(mu_);
    if (rx_.size() < kRxFifo) rx_.push_back(byte);
    update();
}

void Uart::read(std::uint64_t offset, std::span<std::uint8_t> data) {
    std::memset(data.data(), 0, data.size());
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
            if ((v & 0x0f) == kIirThre) thre_pending_ = false;
            break;
        case kUartLcr:
            v = lcr_;
            break;
        case kUartMcr:
            v = mcr_;
            break;
        case kUartLsr:
            v = kUartLsrThre | kUartLsrTemt | (rx_.empty() ? 0 : kLsrDataReady);
            break;
        case kUartMsr:
            v = kUartMsrIdle;
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

void Uart::write(std::uint64_t offset, std::span<const std::uint8_t> data) {
    const std::uint8_t v = data[0];
    const std::lock_guard lock(mu_);
    const bool dlab = (lcr_ & kUartLcrDlab) != 0;
    switch (offset) {
        case kUartRbrThr:
            if (dlab) {
                dll_ = v;
            } else {
                // The byte leaves at once; a failed host write loses it (the console is best
                // effort, like a real line with nobody listening).
                [[maybe_unused]] const ssize_t n = ::write(out_fd_, &v, 1);
                thre_pending_ = true;
            }
            break;
        case kUartIer:
            if (dlab) {
                dlm_ = v;
            } else {
                // Enabling ETBEI with an empty THR raises the interrupt at once.
                if ((v & kIerThre) && !(ier_ & kIerThre)) thre_pending_ = true;
                ier_ = v & 0x0f;
            }
            break;
        case kUartIirFcr:
            fifo_enabled_ = (v & kUartFcrEnable) != 0;
            if (v & 0x02) rx_.clear();  // clear the receive FIFO
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
            break;
    }
    update();
}

}  // namespace vireo::riscv
