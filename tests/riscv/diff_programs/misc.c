/* Ordinary compiled code for the differential test (compressed instructions throughout, as
 * GCC emits for rv64gc): sorting, CRC-32, a recursive function, a jump table, function
 * pointers, 128-bit arithmetic, floating-point series and Newton iterations, packed structs,
 * byte-wise string work. Prints checksums and a few intermediate results. */
#include "rt.h"

static u64 rng_state = 0x9e3779b97f4a7c15ull;
static u64 rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static u32 crc32(const unsigned char* p, unsigned n) {
    u32 c = 0xffffffffu;
    for (unsigned i = 0; i < n; ++i) {
        c ^= p[i];
        for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
    }
    return ~c;
}

static void quicksort(i64* a, int lo, int hi) {
    while (lo < hi) {
        const i64 pivot = a[(lo + hi) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (a[i] < pivot) ++i;
            while (a[j] > pivot) --j;
            if (i <= j) {
                const i64 t = a[i];
                a[i++] = a[j];
                a[j--] = t;
            }
        }
        if (j - lo < hi - i) {
            quicksort(a, lo, j);
            lo = i;
        } else {
            quicksort(a, i, hi);
            hi = j;
        }
    }
}

static u64 ackermann(u64 m, u64 n) {
    if (m == 0) return n + 1;
    if (n == 0) return ackermann(m - 1, 1);
    return ackermann(m - 1, ackermann(m, n - 1));
}

static __attribute__((noinline)) u64 dispatch(unsigned op, u64 a, u64 b) {
    switch (op) {
        case 0: return a + b;
        case 1: return a - b;
        case 2: return a * b;
        case 3: return b ? a / b : 0;
        case 4: return a ^ (b << 3);
        case 5: return (a >> (b & 63)) | 1;
        case 6: return (u64)((i64)a >> (b & 63));
        case 7: return a < b;
        case 8: return (u64)(i32)(a + b);
        case 9: return (u64)((i32)a / ((i32)b | 1));
        default: return ~a;
    }
}

typedef double (*dfn)(double);
static double sq(double x) { return x * x; }
static double half(double x) { return x / 2; }
static double inv(double x) { return 1.0 / x; }

static double newton_sqrt(double v) {
    double x = v > 1 ? v : 1;
    for (int i = 0; i < 60; ++i) x = 0.5 * (x + v / x);
    return x;
}

static u64 dbits(double d) {
    u64 u;
    memcpy(&u, &d, 8);
    return u;
}
static u64 fbits(float f) {
    u32 u;
    memcpy(&u, &f, 4);
    return u;
}

struct __attribute__((packed)) packed {
    char c;
    u64 q;
    u32 w;
    short h;
};

int main(void) {
    static i64 arr[2000];
    for (int i = 0; i < 2000; ++i) arr[i] = (i64)rnd();
    quicksort(arr, 0, 1999);
    int sorted = 1;
    for (int i = 1; i < 2000; ++i) sorted &= arr[i - 1] <= arr[i];
    line3("sort", (u64)sorted, (u64)arr[0], (u64)arr[1999]);
    line3("crc32", 0, 0, crc32((const unsigned char*)arr, sizeof arr));

    line3("ackermann", 2, 3, ackermann(2, 3));
    line3("ackermann", 3, 3, ackermann(3, 3));

    u64 acc = 0;
    for (unsigned i = 0; i < 3000; ++i) {
        const u64 a = rnd(), b = rnd() >> (i % 64);
        acc = acc * 31 + dispatch(i % 11, a, b);
    }
    line3("dispatch", 0, 0, acc);

    unsigned __int128 p = (unsigned __int128)0xfedcba9876543210ull * 0x123456789abcdef1ull;
    line3("u128 mul", 0, (u64)(p >> 64), (u64)p);
    __int128 s = (__int128)(i64)0x8000000000000001ll * (i64)0x7fffffffffffffffll;
    line3("i128 mul", 0, (u64)((unsigned __int128)s >> 64), (u64)s);
    unsigned __int128 q = p / 0x1234567ull;
    line3("u128 div", 0, (u64)(q >> 64), (u64)q);

    double sum = 0;
    for (int k = 1; k < 20000; ++k) sum += (k & 1 ? 4.0 : -4.0) / (2 * k - 1);
    line3("leibniz", 0, 0, dbits(sum));
    float fs = 0;
    for (int k = 1; k < 5000; ++k) fs += 1.0f / ((float)k * (float)k);
    line3("basel float", 0, 0, fbits(fs));
    line3("newton sqrt 2", 0, 0, dbits(newton_sqrt(2.0)));
    line3("newton sqrt 1e300", 0, 0, dbits(newton_sqrt(1e300)));
    static const dfn fns[] = {sq, half, inv};
    double d = 3.0;
    for (int i = 0; i < 300; ++i) d = fns[i % 3](d) + 0.1;
    line3("function pointers", 0, 0, dbits(d));
    double m = 1.0;
    for (int i = 0; i < 1100; ++i) m *= 0.5;  /* through the subnormals to zero */
    line3("underflow", 0, 0, dbits(m));
    i64 conv = 0;
    for (int i = -300; i < 300; ++i) conv += (i64)((double)i * 1.37) + (i64)((float)i / 3.0f);
    line3("conversions", 0, 0, (u64)conv);

    static unsigned char raw[64];
    for (int i = 0; i < 64; ++i) raw[i] = (unsigned char)(i * 13 + 7);
    struct packed pk;
    memcpy(&pk, raw + 3, sizeof pk);
    line3("packed", (u64)pk.c, pk.q, ((u64)pk.w << 16) | (u16)pk.h);
    volatile struct packed* vp = (volatile struct packed*)(raw + 5);
    vp->q = 0x1122334455667788ull;
    vp->w = 0x99aabbccu;
    line3("packed store", 0, ((u64*)raw)[0], ((u64*)raw)[1]);

    static char text[] = "The quick brown fox jumps over the lazy dog";
    unsigned hist[26] = {0};
    for (char* c = text; *c; ++c) {
        char l = *c | 0x20;
        if (l >= 'a' && l <= 'z') hist[l - 'a']++;
    }
    u64 h = 0;
    for (int i = 0; i < 26; ++i) h = h * 7 + hist[i];
    line3("histogram", 0, 0, h);
    return 0;
}
