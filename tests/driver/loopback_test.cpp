// Randomized loopback: the freestanding driver queues against the device-side Virtqueue over one
// shared guest memory. Seeded and reproducible (the seed is in the test name).
//
// Each step is one of: the driver stages 1..4 random buffers (1..N segments, readable and
// writable parts) and maybe publishes; the device pops some chains, verifies every readable byte
// and the exact segment list, completes a random subset in random order writing a pattern of a
// random length, and maybe publishes; the driver reaps and verifies every used length and every
// byte of every writable segment (pattern up to the used length, untouched canary after it).
//
// Notifications are modelled: each side "sleeps" only through the real suppression protocol
// (device: enable_notifications() returning false; driver: enable_cb() returning true), and is
// woken only by the other side's kick_prepare()/publish() returning true. The enable and the
// drain happen in separate steps so the other side can act in between (the classic race). If
// both sides sleep while buffers are in flight, a notification was lost: the test fails.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "loopback_env.hpp"
#include "virtq/chain.hpp"

namespace vireo::driver::testing {
namespace {

struct Config {
    bool packed;
    bool event_idx;
    bool indirect;
    std::uint16_t size;
    std::uint32_t seed;
};

std::string name(const Config& c) {
    return std::string(c.packed ? "Packed" : "Split") + (c.event_idx ? "EventIdx" : "NoEventIdx") +
           (c.indirect ? "Indirect" : "Direct") + "Size" + std::to_string(c.size) + "Seed" +
           std::to_string(c.seed);
}

void PrintTo(const Config& c, std::ostream* os) {
    *os << name(c);
}

constexpr std::size_t kMaxSegs = 6;       // > per_slot: also exercises the direct fallback
constexpr std::uint16_t kPerSlot = 4;     // indirect table entries per slot
constexpr std::uint32_t kMaxSegLen = 48;  // bytes
constexpr std::uint8_t kCanary = 0xEE;    // driver pre-fills writable segments with it
constexpr std::uint16_t kCapacity = 64;
// > 2^16: every split config wraps its 16-bit indices; a size-4 ring wraps ~50k times.
constexpr int kChains = 70'000;

std::uint8_t pattern(std::uint32_t nonce, std::size_t i) {
    return static_cast<std::uint8_t>((nonce ^ (nonce >> 13)) + i * 0x9d + (i >> 8));
}

// One buffer the driver owns: its segments live in a fixed slice of shared memory.
struct Request {
    std::vector<Segment> out;
    std::vector<Segment> in;
    std::uint32_t nonce = 0;      // pattern of the readable bytes
    std::uint32_t dev_nonce = 0;  // pattern the device wrote
    std::uint32_t used_len = 0;   // what the device reported it wrote
    std::uint32_t writable = 0;
    bool in_use = false;
    bool device_done = false;
};

struct PendingChain {
    virtq::DescriptorChain chain;
    Request* req;
};

template <typename Driver>
class Harness {
  public:
    explicit Harness(const Config& cfg) : cfg_(cfg), rng_(cfg.seed) {}

    void run() {
        lb_.init(cfg_.size, {cfg_.event_idx, cfg_.indirect}, cfg_.indirect ? kPerSlot : 0);
        if (::testing::Test::HasFatalFailure()) {
            return;
        }
        requests_.resize(cfg_.size);
        req_bytes_ = kMaxSegs * kMaxSegLen;
        data_ = lb_.shm.alloc(req_bytes_ * requests_.size());
        // Both sides start asleep with notifications enabled, as after DRIVER_OK.
        ASSERT_TRUE(lb_.driver.enable_cb());
        ASSERT_FALSE(lb_.device.enable_notifications());

        const long max_steps = 40L * kChains;
        long step = 0;
        while (completed_ < kChains) {
            ASSERT_LT(++step, max_steps) << "no progress";
            switch (rng_() % 3) {
                case 0:
                    driver_submit();
                    break;
                case 1:
                    device_step();
                    break;
                case 2:
                    driver_reap();
                    break;
            }
            if (::testing::Test::HasFatalFailure()) {
                return;
            }
            check_no_lost_notification();
            if (::testing::Test::HasFatalFailure()) {
                return;
            }
        }
        EXPECT_EQ(lb_.driver.num_free(), cfg_.size);
        EXPECT_EQ(lb_.driver.detach_unused(), nullptr);
        EXPECT_FALSE(lb_.device.broken());
        EXPECT_EQ(lb_.driver.error(), DriverError::kOk);
        ::testing::Test::RecordProperty("kicks", std::to_string(kicks_));
        ::testing::Test::RecordProperty("interrupts", std::to_string(interrupts_));
    }

  private:
    std::uint32_t rand(std::uint32_t lo, std::uint32_t hi) {  // inclusive
        return std::uniform_int_distribution<std::uint32_t>(lo, hi)(rng_);
    }
    bool chance(unsigned one_in) { return rng_() % one_in == 0; }

    void driver_submit() {
        const unsigned n = rand(1, 4);
        for (unsigned k = 0; k < n && submitted_ < kChains; ++k) {
            auto it = std::find_if(requests_.begin(), requests_.end(),
                                   [](const Request& r) { return !r.in_use; });
            if (it == requests_.end()) {
                break;
            }
            Request& q = *it;
            std::uint8_t* area = data_ + (it - requests_.begin()) * req_bytes_;
            const std::size_t segs = rand(1, kMaxSegs);
            const std::size_t n_out = rand(0, segs);
            q.out.clear();
            q.in.clear();
            q.nonce = static_cast<std::uint32_t>(rng_());
            q.writable = 0;
            std::size_t ro = 0;
            for (std::size_t s = 0; s < segs; ++s) {
                const std::uint32_t len = rand(1, kMaxSegLen);
                std::uint8_t* p = area + s * kMaxSegLen;
                if (s < n_out) {
                    for (std::uint32_t i = 0; i < len; ++i) {
                        p[i] = pattern(q.nonce, ro++);
                    }
                    q.out.push_back({lb_.shm.gpa(p), len});
                } else {
                    std::fill(p, p + len, kCanary);
                    q.in.push_back({lb_.shm.gpa(p), len});
                    q.writable += len;
                }
            }
            const DriverError e =
                lb_.driver.add_buf({q.out.data(), q.out.size()}, {q.in.data(), q.in.size()}, &q);
            const bool fits_indirect = cfg_.indirect && segs > 1 && segs <= kPerSlot;
            if (!fits_indirect && segs > cfg_.size) {
                ASSERT_EQ(e, DriverError::kChainTooLong);
                continue;
            }
            if (e == DriverError::kNoSpace) {
                const std::size_t needed = fits_indirect ? 1 : segs;
                ASSERT_LT(lb_.driver.num_free(), needed);
                break;
            }
            ASSERT_EQ(e, DriverError::kOk) << to_string(e);
            q.in_use = true;
            q.device_done = false;
            ++submitted_;
            ++in_flight_;
            staged_ = true;
        }
        if (staged_ && !chance(4)) {
            publish_avail();
        }
    }

    void publish_avail() {
        staged_ = false;
        if (lb_.driver.kick_prepare()) {
            ++kicks_;
            device_awake_ = true;
            device_idle_ = false;
        }
    }

    void device_step() {
        if (!device_awake_) {
            return;
        }
        if (chance(2)) {
            lb_.device.disable_notifications();
        }
        if (device_idle_) {
            // The second half of going to sleep, a step after finding the ring empty: the
            // driver may have published meanwhile; enable_notifications() must say so.
            device_idle_ = false;
            if (!lb_.device.enable_notifications()) {
                device_awake_ = false;
                return;
            }
        }
        const unsigned pops = rand(1, 8);
        bool empty = false;
        for (unsigned k = 0; k < pops; ++k) {
            PendingChain pc;
            auto r = lb_.device.pop(lb_.shm.mem, pc.chain);
            ASSERT_TRUE(r.has_value()) << virtq::to_string(r.error());
            if (!*r) {
                empty = true;
                break;
            }
            verify_popped(pc);
            if (::testing::Test::HasFatalFailure()) {
                return;
            }
            pending_.push_back(std::move(pc));
        }
        // Complete a random subset in random order (out-of-order completion).
        std::shuffle(pending_.begin(), pending_.end(), rng_);
        std::size_t done = empty ? pending_.size() : rand(0, pending_.size());
        for (std::size_t k = 0; k < done; ++k) {
            complete(pending_.back());
            pending_.pop_back();
            if (chance(3)) {
                publish_used();
            }
        }
        if (unpublished_ && (empty || chance(2))) {
            publish_used();
        }
        if (empty && pending_.empty() && !unpublished_) {
            device_idle_ = true;
        }
    }

    void verify_popped(PendingChain& pc) {
        const auto& c = pc.chain;
        const iovec& first = !c.readable().empty() ? c.readable()[0] : c.writable()[0];
        const std::size_t off = static_cast<std::uint8_t*>(first.iov_base) - data_;
        ASSERT_LT(off / req_bytes_, requests_.size());
        Request& q = requests_[off / req_bytes_];
        ASSERT_TRUE(q.in_use && !q.device_done) << "device got a buffer not in flight";
        ASSERT_EQ(c.readable().size(), q.out.size());
        ASSERT_EQ(c.writable().size(), q.in.size());
        std::size_t ro = 0;
        for (std::size_t s = 0; s < q.out.size(); ++s) {
            ASSERT_EQ(c.readable()[s].iov_base, lb_.shm.host(q.out[s].addr));
            ASSERT_EQ(c.readable()[s].iov_len, q.out[s].len);
            const auto* p = static_cast<const std::uint8_t*>(c.readable()[s].iov_base);
            for (std::size_t i = 0; i < q.out[s].len; ++i) {
                ASSERT_EQ(p[i], pattern(q.nonce, ro++)) << "readable byte " << ro - 1;
            }
        }
        for (std::size_t s = 0; s < q.in.size(); ++s) {
            ASSERT_EQ(c.writable()[s].iov_base, lb_.shm.host(q.in[s].addr));
            ASSERT_EQ(c.writable()[s].iov_len, q.in[s].len);
        }
        ASSERT_EQ(c.writable_bytes(), q.writable);
        pc.req = &q;
    }

    void complete(PendingChain& pc) {
        Request& q = *pc.req;
        const std::uint32_t w = chance(3) ? q.writable : rand(0, q.writable);
        q.dev_nonce = static_cast<std::uint32_t>(rng_());
        std::vector<std::uint8_t> bytes(w);
        for (std::uint32_t i = 0; i < w; ++i) {
            bytes[i] = pattern(q.dev_nonce, i);
        }
        virtq::ChainWriter writer(pc.chain.writable());
        ASSERT_TRUE(writer.write(bytes));
        q.used_len = static_cast<std::uint32_t>(writer.written());
        q.device_done = true;
        lb_.device.push(pc.chain.token(), q.used_len);
        unpublished_ = true;
    }

    void publish_used() {
        unpublished_ = false;
        if (lb_.device.publish()) {
            ++interrupts_;
            driver_awake_ = true;
            driver_drained_ = false;
        }
    }

    void driver_reap() {
        if (!driver_awake_) {
            return;
        }
        if (chance(2)) {
            lb_.driver.disable_cb();
        }
        if (driver_drained_) {
            // Second half of going to sleep (see device_step): re-enable, then re-check.
            driver_drained_ = false;
            if (lb_.driver.enable_cb()) {
                driver_awake_ = false;
                return;
            }
        }
        const unsigned n = rand(1, 8);
        for (unsigned k = 0; k < n; ++k) {
            std::uint32_t len = ~0u;
            void* token = lb_.driver.get_buf(&len);
            ASSERT_EQ(lb_.driver.error(), DriverError::kOk) << to_string(lb_.driver.error());
            if (token == nullptr) {
                driver_drained_ = true;
                return;
            }
            verify_used(*static_cast<Request*>(token), len);
            if (::testing::Test::HasFatalFailure()) {
                return;
            }
        }
    }

    void verify_used(Request& q, std::uint32_t len) {
        ASSERT_TRUE(q.in_use && q.device_done);
        ASSERT_EQ(len, q.used_len);
        std::size_t k = 0;
        for (const Segment& s : q.in) {
            const std::uint8_t* p = lb_.shm.host(s.addr);
            for (std::uint32_t i = 0; i < s.len; ++i, ++k) {
                const std::uint8_t want = k < len ? pattern(q.dev_nonce, k) : kCanary;
                ASSERT_EQ(p[i], want) << "writable byte " << k << " of " << q.writable;
            }
        }
        q.in_use = false;
        --in_flight_;
        ++completed_;
    }

    // Both sides asleep while buffers are in flight (and nothing is merely staged, which is
    // the test's own choice): whoever holds them was never told. A lost notification.
    void check_no_lost_notification() {
        if (device_awake_ || driver_awake_ || in_flight_ == 0) {
            return;
        }
        if (staged_) {
            publish_avail();
            return;
        }
        FAIL() << "lost notification: both sides asleep with " << in_flight_
               << " buffers in flight after " << completed_ << " completions";
    }

    Config cfg_;
    std::mt19937 rng_;
    Loopback<Driver> lb_;
    std::vector<Request> requests_;
    std::vector<PendingChain> pending_;
    std::uint8_t* data_ = nullptr;
    std::size_t req_bytes_ = 0;
    int submitted_ = 0;
    int completed_ = 0;
    int in_flight_ = 0;
    long kicks_ = 0;
    long interrupts_ = 0;
    bool staged_ = false;
    bool unpublished_ = false;
    bool device_awake_ = false;
    bool device_idle_ = false;
    bool driver_awake_ = false;
    bool driver_drained_ = false;
};

class RandomLoopback : public ::testing::TestWithParam<Config> {};

TEST_P(RandomLoopback, EveryByteAndLengthChecked) {
    const Config& cfg = GetParam();
    if (cfg.packed) {
        Harness<PackedDriver<kCapacity>>(cfg).run();
    } else {
        Harness<SplitDriver<kCapacity>>(cfg).run();
    }
}

std::vector<Config> configs() {
    std::vector<Config> out;
    std::uint32_t seed = 1;
    for (bool packed : {false, true}) {
        for (bool event_idx : {false, true}) {
            for (bool indirect : {false, true}) {
                // Packed sizes need not be powers of two: 5 makes wraps land mid-chain.
                const std::uint16_t middle = packed ? 5 : 8;
                for (std::uint16_t size : {std::uint16_t{4}, middle, std::uint16_t{64}}) {
                    out.push_back({packed, event_idx, indirect, size, seed++});
                }
            }
        }
    }
    return out;
}

INSTANTIATE_TEST_SUITE_P(Driver, RandomLoopback, ::testing::ValuesIn(configs()),
                         [](const auto& info) { return name(info.param); });

}  // namespace
}  // namespace vireo::driver::testing
