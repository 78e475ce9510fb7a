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

// Runs `elf_path` under `qemu` (the qemu-riscv64 binary), capturing stdout.
Outcome run_qemu(const std::string& qemu, const std::string& elf_path);

// Loads the ELF's PT_LOAD segments into a fresh RAM buffer at guest physical 0 and runs its
// entry point in U-mode on a bare Hart (untranslated, FS=Initial, fcsr=0, sp near the top of
// RAM) for at most `max_insns` instructions, serving write(64), exit(93) and exit_group(94)
// and returning -ENOSYS for any other system call.
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
