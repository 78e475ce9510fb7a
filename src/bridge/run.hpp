// `vireo run CONFIG.json` with a zone configuration (docs/bridge.md): the daemon's entry point
// into the bridge, kept here so the daemon's own code needs only a two-line hook.
#pragma once

#include <expected>
#include <functional>
#include <optional>
#include <string>

namespace vireo::bridge {

// If the file at `path` is a zone configuration (top-level "zones"), serves it until
// SIGTERM/SIGINT and returns the exit status (0; 1 setup failure; 2 configuration error).
// Returns nullopt for any other document (or an unreadable file), which the caller handles.
// `confine` (if set) runs after setup — images open, devices built, the socket bound — and
// before any hypervisor can connect (the daemon's sandbox, docs/security.md); its error is a
// setup failure.
using Confine = std::function<std::expected<void, std::string>()>;
std::optional<int> run_if_zone_config(const std::string& path, bool verbose,
                                      const Confine& confine = {});

}  // namespace vireo::bridge
