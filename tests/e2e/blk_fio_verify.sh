#!/usr/bin/env bash
# fio with data verification in the guest, O_DIRECT:
#  - 16 MiB of 4 KiB random writes at queue depth 16 (libaio), each block verified by crc32c;
#  - 16 MiB of mixed 4-128 KiB random read/write (io_uring, QD 8), verified by crc32c.
# Options: see tests/e2e/lib.sh (--guest uml|qemu --backend vireo|qsd --vireo-bin PATH).
source "$(dirname "$0")/lib.sh"
e2e_init "$@"

img=$(e2e_image disk 64)
cat >"$W/guest.sh" <<'GUEST'
common="--filename=/dev/vda --direct=1 --verify=crc32c --do_verify=1 --verify_fatal=1 --size=16M"
common="$common --group_reporting --output-format=terse --terse-version=3"
if $FIO --name=randwrite-4k $common --offset=0 --ioengine=libaio --iodepth=16 --rw=randwrite \
    --bs=4k >/tmp/fio1.out 2>&1; then
    vt_pass fio-randwrite-4k-qd16-verify
else
    cat /tmp/fio1.out
    vt_fail fio-randwrite-4k-qd16-verify
fi
if $FIO --name=randrw-mixed $common --offset=24M --ioengine=io_uring --iodepth=8 --rw=randrw \
    --bsrange=4k-128k >/tmp/fio2.out 2>&1; then
    vt_pass fio-randrw-4k-128k-qd8-verify
else
    cat /tmp/fio2.out
    vt_fail fio-randrw-4k-128k-qd8-verify
fi
GUEST

e2e_backend "$img"
e2e_guest "$W/guest.sh" --timeout 240
e2e_finish
