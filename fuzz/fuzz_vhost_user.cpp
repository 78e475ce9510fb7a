// vhost-user message handling: a byte stream of messages into the validator and a Backend serving
// a two-queue blk device, as a hostile front end would send them. File descriptors are absent or
// dummies the fuzzer picks per message: eventfds (kick/call/err) or 2 MiB memfds (memory tables,
// inflight areas). Replies go to a socketpair that is drained after every message. Rings may start
// (worker threads, guest memory mapped from the memfds), so ring setup against fuzzed tables is
// exercised too.
//
// Message encoding: request byte (1 + b % 40), flags byte (bit 0 NEED_REPLY, bit 1 bad version,
// bits 2-3 fd kind: none/eventfd/memfd/mixed, bits 4-7 fd count 0..15), payload length (u16,
// capped at kMaxPayload + 16), payload bytes.
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <vector>

#include "device_fuzz.hpp"
#include "vhost_user/backend.hpp"
#include "vhost_user/validator.hpp"

namespace vu = vireo::vhost_user;

namespace {

constexpr int kMaxMessages = 64;
constexpr off_t kMemfdSize = 2 << 20;

vireo::UniqueFd dummy_fd(unsigned kind, unsigned i) {
    const bool mem = kind == 2 || (kind == 3 && (i & 1) != 0);
    if (!mem) {
        return vireo::UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    }
    vireo::UniqueFd fd(::memfd_create("vireo-fuzz-vu", MFD_CLOEXEC));
    if (fd && ::ftruncate(fd.get(), kMemfdSize) != 0) {
        return {};
    }
    return fd;
}

void drain(int sock) {
    std::uint8_t buf[8192];
    while (::recv(sock, buf, sizeof buf, MSG_DONTWAIT) > 0) {
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static auto dev = vireo::fuzz::make_blk_device();
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        return 0;
    }
    vireo::UniqueFd ours(sv[0]), theirs(sv[1]);
    vireo::fuzz::ByteStream in(data, size);
    {
        vu::Backend backend(*dev, "fuzz");
        for (int m = 0; m < kMaxMessages && !in.empty(); ++m) {
            vu::Message msg;
            msg.hdr.request = 1 + in.u8() % 40;
            const std::uint8_t flags = in.u8();
            msg.hdr.flags =
                ((flags & 2) != 0 ? 0 : vu::kVersion) | ((flags & 1) != 0 ? vu::kFlagNeedReply : 0);
            const unsigned kind = (flags >> 2) & 3;
            const unsigned nfds = kind == 0 ? 0 : flags >> 4;
            for (unsigned i = 0; i < nfds; ++i) {
                msg.fds.push_back(dummy_fd(kind, i));
            }
            const std::size_t len = in.u16() % (vu::kMaxPayload + 17);
            msg.payload.resize(len);
            in.copy(msg.payload.data(), len);
            msg.hdr.size = static_cast<std::uint32_t>(len);
            const bool keep = backend.handle(msg, theirs.get());
            drain(ours.get());
            if (!keep) {
                break;
            }
        }
        backend.stop_all_rings();
    }
    drain(ours.get());
    return 0;
}
