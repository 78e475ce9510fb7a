// The RV64 interpreter: integer, M, A, Zicsr/Zifencei and privileged instructions. Memory
// translation lives in mmu.cpp, floating point in fpu.cpp.
#include "riscv/hart.hpp"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <vector>

#include "riscv/hart_inl.hpp"
#include "riscv/opcodes.hpp"

namespace vireo::riscv {

namespace {

using i64 = std::int64_t;
using u64 = std::uint64_t;
using i32 = std::int32_t;
using u32 = std::uint32_t;
using u128 = unsigned __int128;
using i128 = __int128;

// How many instructions run between looks at the timer and other harts' interrupts.
constexpr u64 kIrqPollInterval = 1024;
// Longest WFI sleep without an event: bounds the cost of a lost wake-up.
constexpr u64 kMaxWfiSleepNs = 10'000'000;

constexpr u64 sext32(u64 v) {
    return static_cast<u64>(static_cast<i64>(static_cast<i32>(v)));
}

// M extension division rules (Unprivileged §7.2): no traps, defined results.
inline u64 div_s(i64 a, i64 b) {
    if (b == 0) return ~0ull;
    if (a == INT64_MIN && b == -1) return static_cast<u64>(a);
    return static_cast<u64>(a / b);
}
inline u64 div_u(u64 a, u64 b) {
    return b == 0 ? ~0ull : a / b;
}
inline u64 rem_s(i64 a, i64 b) {
    if (b == 0) return static_cast<u64>(a);
    if (a == INT64_MIN && b == -1) return 0;
    return static_cast<u64>(a % b);
}
inline u64 rem_u(u64 a, u64 b) {
    return b == 0 ? a : a % b;
}
inline u64 divw_s(i32 a, i32 b) {
    if (b == 0) return ~0ull;
    if (a == INT32_MIN && b == -1) return sext32(static_cast<u32>(a));
    return sext32(static_cast<u32>(a / b));
}
inline u64 divw_u(u32 a, u32 b) {
    return b == 0 ? ~0ull : sext32(a / b);
}
inline u64 remw_s(i32 a, i32 b) {
    if (b == 0) return sext32(static_cast<u32>(a));
    if (a == INT32_MIN && b == -1) return 0;
    return sext32(static_cast<u32>(a % b));
}
inline u64 remw_u(u32 a, u32 b) {
    return b == 0 ? sext32(a) : sext32(a % b);
}

// RVC expansion is a pure function of 16 bits: one table lookup instead of re-decoding each
// compressed instruction every time it runs (about 20% of the interpreter's time otherwise).
const std::vector<u32>& rvc_table() {
    static const std::vector<u32> table = [] {
        std::vector<u32> t(1u << 16);
        for (u32 c = 0; c < t.size(); ++c) {
            t[c] = (c & 3) == 3 ? 0 : expand_compressed(static_cast<std::uint16_t>(c));
        }
        return t;
    }();
    return table;
}

}  // namespace

// --- time base, interrupt inputs ------------------------------------------------------------

static u64 host_ns() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<u64>(ts.tv_sec) * 1'000'000'000ull + static_cast<u64>(ts.tv_nsec);
}

TimeBase::TimeBase() : start_ns_(host_ns()) {}

u64 TimeBase::now() const {
    return (host_ns() - start_ns_) / (1'000'000'000ull / kFrequency);
}

u64 TimeBase::ns_until(u64 when) const {
    const u64 t = now();
    if (when <= t) return 0;
    const u64 ticks = when - t;
    if (ticks > UINT64_MAX / 100) return UINT64_MAX;
    return ticks * (1'000'000'000ull / kFrequency);
}

void HartIrq::set(u64 bit, bool on) {
    if (on) {
        pending_.fetch_or(bit, std::memory_order_acq_rel);
    } else {
        pending_.fetch_and(~bit, std::memory_order_acq_rel);
    }
    kick();
}

void HartIrq::set_mtimecmp(u64 v) {
    mtimecmp_.store(v, std::memory_order_release);
    kick();
}

void HartIrq::kick() {
    {
        const std::lock_guard lock(mu_);
        kicked_ = true;
    }
    cv_.notify_all();
}

// --- hart -----------------------------------------------------------------------------------

Hart::Hart(u32 hartid, const PhysMem& mem, const TimeBase& time, HartIrq& irq)
    : hartid_(hartid), mem_(mem), time_(time), irq_(irq), rvc_(rvc_table().data()) {
    mode_changed();
}

u64 Hart::mip_value() const {
    u64 v = mip_ | irq_.pending();
    if (time_.now() >= irq_.mtimecmp().load(std::memory_order_acquire)) {
        v |= irq::kMtip;
    }
    return v;
}

std::string Hart::describe() const {
    static constexpr const char* kMode[] = {"U", "S", "?", "M"};
    char buf[320];
    std::snprintf(
        buf, sizeof buf,
        "hart %u: pc=%#llx mode=%s%s mstatus=%#llx mip=%#llx mie=%#llx mideleg=%#llx "
        "scause=%#llx sepc=%#llx stvec=%#llx instret=%llu",
        hartid_, static_cast<unsigned long long>(pc), kMode[static_cast<unsigned>(priv) & 3],
        wfi_ ? " (wfi)" : "", static_cast<unsigned long long>(mstatus_),
        static_cast<unsigned long long>(mip_value()), static_cast<unsigned long long>(mie_),
        static_cast<unsigned long long>(mideleg_), static_cast<unsigned long long>(scause_),
        static_cast<unsigned long long>(sepc_), static_cast<unsigned long long>(stvec_),
        static_cast<unsigned long long>(instret));
    return buf;
}

void Hart::set_priv(Priv p) {
    priv = p;
    mode_changed();
}

void Hart::mode_changed() {
    const bool mprv = priv == Priv::kM && (mstatus_ & mstatus::kMprv) != 0;
    data_priv_ = mprv ? static_cast<Priv>((mstatus_ & mstatus::kMpp) >> mstatus::kMppShift) : priv;
    const bool paging = (satp_ >> satp::kModeShift) != satp::kModeBare;
    data_translate_ = paging && data_priv_ != Priv::kM;
    fetch_translate_ = paging && priv != Priv::kM;
    data_tlb_ = &tlb_[data_priv_ == Priv::kU ? 0 : 1];
    fetch_tlb_ = &tlb_[priv == Priv::kU ? 0 : 1];
    fetch_vpn_ = ~0ull;
    irq_check_ = true;
}

void Hart::flush_tlb() {
    for (Tlb& t : tlb_) {
        t.fill(TlbEntry{});
    }
    fetch_vpn_ = ~0ull;
}

void Hart::take_trap(u64 cause, u64 tval, bool interrupt) {
    res_host_ = nullptr;
    wfi_ = false;
    const u64 deleg = interrupt ? mideleg_ : medeleg_;
    const u64 code = cause | (interrupt ? irq::kInterruptBit : 0);
    if (priv != Priv::kM && ((deleg >> cause) & 1) != 0) {
        scause_ = code;
        sepc_ = pc;
        stval_ = tval;
        u64 s = mstatus_ & ~(mstatus::kSpie | mstatus::kSie | mstatus::kSpp);
        if (mstatus_ & mstatus::kSie) s |= mstatus::kSpie;
        if (priv == Priv::kS) s |= mstatus::kSpp;
        mstatus_ = s;
        const u64 base = stvec_ & ~3ull;
        pc = (interrupt && (stvec_ & 3) == 1) ? base + 4 * cause : base;
        set_priv(Priv::kS);
        return;
    }
    mcause_ = code;
    mepc_ = pc;
    mtval_ = tval;
    u64 s = mstatus_ & ~(mstatus::kMpie | mstatus::kMie | mstatus::kMpp);
    if (mstatus_ & mstatus::kMie) s |= mstatus::kMpie;
    s |= static_cast<u64>(priv) << mstatus::kMppShift;
    mstatus_ = s;
    const u64 base = mtvec_ & ~3ull;
    pc = (interrupt && (mtvec_ & 3) == 1) ? base + 4 * cause : base;
    set_priv(Priv::kM);
}

// Takes the highest-priority enabled pending interrupt, if any (Privileged §3.1.9: MEI, MSI,
// MTI, SEI, SSI, STI; M-level ones first).
bool Hart::check_interrupts() {
    const u64 pending = mip_value() & mie_;
    if (pending == 0) return false;
    const bool m_on = priv != Priv::kM || (mstatus_ & mstatus::kMie) != 0;
    const bool s_on = priv == Priv::kU || (priv == Priv::kS && (mstatus_ & mstatus::kSie) != 0);
    u64 take = 0;
    if (m_on) take |= pending & ~mideleg_;
    if (s_on) take |= pending & mideleg_;
    if (take == 0) return false;
    static constexpr unsigned kOrder[] = {irq::kMei, irq::kMsi, irq::kMti,
                                          irq::kSei, irq::kSsi, irq::kSti};
    for (unsigned n : kOrder) {
        if ((take >> n) & 1) {
            take_trap(n, 0, true);
            return true;
        }
    }
    return false;
}

[[gnu::always_inline]] inline bool Hart::fetch(u32& insn, u64& len) {
    const u64 vpn = pc >> kPageShift;
    if (vpn != fetch_vpn_) [[unlikely]] {
        if (pc & 1) {
            raise(Exc::kInsnMisaligned, pc);
            return false;
        }
        u64 pa = pc;
        Exc fault = Exc::kInsnAccessFault;
        if (fetch_translate_ && !translate(pc, Access::kExec, priv, pa, fault)) {
            raise(fault, pc);
            return false;
        }
        std::uint8_t* h = mem_.host(pa & ~(kPageSize - 1), kPageSize);
        if (h == nullptr) {
            raise(Exc::kInsnAccessFault, pc);
            return false;
        }
        fetch_vpn_ = vpn;
        fetch_host_ = h;
    }
    const u64 off = pc & (kPageSize - 1);
    std::uint16_t lo;
    std::memcpy(&lo, fetch_host_ + off, 2);
    if ((lo & 3) != 3) {
        const u32 e = rvc_[lo];
        len = 2;
        insn = e;
        if (e == 0) {
            raise(Exc::kIllegalInsn, lo);
            return false;
        }
        return true;
    }
    len = 4;
    if (off <= kPageSize - 4) [[likely]] {
        std::memcpy(&insn, fetch_host_ + off, 4);
        return true;
    }
    // The instruction straddles two pages: the upper half comes through the next page. A fault
    // there reports the instruction's pc with the faulting half's address in tval (§3.1.16).
    const u64 va2 = pc + 2;
    u64 pa = va2;
    Exc fault = Exc::kInsnAccessFault;
    std::uint8_t* h = nullptr;
    if (!fetch_translate_ || translate(va2, Access::kExec, priv, pa, fault)) {
        h = mem_.host(pa, 2);
    }
    if (h == nullptr) {
        raise(fault, va2);
        return false;
    }
    std::uint16_t hi;
    std::memcpy(&hi, h, 2);
    insn = static_cast<u32>(lo) | (static_cast<u32>(hi) << 16);
    return true;
}

void Hart::step() {
    if (irq_check_) {
        irq_check_ = false;
        if (check_interrupts()) return;
    }
    u32 insn;
    u64 len;
    if (!fetch(insn, len)) return;
    execute(insn, len);
}

StopReason Hart::run(u64 max_insns, const std::atomic<bool>& stop) {
    u64 done = 0;
    while (done < max_insns) {
        if (stop.load(std::memory_order_relaxed)) return StopReason::kStopRequested;
        irq_check_ = true;
        if (wfi_) {
            // Sleep until an interrupt is pending (enabled in mie, whatever the global enables:
            // WFI resumes on a locally enabled interrupt, §3.3.3) or the timer fires.
            if ((mip_value() & mie_) == 0) {
                const u64 ns =
                    std::min(kMaxWfiSleepNs,
                             time_.ns_until(irq_.mtimecmp().load(std::memory_order_acquire)));
                irq_.wait(ns, [&] {
                    return (mip_value() & mie_) != 0 || stop.load(std::memory_order_relaxed);
                });
                if ((mip_value() & mie_) == 0) continue;
            }
            wfi_ = false;
        }
        const u64 chunk = std::min(kIrqPollInterval, max_insns - done);
        for (u64 i = 0; i < chunk && !wfi_; ++i) {
            // step(), with the fetch inlined.
            if (irq_check_) [[unlikely]] {
                irq_check_ = false;
                if (check_interrupts()) continue;
            }
            u32 insn;
            u64 len;
            if (fetch(insn, len)) [[likely]] {
                execute(insn, len);
            }
        }
        done += chunk;
    }
    return StopReason::kBudget;
}

// --- CSRs -----------------------------------------------------------------------------------

bool Hart::csr_allowed(std::uint16_t num, bool write) const {
    // Bits 9:8 hold the lowest privilege that may access it, 11:10 == 3 marks read-only
    // (Privileged §2.1).
    if (static_cast<unsigned>(priv) < ((num >> 8) & 3u)) return false;
    if (write && (num >> 10) == 3) return false;
    return true;
}

void Hart::write_mstatus(u64 v, u64 mask) {
    const u64 old = mstatus_;
    u64 s = (mstatus_ & ~mask) | (v & mask);
    // MPP holds only implemented modes: a write of the reserved 2 leaves U.
    if (((s & mstatus::kMpp) >> mstatus::kMppShift) == 2) s &= ~mstatus::kMpp;
    s &= ~mstatus::kSd;
    if ((s & mstatus::kFs) == mstatus::kFsDirty) s |= mstatus::kSd;
    mstatus_ = s | mstatus::kUxl64 | mstatus::kSxl64;
    const u64 tlb_bits = mstatus::kSum | mstatus::kMxr;
    if ((old ^ mstatus_) & tlb_bits) flush_tlb();
    mode_changed();
}

bool Hart::csr_read(std::uint16_t num, u64& out) {
    switch (num) {
        case csr::kFflags:
            if (!fp_enabled()) return false;
            out = fflags_;
            return true;
        case csr::kFrm:
            if (!fp_enabled()) return false;
            out = frm_;
            return true;
        case csr::kFcsr:
            if (!fp_enabled()) return false;
            out = (frm_ << 5) | fflags_;
            return true;
        case csr::kCycle:
        case csr::kInstret:
        case csr::kTime: {
            // Counter access below M is gated by mcounteren (and scounteren for U), §3.1.11.
            const unsigned b = num - csr::kCycle;
            if (priv != Priv::kM && ((mcounteren_ >> b) & 1) == 0) return false;
            if (priv == Priv::kU && ((scounteren_ >> b) & 1) == 0) return false;
            out = num == csr::kTime ? time_.now() : instret;
            return true;
        }
        case csr::kSstatus: {
            u64 s = mstatus_ & mstatus::kSView;
            out = s;
            return true;
        }
        case csr::kSie:
            out = mie_ & mideleg_;
            return true;
        case csr::kStvec:
            out = stvec_;
            return true;
        case csr::kScounteren:
            out = scounteren_;
            return true;
        case csr::kSenvcfg:
            out = senvcfg_;
            return true;
        case csr::kSscratch:
            out = sscratch_;
            return true;
        case csr::kSepc:
            out = sepc_;
            return true;
        case csr::kScause:
            out = scause_;
            return true;
        case csr::kStval:
            out = stval_;
            return true;
        case csr::kSip:
            out = mip_value() & mideleg_;
            return true;
        case csr::kSatp:
            if (priv == Priv::kS && (mstatus_ & mstatus::kTvm)) return false;
            out = satp_;
            return true;
        case csr::kMvendorid:
        case csr::kMarchid:
        case csr::kMimpid:
        case csr::kMconfigptr:
            out = 0;
            return true;
        case csr::kMhartid:
            out = hartid_;
            return true;
        case csr::kMstatus:
            out = mstatus_;
            return true;
        case csr::kMisa:
            out = kMisa;
            return true;
        case csr::kMedeleg:
            out = medeleg_;
            return true;
        case csr::kMideleg:
            out = mideleg_;
            return true;
        case csr::kMie:
            out = mie_;
            return true;
        case csr::kMtvec:
            out = mtvec_;
            return true;
        case csr::kMcounteren:
            out = mcounteren_;
            return true;
        case csr::kMenvcfg:
            out = menvcfg_;
            return true;
        case csr::kMcountinhibit:
            out = mcountinhibit_;
            return true;
        case csr::kMscratch:
            out = mscratch_;
            return true;
        case csr::kMepc:
            out = mepc_;
            return true;
        case csr::kMcause:
            out = mcause_;
            return true;
        case csr::kMtval:
            out = mtval_;
            return true;
        case csr::kMip:
            out = mip_value();
            return true;
        case csr::kMcycle:
        case csr::kMinstret:
            out = instret;
            return true;
        default:
            break;
    }
    if (num >= csr::kPmpaddr0 && num < csr::kPmpaddr0 + csr::kPmpEntries) {
        out = pmpaddr_[num - csr::kPmpaddr0];
        return true;
    }
    if (num == csr::kPmpcfg0 || num == csr::kPmpcfg0 + 2) {
        out = pmpcfg_[(num - csr::kPmpcfg0) / 2];
        return true;
    }
    // Hardware performance monitors exist and count nothing.
    if ((num >= csr::kMhpmcounter3 && num <= csr::kMhpmcounter31) ||
        (num >= csr::kMhpmevent3 && num <= csr::kMhpmevent31)) {
        out = 0;
        return true;
    }
    return false;
}

bool Hart::csr_write(std::uint16_t num, u64 v) {
    switch (num) {
        case csr::kFflags:
            if (!fp_enabled()) return false;
            fflags_ = v & 0x1f;
            fp_dirty();
            return true;
        case csr::kFrm:
            if (!fp_enabled()) return false;
            frm_ = v & 7;
            fp_dirty();
            return true;
        case csr::kFcsr:
            if (!fp_enabled()) return false;
            fflags_ = v & 0x1f;
            frm_ = (v >> 5) & 7;
            fp_dirty();
            return true;
        case csr::kSstatus:
            write_mstatus(v, mstatus::kSWritable);
            return true;
        case csr::kSie:
            mie_ = (mie_ & ~mideleg_) | (v & mideleg_);
            irq_check_ = true;
            return true;
        case csr::kStvec:
            stvec_ = v & ~2ull;
            return true;
        case csr::kScounteren:
            scounteren_ = v & 7;
            return true;
        case csr::kSenvcfg:
            senvcfg_ = 0;
            return true;
        case csr::kSscratch:
            sscratch_ = v;
            return true;
        case csr::kSepc:
            sepc_ = v & ~1ull;
            return true;
        case csr::kScause:
            scause_ = v;
            return true;
        case csr::kStval:
            stval_ = v;
            return true;
        case csr::kSip: {
            const u64 m = irq::kSipWritable & mideleg_;
            mip_ = (mip_ & ~m) | (v & m);
            irq_check_ = true;
            return true;
        }
        case csr::kSatp: {
            if (priv == Priv::kS && (mstatus_ & mstatus::kTvm)) return false;
            const u64 mode = v >> satp::kModeShift;
            // Unsupported modes leave satp unchanged (Privileged §4.1.11). No ASIDs: ASIDLEN=0.
            if (mode != satp::kModeBare && mode != satp::kModeSv39 && mode != satp::kModeSv48) {
                return true;
            }
            satp_ = v & ~satp::kAsidMask;
            flush_tlb();
            mode_changed();
            return true;
        }
        case csr::kMstatus:
            write_mstatus(v, mstatus::kMWritable);
            return true;
        case csr::kMisa:
            return true;  // fixed
        case csr::kMedeleg:
            medeleg_ = v & 0xb3ff & ~(1ull << static_cast<u64>(Exc::kEcallM));
            return true;
        case csr::kMideleg:
            mideleg_ = v & irq::kSMask;
            irq_check_ = true;
            return true;
        case csr::kMie:
            mie_ = v & irq::kAll;
            irq_check_ = true;
            return true;
        case csr::kMtvec:
            mtvec_ = v & ~2ull;
            return true;
        case csr::kMcounteren:
            mcounteren_ = v & 7;
            return true;
        case csr::kMenvcfg:
            menvcfg_ = 0;
            return true;  // no FIOM/CBIE/PBMTE/STCE
        case csr::kMcountinhibit:
            mcountinhibit_ = v & 5;
            return true;
        case csr::kMscratch:
            mscratch_ = v;
            return true;
        case csr::kMepc:
            mepc_ = v & ~1ull;
            return true;
        case csr::kMcause:
            mcause_ = v;
            return true;
        case csr::kMtval:
            mtval_ = v;
            return true;
        case csr::kMip:
            mip_ = (mip_ & ~irq::kMipWritable) | (v & irq::kMipWritable);
            irq_check_ = true;
            return true;
        case csr::kMcycle:
        case csr::kMinstret:
            instret = v;
            return true;
        default:
            break;
    }
    if (num >= csr::kPmpaddr0 && num < csr::kPmpaddr0 + csr::kPmpEntries) {
        // PMP is not enforced; the registers hold 54 address bits so firmware can probe them.
        pmpaddr_[num - csr::kPmpaddr0] = v & ((1ull << 54) - 1);
        return true;
    }
    if (num == csr::kPmpcfg0 || num == csr::kPmpcfg0 + 2) {
        pmpcfg_[(num - csr::kPmpcfg0) / 2] = v;
        return true;
    }
    if ((num >= csr::kMhpmcounter3 && num <= csr::kMhpmcounter31) ||
        (num >= csr::kMhpmevent3 && num <= csr::kMhpmevent31)) {
        return true;
    }
    return false;
}

void Hart::exec_system(u32 insn, u64 next) {
    const u32 f3 = (insn >> 12) & 7;
    const u32 rd = (insn >> 7) & 31;
    const u32 rs1 = (insn >> 15) & 31;
    if (f3 == 0) {
        if (insn == kEcall) {
            static constexpr Exc kByPriv[] = {Exc::kEcallU, Exc::kEcallS, Exc::kIllegalInsn,
                                              Exc::kEcallM};
            raise(kByPriv[static_cast<unsigned>(priv)], 0);
            return;
        }
        if (insn == kEbreak) {
            raise(Exc::kBreakpoint, pc);
            return;
        }
        if (insn == kMret && priv == Priv::kM) {
            const auto mpp = static_cast<Priv>((mstatus_ & mstatus::kMpp) >> mstatus::kMppShift);
            u64 s = mstatus_ & ~(mstatus::kMie | mstatus::kMpp);
            if (mstatus_ & mstatus::kMpie) s |= mstatus::kMie;
            s |= mstatus::kMpie;
            if (mpp != Priv::kM) s &= ~mstatus::kMprv;
            mstatus_ = s;
            pc = mepc_;
            res_host_ = nullptr;
            set_priv(mpp);
            return;
        }
        if (insn == kSret &&
            (priv == Priv::kM || (priv == Priv::kS && (mstatus_ & mstatus::kTsr) == 0))) {
            const Priv spp = (mstatus_ & mstatus::kSpp) ? Priv::kS : Priv::kU;
            u64 s = mstatus_ & ~(mstatus::kSie | mstatus::kSpp | mstatus::kMprv);
            if (mstatus_ & mstatus::kSpie) s |= mstatus::kSie;
            s |= mstatus::kSpie;
            mstatus_ = s;
            pc = sepc_;
            res_host_ = nullptr;
            set_priv(spp);
            return;
        }
        if (insn == kWfi) {
            if (priv == Priv::kU || (priv == Priv::kS && (mstatus_ & mstatus::kTw))) {
                illegal(insn);
                return;
            }
            wfi_ = true;
            pc = next;
            return;
        }
        if ((insn >> 25) == kSfenceVmaFunct7 && rd == 0) {
            if (priv == Priv::kU || (priv == Priv::kS && (mstatus_ & mstatus::kTvm))) {
                illegal(insn);
                return;
            }
            flush_tlb();
            pc = next;
            return;
        }
        illegal(insn);
        return;
    }
    if (f3 == 4) {
        illegal(insn);
        return;
    }
    // Zicsr. CSRRW with rd == 0 does not read; CSRRS/C with rs1 == 0 (or a zero immediate) do
    // not write (§9.1).
    const std::uint16_t num = static_cast<std::uint16_t>(insn >> 20);
    const u64 src = (f3 & 4) ? rs1 : x[rs1];
    const u32 kind = f3 & 3;
    const bool writes = kind == 1 || rs1 != 0;
    const bool reads = kind != 1 || rd != 0;
    if (!csr_allowed(num, writes)) {
        illegal(insn);
        return;
    }
    u64 old = 0;
    if (reads || kind != 1) {
        if (!csr_read(num, old)) {
            illegal(insn);
            return;
        }
    }
    if (writes) {
        // mip.SEIP reads as the OR of the software bit and the PLIC's line, but only the
        // software bit takes part in CSRRS/CSRRC's read-modify-write (Privileged §3.1.9):
        // otherwise clearing STIP while the PLIC asserts SEIP latches SEIP for ever (an
        // interrupt storm with nothing to claim).
        u64 base = old;
        if (num == csr::kMip) base = (old & ~irq::kSeip) | (mip_ & irq::kSeip);
        const u64 nv = kind == 1 ? src : kind == 2 ? (base | src) : (base & ~src);
        if (!csr_write(num, nv)) {
            illegal(insn);
            return;
        }
    }
    if (rd != 0) x[rd] = old;
    pc = next;
}

void Hart::exec_amo(u32 insn, u64 next) {
    const u32 f3 = (insn >> 12) & 7;
    const u32 rd = (insn >> 7) & 31;
    const u32 rs1 = (insn >> 15) & 31;
    const u32 rs2 = (insn >> 20) & 31;
    const u32 f5 = insn >> 27;
    if (f3 != 2 && f3 != 3) {
        illegal(insn);
        return;
    }
    const unsigned size = f3 == 2 ? 4 : 8;
    const u64 va = x[rs1];
    constexpr u32 kLr = 0x02, kSc = 0x03;
    std::uint8_t* h = amo_host(va, size, f5 == kLr);
    if (h == nullptr) return;
    u64 result;
    if (f5 == kLr) {
        if (rs2 != 0) {
            illegal(insn);
            return;
        }
        if (size == 4) {
            const u32 v = __atomic_load_n(reinterpret_cast<u32*>(h), __ATOMIC_ACQUIRE);
            res_value_ = v;
            result = sext32(v);
        } else {
            res_value_ = __atomic_load_n(reinterpret_cast<u64*>(h), __ATOMIC_ACQUIRE);
            result = res_value_;
        }
        res_host_ = h;
    } else if (f5 == kSc) {
        bool ok = false;
        if (res_host_ == h) {
            if (size == 4) {
                u32 expected = static_cast<u32>(res_value_);
                ok = __atomic_compare_exchange_n(reinterpret_cast<u32*>(h), &expected,
                                                 static_cast<u32>(x[rs2]), false, __ATOMIC_ACQ_REL,
                                                 __ATOMIC_ACQUIRE);
            } else {
                u64 expected = res_value_;
                ok = __atomic_compare_exchange_n(reinterpret_cast<u64*>(h), &expected, x[rs2],
                                                 false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
            }
        }
        res_host_ = nullptr;
        result = ok ? 0 : 1;
    } else {
        const u64 b = x[rs2];
        auto amo = [&](auto* p, auto bv) -> u64 {
            using T = std::remove_pointer_t<decltype(p)>;
            using S = std::make_signed_t<T>;
            T old = __atomic_load_n(p, __ATOMIC_RELAXED);
            T nv;
            switch (f5) {
                case 0x01:
                    return static_cast<u64>(__atomic_exchange_n(p, bv, __ATOMIC_ACQ_REL));
                case 0x00:
                    return static_cast<u64>(__atomic_fetch_add(p, bv, __ATOMIC_ACQ_REL));
                case 0x04:
                    return static_cast<u64>(__atomic_fetch_xor(p, bv, __ATOMIC_ACQ_REL));
                case 0x0c:
                    return static_cast<u64>(__atomic_fetch_and(p, bv, __ATOMIC_ACQ_REL));
                case 0x08:
                    return static_cast<u64>(__atomic_fetch_or(p, bv, __ATOMIC_ACQ_REL));
                default:
                    break;
            }
            do {
                switch (f5) {
                    case 0x10:
                        nv = static_cast<S>(old) < static_cast<S>(bv) ? old : bv;
                        break;
                    case 0x14:
                        nv = static_cast<S>(old) > static_cast<S>(bv) ? old : bv;
                        break;
                    case 0x18:
                        nv = old < bv ? old : bv;
                        break;
                    default:
                        nv = old > bv ? old : bv;
                        break;  // 0x1c AMOMAXU
                }
            } while (!__atomic_compare_exchange_n(p, &old, nv, true, __ATOMIC_ACQ_REL,
                                                  __ATOMIC_RELAXED));
            return static_cast<u64>(old);
        };
        switch (f5) {
            case 0x00:
            case 0x01:
            case 0x04:
            case 0x08:
            case 0x0c:
            case 0x10:
            case 0x14:
            case 0x18:
            case 0x1c:
                break;
            default:
                illegal(insn);
                return;
        }
        if (size == 4) {
            result = sext32(amo(reinterpret_cast<u32*>(h), static_cast<u32>(b)));
        } else {
            result = amo(reinterpret_cast<u64*>(h), b);
        }
    }
    if (rd != 0) x[rd] = result;
    pc = next;
}

void Hart::execute(u32 insn, u64 len) {
    const u64 next = pc + len;
    const u32 rd = (insn >> 7) & 31;
    const u32 rs1 = (insn >> 15) & 31;
    const u32 rs2 = (insn >> 20) & 31;
    const u32 f3 = (insn >> 12) & 7;
    const u32 f7 = insn >> 25;
    u64 r = 0;
    switch (insn & 0x7f) {
        case op::kLui:
            r = imm_u(insn);
            break;
        case op::kAuipc:
            r = pc + imm_u(insn);
            break;
        case op::kJal: {
            const u64 target = pc + imm_j(insn);
            r = next;
            pc = target;
            if (rd != 0) x[rd] = r;
            ++instret;
            return;
        }
        case op::kJalr: {
            if (f3 != 0) {
                illegal(insn);
                return;
            }
            const u64 target = (x[rs1] + imm_i(insn)) & ~1ull;
            pc = target;
            if (rd != 0) x[rd] = next;
            ++instret;
            return;
        }
        case op::kBranch: {
            const u64 a = x[rs1], b = x[rs2];
            bool taken;
            switch (f3) {
                case 0:
                    taken = a == b;
                    break;
                case 1:
                    taken = a != b;
                    break;
                case 4:
                    taken = static_cast<i64>(a) < static_cast<i64>(b);
                    break;
                case 5:
                    taken = static_cast<i64>(a) >= static_cast<i64>(b);
                    break;
                case 6:
                    taken = a < b;
                    break;
                case 7:
                    taken = a >= b;
                    break;
                default:
                    illegal(insn);
                    return;
            }
            pc = taken ? pc + imm_b(insn) : next;
            ++instret;
            return;
        }
        case op::kLoad: {
            const u64 va = x[rs1] + imm_i(insn);
            switch (f3) {
                case 0: {
                    std::int8_t v;
                    if (!load(va, v)) return;
                    r = static_cast<u64>(v);
                    break;
                }
                case 1: {
                    std::int16_t v;
                    if (!load(va, v)) return;
                    r = static_cast<u64>(v);
                    break;
                }
                case 2: {
                    i32 v;
                    if (!load(va, v)) return;
                    r = static_cast<u64>(static_cast<i64>(v));
                    break;
                }
                case 3: {
                    if (!load(va, r)) return;
                    break;
                }
                case 4: {
                    std::uint8_t v;
                    if (!load(va, v)) return;
                    r = v;
                    break;
                }
                case 5: {
                    std::uint16_t v;
                    if (!load(va, v)) return;
                    r = v;
                    break;
                }
                case 6: {
                    u32 v;
                    if (!load(va, v)) return;
                    r = v;
                    break;
                }
                default:
                    illegal(insn);
                    return;
            }
            break;
        }
        case op::kStore: {
            const u64 va = x[rs1] + imm_s(insn);
            const u64 v = x[rs2];
            bool ok;
            switch (f3) {
                case 0:
                    ok = store(va, static_cast<std::uint8_t>(v));
                    break;
                case 1:
                    ok = store(va, static_cast<std::uint16_t>(v));
                    break;
                case 2:
                    ok = store(va, static_cast<u32>(v));
                    break;
                case 3:
                    ok = store(va, v);
                    break;
                default:
                    illegal(insn);
                    return;
            }
            if (!ok) return;
            pc = next;
            ++instret;
            return;
        }
        case op::kOpImm: {
            const u64 a = x[rs1];
            const u64 imm = imm_i(insn);
            const u32 shamt = (insn >> 20) & 63;
            switch (f3) {
                case 0:
                    r = a + imm;
                    break;
                case 1:
                    if ((insn >> 26) != 0) {
                        illegal(insn);
                        return;
                    }
                    r = a << shamt;
                    break;
                case 2:
                    r = static_cast<i64>(a) < static_cast<i64>(imm);
                    break;
                case 3:
                    r = a < imm;
                    break;
                case 4:
                    r = a ^ imm;
                    break;
                case 5:
                    if ((insn >> 26) == 0)
                        r = a >> shamt;
                    else if ((insn >> 26) == 0x10)
                        r = static_cast<u64>(static_cast<i64>(a) >> shamt);
                    else {
                        illegal(insn);
                        return;
                    }
                    break;
                case 6:
                    r = a | imm;
                    break;
                default:
                    r = a & imm;
                    break;
            }
            break;
        }
        case op::kOpImm32: {
            const u32 a = static_cast<u32>(x[rs1]);
            const u32 shamt = (insn >> 20) & 31;
            switch (f3) {
                case 0:
                    r = sext32(a + static_cast<u32>(imm_i(insn)));
                    break;
                case 1:
                    if (f7 != 0) {
                        illegal(insn);
                        return;
                    }
                    r = sext32(a << shamt);
                    break;
                case 5:
                    if (f7 == 0)
                        r = sext32(a >> shamt);
                    else if (f7 == 0x20)
                        r = sext32(static_cast<u32>(static_cast<i32>(a) >> shamt));
                    else {
                        illegal(insn);
                        return;
                    }
                    break;
                default:
                    illegal(insn);
                    return;
            }
            break;
        }
        case op::kOp: {
            const u64 a = x[rs1], b = x[rs2];
            if (f7 == 0) {
                switch (f3) {
                    case 0:
                        r = a + b;
                        break;
                    case 1:
                        r = a << (b & 63);
                        break;
                    case 2:
                        r = static_cast<i64>(a) < static_cast<i64>(b);
                        break;
                    case 3:
                        r = a < b;
                        break;
                    case 4:
                        r = a ^ b;
                        break;
                    case 5:
                        r = a >> (b & 63);
                        break;
                    case 6:
                        r = a | b;
                        break;
                    default:
                        r = a & b;
                        break;
                }
            } else if (f7 == 0x20 && (f3 == 0 || f3 == 5)) {
                r = f3 == 0 ? a - b : static_cast<u64>(static_cast<i64>(a) >> (b & 63));
            } else if (f7 == 1) {
                switch (f3) {
                    case 0:
                        r = a * b;
                        break;
                    case 1:
                        r = static_cast<u64>(
                            (static_cast<i128>(static_cast<i64>(a)) * static_cast<i64>(b)) >> 64);
                        break;
                    case 2:
                        r = static_cast<u64>((static_cast<i128>(static_cast<i64>(a)) *
                                              static_cast<i128>(static_cast<u128>(b))) >>
                                             64);
                        break;
                    case 3:
                        r = static_cast<u64>((static_cast<u128>(a) * b) >> 64);
                        break;
                    case 4:
                        r = div_s(static_cast<i64>(a), static_cast<i64>(b));
                        break;
                    case 5:
                        r = div_u(a, b);
                        break;
                    case 6:
                        r = rem_s(static_cast<i64>(a), static_cast<i64>(b));
                        break;
                    default:
                        r = rem_u(a, b);
                        break;
                }
            } else {
                illegal(insn);
                return;
            }
            break;
        }
        case op::kOp32: {
            const u32 a = static_cast<u32>(x[rs1]), b = static_cast<u32>(x[rs2]);
            if (f7 == 0 && f3 == 0)
                r = sext32(a + b);
            else if (f7 == 0x20 && f3 == 0)
                r = sext32(a - b);
            else if (f7 == 0 && f3 == 1)
                r = sext32(a << (b & 31));
            else if (f7 == 0 && f3 == 5)
                r = sext32(a >> (b & 31));
            else if (f7 == 0x20 && f3 == 5)
                r = sext32(static_cast<u32>(static_cast<i32>(a) >> (b & 31)));
            else if (f7 == 1) {
                switch (f3) {
                    case 0:
                        r = sext32(a * b);
                        break;
                    case 4:
                        r = divw_s(static_cast<i32>(a), static_cast<i32>(b));
                        break;
                    case 5:
                        r = divw_u(a, b);
                        break;
                    case 6:
                        r = remw_s(static_cast<i32>(a), static_cast<i32>(b));
                        break;
                    case 7:
                        r = remw_u(a, b);
                        break;
                    default:
                        illegal(insn);
                        return;
                }
            } else {
                illegal(insn);
                return;
            }
            break;
        }
        case op::kMiscMem:
            // FENCE orders nothing here beyond what the host's atomics already give (every AMO
            // is sequentially consistent enough for RVWMO's fences); FENCE.I needs nothing
            // because instructions are decoded from RAM every time.
            if (f3 == 0 || f3 == 1) {
                pc = next;
                ++instret;
                if (f3 == 0) std::atomic_thread_fence(std::memory_order_seq_cst);
                return;
            }
            illegal(insn);
            return;
        case op::kAmo:
            exec_amo(insn, next);
            ++instret;
            return;
        case op::kSystem:
            exec_system(insn, next);
            ++instret;
            return;
        case op::kLoadFp:
        case op::kStoreFp:
        case op::kMadd:
        case op::kMsub:
        case op::kNmsub:
        case op::kNmadd:
        case op::kOpFp:
            exec_fp(insn, next);
            ++instret;
            return;
        default:
            illegal(insn);
            return;
    }
    if (rd != 0) x[rd] = r;
    pc = next;
    ++instret;
}

}  // namespace vireo::riscv
