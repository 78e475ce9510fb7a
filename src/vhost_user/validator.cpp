#include "vhost_user/validator.hpp"

#include <fmt/format.h>

#include "base/error.hpp"
#include "virtq/ring_layout.hpp"

namespace vireo::vhost_user {

std::string_view to_string(Request r) {
    switch (r) {
        case Request::kGetFeatures:
            return "GET_FEATURES";
        case Request::kSetFeatures:
            return "SET_FEATURES";
        case Request::kSetOwner:
            return "SET_OWNER";
        case Request::kResetOwner:
            return "RESET_OWNER";
        case Request::kSetMemTable:
            return "SET_MEM_TABLE";
        case Request::kSetLogBase:
            return "SET_LOG_BASE";
        case Request::kSetLogFd:
            return "SET_LOG_FD";
        case Request::kSetVringNum:
            return "SET_VRING_NUM";
        case Request::kSetVringAddr:
            return "SET_VRING_ADDR";
        case Request::kSetVringBase:
            return "SET_VRING_BASE";
        case Request::kGetVringBase:
            return "GET_VRING_BASE";
        case Request::kSetVringKick:
            return "SET_VRING_KICK";
        case Request::kSetVringCall:
            return "SET_VRING_CALL";
        case Request::kSetVringErr:
            return "SET_VRING_ERR";
        case Request::kGetProtocolFeatures:
            return "GET_PROTOCOL_FEATURES";
        case Request::kSetProtocolFeatures:
            return "SET_PROTOCOL_FEATURES";
        case Request::kGetQueueNum:
            return "GET_QUEUE_NUM";
        case Request::kSetVringEnable:
            return "SET_VRING_ENABLE";
        case Request::kSendRarp:
            return "SEND_RARP";
        case Request::kNetSetMtu:
            return "NET_SET_MTU";
        case Request::kSetSlaveReqFd:
            return "SET_SLAVE_REQ_FD";
        case Request::kIotlbMsg:
            return "IOTLB_MSG";
        case Request::kSetVringEndian:
            return "SET_VRING_ENDIAN";
        case Request::kGetConfig:
            return "GET_CONFIG";
        case Request::kSetConfig:
            return "SET_CONFIG";
        case Request::kCreateCryptoSession:
            return "CREATE_CRYPTO_SESSION";
        case Request::kCloseCryptoSession:
            return "CLOSE_CRYPTO_SESSION";
        case Request::kPostcopyAdvise:
            return "POSTCOPY_ADVISE";
        case Request::kPostcopyListen:
            return "POSTCOPY_LISTEN";
        case Request::kPostcopyEnd:
            return "POSTCOPY_END";
        case Request::kGetInflightFd:
            return "GET_INFLIGHT_FD";
        case Request::kSetInflightFd:
            return "SET_INFLIGHT_FD";
        case Request::kGpuSetSocket:
            return "GPU_SET_SOCKET";
        case Request::kResetDevice:
            return "RESET_DEVICE";
        case Request::kVringKick:
            return "VRING_KICK";
        case Request::kGetMaxMemSlots:
            return "GET_MAX_MEM_SLOTS";
        case Request::kAddMemReg:
            return "ADD_MEM_REG";
        case Request::kRemMemReg:
            return "REM_MEM_REG";
        case Request::kSetStatus:
            return "SET_STATUS";
        case Request::kGetStatus:
            return "GET_STATUS";
    }
    return "UNKNOWN";
}

bool is_supported(Request r) {
    switch (r) {
        case Request::kGetFeatures:
        case Request::kSetFeatures:
        case Request::kSetOwner:
        case Request::kResetOwner:
        case Request::kSetMemTable:
        case Request::kSetVringNum:
        case Request::kSetVringAddr:
        case Request::kSetVringBase:
        case Request::kGetVringBase:
        case Request::kSetVringKick:
        case Request::kSetVringCall:
        case Request::kSetVringErr:
        case Request::kGetProtocolFeatures:
        case Request::kSetProtocolFeatures:
        case Request::kGetQueueNum:
        case Request::kSetVringEnable:
        case Request::kGetConfig:
        case Request::kSetConfig:
        case Request::kGetInflightFd:
        case Request::kSetInflightFd:
        case Request::kResetDevice:
        case Request::kGetMaxMemSlots:
        case Request::kAddMemReg:
        case Request::kRemMemReg:
        case Request::kSetStatus:
        case Request::kGetStatus:
        case Request::kSetSlaveReqFd:
            return true;
        default:
            return false;
    }
}

namespace {

using Result = std::expected<void, std::string>;

Result exact_size(const Message& m, std::size_t want) {
    if (m.payload.size() != want) {
        return fail("payload is {} bytes, {} expects {}", m.payload.size(), to_string(m.request()),
                    want);
    }
    return {};
}

Result fd_count(const Message& m, std::size_t want) {
    if (m.fds.size() != want) {
        return fail("{} carries {} file descriptors, expects {}", to_string(m.request()),
                    m.fds.size(), want);
    }
    return {};
}

Result queue_index(std::uint64_t index, const ValidationLimits& l) {
    if (index >= l.num_queues) {
        return fail("queue index {} out of range (device has {} queues)", index, l.num_queues);
    }
    return {};
}

// One region's own geometry: non-empty, and no address range that wraps 2^64.
Result region_geometry(const MemRegion& r) {
    if (r.memory_size == 0) {
        return fail("memory region at gpa {:#x} is empty", r.guest_phys_addr);
    }
    if (r.memory_size > UINT64_MAX - r.guest_phys_addr ||
        r.memory_size > UINT64_MAX - r.userspace_addr ||
        r.memory_size > UINT64_MAX - r.mmap_offset) {
        return fail("memory region at gpa {:#x} size {:#x} wraps around the address space",
                    r.guest_phys_addr, r.memory_size);
    }
    return {};
}

bool overlap(std::uint64_t a, std::uint64_t alen, std::uint64_t b, std::uint64_t blen) {
    return a < b + blen && b < a + alen;  // no wrap: checked by region_geometry
}

Result mem_table(const Message& m, const ValidationLimits& l) {
    if (m.payload.size() < sizeof(MemTableHeader)) {
        return fail("SET_MEM_TABLE payload is {} bytes, shorter than its header", m.payload.size());
    }
    const auto hdr = m.as<MemTableHeader>();
    const std::uint32_t max = std::min(l.max_mem_slots, kMemTableMaxRegions);
    if (hdr.num_regions == 0 || hdr.num_regions > max) {
        return fail("SET_MEM_TABLE has {} regions (allowed 1..{})", hdr.num_regions, max);
    }
    // Front ends send either exactly the regions in use (QEMU) or the whole fixed-size array
    // (Linux UML sends room for two), so the size must cover num_regions and fit the array.
    const std::size_t need = sizeof(MemTableHeader) + hdr.num_regions * sizeof(MemRegion);
    const std::size_t most = sizeof(MemTableHeader) + kMemTableMaxRegions * sizeof(MemRegion);
    if (m.payload.size() < need || m.payload.size() > most) {
        return fail("SET_MEM_TABLE payload is {} bytes for {} regions (expects {}..{})",
                    m.payload.size(), hdr.num_regions, need, most);
    }
    if (auto ok = fd_count(m, hdr.num_regions); !ok) {
        return ok;
    }
    std::vector<MemRegion> regions(hdr.num_regions);
    std::memcpy(regions.data(), m.payload.data() + sizeof(MemTableHeader),
                regions.size() * sizeof(MemRegion));
    for (std::size_t i = 0; i < regions.size(); ++i) {
        if (auto ok = region_geometry(regions[i]); !ok) {
            return ok;
        }
        for (std::size_t j = 0; j < i; ++j) {
            if (overlap(regions[i].guest_phys_addr, regions[i].memory_size,
                        regions[j].guest_phys_addr, regions[j].memory_size)) {
                return fail("memory regions {} and {} overlap in guest-physical space", j, i);
            }
            if (overlap(regions[i].userspace_addr, regions[i].memory_size,
                        regions[j].userspace_addr, regions[j].memory_size)) {
                return fail("memory regions {} and {} overlap in front-end address space", j, i);
            }
        }
    }
    return {};
}

// SET_VRING_KICK/CALL/ERR: index in bits 0-7, "no fd" in bit 8, nothing else.
Result vring_fd(const Message& m, const ValidationLimits& l) {
    if (auto ok = exact_size(m, sizeof(std::uint64_t)); !ok) {
        return ok;
    }
    const std::uint64_t v = m.u64();
    if ((v & ~(kVringIndexMask | kVringNoFdMask)) != 0) {
        return fail("{} payload {:#x} has reserved bits set", to_string(m.request()), v);
    }
    if (auto ok = queue_index(v & kVringIndexMask, l); !ok) {
        return ok;
    }
    return fd_count(m, (v & kVringNoFdMask) != 0 ? 0 : 1);
}

Result vring_state(const Message& m, const ValidationLimits& l) {
    if (auto ok = exact_size(m, sizeof(VringState)); !ok) {
        return ok;
    }
    if (auto ok = fd_count(m, 0); !ok) {
        return ok;
    }
    return queue_index(m.as<VringState>().index, l);
}

Result config(const Message& m) {
    if (m.payload.size() < sizeof(ConfigHeader)) {
        return fail("{} payload is {} bytes, shorter than its header", to_string(m.request()),
                    m.payload.size());
    }
    const auto c = m.as<ConfigHeader>();
    if (c.size > kMaxConfigSize || c.offset > kMaxConfigSize - c.size) {
        return fail("{} offset {} size {} beyond the {}-byte config limit", to_string(m.request()),
                    c.offset, c.size, kMaxConfigSize);
    }
    if (auto ok = exact_size(m, sizeof(ConfigHeader) + c.size); !ok) {
        return ok;
    }
    return fd_count(m, 0);
}

Result inflight(const Message& m, std::size_t fds) {
    if (m.payload.size() < kInflightDescMinSize || m.payload.size() > sizeof(InflightDesc)) {
        return fail("{} payload is {} bytes, expects {}..{}", to_string(m.request()),
                    m.payload.size(), kInflightDescMinSize, sizeof(InflightDesc));
    }
    return fd_count(m, fds);
}

}  // namespace

std::expected<void, std::string> validate(const Message& m, const ValidationLimits& l) {
    if ((m.hdr.flags & kVersionMask) != kVersion) {
        return fail("unsupported protocol version {}", m.hdr.flags & kVersionMask);
    }
    if ((m.hdr.flags & ~kKnownFlags) != 0 || (m.hdr.flags & kFlagReply) != 0) {
        return fail("invalid header flags {:#x}", m.hdr.flags);
    }
    if (m.hdr.size != m.payload.size()) {
        return fail("header size {} does not match payload {}", m.hdr.size, m.payload.size());
    }
    const Request r = m.request();
    if (!is_supported(r)) {
        return fail("unsupported request {} ({})", m.hdr.request, to_string(r));
    }
    switch (r) {
        case Request::kGetFeatures:
        case Request::kGetProtocolFeatures:
        case Request::kSetOwner:
        case Request::kResetOwner:
        case Request::kGetQueueNum:
        case Request::kGetMaxMemSlots:
        case Request::kGetStatus:
        case Request::kResetDevice:
            if (auto ok = exact_size(m, 0); !ok) {
                return ok;
            }
            return fd_count(m, 0);
        case Request::kSetSlaveReqFd:
            if (auto ok = exact_size(m, 0); !ok) {
                return ok;
            }
            return fd_count(m, 1);
        case Request::kSetFeatures:
        case Request::kSetProtocolFeatures:
        case Request::kSetStatus:
            if (auto ok = exact_size(m, sizeof(std::uint64_t)); !ok) {
                return ok;
            }
            return fd_count(m, 0);
        case Request::kSetMemTable:
            return mem_table(m, l);
        case Request::kSetVringNum: {
            if (auto ok = vring_state(m, l); !ok) {
                return ok;
            }
            const std::uint32_t num = m.as<VringState>().num;
            const std::uint32_t max =
                std::min<std::uint32_t>(l.max_queue_size, virtq::kMaxQueueSize);
            if (num == 0 || num > max) {
                return fail("ring size {} out of range (1..{})", num, max);
            }
            // §2.7: split ring sizes are powers of two; §2.8 lifts that for packed rings.
            if (!l.packed && (num & (num - 1)) != 0) {
                return fail("split ring size {} is not a power of two", num);
            }
            return {};
        }
        case Request::kSetVringBase:
        case Request::kGetVringBase:
            return vring_state(m, l);
        case Request::kSetVringEnable: {
            if (auto ok = vring_state(m, l); !ok) {
                return ok;
            }
            if (m.as<VringState>().num > 1) {
                return fail("SET_VRING_ENABLE value {} is not 0 or 1", m.as<VringState>().num);
            }
            return {};
        }
        case Request::kSetVringAddr:
            if (auto ok = exact_size(m, sizeof(VringAddr)); !ok) {
                return ok;
            }
            if (auto ok = fd_count(m, 0); !ok) {
                return ok;
            }
            return queue_index(m.as<VringAddr>().index, l);
        case Request::kSetVringKick:
        case Request::kSetVringCall:
        case Request::kSetVringErr:
            return vring_fd(m, l);
        case Request::kGetConfig:
        case Request::kSetConfig:
            return config(m);
        case Request::kGetInflightFd:
            return inflight(m, 0);
        case Request::kSetInflightFd:
            return inflight(m, 1);
        case Request::kAddMemReg:
        case Request::kRemMemReg: {
            if (auto ok = exact_size(m, sizeof(SingleMemRegion)); !ok) {
                return ok;
            }
            // REM_MEM_REG: "the back-end MAY accept messages with one file descriptor" (it is
            // closed unused when the message is destroyed).
            const bool add = r == Request::kAddMemReg;
            if (add || m.fds.size() > 1) {
                if (auto ok = fd_count(m, add ? 1 : 0); !ok) {
                    return ok;
                }
            }
            return region_geometry(m.as<SingleMemRegion>().region);
        }
        default:
            break;
    }
    return fail("unsupported request {}", m.hdr.request);
}

}  // namespace vireo::vhost_user
