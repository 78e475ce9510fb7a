#!/usr/bin/env bash
# Two request queues, QEMU guest with 2 vCPUs only: the back end serves --queues 2 and QEMU's
# vhost-user-blk-pci num-queues=2. The guest must see two hardware queues, two fio jobs (one
# pinned to each vCPU, so each submits on its own queue) verify their data with crc32c, and
# both queues' interrupt lines must have fired (completions on both).
# Options: see tests/e2e/lib.sh (--backend vireo|qsd --vireo-bin PATH); the guest is always QEMU.
source "$(dirname "$0")/lib.sh"
e2e_init --guest qemu "$@"

img=$(e2e_image disk 64)
cat >"$W/guest.sh" <<'GUEST'
n=$(ls -d /sys/block/vda/mq/* | wc -l)
[ "$n" = 2 ] && vt_pass two-hw-queues || vt_fail two-hw-queues "$n hardware queues"
if $FIO --name=mq --filename=/dev/vda --direct=1 --ioengine=libaio --iodepth=16 --rw=randwrite \
    --bs=4k --size=8M --numjobs=2 --offset_increment=16M --cpus_allowed=0-1 \
    --cpus_allowed_policy=split --verify=crc32c --do_verify=1 --verify_fatal=1 \
    --output-format=terse >/tmp/fio.out 2>&1; then
    vt_pass fio-two-jobs-verify
else
    cat /tmp/fio.out
    vt_fail fio-two-jobs-verify
fi
# Each request queue has its own MSI-X vector ("virtioN-req.Q"): completions signalled by the back
# end on a queue's call eventfd show up as interrupts on that queue's line.
for q in 0 1; do
    n=$(grep "req\.$q\$" /proc/interrupts | awk '{s=0; for (i=2; i<=NF; i++) if ($i ~ /^[0-9]+$/) s+=$i; print s}')
    vt_value interrupts_req$q "${n:-0}"
    [ "${n:-0}" -gt 10 ] && vt_pass queue-$q-used || vt_fail queue-$q-used "${n:-0} interrupts"
done
GUEST

e2e_backend "$img" --queues 2
e2e_guest "$W/guest.sh" --qemu-dev-opts num-queues=2 --smp 2 --timeout 180
e2e_finish
