/*
 * The pieces of the engine that stand alone and are tested (and fuzzed) on
 * their own: the circuit breaker's state machine, the weighted draw, and JSON pointers for
 * switches.
 */
#include "compose-internal.h"

#include <stdio.h>
#include <string.h>

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
