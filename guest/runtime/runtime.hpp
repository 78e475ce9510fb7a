// The guest runtime's services to test programs: boot information, command-line options, a tiny
// printf to the serial console, and exit through the VMM's exit port. Implemented per
// architecture in guest/runtime/<arch>/.
//
// A test program defines `int guest_main()`; its return value is the exit code (0 = pass).
#pragma once

#include <cstdarg>
#include <cstddef>
#include <cstdint>

#include "vmm/boot_info.hpp"

namespace vireo::guest {

const boot::BootInfo& boot_info();

// printf subset: %s %c %d %u %x %p %%, with l/ll/z length modifiers and a zero-pad width
// (%08x). Output goes to the UART.
void vprint(const char* fmt, va_list ap);
__attribute__((format(printf, 1, 2))) void print(const char* fmt, ...);

[[noreturn]] void exit_vm(int code);

// A byte the host sent to the UART (the VMM's stdin), or -1 when none is waiting.
int console_getc();

// Command-line options "key=value key2 ..." from BootInfo.cmdline (vireo-vmm --append).
// opt(): the value of `key` copied into `out` (NUL-terminated), "" for a bare key;
// false when absent or too long.
bool opt(const char* key, char* out, std::size_t out_size);
bool opt_is(const char* key, const char* value);                 // key=value present
std::uint64_t opt_u64(const char* key, std::uint64_t fallback);  // decimal or 0x hex
bool opt_flag(const char* key, bool fallback);                   // key, key=1/0/on/off

bool str_eq(const char* a, const char* b);

}  // namespace vireo::guest

int guest_main();
