// Architecture-neutral part of the guest runtime: printf formatting and option parsing.
#include "runtime/runtime.hpp"

#include "runtime/runtime_arch.hpp"

extern "C" {
// The compiler may lower copies and zeroing to these even with -ffreestanding.
void* memcpy(void* dst, const void* src, std::size_t n) {
    auto* d = static_cast<unsigned char*>(dst);
    const auto* s = static_cast<const unsigned char*>(src);
    while (n-- > 0) {
        *d++ = *s++;
    }
    return dst;
}
void* memset(void* dst, int c, std::size_t n) {
    auto* d = static_cast<unsigned char*>(dst);
    while (n-- > 0) {
        *d++ = static_cast<unsigned char>(c);
    }
    return dst;
}
}

namespace vireo::guest {

namespace {

void put_str(const char* s) {
    while (*s != '\0') {
        arch::console_putc(*s++);
    }
}

void put_num(std::uint64_t v, unsigned base, int width, bool zero_pad, bool negative) {
    char buf[24];
    int n = 0;
    do {
        const unsigned digit = static_cast<unsigned>(v % base);
        buf[n++] = static_cast<char>(digit < 10 ? '0' + digit : 'a' + digit - 10);
        v /= base;
    } while (v != 0 && n < 22);
    if (negative) {
        buf[n++] = '-';
    }
    for (int pad = width - n; pad > 0; --pad) {
        arch::console_putc(zero_pad ? '0' : ' ');
    }
    while (n > 0) {
        arch::console_putc(buf[--n]);
    }
}

const char* cmdline() {
    return boot_info().cmdline;
}

// Finds `key` as a whole word in the command line; returns the character after it.
const char* find_key(const char* key) {
    const char* s = cmdline();
    const std::size_t max = sizeof(boot::BootInfo::cmdline);
    std::size_t i = 0;
    while (i < max && s[i] != '\0') {
        while (i < max && s[i] == ' ') {
            ++i;
        }
        std::size_t k = 0;
        while (key[k] != '\0' && i + k < max && s[i + k] == key[k]) {
            ++k;
        }
        if (key[k] == '\0' && i + k < max &&
            (s[i + k] == '=' || s[i + k] == ' ' || s[i + k] == '\0')) {
            return s + i + k;
        }
        while (i < max && s[i] != ' ' && s[i] != '\0') {
            ++i;
        }
    }
    return nullptr;
}

}  // namespace

int console_getc() {
    return arch::console_getc();
}

void vprint(const char* fmt, va_list ap) {
    for (; *fmt != '\0'; ++fmt) {
        if (*fmt != '%') {
            arch::console_putc(*fmt);
            continue;
        }
        ++fmt;
        bool zero_pad = false;
        int width = 0;
        if (*fmt == '0') {
            zero_pad = true;
            ++fmt;
        }
        while (*fmt >= '0' && *fmt <= '9') {
            width = width * 10 + (*fmt++ - '0');
        }
        int longs = 0;
        while (*fmt == 'l' || *fmt == 'z') {
            longs += *fmt == 'z' ? 2 : 1;
            ++fmt;
        }
        switch (*fmt) {
            case 's': {
                const char* s = va_arg(ap, const char*);
                put_str(s != nullptr ? s : "(null)");
                break;
            }
            case 'c':
                arch::console_putc(static_cast<char>(va_arg(ap, int)));
                break;
            case 'd': {
                const std::int64_t v = longs > 0 ? va_arg(ap, long) : va_arg(ap, int);
                put_num(v < 0 ? 0 - static_cast<std::uint64_t>(v) : static_cast<std::uint64_t>(v),
                        10, width, zero_pad, v < 0);
                break;
            }
            case 'u':
            case 'x': {
                const std::uint64_t v =
                    longs > 0 ? va_arg(ap, unsigned long) : va_arg(ap, unsigned int);
                put_num(v, *fmt == 'x' ? 16 : 10, width, zero_pad, false);
                break;
            }
            case 'p':
                put_str("0x");
                put_num(reinterpret_cast<std::uintptr_t>(va_arg(ap, void*)), 16, 0, false, false);
                break;
            case '%':
                arch::console_putc('%');
                break;
            case '\0':
                return;
            default:
                arch::console_putc('?');
                break;
        }
    }
}

void print(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vprint(fmt, ap);
    va_end(ap);
}

bool str_eq(const char* a, const char* b) {
    while (*a != '\0' && *a == *b) {
        ++a;
        ++b;
    }
    return *a == *b;
}

bool opt(const char* key, char* out, std::size_t out_size) {
    const char* p = find_key(key);
    if (p == nullptr || out_size == 0) {
        return false;
    }
    std::size_t n = 0;
    if (*p == '=') {
        ++p;
        while (p[n] != '\0' && p[n] != ' ') {
            if (n + 1 >= out_size) {
                return false;
            }
            out[n] = p[n];
            ++n;
        }
    }
    out[n] = '\0';
    return true;
}

bool opt_is(const char* key, const char* value) {
    char buf[64];
    return opt(key, buf, sizeof buf) && str_eq(buf, value);
}

std::uint64_t opt_u64(const char* key, std::uint64_t fallback) {
    char buf[32];
    if (!opt(key, buf, sizeof buf) || buf[0] == '\0') {
        return fallback;
    }
    std::uint64_t v = 0;
    const char* s = buf;
    unsigned base = 10;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        s += 2;
    }
    for (; *s != '\0'; ++s) {
        unsigned d;
        if (*s >= '0' && *s <= '9') {
            d = static_cast<unsigned>(*s - '0');
        } else if (base == 16 && *s >= 'a' && *s <= 'f') {
            d = static_cast<unsigned>(*s - 'a' + 10);
        } else if (base == 16 && *s >= 'A' && *s <= 'F') {
            d = static_cast<unsigned>(*s - 'A' + 10);
        } else {
            return fallback;
        }
        v = v * base + d;
    }
    return v;
}

bool opt_flag(const char* key, bool fallback) {
    char buf[16];
    if (!opt(key, buf, sizeof buf)) {
        return fallback;
    }
    if (buf[0] == '\0' || str_eq(buf, "1") || str_eq(buf, "on") || str_eq(buf, "yes")) {
        return true;
    }
    if (str_eq(buf, "0") || str_eq(buf, "off") || str_eq(buf, "no")) {
        return false;
    }
    return fallback;
}

}  // namespace vireo::guest
