// vireo: a vhost-user device back end.
//
//   vireo blk --socket-path PATH --image FILE [options]   one virtio-blk device
//   vireo blk --print-capabilities                          vhost-user.rst back-end conventions
//   vireo run CONFIG.json                                   several devices from one process
//
// Exit status: 0 after a clean shutdown (SIGTERM/SIGINT) or --print-capabilities; 1 when a
// device or socket cannot be set up; 2 for command-line and configuration errors.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "daemon/config.hpp"
#include "devices/blk.hpp"
#include "vhost_user/log.hpp"
#include "vhost_user/server.hpp"

namespace {

using vireo::daemon::DaemonConfig;

constexpr int kExitOk = 0;
constexpr int kExitSetup = 1;
constexpr int kExitUsage = 2;

// --print-capabilities: the VHostUserBackendCapabilities object QEMU's vhost-user.json schema
// describes; for block devices the features name the optional options we support.
void print_capabilities() {
    const nlohmann::json caps = {{"type", "block-device"}, {"features", {"read-only", "blk-file"}}};
    std::puts(caps.dump(2).c_str());
}

int serve(const DaemonConfig& cfg) {
    vireo::log::set_level(cfg.verbose ? vireo::log::Level::kTrace : vireo::log::Level::kInfo);
    std::vector<std::unique_ptr<vireo::dev::BlkDevice>> devices;
    std::vector<vireo::vhost_user::Endpoint> endpoints;
    for (const auto& d : cfg.devices) {
        auto dev = vireo::dev::BlkDevice::open(d.blk);
        if (!dev) {
            vireo::log::error("{}", dev.error());
            return kExitSetup;
        }
        vireo::log::info("image {}: {} sectors, {}{} engine {}, {} queue(s) of up to {}",
                         d.blk.path, (*dev)->capacity_sectors(),
                         d.blk.read_only ? "read-only, " : "", d.blk.direct ? "O_DIRECT, " : "",
                         vireo::dev::to_string(d.blk.engine), d.blk.num_queues, d.blk.queue_size);
        vireo::dev::BlkDevice* raw = dev->get();
        endpoints.push_back({d.socket_path, d.socket_path, raw, [raw] { raw->flush_all(); }});
        devices.push_back(std::move(*dev));
    }
    auto server = vireo::vhost_user::Server::create(std::move(endpoints));
    if (!server) {
        vireo::log::error("{}", server.error());
        return kExitSetup;
    }
    return (*server)->run();
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"vireo: vhost-user device back end"};
    app.require_subcommand(1);

    // --- vireo blk ---------------------------------------------------------------------
    CLI::App* blk = app.add_subcommand("blk", "Serve one virtio-blk device over vhost-user");
    vireo::daemon::BlkEndpointConfig one;
    std::string engine = "io_uring";
    bool caps = false;
    bool verbose = false;
    int queues = 1;
    int queue_size = one.blk.queue_size;
    blk->add_option("--socket-path", one.socket_path, "vhost-user unix socket to listen on");
    blk->add_option("--image,--blk-file", one.blk.path, "Raw disk image or block device");
    blk->add_flag("--read-only", one.blk.read_only, "Refuse writes (VIRTIO_BLK_F_RO)");
    blk->add_option("--queues", queues, "Number of request queues (1..256)");
    blk->add_option("--queue-size", queue_size, "Largest ring size the driver may use");
    blk->add_option("--engine", engine, "I/O engine: io_uring or sync");
    blk->add_flag("--direct", one.blk.direct, "Open the image with O_DIRECT");
    blk->add_option("--serial", one.blk.serial, "Serial number returned by GET_ID (<= 20 bytes)");
    blk->add_flag("--verbose", verbose, "Trace every vhost-user message");
    blk->add_flag("--print-capabilities", caps, "Print back-end capabilities (JSON) and exit");

    // --- vireo run ---------------------------------------------------------------------
    CLI::App* run = app.add_subcommand("run", "Serve the devices described by a JSON file");
    std::string config_path;
    bool run_verbose = false;
    run->add_option("config", config_path, "Configuration file (see docs/config.md)")->required();
    run->add_flag("--verbose", run_verbose, "Trace every vhost-user message");

    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        // "--print-capabilities: other options and arguments should be ignored".
        for (int i = 1; i < argc; ++i) {
            if (std::string_view(argv[i]) == "--print-capabilities") {
                print_capabilities();
                return kExitOk;
            }
        }
        std::fprintf(stderr, "vireo: error: %s\n", e.what());
        return kExitUsage;
    }

    DaemonConfig cfg;
    if (blk->parsed()) {
        if (caps) {
            print_capabilities();
            return kExitOk;
        }
        if (one.socket_path.empty()) {
            std::fprintf(stderr, "vireo: error: blk: --socket-path is required\n");
            return kExitUsage;
        }
        if (one.blk.path.empty()) {
            std::fprintf(stderr, "vireo: error: blk: --image is required\n");
            return kExitUsage;
        }
        auto e = vireo::daemon::parse_engine(engine);
        if (!e) {
            std::fprintf(stderr, "vireo: error: --engine: %s\n", e.error().c_str());
            return kExitUsage;
        }
        if (queues < 1 || queues > vireo::daemon::kMaxQueues) {
            std::fprintf(stderr, "vireo: error: --queues: %d out of range (1..%u)\n", queues,
                         vireo::daemon::kMaxQueues);
            return kExitUsage;
        }
        if (queue_size < 1 || queue_size > UINT16_MAX) {
            std::fprintf(stderr, "vireo: error: --queue-size: %d out of range\n", queue_size);
            return kExitUsage;
        }
        one.blk.engine = *e;
        one.blk.num_queues = static_cast<std::uint16_t>(queues);
        one.blk.queue_size = static_cast<std::uint16_t>(queue_size);
        cfg.verbose = verbose;
        cfg.devices.push_back(std::move(one));
        if (auto ok = vireo::daemon::check_config(cfg, /*cli=*/true); !ok) {
            std::fprintf(stderr, "vireo: error: %s\n", ok.error().c_str());
            return kExitUsage;
        }
    } else {
        auto loaded = vireo::daemon::load_config(config_path);
        if (!loaded) {
            std::fprintf(stderr, "vireo: error: %s\n", loaded.error().c_str());
            return kExitUsage;
        }
        cfg = std::move(*loaded);
        cfg.verbose = cfg.verbose || run_verbose;
    }
    return serve(cfg);
}
