// Shared by the test guests: test options from the command line, and discovery of virtio
// devices on the transport the test asks for.
//
// Options (vireo-vmm --append): transport=mmio|pci  ring=split|packed  irq=1|0  intx
//                               event_idx  indirect
#pragma once

#include <cstdint>

#include "drivers/pci.hpp"
#include "drivers/virtio.hpp"
#include "drivers/virtio_mmio.hpp"
#include "drivers/virtio_pci.hpp"
#include "runtime/runtime.hpp"

namespace vireo::guest::test {

struct Env {
    bool pci = false;
    VirtioOptions opts;
};

inline Env parse_env() {
    Env e;
    e.pci = opt_is("transport", "pci");
    e.opts.packed = opt_is("ring", "packed");
    e.opts.irq = opt_flag("irq", true);
    e.opts.intx = opt_flag("intx", false);
    e.opts.event_idx = opt_flag("event_idx", false);
    e.opts.indirect = opt_flag("indirect", false);
    print("[test] transport=%s ring=%s irq=%s%s%s%s\n", e.pci ? "pci" : "mmio",
          e.opts.packed ? "packed" : "split", e.opts.irq ? "on" : "off",
          e.opts.irq && e.pci ? (e.opts.intx ? " (intx)" : " (msi-x)") : "",
          e.opts.event_idx ? " event_idx" : "", e.opts.indirect ? " indirect" : "");
    return e;
}

inline BarAllocator& bar_window() {
    static constinit BarAllocator window;
    static constinit bool ready = false;
    if (!ready) {
        const auto& b = boot_info();
        window.init(b.pci_bar_base.get(), b.pci_bar_size.get());
        ready = true;
    }
    return window;
}

// Every virtio device of the chosen transport, probed once.
inline constexpr int kMaxDevices = 8;
inline constinit MmioTransport mmio_devices[boot::kMaxMmioDevices];
inline constinit PciTransport pci_devices[kMaxDevices];
inline constinit Transport* found[kMaxDevices] = {};
inline constinit int num_found = -1;

inline void scan(bool pci) {
    num_found = 0;
    if (pci) {
        if (boot_info().pci_ecam_base.get() == 0) {
            print("[test] no PCI bus\n");
            return;
        }
        int n = 0;
        pci_for_each([&](const PciFunction& f) {
            if (n < kMaxDevices && f.vendor() == kVirtioPciVendor &&
                pci_devices[n].probe(f, bar_window())) {
                print("[test] pci 00:%02x.%u virtio id %u\n", f.dev(), f.fn(),
                      pci_devices[n].device_id());
                found[num_found++] = &pci_devices[n++];
            }
            return false;
        });
        return;
    }
    const auto& b = boot_info();
    const std::uint32_t slots = b.num_mmio.get() < boot::kMaxMmioDevices
                                    ? b.num_mmio.get()
                                    : static_cast<std::uint32_t>(boot::kMaxMmioDevices);
    for (std::uint32_t i = 0; i < slots && num_found < kMaxDevices; ++i) {
        MmioTransport& t = mmio_devices[i];
        if (t.probe(b.mmio[i].base.get(), b.mmio[i].gsi.get())) {
            print("[test] mmio %lx v%u virtio id %u\n", t.base(), t.legacy() ? 1 : 2,
                  t.device_id());
            found[num_found++] = &t;
        }
    }
}

// The `nth` device with virtio ID `id`, or null.
inline Transport* find_device(const Env& env, std::uint32_t id, int nth = 0) {
    if (num_found < 0) {
        scan(env.pci);
    }
    for (int i = 0; i < num_found; ++i) {
        if (found[i]->device_id() == id && nth-- == 0) {
            return found[i];
        }
    }
    print("[test] no virtio device %u (#%d) on %s\n", id, nth, env.pci ? "pci" : "mmio");
    return nullptr;
}

// Interrupts without a cause (spurious) fail the test, except on a platform that completes the
// EOI at injection (platform::eoi_at_injection), where a level-triggered interrupt is delivered
// once more before the handler's ack can lower the line: there at most one per real interrupt.
inline bool check_spurious(const char* name, std::uint32_t total, std::uint32_t spurious) {
    const bool early_eoi = platform::eoi_at_injection();
    print("[test] %s interrupts: %u, %u without a cause%s\n", name, total, spurious,
          early_eoi ? " (platform EOIs at injection)" : "");
    if (spurious > (early_eoi ? total - spurious : 0)) {
        print("[test] FAIL: spurious interrupts\n");
        return false;
    }
    return true;
}

// In interrupt mode the I/O must actually have been completed by interrupts. The device
// publishes a used buffer before it interrupts, and the host injects the interrupt from another
// thread: a driver that found its last buffer already used may get here before that interrupt,
// so it is given kIrqGraceMs to arrive.
inline constexpr std::uint32_t kIrqGraceMs = 1000;
inline bool check_interrupts(const Env& env, const Transport& t) {
    const bool arrived =
        !env.opts.irq || wait_until([&] { return t.interrupts() != 0; }, kIrqGraceMs, true);
    if (!check_spurious(t.name(), t.interrupts(), t.spurious_interrupts())) {
        return false;
    }
    if (!arrived) {
        print("[test] FAIL: interrupt mode but no interrupt arrived\n");
        return false;
    }
    return true;
}

// Byte comparison (memcmp is not part of the runtime: only memcpy and memset are).
inline bool mem_equal(const void* a, const void* b, std::size_t n) {
    const auto* x = static_cast<const std::uint8_t*>(a);
    const auto* y = static_cast<const std::uint8_t*>(b);
    for (std::size_t i = 0; i < n; ++i) {
        if (x[i] != y[i]) {
            return false;
        }
    }
    return true;
}

// FNV-1a, 32 bits: a checksum the host side can recompute.
inline std::uint32_t fnv1a(const std::uint8_t* p, std::size_t n) {
    std::uint32_t h = 2166136261u;
    for (std::size_t i = 0; i < n; ++i) {
        h = (h ^ p[i]) * 16777619u;
    }
    return h;
}

}  // namespace vireo::guest::test
