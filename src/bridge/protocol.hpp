// The hypervisor bridge's shared-memory layout (docs/bridge.md), version 1.
//
// A partitioning hypervisor (hvisor, or vireo-vmm --bridge playing one) traps a guest's access
// to a virtio-mmio region and hands it to the vireo daemon through one "bridge area" per zone:
//
//   [Header][request ring: MPSC, hypervisor vCPUs -> daemon][reply slots: one per vCPU]
//   [irq ring: MPSC, daemon threads -> hypervisor]
//
// Sizes (ring entries, vCPUs) are chosen at setup and recorded in the header: no fixed 32-entry
// ring or 32-CPU limit. Both rings are bounded multi-producer queues with a sequence number per
// cell, so producers never take a lock. Every request waits for its reply in the vCPU's own slot
// (a futex word), so replies reach the vCPU that asked and a vCPU has at most one request in
// flight. Each ring has a need-wakeup flag: its consumer sets it only before sleeping, and a
// producer rings the eventfd doorbell only when it is set, so a busy consumer is never woken per
// entry.
//
// Both sides run on the same host, so fields are in native byte order (little-endian on every
// supported host, asserted below). The daemon treats everything in the area as hostile.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>

namespace vireo::bridge {

static_assert(std::endian::native == std::endian::little, "bridge areas are little-endian");

inline constexpr std::uint32_t kAreaMagic = 0x47445242;  // "BRDG"
inline constexpr std::uint32_t kProtocolVersion = 1;
inline constexpr std::size_t kCacheLine = 64;

// Setup limits: generous, but bounded so a hostile size cannot make the area huge.
inline constexpr std::uint32_t kMaxRingEntries = 1u << 16;
inline constexpr std::uint32_t kMaxVcpus = 1024;
inline constexpr std::uint32_t kMaxDevices = 256;

// One trapped access, hypervisor -> daemon.
struct Request {
    std::uint32_t vcpu;   // reply slot index
    std::uint32_t vm_id;  // zone id; must be the area's
    std::uint64_t addr;   // guest-physical address of the access
    std::uint64_t value;  // written value (writes), little-endian in the low `size` bytes
    std::uint32_t tag;    // echoed in the reply: a stale reply is never taken for a new one
    std::uint8_t size;    // 1, 2, 4 or 8
    std::uint8_t is_write;
    std::uint16_t reserved;
};
static_assert(sizeof(Request) == 32);

// An interrupt to inject, daemon -> hypervisor. Level-triggered lines carry the new level.
struct IrqRequest {
    std::uint32_t vm_id;
    std::uint32_t irq;
    std::uint32_t level;  // 1 raise, 0 lower
    std::uint32_t reserved;
};
static_assert(sizeof(IrqRequest) == 16);

// A ring cell: `seq` is the Vyukov bounded-queue sequence number. A producer that claimed
// position p fills `payload` and then stores seq = p + 1 (release); the consumer at position p
// takes the cell when seq == p + 1 and frees it with seq = p + entries.
template <typename T>
struct Cell {
    std::uint64_t seq;
    T payload;
};
static_assert(sizeof(Cell<Request>) == 40);
static_assert(sizeof(Cell<IrqRequest>) == 24);

// Ring control, producers' and consumer's words on separate cache lines.
struct alignas(kCacheLine) RingControl {
    alignas(kCacheLine) std::uint64_t tail;  // next position to claim (producers, CAS)
    alignas(kCacheLine) std::uint64_t head;  // next position to consume (consumer only)
    // Set by the consumer before it sleeps on the doorbell; producers signal only if set.
    alignas(kCacheLine) std::uint32_t need_wakeup;
};
static_assert(sizeof(RingControl) == 3 * kCacheLine);

// Reply slot states (the futex word).
inline constexpr std::uint32_t kSlotIdle = 0;
inline constexpr std::uint32_t kSlotPending = 1;  // request queued, vCPU spinning
inline constexpr std::uint32_t kSlotWaiting = 2;  // vCPU asleep in FUTEX_WAIT: wake it
inline constexpr std::uint32_t kSlotDone = 3;     // reply written

// Reply status.
inline constexpr std::uint32_t kReplyOk = 0;
inline constexpr std::uint32_t kReplyBadVm = 1;     // vm_id is not this zone's
inline constexpr std::uint32_t kReplyBadSize = 2;   // size not 1/2/4/8
inline constexpr std::uint32_t kReplyNoDevice = 3;  // no device covers [addr, addr + size)
inline constexpr std::uint32_t kReplyBadVcpu = 4;   // never written (no such slot); for stats

struct alignas(kCacheLine) ReplySlot {
    std::uint32_t state;  // kSlot*; futex word
    std::uint32_t status;
    std::uint64_t value;  // read result (all ones on error)
    std::uint32_t tag;    // the request's tag
};
static_assert(sizeof(ReplySlot) == kCacheLine);

struct alignas(kCacheLine) Header {
    std::uint32_t magic;
    std::uint32_t version;
    std::uint32_t vm_id;
    std::uint32_t vcpus;        // reply slots
    std::uint32_t req_entries;  // power of two
    std::uint32_t irq_entries;  // power of two
    std::uint64_t req_offset;   // RingControl, then req_entries cells
    std::uint64_t reply_offset;
    std::uint64_t irq_offset;
    std::uint64_t total_size;
};
static_assert(sizeof(Header) == kCacheLine);

// Where everything lives for given sizes; the daemon builds the area, the client checks it.
struct Layout {
    std::uint64_t req_offset;
    std::uint64_t reply_offset;
    std::uint64_t irq_offset;
    std::uint64_t total_size;
};

constexpr std::uint64_t align_up(std::uint64_t v, std::uint64_t a) {
    return (v + a - 1) / a * a;
}

constexpr Layout layout_for(std::uint32_t vcpus, std::uint32_t req_entries,
                            std::uint32_t irq_entries) {
    Layout l{};
    l.req_offset = sizeof(Header);
    l.reply_offset = align_up(
        l.req_offset + sizeof(RingControl) + std::uint64_t{req_entries} * sizeof(Cell<Request>),
        kCacheLine);
    l.irq_offset = l.reply_offset + std::uint64_t{vcpus} * sizeof(ReplySlot);
    l.total_size = align_up(
        l.irq_offset + sizeof(RingControl) + std::uint64_t{irq_entries} * sizeof(Cell<IrqRequest>),
        4096);
    return l;
}

// --- setup over the unix socket (SCM_RIGHTS) -------------------------------------------------

inline constexpr std::uint32_t kHelloMagic = 0x4f4c4548;  // "HELO"

// Hypervisor -> daemon, with one fd: the zone's RAM (memfd or file); the daemon maps only the
// ranges its config names for this zone.
struct Hello {
    std::uint32_t magic;
    std::uint32_t version;
    std::uint32_t vm_id;
    std::uint32_t vcpus;
    std::uint32_t req_entries;  // requested; 0 = daemon default
    std::uint32_t irq_entries;
};
static_assert(sizeof(Hello) == 24);

struct DeviceInfo {
    std::uint64_t addr;
    std::uint64_t len;
    std::uint32_t irq;
    std::uint32_t device_id;  // virtio device id (§5)
};
static_assert(sizeof(DeviceInfo) == 24);

inline constexpr std::uint32_t kHelloOk = 0;
inline constexpr std::uint32_t kHelloRefused = 1;  // `reason` says why

// Daemon -> hypervisor, followed by `devices` DeviceInfo records; with three fds on success:
// the area memfd, the request doorbell (eventfd the hypervisor signals) and the irq doorbell
// (eventfd the daemon signals).
struct HelloAck {
    std::uint32_t magic;
    std::uint32_t version;
    std::uint32_t status;
    std::uint32_t devices;
    std::uint64_t area_size;
    char reason[96];
};
static_assert(sizeof(HelloAck) == 120);

}  // namespace vireo::bridge
