// virtio-blk guest: checks the host image's marker, writes a pattern to a sector range,
// flushes, reads it back and compares. The CTest wrapper then checks the same range in the
// image file on the host.
//
// Options: common.hpp's, plus sector=<first sector of the range> (default 8), seed=<byte>,
// id=<expected GET_ID string>.
#include "common.hpp"
#include "drivers/virtio_blk.hpp"

using namespace vireo::guest;

namespace {

constexpr std::uint32_t kBytes = 4096;  // small: the guest runs under instruction emulation
constexpr char kImageMarker[] = "VIREO-GUEST-IMAGE";

constinit BlkDevice disk;

alignas(16) std::uint8_t wbuf[kBytes];
alignas(16) std::uint8_t rbuf[kBytes];

}  // namespace

int guest_main() {
    const test::Env env = test::parse_env();
    Transport* t = test::find_device(env, kIdBlock);
    if (t == nullptr || !disk.init(*t, env.opts)) {
        return 1;
    }
    print("blk: capacity %lu sectors, flush %s\n", disk.capacity(),
          disk.has_flush() ? "yes" : "no");

    char id[kBlkIdBytes + 1];
    if (!disk.get_id(id)) {
        print("blk: GET_ID failed (status %u)\n", disk.last_status());
        if (disk.last_status() != kBlkSUnsupp) {
            return 2;
        }
    } else {
        print("blk: id \"%s\"\n", id);
        char want[kBlkIdBytes + 1];
        if (opt("id", want, sizeof want) && !str_eq(id, want)) {
            print("blk: id should be \"%s\"\n", want);
            return 2;
        }
    }

    // Sector 0 carries a marker the host wrote: proves reads return the image's bytes.
    if (!disk.read(0, rbuf, kSectorSize)) {
        return 3;
    }
    for (std::size_t i = 0; i + 1 < sizeof kImageMarker; ++i) {
        if (rbuf[i] != static_cast<std::uint8_t>(kImageMarker[i])) {
            print("blk: image marker missing at byte %zu\n", i);
            return 4;
        }
    }

    // bench=N: N one-sector reads, timed with platform::cycle_counter() (the TSC on x86-64,
    // bench/vmm_blk.sh), then exit.
    if (const std::uint64_t n = opt_u64("bench", 0); n > 0) {
        const std::uint32_t irq_before = t->interrupts();
        const std::uint64_t start = platform::cycle_counter();
        for (std::uint64_t i = 0; i < n; ++i) {
            if (!disk.read(i % 64, rbuf, kSectorSize)) {
                return 12;
            }
        }
        const std::uint64_t cycles = platform::cycle_counter() - start;
        print("blk-bench: %lu requests, %lu cycles per request, %u interrupts\n", n, cycles / n,
              t->interrupts() - irq_before);
        return test::check_interrupts(env, *t) ? 0 : 13;
    }

    const std::uint64_t sector = opt_u64("sector", 8);
    const std::uint8_t seed = static_cast<std::uint8_t>(opt_u64("seed", 0x5a));
    for (std::uint32_t i = 0; i < kBytes; ++i) {
        wbuf[i] = static_cast<std::uint8_t>(i * 31u + seed);
    }
    if (!disk.write(sector, wbuf, kBytes)) {
        return 5;
    }
    if (disk.has_flush() && !disk.flush()) {
        return 6;
    }
    if (!disk.read(sector, rbuf, kBytes)) {
        return 7;
    }
    for (std::uint32_t i = 0; i < kBytes; ++i) {
        if (rbuf[i] != wbuf[i]) {
            print("blk: read back differs at byte %u: %x != %x\n", i, rbuf[i], wbuf[i]);
            return 8;
        }
    }
    // A request past the end must be refused by the driver before it reaches the device...
    if (disk.read(disk.capacity(), rbuf, kSectorSize)) {
        return 9;
    }
    // ...and by the device when it gets there anyway: completed with IOERR, never left hanging.
    // An unknown request type is answered UNSUPP (§5.2.6.1).
    const int past_end = disk.submit(kBlkTIn, disk.capacity(), rbuf, kSectorSize, true);
    const int unknown = disk.submit(0x7f, 0, nullptr, 0, false);
    print("blk: read past the end -> status %d, unknown type -> status %d\n", past_end, unknown);
    if (past_end != kBlkSIoErr || unknown != kBlkSUnsupp) {
        return 11;
    }
    // The queue still works after the refused requests.
    if (!disk.read(sector, rbuf, kSectorSize) || !test::mem_equal(rbuf, wbuf, kSectorSize)) {
        return 12;
    }
    print("blk: wrote+read %u bytes at sector %lu, fnv1a %08x\n", kBytes, sector,
          test::fnv1a(rbuf, kBytes));
    if (!test::check_interrupts(env, *t)) {
        return 10;
    }
    print("blk: PASS\n");
    return 0;
}
