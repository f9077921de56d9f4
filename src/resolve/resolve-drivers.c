/*
 * The backend drivers compiled into mxu, and what they all need: checking
 * keys the same way, and answering an operation with a message a person can
 * act on ("no key 'x' in kv:orders").
 *
 * Adding a backend is one file with its `const mxu_driver` and one line in
 * the table below; the resolver finds drivers only through mxu_driver_find.
 */
#include "resolve-internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---- helpers ------------------------------------------------------------------------------- */

void mxu_res_display(const char *resource, char *out, size_t outlen)
{
    /* tenant/kind/name → kind:name; anything else is shown as it is. */
    const char *s1 = resource ? strchr(resource, '/') : NULL;
    const char *s2 = s1 ? strchr(s1 + 1, '/') : NULL;
    if (s2 == NULL) {
        snprintf(out, outlen, "%s", resource ? resource : "?");
        return;
    }
    snprintf(out, outlen, "%.*s:%s", (int)(s2 - s1 - 1), s1 + 1, s2 + 1);
}

void mxu_res_quote(const char *s, char *out, size_t outlen)
{
    size_t o = 0;
    if (outlen == 0)
        return;
    for (size_t i = 0; s && s[i] != '\0'; i++) {
        unsigned char c = (unsigned char)s[i];
        if (i >= 80 || o + 8 >= outlen) {
            snprintf(out + o, outlen - o, "...");
            return;
        }
        if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'')
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", c);
    }
    out[o] = '\0';
}

const char *mxu_res_key_problem(const char *key, int blob, int allow_empty)
{
    if (key == NULL)
        return "is missing";
    size_t n = strlen(key);
    if (n == 0)
        return allow_empty ? NULL : "is empty";
    if (n > (blob ? MXU_RES_BLOB_KEY_MAX : MXU_RES_KEY_MAX))
        return blob ? "is longer than 1024 bytes" : "is longer than 512 bytes";
    if (!mxu_utf8_valid(key, n))
        return "is not UTF-8";
    if (!blob)
        return NULL;
    /* Blob keys become paths: every '/'-separated segment must be a plain
     * file name, so that no key can reach outside its resource's folder or
     * name two objects the same way ("a//b" and "a/b"). */
    if (key[0] == '/')
        return "starts with '/'";
    const char *seg = key;
    for (;;) {
        const char *end = strchr(seg, '/');
        size_t len = end ? (size_t)(end - seg) : strlen(seg);
        if (len == 0)
            return "has an empty segment (\"//\" or a trailing '/')";
        if ((len == 1 && seg[0] == '.') || (len == 2 && seg[0] == '.' && seg[1] == '.'))
            return "has a '.' or '..' segment";
        if (len > 255)
            return "has a segment longer than 255 bytes";
        if (len >= 5 && memcmp(seg, ".mxu-", 5) == 0)
            return "has a segment starting with '.mxu-' (reserved)";
        if (end == NULL)
            break;
        seg = end + 1;
    }
    return NULL;
}

void mxu_res_fail(mxu_res_cb cb, void *ud, enum mxu_res_status st, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    mxu_res_result r = {.status = st, .message = msg};
    cb(ud, &r);
}

int mxu_res_check_key(const char *key, int blob, int allow_empty, const char *what,
                      const char *display, mxu_res_cb cb, void *ud)
{
    const char *why = mxu_res_key_problem(key, blob, allow_empty);
    if (why == NULL)
        return 0;
    char q[128];
    /* Never echo bytes that are not UTF-8; mxu_res_quote escapes them. */
    mxu_res_quote(key, q, sizeof(q));
    mxu_res_fail(cb, ud, MXU_RES_INVALID, "bad %s '%s' for %s: it %s", what, q, display, why);
    return -1;
}

void mxu_res_prefix_end(const char *prefix, char *out)
{
    size_t n = strlen(prefix);
    memcpy(out, prefix, n + 1);
    while (n > 0 && (unsigned char)out[n - 1] == 0xff)
        out[--n] = '\0';
    if (n > 0)
        out[n - 1] = (char)((unsigned char)out[n - 1] + 1);
}

size_t mxu_res_list_limit(size_t limit)
{
    if (limit == 0)
        return MXU_RES_LIST_DEFAULT;
    return limit > MXU_RES_LIST_MAX ? MXU_RES_LIST_MAX : limit;
}

/* ---- the table ------------------------------------------------------------------------------ */

static const mxu_driver *const drivers[] = {
    &mxu_driver_kv_embedded,    &mxu_driver_kv_redis,    &mxu_driver_blob_fs,
    &mxu_driver_queue_embedded, &mxu_driver_queue_redis,
};

const mxu_driver *mxu_driver_find(const char *kind, const char *scheme)
{
    if (kind == NULL || scheme == NULL)
        return NULL;
    for (size_t i = 0; i < MXU_ARRAY_LEN(drivers); i++)
        if (strcmp(drivers[i]->kind, kind) == 0 && strcmp(drivers[i]->scheme, scheme) == 0)
            return drivers[i];
    return NULL;
}
