#!/usr/bin/env bash
# Builds a small RV64 Linux Image for vireo-vmm --arch riscv64 from Debian's linux-source-6.1
# (allnoconfig + scripts/riscv/kernel.config) with gcc-riscv64-linux-gnu, cached in
# ~/.cache/vireo keyed by the source tarball, the config fragment and this script.
#   Usage: scripts/build-riscv-kernel.sh [-jN]     prints the Image path on stdout
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
jobs=${1:--j2}
src_tar=$(ls /usr/src/linux-source-6.1.tar.* 2>/dev/null | head -1)
[[ -n $src_tar ]] || { echo "install linux-source-6.1 (scripts/deps.sh)" >&2; exit 1; }
frag=$here/riscv/kernel.config
key=$( (stat -c '%n %s %Y' "$src_tar"; cat "$frag" "$0"; riscv64-linux-gnu-gcc --version | head -1) |
    sha256sum | cut -c1-16)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/vireo/riscv-kernel-$key
if [[ -f $cache/Image ]]; then
    echo "$cache/Image"
    exit 0
fi
work=$cache.work
rm -rf "$work"
mkdir -p "$work"
echo "build-riscv-kernel: extracting $src_tar" >&2
tar -xf "$src_tar" -C "$work" --strip-components=1
make_args=(-C "$work" ARCH=riscv CROSS_COMPILE=riscv64-linux-gnu- "$jobs")
make "${make_args[@]}" allnoconfig >&2
"$work/scripts/kconfig/merge_config.sh" -m -O "$work" "$work/.config" "$frag" >&2
make "${make_args[@]}" olddefconfig >&2
echo "build-riscv-kernel: building Image ($jobs)" >&2
make "${make_args[@]}" Image >&2
mkdir -p "$cache"
cp "$work/arch/riscv/boot/Image" "$work/.config" "$cache/"
rm -rf "$work"
echo "$cache/Image"
