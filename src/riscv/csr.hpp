// RISC-V control and status registers: numbers and bit fields (RISC-V Privileged Architecture
// v1.12, chapters 2-4) used by the hart, the CLINT and the PLIC.
#pragma once

#include <cstdint>

namespace vireo::riscv {

// Privilege levels (Privileged spec §1.2). The encoding is what MPP/SPP hold.
enum class Priv : std::uint8_t { kU = 0, kS = 1, kM = 3 };

namespace csr {

// Unprivileged (Zicsr, F/D, Zicntr).
inline constexpr std::uint16_t kFflags = 0x001;
inline constexpr std::uint16_t kFrm = 0x002;
inline constexpr std::uint16_t kFcsr = 0x003;
inline constexpr std::uint16_t kCycle = 0xc00;
inline constexpr std::uint16_t kTime = 0xc01;
inline constexpr std::uint16_t kInstret = 0xc02;

// Supervisor.
inline constexpr std::uint16_t kSstatus = 0x100;
inline constexpr std::uint16_t kSie = 0x104;
inline constexpr std::uint16_t kStvec = 0x105;
inline constexpr std::uint16_t kScounteren = 0x106;
inline constexpr std::uint16_t kSenvcfg = 0x10a;
inline constexpr std::uint16_t kSscratch = 0x140;
inline constexpr std::uint16_t kSepc = 0x141;
inline constexpr std::uint16_t kScause = 0x142;
inline constexpr std::uint16_t kStval = 0x143;
inline constexpr std::uint16_t kSip = 0x144;
inline constexpr std::uint16_t kSatp = 0x180;

// Machine.
inline constexpr std::uint16_t kMvendorid = 0xf11;
inline constexpr std::uint16_t kMarchid = 0xf12;
inline constexpr std::uint16_t kMimpid = 0xf13;
inline constexpr std::uint16_t kMhartid = 0xf14;
inline constexpr std::uint16_t kMconfigptr = 0xf15;
inline constexpr std::uint16_t kMstatus = 0x300;
inline constexpr std::uint16_t kMisa = 0x301;
inline constexpr std::uint16_t kMedeleg = 0x302;
inline constexpr std::uint16_t kMideleg = 0x303;
inline constexpr std::uint16_t kMie = 0x304;
inline constexpr std::uint16_t kMtvec = 0x305;
inline constexpr std::uint16_t kMcounteren = 0x306;
inline constexpr std::uint16_t kMenvcfg = 0x30a;
inline constexpr std::uint16_t kMcountinhibit = 0x320;
inline constexpr std::uint16_t kMscratch = 0x340;
inline constexpr std::uint16_t kMepc = 0x341;
inline constexpr std::uint16_t kMcause = 0x342;
inline constexpr std::uint16_t kMtval = 0x343;
inline constexpr std::uint16_t kMip = 0x344;
inline constexpr std::uint16_t kPmpcfg0 = 0x3a0;
inline constexpr std::uint16_t kPmpaddr0 = 0x3b0;
inline constexpr unsigned kPmpEntries = 16;  // pmpaddr0..15, pmpcfg0 and pmpcfg2 on RV64
inline constexpr std::uint16_t kMcycle = 0xb00;
inline constexpr std::uint16_t kMinstret = 0xb02;
inline constexpr std::uint16_t kMhpmcounter3 = 0xb03;
inline constexpr std::uint16_t kMhpmcounter31 = 0xb1f;
inline constexpr std::uint16_t kMhpmevent3 = 0x323;
inline constexpr std::uint16_t kMhpmevent31 = 0x33f;

}  // namespace csr

// mstatus / sstatus fields (Privileged §3.1.6).
namespace mstatus {
inline constexpr std::uint64_t kSie = 1ull << 1;
inline constexpr std::uint64_t kMie = 1ull << 3;
inline constexpr std::uint64_t kSpie = 1ull << 5;
inline constexpr std::uint64_t kMpie = 1ull << 7;
inline constexpr std::uint64_t kSpp = 1ull << 8;
inline constexpr unsigned kMppShift = 11;
inline constexpr std::uint64_t kMpp = 3ull << kMppShift;
inline constexpr unsigned kFsShift = 13;
inline constexpr std::uint64_t kFs = 3ull << kFsShift;
inline constexpr std::uint64_t kFsDirty = 3ull << kFsShift;
inline constexpr std::uint64_t kMprv = 1ull << 17;
inline constexpr std::uint64_t kSum = 1ull << 18;
inline constexpr std::uint64_t kMxr = 1ull << 19;
inline constexpr std::uint64_t kTvm = 1ull << 20;
inline constexpr std::uint64_t kTw = 1ull << 21;
inline constexpr std::uint64_t kTsr = 1ull << 22;
inline constexpr std::uint64_t kUxl64 = 2ull << 32;  // UXL = 64-bit, read-only here
inline constexpr std::uint64_t kSxl64 = 2ull << 34;  // SXL = 64-bit, read-only here
inline constexpr std::uint64_t kSd = 1ull << 63;

// What M-mode software may change; the rest is fixed or derived (SD).
inline constexpr std::uint64_t kMWritable =
    kSie | kMie | kSpie | kMpie | kSpp | kMpp | kFs | kMprv | kSum | kMxr | kTvm | kTw | kTsr;
// The sstatus view of mstatus (Privileged §4.1.1).
inline constexpr std::uint64_t kSView = kSie | kSpie | kSpp | kFs | kSum | kMxr | kUxl64 | kSd;
inline constexpr std::uint64_t kSWritable = kSie | kSpie | kSpp | kFs | kSum | kMxr;
}  // namespace mstatus

// Interrupt numbers: bit positions in mip/mie, mcause codes with the interrupt bit (§3.1.9).
namespace irq {
inline constexpr unsigned kSsi = 1;
inline constexpr unsigned kMsi = 3;
inline constexpr unsigned kSti = 5;
inline constexpr unsigned kMti = 7;
inline constexpr unsigned kSei = 9;
inline constexpr unsigned kMei = 11;
inline constexpr std::uint64_t kSsip = 1ull << kSsi;
inline constexpr std::uint64_t kMsip = 1ull << kMsi;
inline constexpr std::uint64_t kStip = 1ull << kSti;
inline constexpr std::uint64_t kMtip = 1ull << kMti;
inline constexpr std::uint64_t kSeip = 1ull << kSei;
inline constexpr std::uint64_t kMeip = 1ull << kMei;
inline constexpr std::uint64_t kSMask = kSsip | kStip | kSeip;
inline constexpr std::uint64_t kAll = kSMask | kMsip | kMtip | kMeip;
// Bits software may write in mip (§3.1.9): the S-level ones; MSIP/MTIP/MEIP come from devices.
inline constexpr std::uint64_t kMipWritable = kSsip | kStip | kSeip;
inline constexpr std::uint64_t kSipWritable = kSsip;
inline constexpr std::uint64_t kInterruptBit = 1ull << 63;
}  // namespace irq

// Synchronous exception codes (mcause, Privileged §3.1.15).
enum class Exc : std::uint64_t {
    kInsnMisaligned = 0,
    kInsnAccessFault = 1,
    kIllegalInsn = 2,
    kBreakpoint = 3,
    kLoadMisaligned = 4,
    kLoadAccessFault = 5,
    kStoreMisaligned = 6,
    kStoreAccessFault = 7,
    kEcallU = 8,
    kEcallS = 9,
    kEcallM = 11,
    kInsnPageFault = 12,
    kLoadPageFault = 13,
    kStorePageFault = 15,
};

// satp (Privileged §4.1.11) and page-table entries (§4.3.1, §4.4.1).
namespace satp {
inline constexpr unsigned kModeShift = 60;
inline constexpr std::uint64_t kModeBare = 0;
inline constexpr std::uint64_t kModeSv39 = 8;
inline constexpr std::uint64_t kModeSv48 = 9;
inline constexpr std::uint64_t kPpnMask = (1ull << 44) - 1;
inline constexpr std::uint64_t kAsidMask = 0xffffull << 44;
}  // namespace satp

namespace pte {
inline constexpr std::uint64_t kV = 1 << 0;
inline constexpr std::uint64_t kR = 1 << 1;
inline constexpr std::uint64_t kW = 1 << 2;
inline constexpr std::uint64_t kX = 1 << 3;
inline constexpr std::uint64_t kU = 1 << 4;
inline constexpr std::uint64_t kG = 1 << 5;
inline constexpr std::uint64_t kA = 1 << 6;
inline constexpr std::uint64_t kD = 1 << 7;
inline constexpr unsigned kPpnShift = 10;
inline constexpr std::uint64_t kPpnMask = (1ull << 44) - 1;
// Bits 63:54 (N, PBMT, reserved): none of Svnapot/Svpbmt is implemented, so they must be zero.
inline constexpr std::uint64_t kReserved = 0x3ffull << 54;
}  // namespace pte

inline constexpr unsigned kPageShift = 12;
inline constexpr std::uint64_t kPageSize = 1ull << kPageShift;

// misa: MXL = 64, extensions I M A F D C S U (Privileged §3.1.1).
inline constexpr std::uint64_t misa_bit(char ext) {
    return 1ull << (ext - 'A');
}
inline constexpr std::uint64_t kMisa = (2ull << 62) | misa_bit('I') | misa_bit('M') |
                                       misa_bit('A') | misa_bit('F') | misa_bit('D') |
                                       misa_bit('C') | misa_bit('S') | misa_bit('U');

// fflags (Unprivileged §11.2).
namespace fflag {
inline constexpr std::uint32_t kNx = 1;   // inexact
inline constexpr std::uint32_t kUf = 2;   // underflow
inline constexpr std::uint32_t kOf = 4;   // overflow
inline constexpr std::uint32_t kDz = 8;   // divide by zero
inline constexpr std::uint32_t kNv = 16;  // invalid
}  // namespace fflag

}  // namespace vireo::riscv
