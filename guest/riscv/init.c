// /init of the RISC-V Linux test initramfs (scripts/build-riscv-initramfs.sh): exercises vireo's
// virtio-mmio devices from a real Linux guest, prints one "vireo-init: ..." line per result, then
// powers the machine off (sifive_test via SBI SRST), so a boot test ends with the machine.
//
// What runs is chosen on the kernel command line (read from /proc/cmdline):
//   vt_blk=1             write VT_BLK_MIB MiB of a seeded pattern to /dev/vda with O_DIRECT, read
//                        it back and compare; the host checks the image afterwards
//                        (tests/riscv/linux_e2e.sh regenerates the same pattern)
//   vt_ext4=DEV          mount DEV as ext4, print /mnt/hello.txt, write /mnt/guest.txt
//   vt_console=1         write a line to /dev/hvc0 (virtio-console)
//   vt_net=ROLE          ROLE a: send VT_NET_COUNT UDP datagrams to vt_peer and check each echo;
//                        ROLE b: echo datagrams until "bye". vt_ip=ADDR configures eth0 (/24).
//   vt_lat=N             time N 4 KiB O_DIRECT reads of /dev/vda (guest-visible blk latency)
//   vt_uart=1            read a line typed on the serial console (ttyS0 = the VMM's stdin)
// Without options it only reports what the kernel found (the smoke test of linux_boot.sh).
// Every check prints "vireo-init: FAIL <what>" on failure; the host greps for it.
#define _GNU_SOURCE  // O_DIRECT
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <poll.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

enum { kBlkMib = 4, kNetCount = 200, kNetPayload = 1024, kNetPort = 7000 };

static int failures;

static void fail(const char* what) {
    printf("vireo-init: FAIL %s (errno %d: %s)\n", what, errno, strerror(errno));
    failures++;
}

static void show_file(const char* path) {
    char buf[512];
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        printf("vireo-init: %s: absent\n", path);
        return;
    }
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    buf[n > 0 ? n : 0] = 0;
    printf("vireo-init: %s: %s", path, buf);
    if (n <= 0 || buf[n - 1] != '\n') printf("\n");
}

// The value of `key=` on the kernel command line (a copy), or NULL.
static char cmdline[1024];
static const char* opt(const char* key) {
    char val[128];
    size_t klen = strlen(key);
    for (char* p = cmdline; *p;) {
        while (*p == ' ' || *p == '\n') p++;
        char* end = p + strcspn(p, " \n");
        if ((size_t)(end - p) > klen && strncmp(p, key, klen) == 0 && p[klen] == '=') {
            size_t n = (size_t)(end - p) - klen - 1;
            if (n >= sizeof val) n = sizeof val - 1;
            memcpy(val, p + klen + 1, n);
            val[n] = 0;
            return strdup(val);
        }
        p = end;
    }
    return NULL;
}

// The system call, not the vDSO: Debian's 6.1 riscv64 vDSO calls cpu_relax() while the
// timekeeping seqlock is odd (another CPU updating it), and its cpu_relax() tests a static key
// through an unrelocated GOT entry (R_RISCV_64 riscv_isa_ext_keys, 0 in the vDSO): a NULL load,
// SIGSEGV at vdso+0x8ca. SMP guests hit it now and then; it is a guest kernel bug.
static double now_s(void) {
    struct timespec ts;
    syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

// The disk pattern: xorshift64 words from a seed, so the host regenerates it (linux_e2e.sh).
static uint64_t xorshift(uint64_t* s) {
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static void test_blk(void) {
    const size_t chunk = 1u << 20;
    uint64_t* buf = NULL;
    uint64_t* back = NULL;
    if (posix_memalign((void**)&buf, 4096, chunk) || posix_memalign((void**)&back, 4096, chunk)) {
        fail("blk: memory");
        return;
    }
    int fd = open("/dev/vda", O_RDWR | O_DIRECT);
    if (fd < 0) {
        fail("blk: open /dev/vda");
        return;
    }
    uint64_t seed = 0x9e3779b97f4a7c15ull, check = seed;
    uint64_t sum = 0;
    const double t0 = now_s();
    for (int m = 0; m < kBlkMib; m++) {
        for (size_t i = 0; i < chunk / 8; i++) sum += buf[i] = xorshift(&seed);
        if (pwrite(fd, buf, chunk, (off_t)m * chunk) != (ssize_t)chunk) fail("blk: write");
    }
    if (fsync(fd) != 0) fail("blk: fsync");
    const double t1 = now_s();
    size_t bad = 0;
    for (int m = 0; m < kBlkMib; m++) {
        if (pread(fd, back, chunk, (off_t)m * chunk) != (ssize_t)chunk) fail("blk: read");
        for (size_t i = 0; i < chunk / 8; i++) bad += back[i] != xorshift(&check);
    }
    const double t2 = now_s();
    close(fd);
    printf("vireo-init: blk wrote and read back %d MiB, sum %016llx, %zu bad words\n", kBlkMib,
           (unsigned long long)sum, bad);
    // 1 MiB requests, pattern generation and checking included (the guest CPU is emulated).
    printf("vireo-init: blk write %.1f MB/s, read %.1f MB/s\n", kBlkMib * 1.048576 / (t1 - t0),
           kBlkMib * 1.048576 / (t2 - t1));
    if (bad) fail("blk: read-back differs");
    free(buf);
    free(back);
}

static void test_blk_latency(int n) {
    void* buf = NULL;
    if (posix_memalign(&buf, 4096, 4096)) return;
    int fd = open("/dev/vda", O_RDONLY | O_DIRECT);
    if (fd < 0) {
        fail("lat: open /dev/vda");
        return;
    }
    double t0 = now_s();
    uint64_t s = 12345;
    for (int i = 0; i < n; i++) {
        off_t off = (off_t)(xorshift(&s) % 1024) * 4096;  // within the first 4 MiB
        if (pread(fd, buf, 4096, off) != 4096) {
            fail("lat: read");
            break;
        }
    }
    double dt = now_s() - t0;
    close(fd);
    printf("vireo-init: lat %d reads of 4 KiB in %.3f s: %.1f us per read\n", n, dt, dt * 1e6 / n);
    free(buf);
}

static void test_ext4(const char* dev) {
    mkdir("/mnt", 0755);
    if (mount(dev, "/mnt", "ext4", 0, NULL) != 0) {
        fail("ext4: mount");
        return;
    }
    show_file("/mnt/hello.txt");
    int fd = open("/mnt/guest.txt", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const char msg[] = "written by the riscv64 guest on vireo\n";
    if (fd < 0 || write(fd, msg, sizeof msg - 1) != (ssize_t)(sizeof msg - 1) || fsync(fd) != 0) {
        fail("ext4: write /mnt/guest.txt");
    }
    if (fd >= 0) close(fd);
    if (umount("/mnt") != 0) fail("ext4: umount");
    printf("vireo-init: ext4 %s mounted, written, unmounted\n", dev);
}

static void test_console(void) {
    int fd = open("/dev/hvc0", O_WRONLY | O_NOCTTY);
    const char msg[] = "vireo-console: hello from riscv64 Linux through virtio-console\n";
    if (fd < 0 || write(fd, msg, sizeof msg - 1) != (ssize_t)(sizeof msg - 1)) {
        fail("console: write /dev/hvc0");
    } else {
        printf("vireo-init: console wrote %zu bytes to /dev/hvc0\n", sizeof msg - 1);
    }
    if (fd >= 0) close(fd);
}

// The 8250 driver takes the line through the UART's receive interrupt (PLIC source 10); the
// host sends it once this prints "waiting" (input sent earlier would be flushed by the driver's
// FIFO reset, as on real hardware).
static void test_uart(int con) {
    printf("vireo-init: uart waiting for a line\n");
    struct pollfd p = {con, POLLIN, 0};
    if (poll(&p, 1, 60000) != 1) {
        fail("uart: no line on ttyS0 within 60 s");
        return;
    }
    char line[128];
    ssize_t n = read(con, line, sizeof line - 1);  // canonical mode: one line
    if (n <= 0) {
        fail("uart: read ttyS0");
        return;
    }
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) n--;
    line[n] = 0;
    printf("vireo-init: uart read '%s'\n", line);
}

static int if_up(const char* ip) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, "eth0");
    struct sockaddr_in* a = (struct sockaddr_in*)&ifr.ifr_addr;
    a->sin_family = AF_INET;
    inet_pton(AF_INET, ip, &a->sin_addr);
    if (ioctl(s, SIOCSIFADDR, &ifr) != 0) return fail("net: SIOCSIFADDR"), -1;
    inet_pton(AF_INET, "255.255.255.0", &a->sin_addr);
    if (ioctl(s, SIOCSIFNETMASK, &ifr) != 0) return fail("net: SIOCSIFNETMASK"), -1;
    if (ioctl(s, SIOCGIFFLAGS, &ifr) != 0) return fail("net: SIOCGIFFLAGS"), -1;
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) != 0) return fail("net: SIOCSIFFLAGS"), -1;
    close(s);
    return 0;
}

static void if_down(void) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, "eth0");
    if (ioctl(s, SIOCGIFFLAGS, &ifr) == 0) {
        ifr.ifr_flags &= ~IFF_UP;
        if (ioctl(s, SIOCSIFFLAGS, &ifr) != 0) fail("net: interface down");
    }
    close(s);
}

static void fill(unsigned char* p, uint32_t seq) {
    memcpy(p, &seq, 4);
    for (int i = 4; i < kNetPayload; i++) p[i] = (unsigned char)(seq * 31 + i);
}

// Role a: stop-and-wait, each datagram retried until its echo arrives (ARP, lost frames).
static void net_client(int s, const struct sockaddr_in* peer) {
    unsigned char out[kNetPayload], in[kNetPayload];
    int ok = 0, resent = 0;
    double t0 = now_s();
    for (uint32_t seq = 0; seq < kNetCount; seq++) {
        fill(out, seq);
        int got = 0;
        for (int tries = 0; tries < 100 && !got; tries++) {
            if (tries) resent++;
            sendto(s, out, sizeof out, 0, (const struct sockaddr*)peer, sizeof *peer);
            ssize_t n;
            while ((n = recv(s, in, sizeof in, 0)) > 0) {
                if (n == kNetPayload && memcmp(in, out, sizeof out) == 0) {
                    got = 1;
                    break;
                }
            }
        }
        if (!got) break;
        ok++;
    }
    double dt = now_s() - t0;
    printf("vireo-init: net echoed %d/%d datagrams of %d bytes in %.2f s (%d resent)\n", ok,
           kNetCount, kNetPayload, dt, resent);
    if (ok != kNetCount) fail("net: echoes missing");
    for (int i = 0; i < 5; i++) sendto(s, "bye", 3, 0, (const struct sockaddr*)peer, sizeof *peer);
}

static void net_server(int s) {
    unsigned char in[kNetPayload];
    int served = 0;
    const double t0 = now_s(), deadline = t0 + 120;
    while (now_s() < deadline) {
        struct sockaddr_in from;
        socklen_t fl = sizeof from;
        ssize_t n = recvfrom(s, in, sizeof in, 0, (struct sockaddr*)&from, &fl);
        if (n == 3 && memcmp(in, "bye", 3) == 0) {
            // The peer sends several: take the rest while the socket is still open, so none
            // of them is answered with an ICMP error while this guest shuts down.
            while (recv(s, in, sizeof in, 0) > 0) {
            }
            break;
        }
        if (n > 0) {
            sendto(s, in, (size_t)n, 0, (struct sockaddr*)&from, fl);
            served++;
        }
    }
    printf("vireo-init: net served %d echoes in %.2f s\n", served, now_s() - t0);
    if (served < kNetCount) fail("net: too few datagrams");
}

static void test_net(const char* role) {
    const char* ip = opt("vt_ip");
    const char* peer_ip = opt("vt_peer");
    if (!ip || if_up(ip) != 0) {
        fail("net: vt_ip");
        return;
    }
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct timeval tv = {0, 200000};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in me = {.sin_family = AF_INET, .sin_port = htons(kNetPort)};
    if (bind(s, (struct sockaddr*)&me, sizeof me) != 0) {
        fail("net: bind");
        return;
    }
    if (strcmp(role, "a") == 0) {
        struct sockaddr_in peer = {.sin_family = AF_INET, .sin_port = htons(kNetPort)};
        if (!peer_ip || inet_pton(AF_INET, peer_ip, &peer.sin_addr) != 1) {
            fail("net: vt_peer");
            return;
        }
        net_client(s, &peer);
    } else {
        net_server(s);
    }
    close(s);
    show_file("/sys/class/net/eth0/statistics/rx_packets");
    // Quiesce the interface before powering off. Linux 6.1.y marks virtqueues broken on
    // shutdown (virtio_dev_shutdown), and virtio_net's start_xmit then spins for ever in its
    // free_old_xmit_skbs / virtqueue_enable_cb_delayed loop if a packet (an ICMP error for a
    // late datagram, an ARP reply) is sent after that: a guest hang seen here in ~1 of 30 runs.
    if_down();
}

int main(void) {
    mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
    mount("proc", "/proc", "proc", 0, NULL);
    mount("sysfs", "/sys", "sysfs", 0, NULL);
    int con = open("/dev/console", O_RDWR);
    if (con >= 0) {
        dup2(con, 1);
        dup2(con, 2);
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    int fd = open("/proc/cmdline", O_RDONLY);
    if (fd >= 0) {
        ssize_t n = read(fd, cmdline, sizeof cmdline - 1);
        cmdline[n > 0 ? n : 0] = 0;
        close(fd);
    }
    printf("vireo-init: hello from riscv64 Linux userspace\n");
    show_file("/proc/uptime");  // boot-to-init time (bench/riscv_boot.sh)
    show_file("/proc/cpuinfo");
    show_file("/sys/block/vda/size");
    // virtio-rng: a few bytes from /dev/hwrng.
    int rng = open("/dev/hwrng", O_RDONLY);
    if (rng >= 0) {
        unsigned char b[64];
        ssize_t n = read(rng, b, sizeof b);
        int nonzero = 0;
        for (ssize_t i = 0; i < n; i++) nonzero |= b[i];
        printf("vireo-init: hwrng read %zd bytes%s\n", n,
               n > 0 && !nonzero ? " (all zero!)" : "");
        close(rng);
    }
    // The first sector of the virtio disk.
    int blk = open("/dev/vda", O_RDONLY);
    if (blk >= 0) {
        char sec[512];
        ssize_t n = read(blk, sec, sizeof sec);
        sec[16] = 0;
        printf("vireo-init: vda read %zd bytes: '%s'\n", n, n > 0 ? sec : "");
        close(blk);
    }
    const char* v;
    if ((v = opt("vt_blk")) && strcmp(v, "1") == 0) test_blk();
    if ((v = opt("vt_lat"))) test_blk_latency(atoi(v));
    if ((v = opt("vt_ext4"))) test_ext4(v);
    if ((v = opt("vt_console")) && strcmp(v, "1") == 0) test_console();
    if ((v = opt("vt_uart")) && strcmp(v, "1") == 0) test_uart(con);
    if ((v = opt("vt_net"))) test_net(v);
    printf("vireo-init: %d failure(s)\n", failures);
    printf("vireo-init: done, powering off\n");
    fflush(stdout);
    sync();
    reboot(RB_POWER_OFF);
    return 0;
}
