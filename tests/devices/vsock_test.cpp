// virtio-vsock device model over real split and packed rings, bridged to AF_UNIX sockets:
// guest→host connect with data both ways and credit accounting, the host→guest CONNECT
// handshake, RST for unknown ports and connections, malformed packets.
#include "devices/vsock.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "guest_queue.hpp"

namespace vireo::dev {
namespace {

using testing::GuestQueue;
using testing::wait_readable;

constexpr std::uint64_t kCid = 42;

sockaddr_un addr_of(const std::string& path) {
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
    return a;
}

UniqueFd listen_at(const std::string& path) {
    ::unlink(path.c_str());
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    auto a = addr_of(path);
    EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(::listen(fd.get(), 4), 0);
    return fd;
}

UniqueFd connect_to(const std::string& path) {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    auto a = addr_of(path);
    EXPECT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    return fd;
}

std::string read_some(int fd) {
    if (!wait_readable(fd)) {
        return {};
    }
    std::string s(4096, '\0');
    const ssize_t n = ::read(fd, s.data(), s.size());
    s.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
    return s;
}

// A guest packet: header plus payload.
std::string packet(std::uint16_t op, std::uint32_t src_port, std::uint32_t dst_port,
                   const std::string& payload = {}, std::uint32_t buf_alloc = 65536,
                   std::uint32_t fwd_cnt = 0, std::uint32_t flags = 0) {
    VsockHdr h{};
    h.src_cid.set(kCid);
    h.dst_cid.set(kVsockHostCid);
    h.src_port.set(src_port);
    h.dst_port.set(dst_port);
    h.len.set(static_cast<std::uint32_t>(payload.size()));
    h.type.set(kVsockTypeStream);
    h.op.set(op);
    h.flags.set(flags);
    h.buf_alloc.set(buf_alloc);
    h.fwd_cnt.set(fwd_cnt);
    return std::string(reinterpret_cast<const char*>(&h), kVsockHdrSize) + payload;
}

struct Pkt {
    VsockHdr h{};
    std::string payload;
    std::uint32_t used_len = 0;
};

Pkt parse(const testing::UsedBuf& u) {
    Pkt p;
    p.used_len = u.len;
    EXPECT_GE(u.data.size(), kVsockHdrSize);
    std::memcpy(&p.h, u.data.data(), std::min(u.data.size(), kVsockHdrSize));
    if (u.data.size() > kVsockHdrSize) {
        p.payload.assign(u.data.begin() + kVsockHdrSize, u.data.end());
    }
    EXPECT_EQ(p.h.len.get(), p.payload.size());
    return p;
}

template <typename Driver>
class VsockTest : public ::testing::Test {
  protected:
    void SetUp() override {
        prefix_ = "/tmp/vireo-vsock-" + std::to_string(::getpid()) + ".sock";
        auto d = VsockDevice::create({.guest_cid = kCid, .uds_path = prefix_});
        ASSERT_TRUE(d.has_value()) << d.error();
        dev_ = std::move(*d);
        rx_ = dev_->start_queue(kVsockQueueRx, rxq_.handle());
        tx_ = dev_->start_queue(kVsockQueueTx, txq_.handle());
        ASSERT_TRUE(rx_ && tx_);
        for (int i = 0; i < 16; ++i) {
            rxq_.post({}, kVsockHdrSize + 4096, 2);
        }
        rx_->on_kick();
    }
    void TearDown() override {
        if (rx_) {
            rx_->drain();
            tx_->drain();
        }
        rx_.reset();
        tx_.reset();
        dev_.reset();
        ::unlink(listen_path(1234).c_str());
    }
    std::string listen_path(std::uint32_t port) const {
        return prefix_ + "_" + std::to_string(port);
    }

    void send(const std::string& pkt) {
        txq_.post_str(pkt);
        tx_->on_kick();
        auto used = txq_.collect();
        ASSERT_EQ(used.size(), 1u);
        EXPECT_EQ(used[0].len, 0u);
    }
    // Packets the device sent, after waiting for its rx handler to have something to do.
    std::vector<Pkt> receive() {
        std::vector<Pkt> out;
        if (wait_readable(rx_->event_fd(), 2000)) {
            rx_->on_event();
        }
        for (const auto& u : rxq_.collect()) {
            out.push_back(parse(u));
            rxq_.post({}, kVsockHdrSize + 4096, 2);  // keep the ring stocked
        }
        rx_->on_kick();
        return out;
    }

    std::string prefix_;
    std::unique_ptr<VsockDevice> dev_;
    GuestQueue<Driver> rxq_, txq_;
    std::unique_ptr<QueueHandler> rx_, tx_;
};
TYPED_TEST_SUITE(VsockTest, testing::Drivers);

TYPED_TEST(VsockTest, GuestConnectsToHostDataBothWaysWithCredit) {
    UniqueFd listener = listen_at(this->listen_path(1234));
    // The guest gives us 8 bytes of credit.
    this->send(packet(kVsockOpRequest, 5000, 1234, {}, 8, 0));
    auto pkts = this->receive();
    ASSERT_EQ(pkts.size(), 1u);
    EXPECT_EQ(pkts[0].h.op.get(), kVsockOpResponse);
    EXPECT_EQ(pkts[0].h.src_port.get(), 1234u);
    EXPECT_EQ(pkts[0].h.dst_port.get(), 5000u);
    EXPECT_EQ(pkts[0].h.src_cid.get(), kVsockHostCid);
    EXPECT_EQ(pkts[0].h.dst_cid.get(), kCid);
    EXPECT_EQ(pkts[0].h.buf_alloc.get(), kVsockBufAlloc);
    UniqueFd host(::accept(listener.get(), nullptr, nullptr));
    ASSERT_TRUE(host.valid());
    EXPECT_EQ(this->dev_->connection_count(), 1u);

    // guest → host
    this->send(packet(kVsockOpRw, 5000, 1234, "hello host", 8, 0));
    EXPECT_EQ(read_some(host.get()), "hello host");
    this->send(packet(kVsockOpCreditRequest, 5000, 1234, {}, 8, 0));
    pkts = this->receive();
    ASSERT_EQ(pkts.size(), 1u);
    EXPECT_EQ(pkts[0].h.op.get(), kVsockOpCreditUpdate);
    EXPECT_EQ(pkts[0].h.fwd_cnt.get(), 10u);  // every forwarded payload byte counted

    // host → guest: never more than the guest's credit (8 bytes).
    ASSERT_EQ(::write(host.get(), "0123456789abcdef", 16), 16);
    pkts = this->receive();
    ASSERT_EQ(pkts.size(), 1u);
    EXPECT_EQ(pkts[0].h.op.get(), kVsockOpRw);
    EXPECT_EQ(pkts[0].payload, "01234567");
    this->rx_->on_kick();
    EXPECT_TRUE(this->rxq_.collect().empty()) << "sent beyond the peer's credit";
    // The guest consumed 8 bytes: credit for 8 more.
    this->send(packet(kVsockOpCreditUpdate, 5000, 1234, {}, 8, 8));
    pkts = this->receive();
    ASSERT_EQ(pkts.size(), 1u);
    EXPECT_EQ(pkts[0].payload, "89abcdef");

    // Clean disconnect from the guest: SHUTDOWN both ways → EOF on the host socket, RST reply.
    this->send(
        packet(kVsockOpShutdown, 5000, 1234, {}, 8, 16, kVsockShutdownRcv | kVsockShutdownSend));
    pkts = this->receive();
    ASSERT_EQ(pkts.size(), 1u);
    EXPECT_EQ(pkts[0].h.op.get(), kVsockOpRst);
    EXPECT_EQ(read_some(host.get()), "");  // EOF
    EXPECT_EQ(this->dev_->connection_count(), 0u);
}

TYPED_TEST(VsockTest, HostClosingSendsShutdown) {
    UniqueFd listener = listen_at(this->listen_path(1234));
    this->send(packet(kVsockOpRequest, 5001, 1234));
    ASSERT_EQ(this->receive().size(), 1u);
    UniqueFd host(::accept(listener.get(), nullptr, nullptr));
    host.reset();
    auto pkts = this->receive();
    ASSERT_EQ(pkts.size(), 1u);
    EXPECT_EQ(pkts[0].h.op.get(), kVsockOpShutdown);
    EXPECT_EQ(pkts[0].h.flags.get(), kVsockShutdownRcv | kVsockShutdownSend);
    this->send(packet(kVsockOpRst, 5001, 1234));  // the guest finishes the close
    EXPECT_EQ(this->dev_->connection_count(), 0u);
}

TYPED_TEST(VsockTest, HostConnectsToGuest) {
    UniqueFd host = connect_to(this->prefix_);
    const std::string line = "CONNECT 52\n";
    ASSERT_EQ(::write(host.get(), line.data(), line.size()), static_cast<ssize_t>(line.size()));
    auto pkts = this->receive();
    ASSERT_EQ(pkts.size(), 1u);
    EXPECT_EQ(pkts[0].h.op.get(), kVsockOpRequest);
    EXPECT_EQ(pkts[0].h.dst_port.get(), 52u);
    const std::uint32_t local = pkts[0].h.src_port.get();
    EXPECT_GE(local, kVsockFirstLocalPort);
    this->send(packet(kVsockOpResponse, 52, local));
    EXPECT_EQ(read_some(host.get()), "OK " + std::to_string(local) + "\n");

    this->send(packet(kVsockOpRw, 52, local, "from guest"));
    EXPECT_EQ(read_some(host.get()), "from guest");
    ASSERT_EQ(::write(host.get(), "from host", 9), 9);
    pkts = this->receive();
    ASSERT_EQ(pkts.size(), 1u);
    EXPECT_EQ(pkts[0].payload, "from host");
    EXPECT_EQ(pkts[0].h.dst_port.get(), 52u);
}

TYPED_TEST(VsockTest, HostConnectRefusedByGuestClosesTheSocket) {
    UniqueFd host = connect_to(this->prefix_);
    ASSERT_EQ(::write(host.get(), "CONNECT 7\n", 10), 10);
    auto pkts = this->receive();
    ASSERT_EQ(pkts.size(), 1u);
    this->send(packet(kVsockOpRst, 7, pkts[0].h.src_port.get()));
    EXPECT_EQ(read_some(host.get()), "");  // closed, no "OK"
    EXPECT_EQ(this->dev_->connection_count(), 0u);

    UniqueFd bad = connect_to(this->prefix_);
    ASSERT_EQ(::write(bad.get(), "HELLO\n", 6), 6);
    this->receive();
    EXPECT_EQ(read_some(bad.get()), "");  // a malformed line is closed too
}

TYPED_TEST(VsockTest, RstForUnknownPortAndConnection) {
    this->send(packet(kVsockOpRequest, 6000, 9999));  // nobody listens at PREFIX_9999
    auto pkts = this->receive();
    ASSERT_EQ(pkts.size(), 1u);
    EXPECT_EQ(pkts[0].h.op.get(), kVsockOpRst);
    EXPECT_EQ(pkts[0].h.src_port.get(), 9999u);
    EXPECT_EQ(pkts[0].h.dst_port.get(), 6000u);
    this->send(packet(kVsockOpRw, 6001, 1234, "data"));  // no such connection
    pkts = this->receive();
    ASSERT_EQ(pkts.size(), 1u);
    EXPECT_EQ(pkts[0].h.op.get(), kVsockOpRst);
    this->send(packet(kVsockOpRst, 6002, 1234));  // a RST is never answered
    this->rx_->on_kick();
    EXPECT_TRUE(this->rxq_.collect().empty());
    EXPECT_EQ(this->dev_->connection_count(), 0u);
}

TYPED_TEST(VsockTest, MalformedPackets) {
    UniqueFd listener = listen_at(this->listen_path(1234));
    // Shorter than a header: completed, nothing to answer.
    this->send(std::string(20, '\0'));
    // Another source CID: not answered (the reply would go elsewhere).
    std::string spoofed = packet(kVsockOpRequest, 1, 1234);
    spoofed[0] = 7;
    this->send(spoofed);
    this->rx_->on_kick();
    EXPECT_TRUE(this->rxq_.collect().empty());
    EXPECT_EQ(this->dev_->connection_count(), 0u);

    // Unknown type: RST (§5.10.6.5).
    std::string seq = packet(kVsockOpRequest, 1, 1234);
    seq[offsetof(VsockHdr, type)] = 2;
    this->send(seq);
    // len beyond the chain: RST.
    std::string lying = packet(kVsockOpRw, 2, 1234, "abc");
    lying[offsetof(VsockHdr, len)] = 100;
    this->send(lying);
    auto pkts = this->receive();
    ASSERT_EQ(pkts.size(), 2u);
    EXPECT_EQ(pkts[0].h.op.get(), kVsockOpRst);
    EXPECT_EQ(pkts[1].h.op.get(), kVsockOpRst);
    EXPECT_GE(this->dev_->stats().malformed.load(), 4u);

    // A guest overrunning the credit we gave resets its connection.
    this->send(packet(kVsockOpRequest, 3, 1234));
    ASSERT_EQ(this->receive().size(), 1u);
    UniqueFd host(::accept(listener.get(), nullptr, nullptr));
    int small = 4096;
    ::setsockopt(host.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    const std::string chunk(kVsockMaxPayload, 'z');
    bool reset = false;
    // The host socket absorbs its own buffer first (~200 KiB), then our kVsockBufAlloc.
    for (std::uint32_t sent = 0; sent <= (1u << 20) && !reset; sent += kVsockMaxPayload) {
        this->send(packet(kVsockOpRw, 3, 1234, chunk));
        this->rx_->on_kick();
        for (const auto& u : this->rxq_.collect()) {
            reset = reset || parse(u).h.op.get() == kVsockOpRst;
        }
    }
    if (!reset) {
        for (const auto& p : this->receive()) {
            reset = reset || p.h.op.get() == kVsockOpRst;
        }
    }
    EXPECT_TRUE(reset);
    EXPECT_EQ(this->dev_->connection_count(), 0u);
}

TEST(VsockDeviceTest, ConfigAndOptions) {
    const std::string path = "/tmp/vireo-vsock-cfg-" + std::to_string(::getpid()) + ".sock";
    auto dev = VsockDevice::create({.guest_cid = 3, .uds_path = path});
    ASSERT_TRUE(dev.has_value()) << dev.error();
    VsockConfig c{};
    ASSERT_EQ((*dev)->config().size(), sizeof c);
    std::memcpy(&c, (*dev)->config().data(), sizeof c);
    EXPECT_EQ(c.guest_cid.get(), 3u);
    EXPECT_EQ((*dev)->device_id(), kIdVsock);
    EXPECT_EQ((*dev)->num_queues(), 3);
    for (std::uint64_t bad : {0ull, 1ull, 2ull, 0xffffffffull, 0x1'0000'0003ull}) {
        EXPECT_FALSE(VsockDevice::create({.guest_cid = bad, .uds_path = path + "x"}).has_value())
            << bad;
    }
    EXPECT_FALSE(VsockDevice::create({.guest_cid = 3, .uds_path = ""}).has_value());
    EXPECT_FALSE(VsockDevice::create({.guest_cid = 4, .uds_path = path}).has_value())
        << "a live socket is not stolen";
}

}  // namespace
}  // namespace vireo::dev
