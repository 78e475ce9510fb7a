// Register round trips per second and notify -> interrupt latency through the hypervisor bridge
// (BridgeClient -> ring -> BridgeServer zone thread -> VirtioMmio) versus the same VirtioMmio
// called in-process (what vireo-vmm does without --bridge), with 1 and 2 VMs at once. No KVM:
// the client is driven directly, so the numbers are the bridge's own cost.
//
//   bridge_rtt [--ops N] [--irqs N]
//
// Notify -> interrupt: one virtio-blk read of sector 0 (sync engine, page cache) per round:
// QueueNotify, wait for the interrupt request, InterruptAck. Both variants do the same I/O.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "base/log.hpp"
#include "bridge/client.hpp"
#include "bridge/server.hpp"
#include "devices/blk.hpp"
#include "transport/virtio_mmio.hpp"

namespace {

using namespace vireo;
using Clock = std::chrono::steady_clock;
using transport::kMmioMagicValue;

constexpr std::uint64_t kDev = 0xd0000000;
constexpr std::uint64_t kRam = 1 << 20;

// The register interface a "VM" sees, in-process or bridged.
struct Vm {
    std::function<std::uint32_t(std::uint64_t)> rd;
    std::function<void(std::uint64_t, std::uint32_t)> wr;
    std::uint8_t* ram = nullptr;
    std::atomic<bool> irq{false};
};

class FlagLine final : public transport::IrqLine {
  public:
    explicit FlagLine(std::atomic<bool>& f) : f_(f) {}
    void set_level(bool high) override {
        if (high) {
            f_.store(true, std::memory_order_release);
        }
    }

  private:
    std::atomic<bool>& f_;
};

void setup_queue(Vm& vm) {
    using namespace transport;
    vm.wr(kMmioStatus, 1);
    vm.wr(kMmioStatus, 3);
    vm.wr(kMmioDriverFeaturesSel, 1);
    vm.wr(kMmioDriverFeatures, 1);  // VIRTIO_F_VERSION_1
    vm.wr(kMmioStatus, 0xb);
    vm.wr(kMmioQueueSel, 0);
    vm.wr(kMmioQueueNum, 8);
    vm.wr(kMmioQueueDescLow, 0x1000);
    vm.wr(kMmioQueueDriverLow, 0x2000);
    vm.wr(kMmioQueueDeviceLow, 0x3000);
    vm.wr(kMmioQueueReady, 1);
    vm.wr(kMmioStatus, 0xf);
    struct Desc {
        std::uint64_t addr;
        std::uint32_t len;
        std::uint16_t flags, next;
    };
    const Desc d[3] = {{0x4000, 16, 1, 1}, {0x6000, 512, 3, 2}, {0x5000, 1, 2, 0}};
    std::memcpy(vm.ram + 0x1000, d, sizeof(d));
    std::memset(vm.ram + 0x4000, 0, 16);
}

double ns_since(Clock::time_point t0) {
    return std::chrono::duration<double, std::nano>(Clock::now() - t0).count();
}

// Register reads per second: the median of batches of 500, so a few descheduled moments on a
// shared host do not dominate (the mean is printed too).
struct Rate {
    double median = 0;
    double mean = 0;
};
Rate rtt(Vm& vm, int ops) {
    constexpr int kBatch = 500;
    std::vector<double> rates;
    const auto start = Clock::now();
    for (int done = 0; done < ops; done += kBatch) {
        const auto t0 = Clock::now();
        for (int i = 0; i < kBatch; ++i) {
            if (vm.rd(kMmioMagicValue) != transport::kMmioMagic) {
                std::fprintf(stderr, "bad magic\n");
                std::exit(1);
            }
        }
        rates.push_back(kBatch / (ns_since(t0) / 1e9));
    }
    std::sort(rates.begin(), rates.end());
    const int total = static_cast<int>(rates.size()) * kBatch;
    return {rates[rates.size() / 2], total / (ns_since(start) / 1e9)};
}

// Median notify -> interrupt latency in microseconds.
double notify_irq(Vm& vm, int rounds) {
    std::vector<double> us;
    std::uint16_t idx = 0;
    for (int i = 0; i < rounds; ++i) {
        std::memcpy(vm.ram + 0x2000 + 4 + 2 * (idx % 8), "\0\0", 2);  // ring[idx] = desc 0
        ++idx;
        std::atomic_ref<std::uint16_t>(*reinterpret_cast<std::uint16_t*>(vm.ram + 0x2002))
            .store(idx, std::memory_order_release);
        vm.irq.store(false);
        const auto t0 = Clock::now();
        vm.wr(transport::kMmioQueueNotify, 0);
        while (!vm.irq.load(std::memory_order_acquire)) {
            std::this_thread::yield();
        }
        us.push_back(ns_since(t0) / 1000);
        vm.wr(transport::kMmioInterruptAck, vm.rd(transport::kMmioInterruptStatus));
    }
    std::sort(us.begin(), us.end());
    return us[us.size() / 2];
}

std::string make_image(int i) {
    std::string p =
        "/tmp/vireo-bridge-bench-" + std::to_string(::getpid()) + "-" + std::to_string(i) + ".img";
    const int fd = ::open(p.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || ::ftruncate(fd, 1 << 20) != 0) {
        std::perror("image");
        std::exit(1);
    }
    ::close(fd);
    return p;
}

struct Result {
    double rtt_per_s = 0;
    double rtt_mean = 0;
    double irq_us = 0;
};

// Runs `nvms` VMs at once; each thread measures its own VM. Returns the per-VM average.
Result run_parallel(std::vector<Vm*> vms, int ops, int irqs) {
    std::vector<Result> r(vms.size());
    std::vector<std::thread> t;
    for (std::size_t i = 0; i < vms.size(); ++i) {
        t.emplace_back([&, i] {
            const Rate rate = rtt(*vms[i], ops);
            r[i].rtt_per_s = rate.median;
            r[i].rtt_mean = rate.mean;
            r[i].irq_us = notify_irq(*vms[i], irqs);
        });
    }
    for (auto& x : t) {
        x.join();
    }
    Result avg;
    for (const auto& x : r) {
        avg.rtt_per_s += x.rtt_per_s / r.size();
        avg.rtt_mean += x.rtt_mean / r.size();
        avg.irq_us += x.irq_us / r.size();
    }
    return avg;
}

Result in_process(int nvms, int ops, int irqs) {
    struct Local {
        GuestMemory mem;
        std::unique_ptr<dev::BlkDevice> blk;
        std::unique_ptr<FlagLine> line;
        std::shared_ptr<transport::VirtioMmio> mmio;
        Vm vm;
        std::string img;
    };
    std::vector<std::unique_ptr<Local>> locals;
    std::vector<Vm*> vms;
    for (int i = 0; i < nvms; ++i) {
        auto l = std::make_unique<Local>();
        (void)l->mem.add_memfd(0, kRam);
        l->img = make_image(10 + i);
        dev::BlkOptions o;
        o.path = l->img;
        o.engine = dev::BlkEngine::kSync;
        l->blk = std::move(*dev::BlkDevice::open(o));
        l->line = std::make_unique<FlagLine>(l->vm.irq);
        l->mmio = std::make_shared<transport::VirtioMmio>(*l->blk, l->mem, *l->line);
        l->vm.ram = l->mem.translate(0, kRam);
        auto* m = l->mmio.get();
        l->vm.rd = [m](std::uint64_t off) {
            std::uint32_t v = 0;
            m->read(off, std::span(reinterpret_cast<std::uint8_t*>(&v), 4));
            return v;
        };
        l->vm.wr = [m](std::uint64_t off, std::uint32_t v) {
            m->write(off, std::span(reinterpret_cast<const std::uint8_t*>(&v), 4));
        };
        setup_queue(l->vm);
        vms.push_back(&l->vm);
        locals.push_back(std::move(l));
    }
    Result r = run_parallel(vms, ops, irqs);
    for (auto& l : locals) {
        l->mmio.reset();
        ::unlink(l->img.c_str());
    }
    return r;
}

Result bridged(int nvms, int ops, int irqs) {
    const std::string sock = "/tmp/vireo-bridge-bench-" + std::to_string(::getpid()) + ".sock";
    bridge::BridgeConfig cfg;
    cfg.socket = sock;
    std::vector<std::string> imgs;
    for (int i = 0; i < nvms; ++i) {
        imgs.push_back(make_image(i));
        bridge::Zone z;
        z.id = static_cast<std::uint32_t>(i + 1);
        z.regions.push_back({0, 0, kRam, ""});
        bridge::ZoneDevice d;
        d.addr = kDev;
        d.irq = 5;
        d.blk.path = imgs.back();
        d.blk.engine = dev::BlkEngine::kSync;
        z.devices.push_back(d);
        cfg.zones.push_back(z);
    }
    auto server = bridge::BridgeServer::create(cfg);
    if (!server) {
        std::fprintf(stderr, "%s\n", server.error().c_str());
        std::exit(1);
    }
    std::thread st([&] { (*server)->run(false); });
    struct Remote {
        UniqueFd ram_fd;
        std::unique_ptr<bridge::BridgeClient> c;
        Vm vm;
    };
    std::vector<std::unique_ptr<Remote>> remotes;
    std::vector<Vm*> vms;
    for (int i = 0; i < nvms; ++i) {
        auto r = std::make_unique<Remote>();
        r->ram_fd.reset(::memfd_create("bench-ram", MFD_CLOEXEC));
        (void)!::ftruncate(r->ram_fd.get(), kRam);
        r->vm.ram = static_cast<std::uint8_t*>(
            ::mmap(nullptr, kRam, PROT_READ | PROT_WRITE, MAP_SHARED, r->ram_fd.get(), 0));
        bridge::ClientOptions o;
        o.socket = sock;
        o.vm_id = static_cast<std::uint32_t>(i + 1);
        o.mem_fd = r->ram_fd.get();
        auto c = bridge::BridgeClient::connect(o);
        if (!c) {
            std::fprintf(stderr, "%s\n", c.error().c_str());
            std::exit(1);
        }
        r->c = std::move(*c);
        auto* cl = r->c.get();
        auto* vm = &r->vm;
        cl->start_irq_thread([vm](std::uint32_t, bool level) {
            if (level) {
                vm->irq.store(true, std::memory_order_release);
            }
        });
        r->vm.rd = [cl](std::uint64_t off) {
            return static_cast<std::uint32_t>(cl->access(0, kDev + off, 4, false).value);
        };
        r->vm.wr = [cl](std::uint64_t off, std::uint32_t v) {
            cl->access(0, kDev + off, 4, true, v);
        };
        setup_queue(r->vm);
        vms.push_back(&r->vm);
        remotes.push_back(std::move(r));
    }
    Result res = run_parallel(vms, ops, irqs);
    for (auto& r : remotes) {
        ::munmap(r->vm.ram, kRam);
    }
    remotes.clear();
    (*server)->stop();
    st.join();
    for (auto& p : imgs) {
        ::unlink(p.c_str());
    }
    return res;
}

}  // namespace

int main(int argc, char** argv) {
    int ops = 200000;
    int irqs = 2000;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (std::strcmp(argv[i], "--ops") == 0) {
            ops = std::atoi(argv[i + 1]);
        } else if (std::strcmp(argv[i], "--irqs") == 0) {
            irqs = std::atoi(argv[i + 1]);
        }
    }
    vireo::log::set_level(vireo::log::Level::kWarn);
    std::printf("%-22s %4s %20s %14s %22s\n", "path", "VMs", "reg reads/s (median)", "(mean)",
                "notify->irq us (median)");
    for (int n : {1, 2}) {
        const Result a = in_process(n, ops, irqs);
        std::printf("%-22s %4d %20.0f %14.0f %22.2f\n", "in-process VirtioMmio", n, a.rtt_per_s,
                    a.rtt_mean, a.irq_us);
        const Result b = bridged(n, ops, irqs);
        std::printf("%-22s %4d %20.0f %14.0f %22.2f\n", "bridge (shm ring)", n, b.rtt_per_s,
                    b.rtt_mean, b.irq_us);
    }
    return 0;
}
