#!/usr/bin/env bash
# Crash safety of `vireo blk`: a QEMU guest (vhost-user chardev with reconnect=1) runs a write
# storm of sequence-numbered, self-checking 4 KiB blocks (O_DIRECT; each round ends with an
# fsync, i.e. a virtio FLUSH) while the host kills the back end with SIGKILL twice and restarts
# it. The guest carries on through inflight I/O tracking (GET/SET_INFLIGHT_FD). Checks:
#  - right after each kill, every slot holds the round the guest had completed (and flushed)
#    or the one in progress, byte-exact: nothing completed before a FLUSH is lost, no torn block;
#  - the guest finishes every round without an I/O error;
#  - at the end every slot holds exactly the last round: no request lost, none replayed late.
# QEMU only: UML's virtio_uml has no reconnect. Bounded at ~2 minutes.
# Options: see tests/e2e/lib.sh (--backend vireo only; --vireo-bin PATH).
source "$(dirname "$0")/lib.sh"
E2E_GUEST=qemu
e2e_init "$@"
[[ $E2E_GUEST == qemu ]] || vireo_die "crash_blk needs --guest qemu (reconnect)"

SLOTS=32
ROUNDS=14
img=$(e2e_image disk 16)

cat >"$W/guest.sh" <<'GUEST'
i=0
while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
block() { yes "vireo-crash round $1 slot $2" | head -c 4096; }
r=1
while [ "$r" -le "$ROUNDS" ]; do
    s=0
    while [ "$s" -lt "$SLOTS" ]; do
        block "$r" "$s" >/tmp/blk
        flags=""
        # The round's last write is followed by fsync: a FLUSH after every write of the round.
        [ "$s" -eq $((SLOTS - 1)) ] && flags="conv=fsync"
        if ! $DD if=/tmp/blk of=/dev/vda bs=4096 seek="$s" oflag=direct $flags status=none; then
            vt_fail "write-r$r-s$s"
        fi
        s=$((s + 1))
    done
    echo "CRASH-ROUND-DONE $r"
    r=$((r + 1))
done
vt_pass all-rounds
GUEST

# check_slots IMAGE MIN MAX — every slot is a valid block of a round in [MIN, MAX] (MIN==MAX: exact).
check_slots() {
    python3 - "$1" "$2" "$3" "$SLOTS" <<'PY'
import sys
img, lo, hi, slots = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
data = open(img, "rb").read(slots * 4096)
bad = []
for s in range(slots):
    blk = data[s * 4096:(s + 1) * 4096]
    ok = False
    for r in range(lo, hi + 1):
        line = f"vireo-crash round {r} slot {s}\n".encode()
        if blk == (line * (4096 // len(line) + 1))[:4096]:
            ok = True
            break
    if not ok:
        bad.append(f"slot {s}: {blk[:40]!r}")
if bad:
    print("\n".join(bad[:8]), file=sys.stderr)
    sys.exit(1)
PY
}

# rounds_done — the last round the guest reported (its console ends lines with CR LF).
rounds_done() {
    tr -d '\r' <"$W/guest.log" | sed -n 's/^CRASH-ROUND-DONE \([0-9]*\)$/\1/p' | tail -1
}

# wait_round N — until the guest reports round N done (bounded: 60 s), or the guest is gone.
wait_round() {
    local i
    for ((i = 0; i < 600; i++)); do
        (($(rounds_done || echo 0) >= $1)) 2>/dev/null && return 0
        [[ -d /proc/$guest_job ]] || return 1
        sleep 0.1
    done
    return 1
}

# crash_at N — after round N: SIGKILL the back end, check the image, start a new back end.
crash_at() {
    local n=$1 pid
    e2e_check "reached-round-$n" wait_round "$n"
    pid=$(vireo_backend_process) || vireo_die "no back-end process"
    kill -KILL "$pid"
    wait "$vireo_backend_pid" 2>/dev/null || true
    vireo_backend_pid=
    # The rounds the guest has finished (each ended with a FLUSH) are all on disk; the slots of
    # the round in progress hold it or the previous one, never anything else.
    local last
    last=$(rounds_done)
    vireo_log "killed the back end after round $last"
    e2e_check "after-kill-$n-flushed-rounds-on-disk" check_slots "$img" "$last" $((last + 1))
    cp "$W/backend.log" "$W/backend-before-kill-$n.log"
    e2e_backend "$img"
}

e2e_backend "$img"
e2e_guest_bg() {
    vireo_guest_run qemu "$W/guest.sh" "$W/guest.log" --timeout 110 \
        --env "SLOTS=$SLOTS" --env "ROUNDS=$ROUNDS" \
        --qemu-arg -chardev --qemu-arg "socket,id=crash0,path=$SOCK,reconnect=1" \
        --qemu-arg -device --qemu-arg "vhost-user-blk-pci,chardev=crash0"
}
e2e_guest_bg &
guest_job=$!
crash_at 3
crash_at 8
if wait "$guest_job"; then
    echo "HOST-TEST: guest-checks PASS" >&2
else
    echo "HOST-TEST: guest-checks FAIL" >&2
    # shellcheck disable=SC2034 # read by e2e_finish (lib.sh)
    E2E_FAILED=1
fi
guest_job=
e2e_stop_backend
e2e_eq all-rounds-reported "$ROUNDS" "$(rounds_done)"
e2e_check final-image-is-last-round check_slots "$img" "$ROUNDS" "$ROUNDS"
e2e_finish
