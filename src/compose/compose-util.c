/*
 * The pieces of the engine that stand alone and are tested (and fuzzed) on
 * their own: W3C trace context headers, the circuit breaker's state
 * machine, the weighted draw, and JSON pointers for switches.
 */
#include "compose-internal.h"

#include <stdio.h>
#include <string.h>

/* ---- traceparent (https://www.w3.org/TR/trace-context/) ---- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1; /* uppercase is invalid in trace context */
}

static bool hex_bytes(const char *s, uint8_t *out, size_t n)
{
    bool nonzero = false;
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out[i] = (uint8_t)(hi << 4 | lo);
        nonzero |= out[i] != 0;
    }
    return nonzero;
}

int mxu_traceparent_parse(const char *s, size_t len, mxu_traceparent *out)
{
    /* vv-{32}-{16}-ff: 55 characters */
    if (s == NULL || len < 55 || s[2] != '-' || s[35] != '-' || s[52] != '-')
        return -1;
    if (hexval(s[0]) < 0 || hexval(s[1]) < 0)
        return -1;
    uint8_t ver = (uint8_t)(hexval(s[0]) << 4 | hexval(s[1]));
    if (ver == 0xff)
        return -1;
    /* Version 00 is exactly 55 characters; a later version may add fields
     * after a '-', which a reader of 00 ignores. */
    if (ver == 0 && len != 55)
        return -1;
    if (ver != 0 && len > 55 && s[55] != '-')
        return -1;
    mxu_traceparent tp;
    if (!hex_bytes(s + 3, tp.trace_id, 16) || !hex_bytes(s + 36, tp.parent_id, 8))
        return -1;
    if (hexval(s[53]) < 0 || hexval(s[54]) < 0)
        return -1;
    tp.flags = (uint8_t)(hexval(s[53]) << 4 | hexval(s[54]));
    *out = tp;
    return 0;
}

static void hex_out(const uint8_t *b, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
}

void mxu_traceparent_format(const mxu_traceparent *tp, char *out, size_t outlen)
{
    char buf[56];
    buf[0] = '0';
    buf[1] = '0';
    buf[2] = '-';
    hex_out(tp->trace_id, 16, buf + 3);
    buf[35] = '-';
    hex_out(tp->parent_id, 8, buf + 36);
    buf[52] = '-';
    hex_out(&tp->flags, 1, buf + 53);
    buf[55] = '\0';
    snprintf(out, outlen, "%s", buf);
}

void mxu_trace_id_hex(const uint8_t id[16], char *out, size_t outlen)
{
    char buf[33];
    hex_out(id, 16, buf);
    buf[32] = '\0';
    snprintf(out, outlen, "%s", buf);
}

/* ---- circuit breaker ---- */

bool mxu_breaker_allow(mxu_breaker *b, uint64_t now, bool *trial)
{
    *trial = false;
    switch (b->state) {
    case MXU_BREAKER_CLOSED:
        return true;
    case MXU_BREAKER_OPEN:
        if (now < b->open_until)
            return false;
        b->state = MXU_BREAKER_HALF_OPEN;
        b->trial_out = false;
        /* the first call after open_for is the trial */
        __attribute__((fallthrough));
    case MXU_BREAKER_HALF_OPEN:
        if (b->trial_out)
            return false;
        b->trial_out = true;
        *trial = true;
        return true;
    }
    return true;
}

void mxu_breaker_report(mxu_breaker *b, bool ok, bool trial, uint64_t now, uint32_t failures,
                        uint64_t open_ms)
{
    if (trial) {
        b->trial_out = false;
        if (ok) {
            b->state = MXU_BREAKER_CLOSED;
            b->fails = 0;
        } else {
            b->state = MXU_BREAKER_OPEN;
            b->open_until = now + open_ms;
        }
        return;
    }
    if (b->state != MXU_BREAKER_CLOSED)
        return; /* a call from before it opened */
    if (ok) {
        b->fails = 0;
        return;
    }
    if (++b->fails >= failures && failures > 0) {
        b->state = MXU_BREAKER_OPEN;
        b->open_until = now + open_ms;
        b->fails = 0;
    }
}

void mxu_breaker_abandon(mxu_breaker *b, bool trial)
{
    if (trial && b->state == MXU_BREAKER_HALF_OPEN)
        b->trial_out = false;
}

/* ---- weighted draw ---- */

size_t mxu_weighted_pick(const uint32_t *weights, size_t n, uint64_t draw)
{
    uint64_t acc = 0;
    for (size_t i = 0; i < n; i++) {
        acc += weights[i];
        if (draw < acc)
            return i;
    }
    return n ? n - 1 : 0;
}

/* ---- JSON pointers ---- */

json_t *mxu_json_pointer(json_t *root, const char *ptr)
{
    if (root == NULL || ptr == NULL)
        return NULL;
    if (*ptr == '\0')
        return root;
    if (*ptr != '/')
        return NULL;
    json_t *cur = root;
    const char *p = ptr + 1;
    char tok[256];
    for (;;) {
        /* one reference token, unescaped: ~1 is '/', ~0 is '~' */
        size_t n = 0;
        while (*p && *p != '/') {
            char ch = *p++;
            if (ch == '~') {
                if (*p == '0')
                    ch = '~';
                else if (*p == '1')
                    ch = '/';
                else
                    return NULL;
                p++;
            }
            if (n + 1 >= sizeof(tok))
                return NULL;
            tok[n++] = ch;
        }
        tok[n] = '\0';
        if (json_is_object(cur)) {
            cur = json_object_getn(cur, tok, n);
        } else if (json_is_array(cur)) {
            /* digits only, no leading zero (RFC 6901 section 4) */
            uint64_t idx;
            if (n == 0 || (n > 1 && tok[0] == '0') || strspn(tok, "0123456789") != n || n > 9 ||
                mxu_parse_u64(tok, &idx) < 0)
                return NULL;
            cur = json_array_get(cur, (size_t)idx);
        } else {
            return NULL;
        }
        if (cur == NULL)
            return NULL;
        if (*p == '\0')
            return cur;
        p++; /* the '/' */
    }
}

char *mxu_json_case_text(const json_t *v)
{
    if (v == NULL || json_is_object(v) || json_is_array(v))
        return NULL;
    if (json_is_string(v))
        return mxu_strndup(json_string_value(v), json_string_length(v));
    return json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
}
