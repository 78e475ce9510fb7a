# shellcheck shell=bash
# Shared helpers for vireo's shell tooling (guest images, e2e tests, benchmarks, demo).
# Source it; it defines functions and a few variables and changes no shell options.

VIREO_ROOT=${VIREO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
VIREO_CACHE=${VIREO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vireo}

vireo_log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
vireo_die() {
    vireo_log "error: $*"
    exit 1
}

# vireo_pkg_versions PKG... — "name=version" lines, sorted; missing packages print "name=absent".
# Package versions are part of every cache key, so an upgrade rebuilds what depends on them.
vireo_pkg_versions() {
    local p v
    for p in "$@"; do
        v=$(dpkg-query -W -f='${Version}' "$p" 2>/dev/null) || v=absent
        printf '%s=%s\n' "$p" "${v:-absent}"
    done | sort -u
}

# vireo_owning_packages FILE... — the Debian packages that ship the given files (one per line).
# Tries the path as given and its canonical form, since Debian 12's merged /usr means a library
# can be registered under /lib while ldd reports /usr/lib (or the other way round).
vireo_owning_packages() {
    local f alts=()
    for f in "$@"; do
        alts+=("$f" "$(readlink -f "$f")")
        case $f in
        /usr/*) alts+=("${f#/usr}") ;;
        *) alts+=("/usr$f") ;;
        esac
    done
    dpkg-query -S "${alts[@]}" 2>/dev/null | sed 's/:.*//; s/, /\n/g' | sed 's/:[a-z0-9]*$//' | sort -u
}

# vireo_uml_kernel — path of the User-mode Linux kernel; vireo_uml_modules — its module tree.
vireo_uml_kernel() { echo "${VIREO_UML_KERNEL:-/usr/bin/linux.uml}"; }
vireo_uml_modules() {
    local d
    for d in /usr/lib/uml/modules/*/; do
        [[ -f $d/modules.dep ]] && echo "${d%/}"
    done | sort -V | tail -1
}

# vireo_qemu_kernel_version — newest installed *-cloud-amd64 kernel that has its modules.
vireo_qemu_kernel_version() {
    if [[ -n ${VIREO_QEMU_KVER:-} ]]; then
        echo "$VIREO_QEMU_KVER"
        return
    fi
    local k v best=
    for k in /boot/vmlinuz-*-cloud-amd64; do
        [[ -f $k ]] || continue
        v=${k#/boot/vmlinuz-}
        [[ -f /lib/modules/$v/modules.dep ]] && best=$(printf '%s\n%s\n' "$best" "$v" | sed '/^$/d' | sort -V | tail -1)
    done
    [[ -n $best ]] || return 1
    echo "$best"
}

# vireo_new_workdir NAME — a fresh private directory under $TMPDIR (not tmpfs: images need
# O_DIRECT). Sets VIREO_WORKDIR.
vireo_new_workdir() {
    local base=${VIREO_TMP:-${TMPDIR:-/tmp}}
    # shellcheck disable=SC2034 # read by the caller
    VIREO_WORKDIR=$(mktemp -d "$base/vireo-$1.XXXXXX")
}

# vireo_wait_for_socket PATH PID SECONDS — wait until a back end listens on PATH; fail early if
# the process PID died.
vireo_wait_for_socket() {
    local path=$1 pid=$2 limit=$(($3 * 10)) i
    for ((i = 0; i < limit; i++)); do
        [[ -S $path ]] && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# vireo_kill_tree PID — stop a process we started: TERM, then KILL after a grace period.
vireo_kill_tree() {
    local pid=$1 i
    [[ -n $pid ]] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 30; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
