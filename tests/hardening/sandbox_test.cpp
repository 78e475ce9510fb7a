// The seccomp allow-lists (src/sandbox): a forbidden system call kills the process with SIGSYS,
// allowed ones keep working, and capabilities are gone after drop_capabilities(). Each case runs
// in a forked child, since a filter cannot be removed once installed.
#include "sandbox/sandbox.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <linux/kvm.h>
#include <netinet/in.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <functional>

namespace {

using vireo::sandbox::ThreadClass;

// Runs `body` in a child after installing `cls` (and, for workers, the process filter first, as
// the daemon stacks them; vireo-vmm's list alone, as the VMM installs it). Returns the child's
// wait status.
int run_confined(ThreadClass cls, const std::function<int()>& body) {
    const pid_t pid = ::fork();
    if (pid == 0) {
        const ThreadClass process = cls == ThreadClass::kVmm ? cls : ThreadClass::kProcess;
        if (!vireo::sandbox::install(process)) {
            ::_exit(100);
        }
        if (cls == ThreadClass::kQueueWorker && !vireo::sandbox::install(cls)) {
            ::_exit(101);
        }
        ::_exit(body());  // _exit: no at-exit handlers (sanitizer reports) in the child
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    return status;
}

bool killed_by_sigsys(int status) {
    return WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS;
}

TEST(Sandbox, AllowedCallsStillWork) {
    const int st = run_confined(ThreadClass::kProcess, [] {
        const int efd = ::eventfd(0, EFD_CLOEXEC);
        const int sock = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        void* p =
            ::mmap(nullptr, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        const bool ok = efd >= 0 && ::eventfd_write(efd, 1) == 0 && sock >= 0 && p != MAP_FAILED &&
                        ::write(STDOUT_FILENO, "", 0) == 0;
        return ok ? 0 : 1;
    });
    ASSERT_TRUE(WIFEXITED(st)) << "status " << st;
    EXPECT_EQ(WEXITSTATUS(st), 0);
}

TEST(Sandbox, OpeningFilesIsRefused) {
#if defined(__SANITIZE_ADDRESS__)
    GTEST_SKIP() << "sanitizer builds allow openat for the ASan runtime (src/sandbox)";
#endif
    // Refused with EACCES rather than fatal: glibc's malloc may open a /proc file by itself.
    const int st = run_confined(ThreadClass::kProcess, [] {
        const int fd = ::open("/etc/hostname", O_RDONLY);
        return fd < 0 && errno == EACCES ? 0 : 1;
    });
    ASSERT_TRUE(WIFEXITED(st)) << "status " << st;
    EXPECT_EQ(WEXITSTATUS(st), 0);
}

TEST(Sandbox, ExecKillsTheProcess) {
    const int st = run_confined(ThreadClass::kProcess, [] {
        char* const argv[] = {const_cast<char*>("/bin/true"), nullptr};
        ::execve("/bin/true", argv, nullptr);
        return 1;
    });
    EXPECT_TRUE(killed_by_sigsys(st)) << "status " << st;
}

TEST(Sandbox, NetworkSocketsKillTheProcessUnixSocketsDoNot) {
    const int inet = run_confined(ThreadClass::kProcess,
                                  [] { return ::socket(AF_INET, SOCK_STREAM, 0) >= 0 ? 0 : 1; });
    EXPECT_TRUE(killed_by_sigsys(inet)) << "status " << inet;
    const int unix_ok = run_confined(ThreadClass::kProcess,
                                     [] { return ::socket(AF_UNIX, SOCK_STREAM, 0) >= 0 ? 0 : 1; });
    ASSERT_TRUE(WIFEXITED(unix_ok));
    EXPECT_EQ(WEXITSTATUS(unix_ok), 0);
}

TEST(Sandbox, QueueWorkersCannotCreateMemfds) {
    const int st = run_confined(ThreadClass::kQueueWorker,
                                [] { return ::syscall(SYS_memfd_create, "x", 0) >= 0 ? 0 : 1; });
    EXPECT_TRUE(killed_by_sigsys(st)) << "status " << st;
    // The event loop (process filter only) may.
    const int loop = run_confined(ThreadClass::kProcess,
                                  [] { return ::syscall(SYS_memfd_create, "x", 0) >= 0 ? 0 : 1; });
    ASSERT_TRUE(WIFEXITED(loop));
    EXPECT_EQ(WEXITSTATUS(loop), 0);
}

// vireo-vmm's list: what a running VM does works (on fds that are not KVM's, the kernel answers
// ENOTTY/EBADF: the filter let the call through); building VMs, vCPUs or memory slots, exec and
// network sockets kill the process.
TEST(Sandbox, VmmRunsVcpusAndInjectsInterruptsButBuildsNothing) {
    const int st = run_confined(ThreadClass::kVmm, [] {
        const int efd = ::eventfd(0, EFD_CLOEXEC);
        const bool ok = efd >= 0 && ::eventfd_write(efd, 1) == 0 &&
#if defined(__x86_64__)
                        ::ioctl(efd, KVM_RUN, 0) < 0 && errno == ENOTTY &&
                        ::ioctl(efd, KVM_IRQ_LINE, nullptr) < 0 && errno == ENOTTY &&
                        ::ioctl(efd, KVM_IOEVENTFD, nullptr) < 0 && errno == ENOTTY &&
                        ::ioctl(efd, KVM_SET_REGS, nullptr) < 0 && errno == ENOTTY &&
                        // KVM_SET_GSI_ROUTING as the VMM computes it (src/vmm/kvm.hpp).
                        ::ioctl(efd, 0x4008ae6aUL, nullptr) < 0 && errno == ENOTTY &&
#endif
                        ::ioctl(efd, FIONREAD, nullptr) < 0 &&
                        ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0) >= 0;
        return ok ? 0 : 1;
    });
    ASSERT_TRUE(WIFEXITED(st)) << "status " << st;
    EXPECT_EQ(WEXITSTATUS(st), 0);
    for (const unsigned long req :
         {static_cast<unsigned long>(KVM_CREATE_VM), static_cast<unsigned long>(KVM_CREATE_VCPU),
          static_cast<unsigned long>(KVM_SET_USER_MEMORY_REGION),
          static_cast<unsigned long>(KVM_CHECK_EXTENSION)}) {
        const int bad = run_confined(ThreadClass::kVmm, [req] { return ::ioctl(-1, req, 0); });
        EXPECT_TRUE(killed_by_sigsys(bad)) << std::hex << req << " status " << bad;
    }
    const int exec = run_confined(ThreadClass::kVmm, [] {
        char* const argv[] = {const_cast<char*>("/bin/true"), nullptr};
        ::execve("/bin/true", argv, nullptr);
        return 1;
    });
    EXPECT_TRUE(killed_by_sigsys(exec)) << "status " << exec;
    const int inet = run_confined(ThreadClass::kVmm,
                                  [] { return ::socket(AF_INET, SOCK_STREAM, 0) >= 0 ? 0 : 1; });
    EXPECT_TRUE(killed_by_sigsys(inet)) << "status " << inet;
}

TEST(Sandbox, TheDaemonsOwnKvmIoctlsAreNotAllowed) {
#if !defined(__x86_64__)
    GTEST_SKIP() << "vireo-vmm's KVM list is x86-64 only";
#endif
    // KVM_RUN is vireo-vmm's, not the daemon's.
    const int st = run_confined(ThreadClass::kProcess, [] { return ::ioctl(-1, KVM_RUN, 0); });
    EXPECT_TRUE(killed_by_sigsys(st)) << "status " << st;
}

TEST(Sandbox, VmmCannotCreateMemfds) {
    // Its RAM memfd is made during setup; only a vhost-user daemon makes inflight areas later.
    const int st = run_confined(ThreadClass::kVmm,
                                [] { return ::syscall(SYS_memfd_create, "x", 0) >= 0 ? 0 : 1; });
    EXPECT_TRUE(killed_by_sigsys(st)) << "status " << st;
}

TEST(Sandbox, DropCapabilitiesLeavesNone) {
    const pid_t pid = ::fork();
    if (pid == 0) {
        if (!vireo::sandbox::drop_capabilities()) {
            ::_exit(2);
        }
        __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
        __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3]{};
        if (::syscall(SYS_capget, &hdr, data) != 0) {
            ::_exit(3);
        }
        for (const auto& d : data) {
            if (d.effective != 0 || d.permitted != 0 || d.inheritable != 0) {
                ::_exit(4);
            }
        }
        ::_exit(0);
    }
    int st = 0;
    ::waitpid(pid, &st, 0);
    ASSERT_TRUE(WIFEXITED(st));
    EXPECT_EQ(WEXITSTATUS(st), 0);
}

}  // namespace
