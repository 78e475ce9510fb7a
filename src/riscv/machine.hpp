// An RV64 machine with QEMU `virt`'s memory map (docs/riscv.md): RAM at 0x80000000, CLINT,
// PLIC, a 16550 UART, a sifive_test finisher and up to 8 virtio-mmio slots driven by
// transport::VirtioMmio, 1-4 harts on one host thread each. Boots like QEMU's -bios/-kernel:
// M-mode firmware (OpenSBI fw_dynamic) at the start of RAM, the kernel 2 MiB above, initrd and
// a generated device tree at the top of RAM.
#pragma once

#include <atomic>
#include <cstdint>
#include <expected>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "memory/guest_memory.hpp"
#include "riscv/clint.hpp"
#include "riscv/hart.hpp"
#include "riscv/plic.hpp"
#include "transport/bus.hpp"
#include "transport/uart_16550.hpp"
#include "transport/virtio_mmio.hpp"

namespace vireo::riscv {

// Memory map (QEMU hw/riscv/virt.c layout, so guest software written for it runs unchanged).
inline constexpr std::uint64_t kTestBase = 0x00100000;  // sifive_test finisher
inline constexpr std::uint64_t kTestSize = 0x1000;
inline constexpr std::uint64_t kClintBase = 0x02000000;
inline constexpr std::uint64_t kPlicBase = 0x0c000000;
inline constexpr std::uint64_t kUartBase = 0x10000000;
inline constexpr std::uint64_t kUartSize = 0x100;
inline constexpr unsigned kUartIrq = 10;
inline constexpr std::uint64_t kVirtioBase = 0x10001000;
inline constexpr std::uint64_t kVirtioStride = 0x1000;
inline constexpr unsigned kVirtioSlots = 8;
inline constexpr unsigned kVirtioFirstIrq = 1;
inline constexpr std::uint64_t kRamBase = 0x80000000;
inline constexpr std::uint64_t kKernelOffset = 0x200000;  // RV64 Image alignment (2 MiB)
inline constexpr std::uint32_t kMaxHarts = 4;
inline constexpr std::uint32_t kUartClock = 3686400;

// sifive_test (QEMU hw/misc/sifive_test.c semantics): a 32-bit write of kTestPass ends the
// machine with status 0, kTestFail | code << 16 with `code`, kTestReset restarts (here: ends
// with 0 too — nobody relies on reset).
inline constexpr std::uint32_t kTestFail = 0x3333;
inline constexpr std::uint32_t kTestPass = 0x5555;
inline constexpr std::uint32_t kTestReset = 0x7777;

// fw_dynamic's boot information (OpenSBI docs/firmware/fw_dynamic.md), a0 = hartid,
// a1 = FDT, a2 = this struct.
inline constexpr std::uint64_t kFwDynamicMagic = 0x4942534f;  // "OSBI"
inline constexpr std::uint64_t kFwDynamicVersion = 2;
inline constexpr std::uint64_t kFwNextModeS = 1;
struct FwDynamicInfo {
    std::uint64_t magic;
    std::uint64_t version;
    std::uint64_t next_addr;
    std::uint64_t next_mode;
    std::uint64_t options;
    std::uint64_t boot_hart;  // -1: any (a lottery among harts)
};
static_assert(sizeof(FwDynamicInfo) == 48);

struct MachineConfig {
    std::uint64_t ram_size = 256ull << 20;
    std::uint32_t harts = 1;
    int uart_fd = 1;  // where the UART's output goes (not owned)
    std::string bootargs;
};

struct BootImages {
    std::vector<std::uint8_t> firmware;  // loaded at kRamBase, entered in M-mode
    std::vector<std::uint8_t> kernel;    // loaded at kRamBase + kKernelOffset (may be empty)
    std::vector<std::uint8_t> initrd;    // may be empty
};

class Machine {
  public:
    static std::expected<std::unique_ptr<Machine>, std::string> create(const MachineConfig& cfg);
    ~Machine();
    Machine(const Machine&) = delete;
    Machine& operator=(const Machine&) = delete;

    // Adds a virtio device in the next free slot (virtio-mmio version 2 unless `legacy`); its
    // interrupt is PLIC source kVirtioFirstIrq + slot. Must precede boot().
    std::expected<void, std::string> add_virtio(dev::VirtioDevice& device, bool legacy = false);

    // Adds a virtio-mmio device served elsewhere (bridge mode: a `vireo` daemon answers the
    // accesses through `dev`) at `addr`, interrupt PLIC source `irq` (1..31, not the UART's);
    // the device tree describes it like a local one. Must precede boot().
    std::expected<void, std::string> add_remote_virtio(std::uint64_t addr, std::uint64_t len,
                                                       unsigned irq,
                                                       std::shared_ptr<transport::BusDevice> dev);
    // Drives PLIC source `irq` (the daemon's interrupt requests in bridge mode); sources no
    // device was added for are ignored.
    void set_irq_level(unsigned irq, bool high);
    // The RAM's memfd (the daemon maps it in bridge mode).
    int ram_fd() const { return mem_.regions()[0]->fd(); }

    // Places the images, builds the device tree and points every hart at the firmware
    // (a0 = hartid, a1 = FDT, a2 = fw_dynamic info). Without a kernel the firmware is any
    // bare-metal program started the same way.
    std::expected<void, std::string> boot(const BootImages& images);

    // Runs every hart on its own thread until the finisher is written, stop() is called, or
    // `timeout_s` (0 = none) passes. Returns the exit status (sifive_test), or nullopt on
    // timeout/stop.
    std::optional<int> run(double timeout_s = 0);
    void stop();

    Hart& hart(std::uint32_t i) { return *harts_[i]; }
    std::uint32_t hart_count() const { return static_cast<std::uint32_t>(harts_.size()); }
    const GuestMemory& memory() const { return mem_; }
    transport::Bus& bus() { return *bus_; }
    transport::Uart16550& uart() { return *uart_; }
    std::uint64_t fdt_addr() const { return fdt_addr_; }
    std::uint64_t instructions() const;

    // Every hart's and the PLIC's state, one line each (after run() returned).
    std::string describe();

    // The device tree boot() generates (exposed for tests and `dtc` inspection).
    std::expected<std::vector<std::uint8_t>, std::string> build_fdt(std::uint64_t initrd_start,
                                                                    std::uint64_t initrd_end) const;

    // Ends the machine with `code` (the finisher calls this).
    void finish(int code);

  private:
    explicit Machine(const MachineConfig& cfg);

    MachineConfig cfg_;
    GuestMemory mem_;
    std::shared_ptr<transport::Bus> bus_;
    TimeBase time_;
    std::vector<std::unique_ptr<HartIrq>> irqs_;
    std::vector<HartIrq*> irq_ptrs_;
    std::vector<std::unique_ptr<Hart>> harts_;
    std::shared_ptr<Plic> plic_;
    std::shared_ptr<Clint> clint_;
    std::unique_ptr<Plic::Line> uart_line_;
    std::shared_ptr<transport::Uart16550> uart_;
    std::vector<std::unique_ptr<Plic::Line>> virtio_lines_;
    std::vector<std::shared_ptr<transport::VirtioMmio>> virtio_;
    struct VirtioNode {
        std::uint64_t addr;
        std::uint64_t len;
        unsigned irq;
    };
    std::vector<VirtioNode> virtio_nodes_;  // local and remote, in device-tree order
    std::uint32_t irqs_used_ = 1u << kUartIrq;
    std::uint64_t fdt_addr_ = 0;

    std::atomic<bool> stop_{false};
    std::atomic<int> exit_code_{-1};
};

}  // namespace vireo::riscv
