// vhost-user wire format (docs: /work/shared/spec/vhost-user.rst, "Message Specification").
//
// Every number on the wire is in the machine's native byte order (the front end is a process on
// the same host), so these structs use plain integers rather than le* wrappers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace vireo::vhost_user {

// Front-end message types ("Front-end message types"). Only the ones this back end knows by
// name; any other value is an unknown request and is rejected by the validator.
enum class Request : std::uint32_t {
    kGetFeatures = 1,
    kSetFeatures = 2,
    kSetOwner = 3,
    kResetOwner = 4,
    kSetMemTable = 5,
    kSetLogBase = 6,
    kSetLogFd = 7,
    kSetVringNum = 8,
    kSetVringAddr = 9,
    kSetVringBase = 10,
    kGetVringBase = 11,
    kSetVringKick = 12,
    kSetVringCall = 13,
    kSetVringErr = 14,
    kGetProtocolFeatures = 15,
    kSetProtocolFeatures = 16,
    kGetQueueNum = 17,
    kSetVringEnable = 18,
    kSendRarp = 19,
    kNetSetMtu = 20,
    kSetSlaveReqFd = 21,
    kIotlbMsg = 22,
    kSetVringEndian = 23,
    kGetConfig = 24,
    kSetConfig = 25,
    kCreateCryptoSession = 26,
    kCloseCryptoSession = 27,
    kPostcopyAdvise = 28,
    kPostcopyListen = 29,
    kPostcopyEnd = 30,
    kGetInflightFd = 31,
    kSetInflightFd = 32,
    kGpuSetSocket = 33,
    kResetDevice = 34,
    kVringKick = 35,
    kGetMaxMemSlots = 36,
    kAddMemReg = 37,
    kRemMemReg = 38,
    kSetStatus = 39,
    kGetStatus = 40,
};

std::string_view to_string(Request r);

// Header flags ("Header").
inline constexpr std::uint32_t kVersionMask = 0x3;
inline constexpr std::uint32_t kVersion = 0x1;
inline constexpr std::uint32_t kFlagReply = 1u << 2;
inline constexpr std::uint32_t kFlagNeedReply = 1u << 3;
inline constexpr std::uint32_t kKnownFlags = kVersionMask | kFlagReply | kFlagNeedReply;

// The virtio feature bit that announces protocol-feature negotiation ("Communication").
inline constexpr unsigned kFProtocolFeatures = 30;

// Protocol feature bits ("Protocol features").
inline constexpr unsigned kPfMq = 0;
inline constexpr unsigned kPfLogShmfd = 1;
inline constexpr unsigned kPfReplyAck = 3;
inline constexpr unsigned kPfSlaveReq = 5;
inline constexpr unsigned kPfConfig = 9;
inline constexpr unsigned kPfInflightShmfd = 12;
inline constexpr unsigned kPfResetDevice = 13;
inline constexpr unsigned kPfInbandNotifications = 14;
inline constexpr unsigned kPfConfigureMemSlots = 15;
inline constexpr unsigned kPfStatus = 16;

// Back-end message types ("Back-end message types"), sent on the SET_SLAVE_REQ_FD channel.
enum class BackendRequest : std::uint32_t {
    kConfigChangeMsg = 2,
};

// SET_VRING_KICK/CALL/ERR u64 payload: bits 0-7 are the ring index, bit 8 says "no fd".
inline constexpr std::uint64_t kVringIndexMask = 0xff;
inline constexpr std::uint64_t kVringNoFdMask = 1u << 8;

// SET_CONFIG flags ("Virtio device config space").
inline constexpr std::uint32_t kConfigFlagWritable = 0;
inline constexpr std::uint32_t kConfigFlagMigration = 1;
// QEMU's VHOST_USER_MAX_CONFIG_SIZE: the largest config access a front end sends.
inline constexpr std::uint32_t kMaxConfigSize = 256;

// SET_MEM_TABLE carries at most this many regions (and fds): QEMU's
// VHOST_MEMORY_BASELINE_NREGIONS, the size of the fixed array in VhostUserMemory.
inline constexpr std::uint32_t kMemTableMaxRegions = 8;
// The most fds any message carries (SET_MEM_TABLE's one per region).
inline constexpr std::size_t kMaxFds = kMemTableMaxRegions;

struct Header {
    std::uint32_t request;
    std::uint32_t flags;
    std::uint32_t size;
};
static_assert(sizeof(Header) == 12);

// "A vring state description".
struct VringState {
    std::uint32_t index;
    std::uint32_t num;
};
static_assert(sizeof(VringState) == 8);

// "A vring address description": ring addresses are front-end virtual addresses (no IOMMU).
struct VringAddr {
    std::uint32_t index;
    std::uint32_t flags;
    std::uint64_t desc_user_addr;
    std::uint64_t used_user_addr;
    std::uint64_t avail_user_addr;
    std::uint64_t log_guest_addr;
};
static_assert(sizeof(VringAddr) == 40);
static_assert(offsetof(VringAddr, desc_user_addr) == 8);

// "Memory regions description": a region of the table.
struct MemRegion {
    std::uint64_t guest_phys_addr;
    std::uint64_t memory_size;
    std::uint64_t userspace_addr;
    std::uint64_t mmap_offset;
};
static_assert(sizeof(MemRegion) == 32);

struct MemTableHeader {
    std::uint32_t num_regions;
    std::uint32_t padding;
};
static_assert(sizeof(MemTableHeader) == 8);

// "Single memory region description" (ADD_MEM_REG / REM_MEM_REG).
struct SingleMemRegion {
    std::uint64_t padding;
    MemRegion region;
};
static_assert(sizeof(SingleMemRegion) == 40);

// "Virtio device config space": followed by `size` bytes of config data.
struct ConfigHeader {
    std::uint32_t offset;
    std::uint32_t size;
    std::uint32_t flags;
};
static_assert(sizeof(ConfigHeader) == 12);

// "Inflight description". QEMU sends sizeof(VhostUserInflight) = 24 (tail padding included);
// the fields proper end at byte 20.
struct InflightDesc {
    std::uint64_t mmap_size;
    std::uint64_t mmap_offset;
    std::uint16_t num_queues;
    std::uint16_t queue_size;
    std::uint32_t padding;
};
static_assert(sizeof(InflightDesc) == 24);
inline constexpr std::size_t kInflightDescMinSize = offsetof(InflightDesc, padding);

// Largest payload we accept. The biggest legitimate one is GET/SET_CONFIG (12 + 256 bytes);
// anything larger is refused before it is read into memory.
inline constexpr std::uint32_t kMaxPayload = 4096;

}  // namespace vireo::vhost_user
