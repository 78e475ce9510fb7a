#!/usr/bin/env bash
# virtio-console with MULTIPORT: `vireo console --unix P0 --port org.vireo.echo:unix:P1` and a
# UML guest (virtio_uml device id 3). A host program on each unix socket sends a line; the guest
# reads it from /dev/hvc0 (port 0, the console port) and from the port named org.vireo.echo
# (found through /sys/class/virtio-ports/*/name) and writes it back with a prefix, which the host
# must receive. Options: see tests/e2e/lib.sh (--guest uml).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/devices_lib.sh"
dev_init "$@"
[[ $E2E_GUEST == uml ]] || vireo_die "console_echo runs a UML guest"
command -v socat >/dev/null || vireo_die "socat not found (apt-get install socat)"

dev_vireo "$W/vireo.log" "$W/con.sock" "$W/p0.sock" "$W/p1.sock" -- console \
    --socket-path "$W/con.sock" --unix "$W/p0.sock" --port "org.vireo.echo:unix:$W/p1.sock"

# Host ends: each sends one line at once (it waits in the socket until the guest opens the
# port) and records what comes back; bounded by timeout.
# hvc0 is a tty: the line must come after the guest made it raw (a cooked tty would echo and
# buffer it), so that host end waits for the guest's marker on the UML console first.
(
    for _ in $(seq 1 600); do
        grep -q -e HVC0-RAW -e VIREO-EXIT "$W/guest-g.log" 2>/dev/null && break
        sleep 0.1
    done
    echo ping-hvc0
    sleep 60
) | timeout 90 socat - "UNIX-CONNECT:$W/p0.sock" >"$W/p0.out" 2>"$W/socat0.log" &
h0=$!
(echo ping-port; sleep 60) | timeout 90 socat - "UNIX-CONNECT:$W/p1.sock" >"$W/p1.out" 2>"$W/socat1.log" &
h1=$!

cat >"$W/guest.sh" <<'GUEST'
i=0
while [ ! -c /dev/hvc0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
[ -c /dev/hvc0 ] && vt_pass hvc0-present || vt_fail hvc0-present
port=
i=0
while [ -z "$port" ] && [ $i -lt 100 ]; do
    for n in /sys/class/virtio-ports/*; do
        [ "$(cat "$n/name" 2>/dev/null)" = org.vireo.echo ] && port=${n##*/}
    done
    [ -n "$port" ] || sleep 0.1
    i=$((i + 1))
done
[ -n "$port" ] && vt_pass named-port "$port" || vt_fail named-port "$(ls /sys/class/virtio-ports)"
vt_value port_name "$(cat /sys/class/virtio-ports/$port/name)"

# hvc0 is a tty: kept open, raw, no echo, so exactly our line comes back; then tell the host.
exec 3<>/dev/hvc0
stty raw -echo <&3
echo HVC0-RAW
l=$(timeout 30 head -n 1 <&3)
vt_value hvc0_in "$l"
echo "echo:$l" >&3

[ -c /dev/$port ] || mdev -s
l=$(timeout 30 head -n 1 /dev/$port)
vt_value port_in "$l"
echo "echo:$l" >/dev/$port
sleep 1
GUEST

dev_guest_bg g uml "$W/guest.sh" --uml-arg "virtio_uml.device=$W/con.sock:3" --mem 256 --timeout "$DEV_UML_TIMEOUT"
dev_guest_wait g || true
for _ in $(seq 1 30); do
    grep -q echo:ping-port "$W/p1.out" && grep -q echo:ping-hvc0 "$W/p0.out" && break
    sleep 0.1
done
kill "$h0" "$h1" 2>/dev/null || true
wait "$h0" "$h1" 2>/dev/null || true

e2e_eq guest-got-hvc0 ping-hvc0 "$(dev_value g hvc0_in | tr -d '\r')"
e2e_eq guest-got-port ping-port "$(dev_value g port_in)"
e2e_eq port-name org.vireo.echo "$(dev_value g port_name)"
e2e_check host-got-hvc0-echo grep -q echo:ping-hvc0 "$W/p0.out"
e2e_check host-got-port-echo grep -q echo:ping-port "$W/p1.out"
e2e_finish
