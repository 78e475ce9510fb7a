#!/usr/bin/env bash
# Real Linux on vireo's RV64 machine (docs/riscv.md): two riscv64 guests boot through OpenSBI on
# `vireo-vmm --arch riscv64` (kernel from scripts/build-riscv-kernel.sh, /init from
# guest/riscv/init.c) and use vireo's virtio-mmio devices:
#   guest A: writes a 4 MiB seeded pattern to /dev/vda with O_DIRECT and reads it back (the host
#            regenerates the pattern and compares the image afterwards), mounts the ext4 image on
#            /dev/vdb (made here by mkfs.ext4 -d), reads the host's file and writes its own
#            (host: e2fsck, debugfs), reads /dev/hwrng, prints through /dev/hvc0 (the host reads
#            the console's file), sends 200 UDP datagrams to guest B and checks every echo;
#   guest B: echoes them, and reads a line the host types into its VMM's stdin (serial console:
#            the UART's receive interrupt through the PLIC to Linux's 8250 driver on ttyS0).
# MODE local:  devices in vireo-vmm itself; A and B each on a TAP, the TAPs joined by a Linux
#              bridge in a network namespace (an in-process switch cannot span two VMMs).
# MODE bridge: blk, net and console served by one `vireo run` daemon through the hypervisor
#              bridge (zones 1 and 2), the two guests on the daemon's switch; rng stays local.
#              Guest A's VMM is configured by a JSON file ("arch": "riscv64").
# RING (local mode): packed (offered; Linux takes it), split (packed=off on every device) or
# legacy (virtio-mmio version 1 devices: legacy interface, split ring, guest-endian).
#   Usage: tests/riscv/linux_e2e.sh VIREO_VMM VIREO MODE [HARTS] [RING]   (needs root: netns, TAP)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
vmm=${1:?usage: linux_e2e.sh VIREO_VMM VIREO local|bridge [harts]}
vireo=${2:?}
mode=${3:?}
harts=${4:-1}
ring=${5:-packed}
p=""
[[ $ring == split ]] && p=",packed=off"
[[ $ring == legacy ]] && p=",legacy=on"
[[ $mode == local || $mode == bridge ]] || { echo "mode must be local or bridge" >&2; exit 2; }
W=$(mktemp -d)
NS=vireo-rv-$$
pids=()
cleanup() {
    local rc=$?
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    ip netns del "$NS" 2>/dev/null || true
    if ((rc != 0)); then
        for f in "$W"/*.log "$W"/*.err; do
            [[ -f $f ]] && { echo "== $f"; tail -n 40 "$f"; }
        done >&2
    fi
    rm -rf "$W"
    exit "$rc"
}
trap cleanup EXIT

kernel=$("$here/../../scripts/build-riscv-kernel.sh")
"$here/../../scripts/build-riscv-initramfs.sh" "$W/initrd.cpio"
printf 'vireo-riscv-disk' >"$W/a.img"
truncate -s 8M "$W/a.img"
truncate -s 8M "$W/b.img"
mkdir "$W/fs"
echo "hello from the host's mkfs.ext4" >"$W/fs/hello.txt"
truncate -s 16M "$W/ext4.img"
mkfs.ext4 -q -F -d "$W/fs" "$W/ext4.img"

common_a="console=ttyS0 vt_blk=1 vt_ext4=/dev/vdb vt_console=1 vt_lat=100"
net_a="vt_net=a vt_ip=10.0.7.1 vt_peer=10.0.7.2"
net_b="vt_uart=1 vt_net=b vt_ip=10.0.7.2"
# Guest B's serial console is its VMM's stdin and stdout (no --serial): a FIFO the host writes
# one line into once B's /init waits for it.
mkfifo "$W/b.in"
type_line() {
    for _ in $(seq 1 1200); do
        grep -aq 'uart waiting for a line' "$W/b.log" 2>/dev/null && break
        sleep 0.1
    done
    echo "vireo-uart-ping" >&7
}
run_vmm=("$vmm" --arch riscv64 --kernel "$kernel" --initrd "$W/initrd.cpio" --harts "$harts"
    --timeout "${VT_TIMEOUT:-240}" --stats)

if [[ $mode == local ]]; then
    ip netns add "$NS"
    ip -n "$NS" link add br0 type bridge
    for t in rva rvb; do
        ip -n "$NS" tuntap add dev "$t" mode tap multi_queue
        ip -n "$NS" link set "$t" master br0 up
    done
    ip -n "$NS" link set br0 up
    in_ns=(ip netns exec "$NS")
    "${in_ns[@]}" "${run_vmm[@]}" --append "console=ttyS0 $net_b" \
        --device "blk,image=$W/b.img$p" --device "net,tap=rvb,mac=52:54:00:07:00:02$p" \
        <"$W/b.in" >"$W/b.log" 2>"$W/b.err" &
    pids+=($!)
    b_pid=$!
    exec 7>"$W/b.in"  # (opening the FIFO's write end lets B's VMM start)
    type_line &
    pids+=($!)
    rc_a=0
    "${in_ns[@]}" "${run_vmm[@]}" --append "$common_a $net_a" \
        --device "blk,image=$W/a.img$p" --device "blk,image=$W/ext4.img$p" --device "rng$p" \
        --device "console,file=$W/hvc.txt$p" --device "net,tap=rva,mac=52:54:00:07:00:01$p" \
        --serial "$W/a.log" 2>"$W/a.err" || rc_a=$?
else
    cat >"$W/zones.json" <<JSON
{"socket": "$W/bridge.sock",
 "zones": [
  {"id": 1, "memory_region": [{"zone0_ipa": "0x0", "zonex_ipa": "0x80000000", "size": "0x10000000"}],
   "devices": [
    {"type": "blk", "addr": "0x10001000", "len": "0x1000", "irq": 1, "img": "$W/a.img"},
    {"type": "blk", "addr": "0x10002000", "len": "0x1000", "irq": 2, "img": "$W/ext4.img"},
    {"type": "net", "addr": "0x10003000", "len": "0x1000", "irq": 3, "switch": "lan0",
     "mac": "52:54:00:07:00:01"},
    {"type": "console", "addr": "0x10004000", "len": "0x1000", "irq": 4, "file": "$W/hvc.txt"}]},
  {"id": 2, "memory_region": [{"zone0_ipa": "0x0", "zonex_ipa": "0x80000000", "size": "0x10000000"}],
   "devices": [
    {"type": "blk", "addr": "0x10001000", "len": "0x1000", "irq": 1, "img": "$W/b.img"},
    {"type": "net", "addr": "0x10002000", "len": "0x1000", "irq": 2, "switch": "lan0",
     "mac": "52:54:00:07:00:02"}]}]}
JSON
    "$vireo" run "$W/zones.json" >"$W/daemon.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 1 100); do
        [[ -S $W/bridge.sock ]] && break
        sleep 0.1
    done
    [[ -S $W/bridge.sock ]] || { echo "the daemon did not listen" >&2; exit 1; }
    "${run_vmm[@]}" --append "console=ttyS0 $net_b" --bridge "$W/bridge.sock" --zone 2 \
        <"$W/b.in" >"$W/b.log" 2>"$W/b.err" &
    pids+=($!)
    b_pid=$!
    exec 7>"$W/b.in"
    type_line &
    pids+=($!)
    # Guest A from a JSON configuration (docs/vmm.md), which selects the machine itself.
    cat >"$W/a.json" <<JSON
{"arch": "riscv64", "kernel": "$kernel", "initrd": "$W/initrd.cpio", "harts": $harts,
 "append": "$common_a $net_a", "bridge": "$W/bridge.sock", "zone": 1, "timeout": 240,
 "stats": true, "devices": [{"type": "rng"}]}
JSON
    rc_a=0
    "$vmm" --config "$W/a.json" --serial "$W/a.log" 2>"$W/a.err" || rc_a=$?
fi
rc_b=0
wait "$b_pid" || rc_b=$?
grep -a 'vireo-init\|vireo-vmm' "$W/a.log" "$W/a.err" "$W/b.log" "$W/b.err" | grep -av cpuinfo || true

failed=0
check() { # check DESCRIPTION COMMAND...
    if "${@:2}" >/dev/null 2>&1; then
        echo "linux_e2e: ok   $1"
    else
        echo "linux_e2e: FAIL $1"
        failed=1
    fi
}
check "guest A exit status 0 (was $rc_a)" test "$rc_a" = 0
check "guest B exit status 0 (was $rc_b)" test "$rc_b" = 0
check "A: no failed check" grep -aq 'vireo-init: 0 failure(s)' "$W/a.log"
check "B: no failed check" grep -aq 'vireo-init: 0 failure(s)' "$W/b.log"
check "A: blk pattern read back" grep -aq 'blk wrote and read back 4 MiB.*, 0 bad words' "$W/a.log"
check "A: ext4 file from the host" grep -aq "/mnt/hello.txt: hello from the host's mkfs.ext4" "$W/a.log"
check "A: hwrng gave 64 bytes, not all zero" \
    bash -c "grep -aq 'hwrng read 64 bytes' '$W/a.log' && ! grep -aq 'all zero' '$W/a.log'"
check "A: 200/200 UDP echoes through $mode networking" grep -aq 'net echoed 200/200' "$W/a.log"
# At least 200: A resends a datagram whose echo it missed (an ARP exchange, a full queue).
served=$(grep -aoE 'net served [0-9]+ echoes' "$W/b.log" | grep -oE '[0-9]+' || echo 0)
check "B: served the echoes ($served)" test "$served" -ge 200
check "virtio-console output on the host" grep -q 'vireo-console: hello from riscv64' "$W/hvc.txt"
check "B: read the line typed on its serial console" grep -aq "uart read 'vireo-uart-ping'" "$W/b.log"
# The host's view of what the guest left on its disks.
check "image holds the guest's pattern" python3 - "$W/a.img" <<'PY'
import sys
M = (1 << 64) - 1
s = 0x9E3779B97F4A7C15
words = []
for _ in range(4 * 1024 * 1024 // 8):
    s ^= (s << 13) & M
    s ^= s >> 7
    s ^= (s << 17) & M
    words.append(s)
want = b"".join(w.to_bytes(8, "little") for w in words)
with open(sys.argv[1], "rb") as f:
    sys.exit(0 if f.read(len(want)) == want else 1)
PY
check "ext4 image is clean (e2fsck -fn)" e2fsck -fn "$W/ext4.img"
check "the guest's file is in the ext4 image" \
    bash -c "debugfs -R 'cat /guest.txt' '$W/ext4.img' 2>/dev/null | grep -q 'written by the riscv64 guest'"
if ((failed)); then
    exit 1
fi
echo "linux_e2e: PASS ($mode, $harts hart(s), $ring ring)"
