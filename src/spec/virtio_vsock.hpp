// virtio-vsock wire format (virtio 1.2 §5.10): queue indices (§5.10.2), feature bits (§5.10.3),
// the configuration layout (§5.10.4) and the packet header and its operations (§5.10.6).
#pragma once

#include <cstddef>
#include <cstdint>

#include "spec/le.hpp"

namespace vireo::spec {

// §5.10.3 feature bits.
inline constexpr unsigned kVsockFStream = 0;
inline constexpr unsigned kVsockFSeqpacket = 1;

// §5.10.2 queue indices.
inline constexpr std::uint16_t kVsockQueueRx = 0;
inline constexpr std::uint16_t kVsockQueueTx = 1;
inline constexpr std::uint16_t kVsockQueueEvent = 2;

// §5.10.6 VsockHdr::type and VsockHdr::op.
inline constexpr std::uint16_t kVsockTypeStream = 1;

inline constexpr std::uint16_t kVsockOpInvalid = 0;
inline constexpr std::uint16_t kVsockOpRequest = 1;
inline constexpr std::uint16_t kVsockOpResponse = 2;
inline constexpr std::uint16_t kVsockOpRst = 3;
inline constexpr std::uint16_t kVsockOpShutdown = 4;
inline constexpr std::uint16_t kVsockOpRw = 5;
inline constexpr std::uint16_t kVsockOpCreditUpdate = 6;
inline constexpr std::uint16_t kVsockOpCreditRequest = 7;

// §5.10.6.4: bit 0 = the sender will receive no more, bit 1 = it will send no more.
inline constexpr std::uint32_t kVsockShutdownRcv = 1u << 0;
inline constexpr std::uint32_t kVsockShutdownSend = 1u << 1;

inline constexpr std::uint64_t kVsockHostCid = 2;  // §5.10.4: the well-known host CID

// §5.10.6 struct virtio_vsock_hdr: 44 bytes on the wire. The natural layout below has the same
// field offsets (every field is naturally aligned); only its size is padded to 48, so exactly
// kVsockHdrSize bytes are copied in and out.
struct VsockHdr {
    le64 src_cid;
    le64 dst_cid;
    le32 src_port;
    le32 dst_port;
    le32 len;
    le16 type;
    le16 op;
    le32 flags;
    le32 buf_alloc;
    le32 fwd_cnt;
};
inline constexpr std::size_t kVsockHdrSize = 44;
static_assert(offsetof(VsockHdr, src_port) == 16 && offsetof(VsockHdr, len) == 24);
static_assert(offsetof(VsockHdr, type) == 28 && offsetof(VsockHdr, op) == 30);
static_assert(offsetof(VsockHdr, flags) == 32 && offsetof(VsockHdr, buf_alloc) == 36);
static_assert(offsetof(VsockHdr, fwd_cnt) + sizeof(le32) == kVsockHdrSize);

// §5.10.4 struct virtio_vsock_config.
struct VsockConfig {
    le64 guest_cid;
};
static_assert(sizeof(VsockConfig) == 8);

}  // namespace vireo::spec
