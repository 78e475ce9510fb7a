#!/usr/bin/env bash
# virtio-net through vireo's in-process switch, two UML guests on one `vireo run` process:
#  - each guest configures an address (busybox ip) and pings the other;
#  - 64 MiB of random data cross the switch in each direction over TCP (busybox nc), checked by
#    sha256 on both ends. Guest B serves, guest A connects (bounded retries, no fixed sleeps).
# Options: see tests/e2e/lib.sh (only --guest uml is meaningful here).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/devices_lib.sh"
dev_init "$@"
[[ $E2E_GUEST == uml ]] || vireo_die "net_switch runs UML guests only (see net_qemu_uml.sh)"

MIB=${NET_E2E_MIB:-64}
cat >"$W/vireo.json" <<JSON
{"devices": [
  {"type": "net", "socket_path": "$W/a.sock", "switch": "sw0", "mac": "52:54:00:00:00:0a"},
  {"type": "net", "socket_path": "$W/b.sock", "switch": "sw0", "mac": "52:54:00:00:00:0b"}
]}
JSON

{
    echo "$DEV_GUEST_NET_PRELUDE"
    cat <<'GUEST'
dev=$(net_up 10.0.0.2/24) && vt_pass link-up "$dev" || vt_fail link-up
vt_value mac "$(cat /sys/class/net/$dev/address)"
$DD if=/dev/urandom of=/tmp/tx bs=1M count=$MIB status=none
vt_value tx_hash "$(sha256sum </tmp/tx | cut -d' ' -f1)"
# A→B on 5001 (received and hashed here), then B→A on 5002 (served from /tmp/tx; busybox nc
# closes the connection at the end of its input).
ping_until 10.0.0.1 60 && vt_pass ping-a || vt_fail ping-a
nc -l -p 5001 >/tmp/rx
vt_value rx_bytes "$(wc -c </tmp/rx)"
vt_value rx_hash "$(sha256sum </tmp/rx | cut -d' ' -f1)"
rm -f /tmp/rx
nc -l -p 5002 </tmp/tx >/dev/null
GUEST
} >"$W/b.sh"

{
    echo "$DEV_GUEST_NET_PRELUDE"
    cat <<'GUEST'
dev=$(net_up 10.0.0.1/24) && vt_pass link-up "$dev" || vt_fail link-up
$DD if=/dev/urandom of=/tmp/tx bs=1M count=$MIB status=none
vt_value tx_hash "$(sha256sum </tmp/tx | cut -d' ' -f1)"
# B boots at the same time: wait (bounded) until it answers.
ping_until 10.0.0.2 60 && vt_pass ping-b || vt_fail ping-b
ping -c 5 -i 0.2 10.0.0.2 >/tmp/ping && vt_pass ping-5 || vt_fail ping-5 "$(cat /tmp/ping)"
vt_value ping_loss "$(sed -n 's/.* \([0-9]*\)% packet loss.*/\1/p' /tmp/ping)"
# B's listeners may not be up yet: retry the connection (nc fails at once when refused).
sent=0
t0=$(date +%s)
for i in $(seq 1 60); do
    if nc 10.0.0.2 5001 </tmp/tx; then sent=1; break; fi
    sleep 0.5
done
[ $sent = 1 ] && vt_pass send-to-b || vt_fail send-to-b
vt_value tx_seconds $(($(date +%s) - t0))
# busybox nc stops soon after the end of its own input: its stdin stays the console here.
t0=$(date +%s)
for i in $(seq 1 60); do
    sleep 0.5
    nc 10.0.0.2 5002 >/tmp/rx && [ -s /tmp/rx ] && break
done
vt_value rx_seconds $(($(date +%s) - t0))
vt_value rx_bytes "$(wc -c </tmp/rx)"
vt_value rx_hash "$(sha256sum </tmp/rx | cut -d' ' -f1)"
GUEST
} >"$W/a.sh"

dev_vireo "$W/vireo.log" "$W/a.sock" "$W/b.sock" -- run "$W/vireo.json"
t0=$(date +%s)
dev_guest_bg b uml "$W/b.sh" --uml-arg "virtio_uml.device=$W/b.sock:1" --env "MIB=$MIB" --mem 384 --timeout "$DEV_UML_TIMEOUT"
dev_guest_bg a uml "$W/a.sh" --uml-arg "virtio_uml.device=$W/a.sock:1" --env "MIB=$MIB" --mem 384 --timeout "$DEV_UML_TIMEOUT"
dev_guest_wait a || true
dev_guest_wait b || true
vireo_log "guests done in $(($(date +%s) - t0)) s; A→B $(dev_value a tx_seconds) s, B→A $(dev_value a rx_seconds) s for $MIB MiB"

e2e_eq ping-loss-0 0 "$(dev_value a ping_loss)"
e2e_eq a-to-b "$(dev_value a tx_hash)" "$(dev_value b rx_hash)"
e2e_eq b-to-a "$(dev_value b tx_hash)" "$(dev_value a rx_hash)"
e2e_eq b-mac 52:54:00:00:00:0b "$(dev_value b mac)"
e2e_finish
