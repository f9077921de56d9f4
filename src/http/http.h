/*
 * http — mxu's HTTP/1.1 server on libuv, parsing with http-parser.
 *
 * Keep-alive and pipelining: a connection parses one request, hands it to the
 * handler and stops parsing until that request is answered, so responses go
 * out in request order; bytes that arrived meanwhile are kept and parsed next.
 * Limits (header bytes, body bytes) answer 431 / 413 and close; malformed
 * requests answer 400 and close; a client that is idle, or too slow to send
 * its headers or body, is disconnected (408 if a request had begun).
 *
 * The HTTP layer knows nothing of functions or the API: it calls one handler
 * per request. Every request handed to the handler must be answered by exactly
 * one mxu_http_respond*() call, possibly much later (after an invocation). If
 * the client went away in the meantime, the response is dropped and the
 * request freed; the on-abort callback, if set, lets the caller stop work early.
 */
#ifndef MXU_HTTP_H
#define MXU_HTTP_H

#include "core/core.h"

#include <uv.h>

typedef struct mxu_http_server mxu_http_server;
typedef struct mxu_http_req mxu_http_req;

typedef struct mxu_http_limits {
    size_t max_header_bytes;  /* request line + headers; default 32 KiB; 431 above */
    size_t max_body_bytes;    /* default 6 MiB; 413 above (checked on Content-Length
                                 before reading, and while reading chunked bodies) */
    uint64_t idle_timeout_ms; /* keep-alive idle between requests; default 60 s */
    uint64_t read_timeout_ms; /* a started request must be fully received within
                                 this; default 30 s; 408 and close */
    size_t max_connections;   /* further connections are accepted and closed at once;
                                 default 10000 */
    /* Requests whose path starts with this prefix (e.g. "/v1/") may carry up
     * to max_large_body_bytes instead: uploads to an API can be larger than
     * invocations without letting every request be. NULL/0: no exception. */
    const char *large_body_prefix;
    size_t max_large_body_bytes;
} mxu_http_limits;

/* Fill with the defaults above. mxu_http_server_start() also takes NULL for
 * all defaults, and a zero field means that field's default. */
void mxu_http_limits_default(mxu_http_limits *l);

/* Called once per complete request. */
typedef void (*mxu_http_handler)(mxu_http_req *req, void *ud);

/* Bind and listen on addr:port (IPv4 or IPv6 literal). port 0 picks a free
 * port; mxu_http_server_port() tells which. `limits` may be NULL. On failure
 * (bad address, port in use: err->code EADDRINUSE) nothing is left to close. */
int mxu_http_server_start(uv_loop_t *loop, const char *addr, int port,
                          const mxu_http_limits *limits, mxu_http_handler handler, void *ud,
                          mxu_http_server **out, mxu_err *err);
int mxu_http_server_port(const mxu_http_server *srv);
/* Stop accepting new connections; existing ones keep being served, but stop
 * being kept alive (responses get "Connection: close"). */
void mxu_http_server_stop_accepting(mxu_http_server *srv);
/* Requests handed out and not yet answered. */
size_t mxu_http_server_pending(const mxu_http_server *srv);
/* Close every connection and the listener, then free the server and call
 * done(ud) (from the loop) once all handles are closed. Requests not yet
 * answered stay valid until answered; their responses are dropped. */
void mxu_http_server_close(mxu_http_server *srv, void (*done)(void *ud), void *ud);

/* ---- the request --------------------------------------------------------- */

const char *mxu_http_req_method(const mxu_http_req *req); /* "GET", ... */
/* Path of the URL as sent (not percent-decoded), without the query.
 * Always starts with '/' (absolute-form URLs are reduced to their path;
 * requests with no path, like CONNECT or "OPTIONS *", are answered 400). */
const char *mxu_http_req_path(const mxu_http_req *req);
/* Raw query string without '?', "" if none. */
const char *mxu_http_req_query(const mxu_http_req *req);
/* Case-insensitive header lookup; first match or NULL. */
const char *mxu_http_req_header(const mxu_http_req *req, const char *name);
size_t mxu_http_req_header_count(const mxu_http_req *req);
void mxu_http_req_header_at(const mxu_http_req *req, size_t i, const char **name,
                            const char **value);
/* The same with their lengths, known from parsing (names and values hold
 * no NUL, so these equal strlen): for callers that would otherwise measure
 * every header of every request. Out of range: NULL and 0. */
void mxu_http_req_header_at_len(const mxu_http_req *req, size_t i, const char **name,
                                size_t *name_len, const char **value, size_t *value_len);
const char *mxu_http_req_body(const mxu_http_req *req, size_t *len);
/* Take the body out of the request (no copy); the request's body is then empty.
 * `out` is overwritten, not freed: pass an empty buffer. */
void mxu_http_req_steal_body(mxu_http_req *req, mxu_buf *out);
/* "127.0.0.1:53422" */
const char *mxu_http_req_peer(const mxu_http_req *req);
/* Nanoseconds (mxu_now_ns) when the request was complete. */
uint64_t mxu_http_req_start_ns(const mxu_http_req *req);
/* The handler's own data for the request's connection (NULL until set),
 * e.g. what its previous request authenticated as. Setting it replaces what
 * was there (the caller disposes of that); `free_fn` runs when the
 * connection is gone, or at once if it already is. */
void *mxu_http_req_conn_data(const mxu_http_req *req);
void mxu_http_req_set_conn_data(mxu_http_req *req, void *data, void (*free_fn)(void *data));
/* Called at most once, if the connection ends before the response is sent:
 * the client disconnected (an EOF counts, even a half-close) or the server
 * was closed. The request stays valid and must still be answered; `cb` may
 * answer it at once. A callback set after the connection ended is not called:
 * check mxu_http_req_aborted(). */
void mxu_http_req_on_abort(mxu_http_req *req, void (*cb)(mxu_http_req *req, void *ud), void *ud);
/* True once the connection of `req` is gone: its answer will be dropped. */
bool mxu_http_req_aborted(const mxu_http_req *req);

/* ---- the response -------------------------------------------------------- */

typedef struct mxu_http_header {
    const char *name;
    const char *value;
} mxu_http_header;

/* Answer the request. Headers are copied; Content-Length, Date (unless the
 * caller gives one) and Connection are added by the server (a caller's
 * Content-Length, Transfer-Encoding or Connection header is ignored; a header
 * whose name is not a token or whose value holds CR, LF or another control
 * byte is dropped with a warning). `body` is taken over (its memory is freed
 * when written; the buf is left empty); it may be NULL for an empty body.
 * HEAD requests get headers only; 204 and 304 get neither Content-Length nor
 * body. `status` must be 200..599 (anything else is sent as 500). After this
 * call `req` is invalid. Must be called on the loop's thread; it never calls
 * the handler from inside (pipelined requests continue on the next loop turn). */
void mxu_http_respond(mxu_http_req *req, int status, const mxu_http_header *headers,
                      size_t nheaders, mxu_buf *body);
/* Convenience: copy `len` bytes. */
void mxu_http_respond_bytes(mxu_http_req *req, int status, const char *content_type,
                            const void *data, size_t len);

/* Reason phrase for a status ("Not Found"); "Unknown" if none. */
const char *mxu_http_status_text(int status);

#endif
