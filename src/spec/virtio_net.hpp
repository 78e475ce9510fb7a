// virtio-net wire format (virtio 1.2 §5.1): feature bits (§5.1.3), the configuration layout
// (§5.1.4), the header before every packet (§5.1.6, struct virtio_net_hdr), packet sizes
// (§5.1.6.3) and the control virtqueue's classes and commands (§5.1.6.5).
#pragma once

#include <cstddef>
#include <cstdint>

#include "spec/le.hpp"

namespace vireo::spec {

// §5.1.3 feature bits.
inline constexpr unsigned kNetFCsum = 0;
inline constexpr unsigned kNetFGuestCsum = 1;
inline constexpr unsigned kNetFCtrlGuestOffloads = 2;
inline constexpr unsigned kNetFMtu = 3;
inline constexpr unsigned kNetFMac = 5;
inline constexpr unsigned kNetFGuestTso4 = 7;
inline constexpr unsigned kNetFGuestTso6 = 8;
inline constexpr unsigned kNetFGuestEcn = 9;
inline constexpr unsigned kNetFGuestUfo = 10;
inline constexpr unsigned kNetFHostTso4 = 11;
inline constexpr unsigned kNetFHostTso6 = 12;
inline constexpr unsigned kNetFHostEcn = 13;
inline constexpr unsigned kNetFHostUfo = 14;
inline constexpr unsigned kNetFMrgRxbuf = 15;
inline constexpr unsigned kNetFStatus = 16;
inline constexpr unsigned kNetFCtrlVq = 17;
inline constexpr unsigned kNetFCtrlRx = 18;
inline constexpr unsigned kNetFCtrlVlan = 19;
inline constexpr unsigned kNetFGuestAnnounce = 21;
inline constexpr unsigned kNetFMq = 22;
inline constexpr unsigned kNetFCtrlMacAddr = 23;

// §5.1.4 struct virtio_net_config.
struct NetConfig {
    std::uint8_t mac[6];
    le16 status;
    le16 max_virtqueue_pairs;
    le16 mtu;
    le32 speed;
    std::uint8_t duplex;
    std::uint8_t rss_max_key_size;
    le16 rss_max_indirection_table_length;
    le32 supported_hash_types;
};
static_assert(offsetof(NetConfig, status) == 6 && offsetof(NetConfig, max_virtqueue_pairs) == 8);
static_assert(offsetof(NetConfig, mtu) == 10 && offsetof(NetConfig, speed) == 12);
static_assert(offsetof(NetConfig, duplex) == 16 && sizeof(NetConfig) == 24);

inline constexpr std::uint16_t kNetSLinkUp = 1;  // NetConfig::status

// §5.1.6: struct virtio_net_hdr (VERSION_1 layout, num_buffers always present).
struct NetHdr {
    std::uint8_t flags;
    std::uint8_t gso_type;
    le16 hdr_len;
    le16 gso_size;
    le16 csum_start;
    le16 csum_offset;
    le16 num_buffers;
};
static_assert(sizeof(NetHdr) == 12);
inline constexpr std::size_t kNetHdrSize = sizeof(NetHdr);
inline constexpr std::size_t kNetHdrNumBuffersOffset = offsetof(NetHdr, num_buffers);
static_assert(kNetHdrNumBuffersOffset == 10);

// NetHdr::flags and NetHdr::gso_type.
inline constexpr std::uint8_t kNetHdrFNeedsCsum = 1;
inline constexpr std::uint8_t kNetHdrFDataValid = 2;
inline constexpr std::uint8_t kNetHdrFRscInfo = 4;
inline constexpr std::uint8_t kNetHdrGsoNone = 0;
inline constexpr std::uint8_t kNetHdrGsoTcpv4 = 1;
inline constexpr std::uint8_t kNetHdrGsoUdp = 3;
inline constexpr std::uint8_t kNetHdrGsoTcpv6 = 4;
inline constexpr std::uint8_t kNetHdrGsoUdpL4 = 5;
inline constexpr std::uint8_t kNetHdrGsoEcn = 0x80;

// §5.1.6.3: the largest packet (Ethernet header included, the NetHdr not) a driver receives:
// with GUEST_TSO4/TSO6/UFO, and without.
inline constexpr std::size_t kNetMaxGsoPacket = 65550;
inline constexpr std::size_t kNetMaxPacket = 1514;

// §5.1.6.5 control virtqueue: ack values, classes and their commands.
inline constexpr std::uint8_t kNetOk = 0;
inline constexpr std::uint8_t kNetErr = 1;
inline constexpr std::uint8_t kNetCtrlRx = 0;
inline constexpr std::uint8_t kNetCtrlRxPromisc = 0;
inline constexpr std::uint8_t kNetCtrlRxAllmulti = 1;
inline constexpr std::uint8_t kNetCtrlMac = 1;
inline constexpr std::uint8_t kNetCtrlMacTableSet = 0;
inline constexpr std::uint8_t kNetCtrlMacAddrSet = 1;
inline constexpr std::uint8_t kNetCtrlVlan = 2;
inline constexpr std::uint8_t kNetCtrlAnnounce = 3;
inline constexpr std::uint8_t kNetCtrlMq = 4;
inline constexpr std::uint8_t kNetCtrlMqVqPairsSet = 0;
inline constexpr std::uint16_t kNetMqPairsMin = 1;  // the range MQ_VQ_PAIRS_SET accepts
inline constexpr std::uint16_t kNetMqPairsMax = 0x8000;
inline constexpr std::uint8_t kNetCtrlGuestOffloads = 5;

}  // namespace vireo::spec
