// Shared body of the transport fuzzers: the fuzzer's bytes become a sequence of guest register
// accesses (address, width, value) against a transport in front of a small in-memory device,
// with guest RAM the rings may point into. ASan/UBSan prove no access escapes; the bounded
// sequence proves every register path terminates.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "base/log.hpp"
#include "devices/device.hpp"
#include "memory/guest_memory.hpp"
#include "transport/bus.hpp"
#include "transport/irq.hpp"
#include "virtq/chain.hpp"
#include "virtq/features.hpp"

namespace vireo::fuzz {

// Answers every chain with its writable bytes zeroed (touching every byte it was handed).
class EchoQueue final : public dev::QueueHandler {
  public:
    explicit EchoQueue(dev::QueueHandle q) : q_(q) {}
    void on_kick() override {
        virtq::DescriptorChain chain;
        for (int i = 0; i < 256; ++i) {
            auto r = q_.pop(chain);
            if (!r || !*r) {
                broken_ = !r;
                break;
            }
            virtq::ChainWriter w(chain.writable());
            w.fill_zero(w.remaining());
            q_.push(chain.token(), static_cast<std::uint32_t>(w.written()));
        }
        q_.publish_and_notify();
    }
    void drain() override {}
    bool needs_reset() const override { return broken_; }

  private:
    dev::QueueHandle q_;
    bool broken_ = false;
};

class EchoDevice final : public dev::VirtioDevice {
  public:
    std::uint32_t device_id() const override { return dev::kIdRng; }
    std::uint64_t device_features() const override {
        return virtq::bit(virtq::kFIndirectDesc) | virtq::bit(virtq::kFEventIdx) |
               virtq::bit(virtq::kFRingPacked) | virtq::bit(virtq::kFVersion1);
    }
    std::uint16_t num_queues() const override { return 2; }
    std::uint16_t max_queue_size() const override { return 16; }
    std::span<const std::uint8_t> config() const override { return config_; }
    void write_config(std::uint32_t off, std::span<const std::uint8_t> d) override {
        if (off < config_.size() && d.size() <= config_.size() - off) {
            std::memcpy(config_.data() + off, d.data(), d.size());
        }
    }
    void set_features(std::uint64_t) override {}
    std::unique_ptr<dev::QueueHandler> start_queue(std::uint16_t, dev::QueueHandle q) override {
        return std::make_unique<EchoQueue>(q);
    }

  private:
    std::vector<std::uint8_t> config_ = std::vector<std::uint8_t>(12, 0x5a);
};

class NullMsi final : public transport::MsiSink {
  public:
    void send(std::uint64_t, std::uint32_t) override {}
};

inline constexpr std::uint64_t kRamBase = 0;
inline constexpr std::uint64_t kRamSize = 0x10000;

// Each access is 8 bytes of input: [0] op (bit 0 write, bits 1-2 log2 width), [1..2] offset
// within `window`, [3..7] value. Offsets are folded into the window so most accesses hit.
inline void run_accesses(const transport::Bus& bus, std::uint64_t base, std::uint64_t window,
                         const std::uint8_t* data, std::size_t size) {
    for (std::size_t i = 0; i + 8 <= size && i < 8 * 512; i += 8) {
        const std::uint8_t op = data[i];
        const std::size_t width = std::size_t{1} << ((op >> 1) & 3);
        const std::uint64_t off = (data[i + 1] | (std::uint64_t{data[i + 2]} << 8)) % window;
        std::uint64_t value = 0;
        std::memcpy(&value, data + i + 3, 5);
        std::uint8_t buf[8];
        std::memcpy(buf, &value, 8);
        if ((op & 1) != 0) {
            bus.write(base + off, std::span<const std::uint8_t>(buf, width));
        } else {
            bus.read(base + off, std::span<std::uint8_t>(buf, width));
        }
    }
}

inline void quiet() {
    static const bool once = [] {
        log::set_sink([](log::Level, std::string_view) {});
        return true;
    }();
    (void)once;
}

}  // namespace vireo::fuzz
