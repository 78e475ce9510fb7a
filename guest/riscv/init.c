// /init of the RISC-V Linux test initramfs (scripts/build-riscv-initramfs.sh): reports what
// the kernel found on vireo's virtio-mmio devices, then powers the machine off (sifive_test via
// SBI SRST), so a boot test ends with the machine.
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <unistd.h>

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

int main(void) {
    mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
    mount("proc", "/proc", "proc", 0, NULL);
    mount("sysfs", "/sys", "sysfs", 0, NULL);
    int con = open("/dev/console", O_RDWR);
    if (con >= 0) {
        dup2(con, 1);
        dup2(con, 2);
    }
    printf("vireo-init: hello from riscv64 Linux userspace\n");
    show_file("/proc/cpuinfo");
    show_file("/sys/block/vda/size");
    // virtio-rng: a few bytes from /dev/hwrng.
    int rng = open("/dev/hwrng", O_RDONLY);
    if (rng >= 0) {
        unsigned char b[8];
        ssize_t n = read(rng, b, sizeof b);
        printf("vireo-init: hwrng read %zd bytes\n", n);
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
    printf("vireo-init: done, powering off\n");
    fflush(stdout);
    sync();
    reboot(RB_POWER_OFF);
    return 0;
}
