#!/usr/bin/env bash
# RISC-V machine benchmark (not a test), side by side in one run:
#  1. Boot to /init: the same kernel (scripts/build-riscv-kernel.sh), initramfs
#     (scripts/build-riscv-initramfs.sh), OpenSBI fw_dynamic, command line and devices (virtio-blk
#     + virtio-rng on virtio-mmio) on `vireo-vmm --arch riscv64` and on `qemu-system-riscv64 -M
#     virt` (TCG). "init" is the guest's /proc/uptime as /init's first action (guest time runs at
#     wall-clock speed on both); "wall" is the whole run until the guest powers off. vireo-vmm
#     also reports instructions retired and MIPS (--stats); QEMU has no instruction counter
#     without -icount, which changes its timing, so only vireo's MIPS is shown.
#  2. Guest-visible blk: 4 KiB O_DIRECT random-read latency (vt_lat) and 1 MiB sequential
#     write/read throughput (vt_blk; the pattern generation and check run in the emulated guest,
#     so this is an end-to-end figure) on vireo-vmm with in-process devices, vireo-vmm with the
#     devices in a `vireo run` daemon behind the hypervisor bridge, and QEMU TCG.
# Each configuration runs RUNS times (default 5); the table shows the median.
#   bench/riscv_boot.sh [--vmm PATH] [--vireo PATH] [--runs N] [--harts N]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$here/..
vmm=$root/build/bin/vireo-vmm
vireo=$root/build/bin/vireo
runs=5
harts=1
while (($#)); do
    case $1 in
    --vmm) vmm=$2; shift 2 ;;
    --vireo) vireo=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --harts) harts=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
W=$(mktemp -d)
daemon=
cleanup() {
    [[ -n $daemon ]] && kill "$daemon" 2>/dev/null
    wait 2>/dev/null || true
    rm -rf "$W"
}
trap cleanup EXIT

kernel=$("$root/scripts/build-riscv-kernel.sh")
"$root/scripts/build-riscv-initramfs.sh" "$W/initrd.cpio"
bios=/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_dynamic.bin
# One image per back end: an image is locked by whoever serves it.
truncate -s 16M "$W/disk.img" "$W/bridge.img"
boot_args="console=ttyS0"
io_args="console=ttyS0 vt_blk=1 vt_lat=500"

# value LOG REGEX — the first number after REGEX in LOG.
value() { grep -aoE "$2[ :]*[0-9.]+" "$1" | head -1 | grep -oE '[0-9.]+$' || echo nan; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR ? a[int((NR + 1) / 2)] : "nan")}'; }

run_vireo() { # run_vireo OUT APPEND [bridge]
    local out=$1 append=$2 t0 t1
    local dev=(--device "blk,image=$W/disk.img" --device rng)
    if [[ ${3:-} == bridge ]]; then
        dev=(--bridge "$W/bridge.sock" --zone 1 --device rng)
    fi
    t0=$(date +%s.%N)
    "$vmm" --arch riscv64 --kernel "$kernel" --initrd "$W/initrd.cpio" --harts "$harts" \
        --append "$append" "${dev[@]}" --timeout 120 --stats --serial "$out" 2>"$out.err" ||
        echo "vireo-vmm failed: $(tail -1 "$out.err")" >&2
    t1=$(date +%s.%N)
    printf "wall: %.3f\n" "$(echo "$t1 - $t0" | bc)" >>"$out"
    cat "$out.err" >>"$out"
}

run_qemu() { # run_qemu OUT APPEND
    local out=$1 append=$2 t0 t1
    t0=$(date +%s.%N)
    timeout 120 qemu-system-riscv64 -M virt -m 256M -smp "$harts" -nographic -no-reboot \
        -bios "$bios" -kernel "$kernel" -initrd "$W/initrd.cpio" -append "$append" \
        -drive "file=$W/disk.img,if=none,id=d0,format=raw,cache=none,aio=native" \
        -device virtio-blk-device,drive=d0 -device virtio-rng-device >"$out" 2>&1 ||
        echo "qemu failed: $(tail -1 "$out")" >&2
    t1=$(date +%s.%N)
    printf "wall: %.3f\n" "$(echo "$t1 - $t0" | bc)" >>"$out"
}

cat >"$W/zones.json" <<JSON
{"socket": "$W/bridge.sock",
 "zones": [{"id": 1,
   "memory_region": [{"zone0_ipa": "0x0", "zonex_ipa": "0x80000000", "size": "0x10000000"}],
   "devices": [{"type": "blk", "addr": "0x10001000", "len": "0x1000", "irq": 1,
                "img": "$W/bridge.img"}]}]}
JSON
"$vireo" run "$W/zones.json" >"$W/daemon.log" 2>&1 &
daemon=$!
for _ in $(seq 1 100); do
    [[ -S $W/bridge.sock ]] && break
    sleep 0.1
done

declare -A col
add() { col[$1]+="$2"$'\n'; }
for i in $(seq 1 "$runs"); do
    echo "run $i/$runs" >&2
    run_vireo "$W/vb$i.log" "$boot_args"
    run_qemu "$W/qb$i.log" "$boot_args"
    for who in vb qb; do
        f=$W/$who$i.log
        grep -aq 'vireo-init: done' "$f" || { echo "$who run $i did not finish:" >&2; tail -5 "$f" >&2; }
        add "$who.init" "$(value "$f" '/proc/uptime')"
        add "$who.wall" "$(value "$f" 'wall')"
    done
    add vb.mips "$(grep -aoE '[0-9.]+ MIPS' "$W/vb$i.log" | grep -oE '^[0-9.]+' || echo nan)"
    run_vireo "$W/vi$i.log" "$io_args"
    run_vireo "$W/vr$i.log" "$io_args" bridge
    run_qemu "$W/qi$i.log" "$io_args"
    for who in vi vr qi; do
        f=$W/$who$i.log
        add "$who.w" "$(grep -aoE 'blk write [0-9.]+' "$f" | grep -oE '[0-9.]+$' || echo nan)"
        add "$who.r" "$(grep -aoE 'read [0-9.]+ MB/s' "$f" | grep -oE '[0-9.]+' | head -1 || echo nan)"
        add "$who.lat2" "$(grep -aoE '[0-9.]+ us per read' "$f" | grep -oE '^[0-9.]+' || echo nan)"
    done
done
m() { printf '%s' "${col[$1]}" | grep -v '^$' | median; }

echo
echo "Boot to /init ($harts hart(s); median of $runs; same kernel, initramfs, firmware, devices)"
echo
echo "| machine | boot to /init (guest uptime) | wall until power-off | MIPS |"
echo "|---|---|---|---|"
printf '| vireo-vmm --arch riscv64 | %s s | %s s | %s |\n' "$(m vb.init)" "$(m vb.wall)" "$(m vb.mips)"
printf '| qemu-system-riscv64 -M virt (TCG) | %s s | %s s | n/a |\n' "$(m qb.init)" "$(m qb.wall)"
echo
echo "Guest-visible virtio-blk (median of $runs)"
echo
echo "| devices | 4 KiB O_DIRECT read latency | 1 MiB seq write | 1 MiB seq read |"
echo "|---|---|---|---|"
printf '| vireo-vmm, in-process | %s µs | %s MB/s | %s MB/s |\n' "$(m vi.lat2)" "$(m vi.w)" "$(m vi.r)"
printf '| vireo-vmm + vireo daemon (bridge) | %s µs | %s MB/s | %s MB/s |\n' "$(m vr.lat2)" "$(m vr.w)" "$(m vr.r)"
printf '| qemu-system-riscv64 (TCG) | %s µs | %s MB/s | %s MB/s |\n' "$(m qi.lat2)" "$(m qi.w)" "$(m qi.r)"
