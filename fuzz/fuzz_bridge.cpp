// The hypervisor bridge from a hostile hypervisor side: fuzzer bytes become (0) a zone
// configuration document, (1) the contents of a bridge area's request ring and reply slots
// served by the daemon's serve_requests(), or (2) an area header the client must check.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "bridge/ring.hpp"
#include "bridge/server.hpp"
#include "bridge/zone_config.hpp"

namespace {

using namespace vireo;

class Sink final : public transport::BusDevice {
  public:
    void read(std::uint64_t offset, std::span<std::uint8_t> data) override {
        std::memcpy(data.data(), &offset, data.size());
    }
    void write(std::uint64_t, std::span<const std::uint8_t>) override {}
};

void fuzz_ring(const std::uint8_t* data, std::size_t size) {
    auto area = bridge::Area::create(/*vm_id=*/1, /*vcpus=*/4, /*req=*/16, /*irq=*/4);
    if (!area) {
        return;
    }
    auto* base = reinterpret_cast<std::uint8_t*>(&area->header());
    const bridge::Header h = area->header();
    // The hypervisor may write anything into the request ring and the reply slots.
    const std::size_t span = h.irq_offset - h.req_offset;
    std::memcpy(base + h.req_offset, data, std::min(size, span));
    transport::Bus bus;
    (void)bus.insert(0x1000, 0x100, std::make_shared<Sink>());
    (void)bus.insert(0xd0000000, 0x1000, std::make_shared<Sink>());
    bridge::ZoneStats stats;
    const bridge::ZoneDispatch zone{1, &bus, &stats};
    for (int i = 0; i < 4; ++i) {
        bridge::serve_requests(*area, zone);
    }
}

void fuzz_header(const std::uint8_t* data, std::size_t size) {
    UniqueFd fd(::memfd_create("fuzz-area", MFD_CLOEXEC));
    const std::size_t len = std::max<std::size_t>(size, sizeof(bridge::Header));
    if (!fd || ::ftruncate(fd.get(), static_cast<off_t>(len)) != 0 ||
        ::pwrite(fd.get(), data, size, 0) != static_cast<ssize_t>(size)) {
        return;
    }
    auto a = bridge::Area::attach(std::move(fd), len);
    if (a) {
        // A header that passed the checks describes rings that fit: they must be usable.
        (void)a->requests().try_push(bridge::Request{0, 0, 0, 0, 0, 4, 0, 0});
        (void)a->requests().try_pop();
        (void)a->irqs().try_pop();
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) {
        return 0;
    }
    const std::uint8_t mode = data[0] % 3;
    ++data;
    --size;
    switch (mode) {
        case 0:
            (void)bridge::parse_zone_config(
                std::string_view(reinterpret_cast<const char*>(data), size), /*check_files=*/false);
            break;
        case 1:
            fuzz_ring(data, size);
            break;
        default:
            fuzz_header(data, size);
            break;
    }
    return 0;
}
