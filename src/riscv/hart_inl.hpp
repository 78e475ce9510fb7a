// Hot-path memory accessors of Hart, inlined into the interpreter: a TLB hit (or an untranslated
// RAM access) is one compare and one memcpy; everything else goes to the out-of-line slow path.
#pragma once

#include "riscv/hart.hpp"

namespace vireo::riscv {

template <typename T>
inline bool Hart::load(std::uint64_t va, T& out) {
    if (data_translate_) {
        const std::uint64_t vpn = va >> kPageShift;
        const TlbEntry& e = (*data_tlb_)[vpn & (kTlbSize - 1)];
        const std::uint64_t off = va & (kPageSize - 1);
        if (e.tag_r == vpn && e.host != nullptr && off <= kPageSize - sizeof(T)) [[likely]] {
            std::memcpy(&out, e.host + off, sizeof(T));
            return true;
        }
    } else if (std::uint8_t* h = mem_.host(va, sizeof(T)); h != nullptr) [[likely]] {
        std::memcpy(&out, h, sizeof(T));
        return true;
    }
    return load_slow(va, &out, sizeof(T));
}

template <typename T>
inline bool Hart::store(std::uint64_t va, T value) {
    if (data_translate_) {
        const std::uint64_t vpn = va >> kPageShift;
        const TlbEntry& e = (*data_tlb_)[vpn & (kTlbSize - 1)];
        const std::uint64_t off = va & (kPageSize - 1);
        if (e.tag_w == vpn && e.host != nullptr && off <= kPageSize - sizeof(T)) [[likely]] {
            std::memcpy(e.host + off, &value, sizeof(T));
            return true;
        }
    } else if (std::uint8_t* h = mem_.host(va, sizeof(T)); h != nullptr) [[likely]] {
        std::memcpy(h, &value, sizeof(T));
        return true;
    }
    return store_slow(va, &value, sizeof(T));
}

}  // namespace vireo::riscv
