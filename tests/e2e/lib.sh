# shellcheck shell=bash
# Harness for the end-to-end tests: a real Linux guest (UML or QEMU) drives a vhost-user-blk back
# end (vireo, or qemu-storage-daemon as the reference) and host-side checks inspect the image.
#
# Every test script accepts
#   --guest uml|qemu         (default $VIREO_E2E_GUEST, else uml)
#   --backend vireo|qsd      (default $VIREO_E2E_BACKEND, else vireo)
#   --vireo-bin PATH         (default $VIREO_BIN, else build/bin/vireo)
# and exits non-zero when a check fails. The back end and the guest are always killed on exit;
# the work directory is removed unless VIREO_E2E_KEEP=1 (logs are printed on failure).
set -euo pipefail
E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VIREO_ROOT=$(cd "$E2E_DIR/../.." && pwd)
# shellcheck source=../../scripts/lib/common.sh
source "$VIREO_ROOT/scripts/lib/common.sh"
# shellcheck source=../../scripts/lib/guest.sh
source "$VIREO_ROOT/scripts/lib/guest.sh"
# shellcheck source=../../scripts/lib/backend.sh
source "$VIREO_ROOT/scripts/lib/backend.sh"

E2E_GUEST=${VIREO_E2E_GUEST:-uml}
E2E_BACKEND=${VIREO_E2E_BACKEND:-vireo}
E2E_FAILED=0
E2E_NAME=$(basename "$0" .sh)

e2e_init() {
    while (($#)); do
        case $1 in
        --guest) E2E_GUEST=$2; shift 2 ;;
        --backend) E2E_BACKEND=$2; shift 2 ;;
        --vireo-bin) export VIREO_BIN=$2; shift 2 ;;
        -h | --help)
            sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *) vireo_die "unknown argument $1" ;;
        esac
    done
    case $E2E_GUEST in uml | qemu) ;; *) vireo_die "--guest must be uml or qemu" ;; esac
    case $E2E_BACKEND in vireo | qsd) ;; *) vireo_die "--backend must be vireo or qsd" ;; esac
    vireo_new_workdir "e2e-$E2E_NAME"
    W=$VIREO_WORKDIR
    SOCK=$W/vhost.sock
    trap e2e_cleanup EXIT
    trap 'exit 130' INT TERM
    vireo_log "$E2E_NAME: guest=$E2E_GUEST backend=$E2E_BACKEND workdir=$W"
}

# e2e_cleanup [STATUS] — as the EXIT trap, or chained from another cleanup with its status
# (passing it along as an argument: `(exit "$rc")` would end the trap early under set -e).
e2e_cleanup() {
    local rc=${1:-$?}
    vireo_guest_stop
    vireo_backend_stop
    if ((rc != 0)); then
        local f
        for f in "$W"/*.log; do
            [[ -f $f ]] || continue
            echo "---- $(basename "$f") (last 40 lines) ----" >&2
            tail -n 40 "$f" >&2
        done
    fi
    if [[ ${VIREO_E2E_KEEP:-0} == 1 ]]; then
        vireo_log "kept $W"
    else
        rm -rf "$W"
    fi
    vireo_log "$E2E_NAME ($E2E_GUEST, $E2E_BACKEND): $( ((rc == 0)) && echo PASS || echo "FAIL (rc=$rc)")"
    exit "$rc"
}

# e2e_image NAME MIB [random] — a raw image (sparse, or filled with random bytes).
e2e_image() {
    local img=$W/$1.img
    if [[ ${3:-} == random ]]; then
        head -c "$(($2 << 20))" /dev/urandom >"$img"
    else
        truncate -s "$(($2))M" "$img"
    fi
    echo "$img"
}

# e2e_backend IMAGE [--read-only] [--queues N] — start the back end under test on $SOCK.
e2e_backend() {
    local img=$1
    shift
    vireo_backend_start "$E2E_BACKEND" "$img" "$SOCK" "$W/backend.log" "$@"
}

# e2e_guest SCRIPT_FILE [vireo_guest_run options] — boot the guest on $SOCK; counts a failure.
# A --timeout is meant for QEMU (TCG); UML runs the same work several times faster, so it gets
# at most 100 s, which keeps it well inside CTest's TIMEOUT.
e2e_guest() {
    local script=$1
    shift
    local args=() t
    while (($#)); do
        if [[ $1 == --timeout ]]; then
            t=$2
            [[ $E2E_GUEST == uml ]] && ((t > 100)) && t=100
            args+=(--timeout "$t")
            shift 2
        else
            args+=("$1")
            shift
        fi
    done
    if vireo_guest_run "$E2E_GUEST" "$script" "$W/guest.log" --disk "$SOCK" "${args[@]}"; then
        echo "HOST-TEST: guest-checks PASS" >&2
    else
        echo "HOST-TEST: guest-checks FAIL" >&2
        E2E_FAILED=1
    fi
}

# e2e_value KEY — a value the guest reported.
e2e_value() { vireo_guest_value "$W/guest.log" "$1"; }

# e2e_check NAME COMMAND... — a host-side check.
e2e_check() {
    local name=$1
    shift
    if "$@"; then
        echo "HOST-TEST: $name PASS" >&2
    else
        echo "HOST-TEST: $name FAIL ($*)" >&2
        E2E_FAILED=1
    fi
}

# e2e_eq NAME EXPECTED ACTUAL
e2e_eq() {
    if [[ -n $2 && $2 == "$3" ]]; then
        echo "HOST-TEST: $1 PASS" >&2
    else
        echo "HOST-TEST: $1 FAIL (expected '$2', got '$3')" >&2
        E2E_FAILED=1
    fi
}

# e2e_hash FILE OFFSET_MIB LEN_MIB — sha256 of a byte range of a host file.
e2e_hash() {
    dd if="$1" bs=1M skip="$2" count="$3" status=none | sha256sum | cut -d' ' -f1
}

# e2e_zero_hash LEN_MIB — sha256 of that many zero bytes.
e2e_zero_hash() { head -c "$(($1 << 20))" /dev/zero | sha256sum | cut -d' ' -f1; }

# e2e_stop_backend — stop the back end (so every write has reached the image) before host checks.
e2e_stop_backend() { vireo_backend_stop; }

e2e_finish() {
    if ((E2E_FAILED)); then
        exit 1
    fi
    exit 0
}
