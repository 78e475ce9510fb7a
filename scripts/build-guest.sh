#!/usr/bin/env bash
# Builds (or reuses) the initramfs of a test guest from the Debian packages installed on this host.
#   scripts/build-guest.sh uml    User-mode Linux (/usr/bin/linux.uml, virtio over vhost-user
#                                 through the built-in virtio_uml driver)
#   scripts/build-guest.sh qemu   the cloud kernel (/boot/vmlinuz-*-cloud-amd64) under QEMU
# Prints the path of the cached initramfs (gzip'd newc cpio) on stdout; for uml, the same
# directory also holds uml-xstate-shim.so, to be LD_PRELOADed into linux.uml.
#
# The image holds busybox-static (shell and small tools), the real fio, mke2fs, e2fsck, fstrim,
# blkdiscard, blockdev and dd with the shared libraries ldd finds for them, the kernel modules the
# guest needs (from modules.dep, dependencies first) and scripts/guest/init.
# It is cached in ~/.cache/vireo/guest-<flavour>-<hash>, where the hash covers this script, the
# init, the shared helpers and the versions of every package a file in the image comes from; a
# change to any of them builds a new image. A lock serialises concurrent builders.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib/common.sh
source "$here/lib/common.sh"

flavour=${1:-}
case $flavour in
uml)
    moddir=$(vireo_uml_modules) || true
    [[ -n $moddir ]] || vireo_die "no UML modules under /usr/lib/uml/modules (install user-mode-linux)"
    kernel_pkgs=(user-mode-linux)
    # virtio_uml (the vhost-user transport) is built into Debian's UML kernel.
    modules=(virtio_uml virtio_blk ext4 crc32c_generic virtio_net virtio_console vmw_vsock_virtio_transport)
    ;;
qemu)
    kver=$(vireo_qemu_kernel_version) || vireo_die "no /boot/vmlinuz-*-cloud-amd64 with modules (install linux-image-cloud-amd64)"
    moddir=/lib/modules/$kver
    kernel_pkgs=("linux-image-$kver" linux-image-cloud-amd64)
    modules=(virtio_pci virtio_blk ext4 crc32c_generic virtio_net virtio_console virtio_rng vmw_vsock_virtio_transport)
    ;;
*)
    echo "usage: $0 uml|qemu" >&2
    exit 2
    ;;
esac

# Real tools: the guest calls them by these paths under /opt/vireo/bin.
tools=(fio mke2fs e2fsck fstrim blkdiscard blockdev dd)
tool_paths=()
for t in "${tools[@]}"; do
    p=$(PATH=/usr/sbin:/usr/bin:/sbin:/bin command -v "$t") || vireo_die "$t not found (run scripts/deps.sh)"
    tool_paths+=("$p")
done
busybox=/bin/busybox
[[ -x $busybox ]] && ! ldd "$busybox" >/dev/null 2>&1 || vireo_die "$busybox missing or not static (install busybox-static)"

# Shared libraries of the real tools (ldd resolves the whole closure), plus the dynamic loader.
mapfile -t libs < <(ldd "${tool_paths[@]}" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\/.*ld-linux/ {print $1}' | sort -u)

# resolve_modules NAME... — module files (relative to $moddir) in load order, dependencies first;
# built-in modules are skipped.
resolve_modules() {
    local -A seen=()
    local order=()
    visit() {
        local name=${1//-/_} line path deps d pat
        [[ -n ${seen[$name]:-} ]] && return 0
        seen[$name]=1
        # Module names treat - and _ alike (virtio_rng is virtio-rng.ko).
        pat=${name//_/[-_]}
        if grep -qE "/${pat}\.ko(\.[a-z]+)?\$" "$moddir/modules.builtin" 2>/dev/null; then
            return 0
        fi
        line=$(grep -E "(^|/)${pat}\.ko(\.[a-z]+)?:" "$moddir/modules.dep" | head -1) ||
            vireo_die "module $name is neither built in nor in $moddir/modules.dep"
        path=${line%%:*}
        deps=${line#*:}
        for d in $deps; do
            d=${d##*/}
            visit "${d%%.ko*}"
        done
        order+=("$path")
    }
    local m
    for m in "$@"; do visit "$m"; done
    printf '%s\n' "${order[@]}"
}
mapfile -t modfiles < <(resolve_modules "${modules[@]}")

# Cache key: our own scripts, the flavour, and the version of every package we take files from.
mapfile -t pkgs < <({
    printf '%s\n' busybox-static "${kernel_pkgs[@]}"
    [[ $flavour != uml ]] || printf '%s\n' gcc libc6-dev
    vireo_owning_packages "${tool_paths[@]}" "${libs[@]}"
} | sort -u)
key=$({
    echo "flavour=$flavour moddir=$moddir"
    printf 'module %s\n' "${modfiles[@]}"
    cat "$here/build-guest.sh" "$here/guest/init" "$here/lib/common.sh"
    [[ $flavour != uml ]] || cat "$here/guest/uml-xstate-shim.c"
    vireo_pkg_versions "${pkgs[@]}"
} | sha256sum | cut -c1-16)
out_dir=$VIREO_CACHE/guest-$flavour-$key
out=$out_dir/initramfs.cpio.gz
if [[ -f $out ]]; then
    echo "$out"
    exit 0
fi

mkdir -p "$VIREO_CACHE"
exec 9>"$VIREO_CACHE/.guest-$flavour.lock"
flock 9
if [[ -f $out ]]; then # another builder finished while we waited
    echo "$out"
    exit 0
fi

vireo_log "building $flavour guest initramfs ($key) from ${#pkgs[@]} packages"
stage=$(mktemp -d "$VIREO_CACHE/.stage-$flavour.XXXXXX")
trap 'rm -rf "$stage"' EXIT
root=$stage/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc/vireo,proc,sys,dev,tmp,mnt,run,opt/vireo/bin,lib/modules/vireo,vireo}

cp "$busybox" "$root/bin/busybox"
# One symlink per applet at the path busybox itself reports (bin/sh, sbin/insmod, ...).
"$busybox" --list-full | while read -r a; do
    [[ -e $root/$a ]] || ln -s /bin/busybox "$root/$a"
done

for p in "${tool_paths[@]}"; do
    cp -L "$p" "$root/opt/vireo/bin/"
done
for l in "${libs[@]}"; do
    mkdir -p "$root$(dirname "$l")"
    cp -L "$l" "$root$l"
done
# mke2fs reads its defaults from here (it has built-in ones, but the host's match Debian's).
[[ -f /etc/mke2fs.conf ]] && cp /etc/mke2fs.conf "$root/etc/"

: >"$root/etc/vireo/modules"
for m in "${modfiles[@]}"; do
    b=$(basename "$m")
    case $b in
    *.ko) cp "$moddir/$m" "$root/lib/modules/vireo/$b" ;;
    *.ko.xz) xz -dc "$moddir/$m" >"$root/lib/modules/vireo/${b%.xz}" ;;
    *.ko.zst) zstd -qdc "$moddir/$m" >"$root/lib/modules/vireo/${b%.zst}" ;;
    *.ko.gz) gzip -dc "$moddir/$m" >"$root/lib/modules/vireo/${b%.gz}" ;;
    *) vireo_die "unknown module format: $m" ;;
    esac
    echo "${b%.ko*}.ko" >>"$root/etc/vireo/modules"
done

install -m 0755 "$here/guest/init" "$root/init"
printf 'flavour=%s\nkey=%s\n' "$flavour" "$key" >"$root/etc/vireo/build-info"
vireo_pkg_versions "${pkgs[@]}" >>"$root/etc/vireo/build-info"

mkdir -p "$stage/out"
(cd "$root" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --owner=0:0 --quiet) |
    gzip -1 >"$stage/out/initramfs.cpio.gz"
cp "$stage/root/etc/vireo/build-info" "$stage/out/"
if [[ $flavour == uml ]]; then
    # Lets Debian's UML 6.1 run processes on hosts with AVX-512/AMX (see the file's comment).
    cc -O2 -Wall -Wextra -Werror -shared -fPIC -o "$stage/out/uml-xstate-shim.so" \
        "$here/guest/uml-xstate-shim.c" -ldl || vireo_die "cannot build the UML XSTATE shim (install gcc)"
fi
rm -rf "$out_dir"
mv "$stage/out" "$out_dir"
vireo_log "guest image: $out ($(du -h "$out" | cut -f1))"
echo "$out"
