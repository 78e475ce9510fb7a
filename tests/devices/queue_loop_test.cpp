// run_queue_loop: kick -> on_kick, event -> on_event, stop -> drain, broken -> kBroken, the
// handler's own run() taken when offered, polling without a kick eventfd, epoll failures.
#include "devices/queue_loop.hpp"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/eventfd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "memory/unique_fd.hpp"

namespace vireo::dev {
namespace {

using Reason = QueueLoopEnd::Reason;

// Polls `pred` until it holds or ~10 s pass (a hang guard, not a timing assertion).
template <typename P>
bool eventually(P pred) {
    for (int i = 0; i < 10000 && !pred(); ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return pred();
}

UniqueFd make_eventfd() {
    return UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
}

void signal(int fd) {
    ASSERT_EQ(::eventfd_write(fd, 1), 0) << std::strerror(errno);
}

bool readable(int fd) {
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, 0) == 1;
}

// Records what the loop asks of it, in order.
class FakeHandler final : public QueueHandler {
  public:
    // With `offer_run`, run() is the queue's wait point: it polls the kick and stop eventfds
    // and consumes both counts (as blk's io_uring reads do).
    explicit FakeHandler(bool offer_run = false, bool with_event = false) : offer_run_(offer_run) {
        if (with_event) {
            event_ = make_eventfd();
        }
    }

    void on_kick() override {
        note("kick");
        if (kicks.fetch_add(1) + 1 == break_after_kicks) {
            reset = true;
        }
    }
    int event_fd() const override { return event_.valid() ? event_.get() : -1; }
    void on_event() override {
        eventfd_t v;
        ::eventfd_read(event_.get(), &v);
        note("event");
        events.fetch_add(1);
    }
    bool run(int kick_fd, int stop_fd) override {
        runs.fetch_add(1);
        if (!offer_run_) {
            return false;
        }
        note("run");
        on_kick();
        while (!reset) {
            pollfd p[2] = {{kick_fd, POLLIN, 0}, {stop_fd, POLLIN, 0}};
            if (::poll(p, 2, -1) < 0) {
                continue;
            }
            eventfd_t v;
            if ((p[1].revents & POLLIN) != 0) {
                ::eventfd_read(stop_fd, &v);
                return true;
            }
            if ((p[0].revents & POLLIN) != 0) {
                ::eventfd_read(kick_fd, &v);
                on_kick();
            }
        }
        return true;
    }
    void drain() override {
        note("drain");
        drains.fetch_add(1);
    }
    bool needs_reset() const override { return reset; }

    int event() const { return event_.get(); }
    std::vector<std::string> calls() {
        const std::lock_guard lock(mu_);
        return calls_;
    }

    std::atomic<int> kicks{0};
    std::atomic<int> events{0};
    std::atomic<int> runs{0};
    std::atomic<int> drains{0};
    std::atomic<bool> reset{false};
    int break_after_kicks = -1;  // needs_reset() from this on_kick() on

  private:
    void note(const char* what) {
        const std::lock_guard lock(mu_);
        calls_.emplace_back(what);
    }

    bool offer_run_;
    UniqueFd event_;
    std::mutex mu_;
    std::vector<std::string> calls_;
};

// One loop on its own thread, as a transport runs it.
class Loop {
  public:
    Loop(FakeHandler& h, int kick_fd, int stop_fd, int poll_ms = 1)
        : thread_([&h, kick_fd, stop_fd, poll_ms, this] {
              end_ = run_queue_loop(
                  h, kick_fd, stop_fd, [&h] { return h.needs_reset(); }, poll_ms);
          }) {}
    ~Loop() {
        if (thread_.joinable()) {
            thread_.join();
        }
    }
    QueueLoopEnd join() {
        thread_.join();
        return end_;
    }

  private:
    QueueLoopEnd end_;
    std::thread thread_;
};

class QueueLoopTest : public ::testing::Test {
  protected:
    UniqueFd kick_ = make_eventfd();
    UniqueFd stop_ = make_eventfd();
};

TEST_F(QueueLoopTest, KickRunsOnKickAndStopDrains) {
    FakeHandler h;
    Loop loop(h, kick_.get(), stop_.get());
    // The handler looks at the ring once unprompted, then once per kick.
    ASSERT_TRUE(eventually([&] { return h.kicks == 1; }));
    signal(kick_.get());
    ASSERT_TRUE(eventually([&] { return h.kicks == 2; }));
    EXPECT_FALSE(readable(kick_.get()));  // the kick's count was consumed
    signal(stop_.get());
    const QueueLoopEnd end = loop.join();
    EXPECT_EQ(end.reason, Reason::kStopped);
    EXPECT_EQ(h.runs, 1);  // run() was offered the queue and declined
    EXPECT_EQ(h.drains, 1);
    EXPECT_EQ(h.calls(), (std::vector<std::string>{"kick", "kick", "drain"}));
}

TEST_F(QueueLoopTest, HandlerEventRunsOnEvent) {
    FakeHandler h(/*offer_run=*/false, /*with_event=*/true);
    Loop loop(h, kick_.get(), stop_.get());
    ASSERT_TRUE(eventually([&] { return h.kicks == 1; }));
    signal(h.event());
    ASSERT_TRUE(eventually([&] { return h.events == 1; }));
    signal(stop_.get());
    EXPECT_EQ(loop.join().reason, Reason::kStopped);
    EXPECT_EQ(h.kicks, 1);
    EXPECT_EQ(h.calls(), (std::vector<std::string>{"kick", "event", "drain"}));
}

TEST_F(QueueLoopTest, BrokenQueueEndsTheLoopWithoutAStop) {
    FakeHandler h;
    h.break_after_kicks = 2;
    Loop loop(h, kick_.get(), stop_.get());
    ASSERT_TRUE(eventually([&] { return h.kicks == 1; }));
    signal(kick_.get());
    const QueueLoopEnd end = loop.join();
    EXPECT_EQ(end.reason, Reason::kBroken);
    EXPECT_EQ(h.drains, 1);
    EXPECT_FALSE(readable(stop_.get()));
}

TEST_F(QueueLoopTest, BrokenBeforeTheFirstWait) {
    FakeHandler h;
    h.break_after_kicks = 1;  // the unprompted look already finds a malformed ring
    Loop loop(h, kick_.get(), stop_.get());
    EXPECT_EQ(loop.join().reason, Reason::kBroken);
    EXPECT_EQ(h.calls(), (std::vector<std::string>{"kick", "drain"}));
}

TEST_F(QueueLoopTest, HandlersOwnWaitPointIsUsedWhenOffered) {
    FakeHandler h(/*offer_run=*/true, /*with_event=*/true);
    Loop loop(h, kick_.get(), stop_.get());
    ASSERT_TRUE(eventually([&] { return h.kicks == 1; }));
    signal(kick_.get());
    ASSERT_TRUE(eventually([&] { return h.kicks == 2; }));
    signal(h.event());  // the loop's epoll is not running: nobody calls on_event()
    signal(stop_.get());
    EXPECT_EQ(loop.join().reason, Reason::kStopped);
    EXPECT_EQ(h.runs, 1);
    EXPECT_EQ(h.events, 0);
    EXPECT_EQ(h.calls(), (std::vector<std::string>{"run", "kick", "kick", "drain"}));
}

TEST_F(QueueLoopTest, HandlersOwnWaitPointReportsABrokenQueue) {
    FakeHandler h(/*offer_run=*/true);
    h.break_after_kicks = 2;
    Loop loop(h, kick_.get(), stop_.get());
    ASSERT_TRUE(eventually([&] { return h.kicks == 1; }));
    signal(kick_.get());
    EXPECT_EQ(loop.join().reason, Reason::kBroken);
    EXPECT_EQ(h.drains, 1);
}

TEST_F(QueueLoopTest, WithoutAKickFdTheRingIsPolled) {
    FakeHandler h(/*offer_run=*/true);  // run() needs a kick fd: not offered the queue
    Loop loop(h, -1, stop_.get(), /*poll_ms=*/1);
    ASSERT_TRUE(eventually([&] { return h.kicks >= 5; }));  // no kick was ever sent
    signal(stop_.get());
    EXPECT_EQ(loop.join().reason, Reason::kStopped);
    EXPECT_EQ(h.runs, 0);
    EXPECT_EQ(h.drains, 1);
}

TEST_F(QueueLoopTest, EpollFailureIsReportedAndTheHandlerDrained) {
    FakeHandler h;
    Loop loop(h, kick_.get(), /*stop_fd=*/-1);
    const QueueLoopEnd end = loop.join();
    EXPECT_EQ(end.reason, Reason::kFailed);
    EXPECT_STREQ(end.call, "epoll_ctl");
    EXPECT_EQ(end.error, EBADF);
    EXPECT_EQ(h.kicks, 0);
    EXPECT_EQ(h.drains, 1);
}

}  // namespace
}  // namespace vireo::dev
