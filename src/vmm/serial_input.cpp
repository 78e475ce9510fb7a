#include "vmm/serial_input.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <span>

namespace vireo::vmm {

namespace {
// How long to wait before offering held-back input again while the guest's FIFO is full.
constexpr int kFullRetryMs = 10;
}  // namespace

std::expected<std::unique_ptr<SerialInput>, std::string> SerialInput::start(
    int fd, transport::Uart16550& uart) {
    UniqueFd stop(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!stop) {
        return std::unexpected(std::string("serial input: eventfd: ") + std::strerror(errno));
    }
    auto in = std::make_unique<SerialInput>(PrivateTag{}, fd, uart, std::move(stop));
    in->thread_ = std::thread([p = in.get()] { p->run(); });
    return in;
}

SerialInput::SerialInput(PrivateTag, int fd, transport::Uart16550& uart, UniqueFd stop)
    : fd_(fd), uart_(uart), stop_(std::move(stop)), terminal_(fd, RawTerminal::Signals::kToHost) {}

SerialInput::~SerialInput() {
    if (thread_.joinable()) {
        ::eventfd_write(stop_.get(), 1);
        thread_.join();
    }
}

void SerialInput::run() {
    std::array<std::uint8_t, 256> buf{};
    std::size_t held = 0;  // bytes read from fd_ that the FIFO had no room for yet
    bool eof = false;
    while (!eof || held > 0) {
        if (held > 0) {
            const std::size_t n = uart_.receive(std::span(buf.data(), held));
            std::copy(buf.begin() + static_cast<std::ptrdiff_t>(n),
                      buf.begin() + static_cast<std::ptrdiff_t>(held), buf.begin());
            held -= n;
        }
        // While input is held back, only wake up for stop or to offer it again.
        pollfd fds[2] = {{stop_.get(), POLLIN, 0}, {fd_, POLLIN, 0}};
        const nfds_t nfds = held > 0 || eof ? 1 : 2;
        const int r = ::poll(fds, nfds, held > 0 ? kFullRetryMs : -1);
        if (r < 0 && errno != EINTR) {
            return;
        }
        if (r <= 0) {
            continue;
        }
        if (fds[0].revents != 0) {
            return;
        }
        if (nfds == 2 && fds[1].revents != 0) {
            const ssize_t n = ::read(fd_, buf.data(), buf.size());
            if (n > 0) {
                held = static_cast<std::size_t>(n);
            } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
                eof = true;  // end of input (or an unreadable fd): the guest just gets no more
            }
        }
    }
}

bool serial_reads_stdin(const VmmConfig& cfg) {
    if (!cfg.serial.empty()) {
        return false;
    }
    // A VMM started in the background of an interactive shell must not touch the terminal:
    // reading it (or making it raw) would stop the VMM with SIGTTIN/SIGTTOU.
    if (::isatty(STDIN_FILENO) == 1 && ::tcgetpgrp(STDIN_FILENO) != ::getpgrp()) {
        return false;
    }
    return std::none_of(cfg.devices.begin(), cfg.devices.end(), [](const DeviceSpec& d) {
        return d.kind == DeviceKind::kConsole && d.console_file.empty();
    });
}

}  // namespace vireo::vmm
