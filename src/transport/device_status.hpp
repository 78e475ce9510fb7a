// The device status field (§2.1) and its table of valid transitions (§3.1.1 driver
// initialisation order; §2.4 reset; §4.2.4 / §3.1.2 legacy order without FEATURES_OK).
//
// The driver sets one bit at a time in the order ACKNOWLEDGE → DRIVER → FEATURES_OK →
// DRIVER_OK. FAILED may be added at any time (the driver gave up); writing 0 resets. Anything
// else — skipping a step, clearing a bit, setting DRIVER_OK before FEATURES_OK — is a driver
// bug or an attack: the write is ignored (and logged by the transport). DEVICE_NEEDS_RESET is
// owned by the device and masked out of driver writes.
#pragma once

#include <array>
#include <cstdint>

#include "spec/virtio.hpp"

namespace vireo::transport {

using namespace spec;  // the status bits (kStatusAcknowledge, ...) are the spec's

enum class StatusChange {
    kReset,    // 0: full device reset
    kSame,     // rewrite of the current value (harmless)
    kAdvance,  // the next step of initialisation, or FAILED
    kInvalid,  // ignored
};

struct StatusTransition {
    std::uint8_t from;
    std::uint8_t to;
};

// Modern devices (virtio 1.x): FEATURES_OK lies between DRIVER and DRIVER_OK.
inline constexpr std::array<StatusTransition, 4> kModernTransitions{{
    {0, kStatusAcknowledge},
    {kStatusAcknowledge, kStatusAcknowledge | kStatusDriver},
    {kStatusAcknowledge | kStatusDriver, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk},
    {kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk,
     kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk},
}};

// Legacy devices (virtio-mmio version 1): no FEATURES_OK.
inline constexpr std::array<StatusTransition, 3> kLegacyTransitions{{
    {0, kStatusAcknowledge},
    {kStatusAcknowledge, kStatusAcknowledge | kStatusDriver},
    {kStatusAcknowledge | kStatusDriver, kStatusAcknowledge | kStatusDriver | kStatusDriverOk},
}};

// Classifies a driver write of `to` while the status is `from` (NEEDS_RESET already masked out).
constexpr StatusChange classify_status(std::uint8_t from, std::uint8_t to, bool legacy) {
    if (to == 0) {
        return StatusChange::kReset;
    }
    if (to == from) {
        return StatusChange::kSame;
    }
    if ((from & kStatusFailed) != 0) {
        return StatusChange::kInvalid;  // after FAILED only a reset helps
    }
    if (to == (from | kStatusFailed)) {
        return StatusChange::kAdvance;
    }
    auto in = [&](const auto& table) {
        for (const StatusTransition& t : table) {
            if (t.from == from && t.to == to) {
                return true;
            }
        }
        return false;
    };
    const bool ok = legacy ? in(kLegacyTransitions) : in(kModernTransitions);
    return ok ? StatusChange::kAdvance : StatusChange::kInvalid;
}

}  // namespace vireo::transport
