// virtio-rng, the entropy device (virtio 1.2 §5.4): one queue of device-writable buffers (§5.4.2),
// no feature bits, no configuration.
#pragma once

#include <cstdint>

namespace vireo::spec {

inline constexpr std::uint16_t kRngQueueRequest = 0;  // requestq

}  // namespace vireo::spec
