#include "devices/blk.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>

#include "base/log.hpp"
#include "devices/blk_engine.hpp"
#include "virtq/features.hpp"

namespace vireo::dev {

namespace {

using virtq::bit;

// Transient engine failures (-EAGAIN, -EINTR) retried per op before the request fails.
constexpr unsigned kMaxRetries = 16;
// Largest iovec array one preadv/pwritev/io_uring op takes (UIO_MAXIOV). Longer requests are
// issued in pieces through the short-I/O path.
constexpr std::size_t kMaxIovPerOp = IOV_MAX;
// WRITE_ZEROES fallback when fallocate cannot zero: writes from one shared zero page buffer,
// kZeroIovs iovecs (1 MiB) per op. Aligned for O_DIRECT.
constexpr std::size_t kZeroChunk = 64 * 1024;
constexpr std::size_t kZeroIovs = 16;
alignas(4096) const std::uint8_t kZeros[kZeroChunk] = {};
// Bounce buffers are page aligned, which satisfies any O_DIRECT alignment we accept. A request
// longer than kMaxBounce goes through the buffer in pieces: a guest cannot make us allocate
// more than this per slot, however long its chains.
constexpr std::size_t kBounceAlign = 4096;
constexpr std::size_t kMaxBounce = 256 * 1024;
constexpr std::uint16_t kMaxQueues = 256;

bool in_capacity(std::uint64_t sector, std::uint64_t sectors, std::uint64_t capacity) {
    return sector <= capacity && sectors <= capacity - sector;
}

std::unexpected<BlkReject> reject(std::uint8_t* status, std::uint8_t code) {
    return std::unexpected(BlkReject{status, code});
}

// DISCARD and WRITE_ZEROES carry an array of segments in the readable data (§5.2.6).
std::expected<void, BlkReject> parse_ranges(virtq::ChainReader& r, bool discard,
                                            const BlkLimits& lim, BlkRequest& out) {
    const std::uint32_t max_seg = discard ? lim.max_discard_seg : lim.max_write_zeroes_seg;
    const std::uint32_t max_sectors =
        discard ? lim.max_discard_sectors : lim.max_write_zeroes_sectors;
    const std::size_t len = r.remaining();
    // §5.2.6.1: a non-empty multiple of the segment size, at most max_*_seg segments.
    if (len == 0 || len % sizeof(BlkDiscardWriteZeroes) != 0 ||
        len / sizeof(BlkDiscardWriteZeroes) > max_seg) {
        return reject(out.status, kBlkSIoErr);
    }
    const std::size_t n = len / sizeof(BlkDiscardWriteZeroes);
    for (std::size_t i = 0; i < n; ++i) {
        BlkDiscardWriteZeroes seg{};
        if (!r.read_obj(seg)) {  // cannot fail: n segments fit in remaining()
            return reject(out.status, kBlkSIoErr);
        }
        const std::uint32_t flags = seg.flags.get();
        // §5.2.6.2: UNSUPP for unknown flags, and for unmap on a discard.
        if ((flags & ~kBlkWriteZeroesFlagUnmap) != 0 ||
            (discard && (flags & kBlkWriteZeroesFlagUnmap) != 0)) {
            return reject(out.status, kBlkSUnsupp);
        }
        const std::uint64_t sector = seg.sector.get();
        const std::uint32_t count = seg.num_sectors.get();
        if (count > max_sectors || !in_capacity(sector, count, lim.capacity_sectors)) {
            return reject(out.status, kBlkSIoErr);
        }
        out.ranges.push_back({sector, count, (flags & kBlkWriteZeroesFlagUnmap) != 0});
    }
    return {};
}

bool aligned(std::span<const iovec> iov, std::uint32_t align) {
    return std::ranges::all_of(iov, [&](const iovec& v) {
        return reinterpret_cast<std::uintptr_t>(v.iov_base) % align == 0 && v.iov_len % align == 0;
    });
}

struct FreeDeleter {
    void operator()(std::uint8_t* p) const { std::free(p); }
};
using AlignedBuffer = std::unique_ptr<std::uint8_t[], FreeDeleter>;

}  // namespace

std::expected<void, BlkReject> parse_blk_request(const virtq::DescriptorChain& chain,
                                                 const BlkLimits& lim, BlkRequest& out) {
    out.data.clear();
    out.ranges.clear();
    out.data_len = 0;
    out.sector = 0;
    out.status = nullptr;

    // The status byte is the last device-writable byte (§5.2.6); without one the request cannot
    // even be failed.
    if (chain.writable_bytes() == 0) {
        return reject(nullptr, kBlkSIoErr);
    }
    const std::size_t in_len = chain.writable_bytes() - 1;
    virtq::ChainWriter w(chain.writable());
    w.take_iovecs(in_len, out.data);
    w.take_iovecs(1, out.data);
    out.status = static_cast<std::uint8_t*>(out.data.back().iov_base);
    out.data.pop_back();

    virtq::ChainReader r(chain.readable());
    BlkReqHeader h;
    if (!r.read_obj(h)) {
        return reject(out.status, kBlkSIoErr);
    }
    const std::uint32_t type = h.type.get();
    out.sector = h.sector.get();
    switch (type) {
        case kBlkTIn:
            out.op = BlkOp::kRead;
            out.data_len = in_len;
            break;
        case kBlkTOut:
            out.op = BlkOp::kWrite;
            out.data.clear();
            // §5.2.6.2: a read-only device fails writes without writing anything.
            if (lim.read_only) {
                return reject(out.status, kBlkSIoErr);
            }
            out.data_len = r.remaining();
            r.take_iovecs(out.data_len, out.data);
            break;
        case kBlkTFlush:
            out.op = BlkOp::kFlush;
            out.data.clear();
            return {};
        case kBlkTGetId:
            out.op = BlkOp::kGetId;
            out.data_len = in_len;
            return {};
        case kBlkTDiscard:
        case kBlkTWriteZeroes:
            out.op = type == kBlkTDiscard ? BlkOp::kDiscard : BlkOp::kWriteZeroes;
            out.data.clear();
            if (lim.read_only) {
                return reject(out.status, kBlkSIoErr);
            }
            return parse_ranges(r, type == kBlkTDiscard, lim, out);
        default:
            // Includes GET_LIFETIME and SECURE_ERASE, whose features are not offered.
            out.data.clear();
            return reject(out.status, kBlkSUnsupp);
    }
    // IN / OUT: whole sectors (§5.2.6.1), inside the capacity.
    if (out.data_len % kSectorSize != 0 ||
        !in_capacity(out.sector, out.data_len >> kSectorShift, lim.capacity_sectors)) {
        return reject(out.status, kBlkSIoErr);
    }
    return {};
}

std::expected<BlkEngine, std::string> parse_blk_engine(std::string_view name) {
    if (name == "uring") {
        return BlkEngine::kUring;
    }
    if (name == "sync") {
        return BlkEngine::kSync;
    }
    return std::unexpected(fmt::format("unsupported engine '{}' (expected uring or sync)", name));
}

std::string_view to_string(BlkEngine e) {
    switch (e) {
        case BlkEngine::kUring:
            return "uring";
        case BlkEngine::kSync:
            return "sync";
    }
    return "unknown";
}

// ---------------------------------------------------------------------------------------------
// One request queue: pops chains, runs each request's I/O as a small state machine over the
// queue's engine, completes them. Runs on one transport thread.

class BlkQueue final : public QueueHandler {
  public:
    BlkQueue(BlkDevice& dev, std::uint16_t index, QueueHandle q, std::unique_ptr<IoEngine> engine,
             std::uint16_t depth)
        : dev_(dev), index_(index), q_(q), engine_(std::move(engine)), slots_(depth) {
        free_.reserve(depth);
        for (std::uint16_t i = depth; i > 0; --i) {
            free_.push_back(static_cast<std::uint16_t>(i - 1));
        }
    }
    ~BlkQueue() override {
        // The kernel may still write into guest memory or bounce buffers: wait for it.
        while (in_flight() > 0 && engine_->wait()) {
            completions_.clear();
            engine_->reap(completions_);
            for (const auto& c : completions_) {
                if (c.tag < slots_.size() && slots_[c.tag].busy) {
                    slots_[c.tag].busy = false;
                    free_.push_back(c.tag);
                }
            }
        }
    }

    void on_kick() override { kick(); }

    // One wait point: the engine reads the kick and stop eventfds next to the I/O, so a single
    // io_uring_enter submits the batch and sleeps until a completion or a kick.
    bool run(int kick_fd, int stop_fd) override {
        if (!engine_->read_eventfd(stop_fd, kStopTag, stop_value_)) {
            return false;  // the sync engine: the transport polls
        }
        kick_fd_ = kick_fd;
        running_ = true;
        stopping_ = false;
        engine_->read_eventfd(kick_fd_, kKickTag, kick_value_);
        kick();  // buffers may be available already (or being resubmitted)
        while (!needs_reset_ && !stopping_) {
            // Also submits what kick() and process_completions() queued.
            if (!engine_->wait()) {
                log::error("blk: queue {}: the engine cannot wait", index_);
                needs_reset_ = true;
                break;
            }
            process_completions();
            if (kicked_ || (starved_ && !free_.empty())) {
                kick();  // publishes too
            } else {
                publish();
            }
        }
        running_ = false;
        // No read left behind may take a kick meant for the queue's next handler.
        engine_->cancel_eventfd_reads();
        return true;
    }

    int event_fd() const override { return engine_->event_fd(); }
    void on_event() override {
        engine_->clear_event();
        process_completions();
        if (starved_ && !free_.empty()) {
            kick();  // publishes too
            return;
        }
        publish();
    }
    void drain() override {
        engine_->commit();
        process_completions();
        while (in_flight() > 0) {
            if (!engine_->wait()) {
                log::error("blk: queue {}: engine cannot complete {} requests", index_,
                           in_flight());
                break;
            }
            process_completions();
        }
        publish();
    }
    bool needs_reset() const override { return needs_reset_; }

  private:
    enum class Phase : std::uint8_t {
        kData,       // preadv/pwritev of the request's data
        kSync,       // fdatasync (FLUSH, or after a write-through write)
        kDiscard,    // fallocate PUNCH_HOLE of ranges[range]
        kPunch,      // WRITE_ZEROES with unmap: PUNCH_HOLE
        kZeroRange,  // WRITE_ZEROES: FALLOC_FL_ZERO_RANGE
        kZeroWrite,  // WRITE_ZEROES fallback: write zeros
    };

    struct Slot {
        virtq::UsedToken token;
        BlkRequest req;
        Phase phase = Phase::kData;
        bool busy = false;
        bool bounced = false;
        unsigned retries = 0;
        std::size_t range = 0;
        // The current op's buffers, advanced past what short transfers already moved.
        std::vector<iovec> iov;
        std::size_t iov_first = 0;
        std::uint64_t offset = 0;     // image offset of the next byte
        std::uint64_t remaining = 0;  // bytes left in the current phase
        std::uint64_t done = 0;       // data bytes already transferred (bounce position)
        AlignedBuffer bounce;
        std::size_t bounce_cap = 0;
    };

    std::size_t in_flight() const { return slots_.size() - free_.size(); }

    // The notification pattern of §2.7.10: with notifications off, take everything available;
    // then re-enable and look once more, so a chain added in between is not missed.
    void kick() {
        starved_ = false;
        kicked_ = false;
        while (!needs_reset_) {
            q_.queue().disable_notifications();
            const bool starved = pop_all();
            submit_batch();  // one submission for the whole batch
            process_completions();
            if (needs_reset_) {
                break;
            }
            if (starved) {
                if (free_.empty()) {
                    // Every slot is busy: on_event() resumes popping when one frees up.
                    starved_ = true;
                    break;
                }
                continue;
            }
            if (!q_.queue().enable_notifications()) {
                break;
            }
        }
        publish();
    }

    // Pops chains until the ring is empty (false) or no slot is free (true).
    bool pop_all() {
        while (!free_.empty()) {
            auto r = q_.pop(chain_);
            if (!r) {
                fail_queue(r.error());
                return false;
            }
            if (!*r) {
                return false;
            }
            accept(chain_);
        }
        return true;
    }

    void fail_queue(virtq::QueueError e) {
        if (!needs_reset_) {
            log::guest_warn("blk: queue {}: {}; stopping until reset", index_, virtq::to_string(e));
        }
        needs_reset_ = true;
    }

    void accept(const virtq::DescriptorChain& chain) {
        const std::uint16_t tag = free_.back();
        free_.pop_back();
        Slot& s = slots_[tag];
        s.busy = true;
        s.token = chain.token();
        if (auto ok = parse_blk_request(chain, dev_.limits_, s.req); !ok) {
            if (ok.error().status == nullptr) {
                // Nowhere to report: complete with nothing written (the guest at least gets
                // its descriptors back).
                dev_.stats_.no_status.fetch_add(1, std::memory_order_relaxed);
                release(tag, 0);
                return;
            }
            dev_.stats_.rejected.fetch_add(1, std::memory_order_relaxed);
            finish(tag, ok.error().code);
            return;
        }
        start(tag);
    }

    void start(std::uint16_t tag) {
        Slot& s = slots_[tag];
        BlkRequest& req = s.req;
        s.retries = 0;
        s.bounced = false;
        switch (req.op) {
            case BlkOp::kRead:
            case BlkOp::kWrite:
                if (req.data_len == 0) {
                    finish(tag, kBlkSOk);
                    return;
                }
                if (!setup_data(s)) {
                    finish(tag, kBlkSIoErr);
                    return;
                }
                s.phase = Phase::kData;
                s.offset = req.sector << kSectorShift;
                s.remaining = req.data_len;
                break;
            case BlkOp::kFlush:
                s.phase = Phase::kSync;
                break;
            case BlkOp::kGetId: {
                std::array<std::uint8_t, kBlkIdBytes> id{};
                std::ranges::copy(std::string_view(dev_.options_.serial).substr(0, kBlkIdBytes),
                                  id.begin());
                const std::size_t n = std::min<std::uint64_t>(req.data_len, kBlkIdBytes);
                virtq::ChainWriter w(req.data);
                w.write(std::span(id).first(n));
                finish(tag, kBlkSOk);
                return;
            }
            case BlkOp::kDiscard:
            case BlkOp::kWriteZeroes:
                s.range = 0;
                if (!begin_range(s)) {
                    next_range(tag);
                    return;
                }
                break;
        }
        issue(tag);
    }

    // Points the slot's iovecs at the guest buffers, or prepares a bounce buffer when O_DIRECT
    // cannot use the guest's (misaligned) buffers. False if the bounce buffer cannot be allocated.
    bool setup_data(Slot& s) {
        const BlkRequest& req = s.req;
        s.iov_first = 0;
        s.done = 0;
        if (!dev_.options_.direct || aligned(req.data, dev_.direct_align_)) {
            s.iov.assign(req.data.begin(), req.data.end());
            return true;
        }
        // O_DIRECT needs buffer addresses and lengths aligned to the logical block size. Guest
        // pages usually are; a request that is not is copied through a page-aligned buffer,
        // kMaxBounce bytes per op (issue()).
        const std::size_t want = std::min<std::uint64_t>(req.data_len, kMaxBounce);
        if (s.bounce_cap < want) {
            const std::size_t cap = (want + kBounceAlign - 1) / kBounceAlign * kBounceAlign;
            s.bounce.reset(static_cast<std::uint8_t*>(std::aligned_alloc(kBounceAlign, cap)));
            s.bounce_cap = s.bounce ? cap : 0;
            if (!s.bounce) {
                return false;
            }
        }
        s.bounced = true;
        dev_.stats_.bounced.fetch_add(1, std::memory_order_relaxed);
        return true;
    }

    // Copies n bytes between the bounce buffer and the guest data at s.done.
    static void copy_bounce(Slot& s, std::size_t n, bool to_guest) {
        virtq::SgCursor c(s.req.data);
        c.advance(s.done, [](std::uint8_t*, std::size_t) {});
        std::uint8_t* b = s.bounce.get();
        c.advance(n, [&](std::uint8_t* p, std::size_t len) {
            to_guest ? std::memcpy(p, b, len) : std::memcpy(b, p, len);
            b += len;
        });
    }

    // Chooses how to handle ranges[range]; false if it needs no I/O (a discard the image cannot
    // do: discard is only a hint, §5.2.6.2 "MAY deallocate").
    bool begin_range(Slot& s) {
        const BlkRange& r = s.req.ranges[s.range];
        s.offset = r.sector << kSectorShift;
        s.remaining = std::uint64_t{r.num_sectors} << kSectorShift;
        s.retries = 0;
        if (s.remaining == 0) {
            return false;
        }
        if (s.req.op == BlkOp::kDiscard) {
            s.phase = Phase::kDiscard;
            return dev_.punch_hole_ok_.load(std::memory_order_relaxed);
        }
        if (r.unmap && dev_.punch_hole_ok_.load(std::memory_order_relaxed)) {
            s.phase = Phase::kPunch;
        } else if (dev_.zero_range_ok_.load(std::memory_order_relaxed)) {
            s.phase = Phase::kZeroRange;
        } else {
            s.phase = Phase::kZeroWrite;
        }
        return true;
    }

    void issue(std::uint16_t tag) {
        Slot& s = slots_[tag];
        IoOp op;
        op.tag = tag;
        op.offset = s.offset;
        switch (s.phase) {
            case Phase::kData: {
                op.kind = s.req.op == BlkOp::kRead ? IoKind::kRead : IoKind::kWrite;
                if (s.bounced) {
                    const std::size_t chunk = std::min<std::uint64_t>(s.remaining, s.bounce_cap);
                    if (s.req.op == BlkOp::kWrite) {
                        copy_bounce(s, chunk, false);
                    }
                    s.iov.assign(1, iovec{s.bounce.get(), chunk});
                    s.iov_first = 0;
                }
                const std::size_t n = std::min(s.iov.size() - s.iov_first, kMaxIovPerOp);
                op.iov = std::span(s.iov).subspan(s.iov_first, n);
                break;
            }
            case Phase::kSync:
                op.kind = IoKind::kSync;
                // A FLUSH covers every write completed before it; the barrier additionally orders
                // it after writes of this queue still in flight, so nothing overtakes it.
                op.barrier = s.req.op == BlkOp::kFlush;
                break;
            case Phase::kDiscard:
            case Phase::kPunch:
                op.kind = IoKind::kFallocate;
                op.mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
                op.len = s.remaining;
                break;
            case Phase::kZeroRange:
                op.kind = IoKind::kFallocate;
                op.mode = FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
                op.len = s.remaining;
                break;
            case Phase::kZeroWrite: {
                op.kind = IoKind::kWrite;
                s.iov.clear();
                s.iov_first = 0;
                std::uint64_t left = s.remaining;
                for (std::size_t i = 0; i < kZeroIovs && left > 0; ++i) {
                    const std::size_t piece = std::min<std::uint64_t>(left, kZeroChunk);
                    // The kernel only reads from it.
                    s.iov.push_back({const_cast<std::uint8_t*>(kZeros), piece});
                    left -= piece;
                }
                op.iov = s.iov;
                break;
            }
        }
        engine_->submit(op);
    }

    void process_completions() {
        // Each round may issue follow-up ops (short transfers, syncs, next ranges); every one
        // makes progress or uses up a bounded retry, so this terminates.
        for (;;) {
            completions_.clear();
            engine_->reap(completions_);
            if (completions_.empty()) {
                return;
            }
            for (const auto& c : completions_) {
                if (c.tag == kKickTag || c.tag == kStopTag) {
                    on_eventfd(c);
                } else if (c.tag < slots_.size() && slots_[c.tag].busy) {
                    on_result(c.tag, c.result);
                }
            }
            submit_batch();
        }
    }

    // Starts queued ops now, or — under run() — leaves them for the wait that follows, which
    // submits them in the same system call.
    void submit_batch() {
        if (!running_) {
            engine_->commit();
        }
    }

    // A kick or stop eventfd read completed (run()).
    void on_eventfd(const IoCompletion& c) {
        if (!running_ || stopping_) {
            return;  // draining: the next start looks at the ring anyway
        }
        if (c.tag == kStopTag) {
            stopping_ = true;
            return;
        }
        if (c.result < 0 && c.result != -EAGAIN && c.result != -EINTR) {
            log::error("blk: queue {}: reading the kick eventfd: {}", index_,
                       std::strerror(-c.result));
            needs_reset_ = true;
            return;
        }
        kicked_ = true;
        engine_->read_eventfd(kick_fd_, kKickTag, kick_value_);  // re-arm
    }

    void on_result(std::uint16_t tag, std::int32_t res) {
        Slot& s = slots_[tag];
        if ((res == -EAGAIN || res == -EINTR) && ++s.retries <= kMaxRetries) {
            issue(tag);
            return;
        }
        const bool unsupported = res == -EOPNOTSUPP || res == -EINVAL;
        switch (s.phase) {
            case Phase::kData:
            case Phase::kZeroWrite:
                // 0 bytes for a non-empty transfer means the image shrank under us: an error,
                // and never a loop.
                if (res <= 0) {
                    io_error(tag, res);
                    return;
                }
                if (s.bounced && s.req.op == BlkOp::kRead && s.phase == Phase::kData) {
                    copy_bounce(s, std::min<std::uint64_t>(res, s.remaining), true);
                }
                advance(s, static_cast<std::uint64_t>(res));
                if (s.remaining > 0) {
                    issue(tag);
                    return;
                }
                if (s.phase == Phase::kZeroWrite) {
                    next_range(tag);
                    return;
                }
                if (s.req.op == BlkOp::kWrite && dev_.writethrough()) {
                    s.phase = Phase::kSync;
                    s.retries = 0;
                    issue(tag);
                    return;
                }
                finish(tag, kBlkSOk);
                return;
            case Phase::kSync:
                res < 0 ? io_error(tag, res) : finish(tag, kBlkSOk);
                return;
            case Phase::kDiscard:
                if (res < 0 && unsupported) {
                    dev_.punch_hole_ok_.store(false, std::memory_order_relaxed);
                } else if (res < 0) {
                    io_error(tag, res);
                    return;
                }
                next_range(tag);
                return;
            case Phase::kPunch:
            case Phase::kZeroRange:
                if (res < 0 && unsupported) {
                    // Fall back: punch → zero range → writing zeros (reads must return zeros
                    // whichever way, §5.2.6.2).
                    if (s.phase == Phase::kPunch) {
                        dev_.punch_hole_ok_.store(false, std::memory_order_relaxed);
                    } else {
                        dev_.zero_range_ok_.store(false, std::memory_order_relaxed);
                    }
                    s.phase = s.phase == Phase::kPunch && dev_.zero_range_ok_.load()
                                  ? Phase::kZeroRange
                                  : Phase::kZeroWrite;
                    s.retries = 0;
                    issue(tag);
                    return;
                }
                if (res < 0) {
                    io_error(tag, res);
                    return;
                }
                next_range(tag);
                return;
        }
    }

    void next_range(std::uint16_t tag) {
        Slot& s = slots_[tag];
        while (++s.range < s.req.ranges.size()) {
            if (begin_range(s)) {
                issue(tag);
                return;
            }
        }
        if (s.req.op == BlkOp::kWriteZeroes && dev_.writethrough()) {
            s.phase = Phase::kSync;
            s.retries = 0;
            issue(tag);
            return;
        }
        finish(tag, kBlkSOk);
    }

    // Moves the current transfer n bytes forward (n <= remaining).
    static void advance(Slot& s, std::uint64_t n) {
        n = std::min(n, s.remaining);
        s.remaining -= n;
        s.offset += n;
        s.done += n;
        s.retries = 0;
        while (n > 0 && s.iov_first < s.iov.size()) {
            iovec& v = s.iov[s.iov_first];
            const std::size_t piece = std::min<std::uint64_t>(n, v.iov_len);
            v.iov_base = static_cast<std::uint8_t*>(v.iov_base) + piece;
            v.iov_len -= piece;
            n -= piece;
            if (v.iov_len == 0) {
                ++s.iov_first;
            }
        }
    }

    void io_error(std::uint16_t tag, std::int32_t res) {
        dev_.stats_.io_errors.fetch_add(1, std::memory_order_relaxed);
        if (!io_error_logged_) {
            io_error_logged_ = true;
            log::error("blk: queue {}: I/O error on {}: {}", index_, dev_.options_.path,
                       res < 0 ? std::strerror(-res) : "short transfer");
        }
        finish(tag, kBlkSIoErr);
    }

    // Writes the status and completes the chain. Used length (§2.7.8.2): the bytes written
    // into the writable part — the data for IN and GET_ID when they succeed, plus the status.
    void finish(std::uint16_t tag, std::uint8_t status) {
        Slot& s = slots_[tag];
        *s.req.status = status;
        std::uint64_t used = 1;
        if (status == kBlkSOk && s.req.op == BlkOp::kRead) {
            used += s.req.data_len;
        } else if (status == kBlkSOk && s.req.op == BlkOp::kGetId) {
            used += std::min<std::uint64_t>(s.req.data_len, kBlkIdBytes);
        }
        // A chain is at most 2^32 - 1 bytes long (the queue checks), so this fits.
        release(tag, static_cast<std::uint32_t>(used));
    }

    void release(std::uint16_t tag, std::uint32_t used) {
        Slot& s = slots_[tag];
        q_.push(s.token, used);
        pushed_ = true;
        s.busy = false;
        free_.push_back(tag);
    }

    void publish() {
        if (pushed_) {
            pushed_ = false;
            q_.publish_and_notify();
        }
    }

    BlkDevice& dev_;
    std::uint16_t index_;
    QueueHandle q_;
    std::unique_ptr<IoEngine> engine_;
    std::vector<Slot> slots_;
    std::vector<std::uint16_t> free_;  // stack of idle slot indices
    std::vector<IoCompletion> completions_;
    virtq::DescriptorChain chain_;
    bool pushed_ = false;
    bool starved_ = false;
    // run(): eventfd reads share the engine with the request slots under tags no slot has
    // (a queue has at most 32768 entries).
    static constexpr std::uint16_t kKickTag = 0xffff;
    static constexpr std::uint16_t kStopTag = 0xfffe;
    static_assert(virtq::kMaxQueueSize <= kStopTag);
    bool running_ = false;   // inside run()
    bool stopping_ = false;  // run() saw the stop eventfd
    bool kicked_ = false;    // run() saw a kick not yet served
    int kick_fd_ = -1;
    std::uint64_t kick_value_ = 0;
    std::uint64_t stop_value_ = 0;
    bool needs_reset_ = false;
    bool io_error_logged_ = false;
};

// ---------------------------------------------------------------------------------------------

std::expected<std::unique_ptr<BlkDevice>, std::string> BlkDevice::open(const BlkOptions& o) {
    auto fail = [&](std::string_view what) {
        return std::unexpected(fmt::format("{}: {}", o.path, what));
    };
    if (o.engine != BlkEngine::kUring && o.engine != BlkEngine::kSync) {
        return std::unexpected(fmt::format("unsupported engine {}", static_cast<int>(o.engine)));
    }
    if (o.num_queues == 0 || o.num_queues > kMaxQueues) {
        return std::unexpected(
            fmt::format("num_queues {} out of range (1..{})", o.num_queues, kMaxQueues));
    }
    // Split rings need a power of two (§2.7); the transport may configure any smaller size.
    if (o.queue_size == 0 || o.queue_size > virtq::kMaxQueueSize ||
        !std::has_single_bit(o.queue_size)) {
        return std::unexpected(fmt::format("queue_size {} must be a power of two in 1..{}",
                                           o.queue_size, virtq::kMaxQueueSize));
    }
    if (o.serial.size() > kBlkIdBytes) {
        return std::unexpected(
            fmt::format("serial '{}' is longer than {} bytes", o.serial, kBlkIdBytes));
    }
    if (o.path.empty()) {
        return std::unexpected(std::string("no image path given"));
    }

    int flags = (o.read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;
    if (o.direct) {
        flags |= O_DIRECT;
    }
    UniqueFd fd(::open(o.path.c_str(), flags));
    if (!fd) {
        const int err = errno;
        if (o.direct && err == EINVAL) {
            return fail("O_DIRECT is not supported by this file system");
        }
        return fail(fmt::format("cannot open{}: {}", o.read_only ? " read-only" : " read-write",
                                std::strerror(err)));
    }
    // Two writers on one image corrupt it; refuse like QEMU does (shared lock for readers).
    if (::flock(fd.get(), (o.read_only ? LOCK_SH : LOCK_EX) | LOCK_NB) != 0) {
        return fail(errno == EWOULDBLOCK ? "image is locked by another process"
                                         : fmt::format("flock: {}", std::strerror(errno)));
    }

    auto dev = std::make_unique<BlkDevice>(PrivateTag{});
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) {
        return fail(fmt::format("fstat: {}", std::strerror(errno)));
    }
    std::uint64_t size = 0;
    std::uint32_t physical = kSectorSize;
    std::uint32_t min_io = 0;
    std::uint32_t opt_io = 0;
    if (S_ISREG(st.st_mode)) {
        size = static_cast<std::uint64_t>(st.st_size);
    } else if (S_ISBLK(st.st_mode)) {
        int lbs = 0;
        unsigned int pbs = 0;
        unsigned int iomin = 0;
        unsigned int ioopt = 0;
        if (::ioctl(fd.get(), BLKGETSIZE64, &size) != 0 ||
            ::ioctl(fd.get(), BLKSSZGET, &lbs) != 0) {
            return fail(fmt::format("block device size ioctl: {}", std::strerror(errno)));
        }
        if (lbs < static_cast<int>(kSectorSize) ||
            !std::has_single_bit(static_cast<unsigned>(lbs))) {
            return fail(fmt::format("unsupported logical block size {}", lbs));
        }
        dev->logical_block_ = static_cast<std::uint32_t>(lbs);
        // Optional hints: keep defaults when the kernel does not report them.
        physical = ::ioctl(fd.get(), BLKPBSZGET, &pbs) == 0 && pbs >= dev->logical_block_
                       ? pbs
                       : dev->logical_block_;
        min_io = ::ioctl(fd.get(), BLKIOMIN, &iomin) == 0 ? iomin : 0;
        opt_io = ::ioctl(fd.get(), BLKIOOPT, &ioopt) == 0 ? ioopt : 0;
    } else {
        return fail("not a regular file or block device");
    }
    if (size % kSectorSize != 0) {
        return fail(fmt::format("size {} is not a multiple of {} bytes", size, kSectorSize));
    }
    dev->direct_align_ = dev->logical_block_;

    if (o.engine == BlkEngine::kUring) {
        // Probe now so a kernel without io_uring is a clear startup error, not a queue failure.
        if (auto probe = make_uring_engine(fd.get(), 1); !probe) {
            return std::unexpected(fmt::format("engine uring unavailable: {}", probe.error()));
        }
    }

    dev->options_ = o;
    dev->fd_ = std::move(fd);
    dev->limits_.capacity_sectors = size >> kSectorShift;
    dev->limits_.read_only = o.read_only;

    BlkConfig& c = dev->config_;
    const std::uint32_t lb = dev->logical_block_;
    c.capacity.set(dev->limits_.capacity_sectors);
    c.size_max.set(kBlkSizeMax);
    // Header and status take two descriptors of a chain that fits the ring (as QEMU reports).
    c.seg_max.set(o.queue_size > 2 ? o.queue_size - 2u : 1u);
    c.blk_size.set(lb);
    c.topology.physical_block_exp =
        static_cast<std::uint8_t>(std::countr_zero(physical) - std::countr_zero(lb));
    c.topology.alignment_offset = 0;
    c.topology.min_io_size.set(static_cast<std::uint16_t>(
        std::min<std::uint32_t>(std::max<std::uint32_t>(min_io / lb, 1), UINT16_MAX)));
    c.topology.opt_io_size.set(opt_io / lb);
    c.num_queues.set(o.num_queues);
    c.max_discard_sectors.set(dev->limits_.max_discard_sectors);
    c.max_discard_seg.set(dev->limits_.max_discard_seg);
    c.discard_sector_alignment.set(lb >> kSectorShift);
    c.max_write_zeroes_sectors.set(dev->limits_.max_write_zeroes_sectors);
    c.max_write_zeroes_seg.set(dev->limits_.max_write_zeroes_seg);
    c.write_zeroes_may_unmap = 1;
    dev->reset();
    return dev;
}

std::uint64_t BlkDevice::device_features() const {
    std::uint64_t f = bit(kBlkFSizeMax) | bit(kBlkFSegMax) | bit(kBlkFBlkSize) |
                      bit(kBlkFTopology) | bit(kBlkFFlush) | bit(kBlkFConfigWce) | bit(kBlkFMq) |
                      bit(virtq::kFVersion1) | bit(virtq::kFRingPacked) | bit(virtq::kFEventIdx) |
                      bit(virtq::kFIndirectDesc) | bit(virtq::kFRingReset);
    if (options_.read_only) {
        f |= bit(kBlkFRo);
    } else {
        f |= bit(kBlkFDiscard) | bit(kBlkFWriteZeroes);
    }
    return f;
}

std::span<const std::uint8_t> BlkDevice::config() const {
    return {reinterpret_cast<const std::uint8_t*>(&config_), sizeof config_};
}

void BlkDevice::write_config(std::uint32_t offset, std::span<const std::uint8_t> data) {
    // §5.2.5: the driver switches writeback (1) / writethrough (0) through `writeback`.
    if ((negotiated_ & bit(kBlkFConfigWce)) == 0 || offset != offsetof(BlkConfig, writeback) ||
        data.size() != 1 || data[0] > 1) {
        return;
    }
    config_.writeback = data[0];
    update_cache_mode();
}

void BlkDevice::set_features(std::uint64_t negotiated) {
    negotiated_ = negotiated & device_features();
    // §5.2.5.2: CONFIG_WCE without FLUSH starts in writethrough.
    if ((negotiated_ & bit(kBlkFConfigWce)) != 0 && (negotiated_ & bit(kBlkFFlush)) == 0) {
        config_.writeback = 0;
    }
    update_cache_mode();
}

void BlkDevice::update_cache_mode() {
    // §5.2.6.2: writes must be stable when they complete if FLUSH was offered but neither FLUSH
    // nor CONFIG_WCE negotiated (case 1), or CONFIG_WCE is negotiated and writeback is 0
    // (case 2). Otherwise the guest flushes when it needs durability.
    const bool flush = (negotiated_ & bit(kBlkFFlush)) != 0;
    const bool wce = (negotiated_ & bit(kBlkFConfigWce)) != 0;
    const bool wt = (!flush && !wce) || (wce && config_.writeback == 0);
    writethrough_.store(wt, std::memory_order_relaxed);
}

void BlkDevice::reset() {
    negotiated_ = 0;
    config_.writeback = 1;  // writeback until the driver says otherwise
    update_cache_mode();
}

std::unique_ptr<QueueHandler> BlkDevice::start_queue(std::uint16_t index, QueueHandle q) {
    if (index >= options_.num_queues) {
        return nullptr;
    }
    // One slot per ring entry: the driver cannot have more chains outstanding than that.
    const std::uint16_t depth = std::max<std::uint16_t>(q.queue().size(), 1);
    std::unique_ptr<IoEngine> engine;
    if (options_.engine == BlkEngine::kUring) {
        auto e = make_uring_engine(fd_.get(), depth);
        if (e) {
            engine = std::move(*e);
        } else {
            // Keep the queue working rather than leave the guest without a disk.
            log::warn("blk: queue {}: {}; using the sync engine", index, e.error());
        }
    }
    if (!engine) {
        engine = make_sync_engine(fd_.get());
    }
    return std::make_unique<BlkQueue>(*this, index, q, std::move(engine), depth);
}

bool BlkDevice::flush_all() {
    if (::fdatasync(fd_.get()) != 0) {
        log::error("blk: fdatasync {}: {}", options_.path, std::strerror(errno));
        return false;
    }
    return true;
}

}  // namespace vireo::dev
