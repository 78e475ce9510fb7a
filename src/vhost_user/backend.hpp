// The vhost-user back end for one front-end connection: the message state machine, guest
// memory, and one Vring (state + worker thread) per device queue.
//
// Threading: handle() runs on the connection's (event loop) thread. Each started-and-enabled
// ring has a worker thread that owns the ring's QueueHandler while it runs. Anything that
// changes what a worker uses (memory table, ring fds, features) first stops the worker — the
// handler drains, the ring position is saved — then applies the change and restarts it.
#pragma once

#include <atomic>
#include <cstdint>
#include <expected>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "devices/device.hpp"
#include "memory/guest_memory.hpp"
#include "vhost_user/inflight.hpp"
#include "vhost_user/message.hpp"
#include "vhost_user/validator.hpp"
#include "virtq/virtqueue.hpp"

namespace vireo::vhost_user {

// §2.1: device status bits the back end itself sets.
inline constexpr std::uint8_t kStatusNeedsReset = 0x40;  // DEVICE_NEEDS_RESET

// Protocol features this back end implements and offers.
inline constexpr std::uint64_t kOfferedProtocolFeatures =
    (1ull << kPfMq) | (1ull << kPfReplyAck) | (1ull << kPfSlaveReq) | (1ull << kPfConfig) |
    (1ull << kPfInflightShmfd) | (1ull << kPfResetDevice) | (1ull << kPfConfigureMemSlots) |
    (1ull << kPfStatus);

// Memory slots offered via GET_MAX_MEM_SLOTS (CONFIGURE_MEM_SLOTS).
inline constexpr std::uint32_t kMaxMemSlots = 32;

// Poll interval for a ring started without a kick fd (SET_VRING_KICK with the "no fd" flag).
inline constexpr int kPollIntervalMs = 1;

// Signals the driver through the ring's call eventfd.
class CallInterrupt final : public dev::Interrupt {
  public:
    void set_fd(int fd) { fd_ = fd; }
    void signal() override;

  private:
    int fd_ = -1;
};

struct Vring {
    std::uint16_t index = 0;
    std::uint32_t num = 0;  // 0 until SET_VRING_NUM
    VringAddr addr{};
    bool has_addr = false;
    // SET_VRING_BASE value; updated from the ring whenever the worker stops. Split: next avail
    // index. Packed: avail slot | avail wrap << 15, and used likewise in bits 16..31 (QEMU).
    std::uint32_t base = 0;
    UniqueFd kick;
    bool kick_polling = false;  // started with the "no fd" flag
    UniqueFd call;
    UniqueFd err;
    bool started = false;  // ring states: stopped / started (see "Ring states")
    bool enabled = false;
    std::atomic<bool> failed{false};  // a QueueError stopped the ring until reset

    virtq::Virtqueue vq;
    CallInterrupt irq;
    std::unique_ptr<dev::InflightTracker> inflight;  // SplitInflight or PackedInflight
    std::unique_ptr<dev::QueueHandler> handler;
    UniqueFd stop;  // eventfd that tells the worker to drain and exit
    std::thread worker;
};

class Backend {
  public:
    // `worker_init` runs first on every ring worker thread (the daemon narrows its sandbox
    // there); if it fails, that ring fails instead of running unconfined.
    Backend(dev::VirtioDevice& device, std::string name,
            std::function<std::expected<void, std::string>()> worker_init = {});
    ~Backend();
    Backend(const Backend&) = delete;
    Backend& operator=(const Backend&) = delete;

    // Validates and handles one message received on `sock`, sending any reply there.
    // Returns false when the connection must be closed (fatal protocol error).
    bool handle(Message& msg, int sock);

    // Drains and stops every ring (shutdown, disconnect). The device is reset by ~Backend.
    void stop_all_rings();

    std::uint8_t status() const { return status_.load(std::memory_order_relaxed); }
    std::uint64_t acked_features() const { return acked_features_; }
    std::uint64_t acked_protocol_features() const { return acked_protocol_; }
    const GuestMemory& memory() const { return memory_; }
    bool ring_running(std::uint16_t i) const { return vrings_.at(i)->worker.joinable(); }

  private:
    using Result = std::expected<void, std::string>;

    Result dispatch(Message& msg, int sock, bool& replied);
    bool has_protocol(unsigned bit) const { return (acked_protocol_ & (1ull << bit)) != 0; }
    // A front end may send SET_PROTOCOL_FEATURES only after seeing VHOST_USER_F_PROTOCOL_FEATURES
    // offered, so that message counts as negotiation too: QEMU's net front end sends
    // SET_VRING_ENABLE after it but before SET_FEATURES acks the bit.
    bool protocol_features_negotiated() const {
        return protocol_features_set_ || (acked_features_ & (1ull << kFProtocolFeatures)) != 0;
    }
    ValidationLimits limits() const;

    bool reply(int sock, const Message& req, std::span<const std::uint8_t> payload,
               std::span<const int> fds = {});
    bool reply_u64(int sock, const Message& req, std::uint64_t v) {
        return reply(sock, req, bytes_of(v));
    }

    // --- message handlers -------------------------------------------------------------
    Result set_features(std::uint64_t features);
    Result set_protocol_features(std::uint64_t features);
    Result set_mem_table(Message& msg);
    Result add_mem_reg(Message& msg);
    Result rem_mem_reg(const Message& msg);
    Result set_vring_num(const VringState& s);
    Result set_vring_addr(const VringAddr& a);
    Result set_vring_base(const VringState& s);
    Result set_vring_fd(Message& msg);
    Result set_vring_enable(const VringState& s);
    Result get_config(const Message& msg, int sock);
    Result set_config(const Message& msg);
    Result get_inflight_fd(const Message& msg, int sock);
    Result set_inflight_fd(Message& msg);
    void reset_device();

    // --- rings --------------------------------------------------------------------------
    bool startable(const Vring& vr) const;
    void start_ring(Vring& vr);
    void stop_ring(Vring& vr);
    void restart_all();
    void fail_ring(Vring& vr, std::string_view why);
    // Tells the front end the config space (device status) changed, if it gave us a channel.
    void notify_config_change();
    void worker_loop(Vring& vr);
    // Stops running rings, runs f, restarts the ones that can run.
    template <typename F>
    Result with_rings_stopped(F&& f);

    dev::VirtioDevice& device_;
    std::string name_;
    GuestMemory memory_;
    InflightBuffer inflight_;
    // Back-end → front-end channel (SET_SLAVE_REQ_FD); workers may write to it, hence the lock.
    UniqueFd backend_req_;
    std::mutex backend_req_mutex_;
    std::vector<std::unique_ptr<Vring>> vrings_;
    std::function<std::expected<void, std::string>()> worker_init_;
    std::uint64_t acked_features_ = 0;
    std::uint64_t acked_protocol_ = 0;
    bool protocol_features_set_ = false;  // SET_PROTOCOL_FEATURES seen
    bool features_set_ = false;
    bool owner_ = false;
    std::atomic<std::uint8_t> status_{0};
};

}  // namespace vireo::vhost_user
