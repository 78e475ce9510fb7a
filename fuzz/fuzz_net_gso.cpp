// Software TCP segmentation (src/devices/net_gso.hpp) on a hostile frame: the input is a
// virtio_net_hdr followed by the frame a guest sent. Every planned segment is built; the
// segments' payloads must tile the frame's payload exactly and every header stays inside the
// header buffer (ASan catches any overrun).
#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>

#include "devices/net_gso.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace vireo::dev;
    if (size < sizeof(NetHdr)) return 0;
    NetHdr hdr;
    std::memcpy(&hdr, data, sizeof hdr);
    const std::span<const std::uint8_t> frame(data + sizeof hdr, size - sizeof hdr);
    const auto g = plan_tcp_gso(frame, hdr);
    if (!g) return 0;
    if (g->payload > kGsoMaxHeaders || g->payload >= frame.size() || g->mss == 0) std::abort();
    std::array<std::uint8_t, kGsoMaxHeaders> headers{};
    std::size_t covered = 0;
    for (std::size_t i = 0; i < g->segments; ++i) {
        const auto payload = tcp_gso_segment(frame, *g, i, headers);
        if (payload.data() != frame.data() + g->payload + covered || payload.empty() ||
            payload.size() > g->mss) {
            std::abort();
        }
        covered += payload.size();
    }
    if (covered != frame.size() - g->payload) std::abort();
    return 0;
}
