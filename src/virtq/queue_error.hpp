// Why a device-side virtqueue refused the guest's ring. Every one of these is a driver bug or an
// attack; the queue stops (becomes broken) and the device reports DEVICE_NEEDS_RESET (§2.1.2).
#pragma once

#include <string_view>

namespace vireo::virtq {

enum class QueueError {
    kNotReady,               // used before a successful activate()
    kBroken,                 // an earlier error stopped this queue
    kBadSize,                // size 0, > 32768, or (split) not a power of two
    kBadAlignment,           // ring area misaligned (§2.7: 16/2/4; §2.8: 16/4/4)
    kRingOutsideMemory,      // a ring area is not inside one guest memory region
    kAvailIndexJump,         // avail idx more than `size` ahead of the last one seen
    kHeadOutOfRange,         // head index >= size
    kNextOutOfRange,         // next index >= size (or >= indirect table length)
    kChainTooLong,           // more descriptors than the table holds: a loop
    kNestedIndirect,         // indirect descriptor inside an indirect table
    kIndirectWithNext,       // INDIRECT and NEXT both set (§2.7.5.3.1)
    kIndirectBadLength,      // indirect table length 0 or not a multiple of 16
    kIndirectTooLarge,       // indirect table longer than the queue's limit
    kIndirectNotNegotiated,  // INDIRECT used without VIRTIO_F_INDIRECT_DESC
    kLengthOverflow,         // total chain length > 2^32 - 1
    kBadAddress,             // a buffer or table not entirely inside guest memory
    kReadableAfterWritable,  // device-readable descriptor after a device-writable one
    kTooManyInFlight,        // packed: more descriptors in flight than the ring has slots
};

constexpr std::string_view to_string(QueueError e) {
    switch (e) {
        case QueueError::kNotReady:
            return "queue not ready";
        case QueueError::kBroken:
            return "queue stopped after an earlier error";
        case QueueError::kBadSize:
            return "invalid queue size";
        case QueueError::kBadAlignment:
            return "misaligned ring";
        case QueueError::kRingOutsideMemory:
            return "ring outside guest memory";
        case QueueError::kAvailIndexJump:
            return "available index jumped more than queue size";
        case QueueError::kHeadOutOfRange:
            return "head descriptor index out of range";
        case QueueError::kNextOutOfRange:
            return "next descriptor index out of range";
        case QueueError::kChainTooLong:
            return "descriptor chain too long (loop)";
        case QueueError::kNestedIndirect:
            return "indirect descriptor inside indirect table";
        case QueueError::kIndirectWithNext:
            return "indirect descriptor with NEXT flag";
        case QueueError::kIndirectBadLength:
            return "indirect table length not a multiple of 16";
        case QueueError::kIndirectTooLarge:
            return "indirect table too large";
        case QueueError::kIndirectNotNegotiated:
            return "indirect descriptor not negotiated";
        case QueueError::kLengthOverflow:
            return "descriptor chain length overflows 2^32";
        case QueueError::kBadAddress:
            return "buffer outside guest memory";
        case QueueError::kReadableAfterWritable:
            return "device-readable descriptor after device-writable one";
        case QueueError::kTooManyInFlight:
            return "more descriptors in flight than ring slots";
    }
    return "unknown queue error";
}

}  // namespace vireo::virtq
