// Test helper for the rng/console/vsock device tests: a guest-side queue (the freestanding
// split or packed driver) over its own memfd guest memory, with the device-side Virtqueue and a
// QueueHandle the device model's handler runs on. Buffers are posted as byte strings and read
// back with their used length.
#pragma once

#include <gtest/gtest.h>
#include <poll.h>

#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "../driver/loopback_env.hpp"
#include "devices/device.hpp"

namespace vireo::dev::testing {

using Drivers = ::testing::Types<driver::SplitDriver<64>, driver::PackedDriver<64>>;

class CountingIrq final : public Interrupt {
  public:
    void signal() override { ++count; }
    int count = 0;
};

struct UsedBuf {
    std::uint32_t len = 0;
    std::vector<std::uint8_t> data;  // the first `len` bytes of the writable part
    int tag = 0;                     // what post() returned
};

template <typename Driver>
class GuestQueue {
  public:
    static constexpr std::uint16_t kSize = 64;

    GuestQueue() { lb_.init(kSize, driver::DriverFeatures{}); }

    QueueHandle handle() { return QueueHandle(lb_.shm.mem, lb_.device, irq_); }

    // Posts a chain: `out` as one device-readable buffer (if not empty), then `in_len` writable
    // bytes split into `in_segs` descriptors. Returns a tag, or -1 if the ring is full.
    int post(std::span<const std::uint8_t> out, std::size_t in_len, unsigned in_segs = 1) {
        auto& b = bufs_.emplace_back();
        b.tag = next_tag_++;
        std::vector<driver::Segment> o, i;
        if (!out.empty()) {
            std::uint8_t* p = lb_.shm.alloc(out.size());
            std::memcpy(p, out.data(), out.size());
            o.push_back({lb_.shm.gpa(p), static_cast<std::uint32_t>(out.size())});
        }
        if (in_len > 0) {
            b.in = lb_.shm.alloc(in_len);
            std::memset(b.in, 0, in_len);
            const std::size_t piece = (in_len + in_segs - 1) / in_segs;
            for (std::size_t off = 0; off < in_len; off += piece) {
                const std::size_t n = std::min(piece, in_len - off);
                i.push_back({lb_.shm.gpa(b.in + off), static_cast<std::uint32_t>(n)});
            }
        }
        b.in_len = in_len;
        if (lb_.driver.add_buf({o.data(), o.size()}, {i.data(), i.size()}, &b) !=
            driver::DriverError::kOk) {
            bufs_.pop_back();
            return -1;
        }
        [[maybe_unused]] bool kick = lb_.driver.kick_prepare();
        return b.tag;
    }
    int post_str(const std::string& out, std::size_t in_len = 0) {
        return post(std::span(reinterpret_cast<const std::uint8_t*>(out.data()), out.size()),
                    in_len);
    }

    // Every used buffer so far, in completion order.
    std::vector<UsedBuf> collect() {
        std::vector<UsedBuf> r;
        std::uint32_t len = 0;
        while (void* t = lb_.driver.get_buf(&len)) {
            auto* b = static_cast<Buf*>(t);
            UsedBuf u;
            u.len = len;
            u.tag = b->tag;
            if (b->in != nullptr) {
                u.data.assign(b->in, b->in + std::min<std::size_t>(len, b->in_len));
            }
            r.push_back(std::move(u));
        }
        EXPECT_FALSE(lb_.driver.broken()) << driver::to_string(lb_.driver.error());
        return r;
    }

    std::uint16_t num_free() const { return lb_.driver.num_free(); }
    int interrupts() const { return irq_.count; }

  private:
    struct Buf {
        int tag = 0;
        std::uint8_t* in = nullptr;
        std::size_t in_len = 0;
    };
    driver::testing::Loopback<Driver> lb_;
    CountingIrq irq_;
    std::deque<Buf> bufs_;  // stable addresses: the driver holds pointers as tokens
    int next_tag_ = 0;
};

// Waits (bounded: 5 s, never a timing assertion) for fd to become readable.
inline bool wait_readable(int fd, int timeout_ms = 5000) {
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, timeout_ms) == 1;
}

inline std::string as_string(const std::vector<std::uint8_t>& v) {
    return {v.begin(), v.end()};
}

}  // namespace vireo::dev::testing
