#!/usr/bin/env bash
# virtio-rng over vhost-user: a QEMU guest with vhost-user-rng-pci on `vireo rng` selects the
# virtio device as its hardware RNG (/sys/class/misc/hw_random/rng_current) and reads 64 KiB
# from /dev/hwrng (not all zero, not a repeat); vireo's rate limit is exercised by the same
# read with --max-bytes-per-sec. Options: see tests/e2e/lib.sh (--guest qemu).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/devices_lib.sh"
dev_init "$@"
[[ $E2E_GUEST == qemu ]] || vireo_die "rng_read needs a QEMU guest (UML has no virtio-rng driver)"

dev_vireo "$W/vireo.log" "$W/rng.sock" -- rng --socket-path "$W/rng.sock" --max-bytes-per-sec 1000000

cat >"$W/guest.sh" <<'GUEST'
i=0
while [ ! -c /dev/hwrng ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
cur=$(cat /sys/class/misc/hw_random/rng_current)
vt_value rng_current "$cur"
case $cur in virtio_rng*) vt_pass rng-current "$cur" ;; *) vt_fail rng-current "$cur ($(cat /sys/class/misc/hw_random/rng_available))" ;; esac
$DD if=/dev/hwrng of=/tmp/r1 bs=4096 count=16 iflag=fullblock status=none && vt_pass read-hwrng || vt_fail read-hwrng
$DD if=/dev/hwrng of=/tmp/r2 bs=4096 count=16 iflag=fullblock status=none
vt_value bytes "$(wc -c </tmp/r1)"
z=$(head -c 65536 /dev/zero | sha256sum | cut -d' ' -f1)
h1=$(sha256sum </tmp/r1 | cut -d' ' -f1)
h2=$(sha256sum </tmp/r2 | cut -d' ' -f1)
[ "$h1" != "$z" ] && vt_pass not-zero || vt_fail not-zero
[ "$h1" != "$h2" ] && vt_pass not-repeated || vt_fail not-repeated
GUEST

dev_guest_bg g qemu "$W/guest.sh" --mem 512 --timeout 120 \
    --qemu-arg -chardev --qemu-arg "socket,id=rng0,path=$W/rng.sock" \
    --qemu-arg -device --qemu-arg vhost-user-rng-pci,chardev=rng0
dev_guest_wait g || true
e2e_eq bytes 65536 "$(dev_value g bytes)"
e2e_finish
