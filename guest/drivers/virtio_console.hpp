// virtio-console driver (§5.3), port 0 only (no MULTIPORT): write a string on transmitq0,
// read input from receiveq0 into a posted buffer.
#pragma once

#include <cstdint>

#include "drivers/virtio.hpp"
#include "spec/virtio_console.hpp"

namespace vireo::guest {

namespace console {
inline constexpr std::uint32_t kRxBytes = 256;
}  // namespace console

class ConsoleDevice {
  public:
    constexpr ConsoleDevice() = default;

    bool init(Transport& t, const VirtioOptions& opts) {
        auto init_queues = [&](std::uint64_t negotiated) {
            return rx_.init(t, kConsolePort0Rx, negotiated, opts.irq) &&
                   tx_.init(t, kConsolePort0Tx, negotiated, opts.irq);
        };
        std::uint64_t f = 0;
        return virtio_init(t, opts, 0, &f, init_queues) && post_rx();
    }

    // Sends `len` bytes (device-readable) and waits until the device consumed them.
    bool write(const char* s, std::uint32_t len) {
        if (len > sizeof tx_buf_) {
            return false;
        }
        __builtin_memcpy(tx_buf_, s, len);
        const driver::Segment out[] = {{dma_addr(tx_buf_), len}};
        std::uint32_t used = 0;
        return tx_.transfer({out, 1}, {}, &used);
    }

    // Waits up to `timeout_ms` for input; copies at most `cap` bytes. -1 on error/timeout.
    int read(char* out, std::uint32_t cap, std::uint32_t timeout_ms) {
        std::uint32_t len = 0;
        void* token = rx_.wait(&len, timeout_ms);
        if (token != &rx_token_) {
            return -1;
        }
        // len is below the posted size: the driver queue checked it against the writable bytes.
        const std::uint32_t n = len < cap ? len : cap;
        __builtin_memcpy(out, rx_buf_, n);
        return post_rx() ? static_cast<int>(n) : -1;
    }

  private:
    bool post_rx() {
        const driver::Segment in[] = {{dma_addr(rx_buf_), console::kRxBytes}};
        if (rx_.add({}, {in, 1}, &rx_token_) != driver::DriverError::kOk) {
            return false;
        }
        rx_.kick();
        return true;
    }

    Queue<8> rx_;
    Queue<8> tx_;
    int rx_token_ = 0;
    char tx_buf_[256] = {};
    char rx_buf_[console::kRxBytes] = {};
};

}  // namespace vireo::guest
