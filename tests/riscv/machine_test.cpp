// Whole-machine tests: bare-metal programs (tests/riscv/programs) on the virt-layout machine,
// talking to the UART, CLINT and sifive_test finisher; the generated device tree.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <string>

extern "C" {
#include <libfdt.h>
}

#include "memory/unique_fd.hpp"
#include "riscv/machine.hpp"

namespace vireo::riscv {
namespace {

std::vector<std::uint8_t> program(const std::string& name) {
    std::ifstream f(std::string(VIREO_RISCV_PROGRAMS) + "/" + name + ".bin", std::ios::binary);
    return {std::istreambuf_iterator<char>(f), {}};
}

std::string read_all(int fd) {
    std::string out;
    char buf[256];
    ::lseek(fd, 0, SEEK_SET);
    for (;;) {
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n <= 0) break;
        out.append(buf, static_cast<std::size_t>(n));
    }
    return out;
}

struct ProgramRun {
    std::optional<int> code;
    std::string uart;
};

ProgramRun run_program(const std::string& name, std::uint32_t harts,
                       std::uint64_t nharts_addr = 0) {
    UniqueFd out(::memfd_create("uart", MFD_CLOEXEC));
    MachineConfig cfg;
    cfg.ram_size = 32 << 20;
    cfg.harts = harts;
    cfg.uart_fd = out.get();
    auto m = Machine::create(cfg);
    EXPECT_TRUE(m.has_value());
    if (!m) return {};
    BootImages img;
    img.firmware = program(name);
    EXPECT_FALSE(img.firmware.empty()) << name;
    auto b = (*m)->boot(img);
    EXPECT_TRUE(b.has_value());
    if (nharts_addr != 0) {
        const std::uint32_t n = harts;
        EXPECT_TRUE((*m)->memory().write_obj(nharts_addr, n));
    }
    ProgramRun r;
    r.code = (*m)->run(/*timeout_s=*/60);
    r.uart = read_all(out.get());
    return r;
}

TEST(RiscvMachine, HelloThroughUartAndFinisher) {
    const ProgramRun r = run_program("hello", 1);
    ASSERT_TRUE(r.code.has_value());
    EXPECT_EQ(*r.code, 0);
    EXPECT_EQ(r.uart, "hello from rv64\n");
}

TEST(RiscvMachine, TimerInterruptAndEcall) {
    const ProgramRun r = run_program("timer", 2);
    ASSERT_TRUE(r.code.has_value());
    EXPECT_EQ(*r.code, 0);
}

TEST(RiscvMachine, AtomicsAcrossFourHarts) {
    const ProgramRun r = run_program("smp", 4, kRamBase + 8);
    ASSERT_TRUE(r.code.has_value());
    EXPECT_EQ(*r.code, 0);
}

// Debian's OpenSBI boots on the machine, prints its banner, runs an S-mode payload that uses
// the SBI console and shuts the machine down through SBI SRST (-> sifive_test).
TEST(RiscvMachine, OpenSbiBootsPayloadAndShutsDown) {
    const std::string fw_path = "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_dynamic.bin";
    std::ifstream fw(fw_path, std::ios::binary);
    if (!fw) GTEST_SKIP() << "opensbi not installed";
    UniqueFd out(::memfd_create("uart", MFD_CLOEXEC));
    MachineConfig cfg;
    cfg.ram_size = 64 << 20;
    cfg.harts = 2;
    cfg.uart_fd = out.get();
    auto m = Machine::create(cfg);
    ASSERT_TRUE(m.has_value());
    BootImages img;
    img.firmware.assign(std::istreambuf_iterator<char>(fw), {});
    img.kernel = program("sbi_payload");
    ASSERT_TRUE((*m)->boot(img).has_value());
    const auto code = (*m)->run(/*timeout_s=*/120);
    const std::string uart = read_all(out.get());
    ASSERT_TRUE(code.has_value()) << uart;
    EXPECT_EQ(*code, 0);
    EXPECT_NE(uart.find("OpenSBI v"), std::string::npos) << uart;
    EXPECT_NE(uart.find("Platform HART Count       : 2"), std::string::npos) << uart;
    EXPECT_NE(uart.find("Domain0 Next Mode         : S-mode"), std::string::npos) << uart;
    EXPECT_NE(uart.find("payload: hello from S-mode"), std::string::npos) << uart;
}

TEST(RiscvMachine, RejectsBadConfigs) {
    MachineConfig cfg;
    cfg.harts = 0;
    EXPECT_FALSE(Machine::create(cfg).has_value());
    cfg.harts = kMaxHarts + 1;
    EXPECT_FALSE(Machine::create(cfg).has_value());
    cfg.harts = 1;
    cfg.ram_size = 1 << 20;
    EXPECT_FALSE(Machine::create(cfg).has_value());
}

TEST(RiscvMachine, DeviceTreeDescribesTheMachine) {
    MachineConfig cfg;
    cfg.harts = 2;
    cfg.bootargs = "console=ttyS0";
    auto m = Machine::create(cfg);
    ASSERT_TRUE(m.has_value());
    auto fdt = (*m)->build_fdt(0x88000000, 0x88001000);
    ASSERT_TRUE(fdt.has_value()) << fdt.error();
    const void* f = fdt->data();
    ASSERT_EQ(fdt_check_header(f), 0);
    const int chosen = fdt_path_offset(f, "/chosen");
    ASSERT_GE(chosen, 0);
    EXPECT_STREQ(static_cast<const char*>(fdt_getprop(f, chosen, "bootargs", nullptr)),
                 "console=ttyS0");
    int len = 0;
    const void* start = fdt_getprop(f, chosen, "linux,initrd-start", &len);
    ASSERT_EQ(len, 8);
    fdt64_t initrd_start;  // device-tree properties are only 4-byte aligned
    std::memcpy(&initrd_start, start, sizeof initrd_start);
    EXPECT_EQ(fdt64_to_cpu(initrd_start), 0x88000000u);
    EXPECT_GE(fdt_path_offset(f, "/cpus/cpu@1/interrupt-controller"), 0);
    const int cpu0 = fdt_path_offset(f, "/cpus/cpu@0");
    EXPECT_STREQ(static_cast<const char*>(fdt_getprop(f, cpu0, "riscv,isa", nullptr)),
                 "rv64imafdc_zicsr_zifencei");
    EXPECT_GE(fdt_path_offset(f, "/soc/serial@10000000"), 0);
    EXPECT_GE(fdt_path_offset(f, "/soc/plic@c000000"), 0);
    EXPECT_GE(fdt_path_offset(f, "/soc/clint@2000000"), 0);
    EXPECT_GE(fdt_path_offset(f, "/soc/test@100000"), 0);
    const int mem = fdt_path_offset(f, "/memory@80000000");
    ASSERT_GE(mem, 0);
    const void* reg = fdt_getprop(f, mem, "reg", &len);
    ASSERT_EQ(len, 16);
    fdt64_t reg_cells[2];  // <address size>, 4-byte aligned in the blob
    std::memcpy(reg_cells, reg, sizeof reg_cells);
    EXPECT_EQ(fdt64_to_cpu(reg_cells[1]), cfg.ram_size);
}

}  // namespace
}  // namespace vireo::riscv
