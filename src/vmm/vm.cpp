#include "vmm/vm.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>

#include "base/log.hpp"
#include "bridge/client.hpp"
#include "devices/blk.hpp"
#include "devices/console.hpp"
#include "devices/net.hpp"
#include "devices/net_switch.hpp"
#include "devices/net_tap.hpp"
#include "devices/rng.hpp"
#include "transport/edu.hpp"
#include "transport/pci_host.hpp"
#include "transport/uart_16550.hpp"
#include "transport/virtio_mmio.hpp"
#include "transport/virtio_pci.hpp"
#include "virtq/features.hpp"
#include "vmm/boot_info.hpp"
#include "vmm/device_model.hpp"
#include "vmm/x86_boot.hpp"

namespace vireo::vmm {

namespace {

// Sent to a vCPU thread to make KVM_RUN return (EINTR); its handler does nothing.
const int kKickSignal = SIGUSR1;
// An I/O port nothing claims: the bench guest's `out` target (a PC's POST-code port).
inline constexpr std::uint16_t kBenchPort = 0x80;

volatile std::sig_atomic_t g_interrupted = 0;

void on_kick(int) {}
void on_interrupt(int) {
    g_interrupted = 1;
}

void install(int sig, void (*handler)(int)) {
    struct sigaction sa {};
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: KVM_RUN must return EINTR
    ::sigaction(sig, &sa, nullptr);
}

// Port 0xF4: a 32-bit write ends the VM with value & 0xff.
class ExitPort final : public transport::BusDevice {
  public:
    explicit ExitPort(Vm& vm) : vm_(vm) {}
    void read(std::uint64_t, std::span<std::uint8_t> data) override {
        std::fill(data.begin(), data.end(), 0);
    }
    void write(std::uint64_t offset, std::span<const std::uint8_t> data) override {
        if (offset != 0 || data.size() != 4) {
            log::guest_warn("vmm: exit port: {}-byte write ignored (needs 32 bits)", data.size());
            return;
        }
        std::uint32_t v;
        std::memcpy(&v, data.data(), 4);
        vm_.guest_exit(v);
    }

  private:
    Vm& vm_;
};

// Port 0xF8: a 32-bit write of n starts vCPU n.
class VcpuStartPort final : public transport::BusDevice {
  public:
    explicit VcpuStartPort(Vm& vm) : vm_(vm) {}
    void read(std::uint64_t, std::span<std::uint8_t> data) override {
        std::fill(data.begin(), data.end(), 0);
    }
    void write(std::uint64_t offset, std::span<const std::uint8_t> data) override {
        if (offset != 0 || data.size() != 4) {
            log::guest_warn("vmm: vCPU start port: {}-byte write ignored", data.size());
            return;
        }
        std::uint32_t v;
        std::memcpy(&v, data.data(), 4);
        vm_.start_vcpu(v);
    }

  private:
    Vm& vm_;
};

std::string describe_regs(int vcpu_fd) {
    kvm_regs r{};
    if (::ioctl(vcpu_fd, KVM_GET_REGS, &r) < 0) {
        return "registers unavailable";
    }
    return fmt::format("RIP={:#x} RSP={:#x} RFLAGS={:#x}", r.rip, r.rsp, r.rflags);
}

}  // namespace

Vm::Vm(const VmmConfig& cfg) : cfg_(cfg) {}

Vm::~Vm() {
    // run() normally did this; a Vm that never ran still owns live transports.
    shutdown();
}

std::expected<std::unique_ptr<Vm>, std::string> Vm::create(const VmmConfig& cfg,
                                                           std::span<const std::uint8_t> file,
                                                           const ElfImage& image) {
    auto vm = std::unique_ptr<Vm>(new Vm(cfg));
    if (auto ok = vm->build(file, image); !ok) {
        return std::unexpected(ok.error());
    }
    return vm;
}

std::expected<void, std::string> Vm::build(std::span<const std::uint8_t> file,
                                           const ElfImage& image) {
    auto kvm = KvmVm::create();
    if (!kvm) {
        return std::unexpected("KVM: " + kvm.error());
    }
    kvm_ = std::move(*kvm);
    if (auto r = mem_.add_memfd(0, cfg_.mem_size, "vireo-vmm-ram"); !r) {
        return std::unexpected(
            fmt::format("guest RAM ({} bytes): {}", cfg_.mem_size, to_string(r.error())));
    }
    if (auto r = kvm_->map_region(0, *mem_.regions()[0]); !r) {
        return std::unexpected(r.error());
    }
    if (auto r = load_elf(file, image, mem_); !r) {
        return std::unexpected(r.error());
    }
    entry_ = image.entry;
    if (auto r = write_boot_tables(mem_); !r) {
        return std::unexpected(r.error());
    }

    // Serial output.
    int serial_out = STDOUT_FILENO;
    if (!cfg_.serial.empty()) {
        serial_fd_.reset(
            ::open(cfg_.serial.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
        if (!serial_fd_) {
            return std::unexpected(
                fmt::format("--serial: cannot open '{}': {}", cfg_.serial, std::strerror(errno)));
        }
        serial_out = serial_fd_.get();
    }

    // Buses and fixed devices.
    pio_ = std::make_unique<transport::Bus>();
    mmio_ = std::make_unique<transport::Bus>();
    msi_ = std::make_unique<KvmMsiSink>(*kvm_, irq_stats_);
    // irqfd needs KVM_CAP_IRQFD; level lines also the resample flag, MSI also GSI routing.
    if (cfg_.irqfd) {
        irqfd_lines_ = kvm_->has_irqfd() && kvm_->has_irqfd_resample();
        irqfd_msi_ = kvm_->has_irqfd() && kvm_->max_gsi_routes() > kIoapicPins + 16;
        if (!irqfd_lines_ || !irqfd_msi_) {
            log::warn("KVM lacks {}; interrupts take KVM_IRQ_LINE/KVM_SIGNAL_MSI",
                      !kvm_->has_irqfd()            ? "KVM_CAP_IRQFD"
                      : !kvm_->has_irqfd_resample() ? "KVM_CAP_IRQFD_RESAMPLE"
                                                    : "KVM_CAP_IRQ_ROUTING");
        }
    }
    if (irqfd_msi_) {
        router_ = std::make_unique<GsiRouter>(*kvm_);
    }
    uart_ = std::make_shared<transport::Uart16550>(serial_out);
    if (!pio_->insert(boot::kUartPort, transport::kUartPorts, uart_) ||
        !pio_->insert(boot::kExitPort, 4, std::make_shared<ExitPort>(*this)) ||
        !pio_->insert(boot::kVcpuStartPort, 4, std::make_shared<VcpuStartPort>(*this))) {
        return std::unexpected("internal: fixed ports overlap");
    }
    pci_host_ = std::make_unique<transport::PciHost>(*mmio_, pio_.get());
    if (!pci_host_->attach_cf8() || !pci_host_->attach_ecam(boot::kPciEcamBase)) {
        return std::unexpected("internal: PCI host windows overlap");
    }

    for (const DeviceSpec& d : cfg_.devices) {
        if (auto r = add_device(d); !r) {
            return std::unexpected(
                fmt::format("{} ({}): {}", d.where, to_string(d.kind), r.error()));
        }
    }
    if (!cfg_.bridge.empty()) {
        if (auto r = attach_bridge(); !r) {
            return std::unexpected("--bridge " + cfg_.bridge + ": " + r.error());
        }
    }

    BootInfoParams bp;
    bp.mem_size = cfg_.mem_size;
    bp.num_vcpus = cfg_.vcpus;
    bp.mmio = mmio_slots_;
    bp.pci = true;
    bp.cmdline = cfg_.append;
    if (auto r = write_boot_info(mem_, bp); !r) {
        return std::unexpected(r.error());
    }

    // vCPUs: CPUID for all, the entry state for vCPU 0; the others start through port 0xF8.
    // If KVM refuses KVM_GET_SUPPORTED_CPUID, a minimal CPUID (leaves 0 and 1) still tells KVM
    // the vCPU has an APIC, which its LAPIC needs before it accepts the timer's periodic mode.
    if (auto cpuid = kvm_->supported_cpuid(); cpuid) {
        cpuid_ = std::move(*cpuid);
    } else {
        log::warn("{}; vCPUs get a minimal CPUID (leaves 0 and 1)", cpuid.error());
        cpuid_ = minimal_cpuid();
    }
    for (std::uint32_t i = 0; i < cfg_.vcpus; ++i) {
        auto v = KvmVcpu::create(*kvm_, i);
        if (!v) {
            return std::unexpected(fmt::format("vCPU {}: {}", i, v.error()));
        }
        if (!cpuid_.empty()) {
            if (auto r = setup_cpuid((*v)->fd(), cpuid_, i); !r) {
                return std::unexpected(fmt::format("vCPU {}: {}", i, r.error()));
            }
        }
        vcpus_.push_back(std::move(*v));
    }
    // RSP at the top of RAM, 16-byte aligned (mem_size is a multiple of 4 KiB).
    if (auto r = setup_long_mode(vcpus_[0]->fd(), entry_, cfg_.mem_size, 0); !r) {
        return std::unexpected("vCPU 0: " + r.error());
    }
    ap_start_.resize(cfg_.vcpus);
    if (!resampler_.empty()) {
        if (auto r = resampler_.start(); !r) {
            return std::unexpected(r.error());
        }
    }
    if (serial_reads_stdin(cfg_)) {
        auto in = SerialInput::start(STDIN_FILENO, *uart_);
        if (!in) {
            return std::unexpected(in.error());
        }
        serial_in_ = std::move(*in);
    }
    return {};
}

std::expected<void, std::string> Vm::attach_bridge() {
    bridge::ClientOptions o;
    o.socket = cfg_.bridge;
    o.vm_id = cfg_.zone;
    o.vcpus = cfg_.vcpus;
    o.mem_fd = mem_.regions()[0]->fd();  // the daemon maps what its config names for the zone
    auto c = bridge::BridgeClient::connect(o);
    if (!c) {
        return std::unexpected(c.error());
    }
    bridge_ = std::move(*c);
    for (const bridge::DeviceInfo& d : bridge_->devices()) {
        // Trapped accesses go to the daemon; no ioeventfd: QueueNotify is a ring request too.
        if (d.len > UINT32_MAX || !mmio_->insert(d.addr, d.len, bridge_->bus_device(d.addr))) {
            return std::unexpected(
                fmt::format("device at {:#x}+{:#x} does not fit", d.addr, d.len));
        }
        mmio_slots_.push_back({d.addr, static_cast<std::uint32_t>(d.len), d.irq});
        if (!bridge_lines_.contains(d.irq)) {
            bridge_lines_.emplace(d.irq, &make_line(d.irq));
        }
    }
    log::info("bridge: zone {} with {} device(s) from {}", cfg_.zone, bridge_->devices().size(),
              cfg_.bridge);
    bridge_->start_irq_thread([this](std::uint32_t irq, bool level) {
        // Only lines of devices the daemon announced: an unknown irq is dropped.
        if (auto it = bridge_lines_.find(irq); it != bridge_lines_.end()) {
            it->second->set_level(level);
        }
    });
    return {};
}

transport::IrqLine& Vm::make_line(std::uint32_t gsi) {
    if (irqfd_lines_) {
        auto line = IrqfdLine::create(*kvm_, gsi, irq_stats_);
        if (line) {
            resampler_.add(**line);
            lines_.push_back(std::move(*line));
            return *lines_.back();
        }
        log::warn("{}; gsi {} uses KVM_IRQ_LINE", line.error(), gsi);
    }
    lines_.push_back(std::make_unique<KvmIrqLine>(*kvm_, gsi, irq_stats_));
    return *lines_.back();
}

transport::MsiSink& Vm::make_msi_sink() {
    if (!irqfd_msi_) {
        return *msi_;
    }
    msi_sinks_.push_back(std::make_unique<IrqfdMsiSink>(*kvm_, *router_, *msi_, irq_stats_));
    return *msi_sinks_.back();
}

std::expected<void, std::string> Vm::add_device(const DeviceSpec& d) {
    if (d.kind == DeviceKind::kEdu) {
        const int slot = next_pci_slot_++;
        auto edu = std::make_shared<transport::EduDevice>(mem_, make_msi_sink());
        edu->connect_intx(make_line(boot::kPciFirstGsi + static_cast<std::uint32_t>(slot) % 4));
        if (!pci_host_->add(slot, edu)) {
            return std::unexpected(fmt::format("PCI slot {} unavailable", slot));
        }
        edus_.push_back(std::move(edu));
        return {};
    }
    auto made = make_virtio_model(d);
    if (!made) {
        return std::unexpected(made.error());
    }
    if (made->blk != nullptr) {
        blks_.push_back(made->blk);
    }
    std::unique_ptr<dev::VirtioDevice> model = std::move(made->model);
    dev::VirtioDevice& m = *model;
    models_.push_back(std::move(model));

    if (d.transport == Transport::kMmio) {
        const auto n = static_cast<std::uint32_t>(mmio_devs_.size());
        const std::uint64_t base = boot::kMmioBase + n * boot::kMmioStride;
        const std::uint32_t gsi = boot::kMmioFirstGsi + n;
        auto t = std::make_shared<transport::VirtioMmio>(
            m, mem_, make_line(gsi),
            d.legacy ? transport::MmioVersion::kLegacy : transport::MmioVersion::kModern);
        if (!mmio_->insert(base, transport::kMmioSize, t)) {
            return std::unexpected(fmt::format("MMIO slot at {:#x} unavailable", base));
        }
        // QueueNotify carries the queue index (§4.2.2): one ioeventfd per queue, by datamatch.
        for (std::uint16_t q = 0; q < m.num_queues(); ++q) {
            auto r = kvm_->ioeventfd(base + transport::kMmioQueueNotify, 4, /*pio=*/false, q,
                                     t->notify_fd(q), true);
            if (!r && !ioeventfd_warned_) {
                ioeventfd_warned_ = true;
                log::warn("{}; notifications take the trapped path", r.error());
            }
        }
        mmio_devs_.push_back(std::move(t));
        mmio_slots_.push_back({base, boot::kMmioSlotSize, gsi});
        return {};
    }
    const int slot = next_pci_slot_++;
    auto t = std::make_shared<transport::VirtioPci>(m, mem_, make_msi_sink());
    t->connect_intx(make_line(boot::kPciFirstGsi + static_cast<std::uint32_t>(slot) % 4));
    if (!pci_host_->add(slot, t)) {
        return std::unexpected(fmt::format("PCI slot {} unavailable", slot));
    }
    pci_virtio_.push_back({slot, std::move(t), m.num_queues(), std::nullopt, std::nullopt});
    return {};
}

// BARs move only inside configuration writes; after each one the notify ioeventfds follow
// BAR 0. Until they are registered (or if KVM refuses them) the notify write exits and the
// transport signals the same eventfd itself.
void Vm::sync_pci_notify() {
    const std::lock_guard lock(pci_notify_mu_);
    const std::uint32_t len = kvm_->has_ioeventfd_any_length() ? 0 : 2;
    for (PciVirtio& p : pci_virtio_) {
        const auto bar = pci_host_->mapped_bar(p.slot, transport::VirtioPci::kBar);
        if (bar == p.notify_base || (bar && bar == p.failed_base)) {
            continue;
        }
        if (p.notify_base) {
            for (std::uint16_t q = 0; q < p.queues; ++q) {
                (void)kvm_->ioeventfd(*p.notify_base + transport::VirtioPci::notify_offset(q), len,
                                      false, std::nullopt, p.dev->notify_fd(q), false);
            }
            p.notify_base.reset();
        }
        if (!bar) {
            continue;
        }
        std::uint16_t done = 0;
        for (; done < p.queues; ++done) {
            auto r = kvm_->ioeventfd(*bar + transport::VirtioPci::notify_offset(done), len, false,
                                     std::nullopt, p.dev->notify_fd(done), true);
            if (!r) {
                log::warn("PCI slot {}: {}; notifications take the trapped path", p.slot,
                          r.error());
                break;
            }
        }
        if (done == p.queues) {
            p.notify_base = bar;
            log::trace("PCI slot {}: {} notify ioeventfds at BAR 0 = {:#x}", p.slot, p.queues,
                       *bar);
            continue;
        }
        for (std::uint16_t q = 0; q < done; ++q) {
            (void)kvm_->ioeventfd(*bar + transport::VirtioPci::notify_offset(q), len, false,
                                  std::nullopt, p.dev->notify_fd(q), false);
        }
        p.failed_base = bar;
    }
}

void Vm::guest_exit(std::uint32_t value) {
    stop(static_cast<int>(value & 0xff), "", /*guest_exit=*/true);
}

void Vm::start_vcpu(std::uint32_t index) {
    boot::BootInfo bi{};
    if (!mem_.read_obj(boot::kBootInfoAddr, bi)) {
        return;
    }
    const std::lock_guard lock(mu_);
    if (index == 0 || index >= ap_start_.size() || ap_start_[index].requested) {
        log::guest_warn("vmm: vCPU start: index {} ignored (0, out of range or started)", index);
        return;
    }
    ap_start_[index] = {true, bi.ap_entry.get(), bi.ap_stack.get()};
    cv_.notify_all();
}

void Vm::stop(int code, std::string message, bool guest_exit) {
    const std::lock_guard lock(mu_);
    if (stopping_.exchange(true)) {
        return;  // the first reason wins
    }
    outcome_ = {code, guest_exit, std::move(message)};
    for (auto& v : vcpus_) {
        // Seen by KVM at the next KVM_RUN entry; the signal interrupts one already running.
        std::atomic_ref<std::uint8_t>(v->run()->immediate_exit).store(1, std::memory_order_release);
    }
    for (auto& t : threads_) {
        ::pthread_kill(t.native_handle(), kKickSignal);
    }
    cv_.notify_all();
}

void Vm::vcpu_thread(KvmVcpu& vcpu) {
    if (vcpu.index() != 0) {
        ApStart s;
        {
            std::unique_lock lock(mu_);
            cv_.wait(lock, [&] { return stopping_.load() || ap_start_[vcpu.index()].requested; });
            if (stopping_) {
                return;
            }
            s = ap_start_[vcpu.index()];
        }
        auto r = setup_long_mode(vcpu.fd(), s.entry, s.stack, vcpu.index());
        // The in-kernel LAPIC parks APs until INIT/SIPI; this protocol starts them directly.
        kvm_mp_state mp{KVM_MP_STATE_RUNNABLE};
        if (!r || ::ioctl(vcpu.fd(), KVM_SET_MP_STATE, &mp) < 0) {
            stop(kExitVmFailure, fmt::format("vCPU {}: start failed: {}", vcpu.index(),
                                             r ? std::strerror(errno) : r.error()));
            return;
        }
    }
    while (!stopping_.load(std::memory_order_acquire)) {
        if (::ioctl(vcpu.fd(), KVM_RUN, 0) < 0) {
            if (errno == EINTR || errno == EAGAIN) {
                continue;
            }
            stop(kExitVmFailure,
                 fmt::format("vCPU {}: KVM_RUN failed: {}", vcpu.index(), std::strerror(errno)));
            return;
        }
        const auto t0 = std::chrono::steady_clock::now();
        const bool go_on = handle_exit(vcpu);
        exits_.handle_ns.fetch_add(
            static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                           std::chrono::steady_clock::now() - t0)
                                           .count()),
            std::memory_order_relaxed);
        if (!go_on) {
            return;
        }
    }
}

bool Vm::handle_exit(KvmVcpu& vcpu) {
    kvm_run* run = vcpu.run();
    const bool timed = vcpu.index() == 0;
    (run->exit_reason == KVM_EXIT_IO     ? exits_.pio
     : run->exit_reason == KVM_EXIT_MMIO ? exits_.mmio
                                         : exits_.other)
        .fetch_add(1, std::memory_order_relaxed);
    switch (run->exit_reason) {
        case KVM_EXIT_IO: {
            const auto& io = run->io;
            const std::uint64_t bytes = std::uint64_t{io.size} * io.count;
            if (io.size == 0 || io.data_offset > kvm_->run_size() ||
                bytes > kvm_->run_size() - io.data_offset) {
                stop(kExitVmFailure, "KVM_EXIT_IO with a data area outside kvm_run");
                return false;
            }
            auto* data = reinterpret_cast<std::uint8_t*>(run) + io.data_offset;
            for (std::uint32_t i = 0; i < io.count; ++i) {  // rep ins/outs: count > 1
                std::span<std::uint8_t> d(data + i * io.size, io.size);
                if (io.direction == KVM_EXIT_IO_OUT) {
                    pio_->write(io.port, d);
                } else {
                    pio_->read(io.port, d);
                }
            }
            if (io.direction == KVM_EXIT_IO_OUT && io.port >= transport::kPciConfigAddressPort &&
                io.port < transport::kPciConfigAddressPort + transport::kPciConfigPortsLen) {
                sync_pci_notify();
            }
            if (timed) {
                timing_.last = std::chrono::steady_clock::now();
                if (timing_.pio_exits++ == 0) {
                    timing_.first = timing_.last;
                }
            }
            return true;
        }
        case KVM_EXIT_MMIO: {
            auto& m = run->mmio;
            const std::span<std::uint8_t> d(m.data, std::min<std::size_t>(m.len, sizeof(m.data)));
            if (m.is_write) {
                mmio_->write(m.phys_addr, d);
                if (m.phys_addr - boot::kPciEcamBase < boot::kPciEcamSize) {
                    sync_pci_notify();
                }
            } else {
                mmio_->read(m.phys_addr, d);
            }
            if (timed) {
                ++timing_.mmio_exits;
            }
            return true;
        }
        case KVM_EXIT_INTR:
            return true;
        case KVM_EXIT_SHUTDOWN:
            stop(kExitVmFailure,
                 fmt::format("guest triple fault (KVM_EXIT_SHUTDOWN) on vCPU {}: {}", vcpu.index(),
                             describe_regs(vcpu.fd())));
            return false;
        case KVM_EXIT_HLT:
            stop(kExitVmFailure, fmt::format("vCPU {} halted (KVM_EXIT_HLT): {}", vcpu.index(),
                                             describe_regs(vcpu.fd())));
            return false;
        case KVM_EXIT_FAIL_ENTRY:
            stop(kExitVmFailure,
                 fmt::format("vCPU {}: VM entry failed, hardware reason {:#x}", vcpu.index(),
                             run->fail_entry.hardware_entry_failure_reason));
            return false;
        case KVM_EXIT_INTERNAL_ERROR:
            stop(kExitVmFailure, fmt::format("vCPU {}: KVM internal error, suberror {} ({}): {}",
                                             vcpu.index(), run->internal.suberror,
                                             run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION
                                                 ? "instruction emulation failed"
                                                 : "see linux/kvm.h",
                                             describe_regs(vcpu.fd())));
            return false;
        case KVM_EXIT_SYSTEM_EVENT:
            stop(kExitVmFailure, fmt::format("vCPU {}: system event {} (reset/shutdown request)",
                                             vcpu.index(), run->system_event.type));
            return false;
        default:
            stop(kExitVmFailure,
                 fmt::format("vCPU {}: unhandled KVM exit reason {}: {}", vcpu.index(),
                             run->exit_reason, describe_regs(vcpu.fd())));
            return false;
    }
}

VmOutcome Vm::run(bool handle_signals) {
    install(kKickSignal, on_kick);
    if (handle_signals) {
        install(SIGINT, on_interrupt);
        install(SIGTERM, on_interrupt);
    }
    const auto start = std::chrono::steady_clock::now();
    {
        // Held while threads are created, so stop() sees all of them (or none yet).
        const std::lock_guard lock(mu_);
        for (auto& v : vcpus_) {
            threads_.emplace_back([this, &v] { vcpu_thread(*v); });
        }
    }
    const auto deadline = start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                      std::chrono::duration<double>(cfg_.timeout));
    while (!stopping_.load()) {
        {
            std::unique_lock lock(mu_);
            cv_.wait_for(lock, std::chrono::milliseconds(50), [&] { return stopping_.load(); });
        }
        if (g_interrupted) {
            stop(kExitSignal, "interrupted by a signal (SIGINT/SIGTERM)");
        } else if (cfg_.timeout > 0 && std::chrono::steady_clock::now() >= deadline) {
            stop(kExitTimeout,
                 fmt::format("timeout: guest still running after {} s (--timeout)", cfg_.timeout));
        }
    }
    for (auto& t : threads_) {
        t.join();
    }
    shutdown();
    const std::lock_guard lock(mu_);
    return outcome_;
}

void Vm::shutdown() {
    // vCPUs are joined: no bus access is in flight. Drop the buses' and the host's references so
    // the transports die here; their destructors stop the queue workers (handlers drained).
    {
        const std::lock_guard lock(mu_);
        threads_.clear();  // all joined (or never started)
    }
    serial_in_.reset();
    pci_host_.reset();
    pio_.reset();
    mmio_.reset();
    bridge_.reset();  // its interrupt thread uses the lines, which outlive it
    pci_virtio_.clear();
    mmio_devs_.clear();
    edus_.clear();
    resampler_.stop();  // the lines outlive it
    for (dev::BlkDevice* b : blks_) {
        if (!b->flush_all()) {
            log::error("flushing {} failed", b->options().path);
        }
    }
    blks_.clear();
    models_.clear();
}

std::string Vm::stats_report() const {
    auto get = [](const std::atomic<std::uint64_t>& a) {
        return a.load(std::memory_order_relaxed);
    };
    const std::uint64_t io = get(exits_.pio) + get(exits_.mmio);
    const std::uint64_t all = io + get(exits_.other);
    return fmt::format(
        "vireo-vmm stats: exits {} (pio {}, mmio {}, other {}); user-space handling {:.2f} us "
        "per exit\n"
        "vireo-vmm stats: interrupts: lines {} (irqfd {}, KVM_IRQ_LINE {}), resamples {} "
        "(re-asserted {}); msi {} (irqfd {}, KVM_SIGNAL_MSI {}, re-routed {})\n",
        all, get(exits_.pio), get(exits_.mmio), get(exits_.other),
        all ? static_cast<double>(get(exits_.handle_ns)) / 1000.0 / static_cast<double>(all) : 0.0,
        irqfd_lines_ ? "irqfd+resample" : "KVM_IRQ_LINE", get(irq_stats_.line_irqfd),
        get(irq_stats_.line_ioctl), get(irq_stats_.line_resample), get(irq_stats_.line_reassert),
        irqfd_msi_ ? "irqfd" : "KVM_SIGNAL_MSI", get(irq_stats_.msi_irqfd),
        get(irq_stats_.msi_ioctl), get(irq_stats_.msi_reroute));
}

std::vector<std::uint8_t> pio_loop_guest(std::uint32_t count) {
    // Hand-assembled (64-bit mode):
    //   mov $kBenchPort, %dx ; mov $count, %ecx ; 1: out %al, (%dx) ; loop 1b
    //   mov $kExitPort, %dx ; xor %eax, %eax ; out %eax, (%dx) ; 2: hlt ; jmp 2b
    std::vector<std::uint8_t> c = {0x66, 0xba, kBenchPort & 0xff, kBenchPort >> 8, 0xb9};
    for (int i = 0; i < 4; ++i) {
        c.push_back(static_cast<std::uint8_t>(count >> (8 * i)));
    }
    if (count == 0) {
        c.insert(c.end(), {0xeb, 0x03});  // jmp over the loop: `loop` with ecx = 0 wraps
    }
    c.insert(c.end(), {0xee, 0xe2, 0xfd});
    c.insert(c.end(), {0x66, 0xba, boot::kExitPort & 0xff, boot::kExitPort >> 8, 0x31, 0xc0, 0xef,
                       0xf4, 0xeb, 0xfd});
    return c;
}

ElfImage raw_image(std::size_t code_size) {
    ElfImage img;
    img.entry = boot::kKernelMinAddr;
    img.segments.push_back({boot::kKernelMinAddr, 0, code_size, code_size, true});
    return img;
}

}  // namespace vireo::vmm
