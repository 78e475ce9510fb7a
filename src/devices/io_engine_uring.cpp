// io_uring engine: ops become SQEs, a batch is started with one io_uring_submit, and the
// kernel signals completions on an eventfd the transport polls (QueueHandler::event_fd()).
#include <fmt/format.h>
#include <liburing.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <deque>

#include "devices/blk_engine.hpp"
#include "memory/unique_fd.hpp"

namespace vireo::dev {

namespace {

// io_uring rejects more entries than this (IORING_MAX_ENTRIES).
constexpr std::uint32_t kMaxRingEntries = 32768;
// Transient failures (signals, momentary kernel resource shortage) tolerated by one wait().
constexpr unsigned kMaxWaitRetries = 1000;
// Eventfd reads a caller may keep queued besides its ops (a queue's kick and stop eventfds).
constexpr std::uint32_t kEventfdReads = 2;
// user_data bit that marks an eventfd read (its low 16 bits are the caller's tag).
constexpr std::uint64_t kEventfdRead = std::uint64_t{1} << 32;
// user_data of the cancel requests (cancel_eventfd_reads).
constexpr std::uint64_t kCancel = std::uint64_t{1} << 33;

class UringEngine final : public IoEngine {
  public:
    UringEngine(int fd, UniqueFd efd) : fd_(fd), efd_(std::move(efd)) {}
    ~UringEngine() override {
        if (initialised_) {
            ::io_uring_queue_exit(&ring_);
        }
    }
    UringEngine(const UringEngine&) = delete;
    UringEngine& operator=(const UringEngine&) = delete;

    std::expected<void, std::string> init(std::uint32_t depth) {
        // Room for the eventfd reads (read_eventfd) next to `depth` ops.
        const std::uint32_t entries =
            std::clamp<std::uint32_t>(depth + kEventfdReads, 1, kMaxRingEntries);
        // COOP_TASKRUN: completions are run when this thread next enters the kernel (it always
        // does, to wait) instead of interrupting it with an IPI while it is busy.
        int r = ::io_uring_queue_init(entries, &ring_, IORING_SETUP_COOP_TASKRUN);
        if (r == -EINVAL) {
            r = ::io_uring_queue_init(entries, &ring_, 0);  // kernels before 5.19
        }
        if (r < 0) {
            return std::unexpected(
                fmt::format("io_uring_queue_init({}): {}", entries, std::strerror(-r)));
        }
        initialised_ = true;
        if (int e = ::io_uring_register_eventfd(&ring_, efd_.get()); e < 0) {
            return std::unexpected(fmt::format("io_uring_register_eventfd: {}", std::strerror(-e)));
        }
        efd_registered_ = true;
        return {};
    }

    // IOSQE_IO_DRAIN would also wait for the eventfd reads (read_eventfd), which complete only
    // when the driver kicks: a FLUSH could wait for the next request. The barrier is kept here
    // instead, with the same meaning: a barrier op starts once every earlier op has completed,
    // and later ops start once it has.
    void submit(const IoOp& op) override {
        if (!held_.empty() || barrier_in_flight_ || (op.barrier && in_flight_ > 0)) {
            held_.push_back(op);
            return;
        }
        start(op);
    }

    void start(const IoOp& op) {
        io_uring_sqe* sqe = ::io_uring_get_sqe(&ring_);
        if (sqe == nullptr) {
            // The caller bounds its ops by the ring size, so this is not expected; make room by
            // starting what is queued rather than dropping the op.
            commit();
            sqe = ::io_uring_get_sqe(&ring_);
        }
        if (sqe == nullptr) {
            // Reported like a transient failure: the caller retries a bounded number of times.
            failed_.push_back({op.tag, -EAGAIN});
            return;
        }
        const auto cnt = static_cast<unsigned>(std::min<std::size_t>(op.iov.size(), IOV_MAX));
        switch (op.kind) {
            case IoKind::kRead:
                ::io_uring_prep_readv(sqe, fd_, op.iov.data(), cnt, op.offset);
                break;
            case IoKind::kWrite:
                ::io_uring_prep_writev(sqe, fd_, op.iov.data(), cnt, op.offset);
                break;
            case IoKind::kSync:
                ::io_uring_prep_fsync(sqe, fd_, IORING_FSYNC_DATASYNC);
                break;
            case IoKind::kFallocate:
                ::io_uring_prep_fallocate(sqe, fd_, op.mode, static_cast<off_t>(op.offset),
                                          static_cast<off_t>(op.len));
                break;
        }
        if (op.barrier) {
            barrier_in_flight_ = true;
            barrier_tag_ = op.tag;
        }
        ++in_flight_;
        ::io_uring_sqe_set_data64(sqe, op.tag);
    }

    // Starts held ops that may start now (submit()'s ordering rule).
    void release_held() {
        while (!held_.empty() && !barrier_in_flight_ &&
               (!held_.front().barrier || in_flight_ == 0)) {
            const IoOp op = held_.front();
            held_.pop_front();
            start(op);
        }
    }

    void commit() override {
        // SQEs that could not be submitted (a transient -EAGAIN/-EBUSY) stay in the SQ ring and
        // go with the next submit or wait().
        int r;
        do {
            r = ::io_uring_submit(&ring_);
        } while (r == -EINTR);
    }

    void reap(std::vector<IoCompletion>& out) override {
        out.insert(out.end(), failed_.begin(), failed_.end());
        failed_.clear();
        out.insert(out.end(), kept_.begin(), kept_.end());
        kept_.clear();
        collect(out, true);
    }

    // Moves the CQ into `out`; eventfd read completions only if `eventfd_reads`.
    void collect(std::vector<IoCompletion>& out, bool eventfd_reads) {
        io_uring_cqe* cqe;
        unsigned head;
        unsigned n = 0;
        io_uring_for_each_cqe(&ring_, head, cqe) {
            const std::uint64_t data = ::io_uring_cqe_get_data64(cqe);
            const auto tag = static_cast<std::uint16_t>(data);
            if ((data & kCancel) != 0) {
                ++n;
                continue;  // the outcome shows in the cancelled read's own completion
            }
            if ((data & kEventfdRead) != 0) {
                std::erase(eventfd_reads_, data);
                if (!eventfd_reads) {
                    ++n;
                    continue;
                }
            } else {
                --in_flight_;
                if (barrier_in_flight_ && tag == barrier_tag_) {
                    barrier_in_flight_ = false;
                }
            }
            out.push_back({tag, cqe->res});
            ++n;
        }
        ::io_uring_cq_advance(&ring_, n);
        if (n > 0) {
            release_held();  // the caller's next commit() or wait() submits them
        }
    }

    bool wait() override {
        if (!failed_.empty() || !kept_.empty() || ::io_uring_cq_ready(&ring_) > 0) {
            return true;
        }
        // Also submits anything left in the SQ ring, so a waited-for op is never stuck there.
        for (unsigned tries = 0; tries < kMaxWaitRetries; ++tries) {
            const int r = ::io_uring_submit_and_wait(&ring_, 1);
            if (r >= 0) {
                return true;
            }
            if (r != -EINTR && r != -EAGAIN && r != -EBUSY) {
                break;
            }
        }
        return false;
    }

    int event_fd() const override { return efd_.get(); }

    void cancel_eventfd_reads() override {
        for (const std::uint64_t data : eventfd_reads_) {
            io_uring_sqe* sqe = ::io_uring_get_sqe(&ring_);
            if (sqe == nullptr) {
                commit();
                sqe = ::io_uring_get_sqe(&ring_);
            }
            if (sqe == nullptr) {
                return;
            }
            ::io_uring_prep_cancel64(sqe, data, 0);
            ::io_uring_sqe_set_data64(sqe, kCancel);
        }
        // Op completions that arrive meanwhile are kept for the caller's next reap(); the reads'
        // own completions are dropped (the caller has stopped).
        for (unsigned tries = 0; !eventfd_reads_.empty() && tries < kMaxWaitRetries; ++tries) {
            const int r = ::io_uring_submit_and_wait(&ring_, 1);
            if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) {
                return;
            }
            collect(kept_, false);
        }
    }

    bool read_eventfd(int fd, std::uint16_t tag, std::uint64_t& value) override {
        if (efd_registered_) {
            // The caller now sleeps in this ring: signalling an eventfd per completion would
            // only cost time.
            ::io_uring_unregister_eventfd(&ring_);
            efd_registered_ = false;
        }
        io_uring_sqe* sqe = ::io_uring_get_sqe(&ring_);
        if (sqe == nullptr) {
            commit();
            sqe = ::io_uring_get_sqe(&ring_);
        }
        if (sqe == nullptr) {
            failed_.push_back({tag, -EAGAIN});
            return true;
        }
        // An eventfd has no file position; the read returns and resets the counter, or waits
        // (as an armed poll, not a blocked worker thread) until it is signalled.
        ::io_uring_prep_read(sqe, fd, &value, sizeof value, 0);
        ::io_uring_sqe_set_data64(sqe, tag | kEventfdRead);
        eventfd_reads_.push_back(tag | kEventfdRead);
        return true;
    }

    void clear_event() override {
        std::uint64_t count;
        // Non-blocking: EAGAIN just means another reap already consumed the signal.
        [[maybe_unused]] const ssize_t r = ::read(efd_.get(), &count, sizeof count);
    }

  private:
    io_uring ring_{};
    bool initialised_ = false;
    bool efd_registered_ = false;
    int fd_;
    UniqueFd efd_;
    std::vector<IoCompletion> failed_;
    std::vector<IoCompletion> kept_;            // op completions seen while cancelling
    std::vector<std::uint64_t> eventfd_reads_;  // user_data of the pending eventfd reads
    std::deque<IoOp> held_;                     // ops waiting for a barrier (submit())
    std::size_t in_flight_ = 0;                 // ops in the ring, not counting eventfd reads
    bool barrier_in_flight_ = false;
    std::uint16_t barrier_tag_ = 0;
};

}  // namespace

std::expected<std::unique_ptr<IoEngine>, std::string> make_uring_engine(int fd,
                                                                        std::uint32_t depth) {
    UniqueFd efd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!efd) {
        return std::unexpected(fmt::format("eventfd: {}", std::strerror(errno)));
    }
    auto engine = std::make_unique<UringEngine>(fd, std::move(efd));
    if (auto ok = engine->init(depth); !ok) {
        return std::unexpected(ok.error());
    }
    return engine;
}

}  // namespace vireo::dev
