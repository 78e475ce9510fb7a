// One vhost-user message as received or sent: header, payload bytes, and the file descriptors
// that travelled with it (SCM_RIGHTS). Plus blocking socket I/O for whole messages.
#pragma once

#include <cstdint>
#include <cstring>
#include <expected>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "memory/unique_fd.hpp"
#include "vhost_user/protocol.hpp"

namespace vireo::vhost_user {

struct Message {
    Header hdr{};
    std::vector<std::uint8_t> payload;
    std::vector<UniqueFd> fds;

    Request request() const { return static_cast<Request>(hdr.request); }
    bool need_reply() const { return (hdr.flags & kFlagNeedReply) != 0; }

    // Typed view of the payload's first sizeof(T) bytes; the validator has checked the size
    // before any handler calls this, so a short payload is a bug and yields a zeroed T.
    template <typename T>
    T as() const {
        static_assert(std::is_trivially_copyable_v<T>);
        T out{};
        std::memcpy(&out, payload.data(), std::min(sizeof(T), payload.size()));
        return out;
    }
    std::uint64_t u64() const { return as<std::uint64_t>(); }
};

enum class IoError {
    kClosed,      // orderly shutdown by the peer (EOF at a message boundary)
    kTruncated,   // EOF or timeout in the middle of a message
    kTooLarge,    // header size beyond kMaxPayload: framing cannot be trusted any more
    kTooManyFds,  // more fds than any message carries (control data truncated)
    kSystem,      // a socket call failed (errno logged by the caller)
};

std::string_view to_string(IoError e);

// Reads one whole message from a connected stream socket. File descriptors arrive with the
// header's bytes; they are received close-on-exec and owned by the message.
std::expected<Message, IoError> receive(int sock);

// Sends one message (header + payload + fds). Returns false if the peer went away.
bool send(int sock, const Header& hdr, std::span<const std::uint8_t> payload,
          std::span<const int> fds = {});

template <typename T>
std::span<const std::uint8_t> bytes_of(const T& v) {
    static_assert(std::is_trivially_copyable_v<T>);
    return {reinterpret_cast<const std::uint8_t*>(&v), sizeof(T)};
}

}  // namespace vireo::vhost_user
