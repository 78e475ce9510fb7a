// ELF loader: malformed executables are rejected with an error naming the problem.
#include "vmm/elf_loader.hpp"

#include <elf.h>
#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <vector>

#include "vmm/boot_info.hpp"

namespace vireo::vmm {
namespace {

constexpr std::uint64_t kMem = 16 << 20;

// A minimal valid executable: one R+X segment of `code` at 1 MiB, plus a .bss tail.
struct ElfBuilder {
    Elf64_Ehdr eh{};
    std::vector<Elf64_Phdr> ph;
    std::array<std::uint8_t, 3> code{0x90, 0x90, 0xf4};

    ElfBuilder() {
        std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
        eh.e_ident[EI_CLASS] = ELFCLASS64;
        eh.e_ident[EI_DATA] = ELFDATA2LSB;
        eh.e_ident[EI_VERSION] = EV_CURRENT;
        eh.e_type = ET_EXEC;
        eh.e_machine = EM_X86_64;
        eh.e_version = EV_CURRENT;
        eh.e_entry = boot::kKernelMinAddr;
        eh.e_phoff = sizeof(Elf64_Ehdr);
        eh.e_ehsize = sizeof(Elf64_Ehdr);
        eh.e_phentsize = sizeof(Elf64_Phdr);
        Elf64_Phdr p{};
        p.p_type = PT_LOAD;
        p.p_flags = PF_R | PF_X;
        p.p_paddr = p.p_vaddr = boot::kKernelMinAddr;
        p.p_filesz = code.size();
        p.p_memsz = 0x1000;
        ph.push_back(p);
    }
    std::vector<std::uint8_t> build() {
        eh.e_phnum = static_cast<std::uint16_t>(ph.size());
        const std::size_t code_off = sizeof(eh) + ph.size() * sizeof(Elf64_Phdr);
        for (auto& p : ph) {
            if (p.p_offset == 0) {
                p.p_offset = code_off;
            }
        }
        std::vector<std::uint8_t> f(code_off + code.size());
        std::memcpy(f.data(), &eh, sizeof(eh));
        std::memcpy(f.data() + sizeof(eh), ph.data(), ph.size() * sizeof(Elf64_Phdr));
        std::memcpy(f.data() + code_off, code.data(), code.size());
        return f;
    }
};

void expect_error(ElfBuilder& b, const char* needle, std::uint64_t mem = kMem) {
    const auto f = b.build();
    auto r = parse_elf(f, mem);
    ASSERT_FALSE(r) << "expected an error containing '" << needle << "'";
    EXPECT_NE(r.error().find(needle), std::string::npos) << r.error();
}

TEST(ElfLoader, AcceptsAMinimalExecutableAndLoadsIt) {
    ElfBuilder b;
    const auto f = b.build();
    auto img = parse_elf(f, kMem);
    ASSERT_TRUE(img) << img.error();
    EXPECT_EQ(img->entry, boot::kKernelMinAddr);
    ASSERT_EQ(img->segments.size(), 1u);
    GuestMemory mem;
    ASSERT_TRUE(mem.add_anonymous(0, kMem));
    std::uint8_t junk = 0xaa;
    ASSERT_TRUE(mem.write(boot::kKernelMinAddr + 0x100, &junk, 1));  // in the .bss tail
    ASSERT_TRUE(load_elf(f, *img, mem));
    std::uint8_t got[4];
    ASSERT_TRUE(mem.read(boot::kKernelMinAddr, got, 4));
    EXPECT_EQ(got[0], 0x90);
    EXPECT_EQ(got[2], 0xf4);
    ASSERT_TRUE(mem.read(boot::kKernelMinAddr + 0x100, got, 1));
    EXPECT_EQ(got[0], 0) << ".bss must be zeroed";
}

TEST(ElfLoader, RejectsTruncatedAndBadMagic) {
    std::vector<std::uint8_t> tiny(10, 0);
    auto r = parse_elf(tiny, kMem);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().find("too small"), std::string::npos);
    ElfBuilder b;
    b.eh.e_ident[0] = 0x7e;
    expect_error(b, "bad magic");
}

TEST(ElfLoader, RejectsWrongClassDataTypeMachine) {
    ElfBuilder c;
    c.eh.e_ident[EI_CLASS] = ELFCLASS32;
    expect_error(c, "class");
    ElfBuilder d;
    d.eh.e_ident[EI_DATA] = ELFDATA2MSB;
    expect_error(d, "little-endian");
    ElfBuilder t;
    t.eh.e_type = ET_DYN;
    expect_error(t, "ET_EXEC");
    ElfBuilder m;
    m.eh.e_machine = EM_AARCH64;
    expect_error(m, "machine");
    ElfBuilder v;
    v.eh.e_version = 7;
    expect_error(v, "version");
}

TEST(ElfLoader, RejectsBadProgramHeaderTable) {
    ElfBuilder e;
    e.eh.e_phentsize = 40;
    expect_error(e, "e_phentsize");
    ElfBuilder n;
    n.ph.clear();
    expect_error(n, "e_phnum");
    ElfBuilder o;
    o.eh.e_phoff = UINT64_MAX - 8;  // offset + size overflows
    expect_error(o, "program headers");
    ElfBuilder past;
    past.eh.e_phoff = 4096;
    expect_error(past, "overrun the file");
}

TEST(ElfLoader, RejectsSegmentsOutsideRamOrInTheBootArea) {
    ElfBuilder high;
    high.ph[0].p_paddr = high.ph[0].p_vaddr = kMem - 0x800;  // memsz 0x1000 crosses the end
    high.eh.e_entry = high.ph[0].p_paddr;
    expect_error(high, "outside RAM");
    ElfBuilder low;
    low.ph[0].p_paddr = low.ph[0].p_vaddr = boot::kPml4Addr;
    low.eh.e_entry = boot::kPml4Addr;
    expect_error(low, "boot area");
    ElfBuilder wrap;
    wrap.ph[0].p_memsz = UINT64_MAX - 0x1000;
    expect_error(wrap, "overflows");
}

TEST(ElfLoader, RejectsInconsistentSegments) {
    ElfBuilder fs;
    fs.ph[0].p_filesz = fs.ph[0].p_memsz + 1;
    expect_error(fs, "p_filesz");
    ElfBuilder off;
    off.ph[0].p_offset = 1 << 20;  // past the end of the file
    expect_error(off, "overruns the file");
    ElfBuilder va;
    va.ph[0].p_vaddr = 0xffffffff80000000;
    expect_error(va, "p_vaddr");
    ElfBuilder overlap;
    overlap.ph.push_back(overlap.ph[0]);
    overlap.ph[1].p_paddr = overlap.ph[1].p_vaddr = boot::kKernelMinAddr + 0x800;
    expect_error(overlap, "overlap");
    ElfBuilder dyn;
    dyn.ph[0].p_type = PT_INTERP;
    expect_error(dyn, "dynamic");
    ElfBuilder none;
    none.ph[0].p_type = PT_NOTE;
    expect_error(none, "no PT_LOAD");
}

TEST(ElfLoader, RejectsAnEntryOutsideExecutableSegments) {
    ElfBuilder e;
    e.eh.e_entry = boot::kKernelMinAddr + 0x1000;  // one past the segment
    expect_error(e, "entry point");
    ElfBuilder nx;
    nx.ph[0].p_flags = PF_R | PF_W;
    expect_error(nx, "entry point");
}

TEST(ElfLoader, AcceptsTheSelfTestGuests) {
    for (const char* g : {"hello", "triple_fault", "spin", "boot_state"}) {
        auto f = read_file(std::string(VIREO_VMM_GUESTS) + "/" + g + ".elf", kMem);
        ASSERT_TRUE(f) << f.error();
        auto img = parse_elf(*f, kMem);
        EXPECT_TRUE(img) << g << ": " << img.error();
    }
}

TEST(ElfLoader, ReadFileNamesThePath) {
    auto f = read_file("/nonexistent/guest.elf", kMem);
    ASSERT_FALSE(f);
    EXPECT_NE(f.error().find("/nonexistent/guest.elf"), std::string::npos);
}

}  // namespace
}  // namespace vireo::vmm
