// vireo-vmm confines itself once the machine is built (docs/security.md): while a guest runs,
// every thread of the real binary is under a seccomp filter (/proc/PID/task/*/status
// "Seccomp: 2") and the main thread has no capabilities; --no-sandbox leaves both alone. The
// guests spin until --timeout, so the VMM also shows that its run and shutdown paths (timeout,
// joining vCPUs or harts, tearing devices down) stay inside the allow-list: exit status 124, not
// SIGSYS. Which calls the list forbids is tested in tests/hardening/sandbox_test.cpp.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "memory/unique_fd.hpp"
#include "vmm_test_files.hpp"

extern char** environ;

namespace vireo::vmm {
namespace {

std::string slurp(int fd) {
    std::string s;
    char buf[4096];
    ssize_t n;
    for (off_t off = 0; (n = ::pread(fd, buf, sizeof(buf), off)) > 0; off += n) {
        s.append(buf, static_cast<std::size_t>(n));
    }
    return s;
}

// A field of /proc/PID[/task/TID]/status ("Seccomp", "CapEff"), without its padding; nullopt
// once the process is gone.
std::optional<std::string> status_field(const std::string& status_path, const std::string& key) {
    std::ifstream in(status_path);
    std::string line;
    while (std::getline(in, line)) {
        if (line.starts_with(key + ":")) {
            const auto v = line.find_first_not_of(" \t", key.size() + 1);
            return v == std::string::npos ? std::string() : line.substr(v);
        }
    }
    return std::nullopt;
}

// One vireo-vmm process with stdout and stderr in memfds, reaped by wait() (or the destructor).
class VmmProcess {
  public:
    explicit VmmProcess(std::vector<std::string> args)
        : out_(::memfd_create("vmm-out", MFD_CLOEXEC)),
          err_(::memfd_create("vmm-err", MFD_CLOEXEC)) {
        args.insert(args.begin(), VIREO_VMM_BIN);
        std::vector<char*> argv;
        for (auto& a : args) {
            argv.push_back(a.data());
        }
        argv.push_back(nullptr);
        UniqueFd in(::open("/dev/null", O_RDONLY | O_CLOEXEC));
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, in.get(), 0);
        posix_spawn_file_actions_adddup2(&fa, out_.get(), 1);
        posix_spawn_file_actions_adddup2(&fa, err_.get(), 2);
        if (::posix_spawn(&pid_, argv[0], &fa, nullptr, argv.data(), environ) != 0) {
            pid_ = -1;
        }
        posix_spawn_file_actions_destroy(&fa);
    }
    ~VmmProcess() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            wait();
        }
    }
    VmmProcess(const VmmProcess&) = delete;
    VmmProcess& operator=(const VmmProcess&) = delete;

    pid_t pid() const { return pid_; }
    std::string err() const { return slurp(err_.get()); }
    std::string status_path() const { return "/proc/" + std::to_string(pid_) + "/status"; }

    // Polls until `ready` holds or the process ends (zombies keep their /proc entry, so
    // waitpid(WNOHANG) tells). False if it ended first or after `limit`.
    template <typename F>
    bool wait_until(F ready, std::chrono::seconds limit = std::chrono::seconds(20)) {
        const auto end = std::chrono::steady_clock::now() + limit;
        while (std::chrono::steady_clock::now() < end) {
            if (ready()) {
                return true;
            }
            siginfo_t si{};
            if (::waitid(P_PID, static_cast<id_t>(pid_), &si, WEXITED | WNOHANG | WNOWAIT) == 0 &&
                si.si_pid == pid_) {
                return false;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        return false;
    }

    // The exit status, or -(signal) if killed by one.
    int wait() {
        int ws = 0;
        ::waitpid(pid_, &ws, 0);
        pid_ = -1;
        return WIFEXITED(ws) ? WEXITSTATUS(ws) : -WTERMSIG(ws);
    }

    // "Seccomp" of every thread (TSYNC: all must be filtered, not just the main thread).
    std::vector<std::string> thread_seccomp() const {
        std::vector<std::string> v;
        std::error_code ec;
        for (const auto& t :
             std::filesystem::directory_iterator("/proc/" + std::to_string(pid_) + "/task", ec)) {
            if (auto s = status_field(t.path().string() + "/status", "Seccomp")) {
                v.push_back(*s);
            }
        }
        return v;
    }

  private:
    UniqueFd out_;
    UniqueFd err_;
    pid_t pid_ = -1;
};

using test::guest;

// An RV64 M-mode program of one instruction, `j .` (jal x0, 0), for --bios: it never exits.
std::string spinning_riscv_program(const test::TempDir& dir) {
    return dir.file("spin.bin", std::string("\x6f\x00\x00\x00", 4));
}

// Seccomp: 2 (filter mode) on every thread while the guest runs, no effective capabilities;
// then the timeout ends the run normally.
void expect_confined_while_running(VmmProcess& p) {
    ASSERT_GT(p.pid(), 0);
    const bool confined = p.wait_until([&] {
        return status_field(p.status_path(), "Seccomp") == std::optional<std::string>("2");
    });
    EXPECT_TRUE(confined) << p.err();
    if (confined) {
        for (const std::string& s : p.thread_seccomp()) {
            EXPECT_EQ(s, "2");
        }
        EXPECT_EQ(status_field(p.status_path(), "CapEff"), "0000000000000000");
        EXPECT_EQ(status_field(p.status_path(), "NoNewPrivs"), "1");
    }
    EXPECT_EQ(p.wait(), 124) << p.err();
}

// Without the filter: once setup is over (the VMM says so on stderr) Seccomp stays 0.
void expect_unconfined_while_running(VmmProcess& p) {
    ASSERT_GT(p.pid(), 0);
    const bool running = p.wait_until(
        [&] { return p.err().find("sandbox disabled (--no-sandbox)") != std::string::npos; });
    EXPECT_TRUE(running) << p.err();
    if (running) {
        for (const std::string& s : p.thread_seccomp()) {
            EXPECT_EQ(s, "0");
        }
    }
    EXPECT_EQ(p.wait(), 124) << p.err();
}

TEST(VmmSandbox, X86GuestRunsUnderTheFilter) {
    REQUIRE_KVM();
    VmmProcess p({"--kernel", guest("spin"), "--mem", "8M", "--timeout", "3"});
    expect_confined_while_running(p);
}

TEST(VmmSandbox, X86NoSandboxLeavesTheFilterOff) {
    REQUIRE_KVM();
    VmmProcess p({"--kernel", guest("spin"), "--mem", "8M", "--timeout", "3", "--no-sandbox"});
    expect_unconfined_while_running(p);
}

TEST(VmmSandbox, RiscvHartsRunUnderTheFilter) {
    const test::TempDir dir;
    VmmProcess p({"--arch", "riscv64", "--bios", spinning_riscv_program(dir), "--mem", "16M",
                  "--harts", "2", "--timeout", "3"});
    expect_confined_while_running(p);
}

TEST(VmmSandbox, RiscvNoSandboxLeavesTheFilterOff) {
    const test::TempDir dir;
    VmmProcess p({"--arch", "riscv64", "--bios", spinning_riscv_program(dir), "--mem", "16M",
                  "--timeout", "3", "--no-sandbox"});
    expect_unconfined_while_running(p);
}

}  // namespace
}  // namespace vireo::vmm
