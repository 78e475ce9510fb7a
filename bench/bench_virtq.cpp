// Virtqueue round trip, single thread: the guest-side driver queue and the device-side
// Virtqueue over one shared guest memory.
//
//   driver add_buf × batch → kick_prepare → device pop × batch → push × batch → publish
//   → driver get_buf × batch
//
// Arguments: ring format, descriptors per chain (1: one readable buffer; 3: header out, data
// in, status in — a block request's shape), indirect on/off, batch size. The per_chain counter
// is the time of one chain's whole round trip (Counter::kIsRate | kInvert). EVENT_IDX is
// negotiated; kicks/chain and irqs/chain show how often a notification would have been sent.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "driver/packed_driver.hpp"
#include "driver/split_driver.hpp"
#include "memory/guest_memory.hpp"
#include "virtq/virtqueue.hpp"

namespace {

using namespace vireo;

constexpr std::uint16_t kQueueSize = 256;
constexpr std::uint16_t kPerSlot = 4;
constexpr std::uint64_t kGpaBase = 0x1'0000'0000;
constexpr std::uint64_t kBytes = 4 << 20;

template <typename Driver, std::size_t (*RingBytes)(std::uint16_t), bool kPacked>
struct Rig {
    Rig(bool indirect, bool event_idx) {
        if (!mem.add_memfd(kGpaBase, kBytes, "bench-virtq")) {
            std::fprintf(stderr, "memfd failed\n");
            std::abort();
        }
        base = mem.regions()[0]->host();
        window = driver::DmaWindow(base, kGpaBase, kBytes);
        std::uint8_t* ring = base;
        std::uint8_t* pool = base + (1 << 20);
        data = base + (2 << 20);
        const driver::DriverFeatures f{event_idx, indirect};
        const auto e =
            drv.init(kQueueSize, f, window, {ring, RingBytes(kQueueSize)},
                     {pool, driver::indirect_pool_bytes(kQueueSize, kPerSlot), kPerSlot});
        auto ok =
            dev.activate(mem, drv.config(), virtq::QueueFeatures{kPacked, event_idx, indirect});
        if (e != driver::DriverError::kOk || !ok) {
            std::fprintf(stderr, "queue setup failed\n");
            std::abort();
        }
    }

    GuestMemory mem;
    std::uint8_t* base = nullptr;
    std::uint8_t* data = nullptr;
    driver::DmaWindow window;
    Driver drv;
    virtq::Virtqueue dev;
};

std::size_t split_bytes(std::uint16_t n) {
    return driver::split_ring_bytes(n);
}
std::size_t packed_bytes(std::uint16_t n) {
    return driver::packed_ring_bytes(n);
}

template <typename Driver, std::size_t (*RingBytes)(std::uint16_t), bool kPacked>
void round_trip(benchmark::State& state) {
    const int descs = static_cast<int>(state.range(0));
    const bool indirect = state.range(1) != 0;
    const int batch = static_cast<int>(state.range(2));
    Rig<Driver, RingBytes, kPacked> rig(indirect, /*event_idx=*/true);

    // Chain shapes (device addresses): 1 = one 64-byte readable buffer; 3 = 16-byte header out,
    // 512-byte data in, 1-byte status in.
    const std::uint64_t d = rig.window.to_device(rig.data);
    const driver::Segment out1[] = {{d, 64}};
    const driver::Segment out3[] = {{d, 16}};
    const driver::Segment in3[] = {{d + 64, 512}, {d + 640, 1}};
    const driver::Segments out = descs == 1 ? driver::Segments(out1) : driver::Segments(out3);
    const driver::Segments in = descs == 1 ? driver::Segments() : driver::Segments(in3);
    static int tokens[kQueueSize];

    // Both sides poll, as a busy queue does: the device suppresses kicks and the driver
    // interrupts, so each format pays for its suppression checks but not for notifications.
    rig.dev.disable_notifications();
    rig.drv.disable_cb();

    virtq::DescriptorChain chain;
    std::uint64_t kicks = 0;
    std::uint64_t interrupts = 0;
    for (auto _ : state) {
        for (int i = 0; i < batch; ++i) {
            if (rig.drv.add_buf(out, in, &tokens[i]) != driver::DriverError::kOk) {
                state.SkipWithError("add_buf failed");
                return;
            }
        }
        kicks += rig.drv.kick_prepare();
        for (int i = 0; i < batch; ++i) {
            auto r = rig.dev.pop(rig.mem, chain);
            if (!r || !*r) {
                state.SkipWithError("pop failed");
                return;
            }
            rig.dev.push(chain.token(), chain.writable_bytes());
        }
        interrupts += rig.dev.publish();
        for (int i = 0; i < batch; ++i) {
            std::uint32_t len;
            void* t = rig.drv.get_buf(&len);
            if (t == nullptr) {
                state.SkipWithError("get_buf returned nothing");
                return;
            }
            benchmark::DoNotOptimize(t);
        }
    }
    const auto chains = static_cast<double>(state.iterations()) * batch;
    state.SetItemsProcessed(static_cast<std::int64_t>(chains));
    state.counters["per_chain"] =
        benchmark::Counter(chains, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
    state.counters["kicks/chain"] = static_cast<double>(kicks) / chains;
    state.counters["irqs/chain"] = static_cast<double>(interrupts) / chains;
}

void args(benchmark::internal::Benchmark* b) {
    b->ArgNames({"descs", "indirect", "batch"});
    for (int descs : {1, 3}) {
        for (int indirect : {0, 1}) {
            for (int batch : {1, 32}) {
                b->Args({descs, indirect, batch});
            }
        }
    }
}

void BM_Split(benchmark::State& s) {
    round_trip<driver::SplitDriver<kQueueSize>, split_bytes, false>(s);
}
void BM_Packed(benchmark::State& s) {
    round_trip<driver::PackedDriver<kQueueSize>, packed_bytes, true>(s);
}
BENCHMARK(BM_Split)->Apply(args);
BENCHMARK(BM_Packed)->Apply(args);

}  // namespace

BENCHMARK_MAIN();
