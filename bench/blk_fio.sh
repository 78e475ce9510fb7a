#!/usr/bin/env bash
# fio in a Linux guest (User-mode Linux by default) against `vireo blk` and qemu-storage-daemon's
# vhost-user-blk export, on the same image in the same run. Not a test: it prints a table.
#
# Jobs (O_DIRECT in the guest, libaio unless --guest-engine says otherwise):
#   randread-4k-qd1, randread-4k-qd32, randwrite-4k-qd32, seqread-128k-qd8, and
#   randread-4k-qd32-b16: QD32 with fio submitting and reaping 16 I/Os per system call. A 1-vCPU
#   UML guest is CPU-bound at ~16k IOPS (fio ~85% usr), so in the plain QD32 jobs the requests
#   reach the back end one at a time (vireo sees at most one in flight almost always); the
#   batched job is the one where a back end faces a queue of concurrent requests.
# For each job and back end it reports IOPS (MiB/s for the sequential job) and the back end's CPU
# time per I/O: utime+stime of the back-end process (/proc/PID/stat, all its threads) sampled when
# the guest announces the job's start and end, divided by the number of I/Os fio completed.
#
# Both back ends open the image the same way (--cache: direct = O_DIRECT, the default, or buffered).
# The "host floor" column is fio itself on the host, on the same image opened the same way, with
# io_uring at the job's depth: the CPU the I/O costs any user-space process here before a back end
# adds anything (on this nested VM an O_DIRECT 4 KiB read alone is several µs of CPU).
# A QEMU guest (--guest qemu) runs under TCG here, so it is far slower than UML and its IOPS say
# little about the back end; the CPU time per I/O is still comparable.
#
# Usage: bench/blk_fio.sh [--vireo-bin PATH] [--runtime S] [--size MiB] [--engine io_uring|sync]
#          [--cache direct|buffered] [--guest uml|qemu] [--guest-engine libaio|io_uring]
#          [--backends "vireo qsd"] [--rounds N]
# With --rounds N (default 1) the back ends run N times each, alternating which goes first (the
# host's own storage warms up between runs), and the table shows the median per back end.
set -euo pipefail
VIREO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$VIREO_ROOT/scripts/lib/common.sh"
source "$VIREO_ROOT/scripts/lib/guest.sh"
source "$VIREO_ROOT/scripts/lib/backend.sh"

runtime=10 size_mib=1024 engine="" guest_engine=libaio backends="vireo qsd" cache=direct guest=uml
rounds=1
while (($#)); do
    case $1 in
    --vireo-bin) export VIREO_BIN=$2; shift 2 ;;
    --runtime) runtime=$2; shift 2 ;;
    --size) size_mib=$2; shift 2 ;;
    --engine) engine=$2; shift 2 ;;
    --guest-engine) guest_engine=$2; shift 2 ;;
    --cache) cache=$2; shift 2 ;;
    --guest) guest=$2; shift 2 ;;
    --backends) backends=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    -h | --help) sed -n '2,/^set/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) vireo_die "unknown argument $1" ;;
    esac
done

# name rw bs iodepth [batch]
jobs=(
    "randread-4k-qd1 randread 4k 1"
    "randread-4k-qd32 randread 4k 32"
    "randwrite-4k-qd32 randwrite 4k 32"
    "seqread-128k-qd8 read 128k 8"
    "randread-4k-qd32-b16 randread 4k 32 16"
)

# fio_batch [BATCH] — fio options that submit and reap BATCH I/Os per system call.
fio_batch() {
    (($# == 0)) || echo "--iodepth_batch_submit=$1 --iodepth_batch_complete_min=$1"
}

vireo_new_workdir bench
W=$VIREO_WORKDIR
monitor_pid=
cleanup() {
    [[ -z $monitor_pid ]] || kill "$monitor_pid" 2>/dev/null || true
    vireo_guest_stop
    vireo_backend_stop
    rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

vireo_log "image: ${size_mib} MiB of random data in $W (both back ends use this file)"
img=$W/bench.img
head -c "$((size_mib << 20))" /dev/urandom >"$img"
sync "$img"

# The guest announces each job ("VIREO-BENCH: begin|end NAME"), runs it, prints fio's terse line
# and pauses, so the host can sample the back end's CPU time while no I/O is in flight.
{
    echo 'sleep 1'
    for j in "${jobs[@]}"; do
        set -- $j
        cat <<GUEST
echo "VIREO-BENCH: begin $1"
sleep 1
\$FIO --name=$1 --filename=/dev/vda --direct=1 --ioengine=$guest_engine --rw=$2 --bs=$3 \\
    --iodepth=$4 $(fio_batch "${@:5}") --time_based --runtime=$runtime --randrepeat=0 --norandommap \\
    --output-format=terse --terse-version=3 >/tmp/$1.terse 2>/tmp/$1.err || vt_fail $1 "\$(cat /tmp/$1.err)"
sleep 1
echo "VIREO-BENCH: end $1"
echo "VIREO-BENCH-RESULT: \$(cat /tmp/$1.terse)"
sleep 1
GUEST
    done
} >"$W/guest.sh"

# monitor LOG PID OUT — append "begin|end NAME TICKS" to OUT for each marker the guest prints.
monitor() {
    local log=$1 pid=$2 out=$3 seen=0 i lines
    while :; do
        if [[ -f $log ]]; then
            mapfile -t lines < <(tr -d '\r' <"$log" | grep '^VIREO-BENCH: ' || true)
            for ((i = seen; i < ${#lines[@]}; i++)); do
                echo "${lines[i]#VIREO-BENCH: } $(vireo_backend_cpu_ticks "$pid")" >>"$out"
            done
            seen=${#lines[@]}
            grep -q '^VIREO-EXIT' "$log" && return 0
        fi
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.05
    done
}

hz=$(getconf CLK_TCK)
declare -A iops_l cpu_l mib_l
order=$backends
for ((round = 1; round <= rounds; round++)); do
    for be in $order; do
        vireo_log "== round $round/$rounds, back end: $be"
        opts=(--cache "$cache")
        [[ $be == vireo && -n $engine ]] && opts+=(--engine "$engine")
        vireo_backend_start "$be" "$img" "$W/$be.sock" "$W/$be.log" "${opts[@]}" || vireo_die "$be did not start"
        bpid=$(vireo_backend_process) || vireo_die "cannot find the $be process"
        : >"$W/$be.cpu"
        rm -f "$W/$be-guest.log"  # the previous round's markers must not count
        monitor "$W/$be-guest.log" "$bpid" "$W/$be.cpu" &
        monitor_pid=$!
        # fio itself takes a while to start under TCG.
        per_job=$((runtime + 10))
        [[ $guest == qemu ]] && per_job=$((runtime + 60))
        timeout=$((${#jobs[@]} * per_job + 60))
        if ! vireo_guest_run "$guest" "$W/guest.sh" "$W/$be-guest.log" --disk "$W/$be.sock" --timeout "$timeout"; then
            tail -n 30 "$W/$be-guest.log" >&2
            vireo_die "the guest run against $be failed"
        fi
        wait "$monitor_pid" || true
        monitor_pid=
        vireo_backend_stop

        # terse v3: field 3 job name, 6 read KiB, 8 read IOPS, 47 write KiB, 49 write IOPS.
        while IFS=';' read -r -a f; do
            name=${f[2]}
            for j in "${jobs[@]}"; do
                set -- $j
                [[ $1 == "$name" ]] || continue
                bs_bytes=$(numfmt --from=iec "${3^^}")
                ios=$(((${f[5]} + ${f[46]}) * 1024 / bs_bytes))
                b=$(awk -v n="$name" '$1 == "begin" && $2 == n {print $3}' "$W/$be.cpu")
                e=$(awk -v n="$name" '$1 == "end" && $2 == n {print $3}' "$W/$be.cpu")
                iops_l[$be,$name]+="$(awk -v r="${f[7]}" -v w="${f[48]}" 'BEGIN {printf "%.0f", r + w}') "
                cpu_l[$be,$name]+="$(awk -v t=$((e - b)) -v hz="$hz" -v n="$ios" \
                    'BEGIN {if (n > 0) printf "%.2f", t / hz * 1e6 / n; else print "nan"}') "
                mib_l[$be,$name]+="$(awk -v k="${f[5]}" -v r="$runtime" 'BEGIN {printf "%.0f", k / 1024 / r}') "
            done
        done < <(tr -d '\r' <"$W/$be-guest.log" | sed -n 's/^VIREO-BENCH-RESULT: //p')
    done
    # The other back end goes first next round.
    order=$(echo "$order" | tr ' ' '\n' | tac | tr '\n' ' ')
done

# median "v1 v2 ..." (the lower middle for an even count)
median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | awk '{a[NR] = $1} END {print NR ? a[int((NR + 1) / 2)] : "n/a"}'; }
declare -A iops cpu_us
for be in $backends; do
    for j in "${jobs[@]}"; do
        set -- $j
        iops[$be,$1]=$(median "${iops_l[$be,$1]:-}")
        cpu_us[$be,$1]=$(median "${cpu_l[$be,$1]:-}")
        [[ $2 == read && $3 == 128k ]] && iops[$be,$1]+=" ($(median "${mib_l[$be,$1]:-}") MiB/s)"
    done
done

# The floor: the same jobs from the host, no guest and no back end.
declare -A floor_us
direct=1
[[ $cache == direct ]] || direct=0
for j in "${jobs[@]}"; do
    set -- $j
    floor_us[$1]=$(fio --name="$1" --filename="$img" --direct=$direct --ioengine=io_uring --rw="$2" \
        --bs="$3" --iodepth="$4" $(fio_batch "${@:5}") --time_based --runtime="$runtime" --randrepeat=0 --norandommap \
        --output-format=json 2>/dev/null | python3 -c '
import json, sys
j = json.load(sys.stdin)["jobs"][0]
n = j["read"]["total_ios"] + j["write"]["total_ios"]
secs = j["job_runtime"] / 1000
print("%.2f" % ((j["usr_cpu"] + j["sys_cpu"]) / 100 * secs / n * 1e6) if n else "n/a")')
done

echo
printf 'fio in a %s guest (1 vCPU, O_DIRECT, %s, %ss per job) on a %s MiB image, which both\n' \
    "$guest" "$guest_engine" "$runtime" "$size_mib"
printf 'back ends open %s;\n' "$([[ $cache == direct ]] && echo "with O_DIRECT" || echo "through the page cache")"
printf 'back-end CPU = utime+stime of the back-end process per completed I/O; median of %s round(s)\n' "$rounds"
header=$(printf '%-20s' job)
for be in $backends; do header+=$(printf ' | %22s | %12s' "$be IOPS" "$be CPU/IO"); done
header+=$(printf ' | %16s' "host floor CPU/IO")
echo "$header"
echo "${header//[^|]/-}"
for j in "${jobs[@]}"; do
    set -- $j
    row=$(printf '%-20s' "$1")
    for be in $backends; do
        row+=$(printf ' | %22s | %9s us' "${iops[$be,$1]:-n/a}" "${cpu_us[$be,$1]:-n/a}")
    done
    row+=$(printf ' | %13s us' "${floor_us[$1]:-n/a}")
    echo "$row"
done
