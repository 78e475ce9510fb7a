// Serving devices over vhost-user sockets: listening sockets, one front end per device at a
// time, and a single-threaded event loop for all of them that ends on SIGTERM/SIGINT.
#pragma once

#include <csignal>
#include <expected>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "devices/device.hpp"
#include "memory/unique_fd.hpp"
#include "vhost_user/backend.hpp"

namespace vireo::vhost_user {

// Creates a listening unix socket at `path`. A socket file nobody listens on (left by a crash)
// is replaced; a live listener is an error, as is any non-socket file at the path.
std::expected<UniqueFd, std::string> listen_unix(const std::string& path);

// One accepted front end: its socket and the back-end state machine.
class Connection {
  public:
    Connection(UniqueFd sock, dev::VirtioDevice& device, std::string name,
               std::function<std::expected<void, std::string>()> worker_init = {});

    int fd() const { return sock_.get(); }
    Backend& backend() { return *backend_; }
    // Reads and handles one message. False: the connection is finished (closed by the peer or
    // by a fatal protocol error) and should be destroyed.
    bool on_readable();

  private:
    UniqueFd sock_;
    std::string name_;
    std::unique_ptr<Backend> backend_;
};

struct Endpoint {
    std::string name;         // for log lines
    std::string socket_path;  // vhost-user socket
    dev::VirtioDevice* device = nullptr;
    std::function<void()> flush;  // called once at shutdown, after every ring drained
    // Runs first on each ring worker thread of this endpoint's connections (see Backend).
    std::function<std::expected<void, std::string>()> worker_init;
    // An inherited socket instead of socket_path (vhost-user.rst "--fd"): a listening socket is
    // served like our own (but never unlinked); a connected one is the front end itself, and
    // when it goes away there is nobody to wait for: run() returns once no endpoint is left.
    int socket_fd = -1;
};

class Server {
  public:
    // Blocks SIGTERM/SIGINT (call before any thread starts) and listens on every endpoint's
    // socket; the error names the socket that failed.
    static std::expected<std::unique_ptr<Server>, std::string> create(std::vector<Endpoint> eps);
    ~Server();

    // Serves until SIGTERM/SIGINT (or request_stop()); then stops accepting, drains every ring,
    // flushes every device and returns 0. Non-zero only if the event loop itself failed.
    int run();
    // Thread-safe: makes run() shut down as if a signal had arrived.
    void request_stop();

  private:
    struct Slot {
        Endpoint ep;
        UniqueFd listener;
        std::unique_ptr<Connection> conn;
        bool owns_path = false;  // listener bound here at socket_path (unlinked at shutdown)
    };
    Server() = default;
    void accept_on(Slot& s);
    void adopt(Slot& s, UniqueFd fd);
    void close_connection(Slot& s, std::string_view why);
    void shutdown();

    std::vector<std::unique_ptr<Slot>> slots_;
    UniqueFd epoll_;
    UniqueFd signal_fd_;
    UniqueFd stop_fd_;
};

}  // namespace vireo::vhost_user
