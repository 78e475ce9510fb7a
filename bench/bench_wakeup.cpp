// The CPU floor of an event-driven back end on this host: what one thread spends per
// "sleep until the peer signals, then signal the peer" (an eventfd ping-pong between two
// threads). A vhost-user back end at queue depth 1 pays this at least once per request: it sleeps
// on the kick eventfd, wakes, and signals the call eventfd. Reported as CPU time (utime + stime of
// the whole process, both threads) per round trip and per wake-up, so it compares directly with
// bench/blk_fio.sh's back-end CPU per I/O.
//
//   build/bin/bench_wakeup            (Google Benchmark; "cpu_us_per_wake" is the figure)
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

// Both sides block in read(2) on an eventfd: two wake-ups per round trip.
void BM_EventfdPingPong(benchmark::State& state) {
    const int ping = ::eventfd(0, EFD_CLOEXEC), pong = ::eventfd(0, EFD_CLOEXEC);
    std::thread peer(echo, ping, pong);
    const double c0 = process_cpu_us();
    for (auto _ : state) {
        signal_fd(ping);
        wait_fd(pong);
    }
    const double cpu = process_cpu_us() - c0;
    const std::uint64_t stop = 2;
    (void)!::write(ping, &stop, sizeof stop);
    peer.join();
    ::close(ping);
    ::close(pong);
    const auto n = static_cast<double>(state.iterations());
    state.counters["cpu_us_per_roundtrip"] = cpu / n;
    state.counters["cpu_us_per_wake"] = cpu / n / 2;
}
BENCHMARK(BM_EventfdPingPong)->UseRealTime()->MinTime(1.0);

// The measuring side waits the way vireo's blk queue does: a read of the eventfd queued on an
// io_uring, one io_uring_enter that submits and waits (the peer stays on read(2)).
void BM_IoUringPingPong(benchmark::State& state) {
    const int ping = ::eventfd(0, EFD_CLOEXEC), pong = ::eventfd(0, EFD_CLOEXEC);
    io_uring ring;
    io_uring_queue_init(8, &ring, 0);
    std::thread peer(echo, ping, pong);
    std::uint64_t buf = 0;
    const double c0 = process_cpu_us();
    for (auto _ : state) {
        io_uring_sqe* sqe = io_uring_get_sqe(&ring);
        io_uring_prep_read(sqe, pong, &buf, sizeof buf, 0);
        signal_fd(ping);
        io_uring_submit_and_wait(&ring, 1);
        io_uring_cqe* cqe = nullptr;
        io_uring_peek_cqe(&ring, &cqe);
        if (cqe != nullptr) io_uring_cqe_seen(&ring, cqe);
    }
    const double cpu = process_cpu_us() - c0;
    const std::uint64_t stop = 2;
    (void)!::write(ping, &stop, sizeof stop);
    peer.join();
    io_uring_queue_exit(&ring);
    ::close(ping);
    ::close(pong);
    const auto n = static_cast<double>(state.iterations());
    state.counters["cpu_us_per_roundtrip"] = cpu / n;
    state.counters["cpu_us_per_wake"] = cpu / n / 2;
}
BENCHMARK(BM_IoUringPingPong)->UseRealTime()->MinTime(1.0);

}  // namespace

BENCHMARK_MAIN();
