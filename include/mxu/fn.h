/*
 * mxu/fn.h — the mxu function SDK for C. This is the only header a function
 * author includes; docs/sdk.md walks through it with examples.
 *
 * A function is one callback:
 *
 *     #include <mxu/fn.h>
 *
 *     int mxu_handle(mxu_req *req, mxu_res *res)
 *     {
 *         mxu_res_set_body(res, "hello\n", 6);
 *         return 0;
 *     }
 *
 * mxu builds it at deploy time against libmxufn.a, which provides main(): the
 * SDK talks to the node over the channel protocol (docs/protocol.md), calls
 * mxu_init() once if the function defines it, then calls mxu_handle() once
 * per request, one request at a time, in arrival order.
 *
 * Ground rules that hold for every call below:
 *
 *  - Single-threaded. Call the SDK only from the thread that runs mxu_init()
 *    or mxu_handle(), and only while that call is running. The SDK takes no
 *    locks.
 *  - Memory. Strings the SDK returns are NUL-terminated and owned by the SDK;
 *    never free them. Anything tied to a request (its fields, query values,
 *    mxu_alloc() memory) lives until mxu_handle() returns and is then reused:
 *    copy what must outlive the invocation. Data you pass in (header values,
 *    body bytes) is copied at the call, so you may free or reuse it at once.
 *  - Errors. Request and response calls that can fail return -1 (or NULL);
 *    none of them aborts the process. A call refused for bad arguments or a
 *    limit changes nothing. Running out of memory while building the
 *    response turns the whole response into a bare 500 (logged), whatever
 *    the handler does next, so checking every call is optional. Resource
 *    calls (kv, blob, queue, svc) return 0 or a negative MXU_E_* code that
 *    says what went wrong, so the function can act on it; see "resources".
 *  - Portability. Nothing here assumes an operating system: the same contract
 *    is served over a socket (process and sandbox executors) and over a
 *    hypercall channel inside a micro-VM with no guest OS. Use files, sockets
 *    or environment variables in your own code if you must, but they may not
 *    exist under every executor; configuration comes from mxu_config(), and
 *    stores, queues and other functions are reached through the resource
 *    calls, by the names the manifest gives them.
 */
#ifndef MXU_FN_H
#define MXU_FN_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Public SDK symbols keep default visibility even when the SDK or the function
 * is compiled with -fvisibility=hidden: the SDK's main() must find the
 * function's mxu_handle() and mxu_init(). */
#if defined(__GNUC__)
#define MXU_FN_API             __attribute__((visibility("default")))
#define MXU_FN_PRINTF(fmt, va) __attribute__((format(printf, fmt, va)))
#else
#define MXU_FN_API
#define MXU_FN_PRINTF(fmt, va)
#endif

#define MXU_FN_SDK_VERSION "0.1.0"

/* Limits the SDK enforces so that every response fits in one frame. */
#define MXU_FN_BODY_MAX   (64u * 1024u * 1024u) /* response body bytes */
#define MXU_FN_HEADER_MAX (256u * 1024u)        /* response header bytes, all together */
#define MXU_FN_LOG_MAX    (16u * 1024u)         /* one log message; longer ones are cut */

/* One request being handled (opaque). Valid until mxu_handle() returns. */
typedef struct mxu_req mxu_req;
/* The response being built for it (opaque). Valid until mxu_handle() returns. */
typedef struct mxu_res mxu_res;

/* ==== what the function defines ============================================ */

/* Required. Handle one request: read from `req`, build the answer in `res`.
 * Return 0 on success. A non-zero return means "this invocation failed": if
 * the handler has not set a status with mxu_res_status(), the response is a
 * 500 (headers and body written so far are kept, so an error message written
 * to the body reaches the caller); if it has set one, that status stands. An
 * unset status with a 0 return is a 200. */
MXU_FN_API int mxu_handle(mxu_req *req, mxu_res *res);

/* Optional. Runs once, after configuration is available and before the first
 * mxu_handle(): open what every invocation shares, read mxu_config(). Return
 * 0 when ready; a non-zero return reports a fatal error to the node and the
 * instance exits (the node reports the cold start as failed). mxu_log() works
 * here; the request calls do not. The SDK supplies an empty default. */
MXU_FN_API int mxu_init(void);

/* ==== the request ========================================================== */

/* The HTTP method, e.g. "GET" or "POST". Never NULL. */
MXU_FN_API const char *mxu_req_method(const mxu_req *req);

/* The path below the function's own URL: for a call to /fn/NAME/a/b it is
 * "/a/b"; for /fn/NAME it is "/". Still percent-encoded as the client sent
 * it. Never NULL. */
MXU_FN_API const char *mxu_req_path(const mxu_req *req);

/* The raw query string, without the '?' and still percent-encoded; "" when
 * the URL had none. Never NULL. */
MXU_FN_API const char *mxu_req_query(const mxu_req *req);

/* The value of query parameter `name` (compared after percent-decoding),
 * percent-decoded and with '+' read as a space; a parameter given without
 * '=' has the value "". When the name appears more than once, the first one
 * wins. Returns NULL when the parameter is absent, or when the per-invocation
 * arena cannot hold the decoded value (out of memory). The string lives in
 * the invocation's arena (see mxu_alloc()). A value containing "%00" is cut
 * at that point, because the result is a C string. */
MXU_FN_API const char *mxu_req_query_param(mxu_req *req, const char *name);

/* The value of request header `name`, compared case-insensitively (ASCII);
 * the first one when the header appears more than once. NULL when absent. */
MXU_FN_API const char *mxu_req_header(const mxu_req *req, const char *name);

/* The number of request headers, for iteration with mxu_req_header_at(). */
MXU_FN_API size_t mxu_req_header_count(const mxu_req *req);

/* Header number `i` (0-based, in the order the client sent them): sets
 * `*name` and `*value` and returns 0; returns -1 and leaves them alone when
 * `i` is out of range. Names are spelled as the client sent them.
 *
 *     for (size_t i = 0; i < mxu_req_header_count(req); i++)
 *         if (mxu_req_header_at(req, i, &name, &value) == 0) ... */
MXU_FN_API int mxu_req_header_at(const mxu_req *req, size_t i, const char **name,
                                 const char **value);

/* The request body and, in `*len` (may be NULL), its length in bytes. Never
 * NULL: an empty body is "" with length 0. The bytes are followed by a NUL
 * that is not counted in the length, so a text body can be used as a C string
 * directly, but a body may itself contain NUL bytes: trust `*len`. Read-only. */
MXU_FN_API const void *mxu_req_body(const mxu_req *req, size_t *len);

/* Milliseconds left before the node gives up on this invocation (its timeout,
 * or the caller's tighter deadline), measured from when the request arrived;
 * 0 once it has passed. Plan long work around it: the node stops waiting at
 * that moment and may kill the instance. */
MXU_FN_API int64_t mxu_deadline_ms(const mxu_req *req);

/* ==== per-invocation memory ================================================ */

/* Scratch memory for this invocation: `n` bytes aligned for any type,
 * uninitialised, released all at once when mxu_handle() returns (never pass
 * it to free()). Fast: a pointer bump in memory reused from earlier
 * invocations. Returns NULL when out of memory. mxu_alloc(req, 0) returns a
 * valid, unique pointer that must not be dereferenced. */
MXU_FN_API void *mxu_alloc(mxu_req *req, size_t n);

/* ==== the response ========================================================= */

/* Set the HTTP status (100..599). Returns 0, or -1 when out of range (the
 * status stays as it was). The last call wins. */
MXU_FN_API int mxu_res_status(mxu_res *res, int status);

/* Add a response header; repeated names produce repeated header lines, in
 * call order. Both strings are copied. Returns -1, and adds nothing, when
 * `name` is not an HTTP token (empty, or with spaces, ':', control bytes...),
 * when `value` holds a control byte other than tab (CR and LF especially: no
 * header injection), when `name` is Content-Length, Transfer-Encoding or
 * Connection (the node frames the HTTP response itself), or when all
 * headers together would pass MXU_FN_HEADER_MAX bytes; also when out of
 * memory, which turns the response into a 500. */
MXU_FN_API int mxu_res_header(mxu_res *res, const char *name, const char *value);

/* Replace the body with a copy of `len` bytes at `data` (`data` may be NULL
 * when `len` is 0, which empties the body). Returns 0; -1 when `data` is NULL
 * with `len` > 0 or `len` exceeds MXU_FN_BODY_MAX (the body is unchanged), or
 * when memory runs out (the response becomes a 500). */
MXU_FN_API int mxu_res_set_body(mxu_res *res, const void *data, size_t len);

/* Append `len` bytes at `data` to the body. Same errors as mxu_res_set_body(),
 * counting the body written so far. */
MXU_FN_API int mxu_res_write(mxu_res *res, const void *data, size_t len);

/* Append printf-style formatted text to the body (no NUL is appended).
 * Returns the number of bytes appended, or -1 on a formatting error or the
 * errors of mxu_res_write(). */
MXU_FN_API int mxu_res_printf(mxu_res *res, const char *fmt, ...) MXU_FN_PRINTF(2, 3);

/* The same with a va_list. */
MXU_FN_API int mxu_res_vprintf(mxu_res *res, const char *fmt, va_list ap) MXU_FN_PRINTF(2, 0);

/* Answer an error the way the node answers its own: status `status` (400 ..
 * 599), `Content-Type: application/json`, and as the whole body (what was
 * written before is dropped)
 *
 *     {"error": {"code": "CODE", "message": "MESSAGE"}}
 *
 * with the printf-formatted message escaped for JSON: a message may quote
 * what the client sent, whatever bytes it holds (bytes that are not UTF-8
 * become U+FFFD; the message is cut at 1 KiB). `code` is a short
 * machine-readable word of your choosing ("invalid_json"); it is escaped
 * too. Returns 0, so a handler can end with `return mxu_res_error(...)` and
 * the status stands; -1 (nothing changed) for a status outside 400..599 or a
 * NULL code or format. */
MXU_FN_API int mxu_res_error(mxu_res *res, int status, const char *code, const char *fmt, ...)
    MXU_FN_PRINTF(4, 5);

/* ==== logging ============================================================== */

enum mxu_fn_log_level { MXU_DEBUG = 0, MXU_INFO = 1, MXU_WARN = 2, MXU_ERROR = 3 };

/* Log one message at `level` (MXU_DEBUG .. MXU_ERROR; other values are
 * treated as MXU_ERROR). It becomes a LOG frame that the node files under the
 * current invocation (or under the instance when called from mxu_init()) and
 * timestamps on arrival. Trailing newlines are dropped; a message may hold
 * several lines. Messages longer than MXU_FN_LOG_MAX bytes are cut. Each call
 * sends its message at once rather than batching it with responses, so that
 * the lines written just before a crash or a timeout are not lost: that costs
 * a write per call, so keep logging off hot paths. Never fails visibly: a
 * message that cannot be sent (out of memory, node gone) is dropped. */
MXU_FN_API void mxu_log(int level, const char *fmt, ...) MXU_FN_PRINTF(2, 3);

/* The same with a va_list. */
MXU_FN_API void mxu_vlog(int level, const char *fmt, va_list ap) MXU_FN_PRINTF(2, 0);

/* ==== resources ============================================================
 *
 * A function reaches key-value stores, blob stores, queues and other
 * functions only through the *descriptors* its manifest declares, by their
 * local name:
 *
 *     resources:
 *       orders: {uri: "kv:orders", access: read-write}
 *       thumbs: {uri: "blob:thumbnails", access: write}
 *       jobs:   {uri: "queue:jobs", access: publish}
 *       resize: {uri: "svc:resize@prod"}
 *
 *     mxu_kv_put(req, "orders", "o-17", json, len, NULL);
 *
 * The function never learns where a resource lives: the node binds each
 * descriptor to a backend, and may move it while the function runs.
 *
 * How every resource call behaves:
 *
 *  - It blocks until the node has answered, then returns 0 or one of the
 *    negative MXU_E_* codes below. Nothing is retried behind your back: the
 *    code says whether retrying can help (UNAVAILABLE, RATE_LIMITED,
 *    CONFLICT after re-reading) or not (DENIED, INVALID, TOO_LARGE).
 *  - A failed call leaves its output parameters untouched and changed
 *    nothing, with two exceptions: after MXU_E_DEADLINE or
 *    MXU_E_UNAVAILABLE a write may or may not have happened (the backend
 *    stopped answering; read back, or write with mxu_kv_cas(), when it
 *    matters), and where a call says so (MXU_E_NOMEM after the node
 *    answered).
 *  - The node applies the invocation's deadline to the call: a call still
 *    waiting for a backend when the deadline passes returns MXU_E_DEADLINE.
 *  - Everything a call returns (values, keys, bodies, receipts) is copied
 *    into the invocation's arena (see mxu_alloc()): it stays valid until
 *    mxu_handle() returns, and is then reused. Byte results are followed by
 *    a NUL that is not counted in their length, so text can be used as a C
 *    string; trust the length, since the bytes may contain NULs.
 *  - Everything you pass in is sent at the call; you may reuse it at once.
 *  - Calls work only while mxu_handle() runs, with its `req`; from
 *    mxu_init() they return MXU_E_INVALID.
 *  - Keys are C strings of 1 to 512 bytes (the node enforces the limit and
 *    any per-descriptor ones from the manifest: `max_value`,
 *    `ops_per_second`).
 *  - `desc` is the descriptor's local name: 1 to MXU_FN_DESC_MAX bytes. A
 *    name the manifest does not declare, or an operation its `access` does
 *    not allow, gives MXU_E_DENIED (and a policy log line on the node).
 *
 * A call costs one round trip to the node (about 12 us on the same machine
 * over the process executor's socket, plus the backend's own time), so do
 * more per call where the API allows it (list pages, whole-object writes).
 * While a call waits, requests the node sends meanwhile wait for this one,
 * so a slow backend delays this instance's later requests too. */

/* What a resource call returns on failure. The values are fixed (they are
 * the negated outcome codes of the channel protocol, docs/protocol.md). */
enum mxu_fn_error {
    MXU_OK = 0,
    MXU_E_DENIED = -1,       /* undeclared, beyond its declared access, or a policy rule */
    MXU_E_NOT_FOUND = -2,    /* no such key / object / message / callee */
    MXU_E_CONFLICT = -3,     /* CAS lost; object changed while read; key's writer already open */
    MXU_E_TOO_LARGE = -4,    /* key, value, message, body or header count over a limit */
    MXU_E_UNAVAILABLE = -5,  /* backend down or unreachable: retrying later may help */
    MXU_E_DEADLINE = -6,     /* the invocation's deadline passed */
    MXU_E_INVALID = -7,      /* malformed arguments, or an operation the kind lacks */
    MXU_E_RATE_LIMITED = -8, /* the descriptor's operations-per-second budget is spent; svc:
                                the link's rate or concurrency limit, or the callee tenant's
                                monthly quota (the message names it) */
    MXU_E_CALL_FAILED = -9,  /* svc: the callee crashed, timed out or could not start */
    MXU_E_NOMEM = -32,       /* the SDK ran out of memory */
};

#define MXU_FN_DESC_MAX    63u        /* bytes in a descriptor name */
#define MXU_FN_LIST_MAX    63u        /* keys in one list page */
#define MXU_FN_BLOB_CHUNK  (1u << 20) /* bytes per blob chunk on the wire */
#define MXU_FN_SVC_HEADERS 30u        /* request headers in one svc call */

/* A short English description of an MXU_E_* code ("not found", ...); "ok"
 * for 0 and "unknown error" for anything else. A static string. */
MXU_FN_API const char *mxu_strerror(int code);

/* The message that came with the last resource call of this invocation that
 * failed: the node's own words when it gave any ("key 'o-17' is 700 KiB,
 * the limit is 512 KiB"), else mxu_strerror() of the code. "" when no call
 * has failed in this invocation. Never NULL. Owned by the SDK; valid until
 * the next resource call or until mxu_handle() returns. */
MXU_FN_API const char *mxu_last_error(mxu_req *req);

/* ---- kv: small values by key, with revisions ------------------------------
 * Every key has a revision: a number > 0 that grows with every write of the
 * key (never reused while the key exists). Use it with mxu_kv_cas() for
 * read-modify-write without lost updates. Access: get and list need `read`,
 * put, delete and cas need `write` (`read-write` has both). */

/* Read the value of `key`. On success sets `*val` (never NULL: an empty
 * value is "" with length 0) and, when not NULL, `*len` and `*rev` (the
 * key's current revision). The value lives in the arena.
 * Errors: MXU_E_NOT_FOUND when the key does not exist; DENIED, INVALID,
 * UNAVAILABLE, DEADLINE, RATE_LIMITED; MXU_E_NOMEM when the value does not
 * fit in memory. */
MXU_FN_API int mxu_kv_get(mxu_req *req, const char *desc, const char *key, const void **val,
                          size_t *len, uint64_t *rev);

/* Write `len` bytes at `val` (NULL is fine when `len` is 0) as the value of
 * `key`, creating or replacing it unconditionally. Sets `*rev` (may be NULL)
 * to the new revision. Durable when it returns 0.
 * Errors: MXU_E_TOO_LARGE when key or value is over the limit (the
 * descriptor's `max_value`, 1 MiB by default); DENIED, INVALID, UNAVAILABLE,
 * DEADLINE, RATE_LIMITED. */
MXU_FN_API int mxu_kv_put(mxu_req *req, const char *desc, const char *key, const void *val,
                          size_t len, uint64_t *rev);

/* Delete `key`. Errors: MXU_E_NOT_FOUND when it did not exist (nothing
 * changed; treat as success if you only want it gone); DENIED, INVALID,
 * UNAVAILABLE, DEADLINE, RATE_LIMITED. */
MXU_FN_API int mxu_kv_delete(mxu_req *req, const char *desc, const char *key);

/* Compare-and-set: write `val` as the value of `key` only if the key's
 * revision is still `expected`; `expected` 0 means "only if the key does not
 * exist" (create). Sets `*new_rev` (may be NULL) to the new revision.
 * Errors: MXU_E_CONFLICT when the revision is not `expected` (someone wrote
 * in between, or the key exists / does not exist): read again and retry;
 * TOO_LARGE, DENIED, INVALID, UNAVAILABLE, DEADLINE, RATE_LIMITED.
 * docs/sdk.md has a complete retry loop. */
MXU_FN_API int mxu_kv_cas(mxu_req *req, const char *desc, const char *key, uint64_t expected,
                          const void *val, size_t len, uint64_t *new_rev);

/* One page of a listing, filled by mxu_kv_list() and mxu_blob_list(). All of
 * it lives in the arena. */
typedef struct mxu_page {
    const char *const *keys; /* `count` NUL-terminated keys in byte order; keys[count] is NULL */
    size_t count;
    const char *next; /* the cursor for the next page; "" when this page is the last */
} mxu_page;
typedef mxu_page mxu_kv_page;
typedef mxu_page mxu_blob_page;

/* List keys that start with `prefix` (NULL or "" for all), in byte order,
 * starting after `cursor` (NULL or "" for the beginning; else a `next` from
 * an earlier page), at most `limit` of them (0 or more than
 * MXU_FN_LIST_MAX means MXU_FN_LIST_MAX). A page may hold fewer keys than
 * `limit` even when more follow: only `page->next` being "" says the listing
 * is complete. Keys written or deleted while you page may or may not show.
 *
 *     mxu_kv_page pg = {0};
 *     do {
 *         if (mxu_kv_list(req, "orders", "o-", pg.next, 0, &pg) < 0)
 *             break;
 *         for (size_t i = 0; i < pg.count; i++) use(pg.keys[i]);
 *     } while (*pg.next);
 *
 * Errors: DENIED, INVALID (a malformed cursor), UNAVAILABLE, DEADLINE,
 * RATE_LIMITED, MXU_E_NOMEM. */
MXU_FN_API int mxu_kv_list(mxu_req *req, const char *desc, const char *prefix, const char *cursor,
                           size_t limit, mxu_kv_page *page);

/* ---- blob: objects, read and written in chunks -----------------------------
 * Objects may be far larger than a frame (up to the descriptor's
 * `max_value`, 1 GiB by default): the SDK moves them in chunks of at most
 * MXU_FN_BLOB_CHUNK bytes, one round trip each. Keys are like kv keys, plus
 * '/' as a separator ("img/a.png"); no "." or ".." segments, no leading '/'.
 * Access: read and stat and list need `read`; write and delete need `write`. */

/* Read up to `len` bytes of object `key` from byte `offset` on. On success
 * sets `*data` (in the arena, never NULL) and `*got` to the bytes read:
 * fewer than `len` only at the end of the object, 0 when `offset` is the
 * object's size (an offset past the end is MXU_E_INVALID). `*size` (may be
 * NULL) gets the object's whole size, so
 * `mxu_blob_read(req, d, key, 0, SIZE_MAX, &p, &n, NULL)` reads a whole
 * object. A read longer than MXU_FN_BLOB_CHUNK takes several round trips; if
 * the object is replaced meanwhile (even by one of the same size) the call
 * fails with MXU_E_CONFLICT rather than return a mix of two versions: read
 * again. Errors: MXU_E_NOT_FOUND when there is no such object; CONFLICT;
 * INVALID (also: offset past the end); DENIED, UNAVAILABLE, DEADLINE,
 * RATE_LIMITED; MXU_E_NOMEM when the bytes do not fit in memory (read in
 * ranges instead). */
MXU_FN_API int mxu_blob_read(mxu_req *req, const char *desc, const char *key, uint64_t offset,
                             size_t len, const void **data, size_t *got, uint64_t *size);

/* Create or replace object `key` with `len` bytes at `data` (NULL is fine
 * when `len` is 0). The bytes go in chunks; the object appears, atomically
 * replacing any older one, only once the last chunk is stored, so readers
 * never see half of it. On any error the object is unchanged. Other
 * invocations (other instances, other functions) may write the same key at
 * the same time: each upload is their own, each object appears whole, and
 * the last one stored wins.
 * Errors: MXU_E_TOO_LARGE over the descriptor's `max_value`; MXU_E_CONFLICT
 * when a writer of the same descriptor and key is open in this invocation
 * (nothing is sent); DENIED, INVALID, UNAVAILABLE, DEADLINE, RATE_LIMITED. */
MXU_FN_API int mxu_blob_write(mxu_req *req, const char *desc, const char *key, const void *data,
                              size_t len);

/* A streaming writer, for objects produced piece by piece or larger than
 * memory. It holds at most one chunk (MXU_FN_BLOB_CHUNK bytes) at a time and
 * sends each full chunk as soon as more data follows it.
 *
 *     mxu_blob_writer *w = mxu_blob_writer_open(req, "thumbs", "big.bin");
 *     if (!w) ... mxu_last_error(req) says why
 *     while (more) if (mxu_blob_writer_write(w, piece, n) < 0) break;
 *     int rc = mxu_blob_writer_close(w);  // 0: the object is there
 *
 * Like mxu_blob_write(), the object appears only when close succeeds. A
 * writer neither closed nor aborted when mxu_handle() returns is aborted.
 * Opening sends nothing, so an undeclared descriptor or a missing `write`
 * access shows up at the first write that sends a chunk, or at close. One
 * invocation may keep writers of different keys open at once, but only one
 * of each descriptor and key. */
typedef struct mxu_blob_writer mxu_blob_writer;

/* Start writing object `key`. Returns the writer (in the arena; never free
 * it), or NULL when the arguments are invalid (NULL/empty key, bad `desc`,
 * outside mxu_handle()), when a writer of the same descriptor and key is
 * already open in this invocation (MXU_E_CONFLICT: close or abort it first),
 * or memory runs out; mxu_last_error() says which. */
MXU_FN_API mxu_blob_writer *mxu_blob_writer_open(mxu_req *req, const char *desc, const char *key);

/* Append `len` bytes at `data`. Returns 0, or the error of the chunk that
 * failed (the codes of mxu_blob_write(), or MXU_E_NOMEM); after an error the
 * writer is dead: every later write returns the same code, and close returns
 * it too (the object is unchanged). MXU_E_INVALID for a NULL writer, NULL
 * data with len > 0, or a writer already closed or aborted. */
MXU_FN_API int mxu_blob_writer_write(mxu_blob_writer *w, const void *data, size_t len);

/* Send what is left and commit: returns 0 once the object is stored, or the
 * writer's error. The writer is finished either way: do not use it again
 * (calls on it return MXU_E_INVALID until mxu_handle() returns). */
MXU_FN_API int mxu_blob_writer_close(mxu_blob_writer *w);

/* Give up: nothing more is sent and the object stays as it was (chunks
 * already sent are dropped by the node when the invocation ends, or when a
 * new upload of the same key starts). The writer is finished, as after
 * close. NULL is ignored. */
MXU_FN_API void mxu_blob_writer_abort(mxu_blob_writer *w);

/* The size in bytes and last-modified time (milliseconds since the Unix
 * epoch) of object `key`; either pointer may be NULL.
 * Errors: MXU_E_NOT_FOUND; DENIED, INVALID, UNAVAILABLE, DEADLINE,
 * RATE_LIMITED. */
MXU_FN_API int mxu_blob_stat(mxu_req *req, const char *desc, const char *key, uint64_t *size,
                             uint64_t *mtime_ms);

/* List object keys, exactly like mxu_kv_list(). */
MXU_FN_API int mxu_blob_list(mxu_req *req, const char *desc, const char *prefix, const char *cursor,
                             size_t limit, mxu_blob_page *page);

/* Delete object `key`. Errors: MXU_E_NOT_FOUND when there was none; DENIED,
 * INVALID, UNAVAILABLE, DEADLINE, RATE_LIMITED. */
MXU_FN_API int mxu_blob_delete(mxu_req *req, const char *desc, const char *key);

/* ---- queue: durable messages with leases ------------------------------------
 * Publish appends a message. Consume leases the oldest visible one: it is
 * hidden from other consumers for `lease_ms`, and comes back (with its
 * attempts count grown) unless it is acked in time: at-least-once delivery,
 * so make handling a message idempotent. Access: publish needs `publish`;
 * consume and ack need `consume` (`publish-consume` has both). */

/* Append `len` bytes at `msg` (NULL is fine when `len` is 0). Durable when it
 * returns 0; `*id` (may be NULL) gets the message's id.
 * Errors: MXU_E_TOO_LARGE over `max_value` (256 KiB by default); DENIED,
 * INVALID, UNAVAILABLE, DEADLINE, RATE_LIMITED. */
MXU_FN_API int mxu_queue_publish(mxu_req *req, const char *desc, const void *msg, size_t len,
                                 uint64_t *id);

/* A leased message. All of it lives in the arena. */
typedef struct mxu_queue_msg {
    const void *data; /* the message, followed by an uncounted NUL */
    size_t len;
    const char *receipt; /* pass to mxu_queue_ack() */
    uint64_t attempts;   /* 1 the first time it is consumed, then 2, ... */
    uint64_t id;         /* as mxu_queue_publish() returned it */
} mxu_queue_msg;

/* Lease the oldest visible message for `lease_ms` milliseconds (≥ 1; the
 * node may cap it) and fill `*out`. Returns at once: it does not wait for a
 * message to arrive.
 * Errors: MXU_E_NOT_FOUND when no message is visible (the queue is empty or
 * all are leased); DENIED, INVALID, UNAVAILABLE, DEADLINE, RATE_LIMITED,
 * MXU_E_NOMEM (the message stays leased and comes back after the lease). */
MXU_FN_API int mxu_queue_consume(mxu_req *req, const char *desc, uint64_t lease_ms,
                                 mxu_queue_msg *out);

/* Acknowledge a consumed message: it is deleted for good.
 * Errors: MXU_E_NOT_FOUND when the receipt is no longer valid (the lease ran
 * out, so the message may be delivered again, or it was acked already);
 * DENIED, INVALID, UNAVAILABLE, DEADLINE, RATE_LIMITED. */
MXU_FN_API int mxu_queue_ack(mxu_req *req, const char *desc, const char *receipt);

/* ---- svc: call another function ----------------------------------------------
 * An HTTP-shaped request to the function a `svc:` descriptor names
 * (`resize: {uri: "svc:resize@prod"}`), run synchronously: the callee gets
 * this invocation's remaining deadline (or its own timeout, if shorter), and
 * the call returns when it has answered. */

/* The callee's answer. All of it lives in the arena. */
typedef struct mxu_svc_reply {
    int status;       /* the callee's HTTP status, 100..599 */
    const void *body; /* followed by an uncounted NUL */
    size_t len;
    struct {
        size_t count;
        const char *const *names;  /* as the callee spelled them, in its order; */
        const char *const *values; /* names[count] and values[count] are NULL */
    } headers;
} mxu_svc_reply;

/* Call the function behind `desc` with `method` ("GET", "POST", ...),
 * `path_and_query` (the callee's sub-path and query, as in a URL:
 * "/thumb?w=100"; NULL means "/"), and `len` bytes of body at `body` (NULL is
 * fine when `len` is 0); fill `*out` with its answer.
 *
 * Returns 0 whenever the callee answered, whatever its status: a 404 or 500
 * from the callee is out->status, not an error. The errors are about
 * reaching it: MXU_E_NOT_FOUND when the callee (or its version/alias) does
 * not exist; MXU_E_CALL_FAILED when it crashed, failed to start or answered
 * with a broken response; MXU_E_DEADLINE when it did not answer in time;
 * MXU_E_TOO_LARGE when the body or headers are over a limit; DENIED,
 * INVALID (bad method, path or header), UNAVAILABLE, RATE_LIMITED;
 * MXU_E_NOMEM when the answer does not fit in memory (the callee did run).
 * mxu_last_error() has the node's account of what happened. The path and
 * query are passed on as written (percent-encode them yourself). */
MXU_FN_API int mxu_svc_call(mxu_req *req, const char *desc, const char *method,
                            const char *path_and_query, const void *body, size_t len,
                            mxu_svc_reply *out);

/* The same with request headers: `nhdr` (at most MXU_FN_SVC_HEADERS) pairs
 * from `hdr_names` / `hdr_values`. Names must be HTTP tokens and values must
 * not hold control bytes other than tab; Content-Length, Transfer-Encoding
 * and Connection are refused (MXU_E_INVALID), since the node frames the
 * request itself. */
MXU_FN_API int mxu_svc_call_ex(mxu_req *req, const char *desc, const char *method,
                               const char *path_and_query, const char *const *hdr_names,
                               const char *const *hdr_values, size_t nhdr, const void *body,
                               size_t len, mxu_svc_reply *out);

/* ==== configuration and identity =========================================== */

/* The value of configuration entry `name` from the manifest's `env:` section,
 * as the node sent it when the instance started; names are case-sensitive.
 * NULL when not set (or called before the instance is initialised). Valid for
 * the life of the instance. Read configuration here, not with getenv(): under
 * the micro-VM executor there is no environment. */
MXU_FN_API const char *mxu_config(const char *name);

/* The function's name as deployed ("" before initialisation); valid for the
 * life of the instance. */
MXU_FN_API const char *mxu_function_name(void);

/* The function version this instance runs (1, 2, ...; 0 before
 * initialisation). */
MXU_FN_API uint32_t mxu_function_version(void);

#ifdef __cplusplus
}
#endif

#endif
