#!/usr/bin/env bash
# vireo in one command: a real Linux guest (User-mode Linux) using a disk served by `vireo blk`.
#   1. builds vireo if needed (CMake release preset)
#   2. builds the UML guest image, or reuses it from ~/.cache/vireo
#   3. creates a disk image (kept between runs: ~/.cache/vireo/demo-disk.img)
#   4. starts `vireo blk` on a vhost-user socket and boots the guest against it
#   5. the guest mounts the disk (mkfs.ext4 on first use), writes files, syncs, checksums them,
#      lists the file system, and checks the files of earlier runs are still intact
#   6. the host checks the image with e2fsck and lists it with debugfs
# Usage: scripts/demo.sh [--image PATH] [--size MiB] [--backend vireo|qsd] [--fresh]
#   --fresh  start from a new, empty disk image
# Run scripts/deps.sh first on a new machine (as root).
set -euo pipefail
VIREO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$VIREO_ROOT/scripts/lib/common.sh"
source "$VIREO_ROOT/scripts/lib/guest.sh"
source "$VIREO_ROOT/scripts/lib/backend.sh"

image=$VIREO_CACHE/demo-disk.img size_mib=256 backend=vireo fresh=0
while (($#)); do
    case $1 in
    --image) image=$2; shift 2 ;;
    --size) size_mib=$2; shift 2 ;;
    --backend) backend=$2; shift 2 ;;
    --fresh) fresh=1; shift ;;
    -h | --help) sed -n '2,/^set/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) vireo_die "unknown argument $1" ;;
    esac
done

if [[ -t 1 ]]; then
    step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
else
    step() { printf '\n== %s\n' "$*"; }
fi

bash "$VIREO_ROOT/scripts/deps.sh" --check >/dev/null ||
    vireo_die "missing packages: run scripts/deps.sh (as root) first"

if [[ $backend == vireo && -z ${VIREO_BIN:-} ]]; then
    step "building vireo (cmake --preset release)"
    cd "$VIREO_ROOT"
    [[ -f build/build.ninja ]] || cmake --preset release >/dev/null
    # Just the daemon (target vireo_daemon, bin/vireo); the whole tree if that target is renamed.
    cmake --build --preset release --target vireo_daemon || cmake --build --preset release
    cd - >/dev/null
fi
if [[ $backend == vireo ]]; then
    bin=$(vireo_bin) || vireo_die "no vireo binary after the build"
    echo "vireo: $bin"
fi

step "guest image (User-mode Linux $(uname -m), busybox + fio + e2fsprogs from Debian)"
guest_img=$(bash "$VIREO_ROOT/scripts/build-guest.sh" uml)
echo "cached: $guest_img"

step "disk image"
mkdir -p "$(dirname "$image")"
if ((fresh)) || [[ ! -f $image ]]; then
    rm -f "$image"
    truncate -s "${size_mib}M" "$image"
    echo "created $image (${size_mib} MiB, sparse)"
else
    echo "reusing $image ($(du -h --apparent-size "$image" | cut -f1), files from earlier runs are kept)"
fi

vireo_new_workdir demo
W=$VIREO_WORKDIR
cleanup() {
    vireo_guest_stop
    vireo_backend_stop
    rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "starting the back end: $backend"
vireo_backend_start "$backend" "$image" "$W/vhost.sock" "$W/backend.log" ||
    vireo_die "the back end did not start"
if [[ $backend == vireo ]]; then
    echo "$bin blk --socket-path $W/vhost.sock --image $image   (pid $(vireo_backend_process))"
else
    echo "qemu-storage-daemon ... --export type=vhost-user-blk,addr.path=$W/vhost.sock (pid $(vireo_backend_process))"
fi

cat >"$W/workload.sh" <<'GUEST'
say() { echo "guest: $*"; }
say "kernel $(uname -r), disk /dev/vda: $(($($BLOCKDEV --getsize64 /dev/vda) >> 20)) MiB over vhost-user-blk"
if mount -t ext4 /dev/vda /mnt 2>/dev/null; then
    say "mounted the existing ext4 file system"
else
    say "no file system yet: mkfs.ext4 /dev/vda"
    $MKFS_EXT4 -q -F -L vireo-demo /dev/vda || { vt_fail mkfs; exit 1; }
    mount -t ext4 /dev/vda /mnt || { vt_fail mount; exit 1; }
fi
# Files of earlier runs must still match the checksums written with them.
for sums in /mnt/run-*/SHA256SUMS; do
    [ -f "$sums" ] || continue
    d=${sums%/SHA256SUMS}
    if (cd "$d" && sha256sum -c -s SHA256SUMS); then
        say "earlier run ${d#/mnt/}: all checksums OK"
    else
        vt_fail "earlier run ${d#/mnt/} corrupted"
    fi
done
n=1
while [ -d /mnt/run-$n ]; do n=$((n + 1)); done
run=/mnt/run-$n
mkdir -p $run
say "writing $run: 8 files of random data (64 KiB to 8 MiB) and a text file"
for i in 1 2 3 4 5 6 7 8; do
    kib=$((64 << (i - 1)))
    [ $kib -gt 8192 ] && kib=8192
    $DD if=/dev/urandom of=$run/data-$i.bin bs=64k count=$((kib / 64)) status=none
done
echo "written by run $n, $(date)" >$run/hello.txt
(cd $run && sha256sum data-*.bin hello.txt >SHA256SUMS)
sync
say "sync done; dropping the page cache and re-reading everything from the disk"
echo 3 >/proc/sys/vm/drop_caches
if (cd $run && sha256sum -c -s SHA256SUMS); then
    vt_pass checksums-run-$n
else
    vt_fail checksums-run-$n
fi
say "checksums of $run:"
sed 's/^/    /' $run/SHA256SUMS
say "file system:"
ls -l $run | sed 's/^/    /'
df -h /mnt | sed 's/^/    /'
umount /mnt
say "unmounted; powering off"
GUEST

step "booting the UML guest against $W/vhost.sock"
ok=1
vireo_guest_run uml "$W/workload.sh" "$W/guest.log" --disk "$W/vhost.sock" --timeout 180 2>/dev/null || ok=0
tr -d '\r' <"$W/guest.log" | grep -E '^(guest:|    |VIREO-TEST)' || true
vireo_backend_stop
((ok)) || {
    tail -n 30 "$W/guest.log" >&2
    tail -n 20 "$W/backend.log" >&2
    vireo_die "the guest workload failed"
}

step "back on the host: e2fsck -fn and debugfs on $image"
if ! e2fsck -fn "$image" >"$W/fsck.log" 2>&1; then
    sed 's/^/    /' "$W/fsck.log"
    vireo_die "e2fsck found problems in $image"
fi
tail -n 1 "$W/fsck.log" | sed 's/^/    /'
debugfs -R "ls -l /" "$image" 2>/dev/null | sed 's/^/    /'
step "done: a real Linux guest used a disk served by $backend"
