#!/usr/bin/env bash
# virtio-net across guest kinds: a QEMU guest (virtio-net-pci over -netdev vhost-user, memfd
# guest RAM) and a UML guest (virtio_uml) on one vireo switch ping each other, and the QEMU
# guest pulls 4 MiB from the UML guest (sha256). Options: see tests/e2e/lib.sh.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/devices_lib.sh"
dev_init "$@"

cat >"$W/vireo.json" <<JSON
{"devices": [
  {"type": "net", "socket_path": "$W/q.sock", "switch": "mixed", "mac": "52:54:00:00:02:01"},
  {"type": "net", "socket_path": "$W/u.sock", "switch": "mixed", "mac": "52:54:00:00:02:02"}
]}
JSON

{
    echo "$DEV_GUEST_NET_PRELUDE"
    cat <<'GUEST'
dev=$(net_up 10.2.0.2/24) && vt_pass link-up "$dev" || vt_fail link-up
$DD if=/dev/urandom of=/tmp/tx bs=1M count=4 status=none
vt_value tx_hash "$(sha256sum </tmp/tx | cut -d' ' -f1)"
# Serve the file once, then wait (bounded) until the QEMU guest has pinged us.
nc -l -p 7001 </tmp/tx >/dev/null
ping_until 10.2.0.1 20 && vt_pass ping-qemu || vt_fail ping-qemu
GUEST
} >"$W/uml.sh"

{
    echo "$DEV_GUEST_NET_PRELUDE"
    cat <<'GUEST'
dev=$(net_up 10.2.0.1/24) && vt_pass link-up "$dev" || vt_fail link-up
ping_until 10.2.0.2 90 && vt_pass ping-uml || vt_fail ping-uml
for i in $(seq 1 60); do
    nc 10.2.0.2 7001 >/tmp/rx && [ -s /tmp/rx ] && break
    sleep 0.5
done
vt_value rx_hash "$(sha256sum </tmp/rx | cut -d' ' -f1)"
GUEST
} >"$W/qemu.sh"

# vectors=0: Debian's QEMU 7.2 segfaults in vhost_net_start -> msix_set_vector_notifiers when
# the guest's virtio-net uses MSI-X with a vhost-user back end (seen under gdb; the back end has
# only exchanged GET_FEATURES/SET_VRING_* by then). INTx avoids QEMU's crashing path; vireo's
# data path is the same either way.
dev_vireo "$W/vireo.log" "$W/q.sock" "$W/u.sock" -- run "$W/vireo.json"
dev_guest_bg q qemu "$W/qemu.sh" --mem 512 --timeout ${NET_QEMU_TIMEOUT:-150} \
    --qemu-arg -chardev --qemu-arg "socket,id=cn,path=$W/q.sock" \
    --qemu-arg -netdev --qemu-arg vhost-user,id=n0,chardev=cn \
    --qemu-arg -device --qemu-arg virtio-net-pci,netdev=n0,mac=52:54:00:00:02:01,vectors=0
dev_guest_bg u uml "$W/uml.sh" --uml-arg "virtio_uml.device=$W/u.sock:1" --mem 256 --timeout ${NET_QEMU_TIMEOUT:-150}
dev_guest_wait q || true
dev_guest_wait u || true
e2e_eq uml-to-qemu "$(dev_value u tx_hash)" "$(dev_value q rx_hash)"
e2e_finish
