/*
 * core — the small pieces every mxu subsystem shares: errors with messages,
 * growable buffers, scope-exit cleanup, logging, clocks, parsing of the units
 * people write in manifests (sizes, durations, names) and file helpers that
 * make writes durable.
 *
 * Errors follow one convention everywhere (crun's error_handling.md): a
 * function that can fail takes an `mxu_err *` last, returns -1 (or NULL) on
 * failure after filling it with an errno-style code and a message a person can
 * read, and returns 0 (or a value) on success without touching it. Codes are
 * mapped to HTTP statuses only at the API edge.
 */
#ifndef MXU_CORE_H
#define MXU_CORE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#define MXU_VERSION_STRING "0.1.0"

#define MXU_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define MXU_UNUSED(x)    ((void)(x))
#define MXU_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define MXU_MIN(a, b)    ((a) < (b) ? (a) : (b))
#define MXU_MAX(a, b)    ((a) > (b) ? (a) : (b))

/* ---- errors ------------------------------------------------------------ */

typedef struct mxu_err {
    int code;       /* errno value (EINVAL, ENOENT, ...); 0 = no error */
    char msg[1024]; /* one line, no trailing newline */
} mxu_err;

/* Fill `err` (may be NULL) and return -1, so callers can `return mxu_err_set(...)`. */
int mxu_err_set(mxu_err *err, int code, const char *fmt, ...) MXU_PRINTF(3, 4);
/* Like mxu_err_set, appending ": strerror(errno_value)". */
int mxu_err_sys(mxu_err *err, int errno_value, const char *fmt, ...) MXU_PRINTF(3, 4);
/* Prefix an existing message: "prefix: old message". Returns -1. */
int mxu_err_prefix(mxu_err *err, const char *fmt, ...) MXU_PRINTF(2, 3);
void mxu_err_clear(mxu_err *err);

/* ---- scope-exit cleanup -------------------------------------------------- */

static inline void mxu_freep(void *p)
{
    free(*(void **)p);
}
static inline void mxu_closep(int *fd)
{
    if (*fd >= 0)
        close(*fd);
}
#define _cleanup_free_  __attribute__((cleanup(mxu_freep)))
#define _cleanup_close_ __attribute__((cleanup(mxu_closep)))

/* Hand ownership out of a cleanup-guarded variable. */
static inline void *mxu_steal_ptr(void *pp)
{
    void **p = (void **)pp;
    void *v = *p;
    *p = NULL;
    return v;
}
#define steal_pointer(pp) mxu_steal_ptr(pp)
static inline int mxu_steal_fd(int *fd)
{
    int v = *fd;
    *fd = -1;
    return v;
}

/* Allocation that never returns NULL: mxu treats out-of-memory as fatal,
 * like h2o and Redis, because every caller would only abort anyway. */
void *mxu_malloc(size_t n);
void *mxu_calloc(size_t n, size_t size);
void *mxu_realloc(void *p, size_t n);
char *mxu_strdup(const char *s);
char *mxu_strndup(const char *s, size_t n);
char *mxu_asprintf(const char *fmt, ...) MXU_PRINTF(1, 2);

/* ---- buffers ------------------------------------------------------------- */

/* A growable byte buffer. Always NUL-terminated past `len` once allocated, so
 * text can be used as a C string. Zero-initialised is a valid empty buffer. */
typedef struct mxu_buf {
    char *data;
    size_t len;
    size_t cap;
} mxu_buf;

void mxu_buf_reserve(mxu_buf *b, size_t extra);
void mxu_buf_append(mxu_buf *b, const void *data, size_t n);
void mxu_buf_puts(mxu_buf *b, const char *s);
void mxu_buf_printf(mxu_buf *b, const char *fmt, ...) MXU_PRINTF(2, 3);
void mxu_buf_vprintf(mxu_buf *b, const char *fmt, va_list ap);
/* Drop the first n bytes. */
void mxu_buf_consume(mxu_buf *b, size_t n);
void mxu_buf_reset(mxu_buf *b); /* len = 0, keeps memory */
void mxu_buf_free(mxu_buf *b);
/* Take the bytes out: returns data (caller frees), leaves b empty. */
char *mxu_buf_steal(mxu_buf *b, size_t *len);
static inline void mxu_buf_freep(mxu_buf *b)
{
    mxu_buf_free(b);
}
#define _cleanup_buf_ __attribute__((cleanup(mxu_buf_freep)))

/* ---- logging ------------------------------------------------------------- */

enum mxu_log_level { MXU_LOG_DEBUG, MXU_LOG_INFO, MXU_LOG_WARN, MXU_LOG_ERROR };
void mxu_log_set_level(enum mxu_log_level level);
void mxu_log(enum mxu_log_level level, const char *fmt, ...) MXU_PRINTF(2, 3);
#define mxu_debug(...) mxu_log(MXU_LOG_DEBUG, __VA_ARGS__)
#define mxu_info(...)  mxu_log(MXU_LOG_INFO, __VA_ARGS__)
#define mxu_warn(...)  mxu_log(MXU_LOG_WARN, __VA_ARGS__)
#define mxu_error(...) mxu_log(MXU_LOG_ERROR, __VA_ARGS__)

/* ---- clocks -------------------------------------------------------------- */

uint64_t mxu_now_ns(void);  /* CLOCK_MONOTONIC */
uint64_t mxu_wall_ms(void); /* CLOCK_REALTIME, ms since the epoch */
/* "2026-11-30T05:18:01.123Z" into out (>= 32 bytes). */
void mxu_format_time_ms(uint64_t wall_ms, char *out, size_t outlen);

/* ---- parsing what people write ------------------------------------------ */

/* "128Mi", "1Gi", "512M", "64k", "1048576" (bytes) → bytes. Binary and
 * decimal suffixes: Ki Mi Gi Ti / K M G T (k accepted). */
int mxu_parse_size(const char *s, uint64_t *out, mxu_err *err);
/* "30s", "500ms", "5m", "1h", "250us", bare number = seconds → milliseconds. */
int mxu_parse_duration_ms(const char *s, uint64_t *out, mxu_err *err);
/* Non-negative decimal integer that fits in uint64; no sign, no spaces. */
int mxu_parse_u64(const char *s, uint64_t *out);
/* A rate as people write it: "100/s", "6000/m", "50/h" (also /sec /min
 * /hour) → count per period. Count 1 .. 1,000,000,000; the message says what
 * is wrong and gives an example. */
int mxu_parse_rate(const char *s, uint64_t *count, uint64_t *period_ms, mxu_err *err);
/* "100/s" back (out >= 32 bytes). */
void mxu_format_rate(uint64_t count, uint64_t period_ms, char *out, size_t outlen);
/* Human forms for messages and tables: "128 MiB", "1.5 s". */
void mxu_format_size(uint64_t bytes, char *out, size_t outlen);
void mxu_format_duration_ms(uint64_t ms, char *out, size_t outlen);

bool mxu_utf8_valid(const char *s, size_t n);
/* Function, alias and resource names: [a-z][a-z0-9_-]{0,62}, no trailing '-'. */
bool mxu_name_valid(const char *s);

/* ---- files ---------------------------------------------------------------- */

int mxu_mkdir_p(const char *path, unsigned mode, mxu_err *err);
/* write() all of it, retrying after EINTR and short writes; -1 with errno. */
int mxu_write_all(int fd, const void *data, size_t len);
/* The same at an offset (pwrite); and pread of exactly len bytes (EIO if
 * the file ends first). */
int mxu_pwrite_all(int fd, const void *data, size_t len, uint64_t off);
int mxu_pread_all(int fd, void *out, size_t len, uint64_t off);
/* Write a whole file durably: temp file, fsync, rename, fsync directory. */
int mxu_write_file_atomic(const char *path, const void *data, size_t len, unsigned mode,
                          mxu_err *err);
int mxu_read_file(const char *path, size_t max, mxu_buf *out, mxu_err *err);
/* Remove a tree; missing is not an error. Does not follow symlinks. */
int mxu_rm_rf(const char *path, mxu_err *err);
int mxu_fsync_dir(const char *path, mxu_err *err);
/* Join two path parts with exactly one '/'. Caller frees. */
char *mxu_path_join(const char *a, const char *b);

/* ---- trace context (core-trace.c) ---- */

/* W3C trace context: "00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>".
 * Lowercase hex; an all-zero id, version ff, or a version-00 header with
 * more after it is invalid; a later version is read for its first four
 * fields. 0, or -1 if the header is not valid (then start a new trace). */
typedef struct mxu_traceparent {
    uint8_t trace_id[16];
    uint8_t parent_id[8];
    uint8_t flags;
} mxu_traceparent;
int mxu_traceparent_parse(const char *s, size_t len, mxu_traceparent *out);
/* The header's value (out >= 56 bytes, NUL-terminated). */
void mxu_traceparent_format(const mxu_traceparent *tp, char *out, size_t outlen);
/* 32 hex digits (out >= 33 bytes). */
void mxu_trace_id_hex(const uint8_t id[16], char *out, size_t outlen);
/* The same trace and flags under a new parent id (a span of one's own) made
 * from `span` (random bits; never all zero). */
void mxu_traceparent_child(mxu_traceparent *tp, uint64_t span);

#endif
