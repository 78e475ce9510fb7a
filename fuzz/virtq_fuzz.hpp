// Shared body of the device-side ring fuzzers: the fuzzer's bytes become guest memory holding a
// ring, the queue is activated over it and drained until it is empty or reports an error. ASan
// proves no access leaves the guest region; the step bound proves every loop terminates.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "memory/guest_memory.hpp"
#include "virtq/virtqueue.hpp"

namespace vireo::fuzz {

inline void run_queue(const std::uint8_t* data, std::size_t size, bool packed) {
    // Layout: 4 control bytes, then the contents of an 8 KiB guest region at gpa 0x10000:
    // descriptors at +0, driver area at +0x1000, device area at +0x1400, buffers after 0x1c80.
    constexpr std::uint64_t kBase = 0x10000;
    constexpr std::uint64_t kLen = 0x2000;
    if (size < 4) {
        return;
    }
    GuestMemory mem;
    if (!mem.add_anonymous(kBase, kLen)) {
        return;
    }
    std::uint8_t* host = mem.translate(kBase, kLen);
    std::memcpy(host, data + 4, std::min<std::size_t>(size - 4, kLen));

    // A size the fuzzer controls (power of two for split) and fixed ring placement, so the
    // interesting input is the ring contents.
    const std::uint16_t qsize = packed ? static_cast<std::uint16_t>(1 + data[0] % 256)
                                       : static_cast<std::uint16_t>(1u << (data[0] % 9));
    virtq::QueueConfig cfg{qsize, kBase, kBase + 0x1000, kBase + 0x1400};
    const virtq::QueueFeatures features{packed, (data[1] & 1) != 0, (data[1] & 2) != 0};
    virtq::Virtqueue q;
    if (!q.activate(mem, cfg, features)) {
        return;
    }
    virtq::DescriptorChain chain;
    for (int i = 0; i < 1024; ++i) {
        auto r = q.pop(mem, chain);
        if (!r || !*r) {
            break;
        }
        // Touch every byte the device was handed: ASan reports any that lie outside guest memory.
        virtq::ChainReader reader(chain.readable());
        std::uint8_t sink[64];
        while (reader.remaining() > 0) {
            reader.read({sink, std::min(sizeof sink, reader.remaining())});
        }
        virtq::ChainWriter writer(chain.writable());
        writer.fill_zero(writer.remaining());
        q.push(chain.token(), static_cast<std::uint32_t>(writer.written()));
        if ((data[2] & 7) == 0) {
            q.publish();
        }
    }
    q.publish();
    q.enable_notifications();
}

}  // namespace vireo::fuzz
