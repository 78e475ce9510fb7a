#include "vhost_user/backend.hpp"

#include <sys/eventfd.h>

#include <algorithm>
#include <cstring>

#include "base/error.hpp"
#include "base/log.hpp"
#include "devices/queue_loop.hpp"
#include "virtq/features.hpp"
#include "virtq/ring_layout.hpp"

namespace vireo::vhost_user {

namespace {

// Requests whose reply carries an explicit body: REPLY_ACK adds nothing to them.
bool has_explicit_reply(Request r) {
    switch (r) {
        case Request::kGetFeatures:
        case Request::kGetProtocolFeatures:
        case Request::kGetVringBase:
        case Request::kGetQueueNum:
        case Request::kGetConfig:
        case Request::kGetInflightFd:
        case Request::kGetMaxMemSlots:
        case Request::kGetStatus:
            return true;
        default:
            return false;
    }
}

constexpr std::uint16_t kPackedWrapBit = 1u << 15;

}  // namespace

void CallInterrupt::signal() {
    if (fd_ >= 0) {
        // EAGAIN (counter saturated) still leaves the eventfd readable: nothing is lost.
        ::eventfd_write(fd_, 1);
    }
}

Backend::Backend(dev::VirtioDevice& device, std::string name,
                 std::function<std::expected<void, std::string>()> worker_init)
    : device_(device), name_(std::move(name)), worker_init_(std::move(worker_init)) {
    for (std::uint16_t i = 0; i < device_.num_queues(); ++i) {
        auto vr = std::make_unique<Vring>();
        vr->index = i;
        vrings_.push_back(std::move(vr));
    }
}

Backend::~Backend() {
    stop_all_rings();
    device_.reset();
}

ValidationLimits Backend::limits() const {
    return ValidationLimits{device_.num_queues(), device_.max_queue_size(),
                            (acked_features_ & virtq::bit(virtq::kFRingPacked)) != 0, kMaxMemSlots};
}

bool Backend::reply(int sock, const Message& req, std::span<const std::uint8_t> payload,
                    std::span<const int> fds) {
    const Header h{req.hdr.request, kVersion | kFlagReply,
                   static_cast<std::uint32_t>(payload.size())};
    log::trace("[{}] reply {} ({} bytes)", name_, to_string(req.request()), payload.size());
    return send(sock, h, payload, fds);
}

bool Backend::handle(Message& msg, int sock) {
    log::trace("[{}] request {} ({}) flags {:#x} size {} fds {}", name_, to_string(msg.request()),
               msg.hdr.request, msg.hdr.flags, msg.hdr.size, msg.fds.size());
    const bool ack = msg.need_reply() && !has_explicit_reply(msg.request());
    Result r;
    bool replied = false;
    if (auto ok = validate(msg, limits()); !ok) {
        r = std::unexpected("invalid message: " + ok.error());
    } else {
        r = dispatch(msg, sock, replied);
    }
    if (!r) {
        log::warn("[{}] {} failed: {}", name_, to_string(msg.request()), r.error());
    }
    if (ack) {
        // REPLY_ACK: zero for success, non-zero for failure; the front end decides what next.
        return reply_u64(sock, msg, r ? 0 : 1);
    }
    if (!r) {
        // GET_CONFIG has its own error form (an empty payload); everything else is fatal.
        if (msg.request() == Request::kGetConfig && !replied &&
            msg.payload.size() >= sizeof(ConfigHeader)) {
            reply(sock, msg, {});
            return true;
        }
        return false;
    }
    return true;
}

Backend::Result Backend::dispatch(Message& msg, int sock, bool& replied) {
    auto answer = [&](bool ok) -> Result {
        replied = true;
        if (!ok) {
            return fail("sending the reply failed");
        }
        return {};
    };
    switch (msg.request()) {
        case Request::kGetFeatures: {
            // Bit 30 tells the front end it may negotiate protocol features.
            const std::uint64_t f = device_.device_features() | (1ull << kFProtocolFeatures);
            return answer(reply_u64(sock, msg, f));
        }
        case Request::kSetFeatures:
            return set_features(msg.u64());
        case Request::kGetProtocolFeatures:
            return answer(reply_u64(sock, msg, kOfferedProtocolFeatures));
        case Request::kSetProtocolFeatures:
            return set_protocol_features(msg.u64());
        case Request::kSetOwner:
            log::info("[{}] front end took ownership (SET_OWNER)", name_);
            owner_ = true;
            return {};
        case Request::kResetOwner:
            // Deprecated; the spec recommends treating it as "disable all rings".
            log::info("[{}] RESET_OWNER: stopping all rings", name_);
            stop_all_rings();
            for (auto& vr : vrings_) {
                vr->started = false;
                vr->enabled = false;
            }
            return {};
        case Request::kResetDevice:
            log::info("[{}] RESET_DEVICE", name_);
            reset_device();
            return {};
        case Request::kSetSlaveReqFd: {
            if (!has_protocol(kPfSlaveReq)) {
                return fail("SET_SLAVE_REQ_FD without the SLAVE_REQ protocol feature");
            }
            std::lock_guard lock(backend_req_mutex_);
            backend_req_ = std::move(msg.fds[0]);
            log::info("[{}] back-end request channel set", name_);
            return {};
        }
        case Request::kSetMemTable:
            return set_mem_table(msg);
        case Request::kGetMaxMemSlots:
            return answer(reply_u64(sock, msg, kMaxMemSlots));
        case Request::kAddMemReg:
            return add_mem_reg(msg);
        case Request::kRemMemReg:
            return rem_mem_reg(msg);
        case Request::kSetVringNum:
            return set_vring_num(msg.as<VringState>());
        case Request::kSetVringAddr:
            return set_vring_addr(msg.as<VringAddr>());
        case Request::kSetVringBase:
            return set_vring_base(msg.as<VringState>());
        case Request::kGetVringBase: {
            const auto s = msg.as<VringState>();
            Vring& vr = *vrings_[s.index];
            stop_ring(vr);
            // "stop ring upon receiving GET_VRING_BASE": it restarts only on a new kick fd.
            vr.started = false;
            vr.kick.reset();
            vr.kick_polling = false;
            // A ring stopped by a queue error gets a fresh start with the next kick.
            vr.failed.store(false);
            log::info("[{}] queue {} stopped, base {:#x}", name_, s.index, vr.base);
            const VringState out{s.index, vr.base};
            return answer(reply(sock, msg, bytes_of(out)));
        }
        case Request::kSetVringKick:
        case Request::kSetVringCall:
        case Request::kSetVringErr:
            return set_vring_fd(msg);
        case Request::kGetQueueNum:
            return answer(reply_u64(sock, msg, device_.num_queues()));
        case Request::kSetVringEnable:
            return set_vring_enable(msg.as<VringState>());
        case Request::kGetConfig:
            return get_config(msg, sock);
        case Request::kSetConfig:
            return set_config(msg);
        case Request::kGetInflightFd: {
            auto r = get_inflight_fd(msg, sock);
            replied = r.has_value();
            return r;
        }
        case Request::kSetInflightFd:
            return set_inflight_fd(msg);
        case Request::kSetStatus: {
            if (!has_protocol(kPfStatus)) {
                return fail("SET_STATUS without the STATUS protocol feature");
            }
            // The status is informational for a back end: QEMU writes 0 when it stops the
            // device, *before* GET_VRING_BASE, so it must not reset the rings here.
            const auto v = static_cast<std::uint8_t>(msg.u64());
            status_.store(v, std::memory_order_relaxed);  // 0 also clears DEVICE_NEEDS_RESET
            log::info("[{}] device status {:#x}", name_, v);
            return {};
        }
        case Request::kGetStatus:
            if (!has_protocol(kPfStatus)) {
                return fail("GET_STATUS without the STATUS protocol feature");
            }
            return answer(reply_u64(sock, msg, status()));
        default:
            break;
    }
    return fail("unsupported request {}", msg.hdr.request);
}

// --- features -----------------------------------------------------------------------------

Backend::Result Backend::set_features(std::uint64_t features) {
    const std::uint64_t offered = device_.device_features() | (1ull << kFProtocolFeatures);
    if ((features & ~offered) != 0) {
        return fail("front end acked features {:#x} that were never offered", features & ~offered);
    }
    return with_rings_stopped([&]() -> Result {
        acked_features_ = features;
        features_set_ = true;
        device_.set_features(features & ~(1ull << kFProtocolFeatures));
        log::info("[{}] features negotiated: {:#x}", name_, features);
        return {};
    });
}

Backend::Result Backend::set_protocol_features(std::uint64_t features) {
    if ((features & ~kOfferedProtocolFeatures) != 0) {
        return fail("front end acked protocol features {:#x} that were never offered",
                    features & ~kOfferedProtocolFeatures);
    }
    // Workers read the negotiated protocol features (STATUS, SLAVE_REQ) when a queue fails.
    return with_rings_stopped([&]() -> Result {
        acked_protocol_ = features;
        protocol_features_set_ = true;
        log::info("[{}] protocol features negotiated: {:#x}", name_, features);
        return {};
    });
}

// --- memory -------------------------------------------------------------------------------

Backend::Result Backend::set_mem_table(Message& msg) {
    const auto hdr = msg.as<MemTableHeader>();
    // Map the new table completely before touching the running one: a failure leaves the old
    // table (and the rings using it) as they were.
    GuestMemory fresh;
    for (std::uint32_t i = 0; i < hdr.num_regions; ++i) {
        MemRegion r;
        std::memcpy(&r, msg.payload.data() + sizeof(MemTableHeader) + i * sizeof(MemRegion),
                    sizeof r);
        if (auto ok = fresh.add_fd(r.guest_phys_addr, r.memory_size, std::move(msg.fds[i]),
                                   r.mmap_offset, r.userspace_addr);
            !ok) {
            return fail("memory region {} (gpa {:#x} size {:#x}): {}", i, r.guest_phys_addr,
                        r.memory_size, to_string(ok.error()));
        }
        log::info("[{}] memory region {}: gpa {:#x} size {:#x} uva {:#x} offset {:#x}", name_, i,
                  r.guest_phys_addr, r.memory_size, r.userspace_addr, r.mmap_offset);
    }
    return with_rings_stopped([&]() -> Result {
        memory_ = std::move(fresh);
        return {};
    });
}

Backend::Result Backend::add_mem_reg(Message& msg) {
    const MemRegion r = msg.as<SingleMemRegion>().region;
    if (memory_.region_count() >= kMaxMemSlots) {
        return fail("ADD_MEM_REG beyond the {} memory slots", kMaxMemSlots);
    }
    return with_rings_stopped([&]() -> Result {
        if (auto ok = memory_.add_fd(r.guest_phys_addr, r.memory_size, std::move(msg.fds[0]),
                                     r.mmap_offset, r.userspace_addr);
            !ok) {
            return fail("ADD_MEM_REG gpa {:#x} size {:#x}: {}", r.guest_phys_addr, r.memory_size,
                        to_string(ok.error()));
        }
        log::info("[{}] memory region added: gpa {:#x} size {:#x} uva {:#x}", name_,
                  r.guest_phys_addr, r.memory_size, r.userspace_addr);
        return {};
    });
}

Backend::Result Backend::rem_mem_reg(const Message& msg) {
    const MemRegion r = msg.as<SingleMemRegion>().region;
    // The region is identified by guest address, user address and size (mmap offset ignored).
    const bool known =
        std::any_of(memory_.regions().begin(), memory_.regions().end(), [&](const auto& m) {
            return m->gpa() == r.guest_phys_addr && m->size() == r.memory_size &&
                   m->user_addr() == r.userspace_addr;
        });
    if (!known) {
        return fail("REM_MEM_REG: no region gpa {:#x} size {:#x} uva {:#x}", r.guest_phys_addr,
                    r.memory_size, r.userspace_addr);
    }
    return with_rings_stopped([&]() -> Result {
        (void)memory_.remove(r.guest_phys_addr, r.memory_size);
        log::info("[{}] memory region removed: gpa {:#x} size {:#x}", name_, r.guest_phys_addr,
                  r.memory_size);
        return {};
    });
}

// --- ring configuration -------------------------------------------------------------------

Backend::Result Backend::set_vring_num(const VringState& s) {
    Vring& vr = *vrings_[s.index];
    return with_rings_stopped([&]() -> Result {
        vr.num = s.num;
        log::info("[{}] queue {} size {}", name_, s.index, s.num);
        return {};
    });
}

Backend::Result Backend::set_vring_addr(const VringAddr& a) {
    Vring& vr = *vrings_[a.index];
    return with_rings_stopped([&]() -> Result {
        vr.addr = a;
        vr.has_addr = true;
        log::info("[{}] queue {} addresses desc {:#x} avail {:#x} used {:#x}", name_, a.index,
                  a.desc_user_addr, a.avail_user_addr, a.used_user_addr);
        return {};
    });
}

Backend::Result Backend::set_vring_base(const VringState& s) {
    Vring& vr = *vrings_[s.index];
    return with_rings_stopped([&]() -> Result {
        vr.base = s.num;
        log::info("[{}] queue {} base {:#x}", name_, s.index, s.num);
        return {};
    });
}

Backend::Result Backend::set_vring_fd(Message& msg) {
    const std::uint64_t v = msg.u64();
    Vring& vr = *vrings_[v & kVringIndexMask];
    const bool no_fd = (v & kVringNoFdMask) != 0;
    UniqueFd fd = no_fd ? UniqueFd{} : std::move(msg.fds[0]);
    const Request r = msg.request();
    return with_rings_stopped([&]() -> Result {
        if (r == Request::kSetVringKick) {
            vr.kick = std::move(fd);
            vr.kick_polling = no_fd;
            // "The back-end must start ring upon receiving a kick": the fd arriving is the start.
            vr.started = true;
            // Without PROTOCOL_FEATURES a ring is enabled as soon as it starts ("Ring states").
            if (!protocol_features_negotiated()) {
                vr.enabled = true;
            }
            log::info("[{}] queue {} started ({})", name_, vr.index,
                      no_fd ? "polling" : "kick eventfd");
        } else if (r == Request::kSetVringCall) {
            vr.call = std::move(fd);
            vr.irq.set_fd(vr.call.get());
            log::info("[{}] queue {} call {}", name_, vr.index, no_fd ? "disabled" : "eventfd set");
        } else {
            vr.err = std::move(fd);
            log::info("[{}] queue {} err {}", name_, vr.index, no_fd ? "disabled" : "eventfd set");
        }
        return {};
    });
}

Backend::Result Backend::set_vring_enable(const VringState& s) {
    if (!protocol_features_negotiated()) {
        return fail("SET_VRING_ENABLE without VHOST_USER_F_PROTOCOL_FEATURES");
    }
    Vring& vr = *vrings_[s.index];
    return with_rings_stopped([&]() -> Result {
        vr.enabled = s.num == 1;
        log::info("[{}] queue {} {}", name_, s.index, vr.enabled ? "enabled" : "disabled");
        return {};
    });
}

// --- config space -------------------------------------------------------------------------

Backend::Result Backend::get_config(const Message& msg, int sock) {
    if (!has_protocol(kPfConfig)) {
        return fail("GET_CONFIG without the CONFIG protocol feature");
    }
    const auto c = msg.as<ConfigHeader>();
    const auto cfg = device_.config();
    // Bytes past the device's config space read as zero: front ends read the size of their own
    // (possibly newer, larger) struct, as a driver may read reserved fields.
    std::vector<std::uint8_t> out(sizeof(ConfigHeader) + c.size, 0);
    std::memcpy(out.data(), &c, sizeof c);
    if (c.offset < cfg.size()) {
        const std::size_t n = std::min<std::size_t>(c.size, cfg.size() - c.offset);
        std::memcpy(out.data() + sizeof c, cfg.data() + c.offset, n);
    }
    if (!reply(sock, msg, out)) {
        return fail("sending the reply failed");
    }
    return {};
}

Backend::Result Backend::set_config(const Message& msg) {
    if (!has_protocol(kPfConfig)) {
        return fail("SET_CONFIG without the CONFIG protocol feature");
    }
    const auto c = msg.as<ConfigHeader>();
    if (c.flags != kConfigFlagWritable && c.flags != kConfigFlagMigration) {
        return fail("SET_CONFIG flags {:#x} unknown", c.flags);
    }
    if (c.offset + c.size > device_.config().size()) {
        return fail("SET_CONFIG offset {} size {} beyond the {}-byte config space", c.offset,
                    c.size, device_.config().size());
    }
    device_.write_config(c.offset, std::span(msg.payload).subspan(sizeof(ConfigHeader)));
    return {};
}

// --- inflight tracking --------------------------------------------------------------------

Backend::Result Backend::get_inflight_fd(const Message& msg, int sock) {
    if (!has_protocol(kPfInflightShmfd)) {
        return fail("GET_INFLIGHT_FD without the INFLIGHT_SHMFD protocol feature");
    }
    const auto d = msg.as<InflightDesc>();
    if (d.num_queues > device_.num_queues()) {
        return fail("GET_INFLIGHT_FD for {} queues, device has {}", d.num_queues,
                    device_.num_queues());
    }
    auto buf = InflightBuffer::create(d.num_queues, d.queue_size);
    if (!buf) {
        return std::unexpected(buf.error());
    }
    const InflightDesc out{buf->size(), 0, d.num_queues, d.queue_size, 0};
    const int fd = buf->fd();
    log::info("[{}] inflight buffer created: {} queues of size {}, {} bytes", name_, d.num_queues,
              d.queue_size, buf->size());
    // The buffer is ours from now on; the front end gives it back with SET_INFLIGHT_FD.
    if (!reply(sock, msg, bytes_of(out), std::span(&fd, 1))) {
        return fail("sending the reply failed");
    }
    return with_rings_stopped([&]() -> Result {
        inflight_ = std::move(*buf);
        return {};
    });
}

Backend::Result Backend::set_inflight_fd(Message& msg) {
    if (!has_protocol(kPfInflightShmfd)) {
        return fail("SET_INFLIGHT_FD without the INFLIGHT_SHMFD protocol feature");
    }
    const auto d = msg.as<InflightDesc>();
    if (d.num_queues > device_.num_queues()) {
        return fail("SET_INFLIGHT_FD for {} queues, device has {}", d.num_queues,
                    device_.num_queues());
    }
    auto buf = InflightBuffer::map(std::move(msg.fds[0]), d.mmap_size, d.mmap_offset, d.num_queues,
                                   d.queue_size);
    if (!buf) {
        return std::unexpected(buf.error());
    }
    log::info("[{}] inflight buffer set: {} queues of size {}", name_, d.num_queues, d.queue_size);
    return with_rings_stopped([&]() -> Result {
        inflight_ = std::move(*buf);
        return {};
    });
}

void Backend::reset_device() {
    stop_all_rings();
    for (auto& vr : vrings_) {
        const std::uint16_t i = vr->index;
        vr = std::make_unique<Vring>();
        vr->index = i;
    }
    acked_features_ = 0;
    features_set_ = false;
    status_.store(0, std::memory_order_relaxed);
    inflight_ = InflightBuffer{};
    device_.reset();
}

// --- rings --------------------------------------------------------------------------------

template <typename F>
Backend::Result Backend::with_rings_stopped(F&& f) {
    stop_all_rings();
    Result r = f();
    // Restart every ring that can run (not only those that ran): the change may be what
    // completed a ring's configuration (a kick fd, an enable, a memory table).
    restart_all();
    return r;
}

void Backend::restart_all() {
    for (auto& vr : vrings_) {
        if (startable(*vr)) {
            start_ring(*vr);
        }
    }
}

bool Backend::startable(const Vring& vr) const {
    return vr.started && vr.enabled && !vr.failed.load() && !vr.worker.joinable() && vr.num != 0 &&
           vr.has_addr && memory_.region_count() != 0 && features_set_;
}

void Backend::fail_ring(Vring& vr, std::string_view why) {
    log::error("[{}] queue {} stopped: {}", name_, vr.index, why);
    vr.failed.store(true);
    // §2.1.2: the device signals that it needs a reset; the front end sees it via GET_STATUS.
    if (has_protocol(kPfStatus)) {
        status_.fetch_or(kStatusNeedsReset, std::memory_order_relaxed);
    }
    if (vr.err) {
        ::eventfd_write(vr.err.get(), 1);
    }
    notify_config_change();
}

void Backend::notify_config_change() {
    // §2.1.2: after setting DEVICE_NEEDS_RESET the device sends a configuration change
    // notification; over vhost-user that is CONFIG_CHANGE_MSG on the back-end channel.
    if (!has_protocol(kPfConfig) || !has_protocol(kPfSlaveReq)) {
        return;
    }
    std::lock_guard lock(backend_req_mutex_);
    if (backend_req_) {
        const Header h{static_cast<std::uint32_t>(BackendRequest::kConfigChangeMsg), kVersion, 0};
        send(backend_req_.get(), h, {});
    }
}

void Backend::start_ring(Vring& vr) {
    const bool packed = (acked_features_ & virtq::bit(virtq::kFRingPacked)) != 0;
    const std::uint64_t desc_len =
        packed ? virtq::packed_desc_bytes(vr.num) : virtq::split_desc_bytes(vr.num);
    const std::uint64_t avail_len =
        packed ? sizeof(virtq::PackedEvent) : virtq::split_avail_bytes(vr.num);
    const std::uint64_t used_len =
        packed ? sizeof(virtq::PackedEvent) : virtq::split_used_bytes(vr.num);
    // Ring addresses are front-end virtual addresses (no IOMMU): translate them through the
    // memory table's user addresses.
    auto desc = memory_.uva_to_gpa(vr.addr.desc_user_addr, desc_len);
    auto avail = memory_.uva_to_gpa(vr.addr.avail_user_addr, avail_len);
    auto used = memory_.uva_to_gpa(vr.addr.used_user_addr, used_len);
    if (!desc || !avail || !used) {
        fail_ring(vr, "ring address outside the memory table");
        return;
    }
    virtq::QueueState st;
    st.config = {static_cast<std::uint16_t>(vr.num), *desc, *avail, *used};
    st.features = virtq::QueueFeatures::from_bits(acked_features_);
    st.next_avail = static_cast<std::uint16_t>(vr.base & 0xffff);
    std::vector<std::uint16_t> resubmit;
    std::vector<std::vector<virtq::PackedDesc>> resubmit_packed;
    if (packed) {
        // QEMU sends avail (slot | wrap << 15) in bits 0..15 and used likewise in 16..31; a
        // fresh ring is 0x80008000 (§2.8.1: wrap counters start at 1). Linux UML sends a plain
        // 0 for a fresh ring whatever the format, so 0 means "initial state" here. A front end
        // that sends only the avail half implies in-order completion (used == avail).
        if (vr.base == 0) {
            st.next_avail = kPackedWrapBit;
            st.next_used = kPackedWrapBit;
        } else {
            const auto hi = static_cast<std::uint16_t>(vr.base >> 16);
            st.next_used = hi != 0 ? hi : st.next_avail;
        }
        if (auto area = inflight_.queue(vr.index);
            !area.empty() && inflight_.queue_size() >= vr.num) {
            auto t = std::make_unique<PackedInflight>(area, static_cast<std::uint16_t>(vr.num),
                                                      memory_, *desc);
            auto rec = t->recover(st.next_avail, st.next_used);
            log::trace("[{}] queue {}: inflight tracking on, {} to resubmit", name_, vr.index,
                       rec.chains.size());
            if (rec.from_area) {
                // A valid area knows better than the front end where the ring is: QEMU 7.2
                // cannot restore a packed ring's position after a back-end crash (it sends the
                // position of the last clean stop).
                st.next_avail = rec.next_avail;
                st.next_used = rec.next_used;
            }
            if (!rec.chains.empty()) {
                log::info("[{}] queue {}: resubmitting {} inflight requests", name_, vr.index,
                          rec.chains.size());
                resubmit_packed = std::move(rec.chains);
            }
            vr.inflight = std::move(t);
        }
    } else {
        // The used index in guest memory is authoritative (it survives a back-end restart).
        virtq::SplitUsedHeader uh{};
        if (!memory_.read_obj(*used, uh)) {
            fail_ring(vr, "used ring outside guest memory");
            return;
        }
        st.next_used = uh.idx.get();
        if (auto area = inflight_.queue(vr.index);
            !area.empty() && inflight_.queue_size() >= vr.num) {
            auto t = std::make_unique<SplitInflight>(area, static_cast<std::uint16_t>(vr.num));
            resubmit = t->recover(st.next_used);
            vr.inflight = std::move(t);
            log::trace("[{}] queue {}: inflight tracking on, {} to resubmit", name_, vr.index,
                       resubmit.size());
            if (!resubmit.empty()) {
                // Everything popped so far is either used or inflight (vhost-user.rst,
                // "Inflight I/O tracking": resubmit, then continue after them).
                st.next_avail = static_cast<std::uint16_t>(st.next_used + resubmit.size());
                log::info("[{}] queue {}: resubmitting {} inflight requests", name_, vr.index,
                          resubmit.size());
            }
        }
    }
    if (auto ok = vr.vq.restore(memory_, st); !ok) {
        vr.inflight.reset();
        fail_ring(vr, virtq::to_string(ok.error()));
        return;
    }
    if (!resubmit.empty()) {
        vr.vq.set_resubmit(std::move(resubmit));
    }
    if (!resubmit_packed.empty()) {
        vr.vq.set_resubmit(std::move(resubmit_packed));
    }
    vr.stop.reset(::eventfd(0, EFD_CLOEXEC));
    if (!vr.stop) {
        vr.vq.reset();
        vr.inflight.reset();
        fail_ring(vr, "eventfd failed");
        return;
    }
    vr.irq.set_fd(vr.call.get());
    vr.handler =
        device_.start_queue(vr.index, dev::QueueHandle(memory_, vr.vq, vr.irq, vr.inflight.get()));
    log::info("[{}] queue {} running ({} ring, size {}, avail {}, used {})", name_, vr.index,
              packed ? "packed" : "split", vr.num, st.next_avail, st.next_used);
    vr.worker = std::thread([this, &vr] { worker_loop(vr); });
}

void Backend::stop_ring(Vring& vr) {
    if (!vr.worker.joinable()) {
        return;
    }
    ::eventfd_write(vr.stop.get(), 1);
    vr.worker.join();
    // The handler drained on its thread; save where the ring is so it can resume there.
    if (auto st = vr.vq.save(); st) {
        vr.base = st->next_avail;
        if (vr.vq.packed()) {
            vr.base |= static_cast<std::uint32_t>(st->next_used) << 16;
        }
    }
    vr.handler.reset();
    vr.vq.reset();
    vr.inflight.reset();
    vr.stop.reset();
}

void Backend::stop_all_rings() {
    for (auto& vr : vrings_) {
        stop_ring(*vr);
    }
}

void Backend::worker_loop(Vring& vr) {
    if (worker_init_) {
        if (auto ok = worker_init_(); !ok) {
            fail_ring(vr, ok.error());
            return;
        }
    }
    // A ring started without a kick fd is polled (SET_VRING_KICK with the "no fd" flag).
    auto broken = [&vr] { return vr.vq.broken() || vr.handler->needs_reset(); };
    const dev::QueueLoopEnd end = dev::run_queue_loop(*vr.handler, vr.kick ? vr.kick.get() : -1,
                                                      vr.stop.get(), broken, kPollIntervalMs);
    if (end.reason == dev::QueueLoopEnd::Reason::kFailed) {
        fail_ring(vr,
                  fmt::format("the worker's {} failed: {}", end.call, std::strerror(end.error)));
    } else if (broken()) {
        // Also when a stop came with it: the ring stays failed until the front end resets it.
        fail_ring(vr, "the driver's ring is malformed (queue error)");
    }
}

}  // namespace vireo::vhost_user
