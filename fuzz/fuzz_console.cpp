// virtio-console: port data and control-queue messages (DEVICE_READY, PORT_READY, PORT_OPEN, …)
// from the fuzzer through a MULTIPORT ConsoleDevice with two ports writing to /dev/null.
#include <fcntl.h>

#include "device_fuzz.hpp"
#include "devices/console.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static auto dev = [] {
        static const int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
        vireo::dev::ConsoleOptions o;
        vireo::dev::ConsolePortOptions p{
            .kind = vireo::dev::ConsoleBackendKind::kFds, .in_fd = null_fd, .out_fd = null_fd};
        o.ports = {p, p};
        o.ports[1].name = "fuzz.port";
        o.multiport = true;
        o.cols = 80;
        o.rows = 25;
        auto d = vireo::dev::ConsoleDevice::create(o);
        if (!d) {
            std::abort();
        }
        return std::move(*d);
    }();
    vireo::fuzz::run_device(*dev, data, size);
    return 0;
}
