// virtio-vsock: packet headers and ops (REQUEST, RW, CREDIT_*, SHUTDOWN, RST) from the fuzzer
// through a VsockDevice whose host side is a unix socket nobody serves, so guest connection
// requests are refused and answered with RST on the rx queue.
#include <unistd.h>

#include <string>

#include "device_fuzz.hpp"
#include "devices/vsock.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static auto dev = [] {
        vireo::dev::VsockOptions o;
        o.uds_path = "/tmp/vireo-fuzz-vsock-" + std::to_string(::getpid());
        ::unlink(o.uds_path.c_str());
        auto d = vireo::dev::VsockDevice::create(o);
        if (!d) {
            std::abort();
        }
        ::unlink(o.uds_path.c_str());  // the bound fd keeps working; no file left behind
        return std::move(*d);
    }();
    vireo::fuzz::run_device(*dev, data, size);
    return 0;
}
