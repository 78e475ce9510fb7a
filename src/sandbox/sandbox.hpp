// Confinement of a back-end process after its setup: a seccomp-bpf allow-list of system calls
// (libseccomp) and dropping every capability. See docs/security.md for the policy and why each
// system call is on the list.
//
// Usage: open images, TAPs and listening sockets first (they need privileges and open()), then
// drop_capabilities() and install(ThreadClass::kProcess) from the main thread before any other
// thread exists, or with TSYNC after. Threads created later inherit the filter; a thread may
// narrow itself further with install(kQueueWorker) (filters stack: a call must pass all of them).
#pragma once

#include <sys/types.h>

#include <expected>
#include <string>
#include <string_view>

namespace vireo::sandbox {

enum class ThreadClass {
    // Everything a running daemon does on any thread: the event loop (accept, vhost-user
    // messages with fds, mapping guest memory, creating ring workers and inflight memfds), the
    // queue workers and the I/O engines. Installed process-wide (all threads, TSYNC).
    kProcess,
    // A ring worker: polls its kick/stop fds, runs the device model, does file and socket I/O
    // (console and vsock workers accept host clients; vsock connects unix sockets), signals
    // call eventfds. No threads, no memfds, no unlinking; stacked on kProcess.
    kQueueWorker,
    // vireo-vmm, process-wide (TSYNC): kProcess's list without what only a vhost-user daemon
    // does (inflight memfds, signalfd), plus, on x86-64, the KVM ioctls a running VM makes on
    // its VM and vCPU fds (KVM_RUN, register access for APs started at run time, interrupt
    // injection, irqfd/GSI routes and ioeventfds). The RV64 emulator needs nothing more: its
    // harts are threads that wait on futexes and clocks.
    kVmm,
};

std::string_view to_string(ThreadClass c);

// Installs the allow-list for `c`. A system call outside it kills the whole process with
// SIGSYS (SECCOMP_RET_KILL_PROCESS): a confused back end must not keep running half-working.
// Also sets PR_SET_NO_NEW_PRIVS. kProcess and kVmm apply to every thread of the process.
std::expected<void, std::string> install(ThreadClass c);

// Drops every capability (effective, permitted, inheritable, bounding set and ambient) of the
// calling process. A no-op when it has none. Call after TAPs are opened: their fds keep working.
std::expected<void, std::string> drop_capabilities();

// drop_capabilities(), then install(c): the order a process confines itself in after setup.
// Capabilities are per thread: threads that exist already keep theirs (the filter, with TSYNC,
// covers them); threads created afterwards start with none.
std::expected<void, std::string> confine(ThreadClass c);

// The unprivileged identity a back end continues as after setup (`--user`).
struct Identity {
    uid_t uid;
    gid_t gid;
};

// "USER", "USER:GROUP", "UID" or "UID:GID"; a user's primary group unless a group is given.
// Names are resolved now (at startup, when /etc/passwd can still be read). Root is refused: the
// point is to stop being it.
std::expected<Identity, std::string> parse_identity(std::string_view spec);

// Becomes `id` for good: supplementary groups dropped, then real/effective/saved gid and uid
// (glibc applies setres[ug]id to every thread). Verified: root cannot be regained. Call after
// opening images, TAPs and sockets, before drop_capabilities() (setuid needs CAP_SETUID).
std::expected<void, std::string> switch_identity(const Identity& id);

}  // namespace vireo::sandbox
