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
 *  - Errors. Calls that can fail return -1 (or NULL); none of them aborts
 *    the process. A call refused for bad arguments or a limit changes
 *    nothing. Running out of memory while building the response turns the
 *    whole response into a bare 500 (logged), whatever the handler does
 *    next, so checking every call is optional.
 *  - Portability. Nothing here assumes an operating system: the same contract
 *    is served over a socket (process and sandbox executors) and over a
 *    hypercall channel inside a micro-VM with no guest OS. Use files, sockets
 *    or environment variables in your own code if you must, but they may not
 *    exist under every executor; configuration comes from mxu_config().
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
