#include "vmm/elf_loader.hpp"

#include <elf.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "memory/unique_fd.hpp"
#include "vmm/boot_info.hpp"

namespace vireo::vmm {

namespace {

std::unexpected<std::string> bad(std::string msg) {
    return std::unexpected("ELF: " + std::move(msg));
}

// [off, off + len) lies inside a buffer of `size` bytes (no overflow).
bool in_bounds(std::uint64_t off, std::uint64_t len, std::uint64_t size) {
    return off <= size && len <= size - off;
}

}  // namespace

std::expected<ElfImage, std::string> parse_elf(std::span<const std::uint8_t> file,
                                               std::uint64_t mem_size) {
    Elf64_Ehdr eh;
    if (file.size() < sizeof(eh)) {
        return bad(fmt::format("file too small for an ELF header ({} bytes)", file.size()));
    }
    std::memcpy(&eh, file.data(), sizeof(eh));
    if (std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0) {
        return bad("bad magic (not an ELF file)");
    }
    if (eh.e_ident[EI_CLASS] != ELFCLASS64) {
        return bad(fmt::format("wrong class {} (need ELFCLASS64)", eh.e_ident[EI_CLASS]));
    }
    if (eh.e_ident[EI_DATA] != ELFDATA2LSB) {
        return bad("not little-endian (EI_DATA)");
    }
    if (eh.e_ident[EI_VERSION] != EV_CURRENT || eh.e_version != EV_CURRENT) {
        return bad("unsupported ELF version");
    }
    if (eh.e_type != ET_EXEC) {
        return bad(fmt::format("e_type {} is not ET_EXEC (link a static executable)", eh.e_type));
    }
    if (eh.e_machine != EM_X86_64) {
        return bad(fmt::format("wrong machine {} (need EM_X86_64)", eh.e_machine));
    }
    if (eh.e_ehsize < sizeof(Elf64_Ehdr)) {
        return bad(fmt::format("e_ehsize {} too small", eh.e_ehsize));
    }
    if (eh.e_phentsize != sizeof(Elf64_Phdr)) {
        return bad(fmt::format("e_phentsize {} (need {})", eh.e_phentsize, sizeof(Elf64_Phdr)));
    }
    if (eh.e_phnum == 0 || eh.e_phnum == PN_XNUM || eh.e_phnum > kMaxElfSegments) {
        return bad(fmt::format("e_phnum {} out of range (1..{})", eh.e_phnum, kMaxElfSegments));
    }
    const std::uint64_t ph_bytes = std::uint64_t{eh.e_phnum} * sizeof(Elf64_Phdr);
    if (!in_bounds(eh.e_phoff, ph_bytes, file.size())) {
        return bad(fmt::format("program headers at {:#x} (+{}) overrun the file ({} bytes)",
                               eh.e_phoff, ph_bytes, file.size()));
    }

    ElfImage img;
    img.entry = eh.e_entry;
    for (unsigned i = 0; i < eh.e_phnum; ++i) {
        Elf64_Phdr ph;
        std::memcpy(&ph, file.data() + eh.e_phoff + i * sizeof(Elf64_Phdr), sizeof(ph));
        if (ph.p_type == PT_INTERP || ph.p_type == PT_DYNAMIC) {
            return bad(fmt::format("segment {}: dynamic executables are not supported", i));
        }
        if (ph.p_type != PT_LOAD || ph.p_memsz == 0) {
            continue;
        }
        if (ph.p_filesz > ph.p_memsz) {
            return bad(fmt::format("segment {}: p_filesz {:#x} > p_memsz {:#x}", i, ph.p_filesz,
                                   ph.p_memsz));
        }
        if (!in_bounds(ph.p_offset, ph.p_filesz, file.size())) {
            return bad(
                fmt::format("segment {}: file range {:#x}+{:#x} overruns the file ({} bytes)", i,
                            ph.p_offset, ph.p_filesz, file.size()));
        }
        if (ph.p_vaddr != ph.p_paddr) {
            return bad(
                fmt::format("segment {}: p_vaddr {:#x} != p_paddr {:#x} (the guest runs "
                            "identity-mapped)",
                            i, ph.p_vaddr, ph.p_paddr));
        }
        if (ph.p_memsz > UINT64_MAX - ph.p_paddr) {
            return bad(fmt::format("segment {}: {:#x}+{:#x} overflows", i, ph.p_paddr, ph.p_memsz));
        }
        if (ph.p_paddr < boot::kKernelMinAddr) {
            return bad(fmt::format("segment {}: at {:#x} overlaps the boot area (below {:#x})", i,
                                   ph.p_paddr, boot::kKernelMinAddr));
        }
        if (ph.p_paddr + ph.p_memsz > mem_size) {
            return bad(fmt::format("segment {}: {:#x}..{:#x} outside RAM (0..{:#x})", i, ph.p_paddr,
                                   ph.p_paddr + ph.p_memsz, mem_size));
        }
        img.segments.push_back(
            {ph.p_paddr, ph.p_offset, ph.p_filesz, ph.p_memsz, (ph.p_flags & PF_X) != 0});
    }
    if (img.segments.empty()) {
        return bad("no PT_LOAD segment");
    }
    std::sort(img.segments.begin(), img.segments.end(),
              [](const ElfSegment& a, const ElfSegment& b) { return a.gpa < b.gpa; });
    for (std::size_t i = 1; i < img.segments.size(); ++i) {
        const ElfSegment& p = img.segments[i - 1];
        if (img.segments[i].gpa < p.gpa + p.mem_size) {
            return bad(
                fmt::format("segments at {:#x} and {:#x} overlap", p.gpa, img.segments[i].gpa));
        }
    }
    const bool entry_ok = std::any_of(img.segments.begin(), img.segments.end(), [&](auto& s) {
        return s.executable && img.entry >= s.gpa && img.entry - s.gpa < s.mem_size;
    });
    if (!entry_ok) {
        return bad(fmt::format("entry point {:#x} is not inside an executable segment", img.entry));
    }
    return img;
}

std::expected<void, std::string> load_elf(std::span<const std::uint8_t> file, const ElfImage& image,
                                          const GuestMemory& mem) {
    for (const ElfSegment& s : image.segments) {
        // Re-checked here so load_elf is safe with any ElfImage, not only parse_elf's.
        if (!in_bounds(s.file_off, s.file_size, file.size()) || s.file_size > s.mem_size) {
            return bad(fmt::format("segment at {:#x}: bad file range", s.gpa));
        }
        std::uint8_t* dst = mem.translate(s.gpa, s.mem_size);
        if (dst == nullptr) {
            return bad(fmt::format("segment {:#x}+{:#x} is not in guest RAM", s.gpa, s.mem_size));
        }
        std::memcpy(dst, file.data() + s.file_off, s.file_size);
        std::memset(dst + s.file_size, 0, s.mem_size - s.file_size);
    }
    return {};
}

std::expected<std::vector<std::uint8_t>, std::string> read_file(const std::string& path,
                                                                std::uint64_t max_bytes) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) {
        return std::unexpected(fmt::format("cannot open '{}': {}", path, std::strerror(errno)));
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
        return std::unexpected(fmt::format("'{}' is not a regular file", path));
    }
    if (static_cast<std::uint64_t>(st.st_size) > max_bytes) {
        return std::unexpected(
            fmt::format("'{}' is too large ({} bytes, limit {})", path, st.st_size, max_bytes));
    }
    std::vector<std::uint8_t> data(static_cast<std::size_t>(st.st_size));
    std::size_t done = 0;
    while (done < data.size()) {
        const ssize_t n = ::read(fd.get(), data.data() + done, data.size() - done);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return std::unexpected(fmt::format("cannot read '{}'", path));
        }
        done += static_cast<std::size_t>(n);
    }
    return data;
}

}  // namespace vireo::vmm
