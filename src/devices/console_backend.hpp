// Host ends of a virtio-console port: stdio, a pseudo-terminal, a listening unix socket (one
// client at a time), an output file (guest output only: a VMM's or bridge zone's log), or a pair
// of file descriptors handed in by the caller (tests, a daemon that already holds a socket).
//
// Every descriptor is non-blocking. A back-end is not thread-safe: the console device guards
// each port's back-end with the port's mutex.
#pragma once

#include <cstdint>
#include <expected>
#include <memory>
#include <optional>
#include <string>

#include "base/terminal.hpp"
#include "memory/unique_fd.hpp"

namespace vireo::dev {

enum class ConsoleBackendKind : std::uint8_t { kStdio, kPty, kUnix, kFds, kFile };

struct ConsolePortOptions {
    ConsoleBackendKind kind = ConsoleBackendKind::kStdio;
    std::string path;  // kUnix: the socket to listen on; kFile: the file (created, truncated)
    std::string name;  // MULTIPORT: the name the guest sees (/sys/class/virtio-ports/*/name)
    // kFds: duplicated at open(), so the caller keeps its own descriptors.
    int in_fd = -1;
    int out_fd = -1;
};

class ConsoleBackend {
    struct PrivateTag {};

  public:
    // Use open(); public only so open() can use make_unique.
    explicit ConsoleBackend(PrivateTag) {}
    ~ConsoleBackend();
    ConsoleBackend(const ConsoleBackend&) = delete;
    ConsoleBackend& operator=(const ConsoleBackend&) = delete;

    // Errors name the path or the failing call.
    static std::expected<std::unique_ptr<ConsoleBackend>, std::string> open(
        const ConsolePortOptions& options);

    ConsoleBackendKind kind() const { return kind_; }
    // Where host→guest bytes come from and guest→host bytes go; -1 when nobody is there (a
    // unix back-end without a client, or input that reached end of file).
    int in_fd() const { return in_eof_ ? -1 : in_.valid() ? in_.get() : borrowed_in_; }
    int out_fd() const;
    // The listening socket (kUnix), else -1.
    int listen_fd() const { return listen_.get(); }
    // True when the output is a socket: writes use MSG_NOSIGNAL instead of raising SIGPIPE.
    bool out_is_socket() const { return out_is_socket_; }
    // Whether a host program is attached (always true except for kUnix without a client).
    bool connected() const { return kind_ != ConsoleBackendKind::kUnix || in_.valid(); }
    // Changes whenever the client comes or goes, so users of in_fd()/out_fd() notice.
    std::uint64_t generation() const { return generation_; }
    // The pty slave path (kPty) or the socket path (kUnix).
    const std::string& path() const { return path_; }

    // kUnix: accepts a waiting client if none is connected. True if one was accepted.
    bool accept_client();
    // The peer went away (EOF, EPIPE): kUnix drops its client; other kinds stop reading input.
    void disconnect();

  private:
    ConsoleBackendKind kind_ = ConsoleBackendKind::kStdio;
    UniqueFd listen_;
    UniqueFd in_;   // owned input (and, for kUnix / kPty, also the output: out_ stays empty)
    UniqueFd out_;  // owned output when it differs from in_
    UniqueFd pty_slave_;
    int borrowed_in_ = -1;  // stdio
    int borrowed_out_ = -1;
    bool in_eof_ = false;
    bool out_is_socket_ = false;
    std::uint64_t generation_ = 0;
    std::string path_;
    // stdio: what to restore on destruction.
    std::optional<RawTerminal> raw_terminal_;
    int saved_in_flags_ = -1;
    int saved_out_flags_ = -1;
};

}  // namespace vireo::dev
