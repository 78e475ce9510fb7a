// vireo: a vhost-user device back end.
//
//   vireo blk --socket-path PATH --image FILE [options]             one virtio-blk device
//   vireo net --socket-path PATH (--tap NAME | --switch NAME) [...]  one virtio-net device
//   vireo console --socket-path PATH (--stdio | --pty | --unix PATH) [--port NAME:BACKEND]...
//   vireo rng --socket-path PATH [--max-bytes-per-sec N]
//   vireo vsock --socket-path PATH --guest-cid N --uds-path PREFIX
//   vireo TYPE --print-capabilities                                 vhost-user.rst conventions
//   vireo run CONFIG.json                                            several devices, one process
//
// Exit status: 0 after a clean shutdown (SIGTERM/SIGINT) or --print-capabilities; 1 when a
// device or socket cannot be set up; 2 for command-line and configuration errors.
#include <fmt/format.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "base/log.hpp"
#include "bridge/run.hpp"
#include "daemon/config.hpp"
#include "devices/blk.hpp"
#include "devices/console.hpp"
#include "devices/net.hpp"
#include "devices/net_switch.hpp"
#include "devices/net_tap.hpp"
#include "devices/rng.hpp"
#include "devices/vsock.hpp"
#include "sandbox/sandbox.hpp"
#include "vhost_user/server.hpp"

namespace {

using vireo::daemon::DaemonConfig;
using vireo::daemon::DeviceConfig;
using vireo::daemon::DeviceType;

constexpr int kExitOk = 0;
constexpr int kExitSetup = 1;
constexpr int kExitUsage = 2;

// --print-capabilities: the VHostUserBackendCapabilities object of QEMU's vhost-user.json
// schema; "type" is a VHostUserBackendType, "features" name the optional options we support.
void print_capabilities(DeviceType type) {
    nlohmann::json caps;
    switch (type) {
        case DeviceType::kBlk:
            caps = {{"type", "block"}, {"features", {"read-only", "blk-file"}}};
            break;
        case DeviceType::kNet:
            caps = {{"type", "net"}, {"features", {"tap", "switch", "mac", "queues"}}};
            break;
        case DeviceType::kConsole:
            caps = {{"type", "console"}, {"features", {"stdio", "pty", "unix", "port"}}};
            break;
        case DeviceType::kRng:
            caps = {{"type", "rng"}, {"features", {"max-bytes-per-sec"}}};
            break;
        case DeviceType::kVsock:
            caps = {{"type", "vsock"}, {"features", {"guest-cid", "uds-path"}}};
            break;
    }
    std::puts(caps.dump(2).c_str());
}

// The device models behind the sockets, alive until the server has stopped.
struct Devices {
    std::vector<std::unique_ptr<vireo::dev::VirtioDevice>> owned;
    std::vector<vireo::vhost_user::Endpoint> endpoints;
};

// --no-sandbox turns confinement off (debugging, strace); see docs/security.md.
bool g_sandbox = true;
// --user: the identity to continue as after setup (resolved at startup).
std::optional<vireo::sandbox::Identity> g_user;
// The vhost-user sockets (chowned to --user's identity).
std::vector<std::string> g_socket_paths;

std::expected<void, std::string> add_device(const DeviceConfig& d, Devices& out) {
    std::unique_ptr<vireo::dev::VirtioDevice> device;
    std::function<void()> flush;
    switch (d.type) {
        case DeviceType::kBlk: {
            auto dev = vireo::dev::BlkDevice::open(d.blk);
            if (!dev) {
                return std::unexpected(dev.error());
            }
            vireo::log::info("{}: image {}: {} sectors, {}{} engine {}, {} queue(s) of up to {}",
                             d.socket_path, d.blk.path, (*dev)->capacity_sectors(),
                             d.blk.read_only ? "read-only, " : "", d.blk.direct ? "O_DIRECT, " : "",
                             vireo::dev::to_string(d.blk.engine), d.blk.num_queues,
                             d.blk.queue_size);
            vireo::dev::BlkDevice* raw = dev->get();
            flush = [raw] { raw->flush_all(); };
            device = std::move(*dev);
            break;
        }
        case DeviceType::kNet: {
            vireo::dev::NetOptions o;
            o.mac = d.net.mac;
            o.queue_pairs = d.net.queue_pairs;
            o.queue_size = d.net.queue_size;
            std::string via;
            if (!d.net.tap.empty()) {
                auto tap = vireo::dev::NetTap::open(d.net.tap, d.net.queue_pairs);
                if (!tap) {
                    return std::unexpected(tap.error());
                }
                via = "tap " + (*tap)->name();
                o.backend = std::move(*tap);
            } else {
                auto sw = vireo::dev::NetSwitch::get(d.net.switch_name);
                auto port = sw->add_port(d.net.queue_pairs);
                if (!port) {
                    return std::unexpected("switch " + d.net.switch_name + ": " + port.error());
                }
                via = "switch " + d.net.switch_name;
                o.backend = std::move(*port);
            }
            auto dev = vireo::dev::NetDevice::create(std::move(o));
            if (!dev) {
                return std::unexpected(dev.error());
            }
            vireo::log::info("{}: net {} on {}, {} queue pair(s)", d.socket_path,
                             vireo::dev::to_string((*dev)->mac()), via, d.net.queue_pairs);
            device = std::move(*dev);
            break;
        }
        case DeviceType::kConsole: {
            auto dev = vireo::dev::ConsoleDevice::create(d.console);
            if (!dev) {
                return std::unexpected(dev.error());
            }
            for (std::size_t p = 0; p < (*dev)->port_count(); ++p) {
                const auto& po = d.console.ports[p];
                vireo::log::info("{}: console port {}{}{}: {}", d.socket_path, p,
                                 po.name.empty() ? "" : " ", po.name,
                                 po.kind == vireo::dev::ConsoleBackendKind::kStdio
                                     ? std::string("stdio")
                                     : (*dev)->port_path(p));
            }
            device = std::move(*dev);
            break;
        }
        case DeviceType::kRng: {
            auto dev = vireo::dev::RngDevice::create(d.rng);
            if (!dev) {
                return std::unexpected(dev.error());
            }
            vireo::log::info("{}: rng, {}", d.socket_path,
                             d.rng.max_bytes_per_sec == 0
                                 ? std::string("unlimited")
                                 : std::to_string(d.rng.max_bytes_per_sec) + " bytes/s");
            device = std::move(*dev);
            break;
        }
        case DeviceType::kVsock: {
            auto dev = vireo::dev::VsockDevice::create(d.vsock);
            if (!dev) {
                return std::unexpected(dev.error());
            }
            vireo::log::info("{}: vsock guest CID {}, host sockets {} and {}_<port>", d.socket_path,
                             d.vsock.guest_cid, d.vsock.uds_path, d.vsock.uds_path);
            device = std::move(*dev);
            break;
        }
    }
    // Ring workers narrow the process-wide allow-list to what serving a queue needs.
    std::function<std::expected<void, std::string>()> worker_init;
    if (g_sandbox) {
        worker_init = [] {
            return vireo::sandbox::install(vireo::sandbox::ThreadClass::kQueueWorker);
        };
    }
    const std::string name = d.socket_fd >= 0 ? "fd " + std::to_string(d.socket_fd) : d.socket_path;
    out.endpoints.push_back(
        {name, d.socket_path, device.get(), std::move(flush), std::move(worker_init), d.socket_fd});
    out.owned.push_back(std::move(device));
    return {};
}

// After setup (images, TAPs, listening sockets open) and before any thread or connection exists:
// no capabilities, and a seccomp allow-list for the rest of the process's life.
std::expected<void, std::string> confine() {
    if (g_user) {
        // Before dropping capabilities: changing uid needs CAP_SETUID. The sockets stay
        // usable by the new identity (their files are removed at shutdown).
        for (const std::string& path : g_socket_paths) {
            if (::chown(path.c_str(), g_user->uid, g_user->gid) != 0) {
                return std::unexpected(fmt::format("chown {}: {}", path, std::strerror(errno)));
            }
        }
        if (auto ok = vireo::sandbox::switch_identity(*g_user); !ok) {
            return ok;
        }
        vireo::log::info("running as uid {} gid {}", g_user->uid, g_user->gid);
    }
    if (!g_sandbox) {
        vireo::log::info("sandbox disabled (--no-sandbox)");
        return {};
    }
    if (auto ok = vireo::sandbox::drop_capabilities(); !ok) {
        return ok;
    }
    return vireo::sandbox::install(vireo::sandbox::ThreadClass::kProcess);
}

int serve(const DaemonConfig& cfg) {
    vireo::log::set_level(cfg.verbose ? vireo::log::Level::kTrace : vireo::log::Level::kInfo);
    Devices devices;
    for (const auto& d : cfg.devices) {
        if (auto ok = add_device(d, devices); !ok) {
            vireo::log::error("{}: {}", d.socket_path, ok.error());
            return kExitSetup;
        }
    }
    auto server = vireo::vhost_user::Server::create(std::move(devices.endpoints));
    if (!server) {
        vireo::log::error("{}", server.error());
        return kExitSetup;
    }
    for (const auto& d : cfg.devices) {
        if (!d.socket_path.empty()) g_socket_paths.push_back(d.socket_path);
    }
    if (auto ok = confine(); !ok) {
        vireo::log::error("sandbox: {}", ok.error());
        return kExitSetup;
    }
    return (*server)->run();
}

int usage_error(const std::string& msg) {
    std::fprintf(stderr, "vireo: error: %s\n", msg.c_str());
    return kExitUsage;
}

// Options every device subcommand has.
struct Common {
    DeviceConfig dev;
    bool caps = false;
    bool verbose = false;
    int queue_size = 256;
};

void add_common(CLI::App* app, Common& c) {
    app->add_option("--socket-path", c.dev.socket_path, "vhost-user unix socket to listen on");
    app->add_option("--fd", c.dev.socket_fd,
                    "Inherited vhost-user socket (listening, or connected to the front end)")
        ->check(CLI::NonNegativeNumber);
    app->add_option("--queue-size", c.queue_size, "Largest ring size the driver may use");
    app->add_flag("--verbose", c.verbose, "Trace every vhost-user message");
    app->add_flag("--print-capabilities", c.caps, "Print back-end capabilities (JSON) and exit");
}

}  // namespace

#if defined(__SANITIZE_ADDRESS__)
// Sanitizer builds only: LeakSanitizer's exit-time check stops the world through a cloned ptrace
// tracer, which the seccomp filter forbids, so the check would spin forever at exit. The unit
// tests keep leak checking; the daemon under ASan keeps every other check.
extern "C" const char* __asan_default_options() {
    return "detect_leaks=0";
}
#endif

int main(int argc, char** argv) {
    CLI::App app{"vireo: vhost-user device back end"};
    app.require_subcommand(1);
    // Accepted before or after the subcommand (fallthrough).
    app.add_flag("--sandbox,!--no-sandbox", g_sandbox,
                 "Confine the process after setup: seccomp allow-list, no capabilities "
                 "(default on)");
    std::string user;
    app.add_option("--user", user,
                   "After setup, continue as USER[:GROUP] or UID:GID (as root: give up root)");
    app.fallthrough();

    // --- vireo blk ---------------------------------------------------------------------
    CLI::App* blk = app.add_subcommand("blk", "Serve one virtio-blk device over vhost-user");
    Common b;
    b.dev.type = DeviceType::kBlk;
    std::string engine = "io_uring";
    int queues = 1;
    add_common(blk, b);
    blk->add_option("--image,--blk-file", b.dev.blk.path, "Raw disk image or block device");
    blk->add_flag("--read-only", b.dev.blk.read_only, "Refuse writes (VIRTIO_BLK_F_RO)");
    blk->add_option("--queues", queues, "Number of request queues (1..256)");
    blk->add_option("--engine", engine, "I/O engine: io_uring or sync");
    blk->add_flag("--direct", b.dev.blk.direct, "Open the image with O_DIRECT");
    blk->add_option("--serial", b.dev.blk.serial, "Serial number returned by GET_ID (<= 20 bytes)");

    // --- vireo net ---------------------------------------------------------------------
    CLI::App* net = app.add_subcommand("net", "Serve one virtio-net device over vhost-user");
    Common n;
    n.dev.type = DeviceType::kNet;
    std::string mac;
    int pairs = 1;
    add_common(net, n);
    net->add_option("--tap", n.dev.net.tap, "TAP interface (created if missing; CAP_NET_ADMIN)");
    net->add_option("--switch", n.dev.net.switch_name, "Name of an in-process L2 switch");
    net->add_option("--mac", mac, "MAC address (default: random, locally administered)");
    net->add_option("--queues", pairs, "RX/TX queue pairs (VIRTIO_NET_F_MQ beyond 1)");

    // --- vireo console -----------------------------------------------------------------
    CLI::App* con =
        app.add_subcommand("console", "Serve one virtio-console device over vhost-user");
    Common c;
    c.dev.type = DeviceType::kConsole;
    bool con_stdio = false;
    bool con_pty = false;
    std::string con_unix;
    std::vector<std::string> extra_ports;
    int cols = 0;
    int rows = 0;
    add_common(con, c);
    con->add_flag("--stdio", con_stdio, "Port 0 is this process's stdin/stdout");
    con->add_flag("--pty", con_pty, "Port 0 is a new pseudo-terminal (its path is logged)");
    con->add_option("--unix", con_unix, "Port 0 is a unix socket listening at this path");
    con->add_option("--port", extra_ports,
                    "Extra named port (MULTIPORT): NAME:pty or NAME:unix:PATH (repeatable)");
    con->add_option("--cols", cols, "Console width (VIRTIO_CONSOLE_F_SIZE with --rows)");
    con->add_option("--rows", rows, "Console height");

    // --- vireo rng ---------------------------------------------------------------------
    CLI::App* rng = app.add_subcommand("rng", "Serve one virtio-rng device over vhost-user");
    Common r;
    r.dev.type = DeviceType::kRng;
    add_common(rng, r);
    rng->add_option("--max-bytes-per-sec", r.dev.rng.max_bytes_per_sec,
                    "Rate limit in bytes per second (0: unlimited)");

    // --- vireo vsock -------------------------------------------------------------------
    CLI::App* vs = app.add_subcommand("vsock", "Serve one virtio-vsock device over vhost-user");
    Common v;
    v.dev.type = DeviceType::kVsock;
    v.dev.vsock.guest_cid = 0;
    add_common(vs, v);
    vs->add_option("--guest-cid", v.dev.vsock.guest_cid, "The guest's context id (>= 3)");
    vs->add_option("--uds-path", v.dev.vsock.uds_path,
                   "Host socket prefix: listens on PREFIX, guest connects reach PREFIX_<port>");

    // --- vireo run ---------------------------------------------------------------------
    CLI::App* run = app.add_subcommand("run", "Serve the devices described by a JSON file");
    std::string config_path;
    bool run_verbose = false;
    run->add_option("config", config_path, "Configuration file (see docs/config.md)")->required();
    run->add_flag("--verbose", run_verbose, "Trace every vhost-user message");

    const std::map<std::string_view, DeviceType> kTypes = {{"blk", DeviceType::kBlk},
                                                           {"net", DeviceType::kNet},
                                                           {"console", DeviceType::kConsole},
                                                           {"rng", DeviceType::kRng},
                                                           {"vsock", DeviceType::kVsock}};
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        // "--print-capabilities: other options and arguments should be ignored".
        if (argc > 1 && kTypes.contains(argv[1])) {
            for (int i = 2; i < argc; ++i) {
                if (std::string_view(argv[i]) == "--print-capabilities") {
                    print_capabilities(kTypes.at(argv[1]));
                    return kExitOk;
                }
            }
        }
        return usage_error(e.what());
    }

    if (!user.empty()) {
        auto id = vireo::sandbox::parse_identity(user);
        if (!id) {
            return usage_error("--user: " + id.error());
        }
        g_user = *id;
    }

    DaemonConfig cfg;
    if (run->parsed()) {
        // A zone configuration (hvisor's virtio_cfg.json format): the hypervisor bridge.
        if (auto rc = vireo::bridge::run_if_zone_config(config_path, run_verbose, confine)) {
            return *rc;
        }
        auto loaded = vireo::daemon::load_config(config_path);
        if (!loaded) {
            return usage_error(loaded.error());
        }
        cfg = std::move(*loaded);
        cfg.verbose = cfg.verbose || run_verbose;
    } else {
        Common* cm = blk->parsed()   ? &b
                     : net->parsed() ? &n
                     : con->parsed() ? &c
                     : rng->parsed() ? &r
                                     : &v;
        const std::string sub(to_string(cm->dev.type));
        if (cm->caps) {
            print_capabilities(cm->dev.type);
            return kExitOk;
        }
        if (cm->dev.socket_path.empty() && cm->dev.socket_fd < 0) {
            return usage_error(sub + ": --socket-path or --fd is required");
        }
        if (cm->queue_size < 1 || cm->queue_size > UINT16_MAX) {
            return usage_error("--queue-size: " + std::to_string(cm->queue_size) + " out of range");
        }
        const auto qs = static_cast<std::uint16_t>(cm->queue_size);
        DeviceConfig& d = cm->dev;
        switch (d.type) {
            case DeviceType::kBlk: {
                if (d.blk.path.empty()) {
                    return usage_error("blk: --image is required");
                }
                auto e = vireo::daemon::parse_engine(engine);
                if (!e) {
                    return usage_error("--engine: " + e.error());
                }
                if (queues < 1 || queues > vireo::daemon::kMaxQueues) {
                    return usage_error("--queues: " + std::to_string(queues) +
                                       " out of range (1.." +
                                       std::to_string(vireo::daemon::kMaxQueues) + ")");
                }
                d.blk.engine = *e;
                d.blk.num_queues = static_cast<std::uint16_t>(queues);
                d.blk.queue_size = qs;
                break;
            }
            case DeviceType::kNet:
                if (!mac.empty()) {
                    auto m = vireo::dev::parse_mac(mac);
                    if (!m) {
                        return usage_error("--mac: " + m.error());
                    }
                    d.net.mac = *m;
                }
                if (pairs < 1 || pairs > UINT16_MAX) {
                    return usage_error("--queues: " + std::to_string(pairs) + " out of range");
                }
                d.net.queue_pairs = static_cast<std::uint16_t>(pairs);
                d.net.queue_size = qs;
                break;
            case DeviceType::kConsole: {
                const int backends = int{con_stdio} + int{con_pty} + int{!con_unix.empty()};
                if (backends != 1) {
                    return usage_error(
                        "console: give exactly one of --stdio, --pty and --unix PATH");
                }
                d.console.ports.clear();
                auto p0 = vireo::daemon::parse_console_port(con_stdio ? "stdio"
                                                            : con_pty ? "pty"
                                                                      : "unix:" + con_unix,
                                                            /*named=*/false);
                d.console.ports.push_back(*p0);
                for (const auto& spec : extra_ports) {
                    auto p = vireo::daemon::parse_console_port(spec, /*named=*/true);
                    if (!p) {
                        return usage_error("--port " + p.error());
                    }
                    d.console.ports.push_back(*p);
                }
                if (cols < 0 || cols > UINT16_MAX || rows < 0 || rows > UINT16_MAX) {
                    return usage_error("--cols/--rows: out of range (0..65535)");
                }
                d.console.cols = static_cast<std::uint16_t>(cols);
                d.console.rows = static_cast<std::uint16_t>(rows);
                d.console.queue_size = qs;
                break;
            }
            case DeviceType::kRng:
                d.rng.queue_size = qs;
                break;
            case DeviceType::kVsock:
                if (d.vsock.guest_cid == 0) {
                    return usage_error("vsock: --guest-cid is required");
                }
                if (d.vsock.uds_path.empty()) {
                    return usage_error("vsock: --uds-path is required");
                }
                d.vsock.queue_size = qs;
                break;
        }
        cfg.verbose = cm->verbose;
        cfg.devices.push_back(std::move(d));
        if (auto ok = vireo::daemon::check_config(cfg, /*cli=*/true); !ok) {
            return usage_error(ok.error());
        }
    }
    // Console and vsock back ends write to sockets whose peers may vanish; a write then must
    // fail with EPIPE (handled where it happens), not kill the process.
    std::signal(SIGPIPE, SIG_IGN);
    return serve(cfg);
}
