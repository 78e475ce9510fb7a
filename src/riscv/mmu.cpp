// Sv39/Sv48 address translation (Privileged spec §4.3-4.5), the software TLB, and the slow paths
// of loads and stores: page crossings, MMIO, faults.
#include <algorithm>

#include "riscv/hart.hpp"
#include "riscv/hart_inl.hpp"

namespace vireo::riscv {

namespace {
constexpr unsigned kVpnBits = 9;
constexpr std::uint64_t kVpnMask = (1u << kVpnBits) - 1;
constexpr unsigned kPteSize = 8;
}  // namespace

Exc Hart::page_fault(Access acc) {
    return acc == Access::kRead    ? Exc::kLoadPageFault
           : acc == Access::kWrite ? Exc::kStorePageFault
                                   : Exc::kInsnPageFault;
}

Exc Hart::access_fault(Access acc) {
    return acc == Access::kRead    ? Exc::kLoadAccessFault
           : acc == Access::kWrite ? Exc::kStoreAccessFault
                                   : Exc::kInsnAccessFault;
}

bool Hart::translate(std::uint64_t va, Access acc, Priv p, std::uint64_t& pa, Exc& fault) {
    const std::uint64_t mode = satp_ >> satp::kModeShift;
    const unsigned levels = mode == satp::kModeSv48 ? 4 : 3;
    const unsigned va_bits = kPageShift + levels * kVpnBits;
    // The address must be sign-extended from its top translated bit (§4.4.1).
    const auto sva = static_cast<std::int64_t>(va);
    if ((sva << (64 - va_bits)) >> (64 - va_bits) != sva) {
        fault = page_fault(acc);
        return false;
    }
    const bool sum = (mstatus_ & mstatus::kSum) != 0;
    const bool mxr = (mstatus_ & mstatus::kMxr) != 0;
    std::uint64_t table = (satp_ & satp::kPpnMask) << kPageShift;
    for (int level = static_cast<int>(levels) - 1; level >= 0; --level) {
        const std::uint64_t idx = (va >> (kPageShift + kVpnBits * level)) & kVpnMask;
        std::uint8_t* ph = mem_.host(table + idx * kPteSize, kPteSize);
        if (ph == nullptr) {
            fault = access_fault(acc);
            return false;
        }
        auto* pte_ptr = reinterpret_cast<std::uint64_t*>(ph);
        std::uint64_t e = __atomic_load_n(pte_ptr, __ATOMIC_ACQUIRE);
        if ((e & pte::kV) == 0 || ((e & pte::kR) == 0 && (e & pte::kW) != 0) ||
            (e & pte::kReserved) != 0) {
            fault = page_fault(acc);
            return false;
        }
        const std::uint64_t ppn = (e >> pte::kPpnShift) & pte::kPpnMask;
        if ((e & (pte::kR | pte::kX)) == 0) {
            // A pointer to the next level; A/D/U must be zero there (§4.3.2 step 4).
            if (level == 0 || (e & (pte::kA | pte::kD | pte::kU)) != 0) {
                fault = page_fault(acc);
                return false;
            }
            table = ppn << kPageShift;
            continue;
        }
        // A leaf. Permissions for privilege p (§4.3.2 step 5).
        const bool user_page = (e & pte::kU) != 0;
        bool priv_ok;
        if (p == Priv::kU) {
            priv_ok = user_page;
        } else {
            priv_ok = !user_page || (sum && acc != Access::kExec);
        }
        const bool readable = (e & pte::kR) != 0 || (mxr && (e & pte::kX) != 0);
        const bool ok = acc == Access::kRead    ? readable
                        : acc == Access::kWrite ? (e & pte::kW) != 0
                                                : (e & pte::kX) != 0;
        // A superpage's low PPN fields must be zero (step 6).
        const std::uint64_t low_mask = (1ull << (kVpnBits * level)) - 1;
        if (!priv_ok || !ok || (ppn & low_mask) != 0) {
            fault = page_fault(acc);
            return false;
        }
        // Hardware A/D update (step 7), atomically against other harts and the guest.
        std::uint64_t want = e | pte::kA | (acc == Access::kWrite ? pte::kD : 0);
        while (want != e) {
            if (__atomic_compare_exchange_n(pte_ptr, &e, want, false, __ATOMIC_ACQ_REL,
                                            __ATOMIC_ACQUIRE)) {
                e = want;
                break;
            }
            // The PTE changed under us: re-check it from the top.
            return translate(va, acc, p, pa, fault);
        }
        const std::uint64_t page_ppn = ppn | ((va >> kPageShift) & low_mask);
        pa = (page_ppn << kPageShift) | (va & (kPageSize - 1));

        // Fill the TLB with what this 4 KiB page allows from privilege p, now.
        TlbEntry& t = tlb_[p == Priv::kU ? 0 : 1][(va >> kPageShift) & (kTlbSize - 1)];
        const std::uint64_t vpn = va >> kPageShift;
        const bool u_or_s_ok = p == Priv::kU ? user_page : (!user_page || sum);
        const bool x_ok = p == Priv::kU ? user_page : !user_page;
        t.tag_r = (u_or_s_ok && readable) ? vpn : ~0ull;
        t.tag_w = (u_or_s_ok && (e & pte::kW) && (e & pte::kD)) ? vpn : ~0ull;
        t.tag_x = (x_ok && (e & pte::kX)) ? vpn : ~0ull;
        t.pa_page = page_ppn << kPageShift;
        t.host = mem_.host(t.pa_page, kPageSize);
        return true;
    }
    fault = page_fault(acc);
    return false;
}

bool Hart::data_pa(std::uint64_t va, Access acc, std::uint64_t& pa) {
    if (!data_translate_) {
        pa = va;
        return true;
    }
    const std::uint64_t vpn = va >> kPageShift;
    const TlbEntry& e = (*data_tlb_)[vpn & (kTlbSize - 1)];
    if ((acc == Access::kRead ? e.tag_r : e.tag_w) == vpn) {
        pa = e.pa_page | (va & (kPageSize - 1));
        return true;
    }
    Exc fault = Exc::kLoadAccessFault;
    if (!translate(va, acc, data_priv_, pa, fault)) {
        raise(fault, va);
        return false;
    }
    return true;
}

bool Hart::debug_translate(std::uint64_t va, Access acc, std::uint64_t& pa) {
    const bool paged = acc == Access::kExec ? fetch_translate_ : data_translate_;
    if (!paged) {
        pa = va;
        return true;
    }
    Exc fault;
    return translate(va, acc, acc == Access::kExec ? priv : data_priv_, pa, fault);
}

bool Hart::load_slow(std::uint64_t va, void* out, unsigned size) {
    auto* dst = static_cast<std::uint8_t*>(out);
    const std::uint64_t off = va & (kPageSize - 1);
    if (off + size > kPageSize) {
        // Crosses a page: each part is translated on its own (a misaligned access may fault on
        // either page; tval is the original address).
        const unsigned first = static_cast<unsigned>(kPageSize - off);
        std::uint64_t pa1, pa2;
        if (!data_pa(va, Access::kRead, pa1) || !data_pa(va + first, Access::kRead, pa2)) {
            return false;
        }
        std::uint8_t* h1 = mem_.host(pa1, first);
        std::uint8_t* h2 = mem_.host(pa2, size - first);
        if (h1 == nullptr || h2 == nullptr) {
            raise(Exc::kLoadAccessFault, va);
            return false;
        }
        std::memcpy(dst, h1, first);
        std::memcpy(dst + first, h2, size - first);
        return true;
    }
    std::uint64_t pa;
    if (!data_pa(va, Access::kRead, pa)) return false;
    if (std::uint8_t* h = mem_.host(pa, size)) {
        std::memcpy(dst, h, size);
        return true;
    }
    if (mem_.mmio == nullptr || !mem_.mmio->read(pa, std::span<std::uint8_t>(dst, size))) {
        raise(Exc::kLoadAccessFault, va);
        return false;
    }
    // A device access may have raised an interrupt for this hart: look before the next insn.
    irq_check_ = true;
    return true;
}

bool Hart::store_slow(std::uint64_t va, const void* in, unsigned size) {
    const auto* src = static_cast<const std::uint8_t*>(in);
    const std::uint64_t off = va & (kPageSize - 1);
    if (off + size > kPageSize) {
        const unsigned first = static_cast<unsigned>(kPageSize - off);
        std::uint64_t pa1, pa2;
        if (!data_pa(va, Access::kWrite, pa1) || !data_pa(va + first, Access::kWrite, pa2)) {
            return false;
        }
        std::uint8_t* h1 = mem_.host(pa1, first);
        std::uint8_t* h2 = mem_.host(pa2, size - first);
        if (h1 == nullptr || h2 == nullptr) {
            raise(Exc::kStoreAccessFault, va);
            return false;
        }
        std::memcpy(h1, src, first);
        std::memcpy(h2, src + first, size - first);
        return true;
    }
    std::uint64_t pa;
    if (!data_pa(va, Access::kWrite, pa)) return false;
    if (std::uint8_t* h = mem_.host(pa, size)) {
        std::memcpy(h, src, size);
        return true;
    }
    if (mem_.mmio == nullptr || !mem_.mmio->write(pa, std::span<const std::uint8_t>(src, size))) {
        raise(Exc::kStoreAccessFault, va);
        return false;
    }
    irq_check_ = true;
    return true;
}

std::uint8_t* Hart::amo_host(std::uint64_t va, unsigned size, bool is_load_only) {
    const Access acc = is_load_only ? Access::kRead : Access::kWrite;
    if ((va & (size - 1)) != 0) {
        raise(is_load_only ? Exc::kLoadMisaligned : Exc::kStoreMisaligned, va);
        return nullptr;
    }
    std::uint64_t pa;
    if (!data_pa(va, acc, pa)) return nullptr;
    std::uint8_t* h = mem_.host(pa, size);
    if (h == nullptr) {
        // Atomics are supported on RAM only (the PMA of every MMIO region here).
        raise(access_fault(acc), va);
    }
    return h;
}

}  // namespace vireo::riscv
