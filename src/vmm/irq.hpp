// Interrupt injection for vireo-vmm (docs/vmm.md, "Interrupts"). Two ways per kind:
//
// * wired, level-triggered lines (virtio-mmio, PCI INTx, edu INTx): an irqfd with a resamplefd
//   (KVM_IRQFD_FLAG_RESAMPLE). A write to the irqfd asserts the GSI; KVM holds it asserted
//   until the guest's EOI reaches the IOAPIC, then de-asserts it and signals the resamplefd.
//   The Resampler thread then re-checks the transport's level and asserts again if the device
//   still holds the line. Fallback: KVM_IRQ_LINE with the level, from the caller's thread.
// * MSI/MSI-X: one GSI with an MSI route per vector (KVM_SET_GSI_ROUTING) and an irqfd on it,
//   so a queue worker signals an eventfd instead of making an ioctl; the route is rewritten
//   when the vector's message changes. Fallback: KVM_SIGNAL_MSI.
//
// The fallbacks are used when KVM lacks KVM_CAP_IRQFD / KVM_CAP_IRQFD_RESAMPLE /
// KVM_CAP_IRQ_ROUTING, when registration fails, and with vireo-vmm --no-irqfd.
#pragma once

#include <atomic>
#include <cstdint>
#include <expected>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "memory/unique_fd.hpp"
#include "transport/irq.hpp"
#include "vmm/kvm.hpp"

namespace vireo::vmm {

// KVM's IOAPIC has 24 pins, GSIs 0–23; MSI routes take GSIs from here up.
inline constexpr std::uint32_t kIoapicPins = 24;
inline constexpr std::uint32_t kFirstMsiGsi = kIoapicPins;

// Counters for --stats (relaxed atomics: read after the VM stopped).
struct IrqStats {
    std::atomic<std::uint64_t> line_ioctl{0};     // KVM_IRQ_LINE raising a line
    std::atomic<std::uint64_t> line_irqfd{0};     // irqfd writes asserting a line
    std::atomic<std::uint64_t> line_resample{0};  // resample events
    std::atomic<std::uint64_t> line_reassert{0};  // ... that found the line still high
    std::atomic<std::uint64_t> msi_ioctl{0};      // KVM_SIGNAL_MSI
    std::atomic<std::uint64_t> msi_irqfd{0};      // irqfd writes for MSI/MSI-X
    std::atomic<std::uint64_t> msi_reroute{0};    // KVM_SET_GSI_ROUTING for a changed vector
};

// The GSI routing table: the default irqchip routes (GSI 0–15 to the PIC and IOAPIC, 16–23 to
// the IOAPIC: KVM_SET_GSI_ROUTING replaces KVM's defaults, so they are restated) plus MSI routes.
class GsiRouter {
  public:
    explicit GsiRouter(const KvmVm& vm) : vm_(vm) {}
    // A new GSI routed to the message; nullopt when the table is full or KVM refuses.
    std::optional<std::uint32_t> add_msi(std::uint64_t addr, std::uint32_t data);
    bool update_msi(std::uint32_t gsi, std::uint64_t addr, std::uint32_t data);

  private:
    std::expected<void, std::string> commit();  // mu_ held

    const KvmVm& vm_;
    std::mutex mu_;
    std::map<std::uint32_t, std::pair<std::uint64_t, std::uint32_t>> msi_;
    std::uint32_t next_gsi_ = kFirstMsiGsi;
};

// A wired line through KVM_IRQ_LINE (the fallback).
class KvmIrqLine final : public transport::IrqLine {
  public:
    KvmIrqLine(const KvmVm& vm, std::uint32_t gsi, IrqStats& stats)
        : vm_(vm), gsi_(gsi), stats_(stats) {}
    void set_level(bool high) override;

  private:
    const KvmVm& vm_;
    std::uint32_t gsi_;
    IrqStats& stats_;
};

// A wired line through an irqfd + resamplefd.
class IrqfdLine final : public transport::IrqLine {
  public:
    static std::expected<std::unique_ptr<IrqfdLine>, std::string> create(const KvmVm& vm,
                                                                         std::uint32_t gsi,
                                                                         IrqStats& stats);
    // Raising asserts the GSI (an eventfd write); lowering only records the level: KVM keeps
    // the GSI asserted until the EOI, and the resample then sees the line low.
    void set_level(bool high) override;
    // The guest's EOI de-asserted the GSI: assert again if the device still holds the line.
    void resample();
    int resample_fd() const { return resample_.get(); }

  private:
    IrqfdLine(std::uint32_t gsi, IrqStats& stats) : gsi_(gsi), stats_(stats) {}
    void assert_line();

    std::uint32_t gsi_;
    IrqStats& stats_;
    UniqueFd trigger_;
    UniqueFd resample_;
    std::atomic<bool> level_{false};
};

// Waits on the resamplefds of IrqfdLines and calls IrqfdLine::resample().
class Resampler {
  public:
    ~Resampler() { stop(); }
    // Registers lines before start().
    void add(IrqfdLine& line) { lines_.push_back(&line); }
    bool empty() const { return lines_.empty(); }
    std::expected<void, std::string> start();
    void stop();

  private:
    void run();

    std::vector<IrqfdLine*> lines_;
    UniqueFd epoll_;
    UniqueFd stop_;
    std::thread thread_;
};

// MSI through KVM_SIGNAL_MSI (the fallback).
class KvmMsiSink final : public transport::MsiSink {
  public:
    KvmMsiSink(const KvmVm& vm, IrqStats& stats) : vm_(vm), stats_(stats) {}
    void send(std::uint64_t addr, std::uint32_t data) override;

  private:
    const KvmVm& vm_;
    IrqStats& stats_;
};

// MSI/MSI-X of one PCI function through per-vector irqfds on MSI routes. A vector gets its
// route and irqfd when it first fires; a changed message rewrites the route. Vectors that get
// no route (table full, KVM refuses) use the fallback sink.
class IrqfdMsiSink final : public transport::MsiSink {
  public:
    IrqfdMsiSink(const KvmVm& vm, GsiRouter& router, KvmMsiSink& fallback, IrqStats& stats)
        : vm_(vm), router_(router), fallback_(fallback), stats_(stats) {}
    // Plain MSI (one vector, e.g. edu).
    void send(std::uint64_t addr, std::uint32_t data) override { send_vector(0, addr, data); }
    void send_vector(std::uint16_t vector, std::uint64_t addr, std::uint32_t data) override;

  private:
    struct Route {
        std::uint32_t gsi = 0;
        UniqueFd fd;
        std::uint64_t addr = 0;
        std::uint32_t data = 0;
        bool usable = false;
    };

    const KvmVm& vm_;
    GsiRouter& router_;
    KvmMsiSink& fallback_;
    IrqStats& stats_;
    std::mutex mu_;
    std::map<std::uint16_t, Route> routes_;  // at most the function's vector count
};

}  // namespace vireo::vmm
