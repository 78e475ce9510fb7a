#!/usr/bin/env bash
# A read-only export: the guest sees a read-only disk (VIRTIO_BLK_F_RO), reads the host's data
# correctly, and every write is refused, even after clearing the kernel's read-only flag with
# blockdev --setrw; the host image is unchanged.
# Options: see tests/e2e/lib.sh (--guest uml|qemu --backend vireo|qsd --vireo-bin PATH).
source "$(dirname "$0")/lib.sh"
e2e_init "$@"

img=$(e2e_image disk 16 random)
host_hash=$(e2e_hash "$img" 0 16)

cat >"$W/guest.sh" <<'GUEST'
ro=$($BLOCKDEV --getro /dev/vda)
[ "$ro" = 1 ] && vt_pass reported-read-only || vt_fail reported-read-only "getro=$ro"
h=$($DD if=/dev/vda bs=1M iflag=direct status=none | sha256sum | cut -d' ' -f1)
[ "$h" = "$HOST_HASH" ] && vt_pass reads-host-data || vt_fail reads-host-data "$h"
if $DD if=/dev/zero of=/dev/vda bs=4k count=1 oflag=direct status=none 2>/dev/null; then
    vt_fail write-refused "a direct write succeeded"
else
    vt_pass write-refused
fi
$BLOCKDEV --setrw /dev/vda 2>/dev/null
if $DD if=/dev/zero of=/dev/vda bs=4k seek=8 count=1 oflag=direct status=none 2>/dev/null; then
    vt_fail write-refused-after-setrw "a direct write succeeded"
else
    vt_pass write-refused-after-setrw
fi
if mount -t ext4 -o rw /dev/vda /mnt 2>/dev/null; then umount /mnt; fi
echo 3 >/proc/sys/vm/drop_caches
h=$($DD if=/dev/vda bs=1M iflag=direct status=none | sha256sum | cut -d' ' -f1)
[ "$h" = "$HOST_HASH" ] && vt_pass data-unchanged || vt_fail data-unchanged "$h"
GUEST

e2e_backend "$img" --read-only
e2e_guest "$W/guest.sh" --env "HOST_HASH=$host_hash"
e2e_stop_backend
e2e_eq host-image-unchanged "$host_hash" "$(e2e_hash "$img" 0 16)"
e2e_finish
