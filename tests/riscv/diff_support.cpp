#include "diff_support.hpp"

#include <elf.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "riscv/csr.hpp"
#include "riscv/hart.hpp"
#include "riscv/opcodes.hpp"
#include "transport/bus.hpp"

extern char** environ;

namespace vireo::riscv::diff {

namespace {

// The top page of RAM holds the trap vector (one MRET), the stack ends below it.
constexpr std::uint64_t kTrapVec = kRamSize - kPageSize;
constexpr std::uint64_t kStackTop = kTrapVec - kPageSize;

// Linux system-call numbers of the generic table riscv64 uses.
constexpr std::uint64_t kSysWrite = 64, kSysExit = 93, kSysExitGroup = 94, kSysSigaltstack = 132,
                        kSysRtSigaction = 134;
constexpr std::uint64_t kEnosys = 38;

// The signal Linux delivers for a user-mode exception (arch/riscv/kernel/traps.c).
int signal_for(std::uint64_t cause) {
    switch (static_cast<Exc>(cause)) {
        case Exc::kIllegalInsn:
            return SIGILL;
        case Exc::kBreakpoint:
            return SIGTRAP;
        case Exc::kInsnMisaligned:
        case Exc::kLoadMisaligned:
        case Exc::kStoreMisaligned:
            return SIGBUS;
        default:
            return SIGSEGV;
    }
}

std::string hex(std::uint64_t v) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "%#llx", static_cast<unsigned long long>(v));
    return buf;
}

}  // namespace

std::optional<std::string> find_in_path(const std::string& name) {
    const char* path = std::getenv("PATH");
    std::string dirs = path != nullptr ? path : "/usr/bin:/bin";
    std::size_t start = 0;
    while (start <= dirs.size()) {
        std::size_t end = dirs.find(':', start);
        if (end == std::string::npos) end = dirs.size();
        const std::string dir = dirs.substr(start, end - start);
        if (!dir.empty()) {
            const std::string full = dir + "/" + name;
            if (::access(full.c_str(), X_OK) == 0) return full;
        }
        start = end + 1;
    }
    return std::nullopt;
}

Outcome run_qemu(const std::string& qemu, const std::string& elf_path, const std::string& cpu) {
    Outcome o;
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0) {
        o.status = "pipe failed";
        return o;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    const std::string err_path = elf_path + ".stderr";
    posix_spawn_file_actions_addopen(&fa, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    const std::string cpu_flag = "-cpu";
    std::vector<char*> argv = {const_cast<char*>(qemu.c_str())};
    if (!cpu.empty()) {
        argv.push_back(const_cast<char*>(cpu_flag.c_str()));
        argv.push_back(const_cast<char*>(cpu.c_str()));
    }
    argv.push_back(const_cast<char*>(elf_path.c_str()));
    argv.push_back(nullptr);
    pid_t pid = -1;
    const int rc = ::posix_spawn(&pid, qemu.c_str(), &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    ::close(out[1]);
    if (rc != 0) {
        ::close(out[0]);
        o.status = "spawn failed: " + std::string(std::strerror(rc));
        return o;
    }
    // The programs are short; a hang would be a harness bug: give up after a minute.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    char buf[65536];
    for (;;) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            ::kill(pid, SIGKILL);
            o.detail = "qemu timed out";
            break;
        }
        pollfd p{out[0], POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(left.count())) < 0) continue;
        const ssize_t n = ::read(out[0], buf, sizeof buf);
        if (n <= 0) break;
        o.out.append(buf, static_cast<std::size_t>(n));
    }
    ::close(out[0]);
    int ws = 0;
    while (::waitpid(pid, &ws, 0) < 0) {
    }
    if (WIFEXITED(ws)) {
        o.status = "exit " + std::to_string(WEXITSTATUS(ws));
    } else if (WIFSIGNALED(ws)) {
        o.status = "signal " + std::to_string(WTERMSIG(ws));
    }
    const auto err = read_file(err_path);
    o.detail += std::string(err.begin(), err.end());
    ::unlink(err_path.c_str());
    return o;
}

Outcome run_hart(const std::vector<std::uint8_t>& elf, std::uint64_t max_insns) {
    Outcome o;
    std::vector<std::uint8_t> ram(kRamSize);
    Elf64_Ehdr eh{};
    if (elf.size() < sizeof eh) {
        o.status = "bad elf";
        return o;
    }
    std::memcpy(&eh, elf.data(), sizeof eh);
    if (std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
        eh.e_machine != EM_RISCV || eh.e_phentsize != sizeof(Elf64_Phdr)) {
        o.status = "bad elf";
        return o;
    }
    for (unsigned i = 0; i < eh.e_phnum; ++i) {
        Elf64_Phdr ph{};
        const std::uint64_t at = eh.e_phoff + std::uint64_t{i} * sizeof ph;
        if (at + sizeof ph > elf.size()) {
            o.status = "bad elf";
            return o;
        }
        std::memcpy(&ph, elf.data() + at, sizeof ph);
        if (ph.p_type != PT_LOAD) continue;
        if (ph.p_filesz > ph.p_memsz || ph.p_offset + ph.p_filesz > elf.size() ||
            ph.p_vaddr + ph.p_memsz > kStackTop - (1 << 20)) {
            o.status = "elf segment outside the test RAM: " + hex(ph.p_vaddr);
            return o;
        }
        std::memcpy(ram.data() + ph.p_vaddr, elf.data() + ph.p_offset, ph.p_filesz);
    }

    transport::Bus bus;
    TimeBase time;
    HartIrq irq;
    PhysMem pm;
    pm.ram = ram.data();
    pm.ram_base = 0;
    pm.ram_size = kRamSize;
    pm.mmio = &bus;
    Hart hart(0, pm, time, irq);
    // Enter U-mode the way a kernel would: MRET from the trap vector with MPP = U. Every
    // later trap lands on that MRET, which returns to the program after the shim's work.
    const std::uint32_t mret = kMret;
    std::memcpy(ram.data() + kTrapVec, &mret, 4);
    std::uint64_t ms = 0;
    hart.csr_read(csr::kMstatus, ms);
    ms = (ms & ~(mstatus::kMpp | mstatus::kFs)) | (1ull << mstatus::kFsShift);  // FS = Initial
    hart.csr_write(csr::kMstatus, ms);
    hart.csr_write(csr::kMtvec, kTrapVec);
    hart.csr_write(csr::kMepc, eh.e_entry);
    hart.pc = kTrapVec;
    hart.x[2] = kStackTop;
    hart.step();

    std::uint64_t n = 0;
    bool sigill_handler = false;
    while (n < max_insns) {
        hart.step();
        ++n;
        if (hart.pc != kTrapVec) continue;
        const std::uint64_t cause = hart.mcause();
        std::uint64_t epc = 0;
        hart.csr_read(csr::kMepc, epc);
        if (cause == static_cast<std::uint64_t>(Exc::kIllegalInsn) && sigill_handler &&
            epc + 2 <= kRamSize) {
            // What the guest's handler does under QEMU: report, then resume after it.
            const std::uint64_t rec[2] = {kIllegalRecordMagic, epc};
            o.out.append(reinterpret_cast<const char*>(rec), sizeof rec);
            const bool compressed = (ram[epc] & 3) != 3;
            hart.csr_write(csr::kMepc, epc + (compressed ? 2 : 4));
            hart.step();  // the MRET
            continue;
        }
        if (cause != static_cast<std::uint64_t>(Exc::kEcallU)) {
            o.status = "signal " + std::to_string(signal_for(cause));
            o.detail = "trap cause " + std::to_string(cause) + " at pc " + hex(epc) + " tval " +
                       hex(hart.mtval());
            o.insns = n;
            return o;
        }
        const std::uint64_t nr = hart.x[17];
        std::uint64_t& a0 = hart.x[10];
        if (nr == kSysExit || nr == kSysExitGroup) {
            o.status = "exit " + std::to_string(a0 & 0xff);
            o.insns = n;
            return o;
        }
        if (nr == kSysWrite) {
            const std::uint64_t buf = hart.x[11], len = hart.x[12];
            if (buf > kRamSize || len > kRamSize - buf) {
                a0 = static_cast<std::uint64_t>(-14);  // -EFAULT
            } else {
                if (a0 == 1) o.out.append(reinterpret_cast<const char*>(ram.data() + buf), len);
                a0 = len;
            }
        } else if (nr == kSysSigaltstack) {
            a0 = 0;  // signal stacks are QEMU's business: the handler never runs here
        } else if (nr == kSysRtSigaction && a0 == SIGILL) {
            // The handler itself never runs here (see above); only whether there is one.
            std::uint64_t handler = 0;
            const std::uint64_t act = hart.x[11];
            if (act != 0 && act + 8 <= kRamSize) std::memcpy(&handler, ram.data() + act, 8);
            if (act != 0) sigill_handler = handler > 1;  // not SIG_DFL (0) or SIG_IGN (1)
            a0 = 0;
        } else {
            a0 = static_cast<std::uint64_t>(-static_cast<std::int64_t>(kEnosys));
        }
        hart.csr_write(csr::kMepc, epc + 4);
        hart.step();  // the MRET
    }
    o.status = "instruction budget exhausted";
    o.detail = "pc " + hex(hart.pc);
    o.insns = n;
    return o;
}

std::vector<std::uint8_t> make_elf(const std::vector<std::uint8_t>& code, std::uint64_t code_addr,
                                   const std::vector<std::uint8_t>& data, std::uint64_t data_addr) {
    // Layout: ELF header, two program headers, code (page-aligned file offset), data.
    constexpr std::uint64_t kCodeOff = 0x1000;
    const std::uint64_t data_off = (kCodeOff + code.size() + 0xfff) & ~0xfffull;
    std::vector<std::uint8_t> f(data_off + data.size());
    Elf64_Ehdr eh{};
    std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
    eh.e_ident[EI_CLASS] = ELFCLASS64;
    eh.e_ident[EI_DATA] = ELFDATA2LSB;
    eh.e_ident[EI_VERSION] = EV_CURRENT;
    eh.e_ident[EI_OSABI] = ELFOSABI_SYSV;
    eh.e_type = ET_EXEC;
    eh.e_machine = EM_RISCV;
    eh.e_version = EV_CURRENT;
    eh.e_entry = code_addr;
    eh.e_phoff = sizeof eh;
    eh.e_flags = 0x5;  // EF_RISCV_RVC | EF_RISCV_FLOAT_ABI_DOUBLE
    eh.e_ehsize = sizeof eh;
    eh.e_phentsize = sizeof(Elf64_Phdr);
    eh.e_phnum = 2;
    std::memcpy(f.data(), &eh, sizeof eh);
    Elf64_Phdr ph[2]{};
    ph[0].p_type = PT_LOAD;
    ph[0].p_flags = PF_R | PF_X;
    ph[0].p_offset = kCodeOff;
    ph[0].p_vaddr = ph[0].p_paddr = code_addr;
    ph[0].p_filesz = ph[0].p_memsz = code.size();
    ph[0].p_align = 0x1000;
    ph[1].p_type = PT_LOAD;
    ph[1].p_flags = PF_R | PF_W;
    ph[1].p_offset = data_off;
    ph[1].p_vaddr = ph[1].p_paddr = data_addr;
    ph[1].p_filesz = ph[1].p_memsz = data.size();
    ph[1].p_align = 0x1000;
    std::memcpy(f.data() + sizeof eh, ph, sizeof ph);
    std::memcpy(f.data() + kCodeOff, code.data(), code.size());
    std::memcpy(f.data() + data_off, data.data(), data.size());
    return f;
}

std::vector<std::uint8_t> read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), {}};
}

bool write_file(const std::string& path, const std::vector<std::uint8_t>& bytes) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
    f.close();
    if (!f) return false;
    return ::chmod(path.c_str(), 0700) == 0;
}

TempDir::TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "vireo-rvdiff-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) != nullptr) path_ = tmpl;
}

TempDir::~TempDir() {
    if (path_.empty()) return;
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
}

}  // namespace vireo::riscv::diff
