// Differential testing of the RV64GC interpreter against QEMU's user-mode emulator
// (docs/riscv.md "Differential testing"): one static riscv64 Linux ELF runs under
// qemu-riscv64 and on a bare vireo Hart in U-mode with a tiny Linux system-call shim (write,
// exit, exit_group); what each wrote to stdout and how each ended are compared.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace vireo::riscv::diff {

// How a run ended and what it wrote to fd 1.
struct Outcome {
    std::string out;          // bytes written to stdout
    std::string status;       // "exit N" or "signal N" (a guest fault, as Linux would deliver it)
    std::string detail;       // diagnostics only (the trapping pc, the cause); not compared
    std::uint64_t insns = 0;  // instructions the Hart ran (0 for QEMU)
};

// The full path of `name` found in PATH, or nullopt.
std::optional<std::string> find_in_path(const std::string& name);

// QEMU 7.2's rv64 CPU cut down to RV64GC: by default it also decodes Zba/Zbb/Zbc/Zbs (and
// could others). Not sifive-u54: that model follows privileged spec 1.10, so its fmin/fmax
// return the canonical NaN for a signalling-NaN operand (F 2.1), not the other operand (F 2.2).
inline constexpr const char* kQemuRv64gc =
    "rv64,zba=false,zbb=false,zbc=false,zbs=false,h=false,v=false,Zfh=false,Zfhmin=false,"
    "zbkb=false,zbkc=false,zbkx=false,zk=false,zkn=false,zknd=false,zkne=false,zknh=false,"
    "zkr=false,zks=false,zksed=false,zksh=false,zkt=false,zmmul=false,svinval=false,"
    "svnapot=false,svpbmt=false,zdinx=false,zfinx=false,zhinx=false,zhinxmin=false,"
    "xventanacondops=false,Zve32f=false,Zve64f=false,x-j=false";

// Runs `elf_path` under `qemu` (the qemu-riscv64 binary), capturing stdout; `cpu` is the
// -cpu argument (none if empty).
Outcome run_qemu(const std::string& qemu, const std::string& elf_path,
                 const std::string& cpu = kQemuRv64gc);

// What a program's SIGILL handler (diff_gen.cpp) writes for each illegal instruction before it
// skips it: this magic and the instruction's address, two little-endian doublewords.
inline constexpr std::uint64_t kIllegalRecordMagic = 0x494c4c00;

// Loads the ELF's PT_LOAD segments into a fresh RAM buffer at guest physical 0 and runs its
// entry point in U-mode on a bare Hart (untranslated, FS=Initial, fcsr=0, sp near the top of
// RAM) for at most `max_insns` instructions, serving write(64), exit(93), exit_group(94) and
// rt_sigaction(134) for SIGILL, and returning -ENOSYS for any other system call. With a SIGILL
// handler registered, an illegal instruction is reported the way that handler does (the
// kIllegalRecordMagic record on stdout) and skipped instead of ending the run.
Outcome run_hart(const std::vector<std::uint8_t>& elf, std::uint64_t max_insns);

// The RAM the Hart gets (from guest physical 0); ELFs must link inside it.
inline constexpr std::uint64_t kRamSize = 16 << 20;

// A minimal static ELF64 executable for riscv64 Linux: `code` loaded read+execute at
// `code_addr` (the entry point) and `data` read+write at `data_addr`.
std::vector<std::uint8_t> make_elf(const std::vector<std::uint8_t>& code, std::uint64_t code_addr,
                                   const std::vector<std::uint8_t>& data, std::uint64_t data_addr);

std::vector<std::uint8_t> read_file(const std::string& path);
bool write_file(const std::string& path, const std::vector<std::uint8_t>& bytes);

// A private temporary directory, removed with its files on destruction.
class TempDir {
  public:
    TempDir();
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const std::string& path() const { return path_; }

  private:
    std::string path_;
};

}  // namespace vireo::riscv::diff
