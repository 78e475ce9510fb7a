#!/usr/bin/env bash
# Discard and write-zeroes. The image starts fully allocated with random data; the guest runs
# blkdiscard on [8 MiB, 32 MiB) and blkdiscard --zeroout on [40 MiB, 48 MiB). Then:
#  - the guest reads zeroes in the zeroed-out range;
#  - on the host, the image got sparser or the discarded range reads as zeroes, the zeroed-out
#    range is zero, and every other byte is unchanged.
# Options: see tests/e2e/lib.sh (--guest uml|qemu --backend vireo|qsd --vireo-bin PATH).
source "$(dirname "$0")/lib.sh"
e2e_init "$@"

img=$(e2e_image disk 64 random)
sync "$img"
blocks_before=$(stat -c %b "$img")
block_size=$(stat -c %B "$img")
h_head=$(e2e_hash "$img" 0 8)
h_mid=$(e2e_hash "$img" 32 8)
h_tail=$(e2e_hash "$img" 48 16)

cat >"$W/guest.sh" <<'GUEST'
dmax=$(cat /sys/block/vda/queue/discard_max_bytes)
[ "$dmax" -gt 0 ] && vt_pass discard-advertised "max $dmax" || vt_fail discard-advertised "discard_max_bytes=$dmax"
vt_value write_zeroes_max "$(cat /sys/block/vda/queue/write_zeroes_max_bytes)"
vt_check blkdiscard $BLKDISCARD -o $((8 << 20)) -l $((24 << 20)) /dev/vda
vt_check blkdiscard-zeroout $BLKDISCARD -z -o $((40 << 20)) -l $((8 << 20)) /dev/vda
sync
echo 3 >/proc/sys/vm/drop_caches
z=$(head -c $((8 << 20)) /dev/zero | sha256sum | cut -d' ' -f1)
r=$($DD if=/dev/vda bs=1M skip=40 count=8 iflag=direct status=none | sha256sum | cut -d' ' -f1)
[ "$r" = "$z" ] && vt_pass guest-reads-zeroes || vt_fail guest-reads-zeroes "$r"
GUEST

e2e_backend "$img"
e2e_guest "$W/guest.sh"
e2e_stop_backend
sync "$img"
blocks_after=$(stat -c %b "$img")
freed_mib=$(((blocks_before - blocks_after) * block_size >> 20))
discarded_zero=0
[[ $(e2e_hash "$img" 8 24) == "$(e2e_zero_hash 24)" ]] && discarded_zero=1
vireo_log "discard: image allocation shrank by $freed_mib MiB; discarded range zero: $discarded_zero"
e2e_check discard-reached-image test "$freed_mib" -ge 20 -o "$discarded_zero" = 1
e2e_eq zeroout-range-zero "$(e2e_zero_hash 8)" "$(e2e_hash "$img" 40 8)"
e2e_eq head-unchanged "$h_head" "$(e2e_hash "$img" 0 8)"
e2e_eq middle-unchanged "$h_mid" "$(e2e_hash "$img" 32 8)"
e2e_eq tail-unchanged "$h_tail" "$(e2e_hash "$img" 48 16)"
e2e_finish
