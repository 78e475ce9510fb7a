// SerialInput: host input reaches the UART's receive FIFO in order, waits (not dropped) while the
// FIFO is full, and the reader stops promptly however it is blocked.
#include "vmm/serial_input.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

namespace vireo::vmm {
namespace {

using transport::kUartLsr;
using transport::kUartLsrDataReady;
using transport::kUartRbrThr;
using transport::Uart16550;

struct Pipe {
    Pipe() { EXPECT_EQ(::pipe2(fds, O_CLOEXEC), 0); }
    ~Pipe() {
        for (int fd : fds) {
            if (fd >= 0) ::close(fd);
        }
    }
    void close_write() {
        ::close(fds[1]);
        fds[1] = -1;
    }
    int fds[2] = {-1, -1};
};

std::uint8_t rd(Uart16550& u, std::uint64_t reg) {
    std::uint8_t v = 0;
    u.read(reg, std::span(&v, 1));
    return v;
}

// Reads what the guest would, polling LSR.DR, until `n` bytes came or 5 s passed.
std::string guest_read(Uart16550& u, std::size_t n) {
    std::string got;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (got.size() < n && std::chrono::steady_clock::now() < deadline) {
        if ((rd(u, kUartLsr) & kUartLsrDataReady) != 0) {
            got.push_back(static_cast<char>(rd(u, kUartRbrThr)));
        } else {
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
    }
    return got;
}

TEST(SerialInput, BytesReachTheUartInOrder) {
    Pipe p;
    Uart16550 uart(-1);
    auto in = SerialInput::start(p.fds[0], uart);
    ASSERT_TRUE(in) << in.error();
    ASSERT_EQ(::write(p.fds[1], "ping\n", 5), 5);
    EXPECT_EQ(guest_read(uart, 5), "ping\n");
}

TEST(SerialInput, MoreThanTheFifoWaitsForTheGuest) {
    Pipe p;
    Uart16550 uart(-1);
    auto in = SerialInput::start(p.fds[0], uart);
    ASSERT_TRUE(in) << in.error();
    std::string sent;
    for (std::size_t i = 0; sent.size() < 3 * Uart16550::kRxFifo; ++i) {
        sent += std::to_string(i) + ",";
    }
    std::thread writer([&] {
        std::size_t off = 0;
        while (off < sent.size()) {
            const ssize_t n = ::write(p.fds[1], sent.data() + off, sent.size() - off);
            if (n <= 0) break;
            off += static_cast<std::size_t>(n);
        }
        p.close_write();
    });
    // Let the FIFO fill before the guest starts reading.
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_EQ(guest_read(uart, sent.size()), sent);
    writer.join();
}

TEST(SerialInput, StopsWhileWaitingForInputOrForRoom) {
    Pipe idle;
    Uart16550 a(-1);
    auto waiting = SerialInput::start(idle.fds[0], a);
    ASSERT_TRUE(waiting) << waiting.error();

    Pipe full;
    Uart16550 b(-1);
    auto held = SerialInput::start(full.fds[0], b);
    ASSERT_TRUE(held) << held.error();
    const std::string lots(Uart16550::kRxFifo + 100, 'x');
    ASSERT_EQ(::write(full.fds[1], lots.data(), lots.size()), static_cast<ssize_t>(lots.size()));
    std::this_thread::sleep_for(std::chrono::milliseconds(30));

    const auto t0 = std::chrono::steady_clock::now();
    waiting->reset();
    held->reset();
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
}

TEST(SerialInput, StdinIsLeftToAVirtioConsole) {
    VmmConfig cfg;
    EXPECT_EQ(serial_reads_stdin(cfg),
              ::isatty(STDIN_FILENO) != 1 || ::tcgetpgrp(STDIN_FILENO) == ::getpgrp());
    cfg.serial = "out.txt";
    EXPECT_FALSE(serial_reads_stdin(cfg));
    cfg.serial.clear();
    DeviceSpec console;
    console.kind = DeviceKind::kConsole;
    cfg.devices.push_back(console);
    EXPECT_FALSE(serial_reads_stdin(cfg));
    cfg.devices.back().console_file = "console.txt";  // a console writing a file reads nothing
    EXPECT_EQ(serial_reads_stdin(cfg),
              ::isatty(STDIN_FILENO) != 1 || ::tcgetpgrp(STDIN_FILENO) == ::getpgrp());
}

}  // namespace
}  // namespace vireo::vmm
