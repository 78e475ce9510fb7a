#include "memory/guest_memory.hpp"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

namespace vireo {

std::string_view to_string(MemoryError e) {
    switch (e) {
        case MemoryError::kOverlap:
            return "memory region overlaps an existing region";
        case MemoryError::kEmpty:
            return "memory region is empty";
        case MemoryError::kWrapsAround:
            return "memory region wraps around the address space";
        case MemoryError::kMapFailed:
            return "mapping the memory region failed";
        case MemoryError::kTooManyRegions:
            return "too many memory regions";
        case MemoryError::kNotFound:
            return "no memory region at that address";
    }
    return "unknown memory error";
}

MemoryRegion::MemoryRegion(std::uint64_t gpa, std::uint64_t size, std::uint8_t* host,
                           std::uint8_t* map_base, std::size_t map_len, UniqueFd fd,
                           std::uint64_t fd_offset, std::uint64_t user_addr)
    : gpa_(gpa),
      size_(size),
      host_(host),
      map_base_(map_base),
      map_len_(map_len),
      fd_(std::move(fd)),
      fd_offset_(fd_offset),
      user_addr_(user_addr) {}

MemoryRegion::~MemoryRegion() {
    if (map_base_ != nullptr) {
        ::munmap(map_base_, map_len_);
    }
}

namespace {

constexpr std::uint64_t kMaxRegions = 512;  // vhost-user GET_MAX_MEM_SLOTS answers below this

std::expected<void, MemoryError> check_range(std::uint64_t gpa, std::uint64_t size) {
    if (size == 0) {
        return std::unexpected(MemoryError::kEmpty);
    }
    if (size > UINT64_MAX - gpa) {
        return std::unexpected(MemoryError::kWrapsAround);
    }
    return {};
}

std::uint64_t page_size() {
    return static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
}

struct GuardedMapping {
    std::uint8_t* reservation;
    std::size_t reservation_len;
    std::uint8_t* data;
};

// Maps `len` bytes between two PROT_NONE guard pages. Translation never yields a pointer outside
// a region, but if a bug ever let an access run past one, it faults instead of silently reading
// or corrupting whatever the host had mapped next to the guest's memory.
std::expected<GuardedMapping, MemoryError> map_guarded(std::size_t len, int prot, int flags, int fd,
                                                       off_t offset) {
    const std::size_t page = page_size();
    const std::size_t rounded = (len + page - 1) / page * page;
    if (rounded < len || rounded > SIZE_MAX - 2 * page) {
        return std::unexpected(MemoryError::kWrapsAround);
    }
    const std::size_t total = rounded + 2 * page;
    void* r = ::mmap(nullptr, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (r == MAP_FAILED) {
        return std::unexpected(MemoryError::kMapFailed);
    }
    auto* base = static_cast<std::uint8_t*>(r);
    void* p = ::mmap(base + page, len, prot, flags | MAP_FIXED | MAP_NORESERVE, fd, offset);
    if (p == MAP_FAILED) {
        ::munmap(r, total);
        return std::unexpected(MemoryError::kMapFailed);
    }
    return GuardedMapping{base, total, static_cast<std::uint8_t*>(p)};
}

}  // namespace

std::expected<void, MemoryError> GuestMemory::insert(std::unique_ptr<MemoryRegion> region) {
    auto pos = std::lower_bound(regions_.begin(), regions_.end(), region->gpa(),
                                [](const auto& r, std::uint64_t gpa) { return r->gpa() < gpa; });
    regions_.insert(pos, std::move(region));
    rebuild_index();
    return {};
}

void GuestMemory::rebuild_index() {
    index_.clear();
    for (const auto& r : regions_) {
        index_.push_back({r->gpa(), r->size(), r.get()});
    }
}

std::expected<void, MemoryError> GuestMemory::add_memfd(std::uint64_t gpa, std::uint64_t size,
                                                        const char* name) {
    if (auto ok = check_new(gpa, size); !ok) {
        return ok;
    }
    UniqueFd fd(::memfd_create(name, MFD_CLOEXEC));
    if (!fd || ::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) {
        return std::unexpected(MemoryError::kMapFailed);
    }
    return add_fd(gpa, size, std::move(fd), 0);
}

bool fd_covers(int fd, std::uint64_t offset, std::uint64_t len) {
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        return false;
    }
    if (!S_ISREG(st.st_mode)) {
        return true;
    }
    const auto file_size = static_cast<std::uint64_t>(st.st_size);
    return offset <= file_size && len <= file_size - offset;
}

std::expected<void, MemoryError> GuestMemory::add_fd(std::uint64_t gpa, std::uint64_t size,
                                                     UniqueFd fd, std::uint64_t fd_offset,
                                                     std::uint64_t user_addr, bool read_only) {
    const std::uint64_t skew = fd_offset % page_size();
    if (fd_offset > static_cast<std::uint64_t>(INT64_MAX) || size > SIZE_MAX - skew) {
        return std::unexpected(MemoryError::kWrapsAround);
    }
    if (auto ok = check_new(gpa, size); !ok) {
        return ok;
    }
    if (!fd_covers(fd.get(), fd_offset, size)) {
        return std::unexpected(MemoryError::kMapFailed);
    }
    const int prot = read_only ? PROT_READ : (PROT_READ | PROT_WRITE);
    auto m =
        map_guarded(size + skew, prot, MAP_SHARED, fd.get(), static_cast<off_t>(fd_offset - skew));
    if (!m) {
        return std::unexpected(m.error());
    }
    return insert(std::make_unique<MemoryRegion>(gpa, size, m->data + skew, m->reservation,
                                                 m->reservation_len, std::move(fd), fd_offset,
                                                 user_addr));
}

std::expected<void, MemoryError> GuestMemory::add_anonymous(std::uint64_t gpa, std::uint64_t size) {
    if (size > SIZE_MAX) {
        return std::unexpected(MemoryError::kWrapsAround);
    }
    if (auto ok = check_new(gpa, size); !ok) {
        return ok;
    }
    auto m = map_guarded(size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (!m) {
        return std::unexpected(m.error());
    }
    return insert(std::make_unique<MemoryRegion>(gpa, size, m->data, m->reservation,
                                                 m->reservation_len, UniqueFd{}, 0, 0));
}

std::expected<void, MemoryError> GuestMemory::check_new(std::uint64_t gpa,
                                                        std::uint64_t size) const {
    if (auto ok = check_range(gpa, size); !ok) {
        return ok;
    }
    // Checked before mapping so a rejected region costs nothing.
    for (const auto& r : regions_) {
        if (gpa < r->end() && r->gpa() < gpa + size) {
            return std::unexpected(MemoryError::kOverlap);
        }
    }
    if (regions_.size() >= kMaxRegions) {
        return std::unexpected(MemoryError::kTooManyRegions);
    }
    return {};
}

std::expected<void, MemoryError> GuestMemory::remove(std::uint64_t gpa, std::uint64_t size) {
    auto it = std::find_if(regions_.begin(), regions_.end(),
                           [&](const auto& r) { return r->gpa() == gpa && r->size() == size; });
    if (it == regions_.end()) {
        return std::unexpected(MemoryError::kNotFound);
    }
    regions_.erase(it);
    rebuild_index();
    return {};
}

const MemoryRegion* GuestMemory::find_slow(std::uint64_t gpa) const {
    auto it = std::upper_bound(index_.begin(), index_.end(), gpa,
                               [](std::uint64_t a, const IndexEntry& e) { return a < e.gpa; });
    if (it == index_.begin()) {
        return nullptr;
    }
    --it;
    return gpa - it->gpa < it->size ? it->region : nullptr;
}

bool GuestMemory::read(std::uint64_t gpa, void* dst, std::uint64_t len) const {
    auto* out = static_cast<std::uint8_t*>(dst);
    return for_each_segment(gpa, len, [&](const HostSegment& s) {
        std::memcpy(out, s.host, s.len);
        out += s.len;
        return true;
    });
}

bool GuestMemory::write(std::uint64_t gpa, const void* src, std::uint64_t len) const {
    const auto* in = static_cast<const std::uint8_t*>(src);
    return for_each_segment(gpa, len, [&](const HostSegment& s) {
        std::memcpy(s.host, in, s.len);
        in += s.len;
        return true;
    });
}

std::expected<std::uint64_t, MemoryError> GuestMemory::uva_to_gpa(std::uint64_t uva,
                                                                  std::uint64_t len) const {
    for (const auto& r : regions_) {
        const std::uint64_t base = r->user_addr();
        if (base == 0 || uva < base) {
            continue;
        }
        const std::uint64_t off = uva - base;
        if (off < r->size() && len <= r->size() - off) {
            return r->gpa() + off;
        }
    }
    return std::unexpected(MemoryError::kNotFound);
}

}  // namespace vireo
