// virtio-blk device model (virtio 1.2 §5.2), independent of the transport.
//
// Backed by a raw image file or a block device. Requests are parsed into a validated BlkRequest
// before any I/O (parse_blk_request); the I/O itself goes through an IoEngine (blk_engine.hpp):
// io_uring by default, or synchronous preadv/pwritev.
//
// Requests run as small state machines in BlkQueue (blk.cpp), shared by both engines:
//  - IN/OUT: one preadv/pwritev per ≤ IOV_MAX segments; short transfers resubmit the rest,
//    a transfer of 0 bytes (the image shrank) fails with IOERR. In write-through mode each
//    write is followed by fdatasync before it completes.
//  - FLUSH: fdatasync, ordered after every earlier op of the queue (IOSQE_IO_DRAIN).
//  - DISCARD: fallocate(PUNCH_HOLE|KEEP_SIZE) per range; skipped where unsupported (a hint).
//  - WRITE_ZEROES: PUNCH_HOLE if unmap is allowed, else ZERO_RANGE, else writing zeros; an
//    unsupported mode is remembered per device.
//  - -EAGAIN/-EINTR are retried a bounded number of times; other errors complete with IOERR.
//
// O_DIRECT (BlkOptions::direct): buffers, lengths and offsets must be aligned to the logical
// block size (512 for image files, BLKSSZGET for block devices). Guest buffers that are not are
// copied through a page-aligned bounce buffer of at most 256 KiB per request slot, in pieces.
// Offsets are always whole 512-byte sectors; an image file on a file system that needs 4 KiB
// direct I/O alignment therefore fails sub-4K requests with IOERR — use the page cache there.
#pragma once

#include <sys/uio.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <expected>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "devices/device.hpp"
#include "memory/unique_fd.hpp"
#include "spec/virtio_blk.hpp"
#include "virtq/chain.hpp"

namespace vireo::dev {

// --- limits this device advertises ---------------------------------------------------------
inline constexpr std::uint32_t kBlkSizeMax = 1u << 20;  // bytes per segment (advisory)
// DISCARD / WRITE_ZEROES: up to 2 GiB and 16 ranges per request.
inline constexpr std::uint32_t kBlkMaxDiscardSectors = (1u << 31) >> kSectorShift;
inline constexpr std::uint32_t kBlkMaxDiscardSeg = 16;
inline constexpr std::uint32_t kBlkMaxWriteZeroesSectors = kBlkMaxDiscardSectors;
inline constexpr std::uint32_t kBlkMaxWriteZeroesSeg = kBlkMaxDiscardSeg;

// --- request parsing -----------------------------------------------------------------------

// What the parser needs to know about the device.
struct BlkLimits {
    std::uint64_t capacity_sectors = 0;
    bool read_only = false;
    std::uint32_t max_discard_sectors = kBlkMaxDiscardSectors;
    std::uint32_t max_discard_seg = kBlkMaxDiscardSeg;
    std::uint32_t max_write_zeroes_sectors = kBlkMaxWriteZeroesSectors;
    std::uint32_t max_write_zeroes_seg = kBlkMaxWriteZeroesSeg;
};

enum class BlkOp : std::uint8_t { kRead, kWrite, kFlush, kGetId, kDiscard, kWriteZeroes };

struct BlkRange {
    std::uint64_t sector;
    std::uint32_t num_sectors;
    bool unmap;  // WRITE_ZEROES may deallocate
};

// A validated request: every sector range is inside the capacity, lengths are whole sectors,
// and the data buffers are host iovecs into guest memory (zero copy).
struct BlkRequest {
    BlkOp op = BlkOp::kRead;
    std::uint64_t sector = 0;
    std::uint64_t data_len = 0;  // bytes in `data`
    // kRead / kGetId: the device-writable buffers before the status byte;
    // kWrite: the device-readable buffers after the header. Empty otherwise.
    std::vector<iovec> data;
    std::vector<BlkRange> ranges;  // kDiscard / kWriteZeroes
    std::uint8_t* status = nullptr;
};

// A request that completes without I/O. `status` is null when the chain has no writable byte
// to put a status in: it is then completed with used length 0.
struct BlkReject {
    std::uint8_t* status;
    std::uint8_t code;  // kBlkSIoErr or kBlkSUnsupp
};

// Parses `chain` into `out` (whose vectors keep their capacity across calls). Does not touch the
// image and writes nothing into the chain.
std::expected<void, BlkReject> parse_blk_request(const virtq::DescriptorChain& chain,
                                                 const BlkLimits& limits, BlkRequest& out);

// --- the device ------------------------------------------------------------------------

enum class BlkEngine : std::uint8_t { kUring, kSync };

// "uring" / "sync"; the error names the accepted values.
std::expected<BlkEngine, std::string> parse_blk_engine(std::string_view name);
std::string_view to_string(BlkEngine e);

struct BlkOptions {
    std::string path;  // raw image file or block device
    bool read_only = false;
    std::uint16_t num_queues = 1;
    std::uint16_t queue_size = 256;  // largest queue the driver may configure
    BlkEngine engine = BlkEngine::kUring;
    bool direct = false;  // O_DIRECT: bypass the host page cache
    std::string serial;   // GET_ID string, at most 20 bytes
};

// Per-device counters of exceptional events, updated by every queue (relaxed: statistics).
// Deliberately no per-request counter: a shared atomic written on every request would bounce
// its cache line between the queues' threads.
struct BlkStats {
    std::atomic<std::uint64_t> rejected{0};   // completed with an error status by the parser
    std::atomic<std::uint64_t> no_status{0};  // no writable byte: completed with used len 0
    std::atomic<std::uint64_t> io_errors{0};  // the engine failed: completed with IOERR
    std::atomic<std::uint64_t> bounced{0};    // O_DIRECT requests copied through a bounce buffer
};

class BlkDevice final : public VirtioDevice {
    struct PrivateTag {};

  public:
    // Use open(); public only so open() can use make_unique.
    explicit BlkDevice(PrivateTag) {}

    // Opens the image and derives the geometry. Errors name the path and the problem.
    static std::expected<std::unique_ptr<BlkDevice>, std::string> open(const BlkOptions& options);

    std::uint32_t device_id() const override { return kIdBlock; }
    std::uint64_t device_features() const override;
    std::uint16_t num_queues() const override { return options_.num_queues; }
    std::uint16_t max_queue_size() const override { return options_.queue_size; }
    std::span<const std::uint8_t> config() const override;
    // Only `writeback` is writable, and only once VIRTIO_BLK_F_CONFIG_WCE was negotiated.
    void write_config(std::uint32_t offset, std::span<const std::uint8_t> data) override;
    void set_features(std::uint64_t negotiated) override;
    // nullptr if index >= num_queues().
    std::unique_ptr<QueueHandler> start_queue(std::uint16_t index, QueueHandle q) override;
    void reset() override;

    // fdatasync the image (shutdown). False (and logged) if the kernel reports an error.
    bool flush_all();

    std::uint64_t capacity_sectors() const { return limits_.capacity_sectors; }
    bool read_only() const { return options_.read_only; }
    // True while writes must reach stable storage before they complete (§5.2.6.2 cases 1, 2).
    bool writethrough() const { return writethrough_.load(std::memory_order_relaxed); }
    const BlkStats& stats() const { return stats_; }
    const BlkOptions& options() const { return options_; }

  private:
    friend class BlkQueue;
    void update_cache_mode();

    BlkOptions options_;
    UniqueFd fd_;
    BlkLimits limits_;
    std::uint32_t logical_block_ = kSectorSize;
    std::uint32_t direct_align_ = kSectorSize;  // O_DIRECT buffer, length and offset alignment
    BlkConfig config_{};
    std::uint64_t negotiated_ = 0;
    std::atomic<bool> writethrough_{false};
    // Remembered fallocate support, so an unsupported mode is tried once, not per request.
    std::atomic<bool> punch_hole_ok_{true};
    std::atomic<bool> zero_range_ok_{true};
    BlkStats stats_;
};

}  // namespace vireo::dev
