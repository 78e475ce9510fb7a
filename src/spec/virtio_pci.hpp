// virtio over PCI (virtio 1.2 §4.1): the IDs a virtio function has (§4.1.2), the vendor
// capabilities that locate its structures (§4.1.4), the common configuration structure
// (§4.1.4.3), the ISR status bits (§4.1.4.5) and MSI-X's "no vector" (§4.1.5.1.2).
#pragma once

#include <cstdint>

namespace vireo::spec {

// §4.1.2 PCI device discovery: vendor 0x1AF4, device 0x1040 + the virtio device ID, or a
// transitional ID 0x1000-0x103F (the virtio device ID then in the subsystem device ID).
inline constexpr std::uint16_t kVirtioPciVendor = 0x1af4;
inline constexpr std::uint16_t kVirtioPciDeviceBase = 0x1040;
inline constexpr std::uint16_t kVirtioPciDeviceLast = 0x107f;
inline constexpr std::uint16_t kVirtioPciTransitionalFirst = 0x1000;
inline constexpr std::uint16_t kVirtioPciTransitionalLast = 0x103f;

// §4.1.4 cfg_type of struct virtio_pci_cap.
inline constexpr std::uint8_t kVirtioPciCapCommon = 1;
inline constexpr std::uint8_t kVirtioPciCapNotify = 2;
inline constexpr std::uint8_t kVirtioPciCapIsr = 3;
inline constexpr std::uint8_t kVirtioPciCapDevice = 4;
inline constexpr std::uint8_t kVirtioPciCapPci = 5;
// struct virtio_pci_cap field offsets (within the capability).
inline constexpr std::uint32_t kVirtioCapLen = 2;
inline constexpr std::uint32_t kVirtioCapType = 3;
inline constexpr std::uint32_t kVirtioCapBar = 4;
inline constexpr std::uint32_t kVirtioCapOffset = 8;
inline constexpr std::uint32_t kVirtioCapLength = 12;
inline constexpr std::uint32_t kVirtioCapNotifyMultiplier = 16;  // notify cap only (§4.1.4.4)
inline constexpr std::uint32_t kVirtioCapPciData = 16;           // pci_cfg cap only (§4.1.4.9)

// §4.1.4.3 struct virtio_pci_common_cfg field offsets.
inline constexpr std::uint32_t kCommonDfSelect = 0;
inline constexpr std::uint32_t kCommonDf = 4;
inline constexpr std::uint32_t kCommonGfSelect = 8;
inline constexpr std::uint32_t kCommonGf = 12;
inline constexpr std::uint32_t kCommonMsixConfig = 16;
inline constexpr std::uint32_t kCommonNumQueues = 18;
inline constexpr std::uint32_t kCommonStatus = 20;
inline constexpr std::uint32_t kCommonConfigGeneration = 21;
inline constexpr std::uint32_t kCommonQueueSelect = 22;
inline constexpr std::uint32_t kCommonQueueSize = 24;
inline constexpr std::uint32_t kCommonQueueMsixVector = 26;
inline constexpr std::uint32_t kCommonQueueEnable = 28;
inline constexpr std::uint32_t kCommonQueueNotifyOff = 30;
inline constexpr std::uint32_t kCommonQueueDesc = 32;
inline constexpr std::uint32_t kCommonQueueDriver = 40;
inline constexpr std::uint32_t kCommonQueueDevice = 48;
inline constexpr std::uint32_t kCommonQueueNotifyData = 56;  // the end of virtio 1.0's layout
inline constexpr std::uint32_t kCommonQueueReset = 58;
inline constexpr std::uint32_t kCommonSize = 60;

// §4.1.4.5 ISR status bits (reading the ISR clears it).
inline constexpr std::uint8_t kIsrQueue = 1;   // a used buffer notification
inline constexpr std::uint8_t kIsrConfig = 2;  // a configuration change

// §4.1.5.1.2 VIRTIO_MSI_NO_VECTOR: no MSI-X vector for the configuration or a queue.
inline constexpr std::uint16_t kNoVector = 0xffff;

}  // namespace vireo::spec
