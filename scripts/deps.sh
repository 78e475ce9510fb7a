#!/usr/bin/env bash
# Installs every Debian package vireo needs: to build it, to test it, and to boot the test guests.
# Idempotent and quick when everything is present: apt-get runs only for missing packages.
# Needs root (or sudo) when something is missing.  Usage: scripts/deps.sh [--check]
#   --check   only report what is missing (exit 1 if anything is)
set -euo pipefail

build=(
    cmake ninja-build g++ pkg-config
    libgtest-dev libgmock-dev libbenchmark-dev liburing-dev nlohmann-json3-dev libcli11-dev
    libfmt-dev libseccomp-dev
    clang clang-format clang-tidy libclang-rt-14-dev
    # libFuzzer builds (scripts/fuzz.sh): clang 16 compiles libstdc++ 12's <expected>.
    clang-16 libclang-rt-16-dev
    # riscv64 cross compiler: the freestanding drivers must build for another architecture.
    g++-riscv64-linux-gnu
    git
)
guests=(
    # UML guest: the kernel; gcc + libc6-dev build the small LD_PRELOAD shim it needs on hosts
    # with AVX-512 (scripts/guest/uml-xstate-shim.c).
    user-mode-linux gcc libc6-dev
    # QEMU guest: the machine, the kernel (+ its modules) and the reference back end.
    qemu-system-x86 qemu-utils linux-image-cloud-amd64
    # Guest userland (copied into the initramfs) and host-side checks.
    busybox-static fio e2fsprogs util-linux coreutils
    # Building the initramfs.
    cpio gzip
    # RISC-V machine (docs/riscv.md): device trees, OpenSBI firmware, the reference emulator,
    # and building the RV64 test kernel from Debian's source.
    libfdt-dev device-tree-compiler opensbi qemu-system-misc qemu-user
    linux-source-6.1 bc flex bison libssl-dev
)
want=("${build[@]}" "${guests[@]}")

missing=()
# One dpkg-query for all: prints "name status" for installed ones; anything else is missing.
installed=$(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${want[@]}" 2>/dev/null |
    awk '$2 == "installed" {print $1}') || true
for p in "${want[@]}"; do
    grep -qx "$p" <<<"$installed" || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
    echo "deps: all ${#want[@]} packages present"
    exit 0
fi
echo "deps: missing: ${missing[*]}"
[[ ${1:-} == --check ]] && exit 1

sudo=()
if ((EUID != 0)); then
    command -v sudo >/dev/null || { echo "deps: run as root (or install sudo)" >&2; exit 1; }
    sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
# Refresh the package lists only when installing from the current ones fails (e.g. a fresh
# container has none).
if ! "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"; then
    "${sudo[@]}" apt-get update
    "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
fi
echo "deps: installed ${missing[*]}"
