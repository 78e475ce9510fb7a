#!/usr/bin/env bash
# virtio-blk in vireo-vmm: in-guest TSC cycles per one-sector read, VM exits per request (with
# and without VIRTIO_F_EVENT_IDX) and host µs per exit, over virtio-mmio and virtio-pci (MSI-X),
# next to a raw KVM_RUN PIO exit measured in the same run (vireo-vmm --bench-exits).
#
# Exits per request = (exits of a run with N2 requests - exits with N1) / (N2 - N1): the setup
# cost cancels. Usage: bench/vmm_blk.sh [BUILD_DIR] (default build/); N1/N2 from the environment.
set -euo pipefail
build=${1:-build}
vmm=$build/bin/vireo-vmm
guest=$build/bin/guest/blk.elf
n1=${N1:-50}
n2=${N2:-250}
[[ -x $vmm && -f $guest ]] || { echo "build vireo-vmm and vireo_guests into $build first" >&2; exit 1; }
[[ -e /dev/kvm ]] || { echo "SKIP: /dev/kvm absent"; exit 0; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
truncate -s 1M "$tmp/disk.img"
printf 'VIREO-GUEST-IMAGE' | dd of="$tmp/disk.img" conv=notrunc status=none

# run TRANSPORT EXTRA_APPEND N -> "cycles exits handling_us irqs"
run() {
    local out
    out=$("$vmm" --kernel "$guest" --timeout 120 --stats \
        --append "transport=$1 ring=split irq=1 $2 bench=$3" \
        --device "blk,transport=$1,image=$tmp/disk.img" 2>&1) || { echo "$out" >&2; exit 1; }
    local cycles exits us irqs
    cycles=$(sed -n 's/.*blk-bench: [0-9]* requests, \([0-9]*\) cycles.*/\1/p' <<<"$out")
    irqs=$(sed -n 's/.*cycles per request, \([0-9]*\) interrupts.*/\1/p' <<<"$out")
    exits=$(sed -n 's/.*stats: exits \([0-9]*\) .*/\1/p' <<<"$out")
    us=$(sed -n 's/.*handling \([0-9.]*\) us per exit.*/\1/p' <<<"$out")
    echo "$cycles $exits $us $irqs"
}

raw=$("$vmm" --bench-exits 20000 | sed -n 's/.*: \([0-9.]*\) us per KVM_RUN PIO exit.*/\1/p')
printf '%-24s %14s %14s %12s %16s\n' "config" "cycles/req" "exits/req" "irqs/req" "host us/exit"
for transport in mmio pci; do
    for ev in "" event_idx; do
        read -r _ e1 _ _ <<<"$(run $transport "$ev" "$n1")"
        read -r c2 e2 us i2 <<<"$(run $transport "$ev" "$n2")"
        per=$(awk -v a="$e1" -v b="$e2" -v n1="$n1" -v n2="$n2" 'BEGIN{printf "%.2f", (b-a)/(n2-n1)}')
        ipr=$(awk -v i="$i2" -v n="$n2" 'BEGIN{printf "%.2f", i/n}')
        printf '%-24s %14s %14s %12s %16s\n' "$transport ${ev:-no-event_idx}" "$c2" "$per" "$ipr" "$us"
    done
done
printf '%-24s %14s %14s %12s %16s\n' "raw KVM_RUN PIO exit" "-" "1" "-" "$raw (round trip)"
echo "host us/exit: user-space handling per exit (--stats); the raw line is a whole exit+entry."
