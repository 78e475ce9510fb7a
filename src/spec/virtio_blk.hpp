// virtio-blk wire format (virtio 1.2 §5.2): feature bits (§5.2.3), the configuration layout
// (§5.2.4), and requests (§5.2.6): a device-readable header, data, and a device-writable
// status byte.
#pragma once

#include <cstddef>
#include <cstdint>

#include "spec/le.hpp"

namespace vireo::spec {

// §5.2.3 feature bits.
inline constexpr unsigned kBlkFSizeMax = 1;
inline constexpr unsigned kBlkFSegMax = 2;
inline constexpr unsigned kBlkFGeometry = 4;
inline constexpr unsigned kBlkFRo = 5;
inline constexpr unsigned kBlkFBlkSize = 6;
inline constexpr unsigned kBlkFFlush = 9;
inline constexpr unsigned kBlkFTopology = 10;
inline constexpr unsigned kBlkFConfigWce = 11;
inline constexpr unsigned kBlkFMq = 12;
inline constexpr unsigned kBlkFDiscard = 13;
inline constexpr unsigned kBlkFWriteZeroes = 14;
inline constexpr unsigned kBlkFLifetime = 15;
inline constexpr unsigned kBlkFSecureErase = 16;

// §5.2.6 request types.
inline constexpr std::uint32_t kBlkTIn = 0;
inline constexpr std::uint32_t kBlkTOut = 1;
inline constexpr std::uint32_t kBlkTFlush = 4;
inline constexpr std::uint32_t kBlkTGetId = 8;
inline constexpr std::uint32_t kBlkTGetLifetime = 10;
inline constexpr std::uint32_t kBlkTDiscard = 11;
inline constexpr std::uint32_t kBlkTWriteZeroes = 13;
inline constexpr std::uint32_t kBlkTSecureErase = 14;

// §5.2.6 status byte values.
inline constexpr std::uint8_t kBlkSOk = 0;
inline constexpr std::uint8_t kBlkSIoErr = 1;
inline constexpr std::uint8_t kBlkSUnsupp = 2;

inline constexpr std::uint32_t kBlkWriteZeroesFlagUnmap = 1;  // flags.unmap, bit 0

// The protocol's unit is always 512 bytes, whatever blk_size says (§5.2.5).
inline constexpr std::uint32_t kSectorSize = 512;
inline constexpr unsigned kSectorShift = 9;
inline constexpr std::size_t kBlkIdBytes = 20;  // GET_ID: NUL-padded, no terminator at 20

// §5.2.6: type, reserved, sector; then data; then the status byte.
struct BlkReqHeader {
    le32 type;
    le32 reserved;
    le64 sector;
};
static_assert(sizeof(BlkReqHeader) == 16);

// §5.2.6: one DISCARD / WRITE_ZEROES segment.
struct BlkDiscardWriteZeroes {
    le64 sector;
    le32 num_sectors;
    le32 flags;
};
static_assert(sizeof(BlkDiscardWriteZeroes) == 16);

// §5.2.4 struct virtio_blk_config.
struct BlkGeometry {
    le16 cylinders;
    std::uint8_t heads;
    std::uint8_t sectors;
};
struct BlkTopology {
    std::uint8_t physical_block_exp;  // log2(logical blocks per physical block)
    std::uint8_t alignment_offset;    // offset of the first aligned logical block
    le16 min_io_size;                 // in logical blocks
    le32 opt_io_size;                 // in logical blocks
};
struct BlkConfig {
    le64 capacity;  // in 512-byte sectors
    le32 size_max;
    le32 seg_max;
    BlkGeometry geometry;
    le32 blk_size;
    BlkTopology topology;
    std::uint8_t writeback;
    std::uint8_t unused0;
    le16 num_queues;
    le32 max_discard_sectors;
    le32 max_discard_seg;
    le32 discard_sector_alignment;
    le32 max_write_zeroes_sectors;
    le32 max_write_zeroes_seg;
    std::uint8_t write_zeroes_may_unmap;
    std::uint8_t unused1[3];
    le32 max_secure_erase_sectors;
    le32 max_secure_erase_seg;
    le32 secure_erase_sector_alignment;
};
static_assert(sizeof(BlkGeometry) == 4 && sizeof(BlkTopology) == 8);
static_assert(offsetof(BlkConfig, size_max) == 8 && offsetof(BlkConfig, seg_max) == 12);
static_assert(offsetof(BlkConfig, geometry) == 16 && offsetof(BlkConfig, blk_size) == 20);
static_assert(offsetof(BlkConfig, topology) == 24 && offsetof(BlkConfig, writeback) == 32);
static_assert(offsetof(BlkConfig, num_queues) == 34);
static_assert(offsetof(BlkConfig, max_discard_sectors) == 36);
static_assert(offsetof(BlkConfig, max_discard_seg) == 40);
static_assert(offsetof(BlkConfig, discard_sector_alignment) == 44);
static_assert(offsetof(BlkConfig, max_write_zeroes_sectors) == 48);
static_assert(offsetof(BlkConfig, max_write_zeroes_seg) == 52);
static_assert(offsetof(BlkConfig, write_zeroes_may_unmap) == 56);
static_assert(offsetof(BlkConfig, max_secure_erase_sectors) == 60);
static_assert(sizeof(BlkConfig) == 72);

}  // namespace vireo::spec
