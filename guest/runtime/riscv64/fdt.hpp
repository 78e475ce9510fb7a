// A minimal flattened device tree reader (Devicetree Specification 0.4, chapter 5) for the
// riscv64 guest runtime: just what the runtime needs from the tree vireo-vmm --arch riscv64
// generates — /chosen/bootargs, the memory node, the number of cpus and every "virtio,mmio"
// node's reg and interrupts. No libfdt: freestanding, no allocation, every offset bounds-checked
// against the header's sizes (the blob comes from the VMM, but a bad one must not crash us).
#pragma once

#include <cstddef>
#include <cstdint>

namespace vireo::guest::fdt {

inline constexpr std::uint32_t kMagic = 0xd00dfeed;
inline constexpr std::uint32_t kBeginNode = 1;
inline constexpr std::uint32_t kEndNode = 2;
inline constexpr std::uint32_t kProp = 3;
inline constexpr std::uint32_t kNop = 4;
inline constexpr std::uint32_t kEnd = 9;
inline constexpr std::uint32_t kHeaderBytes = 40;
inline constexpr std::uint32_t kMaxBytes = 1u << 20;  // anything larger is not ours
inline constexpr int kMaxDepth = 8;
inline constexpr int kMaxVirtio = 16;

struct VirtioNode {
    std::uint64_t base;
    std::uint64_t size;
    std::uint32_t irq;  // first cell of `interrupts` (a PLIC source), 0 if absent
};

struct BootFacts {
    bool valid = false;
    const char* bootargs = nullptr;  // points into the blob, NUL-terminated; null if absent
    std::uint64_t mem_base = 0;
    std::uint64_t mem_size = 0;
    std::uint32_t cpus = 0;
    int num_virtio = 0;
    VirtioNode virtio[kMaxVirtio] = {};
};

namespace detail {

inline std::uint32_t be32(const std::uint8_t* p) {
    return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
           p[3];
}

// A number of `cells` 32-bit big-endian cells (1 or 2 are meaningful) at p.
inline std::uint64_t cells(const std::uint8_t* p, std::uint32_t n) {
    std::uint64_t v = 0;
    for (std::uint32_t i = 0; i < n; ++i) {
        v = (v << 32) | be32(p + 4 * i);
    }
    return v;
}

inline bool str_is(const char* a, std::uint32_t max, const char* b) {
    std::uint32_t i = 0;
    for (; i < max && b[i] != '\0'; ++i) {
        if (a[i] != b[i]) {
            return false;
        }
    }
    return i < max && a[i] == '\0';
}

// True when the node name `name` (NUL-terminated within max) is `base` or `base@unit`.
inline bool name_is(const char* name, std::uint32_t max, const char* base) {
    std::uint32_t i = 0;
    for (; i < max && base[i] != '\0'; ++i) {
        if (name[i] != base[i]) {
            return false;
        }
    }
    return i < max && (name[i] == '\0' || name[i] == '@');
}

// True when the string list `list` of `len` bytes holds `want` as one of its strings.
inline bool list_has(const char* list, std::uint32_t len, const char* want) {
    std::uint32_t i = 0;
    while (i < len) {
        if (str_is(list + i, len - i, want)) {
            return true;
        }
        while (i < len && list[i] != '\0') {
            ++i;
        }
        ++i;
    }
    return false;
}

struct Node {
    std::uint32_t reg_addr_cells = 2;  // the parent's #address-cells / #size-cells: how this
    std::uint32_t reg_size_cells = 1;  // node's reg is laid out
    std::uint32_t addr_cells = 2;      // this node's own, for its children (spec defaults 2 / 1)
    std::uint32_t size_cells = 1;
    const std::uint8_t* reg = nullptr;
    std::uint32_t reg_len = 0;
    std::uint32_t irq = 0;
    bool virtio = false;
    bool memory = false;
    bool cpu = false;
    bool chosen = false;
    bool cpus = false;
};

// Reads one (address, size) pair of `n`'s reg. False when absent, short, or cells beyond 64 bits.
inline bool first_reg(const Node& n, std::uint64_t& base, std::uint64_t& size) {
    const std::uint32_t ac = n.reg_addr_cells;
    const std::uint32_t sc = n.reg_size_cells;
    if (n.reg == nullptr || ac == 0 || ac > 2 || sc > 2 || n.reg_len < 4 * (ac + sc)) {
        return false;
    }
    base = cells(n.reg, ac);
    size = cells(n.reg + 4 * ac, sc);
    return true;
}

inline void finish_node(const Node& n, BootFacts& f) {
    std::uint64_t base = 0;
    std::uint64_t size = 0;
    if (n.memory && f.mem_size == 0 && first_reg(n, base, size)) {
        f.mem_base = base;
        f.mem_size = size;
    }
    if (n.cpu) {
        ++f.cpus;
    }
    if (n.virtio && f.num_virtio < kMaxVirtio && first_reg(n, base, size)) {
        f.virtio[f.num_virtio++] = {base, size, n.irq};
    }
}

}  // namespace detail

// Reads the facts from the blob at `blob`. valid = false when the header or the structure block
// is malformed (what was found before the error is kept, but callers should not trust it).
inline BootFacts read(const void* blob) {
    using namespace detail;
    BootFacts f;
    const auto* b = static_cast<const std::uint8_t*>(blob);
    if (b == nullptr || be32(b) != kMagic) {
        return f;
    }
    const std::uint32_t total = be32(b + 4);
    const std::uint32_t off_struct = be32(b + 8);
    const std::uint32_t off_strings = be32(b + 12);
    const std::uint32_t size_strings = be32(b + 32);
    const std::uint32_t size_struct = be32(b + 36);
    if (total < kHeaderBytes || total > kMaxBytes || off_struct > total ||
        size_struct > total - off_struct || off_strings > total ||
        size_strings > total - off_strings || off_struct % 4 != 0) {
        return f;
    }
    const std::uint8_t* s = b + off_struct;
    const char* strings = reinterpret_cast<const char*>(b + off_strings);
    Node stack[kMaxDepth];
    int depth = -1;  // index of the current node in `stack`; -1 = outside the root
    std::uint32_t pos = 0;
    while (pos + 4 <= size_struct) {
        const std::uint32_t token = be32(s + pos);
        pos += 4;
        switch (token) {
            case kBeginNode: {
                const char* name = reinterpret_cast<const char*>(s + pos);
                const std::uint32_t max = size_struct - pos;
                std::uint32_t n = 0;
                while (n < max && name[n] != '\0') {
                    ++n;
                }
                if (n == max || depth + 1 >= kMaxDepth) {
                    return f;
                }
                Node node;
                if (depth >= 0) {
                    const Node& parent = stack[depth];
                    node.reg_addr_cells = parent.addr_cells;
                    node.reg_size_cells = parent.size_cells;
                    node.cpu = depth == 1 && parent.cpus && name_is(name, max, "cpu");
                }
                node.chosen = depth == 0 && name_is(name, max, "chosen");
                node.cpus = depth == 0 && name_is(name, max, "cpus");
                node.memory = depth == 0 && name_is(name, max, "memory");
                stack[++depth] = node;
                pos = (pos + n + 1 + 3) & ~3u;
                break;
            }
            case kEndNode:
                if (depth < 0) {
                    return f;
                }
                finish_node(stack[depth--], f);
                break;
            case kProp: {
                if (depth < 0 || size_struct - pos < 8) {
                    return f;
                }
                const std::uint32_t len = be32(s + pos);
                const std::uint32_t nameoff = be32(s + pos + 4);
                pos += 8;
                if (len > size_struct - pos || nameoff >= size_strings) {
                    return f;
                }
                const char* pname = strings + nameoff;
                const std::uint32_t pmax = size_strings - nameoff;
                const std::uint8_t* v = s + pos;
                const char* vs = reinterpret_cast<const char*>(v);
                Node& node = stack[depth];
                if (str_is(pname, pmax, "#address-cells") && len == 4) {
                    node.addr_cells = be32(v);
                } else if (str_is(pname, pmax, "#size-cells") && len == 4) {
                    node.size_cells = be32(v);
                } else if (str_is(pname, pmax, "reg")) {
                    node.reg = v;
                    node.reg_len = len;
                } else if (str_is(pname, pmax, "interrupts") && len >= 4) {
                    node.irq = be32(v);
                } else if (str_is(pname, pmax, "compatible")) {
                    node.virtio = list_has(vs, len, "virtio,mmio");
                } else if (str_is(pname, pmax, "device_type")) {
                    node.memory = node.memory || (depth == 1 && list_has(vs, len, "memory"));
                } else if (node.chosen && str_is(pname, pmax, "bootargs") && len > 0 &&
                           vs[len - 1] == '\0') {
                    f.bootargs = vs;
                }
                pos = (pos + len + 3) & ~3u;
                break;
            }
            case kNop:
                break;
            case kEnd:
                f.valid = depth == -1;
                return f;
            default:
                return f;
        }
    }
    return f;
}

}  // namespace vireo::guest::fdt
