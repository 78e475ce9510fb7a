// A descriptor chain as device code sees it: two scatter-gather lists of host memory, the
// driver→device (readable) part first and the device→driver (writable) part after it (§2.7.4.2
// forbids readable after writable, so one array with a split point holds both), plus the token
// the queue needs back when the chain is used.
//
// Device code never does address arithmetic: it copies through ChainReader / ChainWriter or hands
// the iovecs to the kernel (preadv/pwritev/io_uring).
#pragma once

#include <sys/uio.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

namespace vireo::virtq {

// What a queue needs to complete a chain. For split rings `id` is the head index; for packed
// rings it is the buffer id and `descs` is how many ring slots the chain used (§2.8.7: the
// device skips that many descriptors when it writes the used element).
struct UsedToken {
    std::uint16_t id = 0;
    std::uint16_t descs = 0;
};

// A vector with inline room for the common case; chains of more than kInline segments spill to
// the heap (bounded: a chain has at most 32768 descriptors times the region count segments).
class SegmentList {
  public:
    static constexpr std::size_t kInline = 8;

    void clear() {
        size_ = 0;
        spill_.clear();
    }
    void push_back(const iovec& v) {
        if (size_ < kInline) [[likely]] {
            inline_[size_++] = v;
            return;
        }
        if (size_ == kInline) {
            spill_.assign(inline_.begin(), inline_.end());
        }
        spill_.push_back(v);
        ++size_;
    }
    std::size_t size() const { return size_; }
    const iovec* data() const { return size_ <= kInline ? inline_.data() : spill_.data(); }
    std::span<const iovec> span() const { return {data(), size_}; }

  private:
    std::array<iovec, kInline> inline_{};
    std::vector<iovec> spill_;
    std::size_t size_ = 0;
};

class DescriptorChain {
  public:
    UsedToken token() const { return token_; }
    std::uint16_t id() const { return token_.id; }

    std::span<const iovec> readable() const { return segs_.span().first(readable_count_); }
    std::span<const iovec> writable() const { return segs_.span().subspan(readable_count_); }
    std::uint32_t readable_bytes() const { return readable_bytes_; }
    std::uint32_t writable_bytes() const { return writable_bytes_; }

    // --- filled in by the queue while walking a chain -----------------------------------
    void reset(UsedToken token) {
        token_ = token;
        segs_.clear();
        readable_count_ = 0;
        readable_bytes_ = 0;
        writable_bytes_ = 0;
    }
    void set_descs(std::uint16_t n) { token_.descs = n; }
    // Packed rings carry the buffer id in the chain's last descriptor (§2.8.6), known only at
    // the end of the walk.
    void set_id(std::uint16_t id) { token_.id = id; }
    void add_readable(std::uint8_t* p, std::uint64_t len) {
        segs_.push_back({p, static_cast<std::size_t>(len)});
        ++readable_count_;
        readable_bytes_ += static_cast<std::uint32_t>(len);
    }
    void add_writable(std::uint8_t* p, std::uint64_t len) {
        segs_.push_back({p, static_cast<std::size_t>(len)});
        writable_bytes_ += static_cast<std::uint32_t>(len);
    }

  private:
    UsedToken token_;
    SegmentList segs_;
    std::size_t readable_count_ = 0;
    std::uint32_t readable_bytes_ = 0;
    std::uint32_t writable_bytes_ = 0;
};

// A position in a scatter-gather list: the shared engine of ChainReader and ChainWriter.
class SgCursor {
  public:
    explicit SgCursor(std::span<const iovec> segs) : segs_(segs) {
        for (const auto& s : segs) {
            remaining_ += s.iov_len;
        }
    }

    std::size_t remaining() const { return remaining_; }

    // Moves n (<= remaining()) bytes forward, calling f(pointer, length) for each piece.
    template <typename F>
    void advance(std::size_t n, F&& f) {
        remaining_ -= n;
        while (n > 0) {
            const iovec& s = segs_[seg_];
            const std::size_t piece = std::min(n, s.iov_len - off_);
            f(static_cast<std::uint8_t*>(s.iov_base) + off_, piece);
            n -= piece;
            off_ += piece;
            if (off_ == s.iov_len) {
                ++seg_;
                off_ = 0;
            }
        }
    }

    // Appends the next n bytes to `out` as iovecs (zero-copy I/O) and consumes them.
    // False, consuming nothing, if fewer than n bytes remain.
    bool take_iovecs(std::size_t n, std::vector<iovec>& out) {
        if (n > remaining_) {
            return false;
        }
        advance(n, [&](std::uint8_t* p, std::size_t len) { out.push_back({p, len}); });
        return true;
    }

  private:
    std::span<const iovec> segs_;
    std::size_t seg_ = 0;
    std::size_t off_ = 0;
    std::size_t remaining_ = 0;
};

// Sequential, bounded copies out of the readable part of a chain.
class ChainReader {
  public:
    explicit ChainReader(std::span<const iovec> segs) : cur_(segs) {}

    std::size_t remaining() const { return cur_.remaining(); }

    // Copies exactly out.size() bytes, or nothing and returns false if fewer remain.
    bool read(std::span<std::uint8_t> out) {
        if (out.size() > cur_.remaining()) {
            return false;
        }
        std::uint8_t* dst = out.data();
        cur_.advance(out.size(), [&](const std::uint8_t* p, std::size_t n) {
            std::memcpy(dst, p, n);
            dst += n;
        });
        return true;
    }
    template <typename T>
    bool read_obj(T& obj) {
        return read({reinterpret_cast<std::uint8_t*>(&obj), sizeof(T)});
    }
    bool skip(std::size_t n) {
        if (n > cur_.remaining()) {
            return false;
        }
        cur_.advance(n, [](const std::uint8_t*, std::size_t) {});
        return true;
    }
    bool take_iovecs(std::size_t n, std::vector<iovec>& out) { return cur_.take_iovecs(n, out); }

  private:
    SgCursor cur_;
};

// Sequential, bounded copies into the writable part of a chain. written() is what the device
// reports as the used length (§2.7.8.2: the number of bytes written into the buffer).
class ChainWriter {
  public:
    explicit ChainWriter(std::span<const iovec> segs) : cur_(segs) {}

    std::size_t remaining() const { return cur_.remaining(); }
    std::size_t written() const { return written_; }

    // Copies all of `in`, or nothing and returns false if it does not fit.
    bool write(std::span<const std::uint8_t> in) {
        if (in.size() > cur_.remaining()) {
            return false;
        }
        const std::uint8_t* src = in.data();
        cur_.advance(in.size(), [&](std::uint8_t* p, std::size_t n) {
            std::memcpy(p, src, n);
            src += n;
        });
        written_ += in.size();
        return true;
    }
    template <typename T>
    bool write_obj(const T& obj) {
        return write({reinterpret_cast<const std::uint8_t*>(&obj), sizeof(T)});
    }
    // Zero-fills n bytes (false, writing nothing, if they do not fit).
    bool fill_zero(std::size_t n) {
        if (n > cur_.remaining()) {
            return false;
        }
        cur_.advance(n, [](std::uint8_t* p, std::size_t len) { std::memset(p, 0, len); });
        written_ += n;
        return true;
    }
    // Hands the next n bytes out for the kernel to fill; counts them as written.
    bool take_iovecs(std::size_t n, std::vector<iovec>& out) {
        if (!cur_.take_iovecs(n, out)) {
            return false;
        }
        written_ += n;
        return true;
    }

  private:
    SgCursor cur_;
    std::size_t written_ = 0;
};

}  // namespace vireo::virtq
