#include "riscv/machine.hpp"

#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

extern "C" {
#include <libfdt.h>
}

namespace vireo::riscv {

namespace {

constexpr std::uint64_t kFdtMaxSize = 0x10000;
constexpr std::uint64_t kFdtAlign = 0x200000;  // below the top of RAM, 2 MiB aligned like QEMU
constexpr std::uint64_t kPageMask = kPageSize - 1;
// Instructions a hart runs between looks at the stop flag.
constexpr std::uint64_t kRunSlice = 1u << 20;

// The sifive_test finisher.
class Finisher final : public transport::BusDevice {
  public:
    explicit Finisher(Machine& m) : m_(m) {}
    void read(std::uint64_t, std::span<std::uint8_t> data) override {
        std::memset(data.data(), 0, data.size());
    }
    void write(std::uint64_t offset, std::span<const std::uint8_t> data) override {
        // OpenSBI writes 16 bits (writew), guests of QEMU's model 32; take both.
        if (offset != 0 || (data.size() != 2 && data.size() != 4)) return;
        std::uint32_t v = 0;
        std::memcpy(&v, data.data(), data.size());
        switch (v & 0xffff) {
            case kTestPass:
            case kTestReset:
                m_.finish(0);
                break;
            case kTestFail:
                m_.finish(static_cast<int>(v >> 16));
                break;
            default:
                break;
        }
    }

  private:
    Machine& m_;
};

// Big-endian cell arrays for FDT properties.
class Cells {
  public:
    Cells& u32(std::uint32_t v) {
        v_.push_back(cpu_to_fdt32(v));
        return *this;
    }
    Cells& u64(std::uint64_t v) {
        return u32(static_cast<std::uint32_t>(v >> 32)).u32(static_cast<std::uint32_t>(v));
    }
    const void* data() const { return v_.data(); }
    int size() const { return static_cast<int>(v_.size() * sizeof(fdt32_t)); }

  private:
    std::vector<fdt32_t> v_;
};

constexpr std::uint32_t kPhandleIntc = 1;  // + hart index
constexpr std::uint32_t kPhandlePlic = 0x100;
constexpr std::uint32_t kPhandleTest = 0x101;

std::string fmt_hex(const char* prefix, std::uint64_t v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%#llx", static_cast<unsigned long long>(v));
    return prefix + std::string(buf);
}

}  // namespace

Machine::Machine(const MachineConfig& cfg) : cfg_(cfg), bus_(std::make_shared<transport::Bus>()) {}

Machine::~Machine() {
    stop();
    // The transports go first, while the interrupt lines they raise still exist: resetting a
    // device completes its in-flight buffers and signals the PLIC one last time.
    virtio_.clear();
    bus_.reset();
}

std::expected<std::unique_ptr<Machine>, std::string> Machine::create(const MachineConfig& cfg) {
    if (cfg.harts == 0 || cfg.harts > kMaxHarts) {
        return std::unexpected("harts must be 1.." + std::to_string(kMaxHarts));
    }
    if (cfg.ram_size < (16ull << 20) || cfg.ram_size > (64ull << 30) ||
        (cfg.ram_size & kPageMask)) {
        return std::unexpected("RAM size must be a page multiple between 16 MiB and 64 GiB");
    }
    std::unique_ptr<Machine> m(new Machine(cfg));
    if (auto r = m->mem_.add_memfd(kRamBase, cfg.ram_size, "vireo-riscv-ram"); !r) {
        return std::unexpected("cannot allocate guest RAM: " + std::string(to_string(r.error())));
    }
    PhysMem pm;
    pm.ram = m->mem_.translate(kRamBase, cfg.ram_size);
    pm.ram_base = kRamBase;
    pm.ram_size = cfg.ram_size;
    pm.mmio = m->bus_.get();
    for (std::uint32_t i = 0; i < cfg.harts; ++i) {
        m->irqs_.push_back(std::make_unique<HartIrq>());
        m->irq_ptrs_.push_back(m->irqs_.back().get());
    }
    for (std::uint32_t i = 0; i < cfg.harts; ++i) {
        m->harts_.push_back(std::make_unique<Hart>(i, pm, m->time_, *m->irqs_[i]));
    }
    m->plic_ = std::make_shared<Plic>(m->irq_ptrs_);
    m->clint_ = std::make_shared<Clint>(m->time_, m->irq_ptrs_);
    m->uart_line_ = std::make_unique<Plic::Line>(*m->plic_, kUartIrq);
    m->uart_ = std::make_shared<transport::Uart16550>(cfg.uart_fd, m->uart_line_.get());
    transport::Bus& b = *m->bus_;
    if (!b.insert(kTestBase, kTestSize, std::make_shared<Finisher>(*m)) ||
        !b.insert(kClintBase, kClintSize, m->clint_) || !b.insert(kPlicBase, kPlicSize, m->plic_) ||
        !b.insert(kUartBase, kUartSize, m->uart_)) {
        return std::unexpected("internal: overlapping device ranges");
    }
    return m;
}

std::expected<void, std::string> Machine::add_virtio(dev::VirtioDevice& device, bool legacy) {
    // The first free slot: remote devices may have taken some.
    for (unsigned slot = 0; slot < kVirtioSlots; ++slot) {
        const std::uint64_t addr = kVirtioBase + slot * kVirtioStride;
        const unsigned irq = kVirtioFirstIrq + slot;
        if ((irqs_used_ >> irq) & 1) continue;
        virtio_lines_.push_back(std::make_unique<Plic::Line>(*plic_, irq));
        auto t = std::make_shared<transport::VirtioMmio>(
            device, mem_, *virtio_lines_.back(),
            legacy ? transport::MmioVersion::kLegacy : transport::MmioVersion::kModern);
        if (!bus_->insert(addr, transport::kMmioSize, t)) continue;  // taken by a remote device
        virtio_.push_back(std::move(t));
        virtio_nodes_.push_back({addr, kVirtioStride, irq});
        irqs_used_ |= 1u << irq;
        return {};
    }
    return std::unexpected("all " + std::to_string(kVirtioSlots) + " virtio-mmio slots used");
}

std::expected<void, std::string> Machine::add_remote_virtio(
    std::uint64_t addr, std::uint64_t len, unsigned irq,
    std::shared_ptr<transport::BusDevice> dev) {
    if (irq == 0 || irq >= kPlicSources || ((irqs_used_ >> irq) & 1) != 0) {
        return std::unexpected(fmt_hex("device at ", addr) + ": interrupt " + std::to_string(irq) +
                               " is not a free PLIC source (1.." +
                               std::to_string(kPlicSources - 1) + ", UART uses " +
                               std::to_string(kUartIrq) + ")");
    }
    // Only MMIO space: RAM and the fixed devices are taken on the bus; RAM is not on it.
    if (len == 0 || len > kVirtioStride || addr + len < addr ||
        (addr < kRamBase + cfg_.ram_size && addr + len > kRamBase) ||
        !bus_->insert(addr, len, std::move(dev))) {
        return std::unexpected(fmt_hex("device at ", addr) + " overlaps RAM or another device");
    }
    irqs_used_ |= 1u << irq;
    virtio_nodes_.push_back({addr, len, irq});
    return {};
}

void Machine::set_irq_level(unsigned irq, bool high) {
    if (irq < kPlicSources && irq != kUartIrq && ((irqs_used_ >> irq) & 1) != 0) {
        plic_->set_level(irq, high);
    }
}

std::expected<std::vector<std::uint8_t>, std::string> Machine::build_fdt(
    std::uint64_t initrd_start, std::uint64_t initrd_end) const {
    std::vector<std::uint8_t> buf(kFdtMaxSize);
    void* fdt = buf.data();
    int err = 0;
    auto ck = [&](int r) {
        if (r < 0 && err == 0) err = r;
    };
    auto node_reg = [&](const char* name, std::uint64_t base, std::uint64_t size) {
        char n[64];
        std::snprintf(n, sizeof n, "%s@%llx", name, static_cast<unsigned long long>(base));
        ck(fdt_begin_node(fdt, n));
        Cells reg;
        reg.u64(base).u64(size);
        ck(fdt_property(fdt, "reg", reg.data(), reg.size()));
    };
    const std::uint32_t n_harts = hart_count();

    ck(fdt_create(fdt, static_cast<int>(buf.size())));
    ck(fdt_finish_reservemap(fdt));
    ck(fdt_begin_node(fdt, ""));
    ck(fdt_property_u32(fdt, "#address-cells", 2));
    ck(fdt_property_u32(fdt, "#size-cells", 2));
    ck(fdt_property_string(fdt, "compatible", "riscv-virtio"));
    ck(fdt_property_string(fdt, "model", "vireo,riscv-virt"));

    ck(fdt_begin_node(fdt, "chosen"));
    ck(fdt_property_string(fdt, "bootargs", cfg_.bootargs.c_str()));
    ck(fdt_property_string(fdt, "stdout-path", "/soc/serial@10000000"));
    if (initrd_end > initrd_start) {
        ck(fdt_property_u64(fdt, "linux,initrd-start", initrd_start));
        ck(fdt_property_u64(fdt, "linux,initrd-end", initrd_end));
    }
    ck(fdt_end_node(fdt));

    node_reg("memory", kRamBase, cfg_.ram_size);
    ck(fdt_property_string(fdt, "device_type", "memory"));
    ck(fdt_end_node(fdt));

    ck(fdt_begin_node(fdt, "cpus"));
    ck(fdt_property_u32(fdt, "#address-cells", 1));
    ck(fdt_property_u32(fdt, "#size-cells", 0));
    ck(fdt_property_u32(fdt, "timebase-frequency", TimeBase::kFrequency));
    for (std::uint32_t i = 0; i < n_harts; ++i) {
        char n[32];
        std::snprintf(n, sizeof n, "cpu@%u", i);
        ck(fdt_begin_node(fdt, n));
        ck(fdt_property_string(fdt, "device_type", "cpu"));
        ck(fdt_property_u32(fdt, "reg", i));
        ck(fdt_property_string(fdt, "status", "okay"));
        ck(fdt_property_string(fdt, "compatible", "riscv"));
        ck(fdt_property_string(fdt, "riscv,isa", "rv64imafdc_zicsr_zifencei"));
        ck(fdt_property_string(fdt, "mmu-type", "riscv,sv48"));
        ck(fdt_begin_node(fdt, "interrupt-controller"));
        ck(fdt_property_u32(fdt, "#interrupt-cells", 1));
        ck(fdt_property(fdt, "interrupt-controller", nullptr, 0));
        ck(fdt_property_string(fdt, "compatible", "riscv,cpu-intc"));
        ck(fdt_property_u32(fdt, "phandle", kPhandleIntc + i));
        ck(fdt_end_node(fdt));
        ck(fdt_end_node(fdt));
    }
    ck(fdt_end_node(fdt));  // cpus

    ck(fdt_begin_node(fdt, "soc"));
    ck(fdt_property_u32(fdt, "#address-cells", 2));
    ck(fdt_property_u32(fdt, "#size-cells", 2));
    ck(fdt_property_string(fdt, "compatible", "simple-bus"));
    ck(fdt_property(fdt, "ranges", nullptr, 0));

    node_reg("clint", kClintBase, kClintSize);
    {
        static constexpr char kCompat[] = "sifive,clint0\0riscv,clint0";
        ck(fdt_property(fdt, "compatible", kCompat, sizeof kCompat));
        Cells ie;
        for (std::uint32_t i = 0; i < n_harts; ++i) {
            ie.u32(kPhandleIntc + i).u32(irq::kMsi).u32(kPhandleIntc + i).u32(irq::kMti);
        }
        ck(fdt_property(fdt, "interrupts-extended", ie.data(), ie.size()));
    }
    ck(fdt_end_node(fdt));

    node_reg("plic", kPlicBase, kPlicSize);
    {
        static constexpr char kCompat[] = "sifive,plic-1.0.0\0riscv,plic0";
        ck(fdt_property(fdt, "compatible", kCompat, sizeof kCompat));
        ck(fdt_property_u32(fdt, "#address-cells", 0));
        ck(fdt_property_u32(fdt, "#interrupt-cells", 1));
        ck(fdt_property(fdt, "interrupt-controller", nullptr, 0));
        ck(fdt_property_u32(fdt, "riscv,ndev", kPlicSources - 1));
        ck(fdt_property_u32(fdt, "phandle", kPhandlePlic));
        Cells ie;
        for (std::uint32_t i = 0; i < n_harts; ++i) {
            ie.u32(kPhandleIntc + i).u32(irq::kMei).u32(kPhandleIntc + i).u32(irq::kSei);
        }
        ck(fdt_property(fdt, "interrupts-extended", ie.data(), ie.size()));
    }
    ck(fdt_end_node(fdt));

    node_reg("serial", kUartBase, kUartSize);
    ck(fdt_property_string(fdt, "compatible", "ns16550a"));
    ck(fdt_property_u32(fdt, "clock-frequency", kUartClock));
    ck(fdt_property_u32(fdt, "interrupt-parent", kPhandlePlic));
    ck(fdt_property_u32(fdt, "interrupts", kUartIrq));
    ck(fdt_end_node(fdt));

    node_reg("test", kTestBase, kTestSize);
    {
        static constexpr char kCompat[] = "sifive,test1\0sifive,test0\0syscon";
        ck(fdt_property(fdt, "compatible", kCompat, sizeof kCompat));
        ck(fdt_property_u32(fdt, "phandle", kPhandleTest));
    }
    ck(fdt_end_node(fdt));

    for (const VirtioNode& v : virtio_nodes_) {
        node_reg("virtio_mmio", v.addr, v.len);
        ck(fdt_property_string(fdt, "compatible", "virtio,mmio"));
        ck(fdt_property_u32(fdt, "interrupt-parent", kPhandlePlic));
        ck(fdt_property_u32(fdt, "interrupts", v.irq));
        ck(fdt_end_node(fdt));
    }
    ck(fdt_end_node(fdt));  // soc

    // Linux powers off through the finisher (syscon-poweroff), OpenSBI finds it by compatible.
    ck(fdt_begin_node(fdt, "poweroff"));
    ck(fdt_property_string(fdt, "compatible", "syscon-poweroff"));
    ck(fdt_property_u32(fdt, "regmap", kPhandleTest));
    ck(fdt_property_u32(fdt, "offset", 0));
    ck(fdt_property_u32(fdt, "value", kTestPass));
    ck(fdt_end_node(fdt));

    ck(fdt_end_node(fdt));  // root
    ck(fdt_finish(fdt));
    if (err < 0) {
        return std::unexpected(std::string("device tree: ") + fdt_strerror(err));
    }
    buf.resize(fdt_totalsize(fdt));
    return buf;
}

std::expected<void, std::string> Machine::boot(const BootImages& img) {
    const std::uint64_t ram_end = kRamBase + cfg_.ram_size;
    const std::uint64_t fdt_addr = (ram_end - kFdtMaxSize) & ~(kFdtAlign - 1);
    // fw_dynamic info sits in the page above the FDT's 64 KiB.
    const std::uint64_t info_addr = fdt_addr + kFdtMaxSize;
    const std::uint64_t kernel_addr = kRamBase + kKernelOffset;
    if (img.firmware.empty() ||
        img.firmware.size() > (img.kernel.empty() ? fdt_addr - kRamBase : kKernelOffset)) {
        return std::unexpected("firmware image is empty or too large");
    }
    if (!mem_.write(kRamBase, img.firmware.data(), img.firmware.size())) {
        return std::unexpected("cannot load firmware");
    }
    std::uint64_t kernel_end = kernel_addr;
    if (!img.kernel.empty()) {
        if (img.kernel.size() > fdt_addr - kernel_addr ||
            !mem_.write(kernel_addr, img.kernel.data(), img.kernel.size())) {
            return std::unexpected("kernel does not fit in RAM");
        }
        kernel_end = kernel_addr + img.kernel.size();
    }
    std::uint64_t initrd_start = 0, initrd_end = 0;
    if (!img.initrd.empty()) {
        if (img.initrd.size() > fdt_addr - kernel_end) {
            return std::unexpected("initrd does not fit in RAM");
        }
        initrd_start = (fdt_addr - img.initrd.size()) & ~kPageMask;
        // Leave the kernel room to grow into its BSS: place the initrd as high as possible.
        if (initrd_start < kernel_end) return std::unexpected("initrd does not fit in RAM");
        initrd_end = initrd_start + img.initrd.size();
        if (!mem_.write(initrd_start, img.initrd.data(), img.initrd.size())) {
            return std::unexpected("cannot load initrd");
        }
    }
    auto fdt = build_fdt(initrd_start, initrd_end);
    if (!fdt) return std::unexpected(fdt.error());
    if (!mem_.write(fdt_addr, fdt->data(), fdt->size())) {
        return std::unexpected("cannot place the device tree");
    }
    const FwDynamicInfo info{
        kFwDynamicMagic, kFwDynamicVersion, kernel_addr, kFwNextModeS, 0, ~0ull};
    if (!mem_.write_obj(info_addr, info)) {
        return std::unexpected("cannot place the fw_dynamic info");
    }
    fdt_addr_ = fdt_addr;
    for (auto& h : harts_) {
        h->pc = kRamBase;
        h->x[10] = h->hartid();
        h->x[11] = fdt_addr;
        h->x[12] = info_addr;
    }
    return {};
}

void Machine::finish(int code) {
    int expected = -1;
    exit_code_.compare_exchange_strong(expected, code);
    stop();
}

void Machine::stop() {
    stop_.store(true, std::memory_order_release);
    for (auto& i : irqs_) i->kick();
}

std::string Machine::describe() {
    std::string out;
    for (const auto& h : harts_) out += h->describe() + "\n";
    return out + plic_->describe() + "\n";
}

std::uint64_t Machine::instructions() const {
    std::uint64_t n = 0;
    for (const auto& h : harts_) n += h->instret;
    return n;
}

std::optional<int> Machine::run(double timeout_s) {
    std::vector<std::jthread> threads;
    for (auto& hp : harts_) {
        Hart* h = hp.get();
        threads.emplace_back([this, h] {
            while (!stop_.load(std::memory_order_acquire)) {
                h->run(kRunSlice, stop_);
            }
        });
    }
    if (timeout_s > 0) {
        const auto deadline =
            std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
        while (!stop_.load(std::memory_order_acquire) &&
               std::chrono::steady_clock::now() < deadline) {
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        stop();
    }
    threads.clear();  // joins
    const int code = exit_code_.load();
    if (code < 0) return std::nullopt;
    return code;
}

}  // namespace vireo::riscv
