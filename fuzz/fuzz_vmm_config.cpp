// vireo-vmm's JSON configuration (docs/vmm.md) and its --device option syntax: never throw.
#include <string>
#include <string_view>

#include "vmm/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    if (auto cfg = vireo::vmm::parse_config(text)) {
        (void)vireo::vmm::check_config(*cfg);
    }
    (void)vireo::vmm::parse_device(text, "fuzz");
    (void)vireo::vmm::parse_size(text);
    return 0;
}
