# shellcheck shell=bash disable=SC2054 # commas belong to QEMU's and UML's option syntax
# Booting test guests against a vhost-user-blk socket. Source after common.sh.
#
# vireo_guest_run FLAVOUR TEST_SCRIPT LOG [options]
#   FLAVOUR       uml | qemu
#   TEST_SCRIPT   a busybox-sh script run by the guest's init (see scripts/guest/init for the
#                 helpers and the output protocol); the first disk is /dev/vda
#   LOG           the guest console goes here (and to stderr when VIREO_VERBOSE=1)
#   --disk SOCK   a vhost-user-blk socket (repeatable: vda, vdb, ...)
#   --qemu-dev-opts OPTS  extra vhost-user-blk-pci properties, e.g. "num-queues=2,packed=on"
#   --env K=V     an extra variable for the test script (repeatable)
#   --timeout S   kill the guest after S seconds (default 120)
#   --mem MB      guest RAM (default 512)
#   --smp N       guest CPUs (QEMU only; UML has one)
#   --uml-arg A   an extra UML kernel argument, e.g. virtio_uml.device=SOCK:1 (repeatable)
#   --qemu-arg A  an extra QEMU argument, e.g. -device ... (repeatable; one word each)
#   --file F      copy F into the guest as /vireo/<basename> (repeatable; e.g. a test program)
# Returns the guest's test status: 0 when it printed "VIREO-EXIT: 0" and no FAIL line.
# VIREO_GUEST_DEBUG=1 keeps the guest kernel's messages on the console.

vireo_guest_pid=

vireo_guest_run() {
    local flavour=$1 script=$2 log=$3
    shift 3
    local disks=() env=() devopts="" timeout=120 mem=512 smp=1 uml_args=() qemu_args=() files=()
    while (($#)); do
        case $1 in
        --disk) disks+=("$2"); shift 2 ;;
        --qemu-dev-opts) devopts=$2; shift 2 ;;
        --env) env+=("$2"); shift 2 ;;
        --timeout) timeout=$2; shift 2 ;;
        --mem) mem=$2; shift 2 ;;
        --smp) smp=$2; shift 2 ;;
        --uml-arg) uml_args+=("$2"); shift 2 ;;
        --qemu-arg) qemu_args+=("$2"); shift 2 ;;
        --file) files+=("$2"); shift 2 ;;
        *) vireo_die "vireo_guest_run: unknown option $1" ;;
        esac
    done

    local base
    base=$(bash "$VIREO_ROOT/scripts/build-guest.sh" "$flavour") || return 1

    # The per-run part of the initramfs: the test script and its environment. Linux unpacks
    # concatenated cpio archives in order, so appending it to the cached image adds these files.
    local run_dir
    run_dir=$(mktemp -d "${log%/*}/guest-run.XXXXXX")
    mkdir -p "$run_dir/root/vireo"
    cp "$script" "$run_dir/root/vireo/test.sh"
    ((${#files[@]} == 0)) || cp "${files[@]}" "$run_dir/root/vireo/"
    {
        local i names=""
        for i in "${!disks[@]}"; do names+=" vd$(printf "\\x$(printf %x $((97 + i)))")"; done
        echo "VIREO_WAIT_DISKS='${names# }'"
        local e
        for e in "${env[@]}"; do printf '%s=%q\n' "${e%%=*}" "${e#*=}"; done
    } >"$run_dir/root/vireo/env"
    (cd "$run_dir/root" && find vireo | cpio -o -H newc --owner=0:0 --quiet) | gzip -1 >"$run_dir/extra.cpio.gz"
    cat "$base" "$run_dir/extra.cpio.gz" >"$run_dir/initramfs.img"

    local klog=(quiet loglevel=1)
    [[ ${VIREO_GUEST_DEBUG:-0} == 1 ]] && klog=(loglevel=7 vireo_debug=1)
    local cmd=()
    case $flavour in
    uml)
        # The shim and the glibc tunables work around UML 6.1's fixed-size FPU state (see
        # scripts/guest/uml-xstate-shim.c): the guest's glibc must not use AVX-512 registers,
        # whose state UML does not switch. Kernel arguments of the form K=V reach init's
        # environment, hence every guest process.
        cmd=(env "LD_PRELOAD=${base%/*}/uml-xstate-shim.so" "$(vireo_uml_kernel)" "mem=${mem}M" "initrd=$run_dir/initramfs.img"
            "uml_dir=$run_dir" umid=vireo con=null con0=null,fd:1 ssl=null
            "${klog[@]}" panic=-1
            "GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX512F,-AVX512VL,-AVX512BW,-AVX512DQ,-AVX512CD")
        local s
        # Device id 2 is virtio-blk (virtio spec §5); virtio_uml speaks vhost-user on the socket.
        for s in "${disks[@]}"; do cmd+=("virtio_uml.device=$s:2"); done
        cmd+=("${uml_args[@]}")
        ;;
    qemu)
        local kver
        kver=$(vireo_qemu_kernel_version) || return 1
        # maxcpus >= 2: QEMU 7.2 TCG drops the guest's memory barriers with a single possible CPU,
        # which breaks virtio's store/fence/load kick handshake with a back end in another
        # process (a vhost-user guest then stops kicking, seen in bench/net_bench.sh). The
        # initramfs then needs more than 256 MiB to unpack: QEMU guests get 512.
        cmd=(qemu-system-x86_64 -machine q35 -cpu max -smp "$smp,maxcpus=$((smp > 1 ? smp : 2))" -m "$mem" -nodefaults -display none
            -no-reboot -serial stdio -monitor none
            -kernel "/boot/vmlinuz-$kver" -initrd "$run_dir/initramfs.img"
            -append "console=ttyS0 ${klog[*]} panic=-1"
            # vhost-user needs guest RAM in a file the back end can map: a shared memfd.
            -object "memory-backend-memfd,id=mem,size=${mem}M,share=on" -numa node,memdev=mem)
        local n=0 s
        for s in "${disks[@]}"; do
            cmd+=(-chardev "socket,id=vub$n,path=$s"
                -device "vhost-user-blk-pci,chardev=vub$n${devopts:+,$devopts}")
            n=$((n + 1))
        done
        cmd+=("${qemu_args[@]}")
        ;;
    *) vireo_die "unknown guest flavour $flavour" ;;
    esac

    # UML's memory file lives in TMPDIR (created and unlinked at once): on tmpfs when there is
    # one, so guest RAM is not written back to disk. setsid: the guest (UML forks helper
    # processes) gets its own process group, which vireo_guest_stop kills.
    local mem_dir=$run_dir
    [[ -d /dev/shm && -w /dev/shm ]] && mem_dir=/dev/shm
    TMPDIR=$mem_dir setsid timeout --kill-after=5 "$timeout" "${cmd[@]}" </dev/null >"$log" 2>&1 &
    vireo_guest_pid=$!
    vireo_guest_find_vmm
    local tail_pid=
    if [[ ${VIREO_VERBOSE:-0} == 1 ]]; then
        tail -n +1 -f --pid="$vireo_guest_pid" "$log" >&2 &
        tail_pid=$!
    fi
    local rc=0
    wait "$vireo_guest_pid" || rc=$?
    vireo_guest_reap
    vireo_guest_pid=
    [[ -z $tail_pid ]] || wait "$tail_pid" 2>/dev/null || true
    rm -rf "$run_dir"
    if ((rc == 124)); then
        vireo_log "guest timed out after ${timeout}s (log: $log)"
    fi
    vireo_guest_status "$log"
}

# vireo_guest_find_vmm — record the PID of the VMM (linux.uml or QEMU), the child of the
# `timeout` that supervises it.
vireo_guest_vmm_pid=
vireo_guest_find_vmm() {
    local i c
    vireo_guest_vmm_pid=
    for ((i = 0; i < 50; i++)); do
        c=$(cat "/proc/$vireo_guest_pid/task/$vireo_guest_pid/children" 2>/dev/null) || return 0
        if [[ -n $c ]]; then
            vireo_guest_vmm_pid=${c%% *}
            return 0
        fi
        sleep 0.02
    done
}

# vireo_guest_reap — end what is left of a guest. UML makes itself a session leader, and when it
# dies without a clean poweroff (timeout, crash) the host processes that ran its guest processes
# survive it, orphaned, in its process group: kill that group, and the supervisor's.
vireo_guest_reap() {
    [[ -z $vireo_guest_vmm_pid ]] || kill -KILL -- "-$vireo_guest_vmm_pid" 2>/dev/null || true
    [[ -z $vireo_guest_pid ]] || kill -KILL -- "-$vireo_guest_pid" 2>/dev/null || true
    vireo_guest_vmm_pid=
}

# vireo_guest_stop — kill a guest still running (for EXIT traps).
vireo_guest_stop() {
    [[ -n $vireo_guest_pid ]] || return 0
    kill -TERM -- "-$vireo_guest_pid" 2>/dev/null || kill -TERM "$vireo_guest_pid" 2>/dev/null || true
    sleep 0.5
    vireo_guest_reap
    wait "$vireo_guest_pid" 2>/dev/null || true
    vireo_guest_pid=
}

# vireo_guest_status LOG — 0 if the guest reported success; prints the check lines.
vireo_guest_status() {
    local log=$1
    tr -d '\r' <"$log" | grep -E '^VIREO-(TEST|EXIT):' >&2 || true
    if tr -d '\r' <"$log" | grep -q '^VIREO-TEST: .* FAIL'; then return 1; fi
    tr -d '\r' <"$log" | grep -qx 'VIREO-EXIT: 0'
}

# vireo_guest_value LOG KEY — a value the guest printed as "VIREO-VALUE: KEY=VALUE".
vireo_guest_value() {
    tr -d '\r' <"$1" | sed -n "s/^VIREO-VALUE: $2=//p" | tail -1
}
