// Test fixture shared by the driver tests: one memfd-backed guest memory that the device side
// (vireo::virtq::Virtqueue over GuestMemory) and the driver side (through a DMA window onto the
// region's host mapping) both use, plus small helpers to lay out rings and buffers in it.
#pragma once

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <ostream>

#include "driver/packed_driver.hpp"
#include "driver/split_driver.hpp"
#include "memory/guest_memory.hpp"
#include "virtq/virtqueue.hpp"

namespace vireo::driver {
// GoogleTest prints error values by name.
inline void PrintTo(DriverError e, std::ostream* os) {
    *os << to_string(e);
}
}  // namespace vireo::driver

namespace vireo::driver::testing {

class SharedMemory {
  public:
    static constexpr std::uint64_t kGpaBase = 0x4000'0000;
    static constexpr std::uint64_t kBytes = 8 << 20;

    SharedMemory() {
        auto ok = mem.add_memfd(kGpaBase, kBytes, "driver-test");
        EXPECT_TRUE(ok.has_value());
        base_ = mem.regions()[0]->host();
        window = DmaWindow(base_, kGpaBase, kBytes);
    }

    // Bump allocation inside the region (never freed: a test owns a fresh SharedMemory).
    std::uint8_t* alloc(std::size_t bytes, std::size_t align = 16) {
        next_ = (next_ + align - 1) / align * align;
        EXPECT_LE(next_ + bytes, kBytes) << "test arena exhausted";
        std::uint8_t* p = base_ + next_;
        next_ += bytes;
        return p;
    }
    std::uint64_t gpa(const void* p) const { return window.to_device(p); }
    std::uint8_t* host(std::uint64_t gpa) const { return mem.translate(gpa, 1); }

    GuestMemory mem;
    DmaWindow window;

  private:
    std::uint8_t* base_ = nullptr;
    std::size_t next_ = 0;
};

// What differs between the two driver classes, for format-generic tests.
template <typename Driver>
struct DriverTraits;

template <std::uint16_t C>
struct DriverTraits<SplitDriver<C>> {
    static constexpr bool kPacked = false;
    static std::size_t ring_bytes(std::uint16_t size) { return split_ring_bytes(size); }
};

template <std::uint16_t C>
struct DriverTraits<PackedDriver<C>> {
    static constexpr bool kPacked = true;
    static std::size_t ring_bytes(std::uint16_t size) { return packed_ring_bytes(size); }
};

// A driver and a device queue over the same rings.
template <typename Driver>
struct Loopback {
    using Traits = DriverTraits<Driver>;

    // Initialises the driver (rings and, if per_slot > 0, an indirect pool in shared memory)
    // and activates the device queue on the addresses the driver reports.
    void init(std::uint16_t size, DriverFeatures features, std::uint16_t per_slot = 0) {
        RingMemory ring{shm.alloc(Traits::ring_bytes(size)), Traits::ring_bytes(size)};
        IndirectPool pool;
        if (per_slot > 0) {
            pool = {shm.alloc(indirect_pool_bytes(size, per_slot)),
                    indirect_pool_bytes(size, per_slot), per_slot};
        }
        ASSERT_EQ(driver.init(size, features, shm.window, ring, pool), DriverError::kOk);
        ring_host = static_cast<std::uint8_t*>(ring.memory);
        auto ok = device.activate(
            shm.mem, driver.config(),
            virtq::QueueFeatures{Traits::kPacked, features.event_idx, features.indirect});
        ASSERT_TRUE(ok.has_value()) << virtq::to_string(ok.error());
    }

    SharedMemory shm;
    Driver driver;
    virtq::Virtqueue device;
    std::uint8_t* ring_host = nullptr;
};

}  // namespace vireo::driver::testing
