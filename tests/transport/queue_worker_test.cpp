// QueueWorker around the shared queue loop: a broken queue calls on_broken and idles until
// stop(), and stop() ends the worker even when the handler's own wait point consumed the stop.
#include "transport/queue_worker.hpp"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/eventfd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <thread>

#include "memory/unique_fd.hpp"

namespace vireo::transport {
namespace {

template <typename P>
bool eventually(P pred) {
    for (int i = 0; i < 10000 && !pred(); ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return pred();
}

// With `consume_stop`, run() is the queue's wait point and, like blk's io_uring engine, reads
// the stop eventfd's count; it also finds the ring broken in the same wake-up.
class Handler final : public dev::QueueHandler {
  public:
    explicit Handler(bool consume_stop) : consume_stop_(consume_stop) {}
    void on_kick() override {
        if (kicks.fetch_add(1) == 1) {
            reset = true;  // the second look finds a malformed ring
        }
    }
    bool run(int /*kick_fd*/, int stop_fd) override {
        if (!consume_stop_) {
            return false;
        }
        in_run = true;
        pollfd p{stop_fd, POLLIN, 0};
        while (::poll(&p, 1, -1) < 0) {
        }
        eventfd_t v;
        ::eventfd_read(stop_fd, &v);
        reset = true;
        return true;
    }
    void drain() override { drains.fetch_add(1); }
    bool needs_reset() const override { return reset; }

    std::atomic<int> kicks{0};
    std::atomic<int> drains{0};
    std::atomic<bool> reset{false};
    std::atomic<bool> in_run{false};

  private:
    bool consume_stop_;
};

// Stops `w` on another thread; a stop() that never returns fails the test instead of hanging.
void stop_within_bound(QueueWorker& w) {
    std::atomic<bool> stopped{false};
    std::thread t([&] {
        w.stop();
        stopped = true;
    });
    if (!eventually([&] { return stopped.load(); })) {
        ADD_FAILURE() << "QueueWorker::stop() did not return";
        std::_Exit(1);
    }
    t.join();
}

class QueueWorkerTest : public ::testing::Test {
  protected:
    void start(Handler& h) {
        ASSERT_TRUE(worker_.start(
            h, kick_.get(), [&h] { return h.needs_reset(); }, [this] { ++broken_calls_; }));
    }

    UniqueFd kick_{::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)};
    std::atomic<int> broken_calls_{0};
    QueueWorker worker_;  // last: stopped before what its thread uses goes
};

TEST_F(QueueWorkerTest, BrokenQueueCallsOnBrokenThenIdlesUntilStop) {
    Handler h(/*consume_stop=*/false);
    start(h);
    ASSERT_TRUE(eventually([&] { return h.kicks == 1; }));
    ::eventfd_write(kick_.get(), 1);
    ASSERT_TRUE(eventually([&] { return broken_calls_ == 1; }));
    EXPECT_EQ(h.drains, 1);
    EXPECT_TRUE(worker_.running());  // idling: the owner joins it as part of the reset
    stop_within_bound(worker_);
    EXPECT_FALSE(worker_.running());
    EXPECT_EQ(broken_calls_, 1);
    EXPECT_EQ(h.drains, 1);
}

TEST_F(QueueWorkerTest, StopConsumedByTheHandlersWaitPointStillEndsTheWorker) {
    Handler h(/*consume_stop=*/true);
    start(h);
    ASSERT_TRUE(eventually([&] { return h.in_run.load(); }));
    stop_within_bound(worker_);
    EXPECT_EQ(h.drains, 1);
    EXPECT_LE(broken_calls_, 1);
}

}  // namespace
}  // namespace vireo::transport
