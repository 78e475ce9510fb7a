#include "sandbox/sandbox.hpp"

#include <fmt/format.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/if_tun.h>
#include <linux/kvm.h>
#include <linux/seccomp.h>
#include <pwd.h>
#include <seccomp.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <memory>
#include <optional>
#include <vector>

namespace vireo::sandbox {
namespace {

// Which filters allow a call.
enum Who : unsigned {
    kWorker = 1u << 0,  // ring workers (and the I/O engines they own)
    kDaemon = 1u << 1,  // the daemon's process-wide filter (its event loop)
    kVmm = 1u << 2,     // vireo-vmm's process-wide filter (vCPU/hart threads, device models)
    kProcessWide = kDaemon | kVmm,  // either process-wide filter, no ring worker
    kAll = kWorker | kDaemon | kVmm,
};

struct Rule {
    const char* name;  // resolved with seccomp_syscall_resolve_name: no per-arch tables here
    unsigned who;
};

// The allow-list. Grouped by purpose; docs/security.md explains each group. Calls the C/C++
// runtime makes on its own (malloc, threads, abort) are included: they cannot be avoided.
constexpr Rule kRules[] = {
    // Memory: allocator, thread stacks, guest memory tables (SET_MEM_TABLE maps the front end's
    // memfds on the loop thread; workers only allocate).
    {"brk", kAll},
    {"mmap", kAll},
    {"munmap", kAll},
    {"mremap", kAll},
    {"mprotect", kAll},
    {"madvise", kAll},
    // Threads, synchronisation, signals, exit.
    {"futex", kAll},
    {"clone", kProcessWide},
    {"clone3", kProcessWide},
    {"set_robust_list", kAll},
    {"rseq", kAll},
    {"sched_yield", kAll},
    {"sched_getaffinity", kAll},
    {"gettid", kAll},
    {"getpid", kAll},
    {"tgkill", kAll},
    {"rt_sigprocmask", kAll},
    {"rt_sigreturn", kAll},
    {"sigaltstack", kAll},
    {"rt_sigaction", kAll},
    {"restart_syscall", kAll},
    {"exit", kAll},
    {"exit_group", kAll},
    // File descriptors the process already holds: images, eventfds, sockets, memfds, ptys.
    {"read", kAll},
    {"write", kAll},
    {"readv", kAll},
    {"writev", kAll},
    {"pread64", kAll},
    {"pwrite64", kAll},
    {"preadv", kAll},
    {"pwritev", kAll},
    {"preadv2", kAll},
    {"pwritev2", kAll},
    {"close", kAll},
    {"dup", kAll},
    {"dup3", kAll},
    {"fcntl", kAll},
    {"fstat", kAll},
    {"newfstatat", kAll},
    {"stat", kAll},
    {"lstat", kAll},
    {"statx", kAll},
    {"lseek", kAll},
    {"fsync", kAll},
    {"fdatasync", kAll},
    {"fallocate", kAll},
    // Inflight areas (GET_INFLIGHT_FD): a new memfd sized with ftruncate. vireo-vmm creates its
    // RAM memfd during setup and no vhost-user front end talks to it: not on its list.
    {"memfd_create", kDaemon},
    {"ftruncate", kDaemon},
    // Waiting.
    {"poll", kAll},
    {"ppoll", kAll},
    {"epoll_wait", kAll},
    {"epoll_pwait", kAll},
    {"epoll_ctl", kAll},
    {"epoll_create1", kAll},
    {"eventfd2", kAll},
    // The bridge server's signalfd is made when its loop starts (after confinement).
    {"signalfd4", kDaemon},
    {"timerfd_create", kAll},
    {"timerfd_settime", kAll},
    {"timerfd_gettime", kAll},
    {"nanosleep", kAll},
    {"clock_nanosleep", kAll},
    {"clock_gettime", kAll},
    {"gettimeofday", kAll},
    // Sockets on fds already open: vhost-user (with SCM_RIGHTS), console and vsock host sides.
    // socket() itself is allowed below for AF_UNIX only (vsock connects to host services).
    {"recvmsg", kAll},
    {"sendmsg", kAll},
    {"recvfrom", kAll},
    {"sendto", kAll},
    {"shutdown", kAll},
    {"connect", kAll},
    {"getsockopt", kAll},
    {"setsockopt", kAll},
    {"getsockname", kAll},
    {"getpeername", kAll},
    {"accept4", kAll},
    {"accept", kAll},
    // io_uring engine: one ring per queue, created when the queue starts.
    {"io_uring_setup", kAll},
    {"io_uring_enter", kAll},
    {"io_uring_register", kAll},
    // rng device, and the socket files removed at shutdown (the daemon's vhost-user sockets, a
    // console's host-side socket in either process).
    {"getrandom", kAll},
    {"unlink", kProcessWide},
    {"unlinkat", kProcessWide},
};

#if defined(__SANITIZE_ADDRESS__)  // GCC
#define VIREO_SANDBOX_ASAN 1
#elif defined(__has_feature)  // clang
#if __has_feature(address_sanitizer)
#define VIREO_SANDBOX_ASAN 1
#endif
#endif

#ifndef VIREO_SANDBOX_ASAN
// Refused with an error rather than fatal (see install()).
constexpr const char* kRefusedCalls[] = {"open", "openat", "openat2", "creat"};
#endif

#ifdef VIREO_SANDBOX_ASAN
// Sanitizer builds only: the runtime reads /proc/self/maps and, at exit, LeakSanitizer stops the
// world with ptrace from a cloned task, which lists /proc/self/task with getdents (the old call on
// x86-64). That task is not a thread of ours: a call the filter kills ends only it, and the exiting
// process then waits for it for ever. Release builds never allow these.
constexpr const char* kSanitizerCalls[] = {
    "openat", "open",     "readlink",   "ptrace", "wait4", "waitid", "getppid",
    "prctl",  "getdents", "getdents64", "pipe2",  "kill",  "clone",  "sched_getaffinity"};
#endif

// ioctl requests a running back end makes: TAP offloads/header size after feature
// negotiation, readiness and terminal queries on console and socket fds.
// The console's terminal is restored (TCSETS) when it shuts down.
constexpr unsigned long kIoctls[] = {TUNSETOFFLOAD, TUNSETVNETHDRSZ, FIONREAD, FIONBIO,
                                     TCGETS,        TCSETS,          TCSETSW,  TIOCGWINSZ};

#if defined(__x86_64__)
// KVM_SET_GSI_ROUTING as vireo-vmm (src/vmm/kvm.hpp) and the kernel compute it, from the
// 8-byte header of struct kvm_irq_routing: linux/kvm.h's macro takes sizeof of the whole struct,
// which a C++ compiler pads to 16 (0x4010ae6a, a request the VMM never makes).
struct KvmIrqRoutingHeader {
    __u32 nr;
    __u32 flags;
};
constexpr unsigned long kKvmSetGsiRouting = _IOW(KVMIO, 0x6a, KvmIrqRoutingHeader);
static_assert(kKvmSetGsiRouting == 0x4008ae6a);

// vireo-vmm (KVM, x86-64): what the vCPU threads and device models do after the guest starts.
// Creating VMs, vCPUs or memory slots, and anything on /dev/kvm itself, are setup only: a
// compromised VMM cannot map more host memory into the guest or build another VM.
constexpr unsigned long kKvmIoctls[] = {
    // vCPU threads: run, and the register dump of a failure or timeout report.
    KVM_RUN,
    KVM_GET_REGS,
    // An AP the guest starts through the start port (docs/boot-protocol.md) gets its entry
    // state on its own thread, at run time.
    KVM_GET_SREGS,
    KVM_SET_SREGS,
    KVM_SET_REGS,
    KVM_SET_FPU,
    KVM_SET_MP_STATE,
    // Interrupts from device models and the bridge: wired lines and MSI without irqfd; irqfds
    // and GSI routes made when the guest first uses (or reprograms) an MSI-X vector.
    KVM_IRQ_LINE,
    KVM_SIGNAL_MSI,
    KVM_IRQFD,
    kKvmSetGsiRouting,
    // virtio-pci notify ioeventfds follow BAR 0 when the guest moves it.
    KVM_IOEVENTFD,
};
#endif

struct CtxDeleter {
    void operator()(void* c) const { seccomp_release(static_cast<scmp_filter_ctx>(c)); }
};

std::string failed(std::string_view what, int rc) {
    return fmt::format("seccomp: {}: {}", what, std::strerror(-rc));
}

}  // namespace

std::string_view to_string(ThreadClass c) {
    switch (c) {
        case ThreadClass::kProcess:
            return "process";
        case ThreadClass::kQueueWorker:
            return "queue-worker";
        case ThreadClass::kVmm:
            return "vmm";
    }
    return "?";
}

std::expected<void, std::string> install(ThreadClass c) {
    const unsigned who = c == ThreadClass::kProcess ? kDaemon
                         : c == ThreadClass::kVmm   ? kVmm
                                                    : kWorker;
    const bool process_wide = c != ThreadClass::kQueueWorker;
    std::unique_ptr<void, CtxDeleter> ctx(seccomp_init(SCMP_ACT_KILL_PROCESS));
    if (!ctx) {
        return std::unexpected(std::string("seccomp_init failed"));
    }
    auto* f = static_cast<scmp_filter_ctx>(ctx.get());
    for (const Rule& r : kRules) {
        if ((r.who & who) == 0) {
            continue;
        }
        const int nr = seccomp_syscall_resolve_name(r.name);
        if (nr == __NR_SCMP_ERROR) {
            continue;  // not a system call on this architecture
        }
        if (int rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, nr, 0); rc != 0) {
            return std::unexpected(failed(r.name, rc));
        }
    }
#ifdef VIREO_SANDBOX_ASAN
    for (const char* name : kSanitizerCalls) {
        if (const int nr = seccomp_syscall_resolve_name(name); nr != __NR_SCMP_ERROR) {
            seccomp_rule_add(f, SCMP_ACT_ALLOW, nr, 0);  // may duplicate a rule: ignored
        }
    }
#else
    // Opening files fails with EACCES instead of killing: glibc's malloc opens
    // /proc/sys/vm/overcommit_memory when it first shrinks a thread arena, and copes with a
    // refusal. No file can be opened either way.
    for (const char* name : kRefusedCalls) {
        if (const int nr = seccomp_syscall_resolve_name(name); nr != __NR_SCMP_ERROR) {
            if (int rc = seccomp_rule_add(f, SCMP_ACT_ERRNO(EACCES), nr, 0); rc != 0) {
                return std::unexpected(failed(name, rc));
            }
        }
    }
#endif
    // socket(): unix domain only. No network sockets, no netlink: a compromised back end
    // cannot reach anything the host did not already give it.
    if (int rc =
            seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1, SCMP_A0(SCMP_CMP_EQ, AF_UNIX));
        rc != 0) {
        return std::unexpected(failed("socket", rc));
    }
    for (unsigned long req : kIoctls) {
        // The request argument is an int in the kernel: compare the low 32 bits only.
        if (int rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
                                      SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, req));
            rc != 0) {
            return std::unexpected(failed("ioctl", rc));
        }
    }
#if defined(__x86_64__)
    if (c == ThreadClass::kVmm) {
        for (unsigned long req : kKvmIoctls) {
            if (int rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
                                          SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, req));
                rc != 0) {
                return std::unexpected(failed("ioctl (KVM)", rc));
            }
        }
    }
#endif
    // Thread names (pthread_setname_np) only.
    if (int rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1,
                                  SCMP_A0(SCMP_CMP_EQ, PR_SET_NAME));
        rc != 0) {
        return std::unexpected(failed("prctl", rc));
    }
    // A thread may stack a narrower filter on this one (a queue worker installs kQueueWorker):
    // filters only ever add restrictions, so loading another one is harmless.
    if (int rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(seccomp), 1,
                                  SCMP_A0(SCMP_CMP_EQ, SECCOMP_SET_MODE_FILTER));
        rc != 0) {
        return std::unexpected(failed("seccomp", rc));
    }
    if (process_wide) {
        // Every thread, present and future (new threads inherit the filter).
        if (int rc = seccomp_attr_set(f, SCMP_FLTATR_CTL_TSYNC, 1); rc != 0) {
            return std::unexpected(failed("TSYNC", rc));
        }
    } else {
        // kProcess already set no_new_privs for every thread, and its filter refuses the
        // prctl() libseccomp would make to set it again.
        if (int rc = seccomp_attr_set(f, SCMP_FLTATR_CTL_NNP, 0); rc != 0) {
            return std::unexpected(failed("NNP", rc));
        }
    }
    if (int rc = seccomp_load(f); rc != 0) {
        return std::unexpected(failed("load", rc));
    }
    return {};
}

std::expected<void, std::string> drop_capabilities() {
    // Bounding set first (needs CAP_SETPCAP, which we still have if we have anything).
    for (int cap = 0; cap <= CAP_LAST_CAP; ++cap) {
        if (::prctl(PR_CAPBSET_READ, cap, 0, 0, 0) == 1 &&
            ::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EPERM) {
            return std::unexpected(
                fmt::format("PR_CAPBSET_DROP {}: {}", cap, std::strerror(errno)));
        }
    }
    ::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);  // EINVAL on old kernels: fine
    __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3]{};
    if (::syscall(SYS_capset, &hdr, data) != 0) {
        return std::unexpected(fmt::format("capset: {}", std::strerror(errno)));
    }
    return {};
}

std::expected<void, std::string> confine(ThreadClass c) {
    if (auto ok = drop_capabilities(); !ok) {
        return ok;
    }
    return install(c);
}

namespace {

std::optional<unsigned> parse_id(std::string_view s) {
    unsigned v = 0;
    const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size() || s.empty()) return std::nullopt;
    return v;
}

}  // namespace

std::expected<Identity, std::string> parse_identity(std::string_view spec) {
    const auto colon = spec.find(':');
    const std::string user(spec.substr(0, colon));
    const std::optional<std::string> group =
        colon == std::string_view::npos ? std::nullopt
                                        : std::optional(std::string(spec.substr(colon + 1)));
    Identity id{};
    std::vector<char> buf(16384);
    if (auto n = parse_id(user)) {
        id.uid = *n;
        if (!group) return std::unexpected(fmt::format("'{}': a numeric user needs :GID", spec));
    } else {
        passwd pw{};
        passwd* found = nullptr;
        if (::getpwnam_r(user.c_str(), &pw, buf.data(), buf.size(), &found) != 0 || !found) {
            return std::unexpected(fmt::format("unknown user '{}'", user));
        }
        id.uid = pw.pw_uid;
        id.gid = pw.pw_gid;
    }
    if (group) {
        if (auto n = parse_id(*group)) {
            id.gid = *n;
        } else {
            struct group gr {};
            struct group* found = nullptr;
            if (::getgrnam_r(group->c_str(), &gr, buf.data(), buf.size(), &found) != 0 || !found) {
                return std::unexpected(fmt::format("unknown group '{}'", *group));
            }
            id.gid = gr.gr_gid;
        }
    }
    if (id.uid == 0 || id.gid == 0) {
        return std::unexpected(fmt::format("'{}': refusing to continue as root", spec));
    }
    return id;
}

std::expected<void, std::string> switch_identity(const Identity& id) {
    if (::setgroups(1, &id.gid) != 0) {
        return std::unexpected(fmt::format("setgroups: {}", std::strerror(errno)));
    }
    if (::setresgid(id.gid, id.gid, id.gid) != 0) {
        return std::unexpected(fmt::format("setresgid {}: {}", id.gid, std::strerror(errno)));
    }
    if (::setresuid(id.uid, id.uid, id.uid) != 0) {
        return std::unexpected(fmt::format("setresuid {}: {}", id.uid, std::strerror(errno)));
    }
    // Defence in depth: a process that could go back to root has not dropped anything.
    if (::setuid(0) == 0 || ::geteuid() != id.uid || ::getegid() != id.gid) {
        return std::unexpected("identity change did not stick");
    }
    return {};
}

}  // namespace vireo::sandbox
