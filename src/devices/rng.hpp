// virtio-rng (entropy device, virtio 1.2 §5.4), independent of the transport.
//
// One queue (requestq) of device-writable buffers, each filled from getrandom(2). The used
// length is the number of bytes written (§5.4.6.1: the driver reads it; the device may fill less
// than the whole buffer).
//
// Optional rate limit (RngOptions::max_bytes_per_sec): a token bucket holding at most one
// second's worth of bytes. When the bucket cannot pay for the next chain, that chain is held (it
// was already popped; it is never dropped) and a timerfd — the handler's event_fd() — is armed
// for the moment the bucket will have refilled enough. Nothing polls or spins meanwhile.
#pragma once

#include <atomic>
#include <cstdint>
#include <expected>
#include <memory>
#include <string>

#include "devices/device.hpp"
#include "spec/virtio_rng.hpp"
#include "virtq/ring_layout.hpp"

namespace vireo::dev {

// Largest number of bytes one chain receives: bounds the time one chain costs the queue thread.
inline constexpr std::uint32_t kRngMaxChainBytes = 1u << 20;

struct RngOptions {
    std::uint64_t max_bytes_per_sec = 0;  // 0: unlimited
    std::uint16_t queue_size = 256;       // largest queue the driver may configure
};

// Counters (relaxed atomics: statistics, read from any thread).
struct RngStats {
    std::atomic<std::uint64_t> bytes{0};     // random bytes handed to the guest
    std::atomic<std::uint64_t> chains{0};    // chains completed
    std::atomic<std::uint64_t> deferred{0};  // times a chain waited for the rate limiter
    std::atomic<std::uint64_t> empty{0};     // chains without a writable byte (length 0)
};

class RngDevice final : public VirtioDevice {
    struct PrivateTag {};

  public:
    explicit RngDevice(PrivateTag, const RngOptions& o) : options_(o) {}

    // Errors name the bad option.
    static std::expected<std::unique_ptr<RngDevice>, std::string> create(const RngOptions& options);

    std::uint32_t device_id() const override { return kIdRng; }
    std::uint64_t device_features() const override;
    std::uint16_t num_queues() const override { return 1; }
    std::uint16_t max_queue_size() const override { return options_.queue_size; }
    // §5.4.4: no configuration space.
    std::span<const std::uint8_t> config() const override { return {}; }
    void set_features(std::uint64_t /*negotiated*/) override {}
    // nullptr for any index but kRngQueueRequest, or if the timerfd cannot be created.
    std::unique_ptr<QueueHandler> start_queue(std::uint16_t index, QueueHandle q) override;

    const RngOptions& options() const { return options_; }
    const RngStats& stats() const { return stats_; }

  private:
    friend class RngQueue;
    RngOptions options_;
    RngStats stats_;
};

}  // namespace vireo::dev
