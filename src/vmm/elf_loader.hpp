// ELF64 loader for bare-metal x86-64 guests (docs/boot-protocol.md).
//
// The ELF file is input from outside the VMM and is validated as carefully as guest memory:
// every header field the loader relies on is checked, every file range and every guest range is
// overflow-checked, and every PT_LOAD segment must lie inside RAM at or above kKernelMinAddr (so
// it cannot overwrite the boot area: BootInfo, GDT, page tables). Errors name the field.
#pragma once

#include <cstdint>
#include <expected>
#include <span>
#include <string>
#include <vector>

#include "memory/guest_memory.hpp"

namespace vireo::vmm {

inline constexpr std::size_t kMaxElfSegments = 64;  // program headers we are willing to walk

struct ElfSegment {
    std::uint64_t gpa = 0;        // p_paddr (== p_vaddr: the guest runs identity-mapped)
    std::uint64_t file_off = 0;   // p_offset
    std::uint64_t file_size = 0;  // p_filesz
    std::uint64_t mem_size = 0;   // p_memsz (the rest is zeroed)
    bool executable = false;
};

struct ElfImage {
    std::uint64_t entry = 0;
    std::vector<ElfSegment> segments;  // PT_LOAD only, sorted by gpa, non-overlapping
};

// Validates `file` as a static x86-64 ELF64 executable whose segments fit in RAM
// [kKernelMinAddr, mem_size). Touches nothing.
std::expected<ElfImage, std::string> parse_elf(std::span<const std::uint8_t> file,
                                               std::uint64_t mem_size);

// Copies the segments of a parsed image into guest memory and zeroes their .bss tails.
std::expected<void, std::string> load_elf(std::span<const std::uint8_t> file, const ElfImage& image,
                                          const GuestMemory& mem);

// Reads a whole file (bounded by `max_bytes`); errors name the path.
std::expected<std::vector<std::uint8_t>, std::string> read_file(const std::string& path,
                                                                std::uint64_t max_bytes);

}  // namespace vireo::vmm
