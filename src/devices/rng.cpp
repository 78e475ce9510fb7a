#include "devices/rng.hpp"

#include <fmt/format.h>
#include <sys/random.h>
#include <sys/timerfd.h>
#include <time.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/log.hpp"
#include "memory/unique_fd.hpp"
#include "virtq/features.hpp"

namespace vireo::dev {

namespace {

using virtq::bit;

constexpr std::uint64_t kNsPerSec = 1'000'000'000;
// getrandom(2) calls per segment before a chain is completed with what it has: getrandom never
// blocks once the pool is initialised, but EINTR and short reads are retried a bounded number of
// times rather than forever.
constexpr unsigned kMaxGetrandomTries = 64;

std::uint64_t now_ns() {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * kNsPerSec +
           static_cast<std::uint64_t>(ts.tv_nsec);
}

// Fills up to `want` bytes of the chain's writable part; returns how many were written.
std::uint32_t fill_random(const virtq::DescriptorChain& chain, std::uint32_t want) {
    virtq::ChainWriter w(chain.writable());
    std::vector<iovec> iov;
    w.take_iovecs(std::min<std::size_t>(want, w.remaining()), iov);
    std::uint32_t done = 0;
    for (const iovec& v : iov) {
        auto* p = static_cast<std::uint8_t*>(v.iov_base);
        std::size_t left = v.iov_len;
        for (unsigned tries = 0; left > 0 && tries < kMaxGetrandomTries; ++tries) {
            const ssize_t n = ::getrandom(p, left, 0);
            if (n > 0) {
                p += n;
                left -= static_cast<std::size_t>(n);
                done += static_cast<std::uint32_t>(n);
            } else if (n < 0 && errno != EINTR && errno != EAGAIN) {
                return done;
            }
        }
        if (left > 0) {
            return done;  // used length tells the driver how much it got (§5.4.6.1)
        }
    }
    return done;
}

}  // namespace

class RngQueue final : public QueueHandler {
  public:
    RngQueue(RngDevice& dev, QueueHandle q, UniqueFd timer)
        : dev_(dev), q_(q), timer_(std::move(timer)), rate_(dev.options().max_bytes_per_sec) {
        // A full bucket at start: the guest's first request (boot-time seeding) is served at once.
        capacity_ = rate_;
        tokens_ = capacity_;
        last_refill_ = now_ns();
    }

    void on_kick() override { serve(); }
    int event_fd() const override { return timer_.get(); }
    void on_event() override {
        std::uint64_t expirations;
        // Clears the readable state; EAGAIN (a spurious wakeup) is harmless.
        [[maybe_unused]] auto n = ::read(timer_.get(), &expirations, sizeof expirations);
        timer_armed_ = false;
        serve();
    }
    void drain() override {
        // The queue stops: a chain waiting for the limiter gets what the bucket holds now (at
        // least one byte, §5.4.6.1 "one or more"), rather than be left unanswered.
        if (held_) {
            refill();
            const std::uint32_t want =
                std::max<std::uint64_t>(std::min<std::uint64_t>(tokens_, chunk(chain_)), 1);
            complete(want);
        }
        q_.publish_and_notify();
    }
    bool needs_reset() const override { return needs_reset_; }

  private:
    // The bytes this chain should receive: all its writable bytes, bounded per chain and by
    // what the bucket can ever hold.
    std::uint32_t chunk(const virtq::DescriptorChain& c) const {
        std::uint64_t n = std::min(c.writable_bytes(), kRngMaxChainBytes);
        if (rate_ != 0) {
            n = std::min(n, capacity_);
        }
        return static_cast<std::uint32_t>(n);
    }

    void refill() {
        if (rate_ == 0) {
            return;
        }
        const std::uint64_t now = now_ns();
        const std::uint64_t elapsed = now - last_refill_;
        // Only whole bytes are added; the remainder of the interval is kept for the next refill.
        const std::uint64_t add =
            static_cast<std::uint64_t>(static_cast<unsigned __int128>(elapsed) * rate_ / kNsPerSec);
        if (add == 0) {
            return;
        }
        tokens_ = std::min(capacity_, tokens_ + add);
        last_refill_ =
            tokens_ == capacity_
                ? now
                : last_refill_ + static_cast<std::uint64_t>(static_cast<unsigned __int128>(add) *
                                                            kNsPerSec / rate_);
    }

    // §2.7.10 pattern: notifications off, take everything, re-enable and look once more.
    void serve() {
        while (!needs_reset_) {
            q_.queue().disable_notifications();
            if (!serve_all()) {
                break;  // waiting for the limiter (timer armed) or the queue broke
            }
            if (!q_.queue().enable_notifications()) {
                break;
            }
        }
        q_.publish_and_notify();
    }

    // Serves chains until the ring is empty (true) or the limiter defers one (false).
    bool serve_all() {
        for (;;) {
            if (!held_) {
                auto r = q_.pop(chain_);
                if (!r) {
                    log::guest_warn("rng: {}; stopping until reset", virtq::to_string(r.error()));
                    needs_reset_ = true;
                    return false;
                }
                if (!*r) {
                    return true;
                }
                held_ = true;
            }
            const std::uint32_t want = chunk(chain_);
            if (want == 0) {
                // A buffer the device cannot write into (§5.4.6: the driver must not do this).
                dev_.stats_.empty.fetch_add(1, std::memory_order_relaxed);
                complete(0);
                continue;
            }
            if (rate_ != 0) {
                refill();
                if (tokens_ < want) {
                    defer(want - tokens_);
                    return false;
                }
                tokens_ -= want;
            }
            complete(want);
        }
    }

    void complete(std::uint32_t want) {
        const std::uint32_t n = want == 0 ? 0 : fill_random(chain_, want);
        q_.push(chain_.token(), n);
        held_ = false;
        dev_.stats_.bytes.fetch_add(n, std::memory_order_relaxed);
        dev_.stats_.chains.fetch_add(1, std::memory_order_relaxed);
    }

    // Arms the timer for when the bucket holds `missing` more bytes.
    void defer(std::uint64_t missing) {
        dev_.stats_.deferred.fetch_add(1, std::memory_order_relaxed);
        if (timer_armed_) {
            return;
        }
        const std::uint64_t wait = static_cast<std::uint64_t>(
            (static_cast<unsigned __int128>(missing) * kNsPerSec + rate_ - 1) / rate_);
        itimerspec its{};
        its.it_value.tv_sec = static_cast<time_t>(wait / kNsPerSec);
        its.it_value.tv_nsec = static_cast<long>(wait % kNsPerSec);
        if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0) {
            its.it_value.tv_nsec = 1;  // zero would disarm the timer
        }
        if (::timerfd_settime(timer_.get(), 0, &its, nullptr) != 0) {
            log::guest_warn("rng: timerfd_settime: {}", std::strerror(errno));
            return;
        }
        timer_armed_ = true;
    }

    RngDevice& dev_;
    QueueHandle q_;
    UniqueFd timer_;
    std::uint64_t rate_;  // bytes per second, 0 = unlimited
    std::uint64_t capacity_ = 0;
    std::uint64_t tokens_ = 0;
    std::uint64_t last_refill_ = 0;
    virtq::DescriptorChain chain_;
    bool held_ = false;  // chain_ was popped and waits for the limiter
    bool timer_armed_ = false;
    bool needs_reset_ = false;
};

std::expected<std::unique_ptr<RngDevice>, std::string> RngDevice::create(const RngOptions& o) {
    if (o.queue_size == 0 || o.queue_size > virtq::kMaxQueueSize) {
        return std::unexpected(
            fmt::format("--queue-size {}: must be 1..{}", o.queue_size, virtq::kMaxQueueSize));
    }
    // One second's worth must fit the per-chain arithmetic (nanoseconds × rate in 128 bits is
    // always fine; the cap keeps `capacity_` meaningful).
    constexpr std::uint64_t kMaxRate = std::uint64_t{1} << 40;
    if (o.max_bytes_per_sec > kMaxRate) {
        return std::unexpected(
            fmt::format("--max-bytes-per-sec {}: at most {}", o.max_bytes_per_sec, kMaxRate));
    }
    return std::make_unique<RngDevice>(PrivateTag{}, o);
}

std::uint64_t RngDevice::device_features() const {
    return bit(virtq::kFVersion1) | bit(virtq::kFRingPacked) | bit(virtq::kFEventIdx) |
           bit(virtq::kFIndirectDesc) | bit(virtq::kFRingReset);
}

std::unique_ptr<QueueHandler> RngDevice::start_queue(std::uint16_t index, QueueHandle q) {
    if (index != kRngQueueRequest) {
        return nullptr;
    }
    UniqueFd timer;
    if (options_.max_bytes_per_sec != 0) {
        timer.reset(::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
        if (!timer) {
            log::error("rng: timerfd_create: {}", std::strerror(errno));
            return nullptr;
        }
    }
    return std::make_unique<RngQueue>(*this, q, std::move(timer));
}

}  // namespace vireo::dev
