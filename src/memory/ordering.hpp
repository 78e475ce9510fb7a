// Ordered access to ring fields shared with the other side (§2.7.13, §2.8.21 on barriers).
//
// The other side is another CPU (a guest vCPU, or a front end process), so ring indices and
// flags are read and written with atomic operations on the guest's memory. Plain data (buffers,
// descriptors behind an index) is ordered by these operations, never accessed atomically.
//
// Freestanding: used by both the device side and the bare-metal guest drivers.
#pragma once

#include <atomic>
#include <cstdint>

#include "spec/le.hpp"

namespace vireo {

template <typename T>
inline T load_acquire(const Le<T>* field) {
    return Le<T>{std::atomic_ref<T>(const_cast<T&>(field->raw)).load(std::memory_order_acquire)}
        .get();
}

template <typename T>
inline T load_relaxed(const Le<T>* field) {
    return Le<T>{std::atomic_ref<T>(const_cast<T&>(field->raw)).load(std::memory_order_relaxed)}
        .get();
}

template <typename T>
inline void store_release(Le<T>* field, T value) {
    std::atomic_ref<T>(field->raw).store(Le<T>::of(value).raw, std::memory_order_release);
}

template <typename T>
inline void store_relaxed(Le<T>* field, T value) {
    std::atomic_ref<T>(field->raw).store(Le<T>::of(value).raw, std::memory_order_relaxed);
}

// A store→load barrier: the one ordering acquire/release cannot give. Needed wherever a side
// publishes an index and then reads the other side's suppression field (§2.7.7.2 / §2.7.10:
// "the driver MUST ... perform a suitable memory barrier before reading flags or avail_event"),
// and the mirror image on the device side; otherwise both sides can miss each other's update
// and the queue stalls with work pending.
inline void full_fence() {
    std::atomic_thread_fence(std::memory_order_seq_cst);
}

}  // namespace vireo
