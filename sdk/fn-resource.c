/*
 * fn-resource — the resource calls of <mxu/fn.h>: kv, blob, queue and svc
 * operations on the descriptors a manifest declares.
 *
 * Every call has the same three steps:
 *
 *   1. check the arguments here, so that a mistake in the function becomes
 *      MXU_E_INVALID / MXU_E_TOO_LARGE instead of a RES_OP the host's
 *      decoder refuses (which would get the instance killed);
 *   2. one round trip through the runtime (mxu_fn_rt_call(): RES_OP out,
 *      RES_REPLY back, other frames kept for later);
 *   3. check that an OK reply has the shape its op promises (frame.h's
 *      table) and copy what it carries into the invocation's arena, because
 *      the reply sits in the transport's input buffer, which the next read
 *      may move.
 *
 * A reply of the wrong shape is a broken host, and ends the instance like
 * any other protocol error; an error status is the function's business and
 * comes back as a negative MXU_E_* code.
 *
 * Divisions, in file order: errors and shared helpers; kv; blob (whole-object
 * calls, then the streaming writer); queue; svc.
 *
 * Platform-independent, like fn-api.c: libc string and memory calls only.
 * The steady state allocates nothing: op payloads are encoded straight into
 * the runtime's output buffer, results go into the arena, and the writer's
 * chunk buffer is kept for the next writer.
 */
#include "fn-internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* fn.h cannot include frame.h (it is not public), so the codes are spelled
 * out there; they must stay the negated protocol outcomes. */
_Static_assert(MXU_E_DENIED == -MXU_RES_DENIED, "error codes follow the protocol");
_Static_assert(MXU_E_NOT_FOUND == -MXU_RES_NOT_FOUND, "error codes follow the protocol");
_Static_assert(MXU_E_CONFLICT == -MXU_RES_CONFLICT, "error codes follow the protocol");
_Static_assert(MXU_E_TOO_LARGE == -MXU_RES_TOO_LARGE, "error codes follow the protocol");
_Static_assert(MXU_E_UNAVAILABLE == -MXU_RES_UNAVAILABLE, "error codes follow the protocol");
_Static_assert(MXU_E_DEADLINE == -MXU_RES_DEADLINE, "error codes follow the protocol");
_Static_assert(MXU_E_INVALID == -MXU_RES_INVALID, "error codes follow the protocol");
_Static_assert(MXU_E_RATE_LIMITED == -MXU_RES_RATE_LIMITED, "error codes follow the protocol");
_Static_assert(MXU_E_CALL_FAILED == -MXU_RES_CALL_FAILED, "error codes follow the protocol");
_Static_assert(MXU_FN_LIST_MAX + 1 <= MXU_RES_MAX_ARGS, "a page and its cursor fit in a reply");
_Static_assert(4 + 2 * MXU_FN_SVC_HEADERS <= MXU_RES_MAX_ARGS, "svc args fit in an op");
_Static_assert(MXU_FN_BLOB_CHUNK + 4096 < MXU_FRAME_MAX_PAYLOAD, "a chunk fits in a frame");

#define CHUNK ((size_t)MXU_FN_BLOB_CHUNK)

/* ---- errors and helpers ------------------------------------------------------------ */

const char *mxu_strerror(int code)
{
    switch (code) {
    case MXU_OK:
        return "ok";
    case MXU_E_DENIED:
        return "denied by the descriptor's declaration or access, or by a policy rule";
    case MXU_E_NOT_FOUND:
        return "not found";
    case MXU_E_CONFLICT:
        return "conflict: changed concurrently";
    case MXU_E_TOO_LARGE:
        return "too large";
    case MXU_E_UNAVAILABLE:
        return "backend unavailable";
    case MXU_E_DEADLINE:
        return "deadline exceeded";
    case MXU_E_INVALID:
        return "invalid argument";
    case MXU_E_RATE_LIMITED:
        return "rate limited";
    case MXU_E_CALL_FAILED:
        return "the called function failed";
    case MXU_E_NOMEM:
        return "out of memory";
    default:
        return "unknown error";
    }
}

const char *mxu_last_error(mxu_req *req)
{
    (void)req; /* one invocation at a time: the message is the runtime's */
    return mxu_fn_rt_g.last_error;
}

/* Record why a call failed and return its code. */
static int fail(int code, const char *fmt, ...) MXU_FN_PRINTF(2, 3);
static int fail(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(mxu_fn_rt_g.last_error, sizeof(mxu_fn_rt_g.last_error), fmt, ap);
    va_end(ap);
    return code;
}

/* A status the host sent, as a code. Statuses this SDK does not know come
 * from a newer host; "could not be done now" is the reading that cannot make
 * a function believe something happened (docs/protocol.md). */
static int from_status(uint32_t status)
{
    if (status >= MXU_RES_DENIED && status <= MXU_RES_CALL_FAILED)
        return -(int)status;
    return MXU_E_UNAVAILABLE;
}

void mxu_fn_res_begin(void)
{
    mxu_fn_rt *rt = &mxu_fn_rt_g;
    rt->last_error[0] = '\0';
    rt->writers = NULL;
}

/* The common start of every call: inside a handler, and a descriptor name
 * the wire can carry. */
static int begin(mxu_req *req, const char *desc, mxu_slice *name)
{
    const mxu_fn_rt *rt = &mxu_fn_rt_g;
    if (!req || rt->cur_id == 0)
        return fail(MXU_E_INVALID, "resource calls work only while mxu_handle() runs");
    if (!desc)
        return fail(MXU_E_INVALID, "the descriptor name is NULL");
    size_t n = strlen(desc);
    if (n == 0 || n > MXU_FN_DESC_MAX)
        return fail(MXU_E_INVALID, "'%.*s' is not a descriptor name (1 to %u bytes)",
                    n > 80 ? 80 : (int)n, desc, MXU_FN_DESC_MAX);
    *name = (mxu_slice){desc, (uint32_t)n};
    return 0;
}

/* A C string argument; `what` names it in the error. Empty is refused unless
 * `may_be_empty`; NULL reads as "" when it may be empty. */
static int str_arg(const char *s, const char *what, int may_be_empty, mxu_slice *out)
{
    if (!s && may_be_empty)
        s = "";
    if (!s)
        return fail(MXU_E_INVALID, "the %s is NULL", what);
    size_t n = strlen(s);
    if (n == 0 && !may_be_empty)
        return fail(MXU_E_INVALID, "the %s is empty", what);
    if (n > MXU_FRAME_MAX_PAYLOAD)
        return fail(MXU_E_TOO_LARGE, "the %s is %zu bytes", what, n);
    *out = (mxu_slice){s, (uint32_t)n};
    return 0;
}

/* A byte run argument. Lengths past a frame fail here; the host's own
 * limits (far lower) answer TOO_LARGE for the rest. */
static int bytes_arg(const void *p, size_t len, const char *what, mxu_slice *out)
{
    if (!p && len > 0)
        return fail(MXU_E_INVALID, "the %s is NULL with length %zu", what, len);
    if (len > MXU_FRAME_MAX_PAYLOAD)
        return fail(MXU_E_TOO_LARGE, "the %s is %zu bytes; one operation carries at most %u", what,
                    len, MXU_FRAME_MAX_PAYLOAD);
    *out = (mxu_slice){len ? p : "", (uint32_t)len};
    return 0;
}

/* The round trip. 0 with an OK reply held in *rep (copy out, then
 * mxu_fn_rt_call_done()); else the call's error code, reply released. */
static int call(mxu_slice name, uint32_t op, uint64_t n1, uint64_t n2, const mxu_slice *args,
                uint32_t nargs, mxu_res_reply_msg *rep)
{
    int rc = mxu_fn_rt_call(name, op, n1, n2, args, nargs, rep);
    if (rc == MXU_E_TOO_LARGE)
        return fail(rc, "the operation does not fit in one frame");
    if (rc == MXU_E_NOMEM)
        return fail(rc, "out of memory queueing the operation");
    if (rep->status == MXU_RES_OK)
        return 0;
    int code = from_status(rep->status);
    if (rep->message.len > 0)
        fail(code, "%.*s", (int)(rep->message.len < 4096 ? rep->message.len : 4096),
             rep->message.ptr);
    else
        fail(code, "%s", mxu_strerror(code));
    mxu_fn_rt_call_done();
    return code;
}

static void expect_vals(const mxu_res_reply_msg *rep, uint32_t n, const char *op)
{
    if (rep->nvals != n)
        mxu_fn_rt_bad_reply("RES_REPLY to %s carries %u values, not %u", op, rep->nvals, n);
}

static int has_nul(mxu_slice s)
{
    return s.len > 0 && memchr(s.ptr, '\0', s.len) != NULL;
}

/* A copy of `s` in the arena, NUL-terminated; NULL when out of memory. */
static char *arena_copy(mxu_slice s)
{
    char *p = mxu_fn_arena_alloc(&mxu_fn_rt_g.arena, (size_t)s.len + 1);
    if (p) {
        if (s.len > 0)
            memcpy(p, s.ptr, s.len);
        p[s.len] = '\0';
    }
    return p;
}

/* An op with one key and nothing in its reply but numbers (delete, stat,
 * ack...). *n1 and *n2 may be NULL. */
static int simple(mxu_req *req, const char *desc, uint32_t op, const char *opname, const char *key,
                  const char *what, uint64_t *n1, uint64_t *n2)
{
    mxu_slice name, k;
    int rc;
    if ((rc = begin(req, desc, &name)) < 0 || (rc = str_arg(key, what, 0, &k)) < 0)
        return rc;
    mxu_res_reply_msg rep;
    if ((rc = call(name, op, 0, 0, &k, 1, &rep)) < 0)
        return rc;
    expect_vals(&rep, 0, opname);
    if (n1)
        *n1 = rep.n1;
    if (n2)
        *n2 = rep.n2;
    mxu_fn_rt_call_done();
    return 0;
}

/* KV_LIST and BLOB_LIST: vals are the keys, then the next cursor; n1 is the
 * key count. */
static int list(mxu_req *req, const char *desc, uint32_t op, const char *opname, const char *prefix,
                const char *cursor, size_t limit, mxu_page *page)
{
    mxu_slice name, args[2];
    int rc;
    if ((rc = begin(req, desc, &name)) < 0 || (rc = str_arg(prefix, "prefix", 1, &args[0])) < 0 ||
        (rc = str_arg(cursor, "cursor", 1, &args[1])) < 0)
        return rc;
    if (!page)
        return fail(MXU_E_INVALID, "the page is NULL");
    if (limit == 0 || limit > MXU_FN_LIST_MAX)
        limit = MXU_FN_LIST_MAX;
    mxu_res_reply_msg rep;
    if ((rc = call(name, op, limit, 0, args, 2, &rep)) < 0)
        return rc;
    if (rep.n1 > limit || rep.nvals != rep.n1 + 1)
        mxu_fn_rt_bad_reply("RES_REPLY to %s: %llu keys in %u values for a limit of %zu", opname,
                            (unsigned long long)rep.n1, rep.nvals, limit);
    for (uint32_t i = 0; i < rep.nvals; i++)
        if (has_nul(rep.vals[i]))
            mxu_fn_rt_bad_reply("RES_REPLY to %s: a key or cursor holds a NUL byte", opname);

    size_t count = (size_t)rep.n1;
    const char **keys = mxu_fn_arena_alloc(&mxu_fn_rt_g.arena, (count + 1) * sizeof(*keys));
    const char *next = keys ? arena_copy(rep.vals[count]) : NULL;
    for (size_t i = 0; next && i < count; i++)
        if (!(keys[i] = arena_copy(rep.vals[i])))
            next = NULL;
    mxu_fn_rt_call_done();
    if (!next)
        return fail(MXU_E_NOMEM, "out of memory for a page of %zu keys", count);
    keys[count] = NULL;
    page->keys = keys;
    page->count = count;
    page->next = next;
    return 0;
}

/* ---- kv ---------------------------------------------------------------------------- */

int mxu_kv_get(mxu_req *req, const char *desc, const char *key, const void **val, size_t *len,
               uint64_t *rev)
{
    mxu_slice name, k;
    int rc;
    if ((rc = begin(req, desc, &name)) < 0 || (rc = str_arg(key, "key", 0, &k)) < 0)
        return rc;
    if (!val)
        return fail(MXU_E_INVALID, "val is NULL");
    mxu_res_reply_msg rep;
    if ((rc = call(name, MXU_RES_KV_GET, 0, 0, &k, 1, &rep)) < 0)
        return rc;
    expect_vals(&rep, 1, "KV_GET");
    char *v = arena_copy(rep.vals[0]);
    size_t n = rep.vals[0].len;
    uint64_t r = rep.n1;
    mxu_fn_rt_call_done();
    if (!v)
        return fail(MXU_E_NOMEM, "out of memory for a %zu-byte value", n);
    *val = v;
    if (len)
        *len = n;
    if (rev)
        *rev = r;
    return 0;
}

/* KV_PUT and KV_CAS: key and value in, the new revision out. */
static int kv_write(mxu_req *req, const char *desc, uint32_t op, const char *key, uint64_t expected,
                    const void *val, size_t len, uint64_t *rev)
{
    mxu_slice name, args[2];
    int rc;
    if ((rc = begin(req, desc, &name)) < 0 || (rc = str_arg(key, "key", 0, &args[0])) < 0 ||
        (rc = bytes_arg(val, len, "value", &args[1])) < 0)
        return rc;
    mxu_res_reply_msg rep;
    if ((rc = call(name, op, expected, 0, args, 2, &rep)) < 0)
        return rc;
    expect_vals(&rep, 0, op == MXU_RES_KV_PUT ? "KV_PUT" : "KV_CAS");
    if (rev)
        *rev = rep.n1;
    mxu_fn_rt_call_done();
    return 0;
}

int mxu_kv_put(mxu_req *req, const char *desc, const char *key, const void *val, size_t len,
               uint64_t *rev)
{
    return kv_write(req, desc, MXU_RES_KV_PUT, key, 0, val, len, rev);
}

int mxu_kv_cas(mxu_req *req, const char *desc, const char *key, uint64_t expected, const void *val,
               size_t len, uint64_t *new_rev)
{
    return kv_write(req, desc, MXU_RES_KV_CAS, key, expected, val, len, new_rev);
}

int mxu_kv_delete(mxu_req *req, const char *desc, const char *key)
{
    return simple(req, desc, MXU_RES_KV_DELETE, "KV_DELETE", key, "key", NULL, NULL);
}

int mxu_kv_list(mxu_req *req, const char *desc, const char *prefix, const char *cursor,
                size_t limit, mxu_kv_page *page)
{
    return list(req, desc, MXU_RES_KV_LIST, "KV_LIST", prefix, cursor, limit, page);
}

/* ---- blob -------------------------------------------------------------------------- */

/* One BLOB_READ of at most CHUNK bytes. On success, *chunk is the data (in
 * the transport's buffer: copy it, then mxu_fn_rt_call_done()), *size the
 * object's size and *version its version (0: the host cannot tell). */
static int blob_read_chunk(mxu_slice name, mxu_slice key, uint64_t offset, size_t want,
                           mxu_slice *chunk, uint64_t *size, uint64_t *version)
{
    mxu_res_reply_msg rep;
    int rc = call(name, MXU_RES_BLOB_READ, offset, want, &key, 1, &rep);
    if (rc < 0)
        return rc;
    expect_vals(&rep, 1, "BLOB_READ");
    if (rep.vals[0].len > want)
        mxu_fn_rt_bad_reply("RES_REPLY to BLOB_READ carries %u bytes, %zu were asked for",
                            rep.vals[0].len, want);
    *chunk = rep.vals[0];
    *size = rep.n1;
    *version = rep.n2;
    return 0;
}

int mxu_blob_read(mxu_req *req, const char *desc, const char *key, uint64_t offset, size_t len,
                  const void **data, size_t *got, uint64_t *size)
{
    mxu_slice name, k, chunk;
    int rc;
    if ((rc = begin(req, desc, &name)) < 0 || (rc = str_arg(key, "key", 0, &k)) < 0)
        return rc;
    if (!data || !got)
        return fail(MXU_E_INVALID, "data or got is NULL");

    /* The first chunk also tells the object's size, hence how much the
     * whole read gives: allocate that once, then fill it chunk by chunk. */
    uint64_t obj, version;
    if ((rc = blob_read_chunk(name, k, offset, len < CHUNK ? len : CHUNK, &chunk, &obj, &version)) <
        0)
        return rc;
    uint64_t left = obj > offset ? obj - offset : 0;
    uint64_t total = (uint64_t)len < left ? (uint64_t)len : left;
    if (chunk.len > total)
        mxu_fn_rt_bad_reply("RES_REPLY to BLOB_READ carries %u bytes past the object's end",
                            chunk.len);
    char *buf = total < SIZE_MAX ? mxu_fn_arena_alloc(&mxu_fn_rt_g.arena, (size_t)total + 1) : NULL;
    if (buf && chunk.len > 0)
        memcpy(buf, chunk.ptr, chunk.len);
    size_t done = chunk.len;
    mxu_fn_rt_call_done();
    if (!buf)
        return fail(MXU_E_NOMEM, "out of memory for %llu bytes of object '%s'",
                    (unsigned long long)total, key);

    while (done < total) {
        size_t want = total - done < CHUNK ? (size_t)(total - done) : CHUNK;
        uint64_t now, now_version;
        if ((rc = blob_read_chunk(name, k, offset + done, want, &chunk, &now, &now_version)) < 0)
            return rc;
        if (now != obj || now_version != version) {
            mxu_fn_rt_call_done();
            return fail(MXU_E_CONFLICT,
                        "object '%s' changed while being read (%llu bytes, now %llu)", key,
                        (unsigned long long)obj, (unsigned long long)now);
        }
        if (chunk.len > 0)
            memcpy(buf + done, chunk.ptr, chunk.len);
        done += chunk.len;
        mxu_fn_rt_call_done();
        if (chunk.len == 0)
            break; /* the host gave no more: a short read, as the size allows */
    }
    buf[done] = '\0';
    *data = buf;
    *got = done;
    if (size)
        *size = obj;
    return 0;
}

/* One BLOB_WRITE chunk (n <= CHUNK). */
static int blob_chunk(mxu_slice name, mxu_slice key, uint64_t offset, unsigned flags,
                      const void *data, size_t n)
{
    mxu_slice args[2] = {key, {n ? data : "", (uint32_t)n}};
    mxu_res_reply_msg rep;
    int rc = call(name, MXU_RES_BLOB_WRITE, offset, flags, args, 2, &rep);
    if (rc < 0)
        return rc;
    expect_vals(&rep, 0, "BLOB_WRITE");
    mxu_fn_rt_call_done();
    return 0;
}

static int writer_conflict(mxu_slice name, mxu_slice key);

int mxu_blob_write(mxu_req *req, const char *desc, const char *key, const void *data, size_t len)
{
    mxu_slice name, k;
    int rc;
    if ((rc = begin(req, desc, &name)) < 0 || (rc = str_arg(key, "key", 0, &k)) < 0 ||
        (rc = writer_conflict(name, k)) < 0)
        return rc;
    if (!data && len > 0)
        return fail(MXU_E_INVALID, "data is NULL with length %zu", len);
    const uint8_t *p = data;
    size_t off = 0;
    do { /* at least once: an empty object is one empty FIRST|LAST chunk */
        size_t n = len - off < CHUNK ? len - off : CHUNK;
        unsigned flags =
            (off == 0 ? MXU_RES_BLOB_FIRST : 0) | (off + n == len ? MXU_RES_BLOB_LAST : 0);
        if ((rc = blob_chunk(name, k, off, flags, p ? p + off : NULL, n)) < 0)
            return rc;
        off += n;
    } while (off < len);
    return 0;
}

int mxu_blob_stat(mxu_req *req, const char *desc, const char *key, uint64_t *size,
                  uint64_t *mtime_ms)
{
    return simple(req, desc, MXU_RES_BLOB_STAT, "BLOB_STAT", key, "key", size, mtime_ms);
}

int mxu_blob_list(mxu_req *req, const char *desc, const char *prefix, const char *cursor,
                  size_t limit, mxu_blob_page *page)
{
    return list(req, desc, MXU_RES_BLOB_LIST, "BLOB_LIST", prefix, cursor, limit, page);
}

int mxu_blob_delete(mxu_req *req, const char *desc, const char *key)
{
    return simple(req, desc, MXU_RES_BLOB_DELETE, "BLOB_DELETE", key, "key", NULL, NULL);
}

/* ---- blob: the streaming writer ------------------------------------------------------
 * The writer holds back the chunk it is filling until more data arrives (or
 * close), because only then does it know whether that chunk is the LAST.
 * Full chunks of a large write go straight from the caller's memory. The
 * struct lives in the arena; its chunk buffer is malloc'd and handed to the
 * next writer when this one is done, so a function that streams one object
 * per invocation allocates it once. */

enum writer_state { W_OPEN, W_FAILED, W_DONE };

struct mxu_blob_writer {
    struct mxu_blob_writer *next; /* in the runtime's list while not done */
    enum writer_state state;
    int error; /* W_FAILED: what every later call returns */
    char desc[MXU_FN_DESC_MAX + 1];
    mxu_slice key;   /* copied into the arena after the struct */
    uint64_t offset; /* bytes sent so far */
    uint8_t *buf;    /* the chunk being filled: len of cap bytes */
    size_t len, cap;
};

static mxu_slice writer_desc(const mxu_blob_writer *w)
{
    return (mxu_slice){w->desc, (uint32_t)strlen(w->desc)};
}

/* Give the buffer back (kept for the next writer) and leave the list. */
static void writer_finish(mxu_blob_writer *w, enum writer_state state)
{
    mxu_fn_rt *rt = &mxu_fn_rt_g;
    if (w->buf) {
        if (!rt->spare_chunk) {
            rt->spare_chunk = w->buf;
            rt->spare_chunk_cap = w->cap;
        } else {
            free(w->buf);
        }
        w->buf = NULL;
        w->cap = w->len = 0;
    }
    if (w->state == W_OPEN)
        for (mxu_blob_writer **l = &rt->writers; *l; l = &(*l)->next)
            if (*l == w) {
                *l = w->next;
                break;
            }
    w->state = state;
}

static int writer_fail(mxu_blob_writer *w, int rc)
{
    writer_finish(w, W_FAILED);
    w->error = rc;
    return rc;
}

/* Whether `w` may be used now; its code if not. */
static int writer_usable(mxu_blob_writer *w)
{
    if (!w)
        return fail(MXU_E_INVALID, "the writer is NULL");
    if (mxu_fn_rt_g.cur_id == 0)
        return fail(MXU_E_INVALID, "resource calls work only while mxu_handle() runs");
    if (w->state == W_DONE)
        return fail(MXU_E_INVALID, "the writer is already closed or aborted");
    if (w->state == W_FAILED)
        return w->error;
    return 0;
}

static int writer_send(mxu_blob_writer *w, const void *data, size_t n, unsigned flags)
{
    /* Only the final chunk can be empty, so nothing was sent while the
     * offset is 0. */
    if (w->offset == 0)
        flags |= MXU_RES_BLOB_FIRST;
    int rc = blob_chunk(writer_desc(w), w->key, w->offset, flags, data, n);
    if (rc < 0)
        return writer_fail(w, rc);
    w->offset += n;
    return 0;
}

/* The host keeps one upload per key for each invocation (the invocation is
 * the upload's owner), so a second upload of a key while a writer of it is
 * open would start the first one over under its feet: refuse it here. */
static int writer_conflict(mxu_slice name, mxu_slice key)
{
    for (const mxu_blob_writer *w = mxu_fn_rt_g.writers; w; w = w->next)
        if (w->key.len == key.len && memcmp(w->key.ptr, key.ptr, key.len) == 0 &&
            strlen(w->desc) == name.len && memcmp(w->desc, name.ptr, name.len) == 0)
            return fail(MXU_E_CONFLICT,
                        "a writer of '%.*s' on '%s' is already open in this invocation; close "
                        "or abort it first",
                        key.len > 200 ? 200 : (int)key.len, key.ptr, w->desc);
    return 0;
}

mxu_blob_writer *mxu_blob_writer_open(mxu_req *req, const char *desc, const char *key)
{
    mxu_fn_rt *rt = &mxu_fn_rt_g;
    mxu_slice name = {0}, k = {0};
    if (begin(req, desc, &name) < 0 || str_arg(key, "key", 0, &k) < 0 ||
        writer_conflict(name, k) < 0)
        return NULL;
    if (k.len > MXU_FRAME_MAX_PAYLOAD - CHUNK - 4096) {
        fail(MXU_E_TOO_LARGE, "the key is %u bytes", k.len);
        return NULL;
    }
    mxu_blob_writer *w = mxu_fn_arena_alloc(&rt->arena, sizeof(*w) + k.len + 1);
    if (!w) {
        fail(MXU_E_NOMEM, "out of memory opening a writer");
        return NULL;
    }
    memset(w, 0, sizeof(*w));
    memcpy(w->desc, name.ptr, name.len);
    w->desc[name.len] = '\0';
    char *kc = (char *)(w + 1);
    memcpy(kc, k.ptr, k.len + 1);
    w->key = (mxu_slice){kc, k.len};
    w->buf = rt->spare_chunk;
    w->cap = rt->spare_chunk_cap;
    rt->spare_chunk = NULL;
    rt->spare_chunk_cap = 0;
    w->state = W_OPEN;
    w->next = rt->writers;
    rt->writers = w;
    return w;
}

int mxu_blob_writer_write(mxu_blob_writer *w, const void *data, size_t len)
{
    int rc = writer_usable(w);
    if (rc < 0)
        return rc;
    if (!data && len > 0)
        return fail(MXU_E_INVALID, "data is NULL with length %zu", len);
    const uint8_t *p = data;
    while (len > 0) {
        /* A full chunk with more data behind it is not the last: send. */
        if (w->len == CHUNK) {
            if ((rc = writer_send(w, w->buf, CHUNK, 0)) < 0)
                return rc;
            w->len = 0;
        }
        if (w->len == 0 && len > CHUNK) {
            if ((rc = writer_send(w, p, CHUNK, 0)) < 0)
                return rc;
            p += CHUNK;
            len -= CHUNK;
            continue;
        }
        size_t n = CHUNK - w->len < len ? CHUNK - w->len : len;
        if (w->cap - w->len < n) {
            /* Grow by doubling up to one chunk: small objects stay small. */
            size_t cap = w->cap ? w->cap : 64u << 10;
            while (cap < w->len + n)
                cap *= 2;
            if (cap > CHUNK)
                cap = CHUNK;
            uint8_t *nb = realloc(w->buf, cap);
            if (!nb)
                return writer_fail(w, fail(MXU_E_NOMEM, "out of memory buffering a chunk"));
            w->buf = nb;
            w->cap = cap;
        }
        memcpy(w->buf + w->len, p, n);
        w->len += n;
        p += n;
        len -= n;
    }
    return 0;
}

int mxu_blob_writer_close(mxu_blob_writer *w)
{
    int rc = writer_usable(w);
    if (rc < 0) {
        if (w && w->state == W_FAILED)
            w->state = W_DONE;
        return rc;
    }
    rc = writer_send(w, w->len ? w->buf : NULL, w->len, MXU_RES_BLOB_LAST);
    writer_finish(w, W_DONE);
    return rc;
}

void mxu_blob_writer_abort(mxu_blob_writer *w)
{
    if (w && w->state != W_DONE)
        writer_finish(w, W_DONE);
}

void mxu_fn_res_end(void)
{
    mxu_fn_rt *rt = &mxu_fn_rt_g;
    /* Writers left open are abandoned; the host drops their partial
     * uploads when the invocation ends (docs/protocol.md). */
    while (rt->writers)
        writer_finish(rt->writers, W_DONE);
}

/* ---- queue ----------------------------------------------------------------------------- */

int mxu_queue_publish(mxu_req *req, const char *desc, const void *msg, size_t len, uint64_t *id)
{
    mxu_slice name, m;
    int rc;
    if ((rc = begin(req, desc, &name)) < 0 || (rc = bytes_arg(msg, len, "message", &m)) < 0)
        return rc;
    mxu_res_reply_msg rep;
    if ((rc = call(name, MXU_RES_QUEUE_PUBLISH, 0, 0, &m, 1, &rep)) < 0)
        return rc;
    expect_vals(&rep, 0, "QUEUE_PUBLISH");
    if (id)
        *id = rep.n1;
    mxu_fn_rt_call_done();
    return 0;
}

int mxu_queue_consume(mxu_req *req, const char *desc, uint64_t lease_ms, mxu_queue_msg *out)
{
    mxu_slice name;
    int rc;
    if ((rc = begin(req, desc, &name)) < 0)
        return rc;
    if (!out)
        return fail(MXU_E_INVALID, "out is NULL");
    if (lease_ms == 0)
        return fail(MXU_E_INVALID, "a lease of 0 ms would hand the message straight back");
    mxu_res_reply_msg rep;
    if ((rc = call(name, MXU_RES_QUEUE_CONSUME, lease_ms, 0, NULL, 0, &rep)) < 0)
        return rc;
    expect_vals(&rep, 2, "QUEUE_CONSUME");
    if (rep.vals[1].len == 0 || has_nul(rep.vals[1]))
        mxu_fn_rt_bad_reply("RES_REPLY to QUEUE_CONSUME: the receipt is empty or holds a NUL");
    char *data = arena_copy(rep.vals[0]);
    char *receipt = data ? arena_copy(rep.vals[1]) : NULL;
    size_t n = rep.vals[0].len;
    uint64_t attempts = rep.n1, id = rep.n2;
    mxu_fn_rt_call_done();
    if (!receipt)
        return fail(MXU_E_NOMEM, "out of memory for a %zu-byte message (it stays leased)", n);
    *out = (mxu_queue_msg){data, n, receipt, attempts, id};
    return 0;
}

int mxu_queue_ack(mxu_req *req, const char *desc, const char *receipt)
{
    return simple(req, desc, MXU_RES_QUEUE_ACK, "QUEUE_ACK", receipt, "receipt", NULL, NULL);
}

/* ---- svc ------------------------------------------------------------------------------- */

/* No CR, LF or other control byte but tab: what the callee's INVOKE may
 * carry in a path or query, checked here so a bad one is the caller's
 * MXU_E_INVALID. */
static int clean_line(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return 0;
    }
    return 1;
}

/* RFC 9110 field value, as the frame decoder checks it. */
static int field_value_ok(mxu_slice s)
{
    return clean_line(s.ptr, s.len);
}

int mxu_svc_call_ex(mxu_req *req, const char *desc, const char *method, const char *path_and_query,
                    const char *const *hdr_names, const char *const *hdr_values, size_t nhdr,
                    const void *body, size_t len, mxu_svc_reply *out)
{
    mxu_slice name, args[4 + 2 * MXU_FN_SVC_HEADERS];
    int rc;
    if ((rc = begin(req, desc, &name)) < 0 || (rc = str_arg(method, "method", 0, &args[0])) < 0 ||
        (rc = bytes_arg(body, len, "body", &args[3])) < 0)
        return rc;
    if (!out)
        return fail(MXU_E_INVALID, "out is NULL");
    if (!mxu_fn_is_token(args[0].ptr, args[0].len))
        return fail(MXU_E_INVALID, "'%s' is not an HTTP method", method);
    const char *pq = path_and_query ? path_and_query : "/";
    size_t pqlen = strlen(pq);
    if (pq[0] != '/' || !clean_line(pq, pqlen) || pqlen > MXU_FRAME_MAX_PAYLOAD)
        return fail(MXU_E_INVALID, "the path must start with '/' and hold no control bytes");
    const char *q = memchr(pq, '?', pqlen);
    size_t plen = q ? (size_t)(q - pq) : pqlen;
    args[1] = (mxu_slice){pq, (uint32_t)plen};
    args[2] = q ? (mxu_slice){q + 1, (uint32_t)(pqlen - plen - 1)} : (mxu_slice){"", 0};
    if (nhdr > MXU_FN_SVC_HEADERS)
        return fail(MXU_E_TOO_LARGE, "%zu request headers; at most %u", nhdr, MXU_FN_SVC_HEADERS);
    if (nhdr > 0 && (!hdr_names || !hdr_values))
        return fail(MXU_E_INVALID, "header arrays are NULL with %zu headers", nhdr);
    for (size_t i = 0; i < nhdr; i++) {
        const char *hn = hdr_names[i], *hv = hdr_values[i];
        size_t nl = hn ? strlen(hn) : 0, vl = hv ? strlen(hv) : 0;
        if (!hn || !hv || nl + vl > MXU_FN_HEADER_MAX || !mxu_fn_header_ok(hn, nl, hv, vl))
            return fail(MXU_E_INVALID, "request header %zu ('%s') is not allowed", i,
                        hn ? hn : "(null)");
        args[4 + 2 * i] = (mxu_slice){hn, (uint32_t)nl};
        args[5 + 2 * i] = (mxu_slice){hv, (uint32_t)vl};
    }

    mxu_res_reply_msg rep;
    if ((rc = call(name, MXU_RES_SVC_CALL, 0, 0, args, (uint32_t)(4 + 2 * nhdr), &rep)) < 0)
        return rc;
    if (rep.nvals % 2 != 1 || rep.n1 < 100 || rep.n1 > 599)
        mxu_fn_rt_bad_reply("RES_REPLY to SVC_CALL: status %llu with %u values",
                            (unsigned long long)rep.n1, rep.nvals);
    size_t nh = (rep.nvals - 1) / 2;
    for (size_t i = 0; i < nh; i++) {
        mxu_slice hn = rep.vals[1 + 2 * i], hv = rep.vals[2 + 2 * i];
        if (!mxu_fn_is_token(hn.ptr, hn.len) || !field_value_ok(hv))
            mxu_fn_rt_bad_reply("RES_REPLY to SVC_CALL: response header %zu is malformed", i);
    }

    mxu_fn_arena *a = &mxu_fn_rt_g.arena;
    char *b = arena_copy(rep.vals[0]);
    const char **names = b ? mxu_fn_arena_alloc(a, (nh + 1) * sizeof(*names)) : NULL;
    const char **values = names ? mxu_fn_arena_alloc(a, (nh + 1) * sizeof(*values)) : NULL;
    int ok = values != NULL;
    for (size_t i = 0; ok && i < nh; i++) {
        names[i] = arena_copy(rep.vals[1 + 2 * i]);
        values[i] = arena_copy(rep.vals[2 + 2 * i]);
        ok = names[i] && values[i];
    }
    size_t blen = rep.vals[0].len;
    int status = (int)rep.n1;
    mxu_fn_rt_call_done();
    if (!ok)
        return fail(MXU_E_NOMEM, "out of memory for the callee's %zu-byte answer", blen);
    names[nh] = values[nh] = NULL;
    out->status = status;
    out->body = b;
    out->len = blen;
    out->headers.count = nh;
    out->headers.names = names;
    out->headers.values = values;
    return 0;
}

int mxu_svc_call(mxu_req *req, const char *desc, const char *method, const char *path_and_query,
                 const void *body, size_t len, mxu_svc_reply *out)
{
    return mxu_svc_call_ex(req, desc, method, path_and_query, NULL, NULL, 0, body, len, out);
}
