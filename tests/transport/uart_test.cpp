// The 16550A both machines use (src/transport/uart_16550.hpp): polled output (x86 COM1), and
// with an interrupt line and input (the RISC-V machine's console).
#include <gtest/gtest.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "memory/unique_fd.hpp"
#include "transport/uart_16550.hpp"

namespace vireo::transport {
namespace {

struct Line final : IrqLine {
    void set_level(bool high) override { level = high; }
    bool level = false;
};

std::uint8_t rd(Uart16550& u, std::uint64_t off) {
    std::uint8_t b = 0;
    u.read(off, {&b, 1});
    return b;
}
void wr(Uart16550& u, std::uint64_t off, std::uint8_t v) {
    u.write(off, {&v, 1});
}

TEST(Uart, PollingDriverSeesAnEmptyTransmitterAndOutputArrives) {
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    UniqueFd rd(fds[0]), wr(fds[1]);
    Uart16550 u(wr.get());
    std::uint8_t b = 0;
    u.read(kUartLsr, {&b, 1});
    EXPECT_EQ(b & (kUartLsrThre | kUartLsrTemt), kUartLsrThre | kUartLsrTemt);
    for (char c : std::string("ok")) {
        const std::uint8_t v = static_cast<std::uint8_t>(c);
        u.write(kUartRbrThr, {&v, 1});
    }
    char out[2];
    ASSERT_EQ(::read(rd.get(), out, 2), 2);
    EXPECT_EQ(std::string(out, 2), "ok");
    // Divisor latch: DLAB redirects offsets 0/1, and bytes written then are not output.
    const std::uint8_t dlab = kUartLcrDlab, div = 3, zero = 0;
    u.write(kUartLcr, {&dlab, 1});
    u.write(kUartRbrThr, {&div, 1});
    u.read(kUartRbrThr, {&b, 1});
    EXPECT_EQ(b, 3);
    u.write(kUartLcr, {&zero, 1});
    u.read(kUartIirFcr, {&b, 1});
    EXPECT_EQ(b & 0x0f, kUartIirNone);
    const std::uint8_t scratch = 0x5a;
    u.write(kUartScr, {&scratch, 1});
    u.read(kUartScr, {&b, 1});
    EXPECT_EQ(b, 0x5a);
    // Nothing else was written to the pipe.
    wr.reset();
    EXPECT_EQ(::read(rd.get(), out, 1), 0);
}

// Linux's 8250 driver: THRE interrupt when ETBEI is enabled (cleared by reading IIR or writing
// THR), received-data interrupt while input waits, the line following IIR.
TEST(Uart, InterruptsAndInput) {
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    UniqueFd r(fds[0]), w(fds[1]);
    Line line;
    Uart16550 u(w.get(), &line);
    wr(u, kUartIirFcr, kUartFcrEnable);
    EXPECT_EQ(rd(u, kUartIirFcr), kUartIirFifo | kUartIirNone);
    EXPECT_FALSE(line.level);
    wr(u, kUartIer, kUartIerThre);  // THR is empty: the interrupt is raised at once
    EXPECT_TRUE(line.level);
    EXPECT_EQ(rd(u, kUartIirFcr), kUartIirFifo | kUartIirThre);  // reading IIR clears it
    EXPECT_FALSE(line.level);
    wr(u, kUartRbrThr, 'x');  // and it re-arms after each byte sent
    EXPECT_TRUE(line.level);
    wr(u, kUartIer, 0);
    EXPECT_FALSE(line.level);
    wr(u, kUartIer, kUartIerRxData);
    const std::uint8_t ab[] = {'a', 'b'};
    EXPECT_EQ(u.receive(ab), 2u);
    EXPECT_TRUE(line.level);
    EXPECT_EQ(rd(u, kUartIirFcr) & 0x0f, kUartIirRxData);
    EXPECT_EQ(rd(u, kUartLsr) & kUartLsrDataReady, kUartLsrDataReady);
    EXPECT_EQ(rd(u, kUartRbrThr), 'a');
    EXPECT_EQ(rd(u, kUartRbrThr), 'b');
    EXPECT_FALSE(line.level);
    EXPECT_EQ(rd(u, kUartLsr) & kUartLsrDataReady, 0);
    // Bounded input: the FIFO takes kRxFifo bytes and says so; FCR clears it.
    const std::vector<std::uint8_t> many(Uart16550::kRxFifo + 10, 'z');
    EXPECT_EQ(u.receive(many), Uart16550::kRxFifo);
    EXPECT_EQ(u.receive(ab), 0u);
    EXPECT_EQ(rd(u, kUartRbrThr), 'z');
    EXPECT_EQ(u.receive(ab), 1u);  // one byte read, one byte of room
    wr(u, kUartIirFcr, kUartFcrEnable | kUartFcrClearRx);
    EXPECT_EQ(rd(u, kUartLsr) & kUartLsrDataReady, 0);
    // Loopback: MSR mirrors MCR, nothing is sent.
    wr(u, kUartMcr, kUartMcrLoop | 0x0b);
    EXPECT_EQ(rd(u, kUartMsr), 0xb0);
    wr(u, kUartRbrThr, 'y');
    wr(u, kUartMcr, 0);
    // Wide accesses are ignored.
    std::uint8_t two[2] = {0xff, 0xff};
    u.read(kUartLsr, two);
    EXPECT_EQ(two[0], 0);
    w.reset();
    char out[4];
    EXPECT_EQ(::read(r.get(), out, sizeof out), 1);  // only the 'x'
    EXPECT_EQ(out[0], 'x');
}

}  // namespace
}  // namespace vireo::transport
