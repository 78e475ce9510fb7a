#include "devices/net_gso.hpp"

#include <algorithm>
#include <cstring>

namespace vireo::dev {

namespace {

constexpr std::uint8_t kTcpFin = 0x01;
constexpr std::uint8_t kTcpPsh = 0x08;
constexpr std::uint8_t kTcpCwr = 0x80;

std::uint16_t be16(std::span<const std::uint8_t> b, std::size_t at) {
    return static_cast<std::uint16_t>(b[at] << 8 | b[at + 1]);
}
std::uint32_t be32(std::span<const std::uint8_t> b, std::size_t at) {
    return static_cast<std::uint32_t>(be16(b, at)) << 16 | be16(b, at + 2);
}
void put16(std::span<std::uint8_t> b, std::size_t at, std::uint16_t v) {
    b[at] = static_cast<std::uint8_t>(v >> 8);
    b[at + 1] = static_cast<std::uint8_t>(v);
}
void put32(std::span<std::uint8_t> b, std::size_t at, std::uint32_t v) {
    put16(b, at, static_cast<std::uint16_t>(v >> 16));
    put16(b, at + 2, static_cast<std::uint16_t>(v));
}

}  // namespace

std::optional<TcpGso> plan_tcp_gso(std::span<const std::uint8_t> f, const NetHdr& hdr) {
    if (hdr.gso_type != kNetHdrGsoTcpv4 && hdr.gso_type != kNetHdrGsoTcpv6) return std::nullopt;
    TcpGso g;
    g.mss = hdr.gso_size.get();
    if (g.mss == 0 || f.size() < kEthHeader) return std::nullopt;
    std::uint16_t type = be16(f, kEthTypeOffset);
    g.l3 = kEthHeader;
    if (type == kEthTypeVlan) {
        if (f.size() < 18) return std::nullopt;
        type = be16(f, 16);
        g.l3 = 18;
    }
    if (type == kEthTypeIpv4 && hdr.gso_type == kNetHdrGsoTcpv4) {
        if (f.size() < g.l3 + 20 || (f[g.l3] >> 4) != 4) return std::nullopt;
        const std::size_t ihl = (f[g.l3] & 0x0fu) * 4u;
        const std::uint16_t frag = be16(f, g.l3 + 6);
        if (ihl < 20 || f.size() < g.l3 + ihl || f[g.l3 + 9] != kIpProtoTcp ||
            (frag & 0x3fffu) != 0) {  // MF or a fragment offset: not a whole TCP segment
            return std::nullopt;
        }
        g.l4 = g.l3 + ihl;
    } else if (type == kEthTypeIpv6 && hdr.gso_type == kNetHdrGsoTcpv6) {
        if (f.size() < g.l3 + 40 || (f[g.l3] >> 4) != 6 || f[g.l3 + 6] != kIpProtoTcp) {
            return std::nullopt;
        }
        g.ipv6 = true;
        g.l4 = g.l3 + 40;
    } else {
        return std::nullopt;
    }
    if (f.size() < g.l4 + 20) return std::nullopt;
    const std::size_t doff = (f[g.l4 + 12] >> 4) * 4u;
    if (doff < 20 || f.size() <= g.l4 + doff) return std::nullopt;  // no payload: nothing to cut
    g.payload = g.l4 + doff;
    g.segments = (f.size() - g.payload + g.mss - 1) / g.mss;
    return g;
}

std::span<const std::uint8_t> tcp_gso_segment(std::span<const std::uint8_t> f, const TcpGso& g,
                                              std::size_t i, std::span<std::uint8_t> h) {
    const std::size_t off = g.payload + i * g.mss;
    const std::span<const std::uint8_t> data = f.subspan(off, std::min(g.mss, f.size() - off));
    std::memcpy(h.data(), f.data(), g.payload);
    const bool last = i + 1 == g.segments;
    const std::size_t tcp_len = g.payload - g.l4 + data.size();
    std::uint32_t pseudo = 0;
    if (g.ipv6) {
        put16(h, g.l3 + 4, static_cast<std::uint16_t>(tcp_len));
        pseudo = csum_add(0, h.subspan(g.l3 + 8, 32));  // source and destination addresses
    } else {
        const std::size_t ihl = g.l4 - g.l3;
        put16(h, g.l3 + 2, static_cast<std::uint16_t>(ihl + tcp_len));
        put16(h, g.l3 + 4, static_cast<std::uint16_t>(be16(f, g.l3 + 4) + i));  // IP id
        put16(h, g.l3 + 10, 0);
        put16(h, g.l3 + 10,
              static_cast<std::uint16_t>(~csum_fold(csum_add(0, h.subspan(g.l3, ihl)))));
        pseudo = csum_add(0, h.subspan(g.l3 + 12, 8));
    }
    // RFC 793 pseudo header: addresses (above), protocol, TCP length.
    pseudo += kIpProtoTcp + static_cast<std::uint32_t>(tcp_len);
    put32(h, g.l4 + 4, be32(f, g.l4 + 4) + static_cast<std::uint32_t>(i * g.mss));
    std::uint8_t flags = f[g.l4 + 13];
    if (!last) flags &= static_cast<std::uint8_t>(~(kTcpFin | kTcpPsh));
    if (i != 0) flags &= static_cast<std::uint8_t>(~kTcpCwr);
    h[g.l4 + 13] = flags;
    put16(h, g.l4 + 16, 0);
    // The TCP header has an even length, so the payload's words line up after it.
    const std::uint32_t sum = csum_add(csum_add(pseudo, h.subspan(g.l4, g.payload - g.l4)), data);
    put16(h, g.l4 + 16, static_cast<std::uint16_t>(~csum_fold(sum)));
    return data;
}

}  // namespace vireo::dev
