// The daemon's JSON configuration (`vireo run`, docs/config.md): parse and check never throw.
#include <string_view>

#include "daemon/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    auto cfg =
        vireo::daemon::parse_config(std::string_view(reinterpret_cast<const char*>(data), size));
    if (cfg) {
        (void)vireo::daemon::check_config(*cfg, false);
    }
    return 0;
}
