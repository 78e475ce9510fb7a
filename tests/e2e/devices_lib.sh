# shellcheck shell=bash
# Helpers for the non-blk end-to-end tests (net, console, rng, vsock). Source after lib.sh:
# lib.sh's harness drives one blk back end and one guest; these tests need `vireo` with other
# subcommands (or `vireo run` with several devices) and sometimes two guests at once.
#
#   dev_vireo LOG SOCKET... -- ARGS...   start `vireo ARGS...`, wait for every SOCKET
#   dev_guest_bg NAME FLAVOUR SCRIPT [vireo_guest_run options]   boot a guest in the background
#   dev_guest_wait NAME                  wait for it; counts a failure (E2E_FAILED) if it failed
#   dev_value NAME KEY                   a value guest NAME printed (VIREO-VALUE: KEY=...)
# Everything started here is stopped by the EXIT trap (dev_cleanup, chained before lib.sh's).

dev_vireo_pid=
declare -A dev_guest_pids=()

# UML gets at most this many seconds per guest (QEMU/TCG guests take their own --timeout).
DEV_UML_TIMEOUT=${DEV_UML_TIMEOUT:-120}

dev_vireo() {
    local log=$1
    shift
    local socks=()
    while (($#)) && [[ $1 != -- ]]; do
        socks+=("$1")
        shift
    done
    shift
    local bin
    bin=$(vireo_bin) || vireo_die "vireo binary not found (set VIREO_BIN or pass --vireo-bin)"
    rm -f "${socks[@]}"
    timeout --kill-after=5 "${VIREO_BACKEND_MAX_SECONDS:-900}" "$bin" "$@" </dev/null >"$log" 2>&1 &
    dev_vireo_pid=$!
    local s
    for s in "${socks[@]}"; do
        if ! vireo_wait_for_socket "$s" "$dev_vireo_pid" 10; then
            vireo_log "vireo did not listen on $s; its log:"
            sed 's/^/    /' "$log" >&2
            return 1
        fi
    done
}

# dev_vireo_process — PID of vireo itself (the child of its `timeout`).
dev_vireo_process() {
    local c
    c=$(cat "/proc/$dev_vireo_pid/task/$dev_vireo_pid/children" 2>/dev/null) || return 1
    set -- $c
    [[ -n ${1:-} ]] || return 1
    echo "$1"
}

dev_vireo_stop() {
    vireo_kill_tree "$dev_vireo_pid"
    dev_vireo_pid=
}

dev_guest_bg() {
    local name=$1 flavour=$2 script=$3
    shift 3
    (vireo_guest_run "$flavour" "$script" "$W/guest-$name.log" "$@" >/dev/null 2>"$W/guest-$name.status") &
    dev_guest_pids[$name]=$!
}

dev_guest_wait() {
    local name=$1 rc=0
    wait "${dev_guest_pids[$name]}" || rc=$?
    unset "dev_guest_pids[$name]"
    sed "s/^/[$name] /" "$W/guest-$name.status" >&2
    if ((rc == 0)); then
        echo "HOST-TEST: guest-$name PASS" >&2
    else
        echo "HOST-TEST: guest-$name FAIL" >&2
        E2E_FAILED=1
    fi
    return "$rc"
}

dev_value() { vireo_guest_value "$W/guest-$1.log" "$2"; }

# dev_kill_subshell PID — stop a background vireo_guest_run: its guest runs under `setsid
# timeout` (a process group of its own, led by the child of the subshell).
dev_kill_subshell() {
    local pid=$1 c
    for c in $(cat "/proc/$pid/task/$pid/children" 2>/dev/null); do
        kill -TERM -- "-$c" 2>/dev/null || true
    done
    sleep 0.5
    for c in $(cat "/proc/$pid/task/$pid/children" 2>/dev/null); do
        kill -KILL -- "-$c" 2>/dev/null || true
    done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

dev_cleanup() {
    local rc=${1:-$?} n
    for n in "${!dev_guest_pids[@]}"; do
        dev_kill_subshell "${dev_guest_pids[$n]}"
    done
    dev_vireo_stop
    e2e_cleanup "$rc"
}

dev_init() {
    e2e_init "$@"
    trap dev_cleanup EXIT
}

# The guest-side helper every net test uses: bring up the first non-loopback interface with
# an address (busybox ip). Pasted in front of guest scripts.
DEV_GUEST_NET_PRELUDE='
net_up() { # net_up ADDR/PREFIX — prints the interface name
    i=0
    while [ $i -lt 50 ]; do
        for n in /sys/class/net/*; do
            n=${n##*/}
            [ "$n" = lo ] && continue
            ip addr add "$1" dev "$n" && ip link set "$n" up && ip link set lo up && echo "$n" && return 0
        done
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}
# ping_until ADDR TRIES — true once ADDR answers (ARP and the peer may take a moment).
ping_until() {
    t=0
    while [ $t -lt "$2" ]; do
        ping -c 1 -W 1 "$1" >/dev/null 2>&1 && return 0
        t=$((t + 1))
    done
    return 1
}
'
