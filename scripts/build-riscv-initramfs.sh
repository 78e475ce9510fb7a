#!/usr/bin/env bash
# Builds the RISC-V test initramfs: a static /init (guest/riscv/init.c, riscv64-linux-gnu-gcc)
# plus the mount points it needs, as a newc cpio. Usage: scripts/build-riscv-initramfs.sh OUT
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build-riscv-initramfs.sh OUT.cpio}
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{dev,proc,sys}
riscv64-linux-gnu-gcc -static -O2 -Wall -Wextra -Werror -o "$root/init" "$here/../guest/riscv/init.c"
(cd "$root" && find . | cpio -o -H newc --quiet) >"$out"
