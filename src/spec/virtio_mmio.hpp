// The virtio-mmio register block (virtio 1.2 §4.2.2 "MMIO Device Register Layout"; the legacy
// version 1 registers from §4.2.4): offsets from the device's base address, every register 32
// bits wide and little-endian, the device-specific configuration from kMmioConfig on.
#pragma once

#include <cstdint>

namespace vireo::spec {

inline constexpr std::uint64_t kMmioMagicValue = 0x000;
inline constexpr std::uint64_t kMmioVersion = 0x004;
inline constexpr std::uint64_t kMmioDeviceId = 0x008;
inline constexpr std::uint64_t kMmioVendorId = 0x00c;
inline constexpr std::uint64_t kMmioDeviceFeatures = 0x010;
inline constexpr std::uint64_t kMmioDeviceFeaturesSel = 0x014;
inline constexpr std::uint64_t kMmioDriverFeatures = 0x020;
inline constexpr std::uint64_t kMmioDriverFeaturesSel = 0x024;
inline constexpr std::uint64_t kMmioGuestPageSize = 0x028;  // legacy
inline constexpr std::uint64_t kMmioQueueSel = 0x030;
inline constexpr std::uint64_t kMmioQueueNumMax = 0x034;
inline constexpr std::uint64_t kMmioQueueNum = 0x038;
inline constexpr std::uint64_t kMmioQueueAlign = 0x03c;  // legacy
inline constexpr std::uint64_t kMmioQueuePfn = 0x040;    // legacy
inline constexpr std::uint64_t kMmioQueueReady = 0x044;
inline constexpr std::uint64_t kMmioQueueNotify = 0x050;
inline constexpr std::uint64_t kMmioInterruptStatus = 0x060;
inline constexpr std::uint64_t kMmioInterruptAck = 0x064;
inline constexpr std::uint64_t kMmioStatus = 0x070;
inline constexpr std::uint64_t kMmioQueueDescLow = 0x080;
inline constexpr std::uint64_t kMmioQueueDescHigh = 0x084;
inline constexpr std::uint64_t kMmioQueueDriverLow = 0x090;
inline constexpr std::uint64_t kMmioQueueDriverHigh = 0x094;
inline constexpr std::uint64_t kMmioQueueDeviceLow = 0x0a0;
inline constexpr std::uint64_t kMmioQueueDeviceHigh = 0x0a4;
inline constexpr std::uint64_t kMmioShmSel = 0x0ac;
inline constexpr std::uint64_t kMmioShmLenLow = 0x0b0;
inline constexpr std::uint64_t kMmioShmLenHigh = 0x0b4;
inline constexpr std::uint64_t kMmioShmBaseLow = 0x0b8;
inline constexpr std::uint64_t kMmioShmBaseHigh = 0x0bc;
inline constexpr std::uint64_t kMmioQueueReset = 0x0c0;
inline constexpr std::uint64_t kMmioConfigGeneration = 0x0fc;
inline constexpr std::uint64_t kMmioConfig = 0x100;

inline constexpr std::uint32_t kMmioMagic = 0x74726976;  // MagicValue: "virt"

// Version: 2 for the modern interface, 1 for the legacy one (§4.2.4).
enum class MmioVersion : std::uint32_t { kLegacy = 1, kModern = 2 };

// InterruptStatus / InterruptACK bits.
inline constexpr std::uint32_t kMmioIntUsedBuffer = 1;    // a used buffer notification
inline constexpr std::uint32_t kMmioIntConfigChange = 2;  // a configuration change

}  // namespace vireo::spec
