// vireo-vmm --arch riscv64: the RISC-V system emulator back end (docs/riscv.md).
//
//   vireo-vmm --arch riscv64 --kernel Image [--initrd FILE] [--append ARGS] [--mem 256M]
//             [--harts N] [--bios fw_dynamic.bin] [--device SPEC]... [--serial FILE]
//             [--timeout SECONDS] [--stats] [--bridge SOCKET --zone ID] [--no-sandbox]
//
// With --bridge, the virtio-mmio devices a `vireo` daemon configures for zone ID are added
// (its addresses and PLIC sources), their accesses forwarded through the hypervisor bridge
// (docs/bridge.md); --device adds local devices beside them.
//
// Without --bios, Debian's OpenSBI fw_dynamic is the M-mode firmware and --kernel the S-mode
// payload. With --bios a bare-metal program and no --kernel, the program runs alone in M-mode.
// Exit status: the guest's (sifive_test finisher code), 124 timeout, 1 setup, 2 usage error.
#include "vmm/riscv_main.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "base/log.hpp"
#include "bridge/client.hpp"
#include "devices/blk.hpp"
#include "memory/unique_fd.hpp"
#include "riscv/machine.hpp"
#include "sandbox/sandbox.hpp"
#include "vmm/config.hpp"
#include "vmm/device_model.hpp"
#include "vmm/elf_loader.hpp"
#include "vmm/serial_input.hpp"
#include "vmm/vm.hpp"

namespace vireo::vmm {

namespace {

constexpr const char* kDefaultBios = "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_dynamic.bin";
constexpr std::uint64_t kMaxImage = 1ull << 30;
constexpr std::uint64_t kDefaultRamSize = 256ull << 20;

int fail(int code, const std::string& msg) {
    std::fprintf(stderr, "vireo-vmm: error: %s\n", msg.c_str());
    return code;
}

// Connects to the daemon as zone `zone` (handing it the RAM's memfd) and puts each device it
// announces on the machine's bus, its interrupt requests on the PLIC.
std::expected<std::unique_ptr<bridge::BridgeClient>, std::string> attach_bridge(
    riscv::Machine& m, const std::string& socket, std::uint32_t zone, std::uint32_t harts) {
    bridge::ClientOptions o;
    o.socket = socket;
    o.vm_id = zone;
    o.vcpus = harts;
    o.mem_fd = m.ram_fd();
    auto c = bridge::BridgeClient::connect(o);
    if (!c) return std::unexpected(c.error());
    for (const bridge::DeviceInfo& d : (*c)->devices()) {
        if (auto r = m.add_remote_virtio(d.addr, d.len, d.irq, (*c)->bus_device(d.addr)); !r) {
            return std::unexpected("zone " + std::to_string(zone) + ": " + r.error());
        }
    }
    (*c)->start_irq_thread([&m](std::uint32_t irq, bool level) { m.set_irq_level(irq, level); });
    std::fprintf(stderr, "vireo-vmm: bridge: zone %u with %zu device(s) from %s\n", zone,
                 (*c)->devices().size(), socket.c_str());
    return std::move(*c);
}

// The --config file's path, if the command line names one.
std::optional<std::string> config_arg(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
        const std::string_view a(argv[i]);
        if (a == "--config" && i + 1 < argc) return std::string(argv[i + 1]);
        if (a.starts_with("--config=")) return std::string(a.substr(9));
    }
    return std::nullopt;
}

}  // namespace

bool wants_riscv(int argc, char** argv) {
    for (int i = 1; i + 1 < argc; ++i) {
        if (std::string_view(argv[i]) == "--arch" && std::string_view(argv[i + 1]) == "riscv64") {
            return true;
        }
    }
    for (int i = 1; i < argc; ++i) {
        if (std::string_view(argv[i]) == "--arch=riscv64") return true;
    }
    // A configuration file may choose the machine; an unreadable one is reported by the x86 path.
    if (auto path = config_arg(argc, argv)) {
        auto cfg = load_config(*path);
        return cfg && cfg->arch == "riscv64";
    }
    return false;
}

int riscv_main(int argc, char** argv) {
    CLI::App app{"vireo-vmm --arch riscv64: RV64GC system emulator"};
    std::string arch, kernel, initrd, append, mem, bios, serial, config_path;
    std::uint32_t harts = 1;
    double timeout = 0;
    bool stats = false;
    std::vector<std::string> devices;
    std::string bridge_socket;
    std::uint32_t zone = 0;
    app.add_option("--arch", arch, "riscv64 (or \"arch\": \"riscv64\" in --config)");
    app.add_option("--config", config_path, "JSON configuration (docs/vmm.md)");
    auto* o_kernel = app.add_option("--kernel", kernel, "Linux Image (S-mode payload)");
    auto* o_initrd = app.add_option("--initrd", initrd, "Initial ramdisk");
    auto* o_append = app.add_option("--append", append, "Kernel command line (/chosen/bootargs)");
    auto* o_mem = app.add_option("--mem", mem, "RAM size (default 256M)");
    auto* o_harts = app.add_option("--harts", harts, "Number of harts (1..4)");
    auto* o_bios =
        app.add_option("--bios", bios, "M-mode firmware or bare-metal program (default OpenSBI)");
    app.add_option("--device", devices,
                   "blk,image=FILE | net,switch=NAME|tap=NAME | console | rng");
    auto* o_serial = app.add_option("--serial", serial, "UART output file (default stdout)");
    auto* o_timeout = app.add_option("--timeout", timeout, "Wall-clock limit in seconds");
    app.add_flag("--stats", stats, "Print instructions executed and MIPS at the end");
    auto* o_bridge =
        app.add_option("--bridge", bridge_socket,
                       "Add the virtio-mmio devices a vireo daemon serves at this bridge socket");
    auto* o_zone = app.add_option("--zone", zone, "Zone (VM) id for --bridge");
    bool sandbox = true;
    app.add_flag("--sandbox,!--no-sandbox", sandbox,
                 "Confine the VMM after setup: seccomp allow-list, no capabilities (default on; "
                 "docs/security.md)");
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        return fail(kExitUsage, e.what());
    }
    // Every line this VMM prints starts "vireo-vmm:" (its errors and statistics too), the
    // device models' and transports' lines included.
    log::set_sink([](log::Level, std::string_view line) {
        std::fprintf(stderr, "vireo-vmm: %.*s\n", static_cast<int>(line.size()), line.data());
    });

    // The file gives the defaults, the command line overrides; --device entries come after the
    // file's devices (as on x86).
    VmmConfig cfg;
    if (!config_path.empty()) {
        auto loaded = load_config(config_path);
        if (!loaded) return fail(kExitUsage, loaded.error());
        cfg = std::move(*loaded);
    }
    if (!cfg.mem_given) cfg.mem_size = kDefaultRamSize;
    if (o_kernel->count() > 0) cfg.kernel = kernel;
    if (o_initrd->count() > 0) cfg.initrd = initrd;
    if (o_bios->count() > 0) cfg.bios = bios;
    if (o_append->count() > 0) cfg.append = append;
    if (o_harts->count() > 0) cfg.vcpus = harts;
    if (o_serial->count() > 0) cfg.serial = serial;
    if (o_timeout->count() > 0) cfg.timeout = timeout;
    if (o_bridge->count() > 0) cfg.bridge = bridge_socket;
    if (o_zone->count() > 0) cfg.zone = zone;
    if (stats) cfg.stats = true;
    if (o_mem->count() > 0) {
        auto size = parse_size(mem);
        if (!size) return fail(kExitUsage, "--mem: " + size.error());
        cfg.mem_size = *size;
    }
    for (std::size_t i = 0; i < devices.size(); ++i) {
        auto spec = parse_device(devices[i], fmt::format("--device #{} '{}'", i + 1, devices[i]));
        if (!spec) return fail(kExitUsage, spec.error());
        cfg.devices.push_back(std::move(*spec));
    }
    if (cfg.timeout < 0) return fail(kExitUsage, "--timeout: must not be negative");

    riscv::MachineConfig mc;
    mc.ram_size = cfg.mem_size;
    mc.harts = cfg.vcpus;
    mc.bootargs = cfg.append;
    UniqueFd serial_fd;
    if (!cfg.serial.empty()) {
        serial_fd.reset(::open(cfg.serial.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
        if (!serial_fd) return fail(kExitSetup, "cannot open --serial " + cfg.serial);
        mc.uart_fd = serial_fd.get();
    }
    riscv::BootImages img;
    if (cfg.bios.empty()) {
        if (cfg.kernel.empty()) return fail(kExitUsage, "--kernel or --bios is required");
        cfg.bios = kDefaultBios;
    }
    auto fw = read_file(cfg.bios, kMaxImage);
    if (!fw) return fail(kExitUsage, "--bios: " + fw.error());
    img.firmware = std::move(*fw);
    if (!cfg.kernel.empty()) {
        auto k = read_file(cfg.kernel, kMaxImage);
        if (!k) return fail(kExitUsage, "--kernel: " + k.error());
        img.kernel = std::move(*k);
    }
    if (!cfg.initrd.empty()) {
        auto i = read_file(cfg.initrd, kMaxImage);
        if (!i) return fail(kExitUsage, "--initrd: " + i.error());
        img.initrd = std::move(*i);
    }

    // Declared first so that on every return path the machine's transports (which reference
    // the models) are destroyed before the models.
    std::vector<VirtioModel> models;
    auto machine = riscv::Machine::create(mc);
    if (!machine) return fail(kExitUsage, machine.error());
    std::unique_ptr<bridge::BridgeClient> bridge;
    if (!cfg.bridge.empty()) {
        auto b = attach_bridge(**machine, cfg.bridge, cfg.zone, cfg.vcpus);
        if (!b) return fail(kExitSetup, "--bridge " + cfg.bridge + ": " + b.error());
        bridge = std::move(*b);
    }
    for (const DeviceSpec& spec : cfg.devices) {
        if (spec.transport != Transport::kMmio) {
            return fail(kExitUsage, spec.where + ": riscv64 has virtio-mmio only (transport=mmio)");
        }
        auto m = make_virtio_model(spec);
        if (!m) return fail(kExitSetup, m.error());
        if (auto r = (*machine)->add_virtio(*m->model, spec.legacy); !r) {
            return fail(kExitUsage, spec.where + ": " + r.error());
        }
        models.push_back(std::move(*m));
    }
    if (auto r = (*machine)->boot(img); !r) return fail(kExitSetup, r.error());
    std::unique_ptr<SerialInput> serial_in;  // reads into the machine's UART: stops first
    if (serial_reads_stdin(cfg)) {
        auto in = SerialInput::start(STDIN_FILENO, (*machine)->uart());
        if (!in) return fail(kExitSetup, in.error());
        serial_in = std::move(*in);
    }
    // Setup is over (images read, RAM and devices built, TAPs, sockets and the bridge open,
    // the terminal set up): the harts run confined (docs/security.md). The hart threads are
    // created by run() and so start without capabilities.
    if (!sandbox) {
        std::fprintf(stderr, "vireo-vmm: sandbox disabled (--no-sandbox)\n");
    } else if (auto ok = sandbox::confine(sandbox::ThreadClass::kVmm); !ok) {
        return fail(kExitSetup, "sandbox: " + ok.error());
    }

    const auto t0 = std::chrono::steady_clock::now();
    const auto code = (*machine)->run(cfg.timeout);
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (cfg.stats) {
        const std::uint64_t n = (*machine)->instructions();
        std::fprintf(stderr, "vireo-vmm: %llu instructions in %.2f s: %.1f MIPS\n",
                     static_cast<unsigned long long>(n), secs, secs > 0 ? n / secs / 1e6 : 0.0);
    }
    const std::string state = code ? std::string() : (*machine)->describe();
    serial_in.reset();
    bridge.reset();    // its interrupt thread drives the machine's PLIC
    machine->reset();  // devices stop before their models go
    for (auto& m : models) {
        if (m.blk != nullptr && !m.blk->flush_all())
            std::fprintf(stderr, "vireo-vmm: flush failed\n");
    }
    if (!code) {
        std::fprintf(stderr, "vireo-vmm: timeout after %.1f s\n", secs);
        // Where the guest was: enough to find a hang's loop in the kernel's System.map.
        std::fprintf(stderr, "%s", state.c_str());
        return kExitTimeout;
    }
    return *code;
}

}  // namespace vireo::vmm
