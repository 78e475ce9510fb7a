#include "vmm/device_model.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "devices/blk.hpp"
#include "devices/console.hpp"
#include "devices/net.hpp"
#include "devices/net_switch.hpp"
#include "devices/net_tap.hpp"
#include "devices/rng.hpp"
#include "memory/unique_fd.hpp"
#include "virtq/features.hpp"

namespace vireo::vmm {

namespace {

// Offers a model's features minus some (packed=off: no VIRTIO_F_RING_PACKED).
class FeatureMask final : public dev::VirtioDevice {
  public:
    FeatureMask(std::unique_ptr<dev::VirtioDevice> inner, std::uint64_t removed)
        : inner_(std::move(inner)), removed_(removed) {}
    std::uint32_t device_id() const override { return inner_->device_id(); }
    std::uint64_t device_features() const override { return inner_->device_features() & ~removed_; }
    std::uint16_t num_queues() const override { return inner_->num_queues(); }
    std::uint16_t max_queue_size() const override { return inner_->max_queue_size(); }
    std::span<const std::uint8_t> config() const override { return inner_->config(); }
    void write_config(std::uint32_t offset, std::span<const std::uint8_t> data) override {
        inner_->write_config(offset, data);
    }
    void set_features(std::uint64_t negotiated) override { inner_->set_features(negotiated); }
    std::unique_ptr<dev::QueueHandler> start_queue(std::uint16_t index,
                                                   dev::QueueHandle q) override {
        return inner_->start_queue(index, q);
    }
    void reset() override { inner_->reset(); }

  private:
    std::unique_ptr<dev::VirtioDevice> inner_;
    std::uint64_t removed_;
};

}  // namespace

std::expected<VirtioModel, std::string> make_virtio_model(const DeviceSpec& d) {
    VirtioModel out;
    std::unique_ptr<dev::VirtioDevice> model;
    switch (d.kind) {
        case DeviceKind::kBlk: {
            auto b = dev::BlkDevice::open(d.blk);
            if (!b) {
                return std::unexpected(b.error());
            }
            out.blk = b->get();
            model = std::move(*b);
            break;
        }
        case DeviceKind::kNet: {
            dev::NetOptions o;
            o.mac = d.mac;
            o.queue_pairs = d.queue_pairs;
            o.queue_size = d.queue_size;
            if (!d.net_switch.empty()) {
                // Devices naming the same switch in this process share it (NetSwitch::get).
                auto port = dev::NetSwitch::get(d.net_switch)->add_port(d.queue_pairs);
                if (!port) {
                    return std::unexpected(port.error());
                }
                o.backend = std::move(*port);
            } else {
                auto tap = dev::NetTap::open(d.tap, d.queue_pairs);
                if (!tap) {
                    return std::unexpected(tap.error());
                }
                o.backend = std::move(*tap);
            }
            auto n = dev::NetDevice::create(std::move(o));
            if (!n) {
                return std::unexpected(n.error());
            }
            model = std::move(*n);
            break;
        }
        case DeviceKind::kConsole: {
            dev::ConsoleOptions o;
            o.queue_size = d.queue_size;
            if (!d.console_file.empty()) {
                o.ports[0].kind = dev::ConsoleBackendKind::kFile;
                o.ports[0].path = d.console_file;
            }
            auto c = dev::ConsoleDevice::create(o);
            if (!c) {
                return std::unexpected(c.error());
            }
            model = std::move(*c);
            break;
        }
        case DeviceKind::kRng: {
            dev::RngOptions o;
            o.max_bytes_per_sec = d.rng_rate;
            o.queue_size = d.queue_size;
            auto r = dev::RngDevice::create(o);
            if (!r) {
                return std::unexpected(r.error());
            }
            model = std::move(*r);
            break;
        }
        case DeviceKind::kEdu:
            return std::unexpected("edu is a PCI test device, not a virtio model");
    }
    if (!d.packed) {
        model = std::make_unique<FeatureMask>(std::move(model), 1ull << virtq::kFRingPacked);
    }
    out.model = std::move(model);
    return out;
}

}  // namespace vireo::vmm
