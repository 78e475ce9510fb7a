// Synchronous engine: every op runs to completion inside submit(), on the queue's thread.
// Simple and predictable; the baseline the io_uring engine is measured against.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>

#include "devices/blk_engine.hpp"

namespace vireo::dev {

namespace {

// Runs a syscall, restarting it when a signal interrupted it before any work was done.
template <typename F>
std::int32_t retry_eintr(F&& f) {
    for (;;) {
        const auto r = f();
        if (r >= 0) {
            // The kernel caps one read/write at MAX_RW_COUNT (< 2^31), so this never truncates.
            return static_cast<std::int32_t>(r);
        }
        if (errno != EINTR) {
            return -errno;
        }
    }
}

class SyncEngine final : public IoEngine {
  public:
    explicit SyncEngine(int fd) : fd_(fd) {}

    void submit(const IoOp& op) override {
        const int fd = fd_;
        const int cnt = static_cast<int>(std::min<std::size_t>(op.iov.size(), IOV_MAX));
        const auto off = static_cast<off_t>(op.offset);
        std::int32_t r = -EINVAL;
        switch (op.kind) {
            case IoKind::kRead:
                r = retry_eintr([&] { return ::preadv(fd, op.iov.data(), cnt, off); });
                break;
            case IoKind::kWrite:
                r = retry_eintr([&] { return ::pwritev(fd, op.iov.data(), cnt, off); });
                break;
            case IoKind::kSync:
                r = retry_eintr([&] { return ::fdatasync(fd); });
                break;
            case IoKind::kFallocate:
                r = retry_eintr(
                    [&] { return ::fallocate(fd, op.mode, off, static_cast<off_t>(op.len)); });
                break;
        }
        done_.push_back({op.tag, r});
    }
    void commit() override {}
    void reap(std::vector<IoCompletion>& out) override {
        out.insert(out.end(), done_.begin(), done_.end());
        done_.clear();
    }
    // Everything completed inside submit(): there is never anything to wait for.
    bool wait() override { return !done_.empty(); }

  private:
    int fd_;
    std::vector<IoCompletion> done_;
};

}  // namespace

std::unique_ptr<IoEngine> make_sync_engine(int fd) {
    return std::make_unique<SyncEngine>(fd);
}

}  // namespace vireo::dev
