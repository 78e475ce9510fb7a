#!/usr/bin/env bash
# Soak test (not in CI): a QEMU guest runs mixed fio I/O with crc32c verification against
# `vireo blk` (two queues, reconnect=1) for MINUTES (default 30), while the host SIGKILLs and
# restarts the back end every KILL_EVERY seconds (default 45). The guest loops: a verified random
# write pass, then a verified mixed read/write pass with varied block sizes and engines, on
# separate regions. Fails if any fio job reports an error or verification failure, if the guest
# dies, or if the back end fails to come back.
# Usage: scripts/soak.sh [MINUTES]   (env: KILL_EVERY, VIREO_BIN, VIREO_E2E_KEEP=1)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
VIREO_ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib/common.sh
source "$VIREO_ROOT/scripts/lib/common.sh"
# shellcheck source=scripts/lib/guest.sh
source "$VIREO_ROOT/scripts/lib/guest.sh"
# shellcheck source=scripts/lib/backend.sh
source "$VIREO_ROOT/scripts/lib/backend.sh"

minutes=${1:-30}
kill_every=${KILL_EVERY:-45}
secs=$((minutes * 60))
vireo_new_workdir soak
W=$VIREO_WORKDIR
sock=$W/vhost.sock
img=$W/disk.img
truncate -s 256M "$img"
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    local rc=$?
    vireo_guest_stop
    vireo_backend_stop
    ((rc == 0)) || tail -n 30 "$W/guest.log" "$W"/backend*.log >&2 2>/dev/null || true
    if [[ ${VIREO_E2E_KEEP:-0} == 1 ]]; then
        vireo_log "kept $W"
    else
        rm -rf "$W"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cat >"$W/guest.sh" <<'GUEST'
i=0
while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
end=$(($(date +%s) + SOAK_SECS))
common="--filename=/dev/vda --direct=1 --verify=crc32c --do_verify=1 --verify_fatal=1"
common="$common --group_reporting --output-format=terse --terse-version=3"
n=0
failed=0
while [ "$(date +%s)" -lt "$end" ]; do
    n=$((n + 1))
    if ! $FIO --name=w$n $common --offset=0 --size=32M --ioengine=libaio --iodepth=16 \
        --rw=randwrite --bs=4k >/tmp/fio.out 2>&1; then
        cat /tmp/fio.out; vt_fail "randwrite-pass-$n"; failed=1
    fi
    if ! $FIO --name=m$n $common --offset=64M --size=64M --ioengine=io_uring --iodepth=8 \
        --numjobs=1 --rw=randrw --bsrange=4k-256k >/tmp/fio.out 2>&1; then
        cat /tmp/fio.out; vt_fail "randrw-pass-$n"; failed=1
    fi
    echo "SOAK-PASS-DONE $n"
done
vt_value passes "$n"
[ "$failed" = 0 ] && vt_pass soak
GUEST

start_backend() {
    vireo_backend_start vireo "$img" "$sock" "$W/backend.log" --queues 2 ||
        vireo_die "back end did not start"
}
start_backend
vireo_log "soak: ${minutes} min, SIGKILL every ${kill_every}s, workdir $W"
vireo_guest_run qemu "$W/guest.sh" "$W/guest.log" --timeout $((secs + 120)) --smp 2 \
    --env "SOAK_SECS=$secs" \
    --qemu-arg -chardev --qemu-arg "socket,id=soak0,path=$sock,reconnect=1" \
    --qemu-arg -device --qemu-arg "vhost-user-blk-pci,chardev=soak0,num-queues=2" &
guest_job=$!

kills=0
deadline=$((SECONDS + secs))
while ((SECONDS < deadline)) && [[ -d /proc/$guest_job ]]; do
    sleep "$kill_every"
    [[ -d /proc/$guest_job ]] || break
    ((SECONDS < deadline)) || break
    pid=$(vireo_backend_process) || vireo_die "back end is gone (see $W/backend.log)"
    kill -KILL "$pid"
    wait "$vireo_backend_pid" 2>/dev/null || true
    vireo_backend_pid=
    kills=$((kills + 1))
    cp "$W/backend.log" "$W/backend-$kills.log"
    start_backend
    vireo_log "soak: back end killed and restarted ($kills); guest passes so far: $(tr -d '\r' <"$W/guest.log" | grep -c '^SOAK-PASS-DONE' || true)"
done
rc=0
wait "$guest_job" || rc=$?
passes=$(vireo_guest_value "$W/guest.log" passes || echo 0)
vireo_log "soak: ${passes:-0} guest passes, $kills back-end kills, guest status $rc"
exit "$rc"
