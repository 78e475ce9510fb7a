// The daemon side of the hypervisor bridge (docs/bridge.md).
//
// One BridgeServer serves every zone of a BridgeConfig. Device models are created once at start
// and live as long as the server (a blk image stays open, a net port stays on its switch across
// a zone's restart). A hypervisor connects to the unix socket, says which zone it runs (Hello)
// and passes the zone's RAM fd; the server then builds a *session* for that zone: a GuestMemory
// holding only the zone's configured regions, one VirtioMmio per device on the zone's own Bus,
// a bridge area and two doorbells, and one thread serving the zone's request ring. Queue
// processing runs on the transports' queue worker threads, so a slow device never sits between
// a vCPU and its register read, and zones never share a thread. When the hypervisor's socket
// closes, the session ends: transports stop (handlers drained) and the devices are reset.
#pragma once

#include <atomic>
#include <cstdint>
#include <expected>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bridge/protocol.hpp"
#include "bridge/ring.hpp"
#include "bridge/zone_config.hpp"
#include "devices/device.hpp"
#include "memory/guest_memory.hpp"
#include "memory/unique_fd.hpp"
#include "transport/bus.hpp"

namespace vireo::bridge {

// Per-zone counters (relaxed; read by tests and logs).
struct ZoneStats {
    std::atomic<std::uint64_t> requests{0};
    std::atomic<std::uint64_t> errors{0};     // error replies (bad vm, size, address)
    std::atomic<std::uint64_t> bad_vcpu{0};   // requests naming no reply slot: dropped
    std::atomic<std::uint64_t> wakeups{0};    // doorbell wakeups of the zone thread
    std::atomic<std::uint64_t> irqs{0};       // interrupt requests queued
    std::atomic<std::uint64_t> irq_drops{0};  // irq ring stayed full: hypervisor not draining
    std::atomic<std::uint64_t> sessions{0};
};

// What a session serves a request with; separated from the thread so tests and the fuzzer can
// drive one directly.
struct ZoneDispatch {
    std::uint32_t vm_id = 0;
    const transport::Bus* bus = nullptr;
    ZoneStats* stats = nullptr;
};
// Serves every published request of `area` (at most one ring's worth): validates it, performs
// it on the bus, writes the reply slot and wakes the vCPU if it sleeps. Returns how many.
std::size_t serve_requests(Area& area, const ZoneDispatch& zone);

class BridgeServer {
  public:
    static std::expected<std::unique_ptr<BridgeServer>, std::string> create(BridgeConfig cfg);
    ~BridgeServer();
    BridgeServer(const BridgeServer&) = delete;
    BridgeServer& operator=(const BridgeServer&) = delete;

    // Accepts hypervisors until stop() (or SIGTERM/SIGINT when `handle_signals`). Returns the
    // process exit status (0).
    int run(bool handle_signals = true);
    void stop();

    const ZoneStats& stats(std::uint32_t zone_id) const;
    const BridgeConfig& config() const { return cfg_; }

  private:
    struct ZoneState;
    struct Session;
    explicit BridgeServer(BridgeConfig cfg);
    void accept_one(UniqueFd conn);
    std::expected<std::unique_ptr<Session>, std::string> open_session(ZoneState& z,
                                                                      const Hello& hello,
                                                                      UniqueFd mem_fd);
    void reap_sessions();

    BridgeConfig cfg_;
    UniqueFd listen_;
    UniqueFd stop_fd_;  // stop() and sessions that ended wake run() through it
    std::atomic<bool> stop_requested_{false};
    std::vector<std::unique_ptr<ZoneState>> zones_;
    std::mutex mu_;  // zone sessions (setup and reaping only, never the request path)
};

}  // namespace vireo::bridge
