#!/usr/bin/env bash
# Block read/write with checksums, both directions:
#  - data the host put in the image reads back correctly in the guest (O_DIRECT);
#  - data the guest writes (O_DIRECT with 1 MiB and 4 KiB requests, and buffered + sync) is read
#    back intact in the guest after dropping caches, and is found byte-exact in the host image;
#  - the capacity the guest sees is the image size.
# Options: see tests/e2e/lib.sh (--guest uml|qemu --backend vireo|qsd --vireo-bin PATH).
source "$(dirname "$0")/lib.sh"
e2e_init "$@"

img=$(e2e_image disk 64)
head -c $((4 << 20)) /dev/urandom | dd of="$img" bs=1M seek=40 conv=notrunc status=none
host_hash=$(e2e_hash "$img" 40 4)

cat >"$W/guest.sh" <<'GUEST'
size=$($BLOCKDEV --getsize64 /dev/vda)
[ "$size" = "$EXPECT_SIZE" ] && vt_pass capacity || vt_fail capacity "got $size"

h=$($DD if=/dev/vda bs=1M skip=40 count=4 iflag=direct status=none | sha256sum | cut -d' ' -f1)
[ "$h" = "$HOST_HASH" ] && vt_pass read-host-data || vt_fail read-host-data "$h"

$DD if=/dev/urandom of=/tmp/a bs=1M count=8 status=none
$DD if=/dev/urandom of=/tmp/b bs=1M count=8 status=none
$DD if=/dev/urandom of=/tmp/c bs=1M count=8 status=none
ha=$(sha256sum </tmp/a | cut -d' ' -f1)
hb=$(sha256sum </tmp/b | cut -d' ' -f1)
hc=$(sha256sum </tmp/c | cut -d' ' -f1)
vt_value hash_a "$ha"
vt_value hash_b "$hb"
vt_value hash_c "$hc"
# a: large direct writes at 4 MiB; b: 4 KiB direct writes at 16 MiB; c: buffered, then fsync.
vt_check write-direct-1m $DD if=/tmp/a of=/dev/vda bs=1M seek=4 oflag=direct conv=fsync status=none
vt_check write-direct-4k $DD if=/tmp/b of=/dev/vda bs=4k seek=4096 oflag=direct conv=fsync status=none
vt_check write-buffered $DD if=/tmp/c of=/dev/vda bs=64k seek=448 conv=fsync status=none
sync
echo 3 >/proc/sys/vm/drop_caches

r=$($DD if=/dev/vda bs=4k skip=1024 count=2048 iflag=direct status=none | sha256sum | cut -d' ' -f1)
[ "$r" = "$ha" ] && vt_pass readback-a || vt_fail readback-a "$r"
r=$($DD if=/dev/vda bs=1M skip=16 count=8 iflag=direct status=none | sha256sum | cut -d' ' -f1)
[ "$r" = "$hb" ] && vt_pass readback-b || vt_fail readback-b "$r"
r=$($DD if=/dev/vda bs=1M skip=28 count=8 status=none | sha256sum | cut -d' ' -f1)
[ "$r" = "$hc" ] && vt_pass readback-c || vt_fail readback-c "$r"
# The untouched region is still the host's data.
h=$($DD if=/dev/vda bs=1M skip=40 count=4 iflag=direct status=none | sha256sum | cut -d' ' -f1)
[ "$h" = "$HOST_HASH" ] && vt_pass host-data-intact || vt_fail host-data-intact "$h"
GUEST

e2e_backend "$img"
e2e_guest "$W/guest.sh" --env "EXPECT_SIZE=$((64 << 20))" --env "HOST_HASH=$host_hash"
e2e_stop_backend

e2e_eq host-sees-a "$(e2e_value hash_a)" "$(e2e_hash "$img" 4 8)"
e2e_eq host-sees-b "$(e2e_value hash_b)" "$(e2e_hash "$img" 16 8)"
e2e_eq host-sees-c "$(e2e_value hash_c)" "$(e2e_hash "$img" 28 8)"
e2e_eq host-data-intact "$host_hash" "$(e2e_hash "$img" 40 4)"
e2e_eq untouched-zero "$(e2e_zero_hash 4)" "$(e2e_hash "$img" 0 4)"
e2e_finish
