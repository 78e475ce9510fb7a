// virtio-net guest: two NICs of this guest sit on the same switch. A frame sent from NIC 0 to
// NIC 1's MAC must arrive at NIC 1 intact, and a reply the other way at NIC 0.
//
// Two-guest mode (one NIC each, e.g. two zones behind the hypervisor bridge): `peer=send`
// broadcasts a frame every 200 ms until a reply arrives; `peer=recv` waits for that frame, checks
// it and answers the sender's MAC. Either side may start first.
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

// One NIC talking to another guest: see the header comment. Returns the exit status.
int peer_main(const test::Env& env, bool sender) {
    Transport* t = test::find_device(env, kIdNet, 0);
    if (t == nullptr || !nic[0].init(*t, env.opts)) {
        return 1;
    }
    static constexpr std::uint8_t kBroadcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    constexpr std::uint8_t kSeed = 0x5c;
    constexpr int kRounds = 150;  // 30 s of 200 ms waits
    for (int round = 0; round < kRounds; ++round) {
        if (sender) {
            build(kBroadcast, nic[0].mac(), kSeed);
            if (!nic[0].send(tx, kFrameBytes)) {
                print("net: send failed\n");
                return 3;
            }
        }
        const int n = nic[0].receive(rx, sizeof rx, 200);
        if (n != static_cast<int>(kFrameBytes) || rx[12] != (kEtherType >> 8) ||
            rx[13] != (kEtherType & 0xFF) || test::mem_equal(rx + 6, nic[0].mac(), 6)) {
            continue;  // nothing yet, another protocol, or our own broadcast
        }
        const std::uint8_t want = sender ? kSeed ^ 0xff : kSeed;
        for (std::uint32_t i = 14; i < kFrameBytes; ++i) {
            if (rx[i] != static_cast<std::uint8_t>(i ^ want)) {
                print("net: corrupted frame from the peer\n");
                return 3;
            }
        }
        if (sender) {
            print("net: peer replied\n");
            print("net: PASS\n");
            return 0;
        }
        std::uint8_t src[6];
        __builtin_memcpy(src, rx + 6, 6);
        build(src, nic[0].mac(), kSeed ^ 0xff);
        if (!nic[0].send(tx, kFrameBytes)) {
            return 3;
        }
        print("net: frame from the peer ok, replied\n");
        print("net: PASS\n");
        return 0;
    }
    print("net: no frame from the peer\n");
    return 3;
}

}  // namespace

int guest_main() {
    const test::Env env = test::parse_env();
    if (opt_is("peer", "send") || opt_is("peer", "recv")) {
        return peer_main(env, opt_is("peer", "send"));
    }
    Transport* t0 = test::find_device(env, kIdNet, 0);
    Transport* t1 = test::find_device(env, kIdNet, 1);
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
