/*
 * The guest's C library: the part of libc a function and the SDK core need
 * that needs no operating system — memory and string functions, number
 * parsing, snprintf-family formatting and a heap on guest memory. The system
 * facing part (read, write, clocks, stdio streams) is guest-posix.c.
 *
 * Built with -fno-builtin -fno-tree-loop-distribute-patterns so that the
 * compiler does not turn these very loops back into calls to themselves.
 *
 * The heap: power-of-two size classes from 16 bytes up, each block preceded
 * by a 16-byte header that records its class; freed blocks go on their
 * class's list and are reused as they are; new blocks are cut from the top
 * of the heap. Simple, O(1), at most 2x overhead, no coalescing: a guest
 * lives for one instance, and the SDK reuses its buffers.
 */
#define __NO_CTYPE 1 /* the guest defines the ctype functions below, not glibc's macros */
#include "mxu-guest.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- memory and strings ---------------------------------------------------------- */

void *memcpy(void *restrict d, const void *restrict s, size_t n)
{
    uint8_t *dp = d;
    const uint8_t *sp = s;
    while (n >= 8) {
        uint64_t w;
        __builtin_memcpy(&w, sp, 8);
        __builtin_memcpy(dp, &w, 8);
        dp += 8;
        sp += 8;
        n -= 8;
    }
    while (n--)
        *dp++ = *sp++;
    return d;
}

void *memmove(void *d, const void *s, size_t n)
{
    uint8_t *dp = d;
    const uint8_t *sp = s;
    if (dp == sp || n == 0)
        return d;
    if (dp < sp || dp >= sp + n)
        return memcpy(d, s, n);
    while (n--)
        dp[n] = sp[n];
    return d;
}

void *memset(void *d, int c, size_t n)
{
    uint8_t *dp = d;
    uint64_t w = 0x0101010101010101ull * (uint8_t)c;
    while (n >= 8) {
        __builtin_memcpy(dp, &w, 8);
        dp += 8;
        n -= 8;
    }
    while (n--)
        *dp++ = (uint8_t)c;
    return d;
}

int memcmp(const void *a, const void *b, size_t n)
{
    const uint8_t *x = a, *y = b;
    for (size_t i = 0; i < n; i++)
        if (x[i] != y[i])
            return x[i] < y[i] ? -1 : 1;
    return 0;
}

void *memchr(const void *s, int c, size_t n)
{
    const uint8_t *p = s;
    for (size_t i = 0; i < n; i++)
        if (p[i] == (uint8_t)c)
            return (void *)(p + i);
    return NULL;
}

size_t strlen(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

size_t strnlen(const char *s, size_t max)
{
    size_t n = 0;
    while (n < max && s[n])
        n++;
    return n;
}

int strcmp(const char *a, const char *b)
{
    while (*a && *a == *b)
        a++, b++;
    return (unsigned char)*a - (unsigned char)*b;
}

int strncmp(const char *a, const char *b, size_t n)
{
    for (; n; n--, a++, b++) {
        if (*a != *b || !*a)
            return (unsigned char)*a - (unsigned char)*b;
    }
    return 0;
}

int strcasecmp(const char *a, const char *b)
{
    while (*a && tolower((unsigned char)*a) == tolower((unsigned char)*b))
        a++, b++;
    return tolower((unsigned char)*a) - tolower((unsigned char)*b);
}

int strncasecmp(const char *a, const char *b, size_t n)
{
    for (; n; n--, a++, b++) {
        int x = tolower((unsigned char)*a), y = tolower((unsigned char)*b);
        if (x != y || !*a)
            return x - y;
    }
    return 0;
}

char *strchr(const char *s, int c)
{
    for (;; s++) {
        if (*s == (char)c)
            return (char *)s;
        if (!*s)
            return NULL;
    }
}

char *strrchr(const char *s, int c)
{
    const char *r = NULL;
    for (;; s++) {
        if (*s == (char)c)
            r = s;
        if (!*s)
            return (char *)r;
    }
}

char *strstr(const char *h, const char *n)
{
    size_t nl = strlen(n);
    if (nl == 0)
        return (char *)h;
    for (; *h; h++)
        if (*h == *n && strncmp(h, n, nl) == 0)
            return (char *)h;
    return NULL;
}

size_t strspn(const char *s, const char *accept)
{
    size_t n = 0;
    while (s[n] && strchr(accept, s[n]))
        n++;
    return n;
}

size_t strcspn(const char *s, const char *reject)
{
    size_t n = 0;
    while (s[n] && !strchr(reject, s[n]))
        n++;
    return n;
}

char *strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    return d ? memcpy(d, s, n) : NULL;
}

char *strndup(const char *s, size_t max)
{
    size_t n = strnlen(s, max);
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* Defined, not called, by mxu: libjansson.a calls it. */
char *strncpy(char *restrict d, const char *restrict s, size_t n) /* lint: allow */
{
    size_t k = strnlen(s, n);
    memcpy(d, s, k);
    memset(d + k, 0, n - k);
    return d;
}

/* explicit_bzero: a memset the compiler may not drop (libsodium wipes keys
 * with it). */
void explicit_bzero(void *p, size_t n)
{
    memset(p, 0, n);
    __asm__ volatile("" : : "r"(p) : "memory");
}

/* ---- _FORTIFY_SOURCE's checked variants ----------------------------------------------
 * Debian builds its libraries with _FORTIFY_SOURCE=2: where the compiler
 * knew the destination's size it calls these with it. Each checks exactly
 * what glibc's does and ends the guest, as glibc ends the process, when the
 * bound is broken. */

void __chk_fail(void) __attribute__((noreturn));
void __chk_fail(void)
{
    static const char msg[] = "mxu guest: buffer overflow detected\n";
    mxu_guest_send(MXU_VM_HC_STDERR, msg, sizeof(msg) - 1);
    mxu_guest_exit(134);
}

char *__strncpy_chk(char *d, const char *s, size_t n, size_t dlen);
char *__strncpy_chk(char *d, const char *s, size_t n, size_t dlen)
{
    if (dlen < n)
        __chk_fail();
    return strncpy(d, s, n); /* lint: allow */
}

void __explicit_bzero_chk(void *p, size_t n, size_t dlen);
void __explicit_bzero_chk(void *p, size_t n, size_t dlen)
{
    if (dlen < n)
        __chk_fail();
    explicit_bzero(p, n);
}

/* ---- character classes (C locale) -------------------------------------------------
 * glibc's <ctype.h> macros read a table through __ctype_b_loc(); the guest
 * provides one for the C locale, so the header's inline forms work too. */

static const unsigned short *ctype_table(void)
{
    /* glibc's bits: _ISupper 0x100, _ISlower 0x200, _ISalpha 0x400,
     * _ISdigit 0x800, _ISxdigit 0x1000, _ISspace 0x2000, _ISprint 0x4000,
     * _ISgraph 0x8000, _ISblank 0x1, _IScntrl 0x2, _ISpunct 0x4, _ISalnum 0x8
     * (little-endian layout). */
    static unsigned short t[384];
    static bool ready;
    if (!ready) {
        for (int c = 0; c < 128; c++) {
            unsigned short b = 0;
            bool up = c >= 'A' && c <= 'Z', lo = c >= 'a' && c <= 'z', dg = c >= '0' && c <= '9';
            if (up)
                b |= 0x100;
            if (lo)
                b |= 0x200;
            if (up || lo)
                b |= 0x400;
            if (dg)
                b |= 0x800;
            if (dg || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))
                b |= 0x1000;
            if (c == ' ' || (c >= '\t' && c <= '\r'))
                b |= 0x2000;
            if (c >= 0x20 && c < 0x7f)
                b |= 0x4000;
            if (c > 0x20 && c < 0x7f)
                b |= 0x8000;
            if (c == ' ' || c == '\t')
                b |= 0x1;
            if (c < 0x20 || c == 0x7f)
                b |= 0x2;
            if (c > 0x20 && c < 0x7f && !up && !lo && !dg)
                b |= 0x4;
            if (up || lo || dg)
                b |= 0x8;
            t[128 + c] = b;
        }
        ready = true;
    }
    return t + 128;
}

const unsigned short **__ctype_b_loc(void);
const unsigned short **__ctype_b_loc(void)
{
    static const unsigned short *p;
    p = ctype_table();
    return &p;
}

static int32_t lower_t[384], upper_t[384];
const int32_t **__ctype_tolower_loc(void);
const int32_t **__ctype_toupper_loc(void);
static void case_tables(void)
{
    for (int c = -128; c < 256; c++) {
        lower_t[c + 128] = c >= 'A' && c <= 'Z' ? c + 32 : c;
        upper_t[c + 128] = c >= 'a' && c <= 'z' ? c - 32 : c;
    }
}
const int32_t **__ctype_tolower_loc(void)
{
    static const int32_t *p;
    if (!p) {
        case_tables();
        p = lower_t + 128;
    }
    return &p;
}
const int32_t **__ctype_toupper_loc(void)
{
    static const int32_t *p;
    if (!p) {
        case_tables();
        p = upper_t + 128;
    }
    return &p;
}

int tolower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}
int toupper(int c)
{
    return c >= 'a' && c <= 'z' ? c - 32 : c;
}
int isdigit(int c)
{
    return c >= '0' && c <= '9';
}
int isalpha(int c)
{
    return (c | 32) >= 'a' && (c | 32) <= 'z';
}
int isalnum(int c)
{
    return isalpha(c) || isdigit(c);
}
int isspace(int c)
{
    return c == ' ' || (c >= '\t' && c <= '\r');
}
int isxdigit(int c)
{
    return isdigit(c) || ((c | 32) >= 'a' && (c | 32) <= 'f');
}
int isupper(int c)
{
    return c >= 'A' && c <= 'Z';
}
int islower(int c)
{
    return c >= 'a' && c <= 'z';
}
int isprint(int c)
{
    return c >= 0x20 && c < 0x7f;
}

/* ---- numbers ---------------------------------------------------------------------- */

static unsigned long long parse_u(const char *s, char **end, int base, bool *neg, bool *range)
{
    const char *p = s;
    while (isspace((unsigned char)*p))
        p++;
    *neg = false;
    if (*p == '+' || *p == '-')
        *neg = *p++ == '-';
    if ((base == 0 || base == 16) && p[0] == '0' && (p[1] | 32) == 'x' && isxdigit(p[2])) {
        p += 2;
        base = 16;
    } else if (base == 0) {
        base = p[0] == '0' ? 8 : 10;
    }
    unsigned long long v = 0;
    const char *start = p;
    *range = false;
    for (;; p++) {
        int d = isdigit((unsigned char)*p)   ? *p - '0'
                : isalpha((unsigned char)*p) ? (*p | 32) - 'a' + 10
                                             : 99;
        if (d >= base)
            break;
        if (v > (ULLONG_MAX - (unsigned)d) / (unsigned)base)
            *range = true;
        else
            v = v * (unsigned)base + (unsigned)d;
    }
    if (end)
        *end = (char *)(p == start ? s : p);
    return v;
}

long long strtoll(const char *s, char **end, int base)
{
    bool neg, range;
    unsigned long long v = parse_u(s, end, base, &neg, &range);
    if (range || v > (unsigned long long)LLONG_MAX + neg) {
        errno = ERANGE;
        return neg ? LLONG_MIN : LLONG_MAX;
    }
    return neg ? (long long)(0 - v) : (long long)v;
}

long strtol(const char *s, char **end, int base)
{
    return (long)strtoll(s, end, base);
}

unsigned long long strtoull(const char *s, char **end, int base)
{
    bool neg, range;
    unsigned long long v = parse_u(s, end, base, &neg, &range);
    if (range) {
        errno = ERANGE;
        return ULLONG_MAX;
    }
    return neg ? 0 - v : v;
}

unsigned long strtoul(const char *s, char **end, int base)
{
    return (unsigned long)strtoull(s, end, base);
}

int atoi(const char *s)
{
    return (int)strtol(s, NULL, 10);
}

long atol(const char *s)
{
    return strtol(s, NULL, 10);
}

int abs(int v)
{
    return v < 0 ? -v : v;
}

/* ---- formatting ------------------------------------------------------------------- */

typedef struct out {
    char *buf;
    size_t cap, len;
} out;

static void put(out *o, char c)
{
    if (o->len + 1 < o->cap)
        o->buf[o->len] = c;
    o->len++;
}

static void put_n(out *o, const char *s, size_t n, int width, bool left, char pad)
{
    size_t w = width > 0 ? (size_t)width : 0;
    if (!left)
        for (size_t i = n; i < w; i++)
            put(o, pad);
    for (size_t i = 0; i < n; i++)
        put(o, s[i]);
    if (left)
        for (size_t i = n; i < w; i++)
            put(o, ' ');
}

static void put_num(out *o, unsigned long long v, bool neg, int base, bool upper, int width,
                    int prec, bool left, bool zero, char sign, bool alt)
{
    char tmp[72];
    size_t n = 0;
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    do {
        tmp[n++] = digits[v % (unsigned)base];
        v /= (unsigned)base;
    } while (v);
    if (prec == 0 && n == 1 && tmp[0] == '0')
        n = 0;
    while (prec > 0 && n < (size_t)prec && n < 64)
        tmp[n++] = '0';
    char pre[3];
    size_t np = 0;
    if (neg)
        pre[np++] = '-';
    else if (sign)
        pre[np++] = sign;
    if (alt && base == 16) {
        pre[np++] = '0';
        pre[np++] = upper ? 'X' : 'x';
    }
    size_t total = n + np;
    size_t w = width > 0 ? (size_t)width : 0;
    if (!left && !(zero && prec < 0))
        for (size_t i = total; i < w; i++)
            put(o, ' ');
    for (size_t i = 0; i < np; i++)
        put(o, pre[i]);
    if (!left && zero && prec < 0)
        for (size_t i = total; i < w; i++)
            put(o, '0');
    while (n)
        put(o, tmp[--n]);
    if (left)
        for (size_t i = total; i < w; i++)
            put(o, ' ');
}

/* %e %f %g: the digits come exact from guest-stdlib.c; here the sign
 * and the padding. */
static void put_double(out *o, double d, char conv, int prec, int width, bool left, bool zero,
                       char sign, bool alt)
{
    char small[400];
    char *body = small, *big = NULL;
    int n = mxu_guest_fmt_double(small, sizeof(small), d, conv, prec, alt);
    if ((size_t)n >= sizeof(small)) {
        big = malloc((size_t)n + 1);
        if (big)
            mxu_guest_fmt_double(big, (size_t)n + 1, d, conv, prec, alt);
        body = big ? big : small;
        n = big ? n : (int)sizeof(small) - 1;
    }
    char sg = __builtin_signbit(d) ? '-' : sign;
    bool finite = body[0] >= '0' && body[0] <= '9';
    size_t total = (size_t)n + (sg != 0), w = width > 0 ? (size_t)width : 0;
    bool zpad = zero && !left && finite;
    if (!left && !zpad)
        for (size_t i = total; i < w; i++)
            put(o, ' ');
    if (sg)
        put(o, sg);
    if (zpad)
        for (size_t i = total; i < w; i++)
            put(o, '0');
    for (int i = 0; i < n; i++)
        put(o, body[i]);
    if (left)
        for (size_t i = total; i < w; i++)
            put(o, ' ');
    free(big);
}

int vsnprintf(char *buf, size_t cap, const char *fmt, va_list ap)
{
    out o = {buf, cap, 0};
    for (const char *f = fmt; *f; f++) {
        if (*f != '%') {
            put(&o, *f);
            continue;
        }
        f++;
        bool left = false, zero = false, alt = false;
        char sign = 0;
        for (;; f++) {
            if (*f == '-')
                left = true;
            else if (*f == '0')
                zero = true;
            else if (*f == '+')
                sign = '+';
            else if (*f == ' ')
                sign = sign ? sign : ' ';
            else if (*f == '#')
                alt = true;
            else
                break;
        }
        int width = 0, prec = -1;
        if (*f == '*') {
            width = va_arg(ap, int);
            if (width < 0) {
                left = true;
                width = -width;
            }
            f++;
        } else {
            while (isdigit((unsigned char)*f))
                width = width * 10 + (*f++ - '0');
        }
        if (*f == '.') {
            f++;
            prec = 0;
            if (*f == '*') {
                prec = va_arg(ap, int);
                f++;
            } else {
                while (isdigit((unsigned char)*f))
                    prec = prec * 10 + (*f++ - '0');
            }
        }
        int lng = 0; /* 0 int, 1 long, 2 long long, 3 size_t/intmax/ptrdiff, -1 short, -2 char */
        for (;; f++) {
            if (*f == 'l')
                lng++;
            else if (*f == 'z' || *f == 'j' || *f == 't')
                lng = 3;
            else if (*f == 'h')
                lng--;
            else
                break;
        }
        char c = *f;
        if (c == '\0')
            break;
        switch (c) {
        case 'd':
        case 'i': {
            long long v = lng >= 1 ? va_arg(ap, long long) : va_arg(ap, int);
            if (lng == -1)
                v = (short)v;
            else if (lng == -2)
                v = (signed char)v;
            unsigned long long u = v < 0 ? 0 - (unsigned long long)v : (unsigned long long)v;
            put_num(&o, u, v < 0, 10, false, width, prec, left, zero, sign, false);
            break;
        }
        case 'u':
        case 'x':
        case 'X':
        case 'o': {
            unsigned long long v = lng >= 1 ? va_arg(ap, unsigned long long) : va_arg(ap, unsigned);
            if (lng == -1)
                v = (unsigned short)v;
            else if (lng == -2)
                v = (unsigned char)v;
            int base = c == 'u' ? 10 : c == 'o' ? 8 : 16;
            put_num(&o, v, false, base, c == 'X', width, prec, left, zero, 0, alt && v);
            break;
        }
        case 'p':
            put_num(&o, (uintptr_t)va_arg(ap, void *), false, 16, false, width, -1, left, false, 0,
                    true);
            break;
        case 'c': {
            char ch = (char)va_arg(ap, int);
            put_n(&o, &ch, 1, width, left, ' ');
            break;
        }
        case 's': {
            const char *s = va_arg(ap, const char *);
            if (s == NULL)
                s = "(null)";
            size_t n = prec >= 0 ? strnlen(s, (size_t)prec) : strlen(s);
            put_n(&o, s, n, width, left, ' ');
            break;
        }
        case 'f':
        case 'F':
        case 'g':
        case 'G':
        case 'e':
        case 'E':
            put_double(&o, va_arg(ap, double), c, prec, width, left, zero, sign, alt);
            break;
        case '%':
            put(&o, '%');
            break;
        default: /* unknown conversion: print it as written */
            put(&o, '%');
            put(&o, c);
            break;
        }
    }
    if (cap > 0)
        buf[o.len < cap ? o.len : cap - 1] = '\0';
    return o.len > INT_MAX ? INT_MAX : (int)o.len;
}

int snprintf(char *buf, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
    return n;
}

/* `flag` (the fortify level) asks for %n checks; the guest has no %n. */
int __vsnprintf_chk(char *buf, size_t cap, int flag, size_t blen, const char *fmt, va_list ap);
int __vsnprintf_chk(char *buf, size_t cap, int flag, size_t blen, const char *fmt, va_list ap)
{
    (void)flag;
    if (blen < cap)
        __chk_fail();
    return vsnprintf(buf, cap, fmt, ap);
}

int __snprintf_chk(char *buf, size_t cap, int flag, size_t blen, const char *fmt, ...);
int __snprintf_chk(char *buf, size_t cap, int flag, size_t blen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = __vsnprintf_chk(buf, cap, flag, blen, fmt, ap);
    va_end(ap);
    return n;
}

/* ---- locale and math: the C locale; what the catalogue's code calls ------------------ */

struct lconv *localeconv(void)
{
    static struct lconv c = {
        .decimal_point = (char *)".",
        .thousands_sep = (char *)"",
        .grouping = (char *)"",
        .int_curr_symbol = (char *)"",
        .currency_symbol = (char *)"",
        .mon_decimal_point = (char *)"",
        .mon_thousands_sep = (char *)"",
        .mon_grouping = (char *)"",
        .positive_sign = (char *)"",
        .negative_sign = (char *)"",
        .int_frac_digits = CHAR_MAX,
        .frac_digits = CHAR_MAX,
        .p_cs_precedes = CHAR_MAX,
        .p_sep_by_space = CHAR_MAX,
        .n_cs_precedes = CHAR_MAX,
        .n_sep_by_space = CHAR_MAX,
        .p_sign_posn = CHAR_MAX,
        .n_sign_posn = CHAR_MAX,
        .int_p_cs_precedes = CHAR_MAX,
        .int_p_sep_by_space = CHAR_MAX,
        .int_n_cs_precedes = CHAR_MAX,
        .int_n_sep_by_space = CHAR_MAX,
        .int_p_sign_posn = CHAR_MAX,
        .int_n_sign_posn = CHAR_MAX,
    };
    return &c;
}

double fmax(double a, double b)
{
    if (a != a)
        return b;
    if (b != b)
        return a;
    if (a == b) /* +0 over -0 */
        return __builtin_signbit(a) ? b : a;
    return a > b ? a : b;
}

double fmin(double a, double b)
{
    if (a != a)
        return b;
    if (b != b)
        return a;
    if (a == b)
        return __builtin_signbit(a) ? a : b;
    return a < b ? a : b;
}

double fabs(double a)
{
    return __builtin_fabs(a);
}

/* Round to an integer in the current rounding mode (to nearest even unless
 * changed) without raising inexact: adding and subtracting 2^52 (with x's
 * sign) rounds away the fraction; the MXCSR flags are put back after. */
double nearbyint(double x)
{
    if (!(__builtin_fabs(x) < 4503599627370496.0)) /* 2^52: an integer already, inf or nan */
        return x;
    unsigned csr;
    __asm__ volatile("stmxcsr %0" : "=m"(csr));
    volatile double big = x < 0 ? -4503599627370496.0 : 4503599627370496.0;
    double r = (x + big) - big;
    __asm__ volatile("ldmxcsr %0" : : "m"(csr));
    return __builtin_copysign(r, x);
}

/* ---- heap ------------------------------------------------------------------------- */

#define MIN_SHIFT 4
#define NCLASSES  40

typedef struct block {
    uint64_t cls; /* size class: the block holds 1 << cls bytes */
    uint64_t magic;
} block;
#define BLOCK_MAGIC 0x6d78756865617021ull

static uintptr_t heap_top, heap_end;
static void *free_lists[NCLASSES];

void mxu_guest_heap_init(uint64_t start, uint64_t end)
{
    heap_top = (uintptr_t)start;
    heap_end = (uintptr_t)end;
}

static unsigned class_of(size_t n)
{
    unsigned c = MIN_SHIFT;
    while (c < NCLASSES - 1 && ((size_t)1 << c) < n)
        c++;
    return c;
}

void *malloc(size_t n)
{
    if (n > ((size_t)1 << (NCLASSES - 2)))
        goto nomem;
    unsigned c = class_of(n ? n : 1);
    void *p = free_lists[c];
    if (p) {
        free_lists[c] = *(void **)p;
        ((block *)p - 1)->magic = BLOCK_MAGIC;
        return p;
    }
    size_t need = sizeof(block) + ((size_t)1 << c);
    if (heap_end - heap_top < need)
        goto nomem;
    block *b = (block *)heap_top;
    heap_top += need;
    b->cls = c;
    b->magic = BLOCK_MAGIC;
    return b + 1;
nomem:
    errno = ENOMEM;
    return NULL;
}

static block *block_of(void *p)
{
    block *b = (block *)p - 1;
    if (b->magic != BLOCK_MAGIC || b->cls >= NCLASSES) {
        static const char msg[] = "mxu guest: free/realloc of a pointer malloc did not return\n";
        mxu_guest_send(MXU_VM_HC_STDERR, msg, sizeof(msg) - 1);
        mxu_guest_exit(134);
    }
    return b;
}

__attribute__((noinline)) void free(void *p)
{
    if (p == NULL)
        return;
    block *b = block_of(p);
    b->magic = 0; /* a second free is caught */
    *(void **)p = free_lists[b->cls];
    free_lists[b->cls] = p;
}

void *calloc(size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size) {
        errno = ENOMEM;
        return NULL;
    }
    void *p = malloc(n * size);
    if (p)
        memset(p, 0, n * size);
    return p;
}

void *realloc(void *p, size_t n)
{
    if (p == NULL)
        return malloc(n);
    if (n == 0) {
        free(p);
        return NULL;
    }
    block *b = block_of(p);
    size_t have = (size_t)1 << b->cls;
    if (n <= have)
        return p;
    void *q = malloc(n);
    if (q) {
        memcpy(q, p, have);
        free(p);
    }
    return q;
}
