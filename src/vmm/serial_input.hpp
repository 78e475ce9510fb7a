// The guest's serial-port input: a thread reads the host's stdin (what the user types, or what
// a pipe carries) into the UART's receive FIFO, which raises the receive interrupt where the
// UART has a line (riscv64's ns16550a on the PLIC) and sets LSR.DR for polling drivers (x86
// COM1). When the FIFO is full the rest waits on the host side until the guest reads: piped
// input is never dropped. The UART's output is its own business (THR bytes go to its fd).
#pragma once

#include <cstdint>
#include <expected>
#include <memory>
#include <string>
#include <thread>

#include "base/terminal.hpp"
#include "memory/unique_fd.hpp"
#include "transport/uart_16550.hpp"
#include "vmm/config.hpp"

namespace vireo::vmm {

class SerialInput {
    struct PrivateTag {};

  public:
    // Starts reading `fd` (not owned; stdin in the VMM). A terminal goes raw for as long as
    // this lives — keys reach the guest one by one — but ^C still stops the VMM, as with
    // QEMU's `-serial stdio`.
    static std::expected<std::unique_ptr<SerialInput>, std::string> start(
        int fd, transport::Uart16550& uart);
    // Stops the thread and restores the terminal.
    ~SerialInput();
    SerialInput(const SerialInput&) = delete;
    SerialInput& operator=(const SerialInput&) = delete;

    // Public only for start()'s make_unique.
    SerialInput(PrivateTag, int fd, transport::Uart16550& uart, UniqueFd stop);

  private:
    void run();

    const int fd_;
    transport::Uart16550& uart_;
    UniqueFd stop_;
    RawTerminal terminal_;
    std::thread thread_;
};

// Whether the serial port takes stdin: its output is stdout (no --serial) and no virtio
// console of the VM already reads stdin.
bool serial_reads_stdin(const VmmConfig& cfg);

}  // namespace vireo::vmm
