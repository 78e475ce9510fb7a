// What the architecture-neutral runtime (runtime.cpp) needs from guest/runtime/<arch>/.
#pragma once

namespace vireo::guest::arch {

void console_putc(char c);
int console_getc();  // -1: no byte waiting (LSR.DR clear)

}  // namespace vireo::guest::arch
