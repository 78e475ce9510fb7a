// The I/O engines behind virtio-blk: one small interface, one file per implementation.
//
// An engine executes single file operations on the image and reports each one's result; it knows
// nothing about virtio. The request state machine (short I/O, write-through syncs, fallbacks
// for write-zeroes) lives once in blk.cpp and drives either engine the same way.
//
// Each queue handler owns its own engine and calls it from its own thread only.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <expected>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace vireo::dev {

enum class IoKind : std::uint8_t {
    kRead,       // preadv(iov) at offset
    kWrite,      // pwritev(iov) at offset
    kSync,       // fdatasync
    kFallocate,  // fallocate(mode, offset, len)
};

struct IoOp {
    IoKind kind = IoKind::kRead;
    std::uint16_t tag = 0;  // returned with the result; the caller's request slot
    // Start only after every op submitted earlier on this engine has completed (a FLUSH must
    // not overtake writes still in flight: the io_uring engine holds it (and every later op)
    // back until then; the sync engine is ordered).
    bool barrier = false;
    int mode = 0;  // fallocate mode
    std::uint64_t offset = 0;
    std::uint64_t len = 0;  // fallocate length
    // Read/write buffers; must stay valid until the op's completion is reaped.
    std::span<const iovec> iov;
};

struct IoCompletion {
    std::uint16_t tag;
    std::int32_t result;  // bytes transferred (read/write), 0 (sync/fallocate), or -errno
};

class IoEngine {
  public:
    virtual ~IoEngine() = default;

    // Queues an op. The caller keeps at most the engine's capacity in flight.
    virtual void submit(const IoOp& op) = 0;
    // Starts everything queued since the last commit (io_uring: one io_uring_submit per batch).
    virtual void commit() = 0;
    // Appends the ops that have finished to `out` without blocking.
    virtual void reap(std::vector<IoCompletion>& out) = 0;
    // Blocks until at least one submitted op has finished. False if nothing can finish (no op in
    // flight, or the engine failed), so callers never wait forever.
    virtual bool wait() = 0;
    // Readable when completions are ready (-1: completions are ready right after commit()).
    virtual int event_fd() const { return -1; }
    // Consumes the event_fd() readiness before reaping.
    virtual void clear_event() {}
    // Queues a read of an eventfd's 8-byte counter into `value` (kept valid until it completes),
    // reported by reap() like an op with `tag` (result 8, or -errno). It lets the caller sleep
    // in wait() for I/O and for eventfds (queue kicks) at once, with no separate poller. Once
    // used, event_fd() is no longer signalled. False if the engine cannot (nothing was queued).
    virtual bool read_eventfd(int /*fd*/, std::uint16_t /*tag*/, std::uint64_t& /*value*/) {
        return false;
    }
    // Cancels the pending eventfd reads and returns once none is left, so none consumes a
    // signal after the caller stopped (a kick meant for the queue's next handler).
    virtual void cancel_eventfd_reads() {}
};

// Executes each op inline in submit() with preadv/pwritev/fdatasync/fallocate.
std::unique_ptr<IoEngine> make_sync_engine(int fd);

// One io_uring with `depth` entries whose completions signal an eventfd
// (io_uring_register_eventfd). The error names what failed (io_uring may be disabled by the
// kernel or a seccomp policy).
std::expected<std::unique_ptr<IoEngine>, std::string> make_uring_engine(int fd,
                                                                        std::uint32_t depth);

}  // namespace vireo::dev
