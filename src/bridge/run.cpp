#include "bridge/run.hpp"

#include <csignal>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "base/log.hpp"
#include "bridge/server.hpp"
#include "bridge/zone_config.hpp"

namespace vireo::bridge {

std::optional<int> run_if_zone_config(const std::string& path, bool verbose,
                                      const Confine& confine) {
    std::ifstream in(path);
    if (!in) {
        return std::nullopt;  // the daemon's own loader reports the file by name
    }
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string text = ss.str();
    if (!is_zone_config(text)) {
        return std::nullopt;
    }
    auto cfg = parse_zone_config(text);
    if (!cfg) {
        std::fprintf(stderr, "vireo: error: %s: %s\n", path.c_str(), cfg.error().c_str());
        return 2;
    }
    cfg->verbose = cfg->verbose || verbose;
    log::set_level(cfg->verbose ? log::Level::kTrace : log::Level::kInfo);
    std::signal(SIGPIPE, SIG_IGN);
    auto server = BridgeServer::create(std::move(*cfg));
    if (!server) {
        log::error("{}", server.error());
        return 1;
    }
    if (confine) {
        if (auto ok = confine(); !ok) {
            log::error("sandbox: {}", ok.error());
            return 1;
        }
    }
    return (*server)->run();
}

}  // namespace vireo::bridge
