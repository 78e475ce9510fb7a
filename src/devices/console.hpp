// virtio-console (virtio 1.2 §5.3), independent of the transport.
//
// Queues (§5.3.2): port 0 receiveq/transmitq, then — only with VIRTIO_CONSOLE_F_MULTIPORT — the
// control receiveq/transmitq, then receiveq/transmitq of port 1, 2, … Each port has its own
// host back-end (console_backend.hpp): stdio, a pty, a listening unix socket, or given fds.
//
// Threads: the transport runs every queue's handler on its own thread, so what queues share —
// a port's back-end between its receiveq and transmitq, the control messages between the two
// control queues — sits behind a mutex, and one handler wakes another through an eventfd that
// is part of the woken handler's event_fd() (an epoll set). A queue is only ever touched by the
// thread that runs its handler.
//
// Data paths, all non-blocking and bounded:
//  - host→guest (receiveq): the back-end is read only into a guest receive buffer that is
//    available, so input waits in the kernel's (bounded) socket/pty/pipe buffer until the guest
//    posts buffers and, with MULTIPORT, until the guest opened the port (§5.3.6.2: Linux drops
//    data for a port it has not opened).
//  - guest→host (transmitq): chains are written to the back-end; if it would block, the chain
//    stays pending (partially written) and the handler polls for writability — a chain is
//    completed only once all its bytes were written. Output for a unix back-end without a
//    client, or whose client went away, is dropped (counted).
//  - control (MULTIPORT, §5.3.6.2): DEVICE_READY → DEVICE_ADD per port; PORT_READY → for port 0
//    CONSOLE_PORT, PORT_NAME for named ports, PORT_OPEN when a host program is attached;
//    PORT_OPEN from the guest gates host→guest data. Device→driver messages wait in a bounded
//    queue for control receive buffers.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <expected>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "devices/console_backend.hpp"
#include "devices/device.hpp"
#include "memory/unique_fd.hpp"
#include "spec/virtio_console.hpp"

namespace vireo::dev {

// --- limits ------------------------------------------------------------------------------
inline constexpr std::size_t kConsoleMaxPorts = 32;
inline constexpr std::size_t kConsoleMaxNameBytes = 255;
// Device→driver control messages waiting for buffers. A guest repeating DEVICE_READY cannot
// grow it further: beyond this, messages are dropped (and counted).
inline constexpr std::size_t kConsoleMaxPendingControl = 4 * kConsoleMaxPorts + 16;

struct ConsoleOptions {
    std::vector<ConsolePortOptions> ports{ConsolePortOptions{}};  // port 0 is the console
    std::uint16_t cols = 0;  // VIRTIO_CONSOLE_F_SIZE when both are set (port 0 only, §5.3.6)
    std::uint16_t rows = 0;
    bool multiport = false;  // offer MULTIPORT even for a single unnamed port
    std::uint16_t queue_size = 256;
};

struct ConsoleStats {
    std::atomic<std::uint64_t> to_guest{0};         // bytes
    std::atomic<std::uint64_t> to_host{0};          // bytes
    std::atomic<std::uint64_t> dropped{0};          // guest→host bytes with nobody to take them
    std::atomic<std::uint64_t> control_dropped{0};  // control messages lost (queue or buffer)
    std::atomic<std::uint64_t> bad_control{0};      // malformed driver control messages
};

class ConsoleDevice final : public VirtioDevice {
    struct PrivateTag {};

  public:
    // Per-port state shared by the port's two queue handlers and the control queues.
    struct Port {
        std::mutex mu;  // guards backend
        std::unique_ptr<ConsoleBackend> backend;
        std::string name;
        // Host→guest data flows only while the guest has the port open (MULTIPORT).
        std::atomic<bool> guest_open{false};
        UniqueFd rx_wake;  // eventfds in the receiveq / transmitq handlers' epoll sets
        UniqueFd tx_wake;
    };

    explicit ConsoleDevice(PrivateTag) {}
    ~ConsoleDevice() override;

    // Opens every port's back-end. Errors name the port and the problem.
    static std::expected<std::unique_ptr<ConsoleDevice>, std::string> create(
        const ConsoleOptions& options);

    std::uint32_t device_id() const override { return kIdConsole; }
    std::uint64_t device_features() const override;
    std::uint16_t num_queues() const override;
    std::uint16_t max_queue_size() const override { return queue_size_; }
    std::span<const std::uint8_t> config() const override;
    // Only emerg_wr is writable (§5.3.5.1: even before the device is configured).
    void write_config(std::uint32_t offset, std::span<const std::uint8_t> data) override;
    void set_features(std::uint64_t negotiated) override;
    // nullptr for a queue that does not exist (or, without MULTIPORT negotiated, beyond port 0).
    std::unique_ptr<QueueHandler> start_queue(std::uint16_t index, QueueHandle q) override;
    void reset() override;

    std::size_t port_count() const { return ports_.size(); }
    // The pty slave (kPty) or socket path (kUnix) of a port; empty otherwise.
    std::string port_path(std::size_t port) const;
    bool multiport_offered() const { return multiport_offered_; }
    const ConsoleStats& stats() const { return stats_; }

  private:
    friend class ConsolePortRx;
    friend class ConsolePortTx;
    friend class ConsoleControlRxQueue;
    friend class ConsoleControlTxQueue;

    bool multiport() const { return multiport_.load(std::memory_order_acquire); }
    // Queues a device→driver control message and wakes the control receiveq.
    void post_control(std::uint32_t port, std::uint16_t event, std::uint16_t value,
                      std::string_view payload = {});
    // Handles one driver→device control message.
    void handle_control(const ConsoleControl& msg);

    std::vector<std::unique_ptr<Port>> ports_;
    ConsoleConfig config_{};
    std::uint16_t queue_size_ = 256;
    bool multiport_offered_ = false;
    bool size_offered_ = false;
    std::atomic<bool> multiport_{false};  // negotiated

    std::mutex control_mu_;                              // guards control_out_
    std::deque<std::vector<std::uint8_t>> control_out_;  // device→driver, oldest first
    UniqueFd control_wake_;                              // the control receiveq's event_fd()

    ConsoleStats stats_;
};

}  // namespace vireo::dev
