// A KVM virtual machine running one bare-metal x86-64 guest (docs/vmm.md, docs/boot-protocol.md):
// RAM in a memfd-backed GuestMemory shared by KVM and the device models, a thread per vCPU,
// the UART, exit and vCPU-start ports, virtio-mmio slots, and a PCI host with virtio-pci and
// edu functions. Interrupts: KVM_IRQ_LINE for wired lines, KVM_SIGNAL_MSI for MSI/MSI-X.
// Notifications: KVM ioeventfds on the transports' notify eventfds, the trapped path otherwise.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <expected>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "devices/device.hpp"
#include "memory/guest_memory.hpp"
#include "memory/unique_fd.hpp"
#include "transport/bus.hpp"
#include "transport/uart_16550.hpp"
#include "vmm/config.hpp"
#include "vmm/elf_loader.hpp"
#include "vmm/irq.hpp"
#include "vmm/kvm.hpp"
#include "vmm/serial_input.hpp"
#include "vmm/x86_boot.hpp"

namespace vireo::transport {
class PciHost;
class VirtioMmio;
class VirtioPci;
class EduDevice;
}  // namespace vireo::transport

namespace vireo::dev {
class BlkDevice;
}

namespace vireo::bridge {
class BridgeClient;
}

namespace vireo::vmm {

// Process exit statuses besides the guest's own (docs/boot-protocol.md).
inline constexpr int kExitSetup = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitTimeout = 124;
inline constexpr int kExitSignal = 130;
inline constexpr int kExitVmFailure = 255;

struct VmOutcome {
    int exit_code = 0;
    bool guest_exit = false;  // the guest wrote the exit port
    std::string message;      // why the VM stopped, when not the guest's choice
};

// Exit counters of vCPU 0, for bench mode: the time of its first and last I/O exit.
struct ExitTiming {
    std::uint64_t pio_exits = 0;
    std::uint64_t mmio_exits = 0;
    std::chrono::steady_clock::time_point first;
    std::chrono::steady_clock::time_point last;
};

class Vm {
  public:
    // Builds the machine for `cfg` and loads `image` (parsed from `file`). Opens every device
    // back end; errors name the device and the problem.
    static std::expected<std::unique_ptr<Vm>, std::string> create(
        const VmmConfig& cfg, std::span<const std::uint8_t> file, const ElfImage& image);
    ~Vm();
    Vm(const Vm&) = delete;
    Vm& operator=(const Vm&) = delete;

    // Runs until the guest writes the exit port, the VM fails, cfg.timeout expires, or (with
    // `handle_signals`) SIGINT/SIGTERM arrives. Then stops the vCPUs, the transports (queue
    // workers drained) and flushes block devices.
    VmOutcome run(bool handle_signals = true);

    const ExitTiming& timing() const { return timing_; }
    // --stats: exits by kind over all vCPUs, user-space time spent handling them, and how
    // interrupts were injected. Call after run().
    std::string stats_report() const;

    // --- called from vCPU threads (ports) ---
    void guest_exit(std::uint32_t value);
    void start_vcpu(std::uint32_t index);

  private:
    struct PciVirtio {
        int slot;
        std::shared_ptr<transport::VirtioPci> dev;
        std::uint16_t queues;
        std::optional<std::uint64_t> notify_base;  // where the ioeventfds are registered
        std::optional<std::uint64_t> failed_base;  // ioeventfd refused here: trapped path
    };
    struct ApStart {
        bool requested = false;
        std::uint64_t entry = 0;
        std::uint64_t stack = 0;
    };

    explicit Vm(const VmmConfig& cfg);
    std::expected<void, std::string> build(std::span<const std::uint8_t> file,
                                           const ElfImage& image);
    std::expected<void, std::string> add_device(const DeviceSpec& spec);
    // --bridge: the daemon's devices on the MMIO bus, its interrupt requests on our lines.
    std::expected<void, std::string> attach_bridge();
    void stop(int code, std::string message, bool guest_exit = false);
    void vcpu_thread(KvmVcpu& vcpu);
    bool handle_exit(KvmVcpu& vcpu);  // false: this vCPU stops
    void sync_pci_notify();
    // A wired line on `gsi`: irqfd + resamplefd when enabled and available, else KVM_IRQ_LINE.
    transport::IrqLine& make_line(std::uint32_t gsi);
    // The MSI sink of one PCI function: per-vector irqfds when enabled, else KVM_SIGNAL_MSI.
    transport::MsiSink& make_msi_sink();
    void shutdown();

    VmmConfig cfg_;
    std::unique_ptr<KvmVm> kvm_;
    GuestMemory mem_;
    std::vector<kvm_cpuid_entry2> cpuid_;
    std::vector<std::unique_ptr<KvmVcpu>> vcpus_;
    std::uint64_t entry_ = 0;

    // Device models outlive their transports (destroyed in shutdown() first).
    std::vector<std::unique_ptr<dev::VirtioDevice>> models_;
    std::vector<dev::BlkDevice*> blks_;
    IrqStats irq_stats_;
    bool irqfd_lines_ = false;  // irqfd + resamplefd for wired lines
    bool irqfd_msi_ = false;    // GSI routes + irqfds for MSI/MSI-X
    std::unique_ptr<GsiRouter> router_;
    std::vector<std::unique_ptr<transport::IrqLine>> lines_;
    std::unique_ptr<KvmMsiSink> msi_;
    std::vector<std::unique_ptr<IrqfdMsiSink>> msi_sinks_;
    Resampler resampler_;
    std::unique_ptr<transport::Bus> pio_;
    std::unique_ptr<transport::Bus> mmio_;
    std::unique_ptr<transport::PciHost> pci_host_;
    std::vector<std::shared_ptr<transport::VirtioMmio>> mmio_devs_;
    std::vector<MmioSlotInfo> mmio_slots_;
    std::unique_ptr<bridge::BridgeClient> bridge_;
    std::map<std::uint32_t, transport::IrqLine*> bridge_lines_;  // by the daemon's irq number
    std::vector<PciVirtio> pci_virtio_;
    std::vector<std::shared_ptr<transport::EduDevice>> edus_;
    int next_pci_slot_ = 1;
    bool ioeventfd_warned_ = false;
    UniqueFd serial_fd_;                          // --serial FILE; stdout otherwise
    std::shared_ptr<transport::Uart16550> uart_;  // COM1 (polled: no interrupt line)
    std::unique_ptr<SerialInput> serial_in_;      // stdin → COM1
    std::mutex pci_notify_mu_;

    std::mutex mu_;  // stop state, AP starts, thread list
    std::condition_variable cv_;
    std::atomic<bool> stopping_{false};
    VmOutcome outcome_;
    std::vector<ApStart> ap_start_;
    std::vector<std::thread> threads_;
    ExitTiming timing_;  // vCPU 0 only; read after join
    struct ExitCounters {
        std::atomic<std::uint64_t> pio{0};
        std::atomic<std::uint64_t> mmio{0};
        std::atomic<std::uint64_t> other{0};
        std::atomic<std::uint64_t> handle_ns{0};  // user space between KVM_RUN calls
    } exits_;
};

// A built-in guest for bench mode: `count` `out` instructions to an unclaimed port in a loop,
// then exit code 0 through the exit port. Loaded at kKernelMinAddr as one executable segment.
std::vector<std::uint8_t> pio_loop_guest(std::uint32_t count);
ElfImage raw_image(std::size_t code_size);

}  // namespace vireo::vmm
