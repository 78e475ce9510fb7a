// Software TCP segmentation: the switch's fallback when a guest sent a GSO frame (HOST_TSO4/6)
// to a guest that did not negotiate the matching GUEST_TSO4/6 (§5.1.6.4). Each segment is
// written straight into the receiver's buffers: new headers (IP length, IPv4 id and header
// checksum, TCP sequence number, flags, checksum) followed by a slice of the sender's payload,
// so the frame is still copied only once between the guests.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

#include "devices/net.hpp"

namespace vireo::dev {

// Ethernet + 802.1Q tag + the largest IPv4 header + the largest TCP header.
inline constexpr std::size_t kGsoMaxHeaders = 18 + 60 + 60;

struct TcpGso {
    std::size_t l3 = 0;       // IP header offset
    std::size_t l4 = 0;       // TCP header offset
    std::size_t payload = 0;  // first payload byte (= length of every segment's headers)
    bool ipv6 = false;
    std::size_t mss = 0;
    std::size_t segments = 0;
};

// Checks a frame the sender marked TCPV4/TCPV6 GSO and plans its segments: Ethernet (one
// optional 802.1Q tag), IPv4 (not a fragment) or IPv6 (no extension headers), TCP, a non-empty
// payload, gso_size > 0 and the IP version matching gso_type. nullopt for anything else: the
// caller drops and counts it, as a real NIC would drop what it cannot parse.
std::optional<TcpGso> plan_tcp_gso(std::span<const std::uint8_t> frame, const NetHdr& hdr);

// Segment `i` (< g.segments): writes its g.payload header bytes into `headers` (at least that
// large) and returns its payload, a slice of `frame`. Checksums are complete (flags 0).
std::span<const std::uint8_t> tcp_gso_segment(std::span<const std::uint8_t> frame, const TcpGso& g,
                                              std::size_t i, std::span<std::uint8_t> headers);

}  // namespace vireo::dev
