#!/usr/bin/env bash
# Network benchmark (not a test: it prints a table and asserts nothing about speed). One run
# measures, side by side, TCP streams (busybox nc + dd in the guests, socat on the host) over:
#
#   switch  two UML guests on vireo's built-in L2 switch (`vireo run`, two net devices),
#           guest → guest.
#   tap     a UML guest on `vireo net --tap` (virtio_uml → vhost-user → vireo → TAP), to and
#           from a listener on the host side of the TAP.
#   qemu    a QEMU (TCG) guest with the same virtio-net-pci device (vectors=0, see below) on a TAP,
#           to and from the same host listener, through two back ends:
#             qemu-builtin  -netdev tap,vhost=off: QEMU's own user-space virtio-net and TAP code
#             vireo         -netdev vhost-user → `vireo net --tap`
#           and, only when /dev/vhost-net exists (it does not on the machine this was written
#           on, so that row has never been run), -netdev tap,vhost=on (the kernel's vhost-net).
#
# Each direction is run at MTU 1500 (full frames; with TSO/GSO the kernels may still merge them into
# bigger frames — the packet count is what the receiving interface counts) and MTU 68 (IPv4's
# minimum: ~16 bytes of TCP payload in 82-byte frames; a smaller stream, --mib-small). The TAP's
# host side gets the guest's MTU too. One guest boot per back end runs all of its streams.
#
# Columns:
#   throughput  bytes / time measured at the receiver, from its first byte to EOF (the host's
#               clock for guest → host, the receiving guest's /proc/uptime otherwise)
#   packets     rx_packets of the receiving interface over the stream (guest → host: the TAP's
#               host side, i.e. frames the back end wrote to the TAP; host → guest and switch: the
#               receiving guest's interface)
#   back-end CPU/packet, CPU/MiB  utime+stime (/proc/.../stat, in ticks of 1/CLK_TCK s, usually
#               10 ms: rows with only a few ticks are coarse) of the back end over the stream:
#               vireo: the whole vireo process (all its threads).
#               qemu-builtin: QEMU's main-loop thread only (/proc/PID/task/PID/stat, the thread
#               whose tid == pid). That is where QEMU's user-space virtio-net moves packets: it
#               reads the TAP fd from its event loop and fills the RX ring there, and the TX bottom
#               half that drains the TX ring and writes to the TAP runs there too. The vCPU thread
#               ("CPU 0/TCG") is the guest, so it is left out; under TCG the guest's queue kick is
#               handled in the vCPU thread, which therefore hides a little of QEMU's device cost.
#               qemu-vhost-net: the main-loop thread plus the vhost-PID kernel worker(s).
#               For QEMU + vireo, QEMU's main loop is not on the data path; only vireo is counted.
#   A stream that does not end within --stream-limit seconds is reported as stalled, and the rest
#   of that guest's streams as not run (the guest is stopped), so one hang cannot eat the budget.
#   (Seen, rarely: the UML guest's MTU-68 stream to the host, 2 of ~25 runs; both rings were idle
#   and healthy, the host kept ACKing and the guest kept retransmitting data 12 KB behind that ACK.
#   Cause not found. QEMU's stalls were TCG's, see -smp below.)
#
# Why vectors=0: Debian's QEMU 7.2 segfaults (vhost_net_start → msix_set_vector_notifiers) when the
# guest's virtio-net uses MSI-X with a vhost-user back end (see tests/e2e/net_qemu_uml.sh), so the
# vhost-user device runs with INTx; the built-in runs get the same device options, for fairness.
# QEMU runs under TCG (as everywhere in vireo's guest tooling) with -smp 1,maxcpus=2 (see
# tap_qemu_run for why), so the QEMU guest is slow and its throughput says more about TCG than
# about the back end; CPU per packet is the comparable number.
# The machine may be busy (2 cores): compare rows of one run, not across runs.
#
# Usage: bench/net_bench.sh [--vireo-bin PATH] [--mib N] [--mib-small N] [--qemu-mib N]
#          [--qemu-mib-small N] [--paths "switch tap qemu"] [--mtus "1500 68"] [--stream-limit S]
#   --mib/--mib-small            MiB per stream for UML guests at MTU 1500 / 68 (default 64 / 2)
#   --qemu-mib/--qemu-mib-small  the same for the QEMU guest (default 32 / 1; TCG is slow)
#   --paths     any of switch, tap, qemu (= qemu-builtin and qemu-vireo), qemu-builtin, qemu-vireo
#   --mtus      1500 and/or 68
#   --stream-limit  seconds a stream may take once it has begun (default 120)
# Needs root (network namespace, TAP), socat, and the guest images scripts/build-guest.sh builds
# (cached in ~/.cache/vireo). Everything it creates (namespace, TAP, processes) goes away on exit.
# The whole run takes about 2-4 minutes on a busy 2-core machine, mostly the QEMU (TCG) guests.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
MIB=64
MIB_SMALL=2
QEMU_MIB=32
QEMU_MIB_SMALL=1
PATHS="switch tap qemu"
MTUS="1500 68"
STREAM_LIMIT=120
args=()
while (($#)); do
    case $1 in
    --mib) MIB=$2; shift 2 ;;
    --mib-small) MIB_SMALL=$2; shift 2 ;;
    --qemu-mib) QEMU_MIB=$2; shift 2 ;;
    --qemu-mib-small) QEMU_MIB_SMALL=$2; shift 2 ;;
    --paths) PATHS=$2; shift 2 ;;
    --mtus) MTUS=$2; shift 2 ;;
    --stream-limit) STREAM_LIMIT=$2; shift 2 ;;
    -h | --help) sed -n '2,/^set/p' "$0" | sed '$d; /^# shellcheck/d; s/^# \{0,1\}//'; exit 0 ;;
    *) args+=("$1"); shift ;;
    esac
done
set -- "${args[@]}"
for mtu in $MTUS; do
    [[ $mtu == 1500 || $mtu == 68 ]] || { echo "--mtus: 1500 and/or 68" >&2; exit 2; }
done
# shellcheck source=../tests/e2e/lib.sh
source "$here/../tests/e2e/lib.sh"
# shellcheck source=../tests/e2e/devices_lib.sh
source "$here/../tests/e2e/devices_lib.sh"
dev_init "$@"
command -v socat >/dev/null || vireo_die "socat not found (apt-get install socat)"
command -v bc >/dev/null || vireo_die "bc not found"

TICK=$(getconf CLK_TCK)
results=()
NS=
TAP=vbtap0
HOST_IP=10.1.0.1
GUEST_IP=10.1.0.2
MAC=52:54:00:00:03:02

# The namespace (and with it the TAP) and whatever still runs in it go first, then lib.sh's
# cleanup (guests, vireo, work directory).
# shellcheck disable=SC2317 # run by the EXIT trap
bench_cleanup() {
    local rc=$?
    set +e  # best effort: one failing step must not stop the rest of the cleanup
    if [[ -n $NS ]]; then
        ip netns pids "$NS" 2>/dev/null | while read -r p; do kill -KILL "$p" 2>/dev/null || true; done
        ip netns del "$NS" 2>/dev/null || true
    fi
    dev_cleanup "$rc"
}
trap bench_cleanup EXIT

# add_row PATH BACKEND MTU DIRECTION MIB BYTES SECONDS PACKETS TICKS [NOTE] — one line of the
# table; an empty measurement (a stream that failed) prints as n/a, and NOTE says why.
add_row() {
    local path=$1 be=$2 mtu=$3 dir=$4 mib=$5 bytes=$6 secs=$7 pk=$8 ticks=$9 note=${10:-}
    local tput=n/a per_pk=n/a per_mib=n/a
    if [[ -n $bytes && -n $secs && $secs != 0 ]]; then
        tput=$(printf '%.1f MB/s' "$(echo "$bytes / $secs / 1000000" | bc -l)")
        ((bytes == mib << 20)) || note="${note:+$note; }got $bytes of $((mib << 20)) bytes"
    fi
    if [[ -n $pk && -n $ticks && $pk != 0 ]]; then
        per_pk=$(printf '%.2f µs' "$(echo "$ticks * 1000000 / $TICK / $pk" | bc -l)")
    fi
    if [[ -n $bytes && -n $ticks && $bytes != 0 ]]; then
        per_mib=$(printf '%.1f ms' "$(echo "$ticks * 1000 / $TICK / ($bytes / 1048576)" | bc -l)")
    fi
    results+=("$(printf '| %-25s | %-12s | %4s | %-12s | %4s MiB | %12s | %8s | %10s | %9s | %s |' \
        "$path" "$be" "$mtu" "$dir" "$mib" "$tput" "${pk:-n/a}" "$per_pk" "$per_mib" "$note")")
}

# ---------------------------------------------------------------------------------------------
# switch: A sends $2 MiB to B at MTU $1 through vireo's switch.
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
cs() { read -r u _ </proc/uptime; echo \$((\${u%.*} * 100 + 1\${u#*.} - 100)); }
rxp() { cat /sys/class/net/\$dev/statistics/rx_packets; }
# The receiver's clock, from the first byte (dd reads exactly one) to EOF.
nc -l -p 9000 | {
    \$DD bs=1 count=1 of=/dev/null status=none
    p0=\$(rxp)
    t0=\$(cs)
    n=\$(wc -c)
    t1=\$(cs)
    vt_value rx_packets \$((\$(rxp) - p0))
    vt_value rx_bytes \$((n + 1))
    vt_value ms \$(( (t1 - t0) * 10 ))
}
GUEST
    } >"$W/b.sh"
    {
        echo "$DEV_GUEST_NET_PRELUDE"
        cat <<GUEST
dev=\$(net_up 10.9.0.1/24); ip link set \$dev mtu $mtu
ping_until 10.9.0.2 60
echo BENCH-START
for i in \$(seq 1 60); do
    \$DD if=/dev/zero bs=64k count=$((mib * 16)) status=none | nc 10.9.0.2 9000 && break
    sleep 0.5
done
GUEST
    } >"$W/a.sh"
    dev_vireo "$W/vireo.log" "$W/a.sock" "$W/b.sock" -- run "$W/vireo.json"
    local vp
    vp=$(dev_vireo_process)
    # The previous run's logs hold the markers waited for below: they must not count.
    rm -f "$W/guest-a.log" "$W/guest-b.log"
    dev_guest_bg b uml "$W/b.sh" --uml-arg "virtio_uml.device=$W/b.sock:1" --mem 256 --timeout 200
    dev_guest_bg a uml "$W/a.sh" --uml-arg "virtio_uml.device=$W/a.sock:1" --mem 256 --timeout 200
    local c0 c1
    for _ in $(seq 1 600); do
        grep -q BENCH-START "$W/guest-a.log" 2>/dev/null && break
        sleep 0.1
    done
    # The CPU window: from the sender's start to the receiver's EOF.
    c0=$(vireo_backend_cpu_ticks "$vp")
    wait_log "$W/guest-b.log" "^VIREO-VALUE: ms=" "$STREAM_LIMIT" || true
    c1=$(vireo_backend_cpu_ticks "$vp")
    dev_guest_wait a >/dev/null 2>&1 || true
    dev_guest_wait b >/dev/null 2>&1 || true
    dev_vireo_stop
    local ms pk bytes
    ms=$(dev_value b ms)
    pk=$(dev_value b rx_packets)
    bytes=$(dev_value b rx_bytes)
    add_row "switch (UML↔UML)" vireo "$mtu" "guest→guest" "$mib" "$bytes" \
        "$([[ -n $ms ]] && echo "$ms / 1000" | bc -l)" "$pk" "$((c1 - c0))" \
        "$([[ -n $ms ]] || echo "no result from the receiver")"
}

# ---------------------------------------------------------------------------------------------
# TAP runs. One guest boot per back end runs four streams: for MTU 1500 then 68, guest → host and
# then host → guest. The host and the guest pace each other through the streams themselves:
#   guest → host: the host opens the listener for a phase only when it is ready for it (TAP MTU
#     set); the guest retries connecting until it is there.
#   host → guest: the guest prints BENCH-READY-<mtu> and listens; the host's socat retries
#     connecting; the guest prints its measurement when the stream ends.

# BACKEND_STATS: /proc paths (without /stat) whose utime+stime are the back end's CPU.
BACKEND_STATS=()
backend_cpu() {
    local s sum=0 t
    for s in "${BACKEND_STATS[@]}"; do
        t=$(vireo_backend_cpu_ticks "$s") || return 1
        sum=$((sum + t))
    done
    echo "$sum"
}

tap_stat() { ip netns exec "$NS" cat "/sys/class/net/$TAP/statistics/$1"; }

# tap_create [multi_queue] — the TAP in the namespace with the host's address. vireo opens it with
# IFF_MULTI_QUEUE, QEMU's tap netdev (one queue) without, and the kernel wants the flag to match
# the device's.
tap_create() {
    ip -n "$NS" tuntap add dev "$TAP" mode tap "$@"
    ip -n "$NS" addr add "$HOST_IP/24" dev "$TAP"
    ip -n "$NS" link set "$TAP" up
}
tap_delete() { ip -n "$NS" link del "$TAP" 2>/dev/null || true; }

# wait_log FILE PATTERN SECONDS — true once a line of FILE matches PATTERN (grep -E).
wait_log() {
    local i
    for ((i = 0; i < $3 * 20; i++)); do
        tr -d '\r' <"$1" 2>/dev/null | grep -qE "$2" && return 0
        sleep 0.05
    done
    return 1
}

# host_receive PORT SECONDS — accept one stream on the host side of the TAP (waiting at most
# SECONDS for it to begin) and print "bytes seconds packets ticks", measured from its first byte
# to its EOF; "stalled" if it did not end within STREAM_LIMIT seconds; nothing if nothing came.
host_receive() {
    local port=$1 limit=$2 rpid
    local fifo=$W/rx-$port.fifo
    rm -f "$fifo"
    mkfifo "$fifo"
    timeout "$((limit + STREAM_LIMIT))" ip netns exec "$NS" socat -u "TCP-LISTEN:$port,reuseaddr" STDOUT >"$fifo" &
    rpid=$!
    {
        local first t0 t1 c0 c1 p0 p1 n
        # dd reads exactly one byte from the pipe: the clock starts when the data does.
        first=$(dd bs=1 count=1 status=none | wc -c)
        if ((first == 1)); then
            t0=$EPOCHREALTIME
            c0=$(backend_cpu)
            p0=$(tap_stat rx_packets)
            if n=$(timeout "$STREAM_LIMIT" wc -c); then
                t1=$EPOCHREALTIME
                c1=$(backend_cpu)
                p1=$(tap_stat rx_packets)
                echo "$((n + 1)) $(echo "$t1 - $t0" | bc -l) $((p1 - p0)) $((c1 - c0))"
            else
                echo stalled
            fi
        fi
    } <"$fifo"
    kill "$rpid" 2>/dev/null || true
    wait "$rpid" 2>/dev/null || true
    rm -f "$fifo"
}

# The guest side of a TAP run (busybox sh; MIB_1500 and MIB_68 come from --env).
tap_guest_script() {
    echo "$DEV_GUEST_NET_PRELUDE"
    cat <<GUEST
dev=\$(net_up $GUEST_IP/24) && vt_pass link-up || vt_fail link-up
ping_until $HOST_IP 90 && vt_pass ping-host || vt_fail ping-host
cs() { read -r u _ </proc/uptime; echo \$((\${u%.*} * 100 + 1\${u#*.} - 100)); }
rxp() { cat /sys/class/net/\$dev/statistics/rx_packets; }
for mtu in $MTUS; do
    eval mib=\\\$MIB_\$mtu
    ip link set \$dev mtu \$mtu
    sent=0
    for i in \$(seq 1 600); do
        if \$DD if=/dev/zero bs=64k count=\$((mib * 16)) status=none | nc $HOST_IP \$((6000 + mtu)); then
            sent=1
            break
        fi
        sleep 0.2
    done
    [ \$sent = 1 ] && vt_pass send-\$mtu || vt_fail send-\$mtu
    echo BENCH-READY-\$mtu
    nc -l -p \$((7000 + mtu)) | {
        \$DD bs=1 count=1 of=/dev/null status=none
        p0=\$(rxp)
        t0=\$(cs)
        n=\$(wc -c)
        t1=\$(cs)
        echo "VIREO-VALUE: h2g_\$mtu=\$((n + 1)) \$(( (t1 - t0) * 10 )) \$((\$(rxp) - p0))"
    }
done
# QEMU exits with the guest, and the host reads the CPU time of QEMU's main loop after the
# last value: give it time to.
sleep 5
GUEST
}

# tap_phases PATH BACKEND GUEST_LOG MIB_1500 MIB_68 — drive the streams of a booted guest. A stream
# that fails or stalls ends the guest's run (its later rows say so): returns 1.
tap_phases() {
    local path=$1 be=$2 log=$3 mtu mib r rp c0 c1 first=1 bytes secs pk ticks ms failed="" note
    local -A mibs=([1500]=$4 [68]=$5)
    for mtu in $MTUS; do
        mib=${mibs[$mtu]}
        if [[ -n $failed ]]; then
            add_row "$path" "$be" "$mtu" "guest→host" "$mib" "" "" "" "" "not run: $failed"
            add_row "$path" "$be" "$mtu" "host→guest" "$mib" "" "" "" "" "not run: $failed"
            continue
        fi
        ip -n "$NS" link set "$TAP" mtu "$mtu"
        # The first listener also waits for the guest to boot (QEMU/TCG takes a while).
        # In the background, so a signal's trap (cleanup) runs at once, not after it; and if the
        # guest ends without connecting (it failed), an empty connection releases the listener.
        host_receive $((6000 + mtu)) $((first ? 300 : 120)) >"$W/rx.out" &
        rp=$!
        while kill -0 "$rp" 2>/dev/null; do
            if tr -d '\r' <"$log" 2>/dev/null | grep -q '^VIREO-EXIT:'; then
                ip netns exec "$NS" socat -u /dev/null "TCP:$HOST_IP:$((6000 + mtu))" 2>/dev/null || true
                break
            fi
            sleep 0.2
        done
        wait "$rp" || true
        r=$(cat "$W/rx.out")
        first=0
        bytes="" secs="" pk="" ticks="" note=""
        case ${r:-} in
        "") note="no stream arrived" ;;
        stalled) note="stalled: no EOF within ${STREAM_LIMIT}s" ;;
        *) read -r bytes secs pk ticks <<<"$r" ;;
        esac
        add_row "$path" "$be" "$mtu" "guest→host" "$mib" "$bytes" "$secs" "$pk" "$ticks" "$note"
        vireo_log "$path $be MTU $mtu guest→host: ${r:-nothing received}"
        [[ -z $note ]] || failed="MTU $mtu guest→host: $note"

        bytes="" secs="" pk="" ticks="" note=""
        if [[ -n $failed ]]; then
            note="not run: $failed"
        elif ! wait_log "$log" "^BENCH-READY-$mtu\$" 60; then
            note="the guest did not get ready"
        else
            c0=$(backend_cpu) || c0=
            dd if=/dev/zero bs=64k count=$((mib * 16)) status=none |
                timeout $((60 + STREAM_LIMIT)) ip netns exec "$NS" socat -u STDIN \
                    "TCP:$GUEST_IP:$((7000 + mtu)),retry=600,interval=0.1" &
            wait $! || true
            # The guest prints its count at EOF, which follows socat's last write at once,
            # unless the stream stalled.
            if wait_log "$log" "^VIREO-VALUE: h2g_$mtu=" 30; then
                c1=$(backend_cpu) || c1=
                read -r bytes ms pk <<<"$(vireo_guest_value "$log" "h2g_$mtu")"
                secs=$(echo "$ms / 1000" | bc -l)
                [[ -n $c0 && -n $c1 ]] && ticks=$((c1 - c0))
            else
                note="stalled: the guest saw no EOF"
            fi
        fi
        add_row "$path" "$be" "$mtu" "host→guest" "$mib" "$bytes" "$secs" "$pk" "$ticks" "$note"
        vireo_log "$path $be MTU $mtu host→guest: ${bytes:-n/a} bytes ${secs:-n/a} s ${pk:-n/a} packets ${ticks:-n/a} ticks ${note}"
        [[ -n $failed || -z $note ]] || failed="MTU $mtu host→guest: $note"
    done
    [[ -z $failed ]]
}

# The namespace, and wrappers that run vireo and QEMU inside it (they open the TAP there; the
# vhost-user socket is a path, so guests outside reach it).
ns_setup() {
    NS=vireo-bench-$$
    ip netns add "$NS"
    ip -n "$NS" link set lo up
    local real
    real=$(vireo_bin) || vireo_die "vireo binary not found"
    printf '#!/bin/sh\nexec ip netns exec %s %s "$@"\n' "$NS" "$real" >"$W/vireo-in-ns"
    chmod +x "$W/vireo-in-ns"
    mkdir -p "$W/ns-bin"
    printf '#!/bin/sh\nexec ip netns exec %s %s "$@"\n' "$NS" "$(command -v qemu-system-x86_64)" \
        >"$W/ns-bin/qemu-system-x86_64"
    chmod +x "$W/ns-bin/qemu-system-x86_64"
}

# vireo_net_in_ns SOCKET — `vireo net --tap` in the namespace; sets BACKEND_STATS to vireo.
vireo_net_in_ns() {
    VIREO_BIN=$W/vireo-in-ns dev_vireo "$W/vireo-tap.log" "$1" -- \
        net --socket-path "$1" --tap "$TAP" --mac "$MAC"
    local vp
    vp=$(dev_vireo_process) || vireo_die "vireo did not start"
    BACKEND_STATS=("$vp")
}

# find_qemu ROOT_PID — the PID of the qemu-system-x86_64 process below ROOT_PID (a guest's
# background subshell); the wrapper and `ip netns exec` exec into it, so the PID does not change.
find_qemu() {
    local i p queue
    for ((i = 0; i < 600; i++)); do
        queue=("$1")
        while ((${#queue[@]})); do
            p=${queue[0]}
            queue=("${queue[@]:1}")
            if [[ $(cat "/proc/$p/comm" 2>/dev/null) == qemu-system-x86* ]]; then
                echo "$p"
                return 0
            fi
            # shellcheck disable=SC2207 # PIDs: one word each
            queue+=($(cat "/proc/$p/task/$p/children" 2>/dev/null))
        done
        sleep 0.1
    done
    return 1
}

# guest_end NAME STATUS — wait for a guest whose streams all ran (it powers off by itself), or
# stop one whose run was cut short (it may wait forever on a stalled stream).
guest_end() {
    if (($2 == 0)); then
        dev_guest_wait "$1" >/dev/null 2>&1 || true
    else
        vireo_log "stopping guest $1 (log: $W/guest-$1.log)"
        dev_kill_subshell "${dev_guest_pids[$1]}"
        unset "dev_guest_pids[$1]"
    fi
}

tap_uml_run() {
    tap_create multi_queue
    vireo_net_in_ns "$W/tap.sock"
    tap_guest_script >"$W/tap-uml.sh"
    rm -f "$W/guest-tu.log"
    dev_guest_bg tu uml "$W/tap-uml.sh" --uml-arg "virtio_uml.device=$W/tap.sock:1" --mem 256 \
        --timeout 400 --env "MIB_1500=$MIB" --env "MIB_68=$MIB_SMALL" --env "MTUS=$MTUS"
    local ok=0
    tap_phases "TAP (UML virtio_uml)" vireo "$W/guest-tu.log" "$MIB" "$MIB_SMALL" || ok=$?
    guest_end tu "$ok"
    dev_vireo_stop
    tap_delete
}

# tap_qemu_run KIND — KIND: builtin (tap, vhost=off), vhost-net (tap, vhost=on) or vireo.
tap_qemu_run() {
    local kind=$1 netdev be
    local dev=virtio-net-pci,netdev=n0,mac=$MAC,vectors=0
    local qargs=()
    case $kind in
    builtin | vhost-net)
        tap_create
        netdev=tap,id=n0,ifname=$TAP,script=no,downscript=no,vhost=off
        be=qemu-builtin
        [[ $kind == vhost-net ]] && netdev=${netdev/vhost=off/vhost=on} be=qemu-vhost-net
        qargs=(--qemu-arg -netdev --qemu-arg "$netdev")
        ;;
    vireo)
        tap_create multi_queue
        vireo_net_in_ns "$W/tapq.sock"
        be=vireo
        # shellcheck disable=SC2054 # the commas are QEMU's option syntax
        qargs=(--qemu-arg -chardev --qemu-arg "socket,id=cn,path=$W/tapq.sock"
            --qemu-arg -netdev --qemu-arg vhost-user,id=n0,chardev=cn)
        ;;
    esac
    tap_guest_script >"$W/tap-qemu.sh"
    rm -f "$W/guest-tq.log" # the previous QEMU run's markers must not count
    # The tap netdevs need QEMU in the namespace (the wrapper first on PATH); vhost-user does not.
    local path=$PATH
    [[ $kind == vireo ]] || path=$W/ns-bin:$PATH
    # scripts/lib/guest.sh boots QEMU with maxcpus=2 (still one vCPU): QEMU 7.2 TCG drops the
    # guest's memory barriers with a single possible CPU, and the guest's store avail.idx /
    # fence / load avail_event handshake with vireo (§2.7.10) then loses kicks for good (with
    # -smp 1 the MTU-68 stream stalled in 5 of 11 runs: avail.idx 40655 and growing, vireo's
    # avail_event 40612 = used.idx, no kick). 512 MiB: with maxcpus=2 the initramfs does not
    # unpack in 256 MiB.
    PATH=$path dev_guest_bg tq qemu "$W/tap-qemu.sh" --mem 512 --timeout 600 \
        --env "MIB_1500=$QEMU_MIB" --env "MIB_68=$QEMU_MIB_SMALL" --env "MTUS=$MTUS" \
        "${qargs[@]}" --qemu-arg -device --qemu-arg "$dev"
    local qp
    # shellcheck disable=SC2154 # dev_guest_pids: devices_lib.sh
    if ! qp=$(find_qemu "${dev_guest_pids[tq]}"); then
        vireo_log "QEMU ($kind) did not start"
        local m
        for m in $MTUS; do
            add_row "TAP (QEMU virtio-net-pci)" "$be" "$m" "guest→host" "" "" "" "" "" "QEMU did not start"
            add_row "TAP (QEMU virtio-net-pci)" "$be" "$m" "host→guest" "" "" "" "" "" "QEMU did not start"
        done
        dev_guest_wait tq >/dev/null 2>&1 || true
        tap_delete
        return 0
    fi
    case $kind in
    builtin) BACKEND_STATS=("$qp/task/$qp") ;;
    vhost-net)
        # The kernel's vhost workers are named vhost-<QEMU's PID> and exist once the guest's
        # driver has started the device
        BACKEND_STATS=("$qp/task/$qp")
        # (kernel threads before Linux 6.4, threads of QEMU's own process since).
        local i k t
        for ((i = 0; i < 600; i++)); do
            for k in $(pgrep -x "vhost-$qp"); do BACKEND_STATS+=("$k"); done
            for t in "/proc/$qp/task/"*; do
                [[ $(cat "$t/comm" 2>/dev/null) == vhost-* ]] && BACKEND_STATS+=("$qp/task/${t##*/}")
            done
            ((${#BACKEND_STATS[@]} > 1)) && break
            sleep 0.2
        done
        ;;
    esac
    local ok=0
    tap_phases "TAP (QEMU virtio-net-pci)" "$be" "$W/guest-tq.log" "$QEMU_MIB" "$QEMU_MIB_SMALL" || ok=$?
    guest_end tq "$ok"
    [[ $kind != vireo ]] || dev_vireo_stop
    tap_delete
}

for p in $PATHS; do
    case $p in
    switch)
        for mtu in $MTUS; do
            if ((mtu == 1500)); then switch_run "$mtu" "$MIB"; else switch_run "$mtu" "$MIB_SMALL"; fi
        done
        ;;
    tap)
        [[ -n $NS ]] || ns_setup
        tap_uml_run
        ;;
    qemu | qemu-builtin | qemu-vireo)
        [[ -n $NS ]] || ns_setup
        [[ $p == qemu-vireo ]] || tap_qemu_run builtin
        if [[ $p == qemu-vireo ]]; then
            :
        elif [[ -c /dev/vhost-net ]]; then
            tap_qemu_run vhost-net
        else
            vireo_log "no /dev/vhost-net: QEMU's vhost-net row is not run"
        fi
        [[ $p == qemu-builtin ]] || tap_qemu_run vireo
        ;;
    *) vireo_die "unknown path '$p' (switch, tap, qemu, qemu-builtin, qemu-vireo)" ;;
    esac
done

echo
echo "| path | back end | MTU | direction | data | throughput | packets (rx) | back-end CPU/packet | back-end CPU/MiB | note |"
echo "|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${results[@]}"
e2e_finish
