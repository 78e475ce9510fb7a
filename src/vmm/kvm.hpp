// Thin RAII wrappers over the KVM ioctls vireo-vmm uses (x86-64): the VM with its in-kernel
// irqchip, memory slots, ioeventfds, interrupt injection, and vCPUs with their kvm_run page.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <expected>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "memory/guest_memory.hpp"
#include "memory/unique_fd.hpp"
#include "transport/irq.hpp"

namespace vireo::vmm {

// Below the LAPIC/IOAPIC and far from RAM and the PCI/virtio windows (docs/boot-protocol.md):
// three pages of real-mode TSS for VMX's emulation of real mode, then the identity-map page.
inline constexpr std::uint64_t kKvmTssAddr = 0xFFFB'D000;
inline constexpr std::uint64_t kKvmIdentityMapAddr = 0xFFFB'C000;

class KvmVm {
  public:
    // Opens /dev/kvm, checks the API version, creates the VM with its in-kernel irqchip (PIC,
    // IOAPIC, LAPICs). Errors name the ioctl and errno.
    static std::expected<std::unique_ptr<KvmVm>, std::string> create();

    int fd() const { return vm_.get(); }
    int kvm_fd() const { return kvm_.get(); }
    std::size_t run_size() const { return run_size_; }
    bool has_ioeventfd_any_length() const { return ioeventfd_any_length_; }

    // Registers a guest memory region as KVM slot `slot`.
    std::expected<void, std::string> map_region(std::uint32_t slot, const MemoryRegion& r);
    // KVM_IOEVENTFD: a guest write of `len` bytes (0: any length) at `addr` (port if `pio`)
    // signals `fd` instead of exiting; with `datamatch` only when the written value matches.
    std::expected<void, std::string> ioeventfd(std::uint64_t addr, std::uint32_t len, bool pio,
                                               std::optional<std::uint64_t> datamatch, int fd,
                                               bool assign);
    // KVM_IRQ_LINE: drives an IOAPIC/PIC input. Thread-safe (any vCPU or worker thread).
    void set_irq_line(std::uint32_t gsi, bool level) const;
    // KVM_SIGNAL_MSI.
    void signal_msi(std::uint64_t addr, std::uint32_t data) const;
    // KVM_GET_SUPPORTED_CPUID.
    std::expected<std::vector<kvm_cpuid_entry2>, std::string> supported_cpuid() const;

  private:
    UniqueFd kvm_;
    UniqueFd vm_;
    std::size_t run_size_ = 0;
    bool ioeventfd_any_length_ = false;
};

// One vCPU: its fd and its mmap'ed kvm_run page.
class KvmVcpu {
  public:
    static std::expected<std::unique_ptr<KvmVcpu>, std::string> create(const KvmVm& vm,
                                                                       std::uint32_t index);
    ~KvmVcpu();
    KvmVcpu(const KvmVcpu&) = delete;
    KvmVcpu& operator=(const KvmVcpu&) = delete;

    int fd() const { return fd_.get(); }
    kvm_run* run() const { return run_; }
    std::uint32_t index() const { return index_; }

  private:
    KvmVcpu() = default;
    UniqueFd fd_;
    kvm_run* run_ = nullptr;
    std::size_t run_size_ = 0;
    std::uint32_t index_ = 0;
};

// A wired interrupt (virtio-mmio, PCI INTx, the UART) driven with KVM_IRQ_LINE from the calling
// thread. The transports keep the level (high while their interrupt status is non-zero), so a
// level-triggered IOAPIC pin re-fires after EOI for as long as the device holds it high.
class KvmIrqLine final : public transport::IrqLine {
  public:
    KvmIrqLine(const KvmVm& vm, std::uint32_t gsi) : vm_(vm), gsi_(gsi) {}
    void set_level(bool high) override { vm_.set_irq_line(gsi_, high); }
    std::uint32_t gsi() const { return gsi_; }

  private:
    const KvmVm& vm_;
    std::uint32_t gsi_;
};

class KvmMsiSink final : public transport::MsiSink {
  public:
    explicit KvmMsiSink(const KvmVm& vm) : vm_(vm) {}
    void send(std::uint64_t addr, std::uint32_t data) override { vm_.signal_msi(addr, data); }

  private:
    const KvmVm& vm_;
};

}  // namespace vireo::vmm
