// virtio-rng guest: two reads of 64 bytes must look random (not constant) and differ.
#include "common.hpp"
#include "drivers/virtio_rng.hpp"

using namespace vireo::guest;

namespace {
constexpr std::uint32_t kBytes = 64;
constinit RngDevice rng;
std::uint8_t a[kBytes];
std::uint8_t b[kBytes];

bool constant(const std::uint8_t* p) {
    for (std::uint32_t i = 1; i < kBytes; ++i) {
        if (p[i] != p[0]) {
            return false;
        }
    }
    return true;
}
}  // namespace

int guest_main() {
    const test::Env env = test::parse_env();
    Transport* t = test::find_device(env, kIdRng);
    if (t == nullptr || !rng.init(*t, env.opts)) {
        return 1;
    }
    if (!rng.read(a, kBytes) || !rng.read(b, kBytes)) {
        return 2;
    }
    bool same = true;
    for (std::uint32_t i = 0; i < kBytes; ++i) {
        same = same && a[i] == b[i];
    }
    print("rng: %02x%02x%02x%02x... %02x%02x%02x%02x...\n", a[0], a[1], a[2], a[3], b[0], b[1],
          b[2], b[3]);
    if (constant(a) || constant(b) || same) {
        print("rng: bytes do not look random\n");
        return 3;
    }
    if (!test::check_interrupts(env, *t)) {
        return 4;
    }
    print("rng: PASS\n");
    return 0;
}
