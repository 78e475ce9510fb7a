// One RV64GC hart (I, M, A, F, D, C, Zicsr, Zifencei; M/S/U modes; Sv39/Sv48): an interpreter
// designed for speed (docs/riscv.md): a switch over the major opcode, compressed instructions
// expanded to their 32-bit forms, a software TLB per privilege level holding host pointers to
// RAM pages, a cached host pointer for the current instruction page, no virtual call per
// instruction. Devices (CLINT, PLIC, UART, virtio-mmio) are reached through a transport::Bus
// only when an access misses RAM.
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>

#include "riscv/csr.hpp"
#include "transport/bus.hpp"

namespace vireo::riscv {

// The physical address space as harts see it: one RAM range with a direct host pointer, and
// everything else on the MMIO bus.
struct PhysMem {
    std::uint8_t* ram = nullptr;
    std::uint64_t ram_base = 0;
    std::uint64_t ram_size = 0;
    const transport::Bus* mmio = nullptr;

    // Host pointer for [pa, pa + len) if it is all RAM, else nullptr.
    std::uint8_t* host(std::uint64_t pa, std::uint64_t len) const {
        const std::uint64_t off = pa - ram_base;
        if (off < ram_size && len <= ram_size - off) {
            return ram + off;
        }
        return nullptr;
    }
};

// The machine time base (CLINT mtime), shared by all harts: 10 MHz from the host's monotonic
// clock, so guest time follows wall time however fast the interpreter runs.
class TimeBase {
  public:
    static constexpr std::uint64_t kFrequency = 10'000'000;
    TimeBase();
    std::uint64_t now() const;
    // Host nanoseconds until mtime reaches `when` (0 if it has).
    std::uint64_t ns_until(std::uint64_t when) const;

  private:
    std::uint64_t start_ns_;
};

// Interrupt inputs of one hart, driven by other threads (CLINT, PLIC) and read by the hart.
class HartIrq {
  public:
    // Device-driven mip bits: MSIP (CLINT), MEIP and SEIP (PLIC).
    void set(std::uint64_t bit, bool on);
    std::uint64_t pending() const { return pending_.load(std::memory_order_acquire); }
    std::atomic<std::uint64_t>& mtimecmp() { return mtimecmp_; }
    void set_mtimecmp(std::uint64_t v);
    // Wakes the hart if it sits in WFI (an interrupt arrived, the timer moved, the machine stops).
    void kick();
    // WFI: sleeps at most `ns` or until kick(); returns early if `ready` already holds.
    template <typename Ready>
    void wait(std::uint64_t ns, Ready ready) {
        std::unique_lock lock(mu_);
        if (!kicked_ && !ready()) {
            cv_.wait_for(lock, std::chrono::nanoseconds(ns), [&] { return kicked_; });
        }
        kicked_ = false;
    }

  private:
    std::atomic<std::uint64_t> pending_{0};
    std::atomic<std::uint64_t> mtimecmp_{~0ull};
    std::mutex mu_;
    std::condition_variable cv_;
    bool kicked_ = false;
};

// Why Hart::run() returned.
enum class StopReason : std::uint8_t { kBudget, kStopRequested };

class Hart {
  public:
    Hart(std::uint32_t hartid, const PhysMem& mem, const TimeBase& time, HartIrq& irq);

    // Runs until `max_insns` instructions retired (or trapped) or `stop` becomes true.
    StopReason run(std::uint64_t max_insns, const std::atomic<bool>& stop);

    // --- architectural state (public for loaders and tests) --------------------------------
    std::uint64_t x[32] = {};  // x[0] is kept zero
    std::uint64_t f[32] = {};  // FP registers; singles are NaN-boxed
    std::uint64_t pc = 0;
    Priv priv = Priv::kM;
    std::uint64_t instret = 0;

    // CSR access as the given privilege would see it (tests, the debugger); nullopt if illegal.
    bool csr_read(std::uint16_t num, std::uint64_t& out);
    bool csr_write(std::uint16_t num, std::uint64_t value);

    std::uint32_t hartid() const { return hartid_; }
    std::uint64_t mcause() const { return mcause_; }
    std::uint64_t mtval() const { return mtval_; }
    std::uint64_t scause() const { return scause_; }
    std::uint64_t stval() const { return stval_; }
    bool in_wfi() const { return wfi_; }

    // Translates a virtual address the way a load (or store, or fetch) from the current mode
    // would; false on a fault (tests).
    enum class Access : std::uint8_t { kRead, kWrite, kExec };
    bool debug_translate(std::uint64_t va, Access acc, std::uint64_t& pa);

    // For tests that step one instruction at a time.
    void step();

    // One line of architectural state (pc, mode, interrupt and trap CSRs) for a diagnostic
    // dump when a guest hangs; only meaningful while the hart is not running.
    std::string describe() const;

  private:
    struct TlbEntry {
        std::uint64_t tag_r = ~0ull;   // virtual page number if loads may use this entry
        std::uint64_t tag_w = ~0ull;   // ... stores
        std::uint64_t tag_x = ~0ull;   // ... fetches
        std::uint8_t* host = nullptr;  // host address of the page (RAM), nullptr for MMIO
        std::uint64_t pa_page = 0;
    };
    static constexpr unsigned kTlbSize = 256;
    using Tlb = std::array<TlbEntry, kTlbSize>;

    void execute(std::uint32_t insn, std::uint64_t len);
    void exec_fp(std::uint32_t insn, std::uint64_t next);
    void exec_amo(std::uint32_t insn, std::uint64_t next);
    void exec_system(std::uint32_t insn, std::uint64_t next);
    bool fetch(std::uint32_t& insn, std::uint64_t& len);

    // Traps: sets pc to the handler. `tval` per the cause.
    void take_trap(std::uint64_t cause, std::uint64_t tval, bool interrupt);
    void raise(Exc e, std::uint64_t tval) { take_trap(static_cast<std::uint64_t>(e), tval, false); }
    void illegal(std::uint32_t insn) { raise(Exc::kIllegalInsn, insn); }
    bool check_interrupts();
    std::uint64_t mip_value() const;
    void set_priv(Priv p);
    void mode_changed();  // recompute cached translation state, drop the fetch page
    void flush_tlb();

    // Memory. Loads/stores return false after raising the fault.
    template <typename T>
    bool load(std::uint64_t va, T& out);
    template <typename T>
    bool store(std::uint64_t va, T value);
    bool load_slow(std::uint64_t va, void* out, unsigned size);
    bool store_slow(std::uint64_t va, const void* in, unsigned size);
    // Physical address of `va` for an access from privilege `p` through the page tables; fills
    // the TLB. On failure returns false with the exception to raise in `fault` (not raised).
    bool translate(std::uint64_t va, Access acc, Priv p, std::uint64_t& pa, Exc& fault);
    // translate() for data accesses in the current mode (bare or paged); raises the fault.
    bool data_pa(std::uint64_t va, Access acc, std::uint64_t& pa);
    // Host pointer for an atomic access of `size` at `va` (must be aligned RAM); raises faults.
    std::uint8_t* amo_host(std::uint64_t va, unsigned size, bool is_load_only);
    static Exc page_fault(Access acc);
    static Exc access_fault(Access acc);

    // CSRs.
    bool csr_allowed(std::uint16_t num, bool write) const;
    void write_mstatus(std::uint64_t v, std::uint64_t mask);
    bool fp_enabled() const { return (mstatus_ & mstatus::kFs) != 0; }
    // FS = Dirty and, with it, SD (Privileged §3.1.6.6): Linux saves a task's FP registers on a
    // context switch only if the sstatus it saved at trap entry has SD set.
    void fp_dirty() { mstatus_ |= mstatus::kFsDirty | mstatus::kSd; }

    std::uint32_t hartid_;
    PhysMem mem_;
    const TimeBase& time_;
    HartIrq& irq_;
    const std::uint32_t* rvc_;  // expand_compressed() of every 16-bit value

    // Cached translation state (mode_changed()).
    bool data_translate_ = false;  // loads/stores go through the page tables
    bool fetch_translate_ = false;
    Tlb* data_tlb_ = nullptr;
    Tlb* fetch_tlb_ = nullptr;
    Priv data_priv_ = Priv::kM;
    std::array<Tlb, 2> tlb_{};  // [0] U-mode permissions, [1] S-mode permissions
    std::uint64_t fetch_vpn_ = ~0ull;
    std::uint8_t* fetch_host_ = nullptr;

    // LR/SC: the host address and value LR saw; SC succeeds by compare-and-swap against it, so a
    // store from any hart in between (that changes the value) makes it fail.
    std::uint8_t* res_host_ = nullptr;
    std::uint64_t res_value_ = 0;

    bool wfi_ = false;
    bool irq_check_ = true;  // re-evaluate interrupts before the next instruction

    // CSR state.
    std::uint64_t mstatus_ = mstatus::kUxl64 | mstatus::kSxl64;
    std::uint64_t medeleg_ = 0, mideleg_ = 0, mie_ = 0, mip_ = 0;
    std::uint64_t mtvec_ = 0, mscratch_ = 0, mepc_ = 0, mcause_ = 0, mtval_ = 0;
    std::uint64_t mcounteren_ = 0, scounteren_ = 0, menvcfg_ = 0, senvcfg_ = 0;
    std::uint64_t mcountinhibit_ = 0;
    std::uint64_t stvec_ = 0, sscratch_ = 0, sepc_ = 0, scause_ = 0, stval_ = 0, satp_ = 0;
    std::uint32_t fflags_ = 0, frm_ = 0;
    std::array<std::uint64_t, csr::kPmpEntries> pmpaddr_{};
    std::array<std::uint64_t, 2> pmpcfg_{};
};

// Expands a 16-bit compressed instruction (RVC, Unprivileged §16) to its 32-bit equivalent;
// 0 if it is illegal or reserved.
std::uint32_t expand_compressed(std::uint16_t c);

}  // namespace vireo::riscv
