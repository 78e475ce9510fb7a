// virtio-net: TX chains (header + frame, offload fields) and control-queue commands (RX mode, MAC
// table, VLAN, MQ pairs, guest offloads) from the fuzzer through a two-pair NetDevice whose back
// end accepts and discards every frame.
#include <sys/eventfd.h>

#include "device_fuzz.hpp"
#include "devices/net.hpp"
#include "memory/unique_fd.hpp"

namespace {

class NullBackend final : public vireo::dev::NetBackend {
  public:
    std::uint16_t queue_pairs() const override { return 2; }
    bool transmit(std::uint16_t /*pair*/, const vireo::dev::NetTxFrame& /*frame*/) override {
        return true;
    }
    int rx_event_fd(std::uint16_t /*pair*/) const override { return never_.get(); }
    void receive(std::uint16_t /*pair*/, vireo::dev::NetRxSink& /*sink*/) override {}

  private:
    vireo::UniqueFd never_{::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)};
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static auto dev = [] {
        vireo::dev::NetOptions o;
        o.queue_pairs = 2;
        o.backend = std::make_shared<NullBackend>();
        auto d = vireo::dev::NetDevice::create(o);
        if (!d) {
            std::abort();
        }
        return std::move(*d);
    }();
    vireo::fuzz::run_device(*dev, data, size);
    return 0;
}
