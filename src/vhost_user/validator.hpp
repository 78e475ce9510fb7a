// The message validator: every message passes here before any handler sees it.
//
// It checks what can be checked from the message alone plus a few device limits: header
// version and flags, payload size for the request type, file-descriptor count, ring indices,
// ring sizes, memory-table geometry. State-dependent rules (e.g. "CONFIG was negotiated") stay
// with the back end's handlers. A failure is a normal value carrying a human-readable reason.
#pragma once

#include <cstdint>
#include <expected>
#include <string>

#include "vhost_user/message.hpp"

namespace vireo::vhost_user {

struct ValidationLimits {
    std::uint16_t num_queues = 1;
    std::uint16_t max_queue_size = 256;
    bool packed = false;  // VIRTIO_F_RING_PACKED negotiated: ring sizes need not be powers of 2
    std::uint32_t max_mem_slots = kMemTableMaxRegions;
};

// Is this a request this back end implements at all?
bool is_supported(Request r);

std::expected<void, std::string> validate(const Message& msg, const ValidationLimits& limits);

}  // namespace vireo::vhost_user
