#!/usr/bin/env bash
# virtio-vsock over vhost-user (QEMU vhost-user-vsock-pci on `vireo vsock`), both directions:
#  - guest → host: the guest connects to CID 2 port 5000; vireo forwards to the unix socket
#    PREFIX_5000 where socat listens; 1 MiB goes up, sha256-checked on the host;
#  - host → guest: a host program connects to PREFIX, sends "CONNECT 6000", gets "OK <port>",
#    and sends a line the guest (listening on port 6000) echoes back.
# The guest side is socat (copied into the initramfs with its libraries) when the host has it.
# Options: see tests/e2e/lib.sh (--guest qemu).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/devices_lib.sh"
dev_init "$@"
[[ $E2E_GUEST == qemu ]] || vireo_die "vsock_stream needs a QEMU guest"
command -v socat >/dev/null || vireo_die "socat not found (apt-get install socat)"
command -v cc >/dev/null || vireo_die "cc not found"

# The guest's side: a tiny static AF_VSOCK program (no libraries to copy).
cat >"$W/vsock.c" <<'C'
#include <linux/vm_sockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
/* vsock connect CID PORT   : stdin → socket, then shutdown(WR); socket → stdout
   vsock echo PORT          : accept one connection, echo one line back with a prefix */
static int pump(int from, int to) {
    char buf[65536];
    ssize_t n;
    while ((n = read(from, buf, sizeof buf)) > 0)
        for (ssize_t o = 0; o < n;) { ssize_t w = write(to, buf + o, n - o); if (w <= 0) return 1; o += w; }
    return n < 0;
}
int main(int argc, char **argv) {
    int s = socket(AF_VSOCK, SOCK_STREAM, 0);
    if (s < 0) { perror("socket"); return 1; }
    struct sockaddr_vm a; memset(&a, 0, sizeof a); a.svm_family = AF_VSOCK;
    if (argc == 4 && !strcmp(argv[1], "connect")) {
        a.svm_cid = atoi(argv[2]); a.svm_port = atoi(argv[3]);
        if (connect(s, (struct sockaddr *)&a, sizeof a)) { perror("connect"); return 1; }
        if (pump(0, s)) return 1;
        shutdown(s, SHUT_WR);
        return pump(s, 1);
    }
    if (argc == 3 && !strcmp(argv[1], "echo")) {
        a.svm_cid = VMADDR_CID_ANY; a.svm_port = atoi(argv[2]);
        if (bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 1)) { perror("bind"); return 1; }
        printf("VSOCK-LISTENING\n"); fflush(stdout);
        int c = accept(s, NULL, NULL);
        if (c < 0) { perror("accept"); return 1; }
        char line[256]; size_t n = 0; char ch;
        while (n < sizeof line - 1 && read(c, &ch, 1) == 1 && ch != '\n') line[n++] = ch;
        line[n] = 0;
        dprintf(c, "guest-echo:%s\n", line);
        printf("VIREO-VALUE: echo_in=%s\n", line);
        close(c);
        return 0;
    }
    return 2;
}
C
cc -O2 -static -o "$W/vsock" "$W/vsock.c" || vireo_die "cannot build the guest vsock program"

head -c $((1 << 20)) /dev/urandom >"$W/up.bin"
dev_vireo "$W/vireo.log" "$W/vsock.sock" "$W/vh" -- vsock --socket-path "$W/vsock.sock" --guest-cid 3 --uds-path "$W/vh"
# guest → host listener on PREFIX_5000.
timeout 120 socat -u "UNIX-LISTEN:$W/vh_5000" "OPEN:$W/up.rx,creat,trunc" &
up=$!

cat >"$W/guest.sh" <<'GUEST'
i=0
while [ ! -e /sys/class/misc/vsock ] && [ ! -c /dev/vsock ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
/vireo/vsock connect 2 5000 </vireo/up.bin >/dev/null && vt_pass guest-to-host || vt_fail guest-to-host
vt_value up_hash "$(sha256sum </vireo/up.bin | cut -d' ' -f1)"
timeout 60 /vireo/vsock echo 6000 && vt_pass host-to-guest || vt_fail host-to-guest
GUEST

dev_guest_bg g qemu "$W/guest.sh" --mem 512 --timeout 120 --file "$W/vsock" --file "$W/up.bin" \
    --qemu-arg -chardev --qemu-arg "socket,id=vs0,path=$W/vsock.sock" \
    --qemu-arg -device --qemu-arg vhost-user-vsock-pci,chardev=vs0
# Host → guest once the guest listens: CONNECT handshake on PREFIX, then one line.
for _ in $(seq 1 900); do
    grep -q -e VSOCK-LISTENING -e VIREO-EXIT "$W/guest-g.log" 2>/dev/null && break
    sleep 0.1
done
(printf 'CONNECT 6000\nhello-guest\n'; sleep 5) | timeout 30 socat - "UNIX-CONNECT:$W/vh" >"$W/down.out" 2>"$W/socat.log" || true
dev_guest_wait g || true
wait "$up" 2>/dev/null || true

e2e_eq up-hash "$(sha256sum <"$W/up.bin" | cut -d' ' -f1)" "$(sha256sum <"$W/up.rx" | cut -d' ' -f1)"
e2e_check handshake-ok grep -q '^OK [0-9]' "$W/down.out"
e2e_check host-got-echo grep -q '^guest-echo:hello-guest' "$W/down.out"
e2e_eq guest-got-line hello-guest "$(dev_value g echo_in)"
e2e_finish
