// virtio-blk request handling: chains from the fuzzer through BlkDevice with the sync engine on a
// small memfd image.
#include "device_fuzz.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static auto dev = vireo::fuzz::make_blk_device();
    vireo::fuzz::run_device(*dev, data, size);
    return 0;
}
