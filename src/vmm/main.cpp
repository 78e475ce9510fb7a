// vireo-vmm: a KVM virtual machine monitor for small bare-metal x86-64 guests, serving vireo's
// device models through vireo's own transports (docs/vmm.md).
//
//   vireo-vmm --kernel GUEST.elf [--mem 64M] [--vcpus N] [--append STR] [--device SPEC]...
//             [--config FILE.json] [--serial FILE] [--timeout SECONDS] [--verbose]
//             [--no-irqfd] [--stats] [--no-sandbox]
//   vireo-vmm --bench-exits N        µs per PIO exit of a built-in guest
//
// Exit status: the guest's (port 0xF4, value & 0xff); 255 VM failure; 124 timeout; 130 signal;
// 1 setup error; 2 usage/configuration error (docs/boot-protocol.md).
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "base/log.hpp"
#include "sandbox/sandbox.hpp"
#include "vmm/config.hpp"
#include "vmm/elf_loader.hpp"
#include "vmm/riscv_main.hpp"
#include "vmm/vm.hpp"

namespace {

using namespace vireo::vmm;

int usage_error(const std::string& msg) {
    std::fprintf(stderr, "vireo-vmm: error: %s\n", msg.c_str());
    return kExitUsage;
}

// After setup (RAM, images, TAPs, sockets, KVM VM and vCPU fds all exist), before the guest
// runs: no capabilities, and the seccomp allow-list of docs/security.md. A guest that takes
// over a device model gets a process that can only do what a running VMM does.
bool confine(bool sandbox) {
    if (!sandbox) {
        vireo::log::info("sandbox disabled (--no-sandbox)");
        return true;
    }
    if (auto ok = vireo::sandbox::confine(vireo::sandbox::ThreadClass::kVmm); !ok) {
        vireo::log::error("sandbox: {}", ok.error());
        return false;
    }
    return true;
}

int bench_exits(VmmConfig cfg, std::uint32_t count, bool sandbox) {
    const auto code = pio_loop_guest(count);
    auto vm = Vm::create(cfg, code, raw_image(code.size()));
    if (!vm) {
        vireo::log::error("{}", vm.error());
        return kExitSetup;
    }
    if (!confine(sandbox)) {
        return kExitSetup;
    }
    const VmOutcome out = (*vm)->run();
    if (cfg.stats) {
        std::fputs((*vm)->stats_report().c_str(), stderr);
    }
    if (!out.guest_exit) {
        vireo::log::error("{}", out.message);
        return out.exit_code;
    }
    const ExitTiming& t = (*vm)->timing();
    // The first exit is the first `out`; the last is the exit port: count exits apart.
    const double us = std::chrono::duration<double, std::micro>(t.last - t.first).count();
    std::printf("bench-exits: %u PIO exits in %.1f ms: %.2f us per KVM_RUN PIO exit\n", count,
                us / 1000.0, count > 0 ? us / count : 0.0);
    return 0;
}

int run(int argc, char** argv) {
    if (wants_riscv(argc, argv)) {
        return riscv_main(argc, argv);  // the RV64 emulator back end (docs/riscv.md)
    }
    CLI::App app{"vireo-vmm: KVM VMM for bare-metal x86-64 guests"};
    std::string kernel, mem, append, config_path, serial;
    std::uint32_t vcpus = 1;
    double timeout = 0;
    bool verbose = false;
    std::vector<std::string> devices;
    std::uint32_t bench = 0;
    auto* o_kernel = app.add_option("--kernel", kernel, "Guest ELF64 executable");
    auto* o_mem = app.add_option("--mem", mem, "RAM size, e.g. 64M (default 64M, max 3G)");
    auto* o_vcpus = app.add_option("--vcpus", vcpus, "Number of vCPUs (1..64)");
    auto* o_append = app.add_option("--append", append, "Guest command line (BootInfo.cmdline)");
    app.add_option("--device", devices,
                   "blk,transport=mmio|pci,image=FILE[,read-only][,packed=off] | "
                   "net,transport=..,switch=NAME|tap=NAME[,mac=..] | "
                   "console,transport=..[,stdio|file=PATH] | rng,transport=.. | edu");
    app.add_option("--config", config_path, "JSON configuration (docs/vmm.md)");
    auto* o_serial = app.add_option("--serial", serial, "UART output file (default stdout)");
    auto* o_timeout = app.add_option("--timeout", timeout, "Wall-clock limit in seconds");
    auto* o_verbose = app.add_flag("--verbose", verbose, "Log more");
    bool no_irqfd = false;
    bool stats = false;
    app.add_flag("--no-irqfd", no_irqfd,
                 "Inject interrupts with KVM_IRQ_LINE / KVM_SIGNAL_MSI only (no irqfd)");
    app.add_flag("--stats", stats, "Print exit and interrupt counters to stderr at the end");
    std::string bridge_socket;
    std::uint32_t zone = 0;
    app.add_option("--bridge", bridge_socket,
                   "Serve virtio-mmio through a vireo daemon's hypervisor bridge at this socket");
    app.add_option("--zone", zone, "Zone (VM) id for --bridge");
    bool sandbox = true;
    app.add_flag("--sandbox,!--no-sandbox", sandbox,
                 "Confine the VMM after setup: seccomp allow-list, no capabilities (default on; "
                 "docs/security.md)");
    auto* o_bench = app.add_option("--bench-exits", bench,
                                   "Measure µs per PIO exit with a built-in guest of N `out`s");
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        return usage_error(e.what());
    }

    VmmConfig cfg;
    if (!config_path.empty()) {
        auto loaded = load_config(config_path);
        if (!loaded) {
            return usage_error(loaded.error());
        }
        cfg = std::move(*loaded);
    }
    // Command-line options override the file; --device entries are added after its devices.
    if (o_kernel->count() > 0) {
        cfg.kernel = kernel;
    }
    if (o_mem->count() > 0) {
        auto m = parse_size(mem);
        if (!m) {
            return usage_error("--mem: " + m.error());
        }
        cfg.mem_size = *m;
    }
    if (o_vcpus->count() > 0) {
        cfg.vcpus = vcpus;
    }
    if (o_append->count() > 0) {
        cfg.append = append;
    }
    if (o_serial->count() > 0) {
        cfg.serial = serial;
    }
    if (o_timeout->count() > 0) {
        if (timeout < 0) {
            return usage_error("--timeout: must not be negative");
        }
        cfg.timeout = timeout;
    }
    if (o_verbose->count() > 0) {
        cfg.verbose = verbose;
    }
    if (no_irqfd) {
        cfg.irqfd = false;
    }
    if (stats) {
        cfg.stats = true;
    }
    if (!bridge_socket.empty()) {
        cfg.bridge = bridge_socket;
        cfg.zone = zone;
    }
    for (std::size_t i = 0; i < devices.size(); ++i) {
        auto d = parse_device(devices[i], fmt::format("--device #{} '{}'", i + 1, devices[i]));
        if (!d) {
            return usage_error(d.error());
        }
        cfg.devices.push_back(std::move(*d));
    }
    vireo::log::set_level(cfg.verbose ? vireo::log::Level::kTrace : vireo::log::Level::kInfo);

    if (o_bench->count() > 0) {
        cfg.kernel = "(built-in bench guest)";
        if (auto ok = check_config(cfg); !ok) {
            return usage_error(ok.error());
        }
        return bench_exits(cfg, bench, sandbox);
    }
    if (auto ok = check_config(cfg); !ok) {
        return usage_error(ok.error());
    }
    auto file = read_file(cfg.kernel, cfg.mem_size);
    if (!file) {
        return usage_error("--kernel: " + file.error());
    }
    auto image = parse_elf(*file, cfg.mem_size);
    if (!image) {
        return usage_error(fmt::format("--kernel '{}': {}", cfg.kernel, image.error()));
    }
    auto vm = Vm::create(cfg, *file, *image);
    if (!vm) {
        vireo::log::error("{}", vm.error());
        return kExitSetup;
    }
    if (!confine(sandbox)) {
        return kExitSetup;
    }
    const VmOutcome out = (*vm)->run();
    if (cfg.stats) {
        std::fputs((*vm)->stats_report().c_str(), stderr);
    }
    if (!out.guest_exit) {
        vireo::log::error("{}", out.message);
    } else if (cfg.verbose) {
        vireo::log::info("guest exited with status {}", out.exit_code);
    }
    return out.exit_code;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const std::exception& e) {
        // Setup failures deep in a library (e.g. no eventfd for a queue) end here, not in abort.
        std::fprintf(stderr, "vireo-vmm: error: %s\n", e.what());
        return kExitSetup;
    }
}
