// x86 port I/O.
#pragma once

#include <cstdint>

namespace vireo::guest::x86 {

inline void outb(std::uint16_t port, std::uint8_t v) {
    asm volatile("outb %0, %1" : : "a"(v), "Nd"(port) : "memory");
}
inline void outl(std::uint16_t port, std::uint32_t v) {
    asm volatile("outl %0, %1" : : "a"(v), "Nd"(port) : "memory");
}
inline std::uint8_t inb(std::uint16_t port) {
    std::uint8_t v;
    asm volatile("inb %1, %0" : "=a"(v) : "Nd"(port) : "memory");
    return v;
}
inline std::uint32_t inl(std::uint16_t port) {
    std::uint32_t v;
    asm volatile("inl %1, %0" : "=a"(v) : "Nd"(port) : "memory");
    return v;
}

}  // namespace vireo::guest::x86
