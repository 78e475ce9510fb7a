#include "vmm/kvm.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstring>

#include "base/log.hpp"

namespace vireo::vmm {

namespace {

std::unexpected<std::string> sys_error(const char* what) {
    return std::unexpected(fmt::format("{}: {}", what, std::strerror(errno)));
}

}  // namespace

std::expected<std::unique_ptr<KvmVm>, std::string> KvmVm::create() {
    auto vm = std::unique_ptr<KvmVm>(new KvmVm());
    vm->kvm_.reset(::open("/dev/kvm", O_RDWR | O_CLOEXEC));
    if (!vm->kvm_) {
        return sys_error("open /dev/kvm");
    }
    const int version = ::ioctl(vm->kvm_.get(), KVM_GET_API_VERSION, 0);
    if (version != KVM_API_VERSION) {
        return std::unexpected(
            fmt::format("KVM API version {} (need {})", version, KVM_API_VERSION));
    }
    for (const auto& [cap, name] : {std::pair{KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP"},
                                    std::pair{KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"},
                                    std::pair{KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR"},
                                    std::pair{KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID"},
                                    std::pair{KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT"}}) {
        if (::ioctl(vm->kvm_.get(), KVM_CHECK_EXTENSION, cap) <= 0) {
            return std::unexpected(fmt::format("KVM lacks {}", name));
        }
    }
    vm->ioeventfd_any_length_ =
        ::ioctl(vm->kvm_.get(), KVM_CHECK_EXTENSION, KVM_CAP_IOEVENTFD_ANY_LENGTH) > 0;
    const int run_size = ::ioctl(vm->kvm_.get(), KVM_GET_VCPU_MMAP_SIZE, 0);
    if (run_size < static_cast<int>(sizeof(kvm_run))) {
        return sys_error("KVM_GET_VCPU_MMAP_SIZE");
    }
    vm->run_size_ = static_cast<std::size_t>(run_size);
    int fd;
    do {
        fd = ::ioctl(vm->kvm_.get(), KVM_CREATE_VM, 0);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        return sys_error("KVM_CREATE_VM");
    }
    vm->vm_.reset(fd);
    if (::ioctl(fd, KVM_SET_TSS_ADDR, kKvmTssAddr) < 0) {
        return sys_error("KVM_SET_TSS_ADDR");
    }
    std::uint64_t identity = kKvmIdentityMapAddr;
    if (::ioctl(fd, KVM_SET_IDENTITY_MAP_ADDR, &identity) < 0) {
        return sys_error("KVM_SET_IDENTITY_MAP_ADDR");
    }
    if (::ioctl(fd, KVM_CREATE_IRQCHIP, 0) < 0) {
        return sys_error("KVM_CREATE_IRQCHIP");
    }
    // On the VM fd: the answer may depend on the VM (api.rst, KVM_CHECK_EXTENSION).
    vm->irqfd_ = ::ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_IRQFD) > 0;
    vm->irqfd_resample_ = ::ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_IRQFD_RESAMPLE) > 0;
    const int routes = ::ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_IRQ_ROUTING);
    vm->max_routes_ = routes > 0 ? static_cast<std::uint32_t>(routes) : 0;
    return vm;
}

std::expected<void, std::string> KvmVm::map_region(std::uint32_t slot, const MemoryRegion& r) {
    kvm_userspace_memory_region m{};
    m.slot = slot;
    m.guest_phys_addr = r.gpa();
    m.memory_size = r.size();
    m.userspace_addr = reinterpret_cast<std::uint64_t>(r.host());
    if (::ioctl(vm_.get(), KVM_SET_USER_MEMORY_REGION, &m) < 0) {
        return sys_error("KVM_SET_USER_MEMORY_REGION");
    }
    return {};
}

std::expected<void, std::string> KvmVm::ioeventfd(std::uint64_t addr, std::uint32_t len, bool pio,
                                                  std::optional<std::uint64_t> datamatch, int fd,
                                                  bool assign) {
    kvm_ioeventfd e{};
    e.addr = addr;
    e.len = len;
    e.fd = fd;
    if (pio) {
        e.flags |= KVM_IOEVENTFD_FLAG_PIO;
    }
    if (datamatch) {
        e.flags |= KVM_IOEVENTFD_FLAG_DATAMATCH;
        e.datamatch = *datamatch;
    }
    if (!assign) {
        e.flags |= KVM_IOEVENTFD_FLAG_DEASSIGN;
    }
    if (::ioctl(vm_.get(), KVM_IOEVENTFD, &e) < 0) {
        return std::unexpected(fmt::format("KVM_IOEVENTFD {} at {:#x}: {}",
                                           assign ? "assign" : "deassign", addr,
                                           std::strerror(errno)));
    }
    return {};
}

void KvmVm::set_irq_line(std::uint32_t gsi, bool level) const {
    kvm_irq_level l{};
    l.irq = gsi;
    l.level = level ? 1 : 0;
    if (::ioctl(vm_.get(), KVM_IRQ_LINE, &l) < 0) {
        log::guest_warn("vmm: KVM_IRQ_LINE gsi {}: {}", gsi, std::strerror(errno));
    }
}

void KvmVm::signal_msi(std::uint64_t addr, std::uint32_t data) const {
    kvm_msi m{};
    m.address_lo = static_cast<std::uint32_t>(addr);
    m.address_hi = static_cast<std::uint32_t>(addr >> 32);
    m.data = data;
    // Returns 0 when the guest blocked the message (e.g. a disabled LAPIC): not an error.
    if (::ioctl(vm_.get(), KVM_SIGNAL_MSI, &m) < 0) {
        log::guest_warn("vmm: KVM_SIGNAL_MSI {:#x}/{:#x}: {}", addr, data, std::strerror(errno));
    }
}

std::expected<void, std::string> KvmVm::irqfd(std::uint32_t gsi, int fd, int resample_fd,
                                              bool assign) const {
    kvm_irqfd f{};
    f.fd = static_cast<std::uint32_t>(fd);
    f.gsi = gsi;
    if (!assign) {
        f.flags |= KVM_IRQFD_FLAG_DEASSIGN;
    } else if (resample_fd >= 0) {
        f.flags |= KVM_IRQFD_FLAG_RESAMPLE;
        f.resamplefd = static_cast<std::uint32_t>(resample_fd);
    }
    if (::ioctl(vm_.get(), KVM_IRQFD, &f) < 0) {
        return std::unexpected(fmt::format(
            "KVM_IRQFD {} gsi {}: {}", assign ? "assign" : "deassign", gsi, std::strerror(errno)));
    }
    return {};
}

std::expected<void, std::string> KvmVm::set_gsi_routing(
    std::span<const kvm_irq_routing_entry> entries) const {
    KvmFlexArray<kvm_irq_routing_entry> table(entries.size());
    std::copy(entries.begin(), entries.end(), table.entries());
    if (::ioctl(vm_.get(), kKvmSetGsiRouting, table.data()) < 0) {
        return sys_error("KVM_SET_GSI_ROUTING");
    }
    return {};
}

std::expected<std::vector<kvm_cpuid_entry2>, std::string> KvmVm::supported_cpuid() const {
    // api.rst: nent in = room in the buffer; E2BIG = too small, retry with more.
    for (std::uint32_t n = 64; n <= 4096; n *= 2) {
        KvmFlexArray<kvm_cpuid_entry2> c(n);
        if (::ioctl(kvm_.get(), kKvmGetSupportedCpuid, c.data()) == 0) {
            auto used = c.used();
            return std::vector<kvm_cpuid_entry2>(used.begin(), used.end());
        }
        if (errno != E2BIG) {
            break;
        }
    }
    return sys_error("KVM_GET_SUPPORTED_CPUID");
}

std::expected<std::unique_ptr<KvmVcpu>, std::string> KvmVcpu::create(const KvmVm& vm,
                                                                     std::uint32_t index) {
    auto v = std::unique_ptr<KvmVcpu>(new KvmVcpu());
    v->index_ = index;
    v->fd_.reset(::ioctl(vm.fd(), KVM_CREATE_VCPU, index));
    if (!v->fd_) {
        return sys_error("KVM_CREATE_VCPU");
    }
    void* p = ::mmap(nullptr, vm.run_size(), PROT_READ | PROT_WRITE, MAP_SHARED, v->fd_.get(), 0);
    if (p == MAP_FAILED) {
        return sys_error("mmap kvm_run");
    }
    v->run_ = static_cast<kvm_run*>(p);
    v->run_size_ = vm.run_size();
    return v;
}

KvmVcpu::~KvmVcpu() {
    if (run_ != nullptr) {
        ::munmap(run_, run_size_);
    }
}

}  // namespace vireo::vmm
