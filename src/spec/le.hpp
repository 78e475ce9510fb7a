// Little-endian wire integers (virtio 1.2 §1.4: "le16/le32/le64" structure fields).
//
// Freestanding: used by the host device side and by the bare-metal guest drivers alike, so it
// includes nothing beyond the compiler's own headers.
#pragma once

#include <bit>
#include <cstdint>

namespace vireo {

namespace detail {
template <typename T>
constexpr T to_from_le(T v) {
    if constexpr (std::endian::native == std::endian::little || sizeof(T) == 1) {
        return v;
    } else if constexpr (sizeof(T) == 2) {
        return __builtin_bswap16(v);
    } else if constexpr (sizeof(T) == 4) {
        return __builtin_bswap32(v);
    } else {
        return __builtin_bswap64(v);
    }
}
}  // namespace detail

// A field stored little-endian in guest memory. Deliberately no implicit conversions: every read
// and write of a wire field is spelled `.get()` / `.set()`, so byte order is never forgotten.
template <typename T>
struct Le {
    T raw;

    constexpr T get() const { return detail::to_from_le(raw); }
    constexpr void set(T v) { raw = detail::to_from_le(v); }
    static constexpr Le of(T v) { return Le{detail::to_from_le(v)}; }
};

using le16 = Le<std::uint16_t>;
using le32 = Le<std::uint32_t>;
using le64 = Le<std::uint64_t>;

static_assert(sizeof(le16) == 2 && alignof(le16) == 2);
static_assert(sizeof(le32) == 4 && alignof(le32) == 4);
static_assert(sizeof(le64) == 8 && alignof(le64) == 8);

}  // namespace vireo
