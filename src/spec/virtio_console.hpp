// virtio-console wire format (virtio 1.2 §5.3): queue indices (§5.3.2), feature bits (§5.3.3),
// the configuration layout (§5.3.4) and the MULTIPORT control messages (§5.3.6.2).
#pragma once

#include <cstddef>
#include <cstdint>

#include "spec/le.hpp"

namespace vireo::spec {

// §5.3.2 queue indices: port 0's pair, then (MULTIPORT only) the control pair, then port 1's...
inline constexpr std::uint16_t kConsolePort0Rx = 0;
inline constexpr std::uint16_t kConsolePort0Tx = 1;
inline constexpr std::uint16_t kConsoleControlRx = 2;  // device → driver
inline constexpr std::uint16_t kConsoleControlTx = 3;  // driver → device
inline constexpr std::uint16_t kConsolePort1Rx = 4;

// §5.3.3 feature bits.
inline constexpr unsigned kConsoleFSize = 0;
inline constexpr unsigned kConsoleFMultiport = 1;
inline constexpr unsigned kConsoleFEmergWrite = 2;

// §5.3.4 struct virtio_console_config.
struct ConsoleConfig {
    le16 cols;
    le16 rows;
    le32 max_nr_ports;
    le32 emerg_wr;
};
static_assert(sizeof(ConsoleConfig) == 12);
static_assert(offsetof(ConsoleConfig, max_nr_ports) == 4 && offsetof(ConsoleConfig, emerg_wr) == 8);

// §5.3.6.2 struct virtio_console_control; PORT_NAME is followed by the name (no NUL).
struct ConsoleControl {
    le32 id;
    le16 event;
    le16 value;
};
static_assert(sizeof(ConsoleControl) == 8);

// ConsoleControl::event.
inline constexpr std::uint16_t kConsoleDeviceReady = 0;
inline constexpr std::uint16_t kConsoleDeviceAdd = 1;
inline constexpr std::uint16_t kConsoleDeviceRemove = 2;
inline constexpr std::uint16_t kConsolePortReady = 3;
inline constexpr std::uint16_t kConsoleConsolePort = 4;
inline constexpr std::uint16_t kConsoleResize = 5;
inline constexpr std::uint16_t kConsolePortOpen = 6;
inline constexpr std::uint16_t kConsolePortName = 7;

}  // namespace vireo::spec
