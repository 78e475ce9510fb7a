#!/usr/bin/env bash
# Network benchmark (not a test): UML guests on vireo's switch, and a UML guest on a TAP to the
# host, with busybox nc + dd streams over TCP. Reports throughput and vireo's CPU per packet
# ((utime + stime of the vireo process) / packets counted by the receiving guest's interface).
# The frame size is set by the guests' MTU: 1500 (full frames; TSO may still merge them into
# GSO frames — the packet count is what the receiver's kernel counts) and 68 (IPv4's minimum MTU,
# ~64-byte frames plus headers; the stream is smaller, MIB_SMALL).
#   bench/net_bench.sh [--vireo-bin PATH] [--mib N] [--mib-small N]
# Needs root (netns, TAP). QEMU's built-in virtio-net+TAP path needs vhost-net/KVM to be
# comparable; under TCG here it is not run.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
MIB=64
MIB_SMALL=2
args=()
while (($#)); do
    case $1 in
    --mib) MIB=$2; shift 2 ;;
    --mib-small) MIB_SMALL=$2; shift 2 ;;
    *) args+=("$1"); shift ;;
    esac
done
set -- "${args[@]}"
source "$here/../tests/e2e/lib.sh"
source "$here/../tests/e2e/devices_lib.sh"
dev_init "$@"

TICK=$(getconf CLK_TCK)
results=()

# One run: A sends $2 MiB to B at MTU $1 through the switch.
switch_run() {
    local mtu=$1 mib=$2
    cat >"$W/vireo.json" <<JSON
{"devices": [
  {"type": "net", "socket_path": "$W/a.sock", "switch": "bench"},
  {"type": "net", "socket_path": "$W/b.sock", "switch": "bench"}
]}
JSON
    {
        echo "$DEV_GUEST_NET_PRELUDE"
        cat <<GUEST
dev=\$(net_up 10.9.0.2/24); ip link set \$dev mtu $mtu
ping_until 10.9.0.1 60
p0=\$(cat /sys/class/net/\$dev/statistics/rx_packets)
nc -l -p 9000 >/dev/null
vt_value rx_packets \$((\$(cat /sys/class/net/\$dev/statistics/rx_packets) - p0))
GUEST
    } >"$W/b.sh"
    {
        echo "$DEV_GUEST_NET_PRELUDE"
        cat <<GUEST
dev=\$(net_up 10.9.0.1/24); ip link set \$dev mtu $mtu
ping_until 10.9.0.2 60
echo BENCH-START
cs() { read -r u _ </proc/uptime; echo \$((\${u%.*} * 100 + 1\${u#*.} - 100)); }
t0=\$(cs)
for i in \$(seq 1 60); do
    \$DD if=/dev/zero bs=64k count=$((mib * 16)) status=none | nc 10.9.0.2 9000 && break
    sleep 0.5
done
vt_value ms \$(( (\$(cs) - t0) * 10 ))
GUEST
    } >"$W/a.sh"
    dev_vireo "$W/vireo.log" "$W/a.sock" "$W/b.sock" -- run "$W/vireo.json"
    local vp
    vp=$(dev_vireo_process)
    dev_guest_bg b uml "$W/b.sh" --uml-arg "virtio_uml.device=$W/b.sock:1" --mem 256 --timeout 200
    dev_guest_bg a uml "$W/a.sh" --uml-arg "virtio_uml.device=$W/a.sock:1" --mem 256 --timeout 200
    local c0 c1
    for _ in $(seq 1 600); do
        grep -q BENCH-START "$W/guest-a.log" 2>/dev/null && break
        sleep 0.1
    done
    c0=$(vireo_backend_cpu_ticks "$vp")
    dev_guest_wait a >/dev/null 2>&1 || true
    c1=$(vireo_backend_cpu_ticks "$vp")
    dev_guest_wait b >/dev/null 2>&1 || true
    dev_vireo_stop
    local ms pk
    ms=$(dev_value a ms)
    pk=$(dev_value b rx_packets)
    results+=("$(printf '| switch guest→guest | %5s | %4s MiB | %8.1f MB/s | %9s | %8.2f µs |' "$mtu" "$mib" \
        "$(echo "$mib * 1048.576 / ${ms:-1}" | bc -l)" "$pk" \
        "$(echo "($c1 - $c0) * 1000000 / $TICK / ${pk:-1}" | bc -l)")")
}

for spec in "1500 $MIB" "68 $MIB_SMALL"; do
    # shellcheck disable=SC2086
    switch_run $spec
done

echo
echo "| path | MTU | data | throughput | packets (rx) | vireo CPU/packet |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${results[@]}"
e2e_finish
