// vireo::log: level filtering, the sink, the guest-line budget, whole lines from many threads.
#include "base/log.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

// Counts how often it is formatted: guest_warn() past its budget must not format at all.
struct Counted {
    static inline std::atomic<int> formatted{0};
};

}  // namespace

template <>
struct fmt::formatter<Counted> : fmt::formatter<std::string_view> {
    auto format(const Counted&, fmt::format_context& ctx) const {
        Counted::formatted.fetch_add(1);
        return fmt::formatter<std::string_view>::format("counted", ctx);
    }
};

namespace vireo::log {
namespace {

struct Line {
    Level level;
    std::string text;
};

class LogTest : public ::testing::Test {
  protected:
    void SetUp() override { capture(); }
    void TearDown() override {
        set_sink({});
        set_level(Level::kInfo);
    }

    // Routes lines into lines_ (which also restores the guest budget).
    void capture() {
        set_sink([this](Level level, std::string_view text) {
            lines_.push_back({level, std::string(text)});
        });
    }

    std::vector<Line> lines_;
};

TEST_F(LogTest, DefaultLevelDropsTraceOnly) {
    set_level(Level::kInfo);
    trace("t {}", 1);
    info("i {}", 2);
    warn("w {}", 3);
    error("e {}", 4);
    ASSERT_EQ(lines_.size(), 3u);
    EXPECT_EQ(lines_[0].level, Level::kInfo);
    EXPECT_EQ(lines_[0].text, "i 2");
    EXPECT_EQ(lines_[1].level, Level::kWarn);
    EXPECT_EQ(lines_[1].text, "w 3");
    EXPECT_EQ(lines_[2].level, Level::kError);
    EXPECT_EQ(lines_[2].text, "e 4");
}

TEST_F(LogTest, LevelFiltersBelowIt) {
    set_level(Level::kTrace);
    EXPECT_TRUE(enabled(Level::kTrace));
    trace("t");
    set_level(Level::kError);
    EXPECT_FALSE(enabled(Level::kWarn));
    EXPECT_TRUE(enabled(Level::kError));
    info("i");
    warn("w");
    guest_warn("g");
    write(Level::kWarn, "direct");
    error("e");
    ASSERT_EQ(lines_.size(), 2u);
    EXPECT_EQ(lines_[0].text, "t");
    EXPECT_EQ(lines_[1].text, "e");
}

TEST_F(LogTest, DroppedLinesAreNotFormatted) {
    set_level(Level::kInfo);
    Counted::formatted = 0;
    trace("{}", Counted{});
    EXPECT_EQ(Counted::formatted.load(), 0);
    info("{}", Counted{});
    EXPECT_EQ(Counted::formatted.load(), 1);
}

TEST_F(LogTest, DefaultSinkWritesPrefixedLinesToStderr) {
    set_sink({});
    ::testing::internal::CaptureStderr();
    info("hello {}", "world");
    error("disk {} gone", 2);
    guest_warn("bad register {:#x}", 0x10);
    const std::string out = ::testing::internal::GetCapturedStderr();
    EXPECT_EQ(out,
              "vireo: info: hello world\n"
              "vireo: error: disk 2 gone\n"
              "vireo: warn: bad register 0x10\n");
}

TEST_F(LogTest, ReplacedSinkGetsLevelAndBareText) {
    std::vector<std::string> other;
    set_sink([&](Level level, std::string_view text) {
        other.push_back(fmt::format("{}|{}", to_string(level), text));
    });
    warn("to the other sink");
    guest_warn("guest {}", 1);
    capture();
    info("back");
    ASSERT_EQ(other.size(), 2u);
    EXPECT_EQ(other[0], "warn|to the other sink");
    EXPECT_EQ(other[1], "warn|guest 1");
    ASSERT_EQ(lines_.size(), 1u);
    EXPECT_EQ(lines_[0].text, "back");
}

TEST_F(LogTest, GuestLinesStopAtTheBudgetWithOneNotice) {
    Counted::formatted = 0;
    const std::uint64_t n = kGuestLineBudget + 100;
    for (std::uint64_t i = 0; i < n; ++i) {
        guest_warn("bad access {} {}", i, Counted{});
    }
    // The budget's lines, then the notice once; one more line was formatted to find it spent.
    ASSERT_EQ(lines_.size(), kGuestLineBudget + 1);
    for (std::uint64_t i = 0; i < kGuestLineBudget; ++i) {
        EXPECT_EQ(lines_[i].text, fmt::format("bad access {} counted", i));
        EXPECT_EQ(lines_[i].level, Level::kWarn);
    }
    EXPECT_EQ(lines_.back().text, kGuestSuppressedNotice);
    EXPECT_EQ(lines_.back().level, Level::kWarn);
    EXPECT_EQ(Counted::formatted.load(), static_cast<int>(kGuestLineBudget + 1));
    EXPECT_FALSE(guest_lines_open());

    // The host's own warnings are not charged to the guest's budget.
    warn("host trouble");
    error("host failure");
    ASSERT_EQ(lines_.size(), kGuestLineBudget + 3);
    EXPECT_EQ(lines_[kGuestLineBudget + 1].text, "host trouble");
    EXPECT_EQ(lines_[kGuestLineBudget + 2].text, "host failure");
}

TEST_F(LogTest, SettingASinkRestoresTheBudget) {
    for (std::uint64_t i = 0; i <= kGuestLineBudget; ++i) {
        guest_warn("x");
    }
    EXPECT_FALSE(guest_lines_open());
    capture();
    lines_.clear();
    EXPECT_TRUE(guest_lines_open());
    guest_warn("again");
    ASSERT_EQ(lines_.size(), 1u);
    EXPECT_EQ(lines_[0].text, "again");
}

TEST_F(LogTest, GuestBudgetHoldsAcrossThreads) {
    constexpr int kThreads = 8;
    constexpr int kEach = 200;  // 1600 lines offered, far more than the budget
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([t] {
            for (int i = 0; i < kEach; ++i) {
                guest_warn("thread {} line {}", t, i);
            }
        });
    }
    for (auto& th : threads) {
        th.join();
    }
    ASSERT_EQ(lines_.size(), kGuestLineBudget + 1);
    int notices = 0;
    for (const Line& l : lines_) {
        notices += l.text == kGuestSuppressedNotice ? 1 : 0;
    }
    EXPECT_EQ(notices, 1);
    EXPECT_EQ(lines_.back().text, kGuestSuppressedNotice);
}

// The sink is never entered by two threads at once, and every line arrives whole.
TEST_F(LogTest, ConcurrentLinesReachTheSinkOneAtATime) {
    std::atomic<int> inside{0};
    std::atomic<bool> overlapped{false};
    std::vector<std::string> got;
    set_sink([&](Level, std::string_view text) {
        if (inside.fetch_add(1) != 0) {
            overlapped = true;
        }
        got.emplace_back(text);
        inside.fetch_sub(1);
    });
    constexpr int kThreads = 4;
    constexpr int kEach = 500;
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([t] {
            for (int i = 0; i < kEach; ++i) {
                warn("{}:{}:{}", t, i, std::string(64, static_cast<char>('a' + t)));
            }
        });
    }
    for (auto& th : threads) {
        th.join();
    }
    EXPECT_FALSE(overlapped.load());
    ASSERT_EQ(got.size(), static_cast<std::size_t>(kThreads * kEach));
    std::vector<int> next(kThreads, 0);
    for (const std::string& s : got) {
        int t = -1;
        int i = -1;
        char sep = 0;
        std::istringstream in(s);
        in >> t >> sep >> i >> sep;
        ASSERT_TRUE(t >= 0 && t < kThreads) << s;
        EXPECT_EQ(i, next[t]++) << s;  // each thread's lines in its own order
        EXPECT_EQ(s, fmt::format("{}:{}:{}", t, i, std::string(64, static_cast<char>('a' + t))));
    }
}

// The same for the default sink: stderr gets whole lines only, none mixed with another.
TEST_F(LogTest, ConcurrentStderrLinesDoNotInterleave) {
    set_sink({});
    constexpr int kThreads = 4;
    constexpr int kEach = 300;
    ::testing::internal::CaptureStderr();
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([t] {
            for (int i = 0; i < kEach; ++i) {
                error("{} {}", t, std::string(200, static_cast<char>('a' + t)));
            }
        });
    }
    for (auto& th : threads) {
        th.join();
    }
    const std::string out = ::testing::internal::GetCapturedStderr();
    std::istringstream in(out);
    std::string line;
    int count = 0;
    while (std::getline(in, line)) {
        ++count;
        const int t = line.size() > 14 ? line[14] - '0' : -1;
        ASSERT_TRUE(t >= 0 && t < kThreads) << line;
        EXPECT_EQ(line, fmt::format("vireo: error: {} {}", t,
                                    std::string(200, static_cast<char>('a' + t))));
    }
    EXPECT_EQ(count, kThreads * kEach);
}

}  // namespace
}  // namespace vireo::log
