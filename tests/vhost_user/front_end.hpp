// A test front end: speaks vhost-user over a socketpair to a back-end Connection, with real
// memfd guest memory (mapped here at the "front-end virtual address" the messages carry) and
// real eventfds, and a minimal driver side of a split ring built directly in that memory.
#pragma once

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "devices/device.hpp"
#include "memory/unique_fd.hpp"
#include "vhost_user/message.hpp"
#include "vhost_user/server.hpp"
#include "virtq/chain.hpp"
#include "virtq/features.hpp"
#include "virtq/ring_layout.hpp"

namespace vireo::vhost_user::test {

// --- a device for protocol tests: every chain's readable bytes are copied, upper-cased, into
// its writable part ------------------------------------------------------------------------

inline constexpr std::uint64_t kEchoFeatures =
    virtq::bit(virtq::kFVersion1) | virtq::bit(virtq::kFIndirectDesc) |
    virtq::bit(virtq::kFEventIdx) | virtq::bit(virtq::kFRingPacked);

class EchoQueue final : public dev::QueueHandler {
  public:
    EchoQueue(dev::QueueHandle q, const std::atomic<bool>* hold) : q_(q), hold_(hold) {}
    void on_kick() override {
        virtq::DescriptorChain chain;
        for (;;) {
            auto r = q_.pop(chain);
            if (!r || !*r) {
                break;  // an error leaves the queue broken; the transport notices
            }
            std::vector<std::uint8_t> data(chain.readable_bytes());
            virtq::ChainReader(chain.readable()).read(data);
            if (hold_ != nullptr && hold_->load() && !data.empty() && data[0] == '!') {
                continue;  // "crash" with this request in flight: never completed
            }
            for (auto& b : data) {
                b = static_cast<std::uint8_t>(std::toupper(b));
            }
            virtq::ChainWriter w(chain.writable());
            w.write(std::span(data).first(std::min(data.size(), w.remaining())));
            q_.push(chain.token(), static_cast<std::uint32_t>(w.written()));
        }
        q_.publish_and_notify();
    }
    void drain() override {}

  private:
    dev::QueueHandle q_;
    const std::atomic<bool>* hold_;
};

class EchoDevice final : public dev::VirtioDevice {
  public:
    explicit EchoDevice(std::uint16_t queues = 2) : queues_(queues) {
        for (std::size_t i = 0; i < config_.size(); ++i) {
            config_[i] = static_cast<std::uint8_t>(0xa0 + i);
        }
    }
    std::uint32_t device_id() const override { return 0x7e57; }
    std::uint64_t device_features() const override { return kEchoFeatures; }
    std::uint16_t num_queues() const override { return queues_; }
    std::uint16_t max_queue_size() const override { return 256; }
    std::span<const std::uint8_t> config() const override { return config_; }
    void write_config(std::uint32_t offset, std::span<const std::uint8_t> data) override {
        std::copy(data.begin(), data.end(), config_.begin() + offset);
    }
    void set_features(std::uint64_t negotiated) override { features = negotiated; }
    std::unique_ptr<dev::QueueHandler> start_queue(std::uint16_t, dev::QueueHandle q) override {
        ++started;
        return std::make_unique<EchoQueue>(q, &hold);
    }
    void reset() override { ++resets; }

    std::uint64_t features = 0;
    // While set, chains whose data starts with '!' are popped and never completed, not even
    // by drain(): what a back end that crashes mid-request leaves behind.
    std::atomic<bool> hold{false};
    std::atomic<int> started{0};
    std::atomic<int> resets{0};

  private:
    std::uint16_t queues_;
    std::array<std::uint8_t, 16> config_{};
};

// --- the front end ---------------------------------------------------------------------

inline constexpr std::uint64_t kGuestBase = 0x100000;  // guest-physical base of guest RAM
inline constexpr std::uint64_t kGuestSize = 1 << 20;

struct Reply {
    Header hdr{};
    std::vector<std::uint8_t> payload;
    std::vector<UniqueFd> fds;
    std::uint64_t u64() const {
        std::uint64_t v = 0;
        std::memcpy(&v, payload.data(), std::min(payload.size(), sizeof v));
        return v;
    }
};

class FrontEnd {
  public:
    explicit FrontEnd(dev::VirtioDevice& dev) : dev_(dev) {
        connect();
        mem_fd_.reset(::memfd_create("fe-guest", MFD_CLOEXEC));
        EXPECT_EQ(::ftruncate(mem_fd_.get(), kGuestSize), 0);
        void* p = ::mmap(nullptr, kGuestSize, PROT_READ | PROT_WRITE, MAP_SHARED, mem_fd_.get(), 0);
        EXPECT_NE(p, MAP_FAILED);
        host_ = static_cast<std::uint8_t*>(p);
    }
    ~FrontEnd() { ::munmap(host_, kGuestSize); }

    // A new session with the same device and the same guest memory (QEMU reconnect=1).
    void reconnect() {
        disconnect();
        connect();
    }

    Connection& conn() { return *conn_; }
    bool alive() const { return alive_; }
    void disconnect() {
        sock_.reset();
        if (conn_) {
            EXPECT_FALSE(conn_->on_readable());  // sees EOF
            conn_.reset();
        }
        alive_ = false;
    }

    // Sends a raw message and lets the back end handle it; false if the back end hung up.
    bool send_raw(std::uint32_t request, std::span<const std::uint8_t> payload,
                  std::span<const int> fds = {}, std::uint32_t flags = kVersion,
                  std::optional<std::uint32_t> size = std::nullopt) {
        const Header h{request, flags, size.value_or(static_cast<std::uint32_t>(payload.size()))};
        EXPECT_TRUE(vhost_user::send(sock_.get(), h, payload, fds));
        alive_ = alive_ && conn_->on_readable();
        return alive_;
    }
    template <typename T>
    bool send(Request r, const T& payload, std::span<const int> fds = {}, bool need_reply = false) {
        return send_raw(static_cast<std::uint32_t>(r), bytes_of(payload), fds,
                        kVersion | (need_reply ? kFlagNeedReply : 0));
    }
    bool send(Request r, bool need_reply = false) {
        return send_raw(static_cast<std::uint32_t>(r), {}, {},
                        kVersion | (need_reply ? kFlagNeedReply : 0));
    }
    // Reads one reply (the back end has already written it: it runs synchronously).
    std::optional<Reply> reply() {
        pollfd p{sock_.get(), POLLIN, 0};
        if (::poll(&p, 1, 0) != 1 || (p.revents & POLLIN) == 0) {
            return std::nullopt;
        }
        auto m = vhost_user::receive(sock_.get());
        if (!m) {
            return std::nullopt;
        }
        return Reply{m->hdr, std::move(m->payload), std::move(m->fds)};
    }
    std::uint64_t get_u64(Request r) {
        EXPECT_TRUE(send(r));
        auto rep = reply();
        EXPECT_TRUE(rep.has_value());
        EXPECT_EQ(rep->hdr.request, static_cast<std::uint32_t>(r));
        EXPECT_EQ(rep->hdr.flags, kVersion | kFlagReply);
        return rep ? rep->u64() : ~0ull;
    }
    // Sends with need_reply and returns the REPLY_ACK value (~0 if the back end hung up).
    template <typename T>
    std::uint64_t acked(Request r, const T& payload, std::span<const int> fds = {}) {
        return ack_of(send(r, payload, fds, true));
    }
    std::uint64_t acked(Request r) { return ack_of(send(r, true)); }
    // No payload, only fds (SET_SLAVE_REQ_FD).
    std::uint64_t acked(Request r, std::span<const int> fds) {
        return ack_of(send_raw(static_cast<std::uint32_t>(r), {}, fds, kVersion | kFlagNeedReply));
    }

    // --- guest memory (front end's view) -----------------------------------------------
    std::uint64_t uva(std::uint64_t gpa) const {
        return reinterpret_cast<std::uint64_t>(host_) + (gpa - kGuestBase);
    }
    std::uint8_t* at(std::uint64_t gpa) { return host_ + (gpa - kGuestBase); }
    int mem_fd() const { return mem_fd_.get(); }

    bool set_mem_table() {
        struct {
            MemTableHeader h;
            MemRegion r;
        } t{{1, 0}, {kGuestBase, kGuestSize, uva(kGuestBase), 0}};
        const int fd = mem_fd_.get();
        return acked(Request::kSetMemTable, t, std::span(&fd, 1)) == 0;
    }

    // Standard negotiation up to (not including) ring setup.
    void negotiate(std::uint64_t extra_features = 0) {
        const std::uint64_t f = get_u64(Request::kGetFeatures);
        ASSERT_TRUE(send(Request::kSetOwner));
        const std::uint64_t pf = get_u64(Request::kGetProtocolFeatures);
        ASSERT_TRUE(send(Request::kSetProtocolFeatures, pf));
        ASSERT_EQ(
            acked(Request::kSetFeatures, (f & (virtq::bit(virtq::kFVersion1) | extra_features)) |
                                             (1ull << kFProtocolFeatures)),
            0u);
        ASSERT_TRUE(set_mem_table());
    }

  private:
    void connect() {
        int sv[2];
        EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        sock_.reset(sv[0]);
        conn_ = std::make_unique<Connection>(UniqueFd(sv[1]), dev_, "test");
        alive_ = true;
    }
    std::uint64_t ack_of(bool sent) {
        if (!sent) {
            return ~0ull;
        }
        auto rep = reply();
        return rep ? rep->u64() : ~0ull;
    }

    dev::VirtioDevice& dev_;
    UniqueFd sock_;
    std::unique_ptr<Connection> conn_;
    UniqueFd mem_fd_;
    std::uint8_t* host_ = nullptr;
    bool alive_ = true;
};

// Driver side of one split ring inside the front end's guest memory.
class SplitRing {
  public:
    SplitRing(FrontEnd& fe, std::uint16_t index, std::uint64_t base_gpa, std::uint16_t size)
        : fe_(fe),
          index_(index),
          size_(size),
          desc_(base_gpa),
          avail_(desc_ + virtq::split_desc_bytes(size)),
          used_((avail_ + virtq::split_avail_bytes(size) + 3) & ~3ull),
          buffers_(used_ + virtq::split_used_bytes(size) + 64) {
        std::memset(fe.at(desc_), 0, buffers_ - desc_);
        kick_.reset(::eventfd(0, EFD_CLOEXEC));
        call_.reset(::eventfd(0, EFD_CLOEXEC));
    }

    // Sends SET_VRING_NUM/BASE/ADDR/CALL/KICK and (if PROTOCOL_FEATURES) ENABLE.
    void setup(bool enable = true, std::uint32_t base = 0) {
        ASSERT_TRUE(fe_.send(Request::kSetVringNum, VringState{index_, size_}));
        ASSERT_TRUE(fe_.send(Request::kSetVringBase, VringState{index_, base}));
        const VringAddr a{index_, 0, fe_.uva(desc_), fe_.uva(used_), fe_.uva(avail_), 0};
        ASSERT_TRUE(fe_.send(Request::kSetVringAddr, a));
        int fd = call_.get();
        ASSERT_TRUE(fe_.send(Request::kSetVringCall, std::uint64_t{index_}, std::span(&fd, 1)));
        fd = kick_.get();
        ASSERT_TRUE(fe_.send(Request::kSetVringKick, std::uint64_t{index_}, std::span(&fd, 1)));
        if (enable) {
            ASSERT_TRUE(fe_.send(Request::kSetVringEnable, VringState{index_, 1}));
        }
    }

    // Writes a two-descriptor chain at descriptor `head` (readable `in`, writable `out_len`
    // bytes) and makes it available at the next avail slot; does not kick.
    void add(std::uint16_t head, std::string_view in, std::uint32_t out_len) {
        const std::uint64_t rd = buffer(head, 0);
        const std::uint64_t wr = buffer(head, 1);
        std::memcpy(fe_.at(rd), in.data(), in.size());
        write_desc(head, rd, static_cast<std::uint32_t>(in.size()), virtq::kDescFNext,
                   static_cast<std::uint16_t>((head + 1) % size_));
        write_desc((head + 1) % size_, wr, out_len, virtq::kDescFWrite, 0);
        make_available(head);
    }
    void make_available(std::uint16_t head) {
        auto* ring = reinterpret_cast<std::uint16_t*>(fe_.at(avail_ + 4));
        ring[avail_idx_ % size_] = head;
        // EVENT_IDX (§2.7.10): ask for an interrupt as soon as the next used entry appears.
        __atomic_store_n(&ring[size_], used_idx(), __ATOMIC_RELAXED);
        ++avail_idx_;
        __atomic_store_n(reinterpret_cast<std::uint16_t*>(fe_.at(avail_ + 2)), avail_idx_,
                         __ATOMIC_RELEASE);
    }
    void write_desc(std::uint16_t i, std::uint64_t addr, std::uint32_t len, std::uint16_t flags,
                    std::uint16_t next) {
        virtq::SplitDesc d{};
        d.addr.set(addr);
        d.len.set(len);
        d.flags.set(flags);
        d.next.set(next);
        std::memcpy(fe_.at(desc_ + 16ull * i), &d, sizeof d);
    }
    void kick() { ::eventfd_write(kick_.get(), 1); }
    // Waits (bounded, 10 s: a hang is a failure, not a timing assertion) for an interrupt.
    bool wait_call() {
        pollfd p{call_.get(), POLLIN, 0};
        if (::poll(&p, 1, 10000) != 1) {
            return false;
        }
        eventfd_t v;
        ::eventfd_read(call_.get(), &v);
        return true;
    }
    std::uint16_t used_idx() {
        return __atomic_load_n(reinterpret_cast<std::uint16_t*>(fe_.at(used_ + 2)),
                               __ATOMIC_ACQUIRE);
    }
    virtq::SplitUsedElem used_elem(std::uint16_t i) {
        virtq::SplitUsedElem e;
        std::memcpy(&e, fe_.at(used_ + 4 + 8ull * (i % size_)), sizeof e);
        return e;
    }
    std::string written(std::uint16_t head, std::uint32_t len) {
        return std::string(reinterpret_cast<const char*>(fe_.at(buffer(head, 1))), len);
    }
    int kick_fd() const { return kick_.get(); }
    int call_fd() const { return call_.get(); }
    std::uint64_t buffer(std::uint16_t head, int part) const {
        return buffers_ + (2ull * head + static_cast<std::uint64_t>(part)) * 256;
    }
    std::uint16_t index() const { return index_; }

  private:
    FrontEnd& fe_;
    std::uint16_t index_;
    std::uint16_t size_;
    std::uint64_t desc_, avail_, used_, buffers_;
    std::uint16_t avail_idx_ = 0;
    UniqueFd kick_, call_;
};

// Driver side of one packed ring (§2.8) inside the front end's guest memory.
class PackedRing {
  public:
    PackedRing(FrontEnd& fe, std::uint16_t index, std::uint64_t base_gpa, std::uint16_t size)
        : fe_(fe),
          index_(index),
          size_(size),
          desc_(base_gpa),
          driver_evt_(desc_ + virtq::packed_desc_bytes(size)),
          device_evt_(driver_evt_ + 4),
          buffers_(device_evt_ + 64) {
        std::memset(fe.at(desc_), 0, buffers_ - desc_);
        kick_.reset(::eventfd(0, EFD_CLOEXEC));
        call_.reset(::eventfd(0, EFD_CLOEXEC));
    }

    // QEMU's encoding: avail (slot | wrap << 15) in bits 0..15, used likewise in 16..31.
    void setup(std::uint32_t base = 0x80008000u) {
        ASSERT_TRUE(fe_.send(Request::kSetVringNum, VringState{index_, size_}));
        ASSERT_TRUE(fe_.send(Request::kSetVringBase, VringState{index_, base}));
        const VringAddr a{index_, 0, fe_.uva(desc_), fe_.uva(device_evt_), fe_.uva(driver_evt_), 0};
        ASSERT_TRUE(fe_.send(Request::kSetVringAddr, a));
        int fd = call_.get();
        ASSERT_TRUE(fe_.send(Request::kSetVringCall, std::uint64_t{index_}, std::span(&fd, 1)));
        fd = kick_.get();
        ASSERT_TRUE(fe_.send(Request::kSetVringKick, std::uint64_t{index_}, std::span(&fd, 1)));
        ASSERT_TRUE(fe_.send(Request::kSetVringEnable, VringState{index_, 1}));
    }

    // Makes a two-descriptor chain (readable `in`, writable `out_len`) with buffer `id`
    // available; the head's flags are written last (§2.8.21).
    void add(std::uint16_t id, std::string_view in, std::uint32_t out_len) {
        const std::uint64_t rd = buffer(id, 0);
        const std::uint64_t wr = buffer(id, 1);
        std::memcpy(fe_.at(rd), in.data(), in.size());
        const std::uint16_t head = next_;
        const bool head_wrap = wrap_;
        step();
        write(next_, wr, out_len, id, virtq::kDescFWrite | avail_flags(wrap_));
        step();
        write(head, rd, static_cast<std::uint32_t>(in.size()), id,
              virtq::kDescFNext | avail_flags(head_wrap), /*release=*/true);
    }
    void kick() { ::eventfd_write(kick_.get(), 1); }
    bool wait_call() {
        pollfd p{call_.get(), POLLIN, 0};
        if (::poll(&p, 1, 10000) != 1) {
            return false;
        }
        eventfd_t v;
        ::eventfd_read(call_.get(), &v);
        return true;
    }
    // The next used element, if the device wrote it: (id, len); advances past its 2 slots.
    std::optional<std::pair<std::uint16_t, std::uint32_t>> take_used() {
        auto* d = reinterpret_cast<virtq::PackedDesc*>(fe_.at(desc_ + 16ull * used_));
        const std::uint16_t f = __atomic_load_n(&d->flags.raw, __ATOMIC_ACQUIRE);
        const bool avail = (f & virtq::kPackedDescFAvail) != 0;
        const bool used = (f & virtq::kPackedDescFUsed) != 0;
        if (avail != used_wrap_ || used != used_wrap_) {
            return std::nullopt;
        }
        std::pair<std::uint16_t, std::uint32_t> r{d->id.get(), d->len.get()};
        for (int i = 0; i < 2; ++i) {
            if (++used_ == size_) {
                used_ = 0;
                used_wrap_ = !used_wrap_;
            }
        }
        return r;
    }
    std::string written(std::uint16_t id, std::uint32_t len) {
        return std::string(reinterpret_cast<const char*>(fe_.at(buffer(id, 1))), len);
    }
    std::uint64_t buffer(std::uint16_t id, int part) const {
        return buffers_ + (2ull * id + static_cast<std::uint64_t>(part)) * 256;
    }

  private:
    static std::uint16_t avail_flags(bool wrap) {
        return wrap ? virtq::kPackedDescFAvail : virtq::kPackedDescFUsed;
    }
    void step() {
        if (++next_ == size_) {
            next_ = 0;
            wrap_ = !wrap_;
        }
    }
    void write(std::uint16_t slot, std::uint64_t addr, std::uint32_t len, std::uint16_t id,
               std::uint16_t flags, bool release = false) {
        auto* d = reinterpret_cast<virtq::PackedDesc*>(fe_.at(desc_ + 16ull * slot));
        d->addr.set(addr);
        d->len.set(len);
        d->id.set(id);
        if (release) {
            __atomic_store_n(&d->flags.raw, le16::of(flags).raw, __ATOMIC_RELEASE);
        } else {
            d->flags.set(flags);
        }
    }

    FrontEnd& fe_;
    std::uint16_t index_;
    std::uint16_t size_;
    std::uint64_t desc_, driver_evt_, device_evt_, buffers_;
    std::uint16_t next_ = 0;
    bool wrap_ = true;  // §2.8.1: the driver's wrap counters start at 1
    std::uint16_t used_ = 0;
    bool used_wrap_ = true;
    UniqueFd kick_, call_;
};

}  // namespace vireo::vhost_user::test
