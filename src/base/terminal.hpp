// A host terminal in raw mode for as long as a guest's console is attached to it: keys reach the
// guest one by one and the guest's own line discipline echoes and edits. Restored on
// destruction, so the shell gets its terminal back however the process ends its run.
#pragma once

#include <termios.h>
#include <unistd.h>

namespace vireo {

class RawTerminal {
  public:
    enum class Signals {
        kToGuest,  // ^C, ^Z, ^\ are bytes for the guest (a back-end daemon's console)
        kToHost,   // ^C still stops the host process (a VMM's serial port, as QEMU's stdio)
    };

    RawTerminal() = default;
    // Does nothing unless `fd` is a terminal.
    RawTerminal(int fd, Signals signals) {
        if (::isatty(fd) != 1 || ::tcgetattr(fd, &saved_) != 0) {
            return;
        }
        termios raw = saved_;
        ::cfmakeraw(&raw);
        raw.c_oflag |= OPOST;  // the host's own log lines keep their newline translation
        if (signals == Signals::kToHost) {
            raw.c_lflag |= ISIG;
        }
        if (::tcsetattr(fd, TCSANOW, &raw) == 0) {
            fd_ = fd;
        }
    }
    ~RawTerminal() {
        if (fd_ >= 0) {
            ::tcsetattr(fd_, TCSANOW, &saved_);
        }
    }
    RawTerminal(const RawTerminal&) = delete;
    RawTerminal& operator=(const RawTerminal&) = delete;

    bool active() const { return fd_ >= 0; }

  private:
    int fd_ = -1;
    termios saved_{};
};

}  // namespace vireo
