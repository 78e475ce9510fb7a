// virtio-console device model over real split and packed rings: back-ends (socketpair, unix
// socket), a transmit back-end that blocks, the MULTIPORT control handshake, config space.
#include "devices/console.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "guest_queue.hpp"
#include "virtq/features.hpp"

namespace vireo::dev {
namespace {

using testing::as_string;
using testing::GuestQueue;
using testing::wait_readable;

struct SocketPair {
    SocketPair() {
        int fds[2];
        EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
        device.reset(fds[0]);
        host.reset(fds[1]);
    }
    UniqueFd device;  // handed to the console (duplicated)
    UniqueFd host;    // the test plays the host program here
};

std::string read_some(int fd, std::size_t max = 4096) {
    if (!wait_readable(fd)) {
        return {};
    }
    std::string s(max, '\0');
    const ssize_t n = ::read(fd, s.data(), s.size());
    s.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
    return s;
}

UniqueFd connect_unix(const std::string& path) {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
    EXPECT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0) << path;
    return fd;
}

std::string temp_socket_path(const char* tag) {
    return "/tmp/vireo-console-" + std::string(tag) + "-" + std::to_string(::getpid()) + ".sock";
}

ConsolePortOptions fds_port(int in, int out) {
    ConsolePortOptions p;
    p.kind = ConsoleBackendKind::kFds;
    p.in_fd = in;
    p.out_fd = out;
    return p;
}
ConsolePortOptions unix_port(const std::string& path, const std::string& name = {}) {
    ConsolePortOptions p;
    p.kind = ConsoleBackendKind::kUnix;
    p.path = path;
    p.name = name;
    return p;
}
ConsolePortOptions kind_port(ConsoleBackendKind k) {
    ConsolePortOptions p;
    p.kind = k;
    return p;
}

// A control message as the driver sends it.
std::string control(std::uint32_t id, std::uint16_t event, std::uint16_t value) {
    ConsoleControl c{};
    c.id.set(id);
    c.event.set(event);
    c.value.set(value);
    return {reinterpret_cast<const char*>(&c), sizeof c};
}

ConsoleControl parse_control(const std::vector<std::uint8_t>& d, std::string* payload = nullptr) {
    ConsoleControl c{};
    EXPECT_GE(d.size(), sizeof c);
    std::memcpy(&c, d.data(), std::min(d.size(), sizeof c));
    if (payload != nullptr && d.size() > sizeof c) {
        payload->assign(d.begin() + sizeof c, d.end());
    }
    return c;
}

template <typename Driver>
class ConsoleTest : public ::testing::Test {};
TYPED_TEST_SUITE(ConsoleTest, testing::Drivers);

TYPED_TEST(ConsoleTest, EchoThroughSocketpair) {
    SocketPair sp;
    ConsoleOptions o;
    o.ports = {fds_port(sp.device.get(), sp.device.get())};
    auto dev = ConsoleDevice::create(o);
    ASSERT_TRUE(dev.has_value()) << dev.error();
    EXPECT_EQ((*dev)->num_queues(), 2);  // one unnamed port: no MULTIPORT
    GuestQueue<TypeParam> rxq, txq;
    auto rx = (*dev)->start_queue(kConsolePort0Rx, rxq.handle());
    auto tx = (*dev)->start_queue(kConsolePort0Tx, txq.handle());
    ASSERT_TRUE(rx && tx);

    // guest → host
    txq.post_str("hello from the guest");
    tx->on_kick();
    auto used = txq.collect();
    ASSERT_EQ(used.size(), 1u);
    EXPECT_EQ(used[0].len, 0u);  // nothing written into a transmit buffer
    EXPECT_EQ(read_some(sp.host.get()), "hello from the guest");

    // host → guest: input that arrives before any receive buffer waits for one.
    ASSERT_EQ(::write(sp.host.get(), "typed", 5), 5);
    ASSERT_TRUE(wait_readable(rx->event_fd()));
    rx->on_event();
    EXPECT_TRUE(rxq.collect().empty());
    rxq.post({}, 64);
    rx->on_kick();
    used = rxq.collect();
    ASSERT_EQ(used.size(), 1u);
    EXPECT_EQ(as_string(used[0].data), "typed");

    // And with a buffer already waiting.
    rxq.post({}, 3, 2);  // two descriptors
    ASSERT_EQ(::write(sp.host.get(), "abcdef", 6), 6);
    ASSERT_TRUE(wait_readable(rx->event_fd()));
    rx->on_event();
    used = rxq.collect();
    ASSERT_EQ(used.size(), 1u);
    EXPECT_EQ(as_string(used[0].data), "abc");
    rxq.post({}, 16);
    rx->on_kick();
    used = rxq.collect();
    ASSERT_EQ(used.size(), 1u);
    EXPECT_EQ(as_string(used[0].data), "def");
    rx->drain();
    tx->drain();
}

TYPED_TEST(ConsoleTest, BlockedBackendKeepsTheChainUntilWritten) {
    SocketPair sp;
    int small = 4096;
    ::setsockopt(sp.device.get(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    ConsoleOptions o;
    o.ports = {fds_port(-1, sp.device.get())};
    auto dev = ConsoleDevice::create(o);
    ASSERT_TRUE(dev.has_value()) << dev.error();
    GuestQueue<TypeParam> txq;
    auto tx = (*dev)->start_queue(kConsolePort0Tx, txq.handle());
    std::string big(1 << 20, 'x');
    for (std::size_t i = 0; i < big.size(); ++i) {
        big[i] = static_cast<char>('a' + i % 26);
    }
    txq.post_str(big);
    tx->on_kick();
    EXPECT_TRUE(txq.collect().empty()) << "completed before the back-end took the data";
    std::string got;
    while (got.size() < big.size()) {
        pollfd p[2] = {{sp.host.get(), POLLIN, 0}, {tx->event_fd(), POLLIN, 0}};
        if (::poll(p, 2, 5000) <= 0) {
            break;
        }
        if ((p[0].revents & POLLIN) != 0) {
            std::string chunk(1 << 16, '\0');
            const ssize_t n = ::read(sp.host.get(), chunk.data(), chunk.size());
            ASSERT_GT(n, 0);
            got.append(chunk.data(), static_cast<std::size_t>(n));
        }
        if ((p[1].revents & POLLIN) != 0) {
            tx->on_event();
        }
    }
    EXPECT_EQ(got, big);  // every byte, in order
    auto used = txq.collect();
    ASSERT_EQ(used.size(), 1u);
    EXPECT_EQ((*dev)->stats().to_host.load(), big.size());
    EXPECT_EQ((*dev)->stats().dropped.load(), 0u);
}

TYPED_TEST(ConsoleTest, UnixSocketBackendOneClientAtATime) {
    const std::string path = temp_socket_path("unix");
    ConsoleOptions o;
    o.ports = {unix_port(path)};
    auto dev = ConsoleDevice::create(o);
    ASSERT_TRUE(dev.has_value()) << dev.error();
    EXPECT_EQ((*dev)->port_path(0), path);
    GuestQueue<TypeParam> rxq, txq;
    auto rx = (*dev)->start_queue(kConsolePort0Rx, rxq.handle());
    auto tx = (*dev)->start_queue(kConsolePort0Tx, txq.handle());
    rxq.post({}, 64);
    rx->on_kick();

    // No client yet: output is dropped, and the chain still completes.
    txq.post_str("lost");
    tx->on_kick();
    EXPECT_EQ(txq.collect().size(), 1u);
    EXPECT_EQ((*dev)->stats().dropped.load(), 4u);

    UniqueFd client = connect_unix(path);
    ASSERT_TRUE(wait_readable(rx->event_fd()));
    rx->on_event();  // accepts
    ASSERT_EQ(::write(client.get(), "ping", 4), 4);
    ASSERT_TRUE(wait_readable(rx->event_fd()));
    rx->on_event();
    auto used = rxq.collect();
    ASSERT_EQ(used.size(), 1u);
    EXPECT_EQ(as_string(used[0].data), "ping");
    txq.post_str("pong");
    tx->on_kick();
    EXPECT_EQ(txq.collect().size(), 1u);
    EXPECT_EQ(read_some(client.get()), "pong");

    // The client leaves; the next one gets the port.
    client.reset();
    rxq.post({}, 64);
    ASSERT_TRUE(wait_readable(rx->event_fd()));
    rx->on_event();
    UniqueFd second = connect_unix(path);
    ASSERT_TRUE(wait_readable(rx->event_fd()));
    rx->on_event();
    ASSERT_EQ(::write(second.get(), "again", 5), 5);
    ASSERT_TRUE(wait_readable(rx->event_fd()));
    rx->on_event();
    used = rxq.collect();
    ASSERT_EQ(used.size(), 1u);
    EXPECT_EQ(as_string(used[0].data), "again");
    rx->drain();
    tx->drain();
    rx.reset();
    tx.reset();
    dev->reset();
    EXPECT_NE(::access(path.c_str(), F_OK), 0);  // the socket file is removed
}

TYPED_TEST(ConsoleTest, MultiportControlHandshake) {
    SocketPair sp;
    const std::string path = temp_socket_path("mp");
    ConsoleOptions o;
    o.ports = {fds_port(sp.device.get(), sp.device.get()), unix_port(path, "org.vireo.test")};
    auto made = ConsoleDevice::create(o);
    ASSERT_TRUE(made.has_value()) << made.error();
    ConsoleDevice& dev = **made;
    EXPECT_NE(dev.device_features() & virtq::bit(kConsoleFMultiport), 0u);
    EXPECT_EQ(dev.num_queues(), 6);  // port0 pair, control pair, port1 pair (§5.3.2)
    EXPECT_EQ(dev.start_queue(kConsoleControlRx, GuestQueue<TypeParam>().handle()), nullptr)
        << "control queues exist only once MULTIPORT is negotiated";
    dev.set_features(dev.device_features());

    GuestQueue<TypeParam> cin, cout, p1rx;
    auto crx = dev.start_queue(kConsoleControlRx, cin.handle());
    auto ctx = dev.start_queue(kConsoleControlTx, cout.handle());
    auto rx1 = dev.start_queue(kConsolePort1Rx, p1rx.handle());
    ASSERT_TRUE(crx && ctx && rx1);
    EXPECT_EQ(dev.start_queue(6, cin.handle()), nullptr);
    for (int i = 0; i < 8; ++i) {
        cin.post({}, 128);
    }
    crx->on_kick();

    auto exchange = [&](const std::string& msg) {
        cout.post_str(msg);
        ctx->on_kick();
        EXPECT_EQ(cout.collect().size(), 1u);
        std::vector<testing::UsedBuf> got;
        if (wait_readable(crx->event_fd(), 1000)) {
            crx->on_event();
            got = cin.collect();
        }
        return got;
    };

    auto msgs = exchange(control(0, kConsoleDeviceReady, 1));
    ASSERT_EQ(msgs.size(), 2u);
    for (std::uint32_t i = 0; i < 2; ++i) {
        const auto c = parse_control(msgs[i].data);
        EXPECT_EQ(c.id.get(), i);
        EXPECT_EQ(c.event.get(), kConsoleDeviceAdd);
    }

    msgs = exchange(control(0, kConsolePortReady, 1));
    ASSERT_EQ(msgs.size(), 2u);
    EXPECT_EQ(parse_control(msgs[0].data).event.get(), kConsoleConsolePort);
    EXPECT_EQ(parse_control(msgs[1].data).event.get(), kConsolePortOpen);  // fds: host attached
    EXPECT_EQ(parse_control(msgs[1].data).value.get(), 1);

    msgs = exchange(control(1, kConsolePortReady, 1));
    ASSERT_EQ(msgs.size(), 1u);  // named, no client yet: no PORT_OPEN
    std::string name;
    const auto pn = parse_control(msgs[0].data, &name);
    EXPECT_EQ(pn.id.get(), 1u);
    EXPECT_EQ(pn.event.get(), kConsolePortName);
    EXPECT_EQ(name, "org.vireo.test");
    EXPECT_EQ(msgs[0].len, sizeof(ConsoleControl) + name.size());

    // A client on port 1: PORT_OPEN to the guest; its input waits until the guest opens.
    UniqueFd client = connect_unix(path);
    p1rx.post({}, 64);
    ASSERT_TRUE(wait_readable(rx1->event_fd()));
    rx1->on_event();
    ASSERT_TRUE(wait_readable(crx->event_fd()));
    crx->on_event();
    msgs = cin.collect();
    ASSERT_EQ(msgs.size(), 1u);
    EXPECT_EQ(parse_control(msgs[0].data).event.get(), kConsolePortOpen);
    EXPECT_EQ(parse_control(msgs[0].data).id.get(), 1u);
    ASSERT_EQ(::write(client.get(), "early", 5), 5);
    ASSERT_TRUE(wait_readable(rx1->event_fd()));
    rx1->on_event();
    EXPECT_TRUE(p1rx.collect().empty()) << "data for a port the guest has not opened";
    cout.post_str(control(1, kConsolePortOpen, 1));
    ctx->on_kick();
    EXPECT_EQ(cout.collect().size(), 1u);
    ASSERT_TRUE(wait_readable(rx1->event_fd()));
    rx1->on_event();
    auto used = p1rx.collect();
    ASSERT_EQ(used.size(), 1u);
    EXPECT_EQ(as_string(used[0].data), "early");

    // Malformed control messages are completed and counted, never acted on.
    cout.post_str("xy");                               // too short
    cout.post_str(control(77, kConsolePortReady, 1));  // no such port
    ctx->on_kick();
    EXPECT_EQ(cout.collect().size(), 2u);
    EXPECT_GE(dev.stats().bad_control.load(), 2u);
    crx->drain();
    ctx->drain();
    rx1->drain();
}

TEST(ConsoleDeviceTest, ConfigSizeAndEmergencyWrite) {
    SocketPair sp;
    ConsoleOptions o;
    o.ports = {fds_port(-1, sp.device.get())};
    o.cols = 132;
    o.rows = 43;
    auto dev = ConsoleDevice::create(o);
    ASSERT_TRUE(dev.has_value()) << dev.error();
    EXPECT_NE((*dev)->device_features() & virtq::bit(kConsoleFSize), 0u);
    EXPECT_EQ((*dev)->device_features() & virtq::bit(kConsoleFMultiport), 0u);
    ConsoleConfig c{};
    auto cfg = (*dev)->config();
    ASSERT_EQ(cfg.size(), sizeof c);
    std::memcpy(&c, cfg.data(), sizeof c);
    EXPECT_EQ(c.cols.get(), 132);
    EXPECT_EQ(c.rows.get(), 43);
    EXPECT_EQ(c.max_nr_ports.get(), 1u);
    const std::uint8_t ch[4] = {'!', 0, 0, 0};
    (*dev)->write_config(offsetof(ConsoleConfig, emerg_wr), ch);
    (*dev)->write_config(0, ch);  // cols is read-only: ignored
    EXPECT_EQ(read_some(sp.host.get()), "!");
    EXPECT_EQ((*dev)->config()[0], 132);
}

TEST(ConsoleDeviceTest, RejectsBadOptions) {
    ConsoleOptions o;
    o.ports = {unix_port("/nonexistent-dir/x.sock")};
    auto dev = ConsoleDevice::create(o);
    ASSERT_FALSE(dev.has_value());
    EXPECT_NE(dev.error().find("port 0"), std::string::npos) << dev.error();
    o.ports.clear();
    EXPECT_FALSE(ConsoleDevice::create(o).has_value());
    o.ports = {kind_port(ConsoleBackendKind::kFds)};
    EXPECT_FALSE(ConsoleDevice::create(o).has_value());
}

TEST(ConsoleDeviceTest, PtyBackendReportsItsPath) {
    ConsoleOptions o;
    o.ports = {kind_port(ConsoleBackendKind::kPty)};
    auto dev = ConsoleDevice::create(o);
    ASSERT_TRUE(dev.has_value()) << dev.error();
    const std::string path = (*dev)->port_path(0);
    EXPECT_EQ(path.rfind("/dev/pts/", 0), 0u) << path;
    GuestQueue<driver::SplitDriver<64>> txq;
    auto tx = (*dev)->start_queue(kConsolePort0Tx, txq.handle());
    UniqueFd slave(::open(path.c_str(), O_RDWR | O_NOCTTY | O_CLOEXEC));
    ASSERT_TRUE(slave.valid());
    txq.post_str("to the pty");
    tx->on_kick();
    EXPECT_EQ(txq.collect().size(), 1u);
    EXPECT_EQ(read_some(slave.get()), "to the pty");
}

}  // namespace
}  // namespace vireo::dev
