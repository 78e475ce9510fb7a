// Runs the vireo-vmm binary: command-line errors (no KVM needed) and tiny self-test guests.
// KVM runs are skipped only when /dev/kvm does not exist. Guest code may run under instruction
// emulation here (~µs per instruction), so every guest is a handful of instructions.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "memory/unique_fd.hpp"
#include "vmm_test_files.hpp"

extern char** environ;

namespace vireo::vmm {
namespace {

struct Result {
    int status = -1;  // exit status, or -1 if killed by a signal
    std::string out;
    std::string err;
};

std::string slurp(int fd) {
    std::string s;
    ::lseek(fd, 0, SEEK_SET);
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof(buf))) > 0) {
        s.append(buf, static_cast<std::size_t>(n));
    }
    return s;
}

Result run_vmm(std::vector<std::string> args) {
    args.insert(args.begin(), VIREO_VMM_BIN);
    std::vector<char*> argv;
    for (auto& a : args) {
        argv.push_back(a.data());
    }
    argv.push_back(nullptr);
    UniqueFd out(::memfd_create("vmm-out", MFD_CLOEXEC));
    UniqueFd err(::memfd_create("vmm-err", MFD_CLOEXEC));
    UniqueFd in(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in.get(), 0);
    posix_spawn_file_actions_adddup2(&fa, out.get(), 1);
    posix_spawn_file_actions_adddup2(&fa, err.get(), 2);
    pid_t pid = -1;
    Result r;
    if (::posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ) != 0) {
        posix_spawn_file_actions_destroy(&fa);
        r.err = "posix_spawn failed";
        return r;
    }
    posix_spawn_file_actions_destroy(&fa);
    int ws = 0;
    ::waitpid(pid, &ws, 0);
    r.status = WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
    r.out = slurp(out.get());
    r.err = slurp(err.get());
    return r;
}

using test::guest;
using test::TempDir;

// --- errors before any VM exists ---------------------------------------------------------

TEST(VmmCli, UnknownDeviceKeyIsAUsageError) {
    auto r = run_vmm({"--kernel", guest("hello"), "--device", "blk,image=x,colour=red"});
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.err.find("unknown key 'colour'"), std::string::npos) << r.err;
}

TEST(VmmCli, BadSizeIsAUsageError) {
    auto r = run_vmm({"--kernel", guest("hello"), "--mem", "lots"});
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.err.find("--mem"), std::string::npos) << r.err;
    r = run_vmm({"--kernel", guest("hello"), "--mem", "8G"});
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.err.find("out of range"), std::string::npos) << r.err;
}

TEST(VmmCli, MissingOrMalformedKernel) {
    auto r = run_vmm({"--kernel", "/nonexistent/guest.elf"});
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.err.find("cannot open '/nonexistent/guest.elf'"), std::string::npos) << r.err;
    TempDir t;
    r = run_vmm({"--kernel", t.file("text.elf",
                                    "not an elf at all, just some words here....."
                                    "..........................................")});
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.err.find("bad magic"), std::string::npos) << r.err;
    r = run_vmm({});
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.err.find("no guest kernel"), std::string::npos) << r.err;
}

TEST(VmmCli, BadConfigFileNamesFileAndField) {
    TempDir t;
    const std::string cfg = t.file("vm.json", R"({"kernel": "g.elf", "memory": "1G"})");
    auto r = run_vmm({"--config", cfg});
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.err.find(cfg), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("config.memory: unknown field"), std::string::npos) << r.err;
}

// --- KVM runs ----------------------------------------------------------------------------

TEST(VmmRun, HelloPrintsAndExitsWithTheGuestsCode) {
    REQUIRE_KVM();
    auto r = run_vmm({"--kernel", guest("hello"), "--mem", "8M", "--timeout", "20"});
    EXPECT_EQ(r.status, 42) << r.err;
    EXPECT_EQ(r.out, "hello\n");
}

TEST(VmmRun, SerialToAFile) {
    REQUIRE_KVM();
    TempDir t;
    const std::string log = t.file("serial.log");
    auto r = run_vmm({"--kernel", guest("hello"), "--serial", log, "--timeout", "20"});
    EXPECT_EQ(r.status, 42) << r.err;
    EXPECT_EQ(r.out, "");
    std::ifstream in(log);
    std::stringstream s;
    s << in.rdbuf();
    EXPECT_EQ(s.str(), "hello\n");
}

TEST(VmmRun, EntryStateMatchesTheBootProtocol) {
    REQUIRE_KVM();
    // The guest exits with 7 when magic, version, RSP, CS, cmdline and CR3 are as documented.
    auto r = run_vmm(
        {"--kernel", guest("boot_state"), "--mem", "8M", "--append", "xyz", "--timeout", "20"});
    EXPECT_EQ(r.status, 7) << r.err;
}

TEST(VmmRun, TripleFaultIsReported) {
    REQUIRE_KVM();
    auto r = run_vmm({"--kernel", guest("triple_fault"), "--mem", "8M", "--timeout", "20"});
    EXPECT_EQ(r.status, 255);
    EXPECT_NE(r.err.find("triple fault"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("RIP=0x100000"), std::string::npos) << r.err;
}

TEST(VmmRun, TimeoutStopsARunawayGuest) {
    REQUIRE_KVM();
    auto r = run_vmm({"--kernel", guest("spin"), "--mem", "8M", "--timeout", "0.5"});
    EXPECT_EQ(r.status, 124);
    EXPECT_NE(r.err.find("timeout"), std::string::npos) << r.err;
}

TEST(VmmRun, DevicesOnEveryTransportAreSetUpAndTornDown) {
    REQUIRE_KVM();
    TempDir t;
    // Two images: the blk model locks its image against a second user.
    const std::string img = t.file("disk.img", std::string(64 * 1024, '\0'));
    const std::string img2 = t.file("disk2.img", std::string(64 * 1024, '\0'));
    const std::string console = t.file("console.out");
    // Two net devices on one in-process switch, blk and rng on both transports, edu on PCI.
    auto r = run_vmm({"--kernel",  guest("hello"),
                      "--mem",     "16M",
                      "--timeout", "20",
                      "--device",  "blk,transport=mmio,image=" + img,
                      "--device",  "blk,transport=pci,image=" + img2 + ",read-only,packed=off",
                      "--device",  "net,transport=mmio,switch=sw0",
                      "--device",  "net,transport=pci,switch=sw0,mac=52:54:00:00:00:02",
                      "--device",  "rng,transport=pci",
                      "--device",  "console,transport=mmio,file=" + console,
                      "--device",  "edu"});
    EXPECT_EQ(r.status, 42) << r.err;
    EXPECT_EQ(r.out, "hello\n");
}

TEST(VmmRun, JsonConfig) {
    REQUIRE_KVM();
    TempDir t;
    const std::string cfg = t.file("vm.json", R"({"kernel": ")" + guest("hello") +
                                                  R"(", "mem": "8M", "timeout": 20,
        "devices": [{"type": "rng"}, {"type": "edu"}]})");
    auto r = run_vmm({"--config", cfg});
    EXPECT_EQ(r.status, 42) << r.err;
    EXPECT_EQ(r.out, "hello\n");
}

TEST(VmmRun, MissingDiskImageIsASetupError) {
    REQUIRE_KVM();
    auto r = run_vmm({"--kernel", guest("hello"), "--device", "blk,image=/nonexistent/disk.img"});
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.err.find("--device #1"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("/nonexistent/disk.img"), std::string::npos) << r.err;
}

TEST(VmmRun, BenchExitsMode) {
    REQUIRE_KVM();
    auto r = run_vmm({"--bench-exits", "200", "--timeout", "20"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find("us per KVM_RUN PIO exit"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace vireo::vmm

namespace vireo::vmm {
namespace {

TEST(VmmRun, PciEnumerationEduAndNotifyIoeventfdsFollowBar0) {
    REQUIRE_KVM();
    auto r = run_vmm({"--kernel", guest("pci"), "--mem", "8M", "--timeout", "20", "--verbose",
                      "--device", "edu", "--device", "rng,transport=pci"});
    EXPECT_EQ(r.status, 42) << r.err;
    // The guest placed the virtio function's BAR 0: its notify ioeventfd moved there.
    EXPECT_NE(r.err.find("PCI slot 2: 1 notify ioeventfds at BAR 0 = 0xc0100000"),
              std::string::npos)
        << r.err;
    EXPECT_EQ(r.err.find("trapped path"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace vireo::vmm

namespace vireo::vmm {
namespace {

TEST(VmmRun, SecondVcpuStartsThroughTheStartPort) {
    REQUIRE_KVM();
    auto r = run_vmm({"--kernel", guest("smp"), "--mem", "8M", "--vcpus", "2", "--timeout", "20"});
    EXPECT_EQ(r.status, 42) << r.err;
}

}  // namespace
}  // namespace vireo::vmm
