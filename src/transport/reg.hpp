// Register access helpers: a trapped access arrives as 1–8 little-endian bytes.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>

namespace vireo::transport {

// The value of a little-endian access of data.size() ≤ 8 bytes.
inline std::uint64_t load_le(std::span<const std::uint8_t> data) {
    std::uint64_t v = 0;
    for (std::size_t i = data.size(); i-- > 0;) {
        v = (v << 8) | data[i];
    }
    return v;
}

// Fills `data` with the low data.size() bytes of v, little-endian.
inline void store_le(std::span<std::uint8_t> data, std::uint64_t v) {
    for (auto& b : data) {
        b = static_cast<std::uint8_t>(v);
        v >>= 8;
    }
}

// True if the access is `width` bytes wide and naturally aligned.
inline bool is_access(std::uint64_t offset, std::size_t size, std::size_t width) {
    return size == width && offset % width == 0;
}

// Copies bytes [offset, offset + out.size()) of `src` into `out`; bytes beyond `src` read 0.
inline void read_window(std::span<const std::uint8_t> src, std::uint64_t offset,
                        std::span<std::uint8_t> out) {
    for (std::size_t i = 0; i < out.size(); ++i) {
        out[i] = offset + i < src.size() ? src[offset + i] : 0;
    }
}

}  // namespace vireo::transport
