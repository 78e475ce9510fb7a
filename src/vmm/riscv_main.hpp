// The --arch riscv64 entry of vireo-vmm (docs/riscv.md).
#pragma once

namespace vireo::vmm {

// True if the command line selects the RISC-V back end (--arch riscv64).
bool wants_riscv(int argc, char** argv);
// Parses the RISC-V options, builds and runs the machine; returns the process exit status.
int riscv_main(int argc, char** argv);

}  // namespace vireo::vmm
