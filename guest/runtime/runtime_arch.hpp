// What the architecture-neutral runtime (runtime.cpp) needs from guest/runtime/<arch>/.
#pragma once

namespace vireo::guest::arch {

void console_putc(char c);

}  // namespace vireo::guest::arch
