#!/usr/bin/env bash
# A file system on the device: mkfs.ext4 (which also discards the whole device), mount, write
# many small files and a big one, umount, mount again, verify every checksum, umount, fsck -n.
# On the host: fsck -n of the image, and the big file's content extracted with debugfs matches.
# Options: see tests/e2e/lib.sh (--guest uml|qemu --backend vireo|qsd --vireo-bin PATH).
source "$(dirname "$0")/lib.sh"
e2e_init "$@"

img=$(e2e_image disk 128)
cat >"$W/guest.sh" <<'GUEST'
vt_check mkfs $MKFS_EXT4 -q -F -L vireo /dev/vda
vt_check mount mount -t ext4 /dev/vda /mnt
mkdir -p /mnt/small
i=0
while [ $i -lt 200 ]; do
    echo "file $i $(head -c 32 /dev/urandom | sha256sum)" >/mnt/small/f$i
    i=$((i + 1))
done
$DD if=/dev/urandom of=/mnt/big bs=1M count=12 status=none
cp /mnt/big /mnt/big.copy
vt_value big_hash "$(sha256sum </mnt/big | cut -d' ' -f1)"
(cd /mnt && find . -type f | sort | xargs sha256sum) >/tmp/sums
vt_check sync sync
vt_check umount umount /mnt
echo 3 >/proc/sys/vm/drop_caches
vt_check remount mount -t ext4 /dev/vda /mnt
n=$(cd /mnt && sha256sum -c /tmp/sums 2>&1 | grep -c ': OK$')
[ "$n" = 202 ] && vt_pass checksums-after-remount || vt_fail checksums-after-remount "$n of 202 OK"
vt_check umount-again umount /mnt
vt_check fsck $E2FSCK -fn /dev/vda
GUEST

e2e_backend "$img"
e2e_guest "$W/guest.sh" --timeout 180
e2e_stop_backend

e2e_check host-fsck e2fsck -fn "$img"
rm -f "$W/big"
debugfs -R "dump /big $W/big" "$img" >/dev/null 2>&1 || true
e2e_eq host-reads-file "$(e2e_value big_hash)" "$(sha256sum <"$W/big" 2>/dev/null | cut -d' ' -f1)"
e2e_finish
