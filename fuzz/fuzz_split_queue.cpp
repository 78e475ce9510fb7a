#include "virtq_fuzz.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    vireo::fuzz::run_queue(data, size, /*packed=*/false);
    return 0;
}
