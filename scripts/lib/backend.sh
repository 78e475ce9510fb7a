# shellcheck shell=bash
# Starting and stopping a vhost-user-blk back end. Source after common.sh.
#
# vireo_backend_start KIND IMAGE SOCKET LOG [--read-only] [--queues N] [--engine E] [--cache C]
#   KIND vireo — `vireo blk` ($VIREO_BIN, default build/bin/vireo)
#   KIND qsd   — qemu-storage-daemon's vhost-user-blk export (the reference implementation)
# Sets vireo_backend_pid (the supervising `timeout`; vireo_backend_process gives the back end
# itself); returns non-zero if the back end did not come up.
# --cache direct|buffered: O_DIRECT on the image or the host page cache (vireo: --direct or not;
# qsd: cache.direct=on + aio=native, or cache.direct=off + aio=threads). Without it, each back end
# uses its default (vireo: buffered; qsd here: direct).
# Extra arguments for vireo can be given in VIREO_BLK_ARGS.

vireo_backend_pid=

vireo_bin() {
    local b=${VIREO_BIN:-$VIREO_ROOT/build/bin/vireo}
    [[ -x $b ]] || return 1
    echo "$b"
}

vireo_backend_start() {
    local kind=$1 image=$2 sock=$3 log=$4
    shift 4
    local ro=0 queues="" engine="" cache=""
    while (($#)); do
        case $1 in
        --read-only) ro=1; shift ;;
        --queues) queues=$2; shift 2 ;;
        --engine) engine=$2; shift 2 ;;
        --cache) cache=$2; shift 2 ;;
        *) vireo_die "vireo_backend_start: unknown option $1" ;;
        esac
    done
    local cmd=()
    case $kind in
    vireo)
        local bin
        bin=$(vireo_bin) || vireo_die "vireo binary not found (set VIREO_BIN or build: cmake --preset release && cmake --build --preset release)"
        cmd=("$bin" blk --socket-path "$sock" --image "$image")
        ((ro)) && cmd+=(--read-only)
        [[ -n $queues ]] && cmd+=(--queues "$queues")
        [[ -n $engine ]] && cmd+=(--engine "$engine")
        [[ $cache == direct ]] && cmd+=(--direct)
        # shellcheck disable=SC2206 # word splitting intended
        [[ -n ${VIREO_BLK_ARGS:-} ]] && cmd+=($VIREO_BLK_ARGS)
        ;;
    qsd)
        local bd="driver=file,node-name=disk0,filename=$image,discard=unmap"
        if [[ $cache == buffered ]]; then
            bd+=",aio=threads,cache.direct=off"
        else
            bd+=",aio=native,cache.direct=on"
        fi
        local ex="type=vhost-user-blk,id=exp0,node-name=disk0,addr.type=unix,addr.path=$sock"
        if ((ro)); then
            bd+=",read-only=on"
            ex+=",writable=off"
        else
            ex+=",writable=on"
        fi
        [[ -n $queues ]] && ex+=",num-queues=$queues"
        cmd=(qemu-storage-daemon --blockdev "$bd" --export "$ex")
        ;;
    *) vireo_die "unknown back end '$kind' (vireo or qsd)" ;;
    esac
    rm -f "$sock"
    # Under `timeout`, so a back end orphaned by a SIGKILLed caller (e.g. CTest's timeout) still
    # goes away; timeout passes our TERM on to it.
    timeout --kill-after=5 "${VIREO_BACKEND_MAX_SECONDS:-1800}" "${cmd[@]}" </dev/null >"$log" 2>&1 &
    vireo_backend_pid=$!
    if ! vireo_wait_for_socket "$sock" "$vireo_backend_pid" 10; then
        vireo_log "back end '$kind' did not listen on $sock; its log:"
        sed 's/^/    /' "$log" >&2
        vireo_backend_stop
        return 1
    fi
}

# vireo_backend_process — PID of the back-end process itself (the child of its `timeout`).
vireo_backend_process() {
    local c
    c=$(cat "/proc/$vireo_backend_pid/task/$vireo_backend_pid/children" 2>/dev/null) || return 1
    set -- $c
    [[ -n ${1:-} ]] || return 1
    echo "$1"
}

# vireo_backend_stop — stop the back end (TERM, then KILL); safe to call twice.
vireo_backend_stop() {
    vireo_kill_tree "$vireo_backend_pid"
    vireo_backend_pid=
}

# vireo_backend_cpu_ticks PID — utime+stime of a process in clock ticks (/proc/PID/stat fields
# 14 and 15, counted after the parenthesised command name, which may contain spaces).
vireo_backend_cpu_ticks() {
    local stat rest
    stat=$(cat "/proc/$1/stat") || return 1
    rest=${stat##*) }
    # shellcheck disable=SC2086
    set -- $rest
    echo $((${12} + ${13}))
}
