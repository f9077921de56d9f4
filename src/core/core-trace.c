/*
 * W3C trace context (https://www.w3.org/TR/trace-context/): the
 * `traceparent` header that carries a trace from a client through a
 * service's steps (src/compose) and a function's svc: calls (src/sched).
 */
#include "core.h"

#include <stdio.h>
#include <string.h>

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

void mxu_traceparent_child(mxu_traceparent *tp, uint64_t span)
{
    memcpy(tp->parent_id, &span, sizeof(tp->parent_id));
    if (tp->parent_id[0] == 0)
        tp->parent_id[0] = 1; /* an all-zero parent id is invalid */
}
