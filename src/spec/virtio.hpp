// What every virtio device shares on the wire, whatever its type and transport: the device
// status bits (virtio 1.2 §2.1) and the device IDs (§5, "Device Types").
//
// src/spec holds the wire formats of virtio 1.2 once, for the host side (device models,
// transports, the VMMs) and the bare-metal guest drivers alike: spec facts only — constants,
// register offsets, feature bit numbers, and structures whose layout is static_assert'ed.
// Everything here is freestanding (compiler-provided headers only, no exceptions, no libc);
// what the host or a driver chooses (limits, queue sizes, vendor IDs) stays with its user.
//
// Names follow the spec's macros: VIRTIO_BLK_T_IN is kBlkTIn, VIRTIO_MMIO_QUEUE_NOTIFY is
// kMmioQueueNotify. The layers that speak this vocabulary (devices, transport, guest drivers)
// pull the namespace in with a using-directive.
#pragma once

#include <cstdint>

namespace vireo::spec {

// §2.1 device status field. NEEDS_RESET is set by the device, the others by the driver.
inline constexpr std::uint8_t kStatusAcknowledge = 1;
inline constexpr std::uint8_t kStatusDriver = 2;
inline constexpr std::uint8_t kStatusDriverOk = 4;
inline constexpr std::uint8_t kStatusFeaturesOk = 8;
inline constexpr std::uint8_t kStatusNeedsReset = 64;
inline constexpr std::uint8_t kStatusFailed = 128;

// §5 device IDs.
inline constexpr std::uint32_t kIdNet = 1;
inline constexpr std::uint32_t kIdBlock = 2;
inline constexpr std::uint32_t kIdConsole = 3;
inline constexpr std::uint32_t kIdRng = 4;
inline constexpr std::uint32_t kIdVsock = 19;

}  // namespace vireo::spec
