/*
 * The guest C library's numeric half: strtod, exact floating-point
 * formatting for printf's %e, %f and %g, and qsort. The libraries linked
 * into guests need them exact: jansson prints reals with "%.17g" and reads
 * them back with strtod, and a round trip must give the same double.
 *
 * Both conversions are exact, with big integers rather than clever tricks:
 *   - formatting expands the double's exact decimal value (m * 2^k is
 *     m * 5^-k / 10^-k when k < 0: at most 767 significant digits) and
 *     rounds that digit string half to even, as glibc does in the default
 *     rounding mode;
 *   - strtod takes an approximation (exact when the digits and the power of
 *     ten are both exact doubles, else from long double arithmetic) and
 *     corrects it by comparing the decimal input with the halfway points
 *     next to the candidate, exactly, until neither is crossed. Digits
 *     beyond the 800th only matter as "some non-zero digit followed" (a
 *     halfway point has at most 767 significant digits), which is kept as
 *     an appended 1.
 *
 * tests/unit/guest/test-guest-stdlib.c includes this file with
 * MXU_GUEST_HOST_TEST defined, which renames the public functions
 * (guest_strtod, ...), and checks them against glibc on millions of values.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef MXU_GUEST_HOST_TEST
#define GUEST(name) guest_##name
#else
#define GUEST(name) name
#include "mxu-guest.h"
#endif

/* Declared here, not taken from <stdlib.h>: under MXU_GUEST_HOST_TEST the
 * names differ from glibc's. */
double GUEST(strtod)(const char *s, char **end);
void GUEST(qsort)(void *base, size_t n, size_t size, int (*cmp)(const void *, const void *));
int mxu_guest_fmt_double(char *buf, size_t cap, double v, char conv, int prec, bool alt);

/* ---- big integers: little-endian 32-bit limbs ------------------------------------- */

/* 4160 bits: the largest value either conversion builds is the 801-digit
 * input times 2^1075 (about 3740 bits). */
#define BN_LIMBS 130

typedef struct bn {
    uint32_t n; /* limbs in use; the top one is non-zero (0 limbs: zero) */
    uint32_t d[BN_LIMBS];
} bn;

static void bn_set_u64(bn *a, uint64_t v)
{
    a->d[0] = (uint32_t)v;
    a->d[1] = (uint32_t)(v >> 32);
    a->n = a->d[1] ? 2 : a->d[0] ? 1 : 0;
}

static void bn_mul_add_small(bn *a, uint32_t m, uint32_t add)
{
    uint64_t carry = add;
    for (uint32_t i = 0; i < a->n; i++) {
        uint64_t t = (uint64_t)a->d[i] * m + carry;
        a->d[i] = (uint32_t)t;
        carry = t >> 32;
    }
    if (carry && a->n < BN_LIMBS)
        a->d[a->n++] = (uint32_t)carry;
}

static void bn_mul_pow5(bn *a, uint32_t e)
{
    while (e >= 13) { /* 5^13 < 2^32 */
        bn_mul_add_small(a, 1220703125u, 0);
        e -= 13;
    }
    uint32_t m = 1;
    while (e--)
        m *= 5;
    bn_mul_add_small(a, m, 0);
}

static void bn_shl(bn *a, uint32_t bits)
{
    if (a->n == 0)
        return;
    uint32_t limbs = bits / 32, b = bits % 32;
    if (a->n + limbs + 1 > BN_LIMBS) /* never for the sizes built here */
        limbs = BN_LIMBS - a->n - 1;
    a->d[a->n + limbs] = 0;
    for (uint32_t i = a->n; i-- > 0;) {
        a->d[i + limbs + 1] |= b ? a->d[i] >> (32 - b) : 0;
        a->d[i + limbs] = a->d[i] << b;
    }
    for (uint32_t i = 0; i < limbs; i++)
        a->d[i] = 0;
    a->n += limbs + 1;
    while (a->n && a->d[a->n - 1] == 0)
        a->n--;
}

static void bn_mul_pow10(bn *a, uint32_t e)
{
    bn_mul_pow5(a, e);
    bn_shl(a, e);
}

static int bn_cmp(const bn *a, const bn *b)
{
    if (a->n != b->n)
        return a->n < b->n ? -1 : 1;
    for (uint32_t i = a->n; i-- > 0;)
        if (a->d[i] != b->d[i])
            return a->d[i] < b->d[i] ? -1 : 1;
    return 0;
}

/* a /= m; returns the remainder. */
static uint32_t bn_div_small(bn *a, uint32_t m)
{
    uint64_t r = 0;
    for (uint32_t i = a->n; i-- > 0;) {
        uint64_t t = (r << 32) | a->d[i];
        a->d[i] = (uint32_t)(t / m);
        r = t % m;
    }
    while (a->n && a->d[a->n - 1] == 0)
        a->n--;
    return (uint32_t)r;
}

/* ---- doubles as bits ---------------------------------------------------------------- */

static uint64_t bits_of(double d)
{
    uint64_t b;
    memcpy(&b, &d, 8);
    return b;
}

static double double_of(uint64_t b)
{
    double d;
    memcpy(&d, &b, 8);
    return d;
}

#define EXP_MASK  0x7ff0000000000000ull
#define FRAC_MASK 0x000fffffffffffffull

/* ---- strtod --------------------------------------------------------------------------- */

/* mant * 2^e2, plus less than one unit of mant if `sticky`, rounded half to
 * even to a double (subnormals included). mant is non-zero. */
static double round_binary(uint64_t mant, int64_t e2, bool sticky)
{
    int lz = __builtin_clzll(mant);
    mant <<= lz;
    e2 -= lz;
    int64_t p = e2 + 63; /* the value's binary exponent */
    if (p > 1023)
        return double_of(EXP_MASK);
    int64_t keep = p >= -1022 ? 53 : 53 - (-1022 - p);
    if (keep < 0)
        return 0;
    uint32_t shift = (uint32_t)(64 - keep); /* 11 .. 64 */
    uint64_t q, rem, half;
    if (shift == 64) {
        q = 0;
        rem = mant;
        half = 1ull << 63;
    } else {
        q = mant >> shift;
        rem = mant & ((1ull << shift) - 1);
        half = 1ull << (shift - 1);
    }
    if (rem > half || (rem == half && (sticky || (q & 1))))
        q++;
    if (p < -1022) /* subnormal: q * 2^-1074; q = 2^52 is the least normal */
        return double_of(q);
    if (q == 1ull << 53) {
        q >>= 1;
        p++;
        if (p > 1023)
            return double_of(EXP_MASK);
    }
    return double_of(((uint64_t)(p + 1023) << 52) | (q & FRAC_MASK));
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 32;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Optional exponent: [eEpP][+-]digits; *p moves only if digits follow. */
static int64_t parse_exp(const char **p, char letter)
{
    const char *q = *p;
    if ((*q | 32) != letter)
        return 0;
    q++;
    bool neg = false;
    if (*q == '+' || *q == '-')
        neg = *q++ == '-';
    if (!is_digit(*q))
        return 0;
    int64_t e = 0;
    for (; is_digit(*q); q++)
        if (e < 100000000)
            e = e * 10 + (*q - '0');
    *p = q;
    return neg ? -e : e;
}

/* After "0x": hex digits, an optional point and more, an optional binary
 * exponent. Returns false when no hex digit follows (the "0" is the number). */
static bool parse_hex(const char **pp, double *out)
{
    const char *p = *pp;
    uint64_t mant = 0;
    int64_t e2 = 0;
    bool any = false, sticky = false;
    int nsig = 0; /* significant hex digits in mant */
    for (int frac = 0; frac < 2; frac++) {
        if (frac) {
            if (*p != '.')
                break;
            p++;
        }
        for (int d; (d = hexval(*p)) >= 0; p++) {
            any = true;
            if (nsig == 0 && d == 0) {
                if (frac)
                    e2 -= 4;
                continue;
            }
            if (nsig < 16) {
                mant = mant << 4 | (uint64_t)d;
                nsig++;
                if (frac)
                    e2 -= 4;
            } else {
                sticky |= d != 0;
                if (!frac)
                    e2 += 4;
            }
        }
    }
    if (!any)
        return false;
    e2 += parse_exp(&p, 'p');
    *pp = p;
    if (mant == 0) {
        *out = 0;
        return true;
    }
    if (e2 > 100000)
        e2 = 100000;
    if (e2 < -100000)
        e2 = -100000;
    *out = round_binary(mant, e2, sticky);
    uint64_t b = bits_of(*out);
    if ((b & EXP_MASK) == EXP_MASK || (b & EXP_MASK) == 0)
        errno = ERANGE; /* overflow, or underflow to a subnormal or zero */
    return true;
}

#define MAX_DIGITS 800

/* Compare digits * 10^e10 with m * 2^e2, exactly. */
static int cmp_dec_bin(const bn *digits, int64_t e10, uint64_t m, int64_t e2)
{
    bn l = *digits, r;
    bn_set_u64(&r, m);
    if (e10 >= 0)
        bn_mul_pow10(&l, (uint32_t)e10);
    else
        bn_mul_pow10(&r, (uint32_t)-e10);
    if (e2 >= 0)
        bn_shl(&r, (uint32_t)e2);
    else
        bn_shl(&l, (uint32_t)-e2);
    return bn_cmp(&l, &r);
}

static long double pow10_ld(int64_t e)
{
    long double r = 1, b = 10;
    uint64_t u = (uint64_t)(e < 0 ? -e : e);
    while (u) {
        if (u & 1)
            r *= b;
        b *= b;
        u >>= 1;
    }
    return e < 0 ? 1 / r : r;
}

/* The double nearest to digits[0..nd) * 10^e10 (nd >= 1, leading digit
 * non-zero, |value| within about 10^-324 .. 10^310). */
static double decimal_to_double(const char *digits, int nd, int64_t e10)
{
    /* Exact fast path: both operands are doubles exactly, one rounding. */
    static const double p10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                 1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    uint64_t head = 0;
    int nh = nd < 19 ? nd : 19;
    for (int i = 0; i < nh; i++)
        head = head * 10 + (uint64_t)(digits[i] - '0');
    if (nd <= 15 && e10 >= -22 && e10 <= 22)
        return e10 >= 0 ? (double)head * p10[e10] : (double)head / p10[-e10];

    bn d = {0};
    for (int i = 0; i < nd;) {
        uint32_t chunk = 0, mul = 1;
        for (int k = 0; k < 9 && i < nd; k++, i++) {
            chunk = chunk * 10 + (uint32_t)(digits[i] - '0');
            mul *= 10;
        }
        if (d.n == 0)
            bn_set_u64(&d, chunk);
        else
            bn_mul_add_small(&d, mul, chunk);
    }

    long double approx = (long double)head * pow10_ld(e10 + (nd - nh));
    double x = (double)approx;
    uint64_t b = bits_of(x);
    if ((b & EXP_MASK) == EXP_MASK)
        b = EXP_MASK - 1; /* start from the largest finite double */
    for (int round = 0; round < 64; round++) {
        if ((b & EXP_MASK) == EXP_MASK)
            break; /* rounded past the largest finite double */
        uint64_t ef = b >> 52, m = b & FRAC_MASK;
        int64_t k = ef ? (int64_t)ef - 1075 : -1074;
        if (ef)
            m |= 1ull << 52;
        /* Above the halfway point to the next double: go up (at the point
         * itself, to the even one of the two). */
        int c = cmp_dec_bin(&d, e10, 2 * m + 1, k - 1);
        if (c > 0 || (c == 0 && (m & 1))) {
            b++;
            continue;
        }
        if (m == 0)
            break;
        /* Below the halfway point to the previous one, which is half as far
         * when m is the least mantissa of its binade. */
        c = m == 1ull << 52 && ef > 1 ? cmp_dec_bin(&d, e10, 4 * m - 1, k - 2)
                                      : cmp_dec_bin(&d, e10, 2 * m - 1, k - 1);
        if (c < 0 || (c == 0 && (m & 1))) {
            b--;
            continue;
        }
        break;
    }
    return double_of(b);
}

static bool prefix_ci(const char *s, const char *word)
{
    for (; *word; s++, word++)
        if ((*s | 32) != *word)
            return false;
    return true;
}

double GUEST(strtod)(const char *s, char **end)
{
    const char *p = s;
    while (*p == ' ' || (*p >= '\t' && *p <= '\r'))
        p++;
    bool neg = false;
    if (*p == '+' || *p == '-')
        neg = *p++ == '-';
    double v;
    if (prefix_ci(p, "inf")) {
        p += prefix_ci(p, "infinity") ? 8 : 3;
        v = double_of(EXP_MASK);
        goto done;
    }
    if (prefix_ci(p, "nan")) {
        p += 3;
        if (*p == '(') { /* nan(n-char-sequence) */
            const char *q = p + 1;
            while (is_digit(*q) || ((*q | 32) >= 'a' && (*q | 32) <= 'z') || *q == '_')
                q++;
            if (*q == ')')
                p = q + 1;
        }
        v = double_of(EXP_MASK | (1ull << 51));
        goto done;
    }
    if (p[0] == '0' && (p[1] | 32) == 'x') {
        const char *q = p + 2;
        if (parse_hex(&q, &v)) {
            p = q;
            goto done;
        }
        /* "0x" without hex digits: the number is the "0" */
    }

    char digits[MAX_DIGITS + 1];
    int nd = 0;
    int64_t adj = 0; /* power of ten the digits kept are off by */
    bool any = false, sticky = false;
    for (; is_digit(*p); p++) {
        any = true;
        if (nd == 0 && *p == '0')
            continue;
        if (nd < MAX_DIGITS) {
            digits[nd++] = *p;
        } else {
            adj++;
            sticky |= *p != '0';
        }
    }
    if (*p == '.' && (any || is_digit(p[1]))) {
        for (p++; is_digit(*p); p++) {
            any = true;
            if (nd == 0 && *p == '0') {
                adj--;
                continue;
            }
            if (nd < MAX_DIGITS) {
                digits[nd++] = *p;
                adj--;
            } else {
                sticky |= *p != '0';
            }
        }
    }
    if (!any) {
        if (end)
            *end = (char *)s;
        return 0;
    }
    int64_t e10 = parse_exp(&p, 'e') + adj;
    if (sticky) {
        digits[nd++] = '1'; /* "more, non-zero": below any halfway point's next digit */
        e10--;
    } else {
        while (nd > 0 && digits[nd - 1] == '0') {
            nd--;
            e10++;
        }
    }
    if (nd == 0) {
        v = 0;
    } else if (nd + e10 > 310) {
        v = double_of(EXP_MASK);
        errno = ERANGE;
    } else if (nd + e10 < -324) {
        v = 0;
        errno = ERANGE;
    } else {
        v = decimal_to_double(digits, nd, e10);
        uint64_t b = bits_of(v);
        if ((b & EXP_MASK) == EXP_MASK || (b & EXP_MASK) == 0)
            errno = ERANGE; /* overflow, or underflow to a subnormal or zero */
    }
done:
    if (end)
        *end = (char *)p;
    return neg ? -v : v;
}

/* ---- formatting: %e %f %g ----------------------------------------------------------- */

/* The exact decimal digits of |v| (finite): digits[0..return) with no
 * leading zero ("0" for zero), the first one worth 10^*x10. */
static int exact_digits(double v, char *digits, int64_t *x10)
{
    uint64_t b = bits_of(v) & ~(1ull << 63);
    uint64_t ef = b >> 52, m = b & FRAC_MASK;
    if (b == 0) {
        digits[0] = '0';
        *x10 = 0;
        return 1;
    }
    int64_t k = ef ? (int64_t)ef - 1075 : -1074;
    if (ef)
        m |= 1ull << 52;
    bn n;
    bn_set_u64(&n, m);
    int64_t scale = 0; /* value = n * 10^-scale */
    if (k >= 0) {
        bn_shl(&n, (uint32_t)k);
    } else {
        bn_mul_pow5(&n, (uint32_t)-k);
        scale = -k;
    }
    /* Nine digits at a time, least significant first, then reversed. */
    char tmp[800];
    int len = 0;
    while (n.n) {
        uint32_t r = bn_div_small(&n, 1000000000u);
        for (int i = 0; i < 9; i++) {
            tmp[len++] = (char)('0' + r % 10);
            r /= 10;
        }
    }
    while (len > 1 && tmp[len - 1] == '0')
        len--;
    for (int i = 0; i < len; i++)
        digits[i] = tmp[len - 1 - i];
    *x10 = len - 1 - scale;
    return len;
}

/* Round digits[0..len) to `n` digits, half to even on the exact value;
 * returns the new count (0 = rounded to zero); a carry out of the first
 * digit makes it "1" and adds one to *x10. */
static int round_digits(char *digits, int len, int n, int64_t *x10)
{
    if (n >= len)
        return len;
    if (n < 0)
        return 0;
    bool up;
    if (digits[n] != '5') {
        up = digits[n] > '5';
    } else {
        up = n > 0 && ((digits[n - 1] - '0') & 1);
        for (int i = n + 1; i < len && !up; i++)
            up = digits[i] != '0';
    }
    if (!up)
        return n;
    int i = n - 1;
    while (i >= 0 && digits[i] == '9')
        digits[i--] = '0';
    if (i >= 0) {
        digits[i]++;
        return n;
    }
    digits[0] = '1';
    for (int j = 1; j < n; j++)
        digits[j] = '0';
    (*x10)++;
    return n > 0 ? n : 1;
}

typedef struct fbuf {
    char *buf;
    size_t cap, len;
} fbuf;

static void fput(fbuf *o, char c)
{
    if (o->len + 1 < o->cap)
        o->buf[o->len] = c;
    o->len++;
}

/* The digit worth 10^pos of digits[0..nd) (first worth 10^x10), or '0'. */
static char digit_at(const char *digits, int nd, int64_t x10, int64_t pos)
{
    int64_t i = x10 - pos;
    return i >= 0 && i < nd ? digits[i] : '0';
}

static void put_fixed(fbuf *o, const char *digits, int nd, int64_t x10, int prec, bool alt)
{
    for (int64_t pos = x10 > 0 ? x10 : 0; pos >= 0; pos--)
        fput(o, digit_at(digits, nd, x10, pos));
    if (prec > 0 || alt)
        fput(o, '.');
    for (int64_t pos = -1; pos >= -(int64_t)prec; pos--)
        fput(o, digit_at(digits, nd, x10, pos));
}

static void put_exp(fbuf *o, const char *digits, int nd, int64_t x10, int prec, bool alt,
                    bool upper)
{
    fput(o, nd ? digits[0] : '0');
    if (prec > 0 || alt)
        fput(o, '.');
    for (int i = 1; i <= prec; i++)
        fput(o, i < nd ? digits[i] : '0');
    fput(o, upper ? 'E' : 'e');
    fput(o, x10 < 0 ? '-' : '+');
    int64_t e = x10 < 0 ? -x10 : x10;
    char t[8];
    int n = 0;
    do {
        t[n++] = (char)('0' + e % 10);
        e /= 10;
    } while (e);
    if (n < 2)
        t[n++] = '0';
    while (n)
        fput(o, t[--n]);
}

/* |v| formatted as conv ('e' 'E' 'f' 'F' 'g' 'G') with precision `prec`
 * (< 0: 6) and the '#' flag, without its sign, like snprintf: at most
 * cap - 1 characters and a NUL in buf, returns the full length. */
int mxu_guest_fmt_double(char *buf, size_t cap, double v, char conv, int prec, bool alt)
{
    fbuf o = {buf, cap, 0};
    bool upper = conv == 'E' || conv == 'F' || conv == 'G';
    char c = (char)(conv | 32);
    uint64_t b = bits_of(v);
    if ((b & EXP_MASK) == EXP_MASK) {
        const char *t = (b & FRAC_MASK) ? (upper ? "NAN" : "nan") : (upper ? "INF" : "inf");
        for (; *t; t++)
            fput(&o, *t);
        goto out;
    }
    if (prec < 0)
        prec = 6;
    char digits[800];
    int64_t x10;
    int nd = exact_digits(v, digits, &x10);
    bool zero = nd == 1 && digits[0] == '0';
    if (c == 'f') {
        int64_t n = x10 + 1 + prec;
        nd = zero ? 0 : round_digits(digits, nd, n > 800 ? 800 : (int)n, &x10);
        if (nd == 0)
            x10 = 0;
        put_fixed(&o, digits, nd, x10, prec, alt);
    } else if (c == 'e') {
        nd = zero ? 1 : round_digits(digits, nd, prec + 1 > 800 ? 800 : prec + 1, &x10);
        put_exp(&o, digits, nd, x10, prec, alt, upper);
    } else { /* g: P significant digits, fixed or exponent by the exponent X */
        int P = prec == 0 ? 1 : prec;
        nd = zero ? 1 : round_digits(digits, nd, P > 800 ? 800 : P, &x10);
        /* Without '#', the fraction's trailing zeros (and a bare point) go:
         * print only the significant digits there are. */
        int sig = nd;
        while (sig > 1 && digits[sig - 1] == '0')
            sig--;
        if (x10 >= -4 && x10 < P) {
            int64_t fp = alt ? P - 1 - x10 : sig - 1 - x10;
            put_fixed(&o, digits, nd, x10, fp > 0 ? (int)fp : 0, alt);
        } else {
            put_exp(&o, digits, nd, x10, alt ? P - 1 : sig - 1, alt, upper);
        }
    }
out:
    if (cap > 0)
        buf[o.len < cap ? o.len : cap - 1] = '\0';
    return o.len > 0x7fffffff ? 0x7fffffff : (int)o.len;
}

/* ---- qsort ------------------------------------------------------------------------ */

static void swap_bytes(uint8_t *a, uint8_t *b, size_t n)
{
    while (n--) {
        uint8_t t = *a;
        *a++ = *b;
        *b++ = t;
    }
}

static void sift_down(uint8_t *base, size_t root, size_t n, size_t size,
                      int (*cmp)(const void *, const void *))
{
    for (;;) {
        size_t child = 2 * root + 1;
        if (child >= n)
            return;
        if (child + 1 < n && cmp(base + child * size, base + (child + 1) * size) < 0)
            child++;
        if (cmp(base + root * size, base + child * size) >= 0)
            return;
        swap_bytes(base + root * size, base + child * size, size);
        root = child;
    }
}

/* Heapsort: O(n log n) at worst, no recursion, no allocation; not stable
 * (qsort need not be). */
void GUEST(qsort)(void *base, size_t n, size_t size, int (*cmp)(const void *, const void *))
{
    uint8_t *b = base;
    if (n < 2 || size == 0)
        return;
    for (size_t i = n / 2; i-- > 0;)
        sift_down(b, i, n, size, cmp);
    for (size_t end = n - 1; end > 0; end--) {
        swap_bytes(b, b + end * size, size);
        sift_down(b, 0, end, size, cmp);
    }
}
