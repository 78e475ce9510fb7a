// Proof that the driver queues are freestanding: this translation unit is compiled with
// -ffreestanding -fno-exceptions -fno-rtti and linked with -nostdlib into a static executable
// whose only runtime is the memcpy/memset below and a tiny _start. Any hidden dependency (libc,
// libstdc++, the unwinder, operator new, RTTI, libatomic) fails the link.
//
// On x86-64 Linux the program also runs (CTest: driver_freestanding): it drives both queue
// formats through add → publish → a hand-written device completion → get, and exits 0 on success.
#include <cstddef>
#include <cstdint>

#include "driver/packed_driver.hpp"
#include "driver/split_driver.hpp"

extern "C" {
// The compiler may lower struct copies and zeroing to these even with -ffreestanding.
void* memcpy(void* dst, const void* src, std::size_t n) {
    auto* d = static_cast<unsigned char*>(dst);
    const auto* s = static_cast<const unsigned char*>(src);
    while (n-- > 0) {
        *d++ = *s++;
    }
    return dst;
}
void* memset(void* dst, int c, std::size_t n) {
    auto* d = static_cast<unsigned char*>(dst);
    while (n-- > 0) {
        *d++ = static_cast<unsigned char>(c);
    }
    return dst;
}
}

namespace {

using namespace vireo;

constexpr std::uint16_t kSize = 8;

// Static storage only: what a bare-metal guest would have.
alignas(16) std::uint8_t split_ring[driver::split_ring_bytes(kSize)];
alignas(16) std::uint8_t packed_ring[driver::packed_ring_bytes(kSize)];
alignas(16) std::uint8_t pool[driver::indirect_pool_bytes(kSize, 4)];
alignas(16) std::uint8_t buffers[64];
constinit driver::SplitDriver<kSize> split;
constinit driver::PackedDriver<kSize> packed;

int check_split() {
    const auto window = driver::DmaWindow::identity();
    if (split.init(kSize, {true, true}, window, {split_ring, sizeof split_ring},
                   {pool, sizeof pool, 4}) != driver::DriverError::kOk) {
        return 1;
    }
    const driver::Segment out[] = {{window.to_device(buffers), 16}};
    const driver::Segment in[] = {{window.to_device(buffers + 16), 16},
                                  {window.to_device(buffers + 32), 16}};
    int token = 0;
    if (split.add_buf(out, in, &token) != driver::DriverError::kOk) {
        return 2;
    }
    if (!split.kick_prepare()) {  // avail_event is 0: the first buffer must be kicked
        return 3;
    }
    // Play the device: complete head 0 with 20 bytes written.
    auto* used =
        reinterpret_cast<virtq::SplitUsedHeader*>(split_ring + driver::split_layout(kSize).used);
    auto* elems = reinterpret_cast<virtq::SplitUsedElem*>(used + 1);
    elems[0].id.set(0);
    elems[0].len.set(20);
    store_release(&used->idx, std::uint16_t{1});
    std::uint32_t len = 0;
    if (split.get_buf(&len) != &token || len != 20 || split.num_free() != kSize) {
        return 4;
    }
    return 0;
}

int check_packed() {
    const auto window = driver::DmaWindow::identity();
    if (packed.init(kSize, {false, false}, window, {packed_ring, sizeof packed_ring}) !=
        driver::DriverError::kOk) {
        return 10;
    }
    const driver::Segment in[] = {{window.to_device(buffers), 8}};
    int token = 0;
    if (packed.add_buf({}, in, &token) != driver::DriverError::kOk || !packed.kick_prepare()) {
        return 11;
    }
    // Play the device: mark slot 0 used (AVAIL = USED = wrap counter 1) for buffer id 0.
    auto* ring = reinterpret_cast<virtq::PackedDesc*>(packed_ring);
    ring[0].len.set(8);
    ring[0].id.set(0);
    store_release(&ring[0].flags,
                  static_cast<std::uint16_t>(virtq::kPackedDescFAvail | virtq::kPackedDescFUsed));
    std::uint32_t len = 0;
    if (packed.get_buf(&len) != &token || len != 8) {
        return 12;
    }
    return 0;
}

}  // namespace

extern "C" int vireo_driver_selftest() {
    if (int r = check_split(); r != 0) {
        return r;
    }
    return check_packed();
}

#if defined(__x86_64__) && defined(__linux__)
extern "C" [[noreturn]] void vireo_exit(long code) {
    asm volatile("syscall" : : "a"(60L), "D"(code) : "rcx", "r11", "memory");  // exit(2)
    __builtin_unreachable();
}
// The kernel enters with rsp 16-byte aligned and no return address: realign for the C++ call.
asm(".globl _start\n"
    "_start:\n"
    "  xor %rbp, %rbp\n"
    "  and $-16, %rsp\n"
    "  call vireo_driver_selftest\n"
    "  mov %eax, %edi\n"
    "  call vireo_exit\n");
#else
// Other targets: link-only proof; the entry point just spins.
extern "C" [[noreturn]] void _start() {
    vireo_driver_selftest();
    for (;;) {
    }
}
#endif
