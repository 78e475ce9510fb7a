// Device models from --device specs, shared by the x86 KVM VM and the RISC-V machine: the
// transport-independent half of Vm::add_device.
#pragma once

#include <expected>
#include <memory>
#include <string>

#include "devices/device.hpp"
#include "vmm/config.hpp"

namespace vireo::dev {
class BlkDevice;
}

namespace vireo::vmm {

struct VirtioModel {
    std::unique_ptr<dev::VirtioDevice> model;
    dev::BlkDevice* blk = nullptr;  // set for blk devices: flushed when the VM stops
};

// The virtio model for `d` (blk, net, console, rng; packed=off masks VIRTIO_F_RING_PACKED).
// kEdu is not a virtio device and is refused.
std::expected<VirtioModel, std::string> make_virtio_model(const DeviceSpec& d);

}  // namespace vireo::vmm
