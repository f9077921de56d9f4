/*
 * The guest C library's numeric functions (sdk/guest/guest-stdlib.c),
 * checked on the host against glibc: strtod to the last bit (random doubles
 * printed and read back, random decimal strings, exact halfway points and
 * their neighbours, inputs of thousands of digits, hex floats), the %e %f
 * %g formatting character for character, and qsort. The file is included
 * with MXU_GUEST_HOST_TEST, so its functions are guest_strtod etc.
 */
#include "test.h"

#define MXU_GUEST_HOST_TEST 1
#include "../../../sdk/guest/guest-stdlib.c"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
    return mxu_test_xorshift(&rng_state);
}

/* A random double: any finite bit pattern, a subnormal, or a "round" one. */
static double rnd_double(void)
{
    for (;;) {
        uint64_t b = rnd();
        double d;
        switch (rnd() % 6) {
        case 0:
            b &= 0x800fffffffffffffull; /* subnormal */
            break;
        case 1:
            return (double)(int64_t)(rnd() % 2000001) / (double)(1 << (rnd() % 12)) - 1000;
        case 2:
            return (double)(rnd() % 100000) * pow(10, (double)(int)(rnd() % 60) - 30);
        default:
            break;
        }
        memcpy(&d, &b, 8);
        if (isfinite(d))
            return d;
    }
}

static uint64_t bits(double d)
{
    uint64_t b;
    memcpy(&b, &d, 8);
    return b;
}

/* guest_strtod(s) must give glibc's value (bit for bit, NaN for NaN), end
 * pointer and, for overflow and underflow to zero, ERANGE. */
static int check_strtod(const char *s)
{
    char *e1, *e2;
    errno = 0;
    double want = strtod(s, &e1);
    int err1 = errno;
    errno = 0;
    double got = guest_strtod(s, &e2);
    int err2 = errno;
    bool same = isnan(want) ? isnan(got) && signbit(want) == signbit(got) : bits(want) == bits(got);
    bool range_ok = !(isinf(want) || want == 0) || err1 == err2;
    if (!same || e1 != e2 || !range_ok) {
        fprintf(
            stderr,
            "strtod(\"%.200s\"): glibc %a (end +%td, errno %d), guest %a (end +%td, errno %d)\n", s,
            want, e1 - s, err1, got, e2 - s, err2);
        return 1;
    }
    return 0;
}

static void test_strtod_round_trips(void)
{
    static const char *const fmts[] = {"%.17g", "%.16g", "%.15g", "%.20e", "%.40e", "%.6g", "%.1e"};
    int bad = 0;
    for (int i = 0; i < 300000 && bad < 10; i++) {
        double d = rnd_double();
        char s[128];
        snprintf(s, sizeof(s), fmts[i % 7], d);
        bad += check_strtod(s);
        if (i % 7 == 0) {
            double back = guest_strtod(s, NULL);
            if (bits(back) != bits(d)) {
                fprintf(stderr, "round trip of %a through \"%s\" gave %a\n", d, s, back);
                bad++;
            }
        }
    }
    CHECK_EQ_INT(bad, 0);
}

static void test_strtod_random_strings(void)
{
    int bad = 0;
    for (int i = 0; i < 200000 && bad < 10; i++) {
        char s[200];
        size_t n = 0;
        if (rnd() % 4 == 0)
            s[n++] = "+- \t"[rnd() % 4];
        int nd = 1 + (int)(rnd() % (rnd() % 8 ? 20 : 120));
        int point = rnd() % 3 ? (int)(rnd() % (unsigned)(nd + 1)) : -1;
        for (int k = 0; k < nd; k++) {
            if (k == point)
                s[n++] = '.';
            s[n++] = (char)('0' + (rnd() % 4 == 0 ? 0 : rnd() % 10));
        }
        if (rnd() % 3) {
            s[n++] = rnd() % 2 ? 'e' : 'E';
            if (rnd() % 2)
                s[n++] = rnd() % 2 ? '-' : '+';
            n += (size_t)snprintf(s + n, sizeof(s) - n, "%d", (int)(rnd() % 700));
        }
        if (rnd() % 5 == 0)
            s[n++] = "xe.-9"[rnd() % 5];
        s[n] = '\0';
        bad += check_strtod(s);
    }
    CHECK_EQ_INT(bad, 0);
}

/* Exactly halfway between two doubles (the long double midpoint is exact),
 * then just above and just below: where a strtod that is not exact fails. */
static void test_strtod_halfway_points(void)
{
    int bad = 0;
    for (int i = 0; i < 6000 && bad < 10; i++) {
        double d = fabs(rnd_double());
        if (d >= DBL_MAX)
            continue;
        double up = nextafter(d, INFINITY);
        long double mid = ((long double)d + (long double)up) / 2;
        static char s[1200];
        int n = snprintf(s, sizeof(s) - 4, "%.800Le", mid);
        bad += check_strtod(s);
        /* Just above: an extra non-zero digit far out. */
        char *e = strchr(s, 'e');
        char expo[16];
        snprintf(expo, sizeof(expo), "%s", e);
        snprintf(e, sizeof(s) - (size_t)(e - s), "1%s", expo);
        bad += check_strtod(s);
        /* Just below: the midpoint cut after 17..60 significant digits. */
        (void)n;
        snprintf(s, sizeof(s), "%.*Le", (int)(16 + rnd() % 44), mid);
        bad += check_strtod(s);
    }
    CHECK_EQ_INT(bad, 0);
}

static void test_strtod_special_inputs(void)
{
    static const char *const cases[] = {
        "0",
        "-0",
        "0.0e10",
        "1e-400",
        "-1e-400",
        "1e400",
        "-1e400",
        "2.4703282292062327e-324",
        "2.4703282292062328e-324",
        "4.9406564584124654e-324",
        "2.2250738585072011e-308",
        "2.2250738585072014e-308",
        "1.7976931348623157e308",
        "1.7976931348623158e308",
        "1.797693134862315807937289714053e308",
        "179769313486231580793728971405301e276",
        "9007199254740993",
        "9007199254740992.9999999999999999999999",
        "0.1",
        "3.14159",
        "123456789012345678901234567890",
        ".5",
        "5.",
        ".",
        "-.e1",
        "1e",
        "1e+",
        "1.5e+3x",
        "  \t\n 42",
        "inf",
        "-Infinity",
        "INFx",
        "nan",
        "-nan",
        "NaN(123abc)",
        "nan(",
        "nan(x y)",
        "0x1p-1074",
        "0x1.fffffffffffffp1023",
        "0x1.fffffffffffff8p1023",
        "0x.8p1",
        "0x",
        "0xg",
        "0X1P+4",
        "0x1.00000000000008p0",
        "0x1.000000000000080000001p0",
        "0x1p-1075",
        "0x1.0000000000001p-1075",
        "0x123456789abcdef0123p-10",
        "00000000000000000001.5",
        "0.000000000000000000000000000000000000000000000000000000000001e60",
        "1e-2147483650",
        "1e2147483650",
        "+",
        "-",
        "",
        "e5"};
    int bad = 0;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        bad += check_strtod(cases[i]);
    /* Thousands of digits: the digits past the 800th decide only a tie. */
    static char s[5000];
    for (int i = 0; i < 300 && bad < 10; i++) {
        double d = fabs(rnd_double());
        long double mid = ((long double)d + (long double)nextafter(d, INFINITY)) / 2;
        int n = snprintf(s, sizeof(s), "%.3000Lf", mid);
        if (n >= (int)sizeof(s) - 2)
            continue;
        bad += check_strtod(s); /* a tie, then 2000+ zeros */
        s[n] = (char)('1' + rnd() % 9);
        s[n + 1] = '\0';
        bad += check_strtod(s); /* just above, by a digit thousands of places out */
    }
    for (int i = 0; i < 2000 && bad < 10; i++) {
        double d = rnd_double();
        snprintf(s, sizeof(s), "%a", d);
        bad += check_strtod(s);
    }
    CHECK_EQ_INT(bad, 0);
}

static int check_fmt(double d, char conv, int prec, bool alt)
{
    char fmt[16], want[1600], got[1600];
    if (prec < 0)
        snprintf(fmt, sizeof(fmt), "%%%s%c", alt ? "#" : "", conv);
    else
        snprintf(fmt, sizeof(fmt), "%%%s.%d%c", alt ? "#" : "", prec, conv);
    snprintf(want, sizeof(want), fmt, fabs(d));
    /* glibc drops the zeros of %#g when rounding carries into a new
     * exponent (999999.5 -> "1.e+06"); C says '#' keeps them: "1.00000e+06". */
    char *cut = strstr(want, ".e") ? strstr(want, ".e") : strstr(want, ".E");
    if (alt && (conv | 32) == 'g' && cut) {
        int p = prec < 0 ? 6 : prec == 0 ? 1 : prec;
        char tail[16];
        snprintf(tail, sizeof(tail), "%s", cut + 1);
        snprintf(cut + 1, sizeof(want) - (size_t)(cut + 1 - want), "%0*d%s", p - 1, 0, tail);
        if (p == 1)
            snprintf(cut + 1, sizeof(want) - (size_t)(cut + 1 - want), "%s", tail);
    }
    int n = mxu_guest_fmt_double(got, sizeof(got), d, conv, prec, alt);
    if (strcmp(want, got) != 0 || n != (int)strlen(want)) {
        fprintf(stderr, "%s of %a: glibc \"%s\", guest \"%s\" (%d)\n", fmt, d, want, got, n);
        return 1;
    }
    /* Truncation: the length stays the full one, the text a prefix. */
    char small[8];
    int k = mxu_guest_fmt_double(small, sizeof(small), d, conv, prec, alt);
    if (k != n || strncmp(small, want, sizeof(small) - 1) != 0) {
        fprintf(stderr, "%s of %a truncated: \"%s\" (%d)\n", fmt, d, small, k);
        return 1;
    }
    return 0;
}

static void test_format_matches_glibc(void)
{
    static const char convs[] = "efgEFG";
    int bad = 0;
    for (int i = 0; i < 200000 && bad < 10; i++) {
        double d = rnd_double();
        int prec = (int)(rnd() % 30) - 1;
        bad += check_fmt(d, convs[rnd() % 6], prec, rnd() % 4 == 0);
    }
    static const double special[] = {0.0,      -0.0,      0.5,      1.5,      2.5,     0.125,
                                     9.5,      99.5,      999999.5, 0.000095, 1e-5,    1e-4,
                                     123456,   1234567,   1e21,     5e-324,   DBL_MAX, DBL_MIN,
                                     INFINITY, -INFINITY, NAN,      0.1,      1e100};
    for (size_t i = 0; i < sizeof(special) / sizeof(special[0]); i++)
        for (int prec = -1; prec < 20; prec++)
            for (int c = 0; c < 6; c++)
                bad += check_fmt(special[i], convs[c], prec, false) +
                       check_fmt(special[i], convs[c], prec, true);
    /* The widest: every digit of the least subnormal, and of DBL_MAX. */
    bad += check_fmt(5e-324, 'f', 1100, false) + check_fmt(DBL_MAX, 'f', 3, false) +
           check_fmt(5e-324, 'e', 800, false) + check_fmt(0.1, 'g', 900, true);
    CHECK_EQ_INT(bad, 0);
}

/* %.17g and back: the guest's own round trip, as jansson does it. */
static void test_format_round_trip(void)
{
    int bad = 0;
    for (int i = 0; i < 100000 && bad < 10; i++) {
        double d = rnd_double();
        char s[64];
        mxu_guest_fmt_double(s, sizeof(s), d, 'g', 17, false);
        double back = guest_strtod(s, NULL);
        if (bits(back) != bits(fabs(d))) {
            fprintf(stderr, "%a -> \"%s\" -> %a\n", d, s, back);
            bad++;
        }
    }
    CHECK_EQ_INT(bad, 0);
}

typedef struct rec {
    uint32_t key;
    uint8_t pad[9];
} __attribute__((packed)) rec;

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x, y;
    memcpy(&x, a, 4);
    memcpy(&y, b, 4);
    return x < y ? -1 : x > y;
}

static void test_qsort(void)
{
    for (int round = 0; round < 2000; round++) {
        size_t n = rnd() % (round % 10 == 0 ? 5000 : 40);
        rec *a = calloc(n + 1, sizeof(rec)), *b = calloc(n + 1, sizeof(rec));
        uint32_t range = round % 3 == 0 ? 4 : 1000000;
        for (size_t i = 0; i < n; i++) {
            a[i].key = (uint32_t)(rnd() % range);
            a[i].pad[0] = (uint8_t)a[i].key;
            a[i].pad[8] = (uint8_t)(a[i].key >> 8);
        }
        if (round % 7 == 1) /* already sorted */
            qsort(a, n, sizeof(rec), cmp_u32);
        memcpy(b, a, n * sizeof(rec));
        guest_qsort(a, n, sizeof(rec), cmp_u32);
        qsort(b, n, sizeof(rec), cmp_u32);
        for (size_t i = 0; i < n; i++) {
            CHECK_EQ_U64(a[i].key, b[i].key);
            CHECK_EQ_INT(a[i].pad[0], (uint8_t)a[i].key); /* elements moved whole */
            CHECK_EQ_INT(a[i].pad[8], (uint8_t)(a[i].key >> 8));
        }
        free(a);
        free(b);
    }
    guest_qsort(NULL, 0, 4, cmp_u32);
}

MXU_TESTS(TEST(test_strtod_round_trips), TEST(test_strtod_random_strings),
          TEST(test_strtod_halfway_points), TEST(test_strtod_special_inputs),
          TEST(test_format_matches_glibc), TEST(test_format_round_trip), TEST(test_qsort))
