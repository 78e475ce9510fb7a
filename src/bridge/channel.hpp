// Setup messages over a unix stream socket, file descriptors attached with SCM_RIGHTS.
#pragma once

#include <cstdint>
#include <expected>
#include <span>
#include <string>
#include <vector>

#include "memory/unique_fd.hpp"

namespace vireo::bridge {

inline constexpr std::size_t kMaxSetupFds = 4;

// Sends all of `bytes` in one message with `fds` attached.
std::expected<void, std::string> send_msg(int sock, std::span<const std::uint8_t> bytes,
                                          std::span<const int> fds);
// Receives exactly `out.size()` bytes; fds that came with them are appended to `fds` (at most
// kMaxSetupFds; extra ones are closed). An orderly close before any byte is an error too.
std::expected<void, std::string> recv_msg(int sock, std::span<std::uint8_t> out,
                                          std::vector<UniqueFd>& fds);

template <typename T>
std::span<const std::uint8_t> bytes_of(const T& v) {
    return {reinterpret_cast<const std::uint8_t*>(&v), sizeof(T)};
}
template <typename T>
std::span<std::uint8_t> bytes_of(T& v) {
    return {reinterpret_cast<std::uint8_t*>(&v), sizeof(T)};
}

// A listening socket at `path` (a stale socket file is replaced) / a connection to it.
std::expected<UniqueFd, std::string> listen_unix(const std::string& path);
std::expected<UniqueFd, std::string> connect_unix(const std::string& path);

}  // namespace vireo::bridge
