#!/usr/bin/env bash
# The packed virtqueue layout (virtio 1.2 §2.8), QEMU guest only: the driver is offered
# packed=on; the test checks VIRTIO_F_RING_PACKED (bit 34) was negotiated, then runs checksummed
# O_DIRECT writes/reads of 1 MiB and 4 KiB and a crc32c-verified fio job at queue depth 32.
# Against qsd (whose libvhost-user has no packed ring) a missing bit 34 is only reported.
# Options: see tests/e2e/lib.sh (--backend vireo|qsd --vireo-bin PATH); the guest is always QEMU.
source "$(dirname "$0")/lib.sh"
e2e_init --guest qemu "$@"

img=$(e2e_image disk 64)
cat >"$W/guest.sh" <<'GUEST'
f=$(cat /sys/block/vda/device/features)
vt_value features "$f"
if [ "$(echo "$f" | cut -c35)" = 1 ]; then
    vt_pass packed-ring-negotiated
elif [ "$BACKEND" = qsd ]; then
    echo "note: the reference back end did not negotiate VIRTIO_F_RING_PACKED"
else
    vt_fail packed-ring-negotiated "features $f"
fi
$DD if=/dev/urandom of=/tmp/a bs=1M count=8 status=none
ha=$(sha256sum </tmp/a | cut -d' ' -f1)
vt_value hash_a "$ha"
vt_check write-4k $DD if=/tmp/a of=/dev/vda bs=4k seek=1024 oflag=direct conv=fsync status=none
r=$($DD if=/dev/vda bs=1M skip=4 count=8 iflag=direct status=none | sha256sum | cut -d' ' -f1)
[ "$r" = "$ha" ] && vt_pass readback || vt_fail readback "$r"
if $FIO --name=packed-verify --filename=/dev/vda --direct=1 --ioengine=libaio --iodepth=32 \
    --rw=randwrite --bsrange=4k-64k --offset=16M --size=16M --verify=crc32c --do_verify=1 \
    --verify_fatal=1 --output-format=terse >/tmp/fio.out 2>&1; then
    vt_pass fio-verify-qd32
else
    cat /tmp/fio.out
    vt_fail fio-verify-qd32
fi
GUEST

e2e_backend "$img"
e2e_guest "$W/guest.sh" --qemu-dev-opts packed=on --env "BACKEND=$E2E_BACKEND" --timeout 180
e2e_stop_backend
e2e_eq host-sees-data "$(e2e_value hash_a)" "$(e2e_hash "$img" 4 8)"
e2e_finish
