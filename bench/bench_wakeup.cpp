// The CPU floor of an event-driven back end on this host: what one thread spends per
// "sleep until the peer signals, then signal the peer" (an eventfd ping-pong between two
// threads). A vhost-user back end at queue depth 1 pays this at least once per request: it sleeps
// on the kick eventfd, wakes, and signals the call eventfd. Reported as CPU time (utime + stime of
// the whole process, both threads) per round trip and per wake-up, so it compares directly with
// bench/blk_fio.sh's back-end CPU per I/O.
//
//   build/bin/bench_wakeup            (Google Benchmark; "cpu_us_per_wake" is the figure)
//   taskset -c 0 build/bin/bench_wakeup   (both threads on one CPU: no cross-CPU wake-up)
// On this nested VM a wake-up across CPUs (an IPI) costs ~3.6 us, one on the same CPU ~1.1 us;
// with the other CPU busy the scheduler tends to the latter.
#include <benchmark/benchmark.h>
#include <liburing.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdint>
#include <thread>

namespace {

double process_cpu_us() {
    rusage ru{};
    ::getrusage(RUSAGE_SELF, &ru);
    return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
           static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

void signal_fd(int fd) {
    const std::uint64_t one = 1;
    (void)!::write(fd, &one, sizeof one);
}

void wait_fd(int fd) {
    std::uint64_t v;
    (void)!::read(fd, &v, sizeof v);
}

// The peer: echoes every ping with a pong, blocking in read(2), until told to stop (value 2).
void echo(int ping, int pong) {
    for (;;) {
        std::uint64_t v = 0;
        if (::read(ping, &v, sizeof v) != sizeof v || v >= 2) return;
        signal_fd(pong);
    }
}

// The two eventfds and the echoing peer thread, stopped and closed on destruction.
struct PingPong {
    const int ping = ::eventfd(0, EFD_CLOEXEC);
    const int pong = ::eventfd(0, EFD_CLOEXEC);
    std::thread peer{echo, ping, pong};
    ~PingPong() {
        const std::uint64_t stop = 2;
        (void)!::write(ping, &stop, sizeof stop);
        peer.join();
        ::close(ping);
        ::close(pong);
    }
};

void report(benchmark::State& state, double cpu_us) {
    const auto n = static_cast<double>(state.iterations());
    state.counters["cpu_us_per_roundtrip"] = cpu_us / n;
    state.counters["cpu_us_per_wake"] = cpu_us / n / 2;
}

// Both sides block in read(2) on an eventfd: two wake-ups per round trip.
void BM_EventfdPingPong(benchmark::State& state) {
    PingPong pp;
    const double c0 = process_cpu_us();
    for (auto _ : state) {
        signal_fd(pp.ping);
        wait_fd(pp.pong);
    }
    report(state, process_cpu_us() - c0);
}
BENCHMARK(BM_EventfdPingPong)->UseRealTime()->MinTime(1.0);

// The measuring side waits the way vireo's blk queue does: a read of the eventfd queued on an
// io_uring, one io_uring_enter that submits and waits (the peer stays on read(2)).
void BM_IoUringPingPong(benchmark::State& state) {
    PingPong pp;
    io_uring ring;
    io_uring_queue_init(8, &ring, 0);
    std::uint64_t buf = 0;
    const double c0 = process_cpu_us();
    for (auto _ : state) {
        io_uring_sqe* sqe = io_uring_get_sqe(&ring);
        io_uring_prep_read(sqe, pp.pong, &buf, sizeof buf, 0);
        signal_fd(pp.ping);
        io_uring_submit_and_wait(&ring, 1);
        io_uring_cqe* cqe = nullptr;
        io_uring_peek_cqe(&ring, &cqe);
        if (cqe != nullptr) io_uring_cqe_seen(&ring, cqe);
    }
    report(state, process_cpu_us() - c0);
    io_uring_queue_exit(&ring);
}
BENCHMARK(BM_IoUringPingPong)->UseRealTime()->MinTime(1.0);

}  // namespace

BENCHMARK_MAIN();
