// virtio-rng: chains of any shape from the fuzzer through RngDevice (rate limit on and off).
#include "device_fuzz.hpp"
#include "devices/rng.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static auto unlimited = vireo::dev::RngDevice::create({});
    static auto limited = vireo::dev::RngDevice::create({.max_bytes_per_sec = 4096});
    if (!unlimited || !limited || size < 1) {
        return 0;
    }
    vireo::dev::RngDevice& dev = (data[0] & 0x80) != 0 ? **limited : **unlimited;
    vireo::fuzz::run_device(dev, data, size);
    return 0;
}
