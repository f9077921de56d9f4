/*
 * Function logs: what instances write to stderr/stdout and send as LOG
 * frames, kept per function in <log_dir>/<function>.log (tenant default's,
 * where they were before tenants) or <log_dir>/<tenant>/<function>.log
 * (another tenant's: two tenants' `hello` must not share a file) as JSON
 * lines:
 *
 *   {"time":"2026-11-30T05:18:01.123Z","version":3,"invocation":"0000018c2f3e0001",
 *    "stream":"stderr","text":"one line"}
 *
 * A reader's cursor is a byte offset into the file, so `mxu logs -f` can poll
 * for what is new without the node keeping per-reader state. Files rotate to
 * <function>.log.1 past 8 MiB; a cursor beyond the end of the current file
 * (after a rotation) starts over at its beginning.
 *
 * Logs are diagnostics, not state a client was promised: they are written
 * without fsync.
 */
#include "sched-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define LOG_ROTATE_BYTES (8u << 20)
#define LOG_READ_WINDOW  (1u << 20) /* a reader starting at 0 sees at most the last 1 MiB */

typedef struct logfile {
    char *function; /* "name" (tenant default) or "tenant/name": the path under dir */
    int fd;
    uint64_t size;
    UT_hash_handle hh;
} logfile;

struct mxu_logstore {
    char *dir;
    logfile *files;
};

mxu_logstore *mxu_logstore_open(const char *dir)
{
    mxu_logstore *ls = mxu_calloc(1, sizeof(*ls));
    ls->dir = dir ? mxu_strdup(dir) : NULL;
    if (ls->dir) {
        mxu_err err;
        if (mxu_mkdir_p(ls->dir, 0700, &err) < 0)
            mxu_warn("logs will not be kept: %s", err.msg);
    }
    return ls;
}

void mxu_logstore_close(mxu_logstore *ls)
{
    if (ls == NULL)
        return;
    logfile *f, *tmp;
    HASH_ITER(hh, ls->files, f, tmp)
    {
        HASH_DEL(ls->files, f);
        close(f->fd);
        free(f->function);
        free(f);
    }
    free(ls->dir);
    free(ls);
}

static char *log_path(mxu_logstore *ls, const char *function, const char *suffix)
{
    return mxu_asprintf("%s/%s.log%s", ls->dir, function, suffix);
}

/* Where under the log folder `tenant`'s function's log is, without ".log";
 * fits a buffer of 128 (tenant <= 32, name <= 63). */
static void log_name(const char *tenant, const char *function, char *out, size_t outlen)
{
    if (tenant == NULL || strcmp(tenant, "default") == 0)
        snprintf(out, outlen, "%s", function);
    else
        snprintf(out, outlen, "%s/%s", tenant, function);
}

static logfile *log_get(mxu_logstore *ls, const char *tenant, const char *name)
{
    char function[128];
    log_name(tenant, name, function, sizeof(function));
    logfile *f = NULL;
    HASH_FIND_STR(ls->files, function, f);
    if (f)
        return f;
    if (strchr(function, '/')) {
        _cleanup_free_ char *tdir = mxu_path_join(ls->dir, tenant);
        mxu_err err;
        if (mxu_mkdir_p(tdir, 0700, &err) < 0) {
            mxu_warn("cannot keep logs of tenant %s: %s", tenant, err.msg);
            return NULL;
        }
    }
    _cleanup_free_ char *path = log_path(ls, function, "");
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) {
        mxu_warn("cannot open log %s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    f = mxu_calloc(1, sizeof(*f));
    f->function = mxu_strdup(function);
    f->fd = fd;
    f->size = fstat(fd, &st) == 0 ? (uint64_t)st.st_size : 0;
    HASH_ADD_KEYPTR(hh, ls->files, f->function, strlen(f->function), f);
    return f;
}

static void log_rotate(mxu_logstore *ls, logfile *f)
{
    _cleanup_free_ char *cur = log_path(ls, f->function, "");
    _cleanup_free_ char *old = log_path(ls, f->function, ".1");
    rename(cur, old);
    int fd = open(cur, O_WRONLY | O_CREAT | O_APPEND | O_TRUNC | O_CLOEXEC, 0600);
    if (fd >= 0) {
        close(f->fd);
        f->fd = fd;
        f->size = 0;
    }
}

/* jansson wants UTF-8: replace invalid bytes with U+FFFD. */
static void utf8_sanitize(const char *s, size_t n, mxu_buf *out)
{
    size_t i = 0;
    while (i < n) {
        size_t run = 1;
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x80) {
            run = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
            if (i + run > n || !mxu_utf8_valid(s + i, run)) {
                mxu_buf_puts(out, "\xEF\xBF\xBD");
                i++;
                continue;
            }
        }
        mxu_buf_append(out, s + i, run);
        i += run;
    }
}

void mxu_logstore_append(mxu_logstore *ls, const char *tenant, const char *function,
                         uint32_t version, uint64_t invocation, const char *stream,
                         const char *text, size_t len)
{
    if (ls == NULL || ls->dir == NULL || len == 0)
        return;
    logfile *f = log_get(ls, tenant, function);
    if (f == NULL)
        return;
    char ts[40], inv[24];
    mxu_format_time_ms(mxu_wall_ms(), ts, sizeof(ts));
    snprintf(inv, sizeof(inv), "%016llx", (unsigned long long)invocation);
    _cleanup_buf_ mxu_buf out = {0};
    _cleanup_buf_ mxu_buf clean = {0};
    /* One record per line of text; a trailing newline ends the last line. */
    size_t start = 0;
    while (start < len) {
        const char *nl = memchr(text + start, '\n', len - start);
        size_t end = nl ? (size_t)(nl - text) : len;
        mxu_buf_reset(&clean);
        utf8_sanitize(text + start, end - start, &clean);
        json_t *rec = json_pack("{s:s, s:i, s:s, s:s, s:s%}", "time", ts, "version",
                                (json_int_t)version, "invocation", invocation ? inv : "", "stream",
                                stream, "text", clean.data ? clean.data : "", clean.len);
        char *line = rec ? json_dumps(rec, JSON_COMPACT) : NULL;
        if (line) {
            mxu_buf_puts(&out, line);
            mxu_buf_puts(&out, "\n");
        }
        free(line);
        json_decref(rec);
        start = end + 1;
    }
    if (out.len == 0)
        return;
    if (f->size + out.len > LOG_ROTATE_BYTES)
        log_rotate(ls, f);
    ssize_t n = write(f->fd, out.data, out.len);
    if (n > 0)
        f->size += (uint64_t)n;
}

json_t *mxu_logstore_read(mxu_logstore *ls, const char *tenant, const char *function,
                          uint64_t after, size_t limit, uint64_t *next)
{
    json_t *arr = json_array();
    *next = after;
    if (ls == NULL || ls->dir == NULL)
        return arr;
    char name[128];
    log_name(tenant, function, name, sizeof(name));
    _cleanup_free_ char *path = log_path(ls, name, "");
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0)
        return arr;
    uint64_t size = (uint64_t)st.st_size;
    uint64_t from = after;
    bool skip_partial = false;
    if (after == 0 || after > size) {
        from = size > LOG_READ_WINDOW ? size - LOG_READ_WINDOW : 0;
        skip_partial = from > 0;
    }
    if (from >= size) {
        *next = size;
        return arr;
    }
    size_t want = (size_t)MXU_MIN(size - from, (uint64_t)LOG_READ_WINDOW);
    _cleanup_free_ char *buf = mxu_malloc(want + 1);
    ssize_t got = pread(fd, buf, want, (off_t)from);
    if (got <= 0)
        return arr;
    buf[got] = '\0';
    size_t pos = 0;
    if (skip_partial) {
        char *nl = memchr(buf, '\n', (size_t)got);
        pos = nl ? (size_t)(nl - buf) + 1 : (size_t)got;
    }
    /* With a cursor: the oldest `limit` records after it (a follower pages
     * forward). Without: the newest `limit` records of the window. */
    bool newest = after == 0 || after > size;
    while (pos < (size_t)got && (newest || json_array_size(arr) < limit)) {
        char *nl = memchr(buf + pos, '\n', (size_t)got - pos);
        if (nl == NULL)
            break; /* a record being written: next time */
        json_t *rec = json_loadb(buf + pos, (size_t)(nl - (buf + pos)), 0, NULL);
        if (rec)
            json_array_append_new(arr, rec);
        pos = (size_t)(nl - buf) + 1;
    }
    while (newest && json_array_size(arr) > limit)
        json_array_remove(arr, 0);
    *next = from + pos;
    return arr;
}
