// The hypervisor side of the bridge (docs/bridge.md): what hvisor's kernel module does for
// hvisor-tool, as a library. vireo-vmm --bridge uses it; so do the tests and the benchmark.
//
// connect() hands the zone's RAM fd to the daemon and maps the bridge area it gets back.
// access() is called on a vCPU thread for each trapped MMIO access: it queues the request on
// the multi-producer request ring (no lock), rings the doorbell only if the daemon sleeps, and
// waits for the reply in the vCPU's own slot (a short spin, then a futex). Interrupts the daemon
// asks for arrive on the irq ring; start_irq_thread() delivers them to a callback.
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

#include "bridge/protocol.hpp"
#include "bridge/ring.hpp"
#include "memory/unique_fd.hpp"
#include "transport/bus.hpp"

namespace vireo::bridge {

struct ClientOptions {
    std::string socket;
    std::uint32_t vm_id = 0;
    std::uint32_t vcpus = 1;
    int mem_fd = -1;  // the zone's RAM (duplicated); -1 when the daemon's config names files
    std::uint32_t ring_entries = 0;  // 0: the daemon's default
    std::uint32_t irq_entries = 0;
    int spin = 256;  // reply polls (pause) before yielding, then sleeping on the futex
};

struct AccessResult {
    std::uint32_t status = kReplyOk;  // kReply*
    std::uint64_t value = 0;          // reads; all ones on error
};

class BridgeClient {
  public:
    static std::expected<std::unique_ptr<BridgeClient>, std::string> connect(
        const ClientOptions& o);
    ~BridgeClient();
    BridgeClient(const BridgeClient&) = delete;
    BridgeClient& operator=(const BridgeClient&) = delete;

    const std::vector<DeviceInfo>& devices() const { return devices_; }
    std::uint32_t vm_id() const { return vm_id_; }
    std::uint32_t vcpus() const { return area_.vcpus(); }

    // One trapped access from vCPU `vcpu` (< vcpus(); one access in flight per vCPU). Returns
    // an error status (value all ones) if the daemon is gone.
    AccessResult access(std::uint32_t vcpu, std::uint64_t addr, std::uint8_t size, bool write,
                        std::uint64_t value = 0);

    // Delivers every interrupt request for this VM to `inject(irq, level)` on a thread of its
    // own until destruction or disconnect.
    void start_irq_thread(std::function<void(std::uint32_t irq, bool level)> inject);
    // Without the thread (benchmarks): takes the queued interrupt requests now.
    std::size_t poll_irqs(const std::function<void(std::uint32_t, bool)>& inject);
    int irq_doorbell() const { return irq_doorbell_.get(); }

    bool connected() const { return alive_.load(std::memory_order_relaxed); }

    // A BusDevice forwarding accesses to the daemon, for a VMM's MMIO bus. The calling thread
    // picks its vCPU slot on first use (vCPU threads are the only callers on a VMM's bus).
    std::shared_ptr<transport::BusDevice> bus_device(std::uint64_t base);

  private:
    BridgeClient() = default;
    void irq_loop();
    std::uint32_t thread_slot();

    std::uint32_t vm_id_ = 0;
    int spin_ = 0;
    UniqueFd sock_;
    Area area_;
    UniqueFd req_doorbell_;
    UniqueFd irq_doorbell_;
    UniqueFd stop_;
    std::vector<DeviceInfo> devices_;
    std::vector<std::uint32_t> tags_;  // per vCPU, touched only by that vCPU's thread
    std::atomic<std::uint32_t> next_slot_{0};
    std::atomic<bool> alive_{true};
    std::function<void(std::uint32_t, bool)> inject_;
    std::mutex irq_mu_;  // consumers of the irq ring (irq thread, vCPUs after a write)
    std::thread irq_thread_;
};

}  // namespace vireo::bridge
