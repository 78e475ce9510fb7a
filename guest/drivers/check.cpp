// Compile-only proof that guest/drivers is architecture-neutral: every driver header and every
// template instantiated without any runtime (the platform functions stay undeclared-undefined;
// nothing is linked), and every src/spec header, drivers use it or not, compiled freestanding.
// Built for x86-64 with the guests' flags and, when the cross compiler is installed, for riscv64
// (guest/CMakeLists.txt).
#include "drivers/edu.hpp"
#include "drivers/pci.hpp"
#include "drivers/platform.hpp"
#include "drivers/virtio.hpp"
#include "drivers/virtio_blk.hpp"
#include "drivers/virtio_console.hpp"
#include "drivers/virtio_mmio.hpp"
#include "drivers/virtio_net.hpp"
#include "drivers/virtio_pci.hpp"
#include "drivers/virtio_rng.hpp"
#include "spec/le.hpp"
#include "spec/virtio.hpp"
#include "spec/virtio_blk.hpp"
#include "spec/virtio_console.hpp"
#include "spec/virtio_mmio.hpp"
#include "spec/virtio_net.hpp"
#include "spec/virtio_pci.hpp"
#include "spec/virtio_rng.hpp"
#include "spec/virtio_vsock.hpp"

namespace vireo::guest::check {

constinit MmioTransport mmio_transport;
constinit PciTransport pci_transport;
constinit BlkDevice blk_device;
constinit ConsoleDevice console_device;
constinit RngDevice rng_device;
constinit NetDevice net_device;
constinit EduDevice edu_device;
constinit BarAllocator window;
std::uint8_t buffer[512];

bool exercise(const VirtioOptions& opts) {
    bool ok = mmio_transport.probe(0xD000'0000, 5);
    ok = pci_for_each([&](const PciFunction& f) { return pci_transport.probe(f, window); }) && ok;
    ok = blk_device.init(mmio_transport, opts) && blk_device.read(0, buffer, 512) &&
         blk_device.write(0, buffer, 512) && blk_device.flush() && ok;
    ok = console_device.init(pci_transport, opts) && console_device.write("x", 1) && ok;
    ok = rng_device.init(mmio_transport, opts) && rng_device.read(buffer, 16) && ok;
    ok = net_device.init(pci_transport, opts) && net_device.send(buffer, 60) &&
         net_device.receive(buffer, sizeof buffer, 10) > 0 && ok;
    std::uint32_t r = 0;
    ok = edu_device.irq_setup(EduDevice::Irq::kMsi) && edu_device.factorial(5, &r) && ok;
    return ok;
}

}  // namespace vireo::guest::check
