// virtio-blk device model driven through a real split virtqueue in guest memory, for both I/O
// engines and with and without O_DIRECT. The driver side is written by hand here: descriptors
// and the avail ring go into guest memory, results are read back from the used ring.
#include "devices/blk.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <numeric>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "memory/unique_fd.hpp"
#include "virtq/features.hpp"
#include "virtq/ring_layout.hpp"

namespace vireo::dev {
namespace {

using virtq::bit;

constexpr std::uint16_t kQueueSize = 64;
constexpr std::uint64_t kDescGpa = 0x0;
constexpr std::uint64_t kAvailGpa = 0x1000;
constexpr std::uint64_t kUsedGpa = 0x2000;
constexpr std::uint64_t kHeapGpa = 0x10000;
constexpr std::uint64_t kMemSize = 16ull << 20;
constexpr std::uint64_t kImageSectors = 8192;  // 4 MiB
constexpr std::uint64_t kImageBytes = kImageSectors * kSectorSize;

class CountingIrq : public Interrupt {
  public:
    void signal() override { ++count; }
    int count = 0;
};

struct Seg {
    std::uint64_t gpa;
    std::uint32_t len;
    bool writable;
};

struct Used {
    std::uint32_t id;
    std::uint32_t len;
};

// The driver side of a split ring (§2.7), enough to post chains and collect used elements.
class SplitDriver {
  public:
    // The ring areas sit at base + kDescGpa / kAvailGpa / kUsedGpa; buffers come from
    // [heap, heap_end).
    explicit SplitDriver(const GuestMemory& mem, std::uint64_t base = 0,
                         std::uint64_t heap = kHeapGpa, std::uint64_t heap_end = kMemSize)
        : mem_(mem), base_(base), heap_start_(heap), heap_end_(heap_end), heap_(heap) {}

    // Writes a chain into the descriptor table (round robin: tests keep fewer than kQueueSize
    // descriptors outstanding) and makes it available. Returns the head.
    std::uint16_t post(const std::vector<Seg>& segs) {
        const std::uint16_t head = next_desc_ % kQueueSize;
        for (std::size_t i = 0; i < segs.size(); ++i) {
            const std::uint16_t idx = (next_desc_ + i) % kQueueSize;
            const std::uint16_t next = (next_desc_ + i + 1) % kQueueSize;
            const bool last = i + 1 == segs.size();
            std::uint16_t flags = last ? 0 : virtq::kDescFNext;
            flags |= segs[i].writable ? virtq::kDescFWrite : 0;
            virtq::SplitDesc d{le64::of(segs[i].gpa), le32::of(segs[i].len), le16::of(flags),
                               le16::of(last ? 0 : next)};
            mem_.write_obj(base_ + kDescGpa + 16ull * idx, d);
        }
        next_desc_ = static_cast<std::uint16_t>(next_desc_ + segs.size());
        mem_.write_obj(base_ + kAvailGpa + 4 + 2ull * (avail_idx_ % kQueueSize), le16::of(head));
        ++avail_idx_;
        set_avail_idx(avail_idx_);
        return head;
    }
    // A single descriptor pointing at an indirect table (§2.7.5.3).
    std::uint16_t post_indirect(std::uint64_t table, std::uint32_t len) {
        const std::uint16_t head = next_desc_ % kQueueSize;
        virtq::SplitDesc d{le64::of(table), le32::of(len), le16::of(virtq::kDescFIndirect),
                           le16::of(0)};
        mem_.write_obj(base_ + kDescGpa + 16ull * head, d);
        ++next_desc_;
        mem_.write_obj(base_ + kAvailGpa + 4 + 2ull * (avail_idx_ % kQueueSize), le16::of(head));
        ++avail_idx_;
        set_avail_idx(avail_idx_);
        return head;
    }
    void set_avail_idx(std::uint16_t idx) {
        std::atomic_thread_fence(std::memory_order_release);
        mem_.write_obj(base_ + kAvailGpa + 2, le16::of(idx));
    }
    std::uint16_t used_idx() const {
        le16 v{};
        mem_.read_obj(base_ + kUsedGpa + 2, v);
        std::atomic_thread_fence(std::memory_order_acquire);
        return v.get();
    }
    Used used(std::uint16_t i) const {
        virtq::SplitUsedElem e{};
        mem_.read_obj(base_ + kUsedGpa + 4 + 8ull * (i % kQueueSize), e);
        return {e.id.get(), e.len.get()};
    }

    // A bump allocator for request buffers.
    std::uint64_t alloc(std::uint64_t len, std::uint64_t align = 4096) {
        heap_ = (heap_ + align - 1) / align * align;
        const std::uint64_t gpa = heap_;
        heap_ += len;
        if (heap_ > heap_end_) {
            heap_ = heap_start_;
            return alloc(len, align);
        }
        return gpa;
    }

  private:
    const GuestMemory& mem_;
    std::uint64_t base_;
    std::uint64_t heap_start_;
    std::uint64_t heap_end_;
    std::uint64_t heap_;
    std::uint16_t next_desc_ = 0;
    std::uint16_t avail_idx_ = 0;
};

std::vector<std::uint8_t> random_bytes(std::size_t n, unsigned seed) {
    std::vector<std::uint8_t> v(n);
    std::uint32_t x = seed * 2654435761u + 1;
    for (auto& b : v) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        b = static_cast<std::uint8_t>(x);
    }
    return v;
}

std::uint64_t checksum(std::span<const std::uint8_t> d) {
    std::uint64_t h = 1469598103934665603ull;  // FNV-1a
    for (auto b : d) {
        h = (h ^ b) * 1099511628211ull;
    }
    return h;
}

struct Result {
    std::uint8_t status;
    std::uint32_t used_len;
};

// A temp image file, removed at the end.
class TempImage {
  public:
    explicit TempImage(std::uint64_t size, std::string dir = "/tmp") {
        std::string name = dir + "/vireo-blk-test-XXXXXX";
        const int fd = ::mkstemp(name.data());
        EXPECT_GE(fd, 0);
        path_ = name;
        fd_ = UniqueFd(fd);
        EXPECT_EQ(::ftruncate(fd, static_cast<off_t>(size)), 0);
    }
    ~TempImage() { ::unlink(path_.c_str()); }
    const std::string& path() const { return path_; }
    std::vector<std::uint8_t> read(std::uint64_t off, std::size_t n) const {
        std::vector<std::uint8_t> v(n);
        EXPECT_EQ(::pread(fd_.get(), v.data(), n, static_cast<off_t>(off)),
                  static_cast<ssize_t>(n));
        return v;
    }
    void write(std::uint64_t off, std::span<const std::uint8_t> d) const {
        EXPECT_EQ(::pwrite(fd_.get(), d.data(), d.size(), static_cast<off_t>(off)),
                  static_cast<ssize_t>(d.size()));
    }

  private:
    std::string path_;
    UniqueFd fd_;
};

using Param = std::tuple<BlkEngine, bool /*direct*/>;

class BlkTest : public ::testing::TestWithParam<Param> {
  protected:
    void SetUp() override {
        ASSERT_TRUE(mem_.add_anonymous(0, kMemSize));
        open_device(false);
    }

    BlkOptions options(bool read_only) const {
        return BlkOptions{
            image_.path(),           read_only,          2, kQueueSize, std::get<0>(GetParam()),
            std::get<1>(GetParam()), "vireo-serial-0001"};
    }

    void open_device(bool read_only, std::uint64_t negotiated = kDefaultFeatures) {
        handler_.reset();
        dev_.reset();
        auto d = BlkDevice::open(options(read_only));
        ASSERT_TRUE(d) << d.error();
        dev_ = std::move(*d);
        dev_->set_features(negotiated & dev_->device_features());
        vq_ = std::make_unique<virtq::Virtqueue>();
        ASSERT_TRUE(vq_->activate(mem_,
                                  virtq::QueueConfig{kQueueSize, kDescGpa, kAvailGpa, kUsedGpa},
                                  virtq::QueueFeatures{false, false, true}));
        // A fresh ring: clear the avail and used areas.
        std::vector<std::uint8_t> zeros(0x2000, 0);
        mem_.write(kAvailGpa, zeros.data(), zeros.size());
        driver_ = std::make_unique<SplitDriver>(mem_);
        used_seen_ = 0;
        handler_ = dev_->start_queue(0, QueueHandle(mem_, *vq_, irq_));
        ASSERT_NE(handler_, nullptr);
        // The io_uring engine really is in use (no silent fallback to the sync engine).
        EXPECT_EQ(handler_->event_fd() >= 0, std::get<0>(GetParam()) == BlkEngine::kUring);
    }

    bool direct() const { return std::get<1>(GetParam()); }
    // Page-multiple segments are page aligned (as guest pages are); others are deliberately not.
    static std::uint64_t seg_align(std::uint32_t len) { return len % 4096 == 0 ? 4096 : 8; }

    // Kicks and waits until `n` more used elements appear. The poll timeout only guards
    // against a hang; nothing asserts on timing.
    std::vector<Used> run(std::uint16_t n) {
        handler_->on_kick();
        const std::uint16_t target = static_cast<std::uint16_t>(used_seen_ + n);
        while (driver_->used_idx() != target) {
            const int fd = handler_->event_fd();
            if (fd < 0) {
                ADD_FAILURE() << "sync engine left requests incomplete";
                break;
            }
            pollfd p{fd, POLLIN, 0};
            if (::poll(&p, 1, 30000) != 1) {
                ADD_FAILURE() << "no completion within 30 s";
                break;
            }
            handler_->on_event();
        }
        std::vector<Used> out;
        for (; used_seen_ != driver_->used_idx(); ++used_seen_) {
            out.push_back(driver_->used(used_seen_));
        }
        return out;
    }

    // Posts `writes` 64 KiB writes and then a FLUSH, without kicking.
    struct PostedFlush {
        int writes;
        std::uint16_t head;        // the FLUSH chain
        std::uint64_t status_gpa;  // its status byte
    };
    PostedFlush post_writes_then_flush(int writes) {
        for (int i = 0; i < writes; ++i) {
            const std::uint64_t hdr = driver_->alloc(16, 16);
            const std::uint64_t buf = driver_->alloc(65536);
            const std::uint64_t st = driver_->alloc(1, 1);
            BlkReqHeader h{le32::of(kBlkTOut), le32::of(0), le64::of(128ull * i)};
            mem_.write_obj(hdr, h);
            const auto data = random_bytes(65536, 300 + i);
            mem_.write(buf, data.data(), data.size());
            driver_->post({{hdr, 16, false}, {buf, 65536, false}, {st, 1, true}});
        }
        const std::uint64_t fhdr = driver_->alloc(16, 16);
        const std::uint64_t fst = driver_->alloc(1, 1);
        BlkReqHeader fh{le32::of(kBlkTFlush), le32::of(0), le64::of(0)};
        mem_.write_obj(fhdr, fh);
        return {writes, driver_->post({{fhdr, 16, false}, {fst, 1, true}}), fst};
    }

    // One request: header, data segments, status byte; returns status and used length.
    Result request(std::uint32_t type, std::uint64_t sector, const std::vector<Seg>& data) {
        const std::uint64_t hdr = driver_->alloc(sizeof(BlkReqHeader), 16);
        const std::uint64_t st = driver_->alloc(1, 1);
        BlkReqHeader h{le32::of(type), le32::of(0), le64::of(sector)};
        mem_.write_obj(hdr, h);
        const std::uint8_t poison = 0xee;
        mem_.write_obj(st, poison);
        std::vector<Seg> segs{{hdr, sizeof h, false}};
        segs.insert(segs.end(), data.begin(), data.end());
        segs.push_back({st, 1, true});
        const std::uint16_t head = driver_->post(segs);
        auto used = run(1);
        EXPECT_EQ(used.size(), 1u);
        if (used.empty()) {
            return {0xff, 0};
        }
        EXPECT_EQ(used[0].id, head);
        std::uint8_t status = 0;
        mem_.read_obj(st, status);
        return {status, used[0].len};
    }

    // Writes `bytes` at `sector` from a buffer split into segments of the given sizes.
    Result write(std::uint64_t sector, std::span<const std::uint8_t> bytes,
                 std::vector<std::uint32_t> seg_sizes = {}) {
        if (seg_sizes.empty()) {
            seg_sizes.push_back(static_cast<std::uint32_t>(bytes.size()));
        }
        std::vector<Seg> segs;
        std::size_t off = 0;
        for (auto len : seg_sizes) {
            const std::uint64_t gpa = driver_->alloc(len, seg_align(len));
            mem_.write(gpa, bytes.data() + off, len);
            segs.push_back({gpa, len, false});
            off += len;
        }
        return request(kBlkTOut, sector, segs);
    }

    // Reads `len` bytes at `sector` into segments of the given sizes; returns the data.
    std::pair<Result, std::vector<std::uint8_t>> read(std::uint64_t sector, std::uint32_t len,
                                                      std::vector<std::uint32_t> seg_sizes = {}) {
        if (seg_sizes.empty()) {
            seg_sizes.push_back(len);
        }
        std::vector<Seg> segs;
        for (auto l : seg_sizes) {
            segs.push_back({driver_->alloc(l, seg_align(l)), l, true});
            std::vector<std::uint8_t> poison(l, 0xa5);
            mem_.write(segs.back().gpa, poison.data(), l);
        }
        Result r = request(kBlkTIn, sector, segs);
        std::vector<std::uint8_t> out;
        for (const auto& s : segs) {
            const std::size_t at = out.size();
            out.resize(at + s.len);
            mem_.read(s.gpa, out.data() + at, s.len);
        }
        return {r, out};
    }

    Result ranges(std::uint32_t type, const std::vector<BlkDiscardWriteZeroes>& segs) {
        const std::uint32_t len = static_cast<std::uint32_t>(segs.size() * sizeof segs[0]);
        const std::uint64_t gpa = driver_->alloc(len, 16);
        mem_.write(gpa, segs.data(), len);
        return request(type, 0, {{gpa, len, false}});
    }

    static BlkDiscardWriteZeroes range(std::uint64_t sector, std::uint32_t n,
                                       std::uint32_t flags = 0) {
        return {le64::of(sector), le32::of(n), le32::of(flags)};
    }

    static constexpr std::uint64_t kDefaultFeatures = ~std::uint64_t{0};

    TempImage image_{kImageBytes};
    GuestMemory mem_;
    CountingIrq irq_;
    std::unique_ptr<BlkDevice> dev_;
    std::unique_ptr<virtq::Virtqueue> vq_;
    std::unique_ptr<SplitDriver> driver_;
    std::unique_ptr<QueueHandler> handler_;
    std::uint16_t used_seen_ = 0;
};

TEST_P(BlkTest, WriteThenReadBack) {
    const auto data = random_bytes(64 * 1024, 1);
    Result w = write(100, data);
    EXPECT_EQ(w.status, kBlkSOk);
    EXPECT_EQ(w.used_len, 1u);  // only the status byte is written for OUT
    EXPECT_EQ(checksum(image_.read(100 * kSectorSize, data.size())), checksum(data));

    auto [r, back] = read(100, static_cast<std::uint32_t>(data.size()));
    EXPECT_EQ(r.status, kBlkSOk);
    EXPECT_EQ(r.used_len, data.size() + 1);
    EXPECT_EQ(checksum(back), checksum(data));
    EXPECT_GE(irq_.count, 2);
}

TEST_P(BlkTest, MultiSegmentRequests) {
    // Segment sizes that are not sector multiples (only the total is): O_DIRECT must bounce.
    const auto data = random_bytes(8192, 2);
    Result w = write(7, data, {100, 412, 4096, 1024, 2560});
    EXPECT_EQ(w.status, kBlkSOk);
    EXPECT_EQ(image_.read(7 * kSectorSize, data.size()), data);

    auto [r, back] = read(7, 8192, {4096, 1, 511, 3584});
    EXPECT_EQ(r.status, kBlkSOk);
    EXPECT_EQ(r.used_len, 8193u);
    EXPECT_EQ(back, data);

    EXPECT_EQ(dev_->stats().bounced.load(), direct() ? 2u : 0u);

    // Page-aligned segments (the common guest case) go straight to the kernel.
    auto [r2, back2] = read(7, 8192, {4096, 4096});
    EXPECT_EQ(r2.status, kBlkSOk);
    EXPECT_EQ(back2, data);
    EXPECT_EQ(dev_->stats().bounced.load(), direct() ? 2u : 0u);
}

TEST_P(BlkTest, LargeMisalignedRequestGoesThroughTheBounceBufferInPieces) {
    const auto data = random_bytes(1200 * kSectorSize, 14);  // > the 256 KiB bounce limit
    EXPECT_EQ(write(2000, data, {100, 614300}).status, kBlkSOk);
    EXPECT_EQ(checksum(image_.read(2000ull * kSectorSize, data.size())), checksum(data));
    auto [r, back] = read(2000, static_cast<std::uint32_t>(data.size()), {614300, 100});
    EXPECT_EQ(r.status, kBlkSOk);
    EXPECT_EQ(r.used_len, data.size() + 1);
    EXPECT_EQ(checksum(back), checksum(data));
}

// More segments than one preadv/pwritev takes (IOV_MAX = 1024), through an indirect table.
TEST_P(BlkTest, RequestWithMoreSegmentsThanIovMax) {
    constexpr std::uint32_t kSegs = 1100;
    const auto data = random_bytes(kSegs * kSectorSize, 15);
    for (const bool is_read : {false, true}) {
        const std::uint64_t table = driver_->alloc(16 * (kSegs + 2), 16);
        const std::uint64_t hdr = driver_->alloc(16, 16);
        const std::uint64_t buf = driver_->alloc(data.size());
        const std::uint64_t st = driver_->alloc(1, 1);
        BlkReqHeader h{le32::of(is_read ? kBlkTIn : kBlkTOut), le32::of(0), le64::of(64)};
        mem_.write_obj(hdr, h);
        if (is_read) {
            std::vector<std::uint8_t> poison(data.size(), 0x5a);
            mem_.write(buf, poison.data(), poison.size());
        } else {
            mem_.write(buf, data.data(), data.size());
        }
        auto put = [&](std::uint16_t i, std::uint64_t addr, std::uint32_t len,
                       std::uint16_t flags) {
            const bool last = i == kSegs + 1;
            virtq::SplitDesc d{
                le64::of(addr), le32::of(len),
                le16::of(static_cast<std::uint16_t>(flags | (last ? 0 : virtq::kDescFNext))),
                le16::of(static_cast<std::uint16_t>(last ? 0 : i + 1))};
            mem_.write_obj(table + 16ull * i, d);
        };
        put(0, hdr, 16, 0);
        for (std::uint16_t i = 0; i < kSegs; ++i) {
            put(i + 1, buf + std::uint64_t{i} * kSectorSize, kSectorSize,
                is_read ? virtq::kDescFWrite : 0);
        }
        put(kSegs + 1, st, 1, virtq::kDescFWrite);
        driver_->post_indirect(table, 16 * (kSegs + 2));
        auto used = run(1);
        ASSERT_EQ(used.size(), 1u);
        std::uint8_t status = 0xff;
        mem_.read_obj(st, status);
        EXPECT_EQ(status, kBlkSOk);
        EXPECT_EQ(used[0].len, is_read ? data.size() + 1 : 1u);
        if (is_read) {
            std::vector<std::uint8_t> back(data.size());
            mem_.read(buf, back.data(), back.size());
            EXPECT_EQ(checksum(back), checksum(data));
        } else {
            EXPECT_EQ(checksum(image_.read(64 * kSectorSize, data.size())), checksum(data));
        }
    }
}

// The engine fails (here: the image shrank under the device, so a read hits end of file after
// a short transfer): the request completes with IOERR and the queue carries on.
TEST_P(BlkTest, EngineFailureCompletesWithIoErr) {
    ASSERT_EQ(::truncate(image_.path().c_str(), 4096 + 2048), 0);
    auto [r, back] = read(8, 4096);
    EXPECT_EQ(r.status, kBlkSIoErr);
    EXPECT_EQ(r.used_len, 1u);
    EXPECT_EQ(dev_->stats().io_errors.load(), 1u);
    auto [ok, back2] = read(0, 4096);
    EXPECT_EQ(ok.status, kBlkSOk);
}

TEST_P(BlkTest, ReadSeesDataWrittenBehindTheDevice) {
    const auto data = random_bytes(4096, 3);
    image_.write(kImageBytes - 4096, data);
    auto [r, back] = read(kImageSectors - 8, 4096);  // the last 8 sectors: still in range
    EXPECT_EQ(r.status, kBlkSOk);
    EXPECT_EQ(back, data);
}

TEST_P(BlkTest, ManyRequestsInOneKick) {
    constexpr int kN = 20;
    std::vector<std::vector<std::uint8_t>> blocks;
    std::vector<std::uint64_t> status_gpa;
    for (int i = 0; i < kN; ++i) {
        blocks.push_back(random_bytes(4096, 100 + i));
        const std::uint64_t hdr = driver_->alloc(16, 16);
        const std::uint64_t buf = driver_->alloc(4096);
        const std::uint64_t st = driver_->alloc(1, 1);
        BlkReqHeader h{le32::of(kBlkTOut), le32::of(0), le64::of(8ull * i)};
        mem_.write_obj(hdr, h);
        mem_.write(buf, blocks.back().data(), 4096);
        driver_->post({{hdr, 16, false}, {buf, 4096, false}, {st, 1, true}});
        status_gpa.push_back(st);
    }
    auto used = run(kN);
    ASSERT_EQ(used.size(), static_cast<std::size_t>(kN));
    for (int i = 0; i < kN; ++i) {
        std::uint8_t s = 0xff;
        mem_.read_obj(status_gpa[i], s);
        EXPECT_EQ(s, kBlkSOk);
        EXPECT_EQ(image_.read(4096ull * i, 4096), blocks[i]);
    }
}

TEST_P(BlkTest, Flush) {
    const auto data = random_bytes(4096, 4);
    EXPECT_EQ(write(0, data).status, kBlkSOk);
    Result f = request(kBlkTFlush, 0, {});
    EXPECT_EQ(f.status, kBlkSOk);
    EXPECT_EQ(f.used_len, 1u);
    EXPECT_TRUE(dev_->flush_all());
}

// FLUSH is a barrier: posted in the same batch as writes, it completes after all of them
// (the io_uring engine orders it itself; the sync engine runs in order).
TEST_P(BlkTest, FlushCompletesAfterTheWritesBeforeIt) {
    const PostedFlush f = post_writes_then_flush(6);
    auto used = run(f.writes + 1);
    ASSERT_EQ(used.size(), static_cast<std::size_t>(f.writes + 1));
    EXPECT_EQ(used.back().id, f.head);
    std::uint8_t status = 0xff;
    mem_.read_obj(f.status_gpa, status);
    EXPECT_EQ(status, kBlkSOk);
}

// The same barrier when the handler runs its own wait loop (QueueHandler::run: one
// io_uring_enter waits for kicks, the stop signal and completions), as vhost-user workers do.
TEST_P(BlkTest, FlushBarrierInTheHandlersOwnWaitLoop) {
    UniqueFd kick(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    UniqueFd stop(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    ASSERT_TRUE(kick && stop);
    bool own_loop = false;
    std::atomic<bool> returned{false};
    std::thread worker([&] {
        own_loop = handler_->run(kick.get(), stop.get());
        returned = true;
    });

    const PostedFlush f = post_writes_then_flush(6);
    ::eventfd_write(kick.get(), 1);
    const std::uint16_t target = static_cast<std::uint16_t>(used_seen_ + f.writes + 1);
    // Bounded wait for the worker (a guard against a hang, not a timing assertion).
    for (int i = 0; i < 30000 && !returned && driver_->used_idx() != target; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ::eventfd_write(stop.get(), 1);
    worker.join();
    if (!own_loop) {
        // The sync engine has no loop of its own: the transport's loop would serve it.
        EXPECT_EQ(std::get<0>(GetParam()), BlkEngine::kSync);
        run(f.writes + 1);
    }
    handler_->drain();
    ASSERT_EQ(driver_->used_idx(), target);
    EXPECT_EQ(driver_->used(static_cast<std::uint16_t>(target - 1)).id, f.head);
    std::uint8_t status = 0xff;
    mem_.read_obj(f.status_gpa, status);
    EXPECT_EQ(status, kBlkSOk);
}

TEST_P(BlkTest, GetId) {
    const std::uint64_t buf = driver_->alloc(kBlkIdBytes);
    std::vector<std::uint8_t> poison(kBlkIdBytes, 0xcc);
    mem_.write(buf, poison.data(), poison.size());
    Result r = request(kBlkTGetId, 0, {{buf, kBlkIdBytes, true}});
    EXPECT_EQ(r.status, kBlkSOk);
    EXPECT_EQ(r.used_len, kBlkIdBytes + 1);
    char id[kBlkIdBytes];
    mem_.read(buf, id, sizeof id);
    const std::string serial = "vireo-serial-0001";
    EXPECT_EQ(std::string(id, serial.size()), serial);
    for (std::size_t i = serial.size(); i < kBlkIdBytes; ++i) {
        EXPECT_EQ(id[i], 0) << "byte " << i;
    }
}

TEST_P(BlkTest, WriteZeroesReadsBackZeros) {
    const auto data = random_bytes(64 * 1024, 5);
    ASSERT_EQ(write(0, data).status, kBlkSOk);
    // Two ranges, one with unmap (punch hole), one without (zero range).
    Result r = ranges(kBlkTWriteZeroes, {range(8, 16, kBlkWriteZeroesFlagUnmap), range(64, 32)});
    EXPECT_EQ(r.status, kBlkSOk);
    EXPECT_EQ(r.used_len, 1u);
    auto [rr, back] = read(0, 64 * 1024);
    ASSERT_EQ(rr.status, kBlkSOk);
    for (std::size_t i = 0; i < back.size(); ++i) {
        const std::uint64_t sector = i / kSectorSize;
        const bool zeroed = (sector >= 8 && sector < 24) || (sector >= 64 && sector < 96);
        ASSERT_EQ(back[i], zeroed ? 0 : data[i]) << "byte " << i;
    }
}

TEST_P(BlkTest, DiscardAndItsValidation) {
    const auto data = random_bytes(16 * 1024, 6);
    ASSERT_EQ(write(0, data).status, kBlkSOk);
    EXPECT_EQ(ranges(kBlkTDiscard, {range(0, 8), range(16, 8)}).status, kBlkSOk);
    // §5.2.6.2: unmap on a discard, or any unknown flag, is UNSUPP.
    EXPECT_EQ(ranges(kBlkTDiscard, {range(0, 8, kBlkWriteZeroesFlagUnmap)}).status, kBlkSUnsupp);
    EXPECT_EQ(ranges(kBlkTWriteZeroes, {range(0, 8, 2)}).status, kBlkSUnsupp);
    // Out of range, too many sectors, too many segments, empty, ragged length: IOERR.
    EXPECT_EQ(ranges(kBlkTDiscard, {range(kImageSectors - 4, 8)}).status, kBlkSIoErr);
    EXPECT_EQ(ranges(kBlkTWriteZeroes, {range(~0ull - 2, 8)}).status, kBlkSIoErr);
    EXPECT_EQ(ranges(kBlkTDiscard, {range(0, kBlkMaxDiscardSectors + 1)}).status, kBlkSIoErr);
    std::vector<BlkDiscardWriteZeroes> many(kBlkMaxDiscardSeg + 1, range(0, 1));
    EXPECT_EQ(ranges(kBlkTDiscard, many).status, kBlkSIoErr);
    EXPECT_EQ(request(kBlkTDiscard, 0, {}).status, kBlkSIoErr);
    const std::uint64_t gpa = driver_->alloc(20);
    EXPECT_EQ(request(kBlkTWriteZeroes, 0, {{gpa, 20, false}}).status, kBlkSIoErr);
    // The maximum number of segments is fine.
    std::vector<BlkDiscardWriteZeroes> max(kBlkMaxWriteZeroesSeg);
    for (std::size_t i = 0; i < max.size(); ++i) {
        max[i] = range(i * 2, 1);
    }
    EXPECT_EQ(ranges(kBlkTWriteZeroes, max).status, kBlkSOk);
    auto [rr, back] = read(0, 512 * 2 * kBlkMaxWriteZeroesSeg);
    for (std::size_t i = 0; i < back.size(); ++i) {
        if ((i / kSectorSize) % 2 == 0) {
            ASSERT_EQ(back[i], 0) << "byte " << i;
        }
    }
}

TEST_P(BlkTest, ReadOnlyDeviceRefusesWrites) {
    const auto before = random_bytes(4096, 7);
    image_.write(0, before);
    open_device(true);
    EXPECT_NE(dev_->device_features() & bit(kBlkFRo), 0u);
    EXPECT_EQ(dev_->device_features() & (bit(kBlkFDiscard) | bit(kBlkFWriteZeroes)), 0u);
    Result w = write(0, random_bytes(4096, 8));
    EXPECT_EQ(w.status, kBlkSIoErr);
    EXPECT_EQ(w.used_len, 1u);
    EXPECT_EQ(image_.read(0, 4096), before);
    EXPECT_EQ(ranges(kBlkTWriteZeroes, {range(0, 8)}).status, kBlkSIoErr);
    EXPECT_EQ(ranges(kBlkTDiscard, {range(0, 8)}).status, kBlkSIoErr);
    EXPECT_EQ(image_.read(0, 4096), before);
    auto [r, back] = read(0, 4096);
    EXPECT_EQ(r.status, kBlkSOk);
    EXPECT_EQ(back, before);
    EXPECT_EQ(request(kBlkTFlush, 0, {}).status, kBlkSOk);
}

TEST_P(BlkTest, BadRequestsCompleteAndTheQueueKeepsWorking) {
    // Short header: 8 readable bytes.
    {
        const std::uint64_t hdr = driver_->alloc(8, 8);
        const std::uint64_t st = driver_->alloc(1, 1);
        driver_->post({{hdr, 8, false}, {st, 1, true}});
        auto used = run(1);
        ASSERT_EQ(used.size(), 1u);
        EXPECT_EQ(used[0].len, 1u);
        std::uint8_t s = 0xff;
        mem_.read_obj(st, s);
        EXPECT_EQ(s, kBlkSIoErr);
    }
    // No writable byte at all: nowhere for a status; completed with used length 0.
    {
        const std::uint64_t hdr = driver_->alloc(16, 16);
        BlkReqHeader h{le32::of(kBlkTIn), le32::of(0), le64::of(0)};
        mem_.write_obj(hdr, h);
        const std::uint16_t head = driver_->post({{hdr, 16, false}});
        auto used = run(1);
        ASSERT_EQ(used.size(), 1u);
        EXPECT_EQ(used[0].id, head);
        EXPECT_EQ(used[0].len, 0u);
        EXPECT_EQ(dev_->stats().no_status.load(), 1u);
    }
    // Out of range: starts at capacity, straddles the end, overflows sector * 512.
    EXPECT_EQ(read(kImageSectors, 512).first.status, kBlkSIoErr);
    EXPECT_EQ(read(kImageSectors - 1, 1024).first.status, kBlkSIoErr);
    EXPECT_EQ(read(~0ull >> 8, 512).first.status, kBlkSIoErr);
    EXPECT_EQ(write(kImageSectors - 1, random_bytes(1024, 9)).status, kBlkSIoErr);
    Result oor = read(kImageSectors, 512).first;
    EXPECT_EQ(oor.used_len, 1u);
    // Length not a multiple of 512.
    Result ragged = read(0, 700).first;
    EXPECT_EQ(ragged.status, kBlkSIoErr);
    EXPECT_EQ(ragged.used_len, 1u);
    EXPECT_EQ(write(0, random_bytes(100, 10)).status, kBlkSIoErr);
    // Unknown types, and GET_LIFETIME / SECURE_ERASE whose features are not offered.
    for (std::uint32_t type : {3u, 5u, 99u, kBlkTGetLifetime, kBlkTSecureErase, 0x80000000u}) {
        Result u = request(type, 0, {});
        EXPECT_EQ(u.status, kBlkSUnsupp) << "type " << type;
        EXPECT_EQ(u.used_len, 1u);
    }
    EXPECT_GE(dev_->stats().rejected.load(), 10u);

    // ...and the queue still serves good requests.
    const auto data = random_bytes(4096, 11);
    EXPECT_EQ(write(16, data).status, kBlkSOk);
    auto [r, back] = read(16, 4096);
    EXPECT_EQ(r.status, kBlkSOk);
    EXPECT_EQ(back, data);
    EXPECT_FALSE(handler_->needs_reset());
}

TEST_P(BlkTest, ZeroLengthReadCompletes) {
    Result r = request(kBlkTIn, 0, {});
    EXPECT_EQ(r.status, kBlkSOk);
    EXPECT_EQ(r.used_len, 1u);
}

TEST_P(BlkTest, HostileRingStopsTheQueueAndAsksForReset) {
    const auto data = random_bytes(4096, 12);
    ASSERT_EQ(write(0, data).status, kBlkSOk);
    // avail idx more than the queue size ahead: a corrupt ring (§2.7.6).
    driver_->set_avail_idx(static_cast<std::uint16_t>(driver_->used_idx() + kQueueSize + 5));
    handler_->on_kick();
    EXPECT_TRUE(handler_->needs_reset());
    handler_->on_kick();  // stays stopped, no crash
    handler_->drain();
    EXPECT_TRUE(handler_->needs_reset());
}

TEST_P(BlkTest, DrainCompletesEverythingInFlight) {
    constexpr int kN = 8;
    for (int i = 0; i < kN; ++i) {
        const std::uint64_t hdr = driver_->alloc(16, 16);
        const std::uint64_t buf = driver_->alloc(65536);
        const std::uint64_t st = driver_->alloc(1, 1);
        BlkReqHeader h{le32::of(i % 2 ? kBlkTIn : kBlkTOut), le32::of(0), le64::of(128ull * i)};
        mem_.write_obj(hdr, h);
        driver_->post({{hdr, 16, false}, {buf, 65536, i % 2 == 1}, {st, 1, true}});
    }
    handler_->on_kick();
    handler_->drain();
    EXPECT_EQ(driver_->used_idx(), kN);
}

TEST_P(BlkTest, WritethroughWhenTheDriverTurnsWritebackOff) {
    EXPECT_FALSE(dev_->writethrough());
    const std::uint8_t off = 0;
    dev_->write_config(offsetof(BlkConfig, writeback), std::span(&off, 1));
    EXPECT_TRUE(dev_->writethrough());
    EXPECT_EQ(dev_->config()[offsetof(BlkConfig, writeback)], 0);
    const auto data = random_bytes(8192, 13);
    EXPECT_EQ(write(40, data).status, kBlkSOk);
    EXPECT_EQ(ranges(kBlkTWriteZeroes, {range(40, 8)}).status, kBlkSOk);
    auto [r, back] = read(40, 8192);
    EXPECT_EQ(r.status, kBlkSOk);
    EXPECT_TRUE(std::all_of(back.begin(), back.begin() + 4096, [](auto b) { return b == 0; }));
    EXPECT_TRUE(std::equal(back.begin() + 4096, back.end(), data.begin() + 4096));
}

// Two queues of one device, each served on its own thread (as the transport runs them).
TEST_P(BlkTest, TwoQueuesOnTwoThreads) {
    constexpr std::uint64_t kRing1 = 0x8000;
    virtq::Virtqueue vq1;
    ASSERT_TRUE(vq1.activate(
        mem_,
        virtq::QueueConfig{kQueueSize, kRing1 + kDescGpa, kRing1 + kAvailGpa, kRing1 + kUsedGpa},
        virtq::QueueFeatures{}));
    CountingIrq irq1;
    auto h1 = dev_->start_queue(1, QueueHandle(mem_, vq1, irq1));
    ASSERT_NE(h1, nullptr);
    // Queue 0 allocates buffers from the lower half of the heap, queue 1 from the upper half.
    driver_ = std::make_unique<SplitDriver>(mem_, 0, kHeapGpa, kMemSize / 2);
    SplitDriver drv1(mem_, kRing1, kMemSize / 2, kMemSize);

    constexpr int kN = 40;
    auto worker = [&](QueueHandler& h, SplitDriver& drv, std::uint64_t first_sector, int seed) {
        for (int i = 0; i < kN; ++i) {
            const auto data = random_bytes(4096, seed + i);
            const std::uint64_t hdr = drv.alloc(16, 16);
            const std::uint64_t buf = drv.alloc(4096);
            const std::uint64_t st = drv.alloc(1, 1);
            BlkReqHeader hd{le32::of(kBlkTOut), le32::of(0), le64::of(first_sector + 8ull * i)};
            mem_.write_obj(hdr, hd);
            mem_.write(buf, data.data(), data.size());
            drv.post({{hdr, 16, false}, {buf, 4096, false}, {st, 1, true}});
            h.on_kick();
            h.drain();
        }
    };
    std::thread t0(worker, std::ref(*handler_), std::ref(*driver_), 0, 1000);
    std::thread t1(worker, std::ref(*h1), std::ref(drv1), 4096, 2000);
    t0.join();
    t1.join();
    EXPECT_EQ(driver_->used_idx(), kN);
    EXPECT_EQ(drv1.used_idx(), kN);
    for (int i = 0; i < kN; ++i) {
        EXPECT_EQ(image_.read(4096ull * i, 4096), random_bytes(4096, 1000 + i));
        EXPECT_EQ(image_.read((4096 + 8ull * i) * kSectorSize, 4096), random_bytes(4096, 2000 + i));
    }
}

INSTANTIATE_TEST_SUITE_P(Engines, BlkTest,
                         ::testing::Combine(::testing::Values(BlkEngine::kUring, BlkEngine::kSync),
                                            ::testing::Bool()),
                         [](const auto& info) {
                             return std::string(to_string(std::get<0>(info.param))) +
                                    (std::get<1>(info.param) ? "_direct" : "_cached");
                         });

// --- packed ring (§2.8) -----------------------------------------------------------------

// The driver side of a packed ring: enough to post chains and collect used descriptors.
class PackedDriver {
  public:
    explicit PackedDriver(const GuestMemory& mem) : mem_(mem) {}

    std::uint16_t post(const std::vector<Seg>& segs) {
        const std::uint16_t id = next_id_++;
        ndescs_[id] = static_cast<std::uint16_t>(segs.size());
        const std::uint16_t head_slot = next_;
        std::uint16_t head_flags = 0;
        for (std::size_t i = 0; i < segs.size(); ++i) {
            std::uint16_t flags = i + 1 < segs.size() ? virtq::kDescFNext : 0;
            flags |= segs[i].writable ? virtq::kDescFWrite : 0;
            // §2.8.1: AVAIL = the driver's wrap counter, USED = its inverse.
            flags |= wrap_ ? virtq::kPackedDescFAvail : virtq::kPackedDescFUsed;
            virtq::PackedDesc d{le64::of(segs[i].gpa), le32::of(segs[i].len), le16::of(id),
                                le16::of(i == 0 ? 0 : flags)};
            mem_.write_obj(kDescGpa + 16ull * next_, d);
            if (i == 0) {
                head_flags = flags;
            }
            if (++next_ == kQueueSize) {
                next_ = 0;
                wrap_ = !wrap_;
            }
        }
        // The head's flags last, after everything else of the chain (§2.8.21).
        std::atomic_thread_fence(std::memory_order_release);
        mem_.write_obj(kDescGpa + 16ull * head_slot + 14, le16::of(head_flags));
        return id;
    }

    std::optional<Used> next_used() {
        virtq::PackedDesc d{};
        mem_.read_obj(kDescGpa + 16ull * used_pos_, d);
        const std::uint16_t flags = d.flags.get();
        const bool avail = (flags & virtq::kPackedDescFAvail) != 0;
        const bool used = (flags & virtq::kPackedDescFUsed) != 0;
        if (avail != used || used != used_wrap_) {
            return std::nullopt;
        }
        std::atomic_thread_fence(std::memory_order_acquire);
        const std::uint16_t id = d.id.get();
        used_pos_ = static_cast<std::uint16_t>(used_pos_ + ndescs_.at(id));
        if (used_pos_ >= kQueueSize) {
            used_pos_ -= kQueueSize;
            used_wrap_ = !used_wrap_;
        }
        return Used{id, d.len.get()};
    }

  private:
    const GuestMemory& mem_;
    std::uint16_t next_ = 0;
    bool wrap_ = true;
    std::uint16_t used_pos_ = 0;
    bool used_wrap_ = true;
    std::uint16_t next_id_ = 0;
    std::map<std::uint16_t, std::uint16_t> ndescs_;
};

class BlkPackedTest : public ::testing::TestWithParam<BlkEngine> {
  protected:
    void SetUp() override {
        ASSERT_TRUE(mem_.add_anonymous(0, kMemSize));
        auto d = BlkDevice::open(
            BlkOptions{image_.path(), false, 1, kQueueSize, GetParam(), false, "packed"});
        ASSERT_TRUE(d) << d.error();
        dev_ = std::move(*d);
        dev_->set_features(dev_->device_features());
        ASSERT_TRUE(vq_.activate(mem_,
                                 virtq::QueueConfig{kQueueSize, kDescGpa, kAvailGpa, kUsedGpa},
                                 virtq::QueueFeatures{true, false, false}));
        handler_ = dev_->start_queue(0, QueueHandle(mem_, vq_, irq_));
        ASSERT_NE(handler_, nullptr);
    }

    Result request(std::uint32_t type, std::uint64_t sector, std::uint64_t buf, std::uint32_t len,
                   bool writable) {
        const std::uint64_t hdr = kHeapGpa;
        const std::uint64_t st = kHeapGpa + 64;
        BlkReqHeader h{le32::of(type), le32::of(0), le64::of(sector)};
        mem_.write_obj(hdr, h);
        std::vector<Seg> segs{{hdr, 16, false}};
        if (len > 0) {
            segs.push_back({buf, len, writable});
        }
        segs.push_back({st, 1, true});
        const std::uint16_t id = driver_.post(segs);
        handler_->on_kick();
        std::optional<Used> u;
        while (!(u = driver_.next_used())) {
            pollfd p{handler_->event_fd(), POLLIN, 0};
            if (p.fd < 0 || ::poll(&p, 1, 30000) != 1) {
                ADD_FAILURE() << "request not completed";
                return {0xff, 0};
            }
            handler_->on_event();
        }
        EXPECT_EQ(u->id, id);
        std::uint8_t status = 0xff;
        mem_.read_obj(st, status);
        return {status, u->len};
    }

    TempImage image_{kImageBytes};
    GuestMemory mem_;
    CountingIrq irq_;
    std::unique_ptr<BlkDevice> dev_;
    virtq::Virtqueue vq_;
    PackedDriver driver_{mem_};
    std::unique_ptr<QueueHandler> handler_;
};

// Enough requests to wrap the ring several times: the packed wrap counters on both sides.
TEST_P(BlkPackedTest, WriteReadBackAcrossRingWraps) {
    const std::uint64_t wbuf = kHeapGpa + 0x1000;
    const std::uint64_t rbuf = kHeapGpa + 0x3000;
    for (unsigned i = 0; i < 50; ++i) {
        const auto data = random_bytes(8192, 200 + i);
        mem_.write(wbuf, data.data(), data.size());
        const Result w = request(kBlkTOut, 16ull * i, wbuf, 8192, false);
        ASSERT_EQ(w.status, kBlkSOk);
        ASSERT_EQ(w.used_len, 1u);
        const Result r = request(kBlkTIn, 16ull * i, rbuf, 8192, true);
        ASSERT_EQ(r.status, kBlkSOk);
        ASSERT_EQ(r.used_len, 8193u);
        std::vector<std::uint8_t> back(8192);
        mem_.read(rbuf, back.data(), back.size());
        ASSERT_EQ(back, data) << "request " << i;
    }
    const Result bad = request(99, 0, 0, 0, false);
    EXPECT_EQ(bad.status, kBlkSUnsupp);
    EXPECT_EQ(bad.used_len, 1u);
    EXPECT_FALSE(handler_->needs_reset());
}

INSTANTIATE_TEST_SUITE_P(Engines, BlkPackedTest,
                         ::testing::Values(BlkEngine::kUring, BlkEngine::kSync),
                         [](const auto& info) { return std::string(to_string(info.param)); });

// --- configuration and features (engine independent) --------------------------------------

class BlkConfigTest : public ::testing::Test {
  protected:
    TempImage image_{kImageBytes};
};

// tmpfs has no FALLOC_FL_ZERO_RANGE: WRITE_ZEROES without unmap falls back to writing zeros.
TEST_F(BlkConfigTest, WriteZeroesFallsBackToWritingZeros) {
    if (::access("/dev/shm", W_OK) != 0) {
        GTEST_SKIP() << "no writable /dev/shm";
    }
    for (BlkEngine engine : {BlkEngine::kUring, BlkEngine::kSync}) {
        TempImage shm(kImageBytes, "/dev/shm");
        const auto data = random_bytes(kImageBytes, 16);
        shm.write(0, data);
        auto d = BlkDevice::open(BlkOptions{shm.path(), false, 1, kQueueSize, engine, false, ""});
        ASSERT_TRUE(d) << d.error();
        GuestMemory mem;
        ASSERT_TRUE(mem.add_anonymous(0, kMemSize));
        virtq::Virtqueue vq;
        ASSERT_TRUE(vq.activate(mem, virtq::QueueConfig{kQueueSize, kDescGpa, kAvailGpa, kUsedGpa},
                                virtq::QueueFeatures{}));
        CountingIrq irq;
        auto h = (*d)->start_queue(0, QueueHandle(mem, vq, irq));
        SplitDriver drv(mem);
        // 3 MiB from sector 100: several 1 MiB zero-write ops.
        const std::uint64_t hdr = kHeapGpa;
        const std::uint64_t seg = kHeapGpa + 64;
        const std::uint64_t st = kHeapGpa + 128;
        BlkReqHeader hd{le32::of(kBlkTWriteZeroes), le32::of(0), le64::of(0)};
        mem.write_obj(hdr, hd);
        BlkDiscardWriteZeroes r{le64::of(100), le32::of(6144), le32::of(0)};
        mem.write_obj(seg, r);
        drv.post({{hdr, 16, false}, {seg, 16, false}, {st, 1, true}});
        h->on_kick();
        h->drain();
        ASSERT_EQ(drv.used_idx(), 1);
        std::uint8_t status = 0xff;
        mem.read_obj(st, status);
        EXPECT_EQ(status, kBlkSOk) << to_string(engine);
        const auto back = shm.read(0, kImageBytes);
        for (std::size_t i = 0; i < back.size(); ++i) {
            const bool zeroed = i >= 100 * kSectorSize && i < (100 + 6144) * kSectorSize;
            ASSERT_EQ(back[i], zeroed ? 0 : data[i]) << "byte " << i << " " << to_string(engine);
        }
    }
}

TEST_F(BlkConfigTest, ConfigSpaceLayoutAndFeatures) {
    auto d = BlkDevice::open(BlkOptions{image_.path(), false, 4, 128, BlkEngine::kSync, false, ""});
    ASSERT_TRUE(d) << d.error();
    BlkDevice& dev = **d;
    EXPECT_EQ(dev.device_id(), kIdBlock);
    EXPECT_EQ(dev.num_queues(), 4);
    EXPECT_EQ(dev.max_queue_size(), 128);

    const auto cfg = dev.config();
    ASSERT_EQ(cfg.size(), sizeof(BlkConfig));
    BlkConfig c;
    std::memcpy(&c, cfg.data(), sizeof c);
    EXPECT_EQ(c.capacity.get(), kImageSectors);
    EXPECT_EQ(c.size_max.get(), kBlkSizeMax);
    EXPECT_EQ(c.seg_max.get(), 126u);
    EXPECT_EQ(c.geometry.cylinders.get(), 0);
    EXPECT_EQ(c.geometry.heads, 0);
    EXPECT_EQ(c.blk_size.get(), 512u);
    EXPECT_EQ(c.topology.physical_block_exp, 0);
    EXPECT_EQ(c.topology.min_io_size.get(), 1);
    EXPECT_EQ(c.writeback, 1);
    EXPECT_EQ(c.unused0, 0);
    EXPECT_EQ(c.num_queues.get(), 4);
    EXPECT_EQ(c.max_discard_sectors.get(), kBlkMaxDiscardSectors);
    EXPECT_EQ(c.max_discard_seg.get(), kBlkMaxDiscardSeg);
    EXPECT_EQ(c.discard_sector_alignment.get(), 1u);
    EXPECT_EQ(c.max_write_zeroes_sectors.get(), kBlkMaxWriteZeroesSectors);
    EXPECT_EQ(c.max_write_zeroes_seg.get(), kBlkMaxWriteZeroesSeg);
    EXPECT_EQ(c.write_zeroes_may_unmap, 1);
    EXPECT_EQ(c.unused1[0] | c.unused1[1] | c.unused1[2], 0);
    // Little-endian on the wire: capacity's low byte first.
    EXPECT_EQ(cfg[0], kImageSectors & 0xff);
    EXPECT_EQ(cfg[1], (kImageSectors >> 8) & 0xff);

    const std::uint64_t f = dev.device_features();
    for (unsigned b : {kBlkFSizeMax, kBlkFSegMax, kBlkFBlkSize, kBlkFTopology, kBlkFFlush,
                       kBlkFConfigWce, kBlkFMq, kBlkFDiscard, kBlkFWriteZeroes}) {
        EXPECT_NE(f & bit(b), 0u) << "feature " << b;
    }
    for (unsigned b : {virtq::kFVersion1, virtq::kFRingPacked, virtq::kFEventIdx,
                       virtq::kFIndirectDesc, virtq::kFRingReset}) {
        EXPECT_NE(f & bit(b), 0u) << "feature " << b;
    }
    EXPECT_EQ(f & bit(kBlkFRo), 0u);
    EXPECT_EQ(f & bit(kBlkFGeometry), 0u);
    EXPECT_EQ(f & bit(kBlkFLifetime), 0u);
}

TEST_F(BlkConfigTest, CacheModeFollowsNegotiation) {
    auto d = BlkDevice::open(BlkOptions{image_.path(), false, 1, 64, BlkEngine::kSync, false, ""});
    ASSERT_TRUE(d) << d.error();
    BlkDevice& dev = **d;
    const std::uint8_t zero = 0;
    const std::uint8_t one = 1;
    const std::uint8_t two = 2;
    const auto wb = [&] { return dev.config()[offsetof(BlkConfig, writeback)]; };

    // FLUSH only: writeback; writeback not writable without CONFIG_WCE.
    dev.set_features(bit(kBlkFFlush) | bit(virtq::kFVersion1));
    EXPECT_FALSE(dev.writethrough());
    dev.write_config(offsetof(BlkConfig, writeback), std::span(&zero, 1));
    EXPECT_EQ(wb(), 1);
    EXPECT_FALSE(dev.writethrough());

    // Neither FLUSH nor CONFIG_WCE: writes must be stable on completion (§5.2.6.2 case 1).
    dev.reset();
    dev.set_features(bit(virtq::kFVersion1));
    EXPECT_TRUE(dev.writethrough());

    // CONFIG_WCE without FLUSH starts in writethrough (§5.2.5.2).
    dev.reset();
    dev.set_features(bit(kBlkFConfigWce) | bit(virtq::kFVersion1));
    EXPECT_EQ(wb(), 0);
    EXPECT_TRUE(dev.writethrough());

    // Both: the driver toggles; only 0 and 1 at the writeback offset are accepted.
    dev.reset();
    dev.set_features(bit(kBlkFConfigWce) | bit(kBlkFFlush) | bit(virtq::kFVersion1));
    EXPECT_FALSE(dev.writethrough());
    dev.write_config(offsetof(BlkConfig, writeback), std::span(&zero, 1));
    EXPECT_TRUE(dev.writethrough());
    dev.write_config(offsetof(BlkConfig, writeback), std::span(&two, 1));
    EXPECT_TRUE(dev.writethrough());
    dev.write_config(offsetof(BlkConfig, capacity), std::span(&one, 1));
    EXPECT_EQ(dev.capacity_sectors(), kImageSectors);
    dev.write_config(offsetof(BlkConfig, writeback), std::span(&one, 1));
    EXPECT_FALSE(dev.writethrough());
}

TEST_F(BlkConfigTest, OpenErrorsNameTheProblem) {
    auto missing = BlkDevice::open(
        BlkOptions{"/tmp/vireo-no-such-image", false, 1, 64, BlkEngine::kSync, false, ""});
    ASSERT_FALSE(missing);
    EXPECT_NE(missing.error().find("/tmp/vireo-no-such-image"), std::string::npos);
    EXPECT_NE(missing.error().find("No such file"), std::string::npos) << missing.error();

    TempImage odd(1000);
    auto ragged =
        BlkDevice::open(BlkOptions{odd.path(), false, 1, 64, BlkEngine::kSync, false, ""});
    ASSERT_FALSE(ragged);
    EXPECT_NE(ragged.error().find("multiple of 512"), std::string::npos) << ragged.error();

    auto dir = BlkDevice::open(BlkOptions{"/tmp", true, 1, 64, BlkEngine::kSync, false, ""});
    ASSERT_FALSE(dir);

    auto serial = BlkDevice::open(BlkOptions{image_.path(), false, 1, 64, BlkEngine::kSync, false,
                                             "this-serial-is-too-long-for-virtio"});
    ASSERT_FALSE(serial);
    EXPECT_NE(serial.error().find("serial"), std::string::npos);

    auto qsize =
        BlkDevice::open(BlkOptions{image_.path(), false, 1, 100, BlkEngine::kSync, false, ""});
    ASSERT_FALSE(qsize);

    auto engine = parse_blk_engine("aio");
    ASSERT_FALSE(engine);
    EXPECT_NE(engine.error().find("unsupported engine"), std::string::npos);
    EXPECT_EQ(parse_blk_engine("uring").value(), BlkEngine::kUring);
    EXPECT_EQ(parse_blk_engine("sync").value(), BlkEngine::kSync);

    // A second writer on the same image is refused.
    auto first =
        BlkDevice::open(BlkOptions{image_.path(), false, 1, 64, BlkEngine::kSync, false, ""});
    ASSERT_TRUE(first);
    auto second =
        BlkDevice::open(BlkOptions{image_.path(), false, 1, 64, BlkEngine::kSync, false, ""});
    ASSERT_FALSE(second);
    EXPECT_NE(second.error().find("locked"), std::string::npos);
}

TEST_F(BlkConfigTest, StartQueueRejectsOutOfRangeIndex) {
    auto d = BlkDevice::open(BlkOptions{image_.path(), false, 2, 64, BlkEngine::kSync, false, ""});
    ASSERT_TRUE(d);
    GuestMemory mem;
    ASSERT_TRUE(mem.add_anonymous(0, 1 << 20));
    virtq::Virtqueue vq;
    CountingIrq irq;
    EXPECT_EQ((*d)->start_queue(2, QueueHandle(mem, vq, irq)), nullptr);
}

}  // namespace
}  // namespace vireo::dev
