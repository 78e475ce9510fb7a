#!/usr/bin/env bash
# virtio-net on a TAP: `vireo net --tap` runs in a private network namespace holding a
# multi-queue TAP whose host side has 10.1.0.1/24. A UML guest (10.1.0.2) pings the host side,
# then sends 16 MiB over TCP to a host listener (busybox nc in the namespace), sha256-checked.
# Needs root (ip netns). Options: see tests/e2e/lib.sh (--guest uml).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/devices_lib.sh"
dev_init "$@"
[[ $E2E_GUEST == uml ]] || vireo_die "net_tap runs a UML guest"
command -v ip >/dev/null || vireo_die "ip (iproute2) not found"

NS=vireo-e2e-tap-$$
TAP=vtap0
MIB=16
net_tap_cleanup() {
    local rc=$?
    ip netns pids "$NS" 2>/dev/null | while read -r p; do kill "$p" 2>/dev/null || true; done
    ip netns del "$NS" 2>/dev/null || true
    dev_cleanup "$rc"
}
trap net_tap_cleanup EXIT

ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" tuntap add dev "$TAP" mode tap multi_queue
ip -n "$NS" addr add 10.1.0.1/24 dev "$TAP"
ip -n "$NS" link set "$TAP" up

# vireo inside the namespace (it opens the TAP there); the socket is a path, so the guest
# outside reaches it.
VIREO_BIN=$(vireo_bin) || vireo_die "vireo binary not found"
real_bin=$VIREO_BIN
VIREO_BIN=$W/vireo-in-ns
printf '#!/bin/sh\nexec ip netns exec %s %s "$@"\n' "$NS" "$real_bin" >"$VIREO_BIN"
chmod +x "$VIREO_BIN"
dev_vireo "$W/vireo.log" "$W/net.sock" -- net --socket-path "$W/net.sock" --tap "$TAP" --mac 52:54:00:00:01:02

# Host listener: the first connection's bytes go to a file (bounded by the test's timeout).
# (busybox nc would stop soon after the end of its own, empty, input.)
command -v socat >/dev/null || vireo_die "socat not found (apt-get install socat)"
ip netns exec "$NS" timeout 120 socat -u TCP-LISTEN:6001,reuseaddr "OPEN:$W/rx.bin,creat,trunc" &
listener=$!

{
    echo "$DEV_GUEST_NET_PRELUDE"
    cat <<'GUEST'
dev=$(net_up 10.1.0.2/24) && vt_pass link-up "$dev" || vt_fail link-up
ping_until 10.1.0.1 30 && vt_pass ping-host || vt_fail ping-host
ping -c 5 -i 0.2 10.1.0.1 >/tmp/ping && vt_pass ping-5 || vt_fail ping-5 "$(cat /tmp/ping)"
$DD if=/dev/urandom of=/tmp/tx bs=1M count=$MIB status=none
vt_value tx_hash "$(sha256sum </tmp/tx | cut -d' ' -f1)"
sent=0
for i in $(seq 1 30); do
    if nc 10.1.0.1 6001 </tmp/tx; then sent=1; break; fi
    sleep 0.5
done
[ $sent = 1 ] && vt_pass send-to-host || vt_fail send-to-host
GUEST
} >"$W/guest.sh"

dev_guest_bg g uml "$W/guest.sh" --uml-arg "virtio_uml.device=$W/net.sock:1" --env "MIB=$MIB" --mem 256 --timeout "$DEV_UML_TIMEOUT"
dev_guest_wait g || true
# The guest's nc exits at the end of its input; give the listener a moment to drain.
for _ in $(seq 1 50); do
    [[ $(stat -c %s "$W/rx.bin") -ge $((MIB << 20)) ]] && break
    sleep 0.1
done
kill "$listener" 2>/dev/null || true
wait "$listener" 2>/dev/null || true

e2e_eq host-receives "$(dev_value g tx_hash)" "$(sha256sum <"$W/rx.bin" | cut -d' ' -f1)"
e2e_check host-sees-guest-mac grep -q 52:54:00:00:01:02 <(ip -n "$NS" neigh show dev "$TAP")
e2e_finish
