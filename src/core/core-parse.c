/* Parsing the units people write in manifests and on the command line, and
 * formatting them back for messages. Strict: anything not understood is an
 * error with the accepted forms in its message, never a silent default. */
#include "core.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int mxu_parse_u64(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (s == NULL || *s == '\0')
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int mxu_parse_rate(const char *s, uint64_t *count, uint64_t *period_ms, mxu_err *err)
{
    static const struct {
        const char *unit;
        uint64_t ms;
    } units[] = {{"s", 1000},    {"sec", 1000},     {"second", 1000}, {"m", 60000},
                 {"min", 60000}, {"minute", 60000}, {"h", 3600000},   {"hour", 3600000}};
    const char *slash = s ? strchr(s, '/') : NULL;
    char num[24];
    uint64_t n;
    size_t len = slash ? (size_t)(slash - s) : 0;
    if (slash == NULL || len == 0 || len >= sizeof(num))
        goto bad;
    memcpy(num, s, len);
    num[len] = '\0';
    if (mxu_parse_u64(num, &n) < 0 || n == 0 || n > 1000000000)
        goto bad;
    for (size_t i = 0; i < MXU_ARRAY_LEN(units); i++) {
        if (strcmp(slash + 1, units[i].unit) == 0) {
            *count = n;
            *period_ms = units[i].ms;
            return 0;
        }
    }
bad:
    return mxu_err_set(err, EINVAL,
                       "'%.40s' is not a rate: write a count per second, minute or hour, e.g. "
                       "100/s, 6000/m, 50/h (count 1 to 1000000000)",
                       s ? s : "");
}

void mxu_format_rate(uint64_t count, uint64_t period_ms, char *out, size_t outlen)
{
    const char *u = period_ms == 3600000 ? "h" : period_ms == 60000 ? "m" : "s";
    snprintf(out, outlen, "%llu/%s", (unsigned long long)count, u);
}

/* Split "128Mi" into a number part (digits, optional fraction) and a suffix. */
static int split_number(const char *s, char *num, size_t numlen, const char **suffix)
{
    size_t i = 0;
    while (s[i] && ((s[i] >= '0' && s[i] <= '9') || s[i] == '.'))
        i++;
    if (i == 0 || i >= numlen)
        return -1;
    memcpy(num, s, i);
    num[i] = '\0';
    *suffix = s + i;
    return 0;
}

/* Multiply "12.5" by unit exactly enough for sizes and durations: integer
 * part times unit plus fraction digits scaled down; overflow is an error. */
static int scale(const char *num, uint64_t unit, uint64_t *out)
{
    const char *dot = strchr(num, '.');
    char ip[32];
    size_t ilen = dot ? (size_t)(dot - num) : strlen(num);
    if (ilen == 0 || ilen >= sizeof(ip) || (dot && strchr(dot + 1, '.')))
        return -1;
    memcpy(ip, num, ilen);
    ip[ilen] = '\0';
    uint64_t iv;
    if (mxu_parse_u64(ip, &iv) < 0 || (unit && iv > UINT64_MAX / unit))
        return -1;
    uint64_t v = iv * unit;
    if (dot) {
        const char *f = dot + 1;
        if (*f == '\0')
            return -1;
        uint64_t div = 1, fv = 0;
        for (; *f; f++) {
            if (*f < '0' || *f > '9' || div > 1000000000u)
                return -1;
            fv = fv * 10 + (uint64_t)(*f - '0');
            div *= 10;
        }
        if (unit > UINT64_MAX / div / 10 + 1 && fv)
            return -1;
        v += fv * (unit / div) + (fv * (unit % div)) / div;
    }
    *out = v;
    return 0;
}

int mxu_parse_size(const char *s, uint64_t *out, mxu_err *err)
{
    static const struct {
        const char *suffix;
        uint64_t unit;
    } units[] = {
        {"", 1},
        {"B", 1},
        {"k", 1000},
        {"K", 1000},
        {"KB", 1000},
        {"M", 1000000},
        {"MB", 1000000},
        {"G", 1000000000},
        {"GB", 1000000000},
        {"T", 1000000000000ull},
        {"Ki", 1024},
        {"KiB", 1024},
        {"Mi", 1024 * 1024},
        {"MiB", 1024 * 1024},
        {"Gi", 1024ull * 1024 * 1024},
        {"GiB", 1024ull * 1024 * 1024},
        {"Ti", 1024ull * 1024 * 1024 * 1024},
    };
    char num[32];
    const char *suffix;
    if (s && split_number(s, num, sizeof(num), &suffix) == 0) {
        for (size_t i = 0; i < MXU_ARRAY_LEN(units); i++) {
            if (strcmp(suffix, units[i].suffix) == 0 && scale(num, units[i].unit, out) == 0)
                return 0;
        }
    }
    return mxu_err_set(err, EINVAL,
                       "'%s' is not a size (write e.g. 128Mi, 1Gi, 512M or a number of bytes)",
                       s ? s : "");
}

int mxu_parse_duration_ms(const char *s, uint64_t *out, mxu_err *err)
{
    static const struct {
        const char *suffix;
        uint64_t us;
    } units[] = {
        {"", 1000000},   {"s", 1000000},    {"ms", 1000},         {"us", 1},
        {"m", 60000000}, {"min", 60000000}, {"h", 3600000000ull},
    };
    char num[32];
    const char *suffix;
    if (s && split_number(s, num, sizeof(num), &suffix) == 0) {
        for (size_t i = 0; i < MXU_ARRAY_LEN(units); i++) {
            uint64_t us;
            if (strcmp(suffix, units[i].suffix) == 0 && scale(num, units[i].us, &us) == 0) {
                *out = (us + 999) / 1000; /* round up: 250us is 1 ms, never 0 */
                return 0;
            }
        }
    }
    return mxu_err_set(err, EINVAL, "'%s' is not a duration (write e.g. 30s, 500ms, 5m, 1h)",
                       s ? s : "");
}

void mxu_format_size(uint64_t bytes, char *out, size_t outlen)
{
    static const char *const names[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    size_t i = 0;
    uint64_t whole = bytes, rem = 0;
    while (whole >= 1024 && i + 1 < MXU_ARRAY_LEN(names)) {
        rem = whole % 1024;
        whole /= 1024;
        i++;
    }
    if (rem == 0 || whole >= 100)
        snprintf(out, outlen, "%llu %s", (unsigned long long)whole, names[i]);
    else
        snprintf(out, outlen, "%llu.%llu %s", (unsigned long long)whole,
                 (unsigned long long)(rem * 10 / 1024), names[i]);
}

void mxu_format_duration_ms(uint64_t ms, char *out, size_t outlen)
{
    if (ms < 1000)
        snprintf(out, outlen, "%llu ms", (unsigned long long)ms);
    else if (ms < 60000)
        snprintf(out, outlen, "%llu.%llu s", (unsigned long long)(ms / 1000),
                 (unsigned long long)(ms % 1000 / 100));
    else if (ms < 3600000)
        snprintf(out, outlen, "%llu min", (unsigned long long)(ms / 60000));
    else
        snprintf(out, outlen, "%llu h", (unsigned long long)(ms / 3600000));
}

bool mxu_utf8_valid(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t need;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            need = 1, cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            need = 2, cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            need = 3, cp = c & 0x07;
        } else {
            return false;
        }
        if (i + need >= n) /* truncated sequence */
            return false;
        for (size_t k = 1; k <= need; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        /* Reject overlong forms, surrogates and code points past U+10FFFF. */
        if ((need == 1 && cp < 0x80) || (need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += need + 1;
    }
    return true;
}

bool mxu_name_valid(const char *s)
{
    size_t n = 0;
    if (s == NULL || !(s[0] >= 'a' && s[0] <= 'z'))
        return false;
    for (; s[n]; n++) {
        char c = s[n];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
            return false;
    }
    return n <= 63 && s[n - 1] != '-';
}
