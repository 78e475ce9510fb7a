// virtio-net guest: two NICs of this guest sit on the same switch. A frame sent from NIC 0 to
// NIC 1's MAC must arrive at NIC 1 intact, and a reply the other way at NIC 0.
#include "common.hpp"
#include "drivers/virtio_net.hpp"

using namespace vireo::guest;

namespace {

constexpr std::uint16_t kEtherType = 0x88B5;  // IEEE local experimental
constexpr std::uint32_t kFrameBytes = 128;
constexpr std::uint32_t kTimeoutMs = 5000;

constinit NetDevice nic[2];
alignas(16) std::uint8_t tx[kFrameBytes];
alignas(16) std::uint8_t rx[net::kMaxFrame];

void build(const std::uint8_t* dst, const std::uint8_t* src, std::uint8_t seed) {
    __builtin_memcpy(tx, dst, 6);
    __builtin_memcpy(tx + 6, src, 6);
    tx[12] = kEtherType >> 8;
    tx[13] = kEtherType & 0xFF;
    for (std::uint32_t i = 14; i < kFrameBytes; ++i) {
        tx[i] = static_cast<std::uint8_t>(i ^ seed);
    }
}

// Sends from nic[from] to nic[to]; frames of other types (a switch may forward others) are
// skipped, a bounded number of times.
bool exchange(int from, int to, std::uint8_t seed) {
    build(nic[to].mac(), nic[from].mac(), seed);
    if (!nic[from].send(tx, kFrameBytes)) {
        print("net: send on nic%d failed\n", from);
        return false;
    }
    for (int tries = 0; tries < 8; ++tries) {
        const int n = nic[to].receive(rx, sizeof rx, kTimeoutMs);
        if (n < 0) {
            print("net: nothing received on nic%d\n", to);
            return false;
        }
        if (n < 14 || rx[12] != (kEtherType >> 8) || rx[13] != (kEtherType & 0xFF)) {
            continue;
        }
        if (static_cast<std::uint32_t>(n) != kFrameBytes || !test::mem_equal(rx, tx, kFrameBytes)) {
            print("net: nic%d received a corrupted frame (%d bytes)\n", to, n);
            return false;
        }
        print("net: nic%d -> nic%d %u bytes ok\n", from, to, kFrameBytes);
        return true;
    }
    return false;
}

}  // namespace

int guest_main() {
    const test::Env env = test::parse_env();
    Transport* t0 = test::find_device(env, virtio::kIdNet, 0);
    Transport* t1 = test::find_device(env, virtio::kIdNet, 1);
    if (t0 == nullptr || t1 == nullptr || !nic[0].init(*t0, env.opts) ||
        !nic[1].init(*t1, env.opts)) {
        return 1;
    }
    for (int i = 0; i < 2; ++i) {
        const std::uint8_t* m = nic[i].mac();
        print("net: nic%d mac %02x:%02x:%02x:%02x:%02x:%02x\n", i, m[0], m[1], m[2], m[3], m[4],
              m[5]);
    }
    if (test::mem_equal(nic[0].mac(), nic[1].mac(), 6)) {
        print("net: both NICs have the same MAC\n");
        return 2;
    }
    if (!exchange(0, 1, 0x11) || !exchange(1, 0, 0x22) || !exchange(0, 1, 0x33)) {
        return 3;
    }
    if (!test::check_interrupts(env, *t0) || !test::check_interrupts(env, *t1)) {
        return 4;
    }
    print("net: PASS\n");
    return 0;
}
