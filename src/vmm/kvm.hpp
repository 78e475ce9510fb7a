// Thin RAII wrappers over the KVM ioctls vireo-vmm uses (x86-64): the VM with its in-kernel
// irqchip, memory slots, ioeventfds, interrupt injection, and vCPUs with their kvm_run page.
#pragma once

#include <linux/kvm.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <expected>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "memory/guest_memory.hpp"
#include "memory/unique_fd.hpp"

namespace vireo::vmm {

// Below the LAPIC/IOAPIC and far from RAM and the PCI/virtio windows (docs/boot-protocol.md):
// three pages of real-mode TSS for VMX's emulation of real mode, then the identity-map page.
inline constexpr std::uint64_t kKvmTssAddr = 0xFFFB'D000;
inline constexpr std::uint64_t kKvmIdentityMapAddr = 0xFFFB'C000;

// struct kvm_cpuid2 and struct kvm_irq_routing end in a flexible array declared with
// __DECLARE_FLEX_ARRAY, which C++ compiles as an empty struct (size 1) before the array: in C++
// sizeof(kvm_cpuid2) is 12 and the entries start at offset 12, where the kernel has 8 and 8.
// The ioctl numbers encode that sizeof, so KVM_GET_SUPPORTED_CPUID from C++ is an unknown ioctl
// (EINVAL). These are the kernel's layout: an 8-byte header (count + padding/flags), then the
// entries, and the ioctl numbers computed from it.
struct KvmFlexHeader {
    std::uint32_t count;  // nent / nr
    std::uint32_t flags;  // padding / flags
};
static_assert(sizeof(KvmFlexHeader) == 8);
inline constexpr unsigned long kKvmGetSupportedCpuid = _IOWR(KVMIO, 0x05, KvmFlexHeader);
inline constexpr unsigned long kKvmSetCpuid2 = _IOW(KVMIO, 0x90, KvmFlexHeader);
inline constexpr unsigned long kKvmSetGsiRouting = _IOW(KVMIO, 0x6a, KvmFlexHeader);
static_assert(kKvmGetSupportedCpuid == 0xc008ae05 && kKvmSetCpuid2 == 0x4008ae90 &&
              kKvmSetGsiRouting == 0x4008ae6a);

// A kernel-layout header + `n` entries in one 8-byte aligned buffer.
template <class Entry>
class KvmFlexArray {
  public:
    static_assert(alignof(Entry) <= alignof(std::uint64_t));
    explicit KvmFlexArray(std::size_t n)
        : words_((sizeof(KvmFlexHeader) + n * sizeof(Entry) + 7) / 8), capacity_(n) {
        header().count = static_cast<std::uint32_t>(n);
    }
    KvmFlexHeader& header() { return *reinterpret_cast<KvmFlexHeader*>(words_.data()); }
    Entry* entries() {
        return reinterpret_cast<Entry*>(reinterpret_cast<std::byte*>(words_.data()) +
                                        sizeof(KvmFlexHeader));
    }
    // The used entries (header().count, clamped to the buffer).
    std::span<Entry> used() {
        return {entries(), std::min<std::size_t>(header().count, capacity_)};
    }
    void* data() { return words_.data(); }

  private:
    std::vector<std::uint64_t> words_;
    std::size_t capacity_;
};

class KvmVm {
  public:
    // Opens /dev/kvm, checks the API version, creates the VM with its in-kernel irqchip (PIC,
    // IOAPIC, LAPICs). Errors name the ioctl and errno.
    static std::expected<std::unique_ptr<KvmVm>, std::string> create();

    int fd() const { return vm_.get(); }
    int kvm_fd() const { return kvm_.get(); }
    std::size_t run_size() const { return run_size_; }
    bool has_ioeventfd_any_length() const { return ioeventfd_any_length_; }
    // KVM_CAP_IRQFD, KVM_CAP_IRQFD_RESAMPLE, and the size of the GSI routing table
    // (KVM_CAP_IRQ_ROUTING, 0 without it), checked on the VM fd at creation.
    bool has_irqfd() const { return irqfd_; }
    bool has_irqfd_resample() const { return irqfd_resample_; }
    std::uint32_t max_gsi_routes() const { return max_routes_; }

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
    // KVM_IRQFD: a write to `fd` asserts `gsi`; with `resample_fd` the GSI is level-asserted
    // until the guest's EOI, when KVM de-asserts it and signals resample_fd.
    std::expected<void, std::string> irqfd(std::uint32_t gsi, int fd, int resample_fd,
                                           bool assign) const;
    // KVM_SET_GSI_ROUTING: replaces the whole table.
    std::expected<void, std::string> set_gsi_routing(
        std::span<const kvm_irq_routing_entry> entries) const;
    // KVM_GET_SUPPORTED_CPUID.
    std::expected<std::vector<kvm_cpuid_entry2>, std::string> supported_cpuid() const;

  private:
    UniqueFd kvm_;
    UniqueFd vm_;
    std::size_t run_size_ = 0;
    bool ioeventfd_any_length_ = false;
    bool irqfd_ = false;
    bool irqfd_resample_ = false;
    std::uint32_t max_routes_ = 0;
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

}  // namespace vireo::vmm
