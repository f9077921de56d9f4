/*
 * http-internal.h — what the files of src/http share, and the seam that lets
 * tests and the fuzzer drive a connection from memory.
 *
 * The server is split by role:
 *   http-server.c    listener, accept, connection list, Date cache, the idle
 *                    handle that resumes parked pipelined input, close/stop
 *   http-conn.c      one connection's state machine: http-parser callbacks,
 *                    limits, timers, dispatch to the handler, errors, lifetimes
 *   http-req.c       the request object handed to the handler and its accessors
 *   http-response.c  mxu_http_respond*: response heads, corking, error answers
 *   http-tcp.c       the libuv TCP transport (shared read buffer, try_write first)
 *   http-status.c    reason phrases and default limits
 *
 * A connection does its I/O through an `http_transport` ops table. The TCP
 * transport is the only one in the library; tests and fuzz/fuzz-http.c plug in
 * a memory transport that records what the server sends, and push bytes in with
 * http_conn_feed(). Everything else (the parser, limits, keep-alive, timers on
 * the loop, request lifetimes) is the same code in both cases.
 */
#ifndef MXU_HTTP_INTERNAL_H
#define MXU_HTTP_INTERNAL_H

#include "http/http.h"

#include <http_parser.h>
#include <stddef.h>
#include <time.h>

/* ---- an intrusive circular list (libuv's QUEUE, typed) -------------------- */

typedef struct http_link {
    struct http_link *prev, *next;
} http_link;

static inline void http_list_init(http_link *h)
{
    h->prev = h->next = h;
}
static inline bool http_list_empty(const http_link *h)
{
    return h->next == h;
}
static inline void http_list_push(http_link *h, http_link *n)
{
    n->prev = h->prev;
    n->next = h;
    h->prev->next = n;
    h->prev = n;
}
/* Safe on a node that is in no list, as long as it was http_list_init'ed. */
static inline void http_list_remove(http_link *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
}
#define http_container_of(p, type, member) ((type *)(void *)((char *)(p)-offsetof(type, member)))

/* ---- tuning ----------------------------------------------------------------- */

/* One read buffer per server, shared by all its connections: libuv calls
 * alloc_cb and read_cb back to back, and whatever a connection cannot parse
 * right away is copied into its own backlog. Idle connections thus hold no
 * read memory. */
#define HTTP_READ_BUF_SIZE (64 * 1024)
/* While a request is out with the handler, stop reading once this much
 * pipelined input is parked (the handler is slower than the client). */
#define HTTP_IN_HIGH_WATER (64 * 1024)
/* Stop parsing pipelined requests while more than this much output is queued
 * for a client that does not read; resume below the low mark. */
#define HTTP_OUT_HIGH_WATER (1024 * 1024)
#define HTTP_OUT_LOW_WATER  (256 * 1024)
/* While a request's answer is being built inside a read (corked), bodies up to
 * this size are copied next to the head so that pipelined answers leave in one
 * write; larger ones are handed to the transport without a copy. */
#define HTTP_CORK_COPY_MAX (16 * 1024)
/* After the final response and FIN, keep draining input at most this long so
 * the client reads our answer instead of a reset. */
#define HTTP_LINGER_MS 2000
/* A recycled request keeps buffers up to this size: an idle keep-alive
 * connection should cost little memory. Also the most reserved up front for
 * a declared Content-Length (the client may never send it). */
#define HTTP_KEEP_BUF_CAP (4 * 1024)

/* ---- the transport seam --------------------------------------------------- */

typedef struct http_conn http_conn;

typedef struct http_transport {
    /* Queue `head` then `body` for the peer, after everything sent before.
     * `head` is borrowed (copied if it cannot be written at once); `body` (may
     * be NULL) is taken over and left empty, also on failure. Returns 0 or a
     * negative libuv error; on error the caller closes the connection. */
    int (*send)(http_conn *c, const char *head, size_t head_len, mxu_buf *body);
    /* Bytes accepted by send() and not yet written. */
    size_t (*queued)(const http_conn *c);
    void (*read_start)(http_conn *c);
    void (*read_stop)(http_conn *c);
    /* After queued output is written, send FIN; then call
     * http_conn_on_shutdown(). Input keeps being delivered. */
    void (*shutdown)(http_conn *c);
    /* Drop queued output and release the transport; http_conn_on_transport_closed()
     * must follow (it may be called from inside close()). */
    void (*close)(http_conn *c);
} http_transport;

/* ---- the server ------------------------------------------------------------- */

struct mxu_http_server {
    uv_loop_t *loop;
    mxu_http_limits limits;
    char *large_body_prefix; /* owned copy of limits.large_body_prefix */
    mxu_http_handler handler;
    void *ud;

    uv_tcp_t listener;
    bool listening;
    bool accepting; /* false after stop_accepting/close: no more keep-alive */
    bool closing;
    int port;

    /* Connections whose parked input must be parsed on the next loop turn
     * (their request was answered outside of a read). */
    uv_idle_t resume_idle;
    http_link resume;

    http_link conns;    /* open connections */
    http_link detached; /* requests out with the handler whose connection is gone */
    size_t nconns;
    size_t pending;
    /* Handles and connections still to be closed before the server is freed. */
    size_t live;
    void (*done)(void *ud);
    void *done_ud;

    char *rbuf; /* HTTP_READ_BUF_SIZE, see above */

    /* "Date: ...\r\n", reformatted when the second changes. */
    time_t date_sec;
    size_t date_len;
    char date[64];
};

/* A server with no listener, for connections driven from memory. `limits` may
 * be NULL; zero fields take defaults. */
mxu_http_server *http_server_new(uv_loop_t *loop, const mxu_http_limits *limits,
                                 mxu_http_handler handler, void *ud);
/* The cached Date header line. */
const char *http_server_date(mxu_http_server *srv, size_t *len);
/* Parse c's parked input on the next loop turn. */
void http_server_schedule_resume(mxu_http_server *srv, http_conn *c);
/* A handle or connection counted in `live` is gone; frees the server when
 * closing and it was the last. */
void http_server_unref(mxu_http_server *srv);

/* ---- the connection --------------------------------------------------------- */

/* Where scan_fold (http-conn.c) is in the head of the current request. */
enum http_fold { HTTP_FOLD_PRE, HTTP_FOLD_TEXT, HTTP_FOLD_LF, HTTP_FOLD_LFCR, HTTP_FOLD_DONE };

enum http_conn_state {
    HTTP_CONN_IDLE,    /* between requests: idle timeout */
    HTTP_CONN_READING, /* a request has begun: read timeout, 408 */
    HTTP_CONN_WAITING, /* the request is out with the handler; parsing paused */
    HTTP_CONN_LINGER,  /* final answer queued, FIN sent or pending, draining input */
    HTTP_CONN_CLOSED,  /* handles closing; freed when both are closed */
};

struct http_conn {
    mxu_http_server *srv;
    const http_transport *tp;
    void *tp_data;   /* for memory transports */
    http_link link;  /* in srv->conns */
    http_link rlink; /* in srv->resume while queued */

    enum http_conn_state state;
    http_parser parser;
    mxu_buf in;          /* parked input: arrived while the request was out */
    mxu_buf out;         /* response bytes not yet handed to the transport (corked) */
    mxu_http_req *req;   /* being parsed, or out with the handler */
    mxu_http_req *spare; /* answered request kept for reuse */

    size_t header_bytes; /* bytes of the current head so far */
    bool in_headers;     /* the parser is before the end of a head */
    bool headers_done;   /* current message's head is complete: trailers ignored */
    int fail_status;     /* status chosen by a callback that stops the parser */
    enum http_fold fold_state;
    bool busy; /* inside a parse run: answers are corked */
    bool read_stopped;
    bool out_blocked;
    bool eof; /* the peer sent FIN */

    void *user;                  /* the handler's per-connection data */
    void (*user_free)(void *ud); /* frees it when the connection is gone */

    uv_timer_t timer;
    uint64_t deadline;  /* uv_now() ms; 0 = none */
    uint64_t timer_due; /* when the armed timer fires */
    bool timer_armed;
    int nhandles; /* timer + transport, until both are closed */

    /* TCP transport state (unused by memory transports). */
    uv_tcp_t tcp;
    uv_shutdown_t shutdown_req;
    size_t queued_bytes;

    char peer[64];
};

/* Create a connection on `srv` with transport `tp`; it starts idle, with the
 * idle timeout armed. The caller then starts its transport reading. */
http_conn *http_conn_new(mxu_http_server *srv, const http_transport *tp, void *tp_data,
                         const char *peer);
/* Bytes from the peer. */
void http_conn_feed(http_conn *c, const char *data, size_t len);
/* The peer sent FIN (status == UV_EOF) or the read failed. */
void http_conn_read_end(http_conn *c, int status);
/* Transport notifications. */
void http_conn_on_write_progress(http_conn *c, int status);
void http_conn_on_shutdown(http_conn *c, int status);
void http_conn_on_transport_closed(http_conn *c);

/* Close now: queued output is dropped, a request out with the handler is
 * detached and its abort callback called. Idempotent. */
void http_conn_close(http_conn *c);
/* Close gracefully: flush, FIN, drain input for a while, then close. */
void http_conn_finish(http_conn *c);
/* Parse parked input (from the server's resume handle). */
void http_conn_resume(http_conn *c);
/* Hand c->out (and `body`, taken over) to the transport. Closes on error. */
void http_conn_flush(http_conn *c, mxu_buf *body);
/* The request out with the handler was answered (its bytes are queued);
 * continue with the next one or close. */
void http_conn_answered(http_conn *c, bool keep_alive);

/* The libuv TCP transport (http-tcp.c). */
extern const http_transport http_tcp_transport;
/* Start reading on an accepted connection. */
void http_tcp_start(http_conn *c);

/* ---- requests ----------------------------------------------------------------- */

typedef struct http_hdr {
    uint32_t name, name_len; /* offsets into req->strs */
    uint32_t value, value_len;
} http_hdr;

enum http_piece { HTTP_PIECE_NONE, HTTP_PIECE_URL, HTTP_PIECE_NAME, HTTP_PIECE_VALUE };

#define HTTP_NO_OFFSET UINT32_MAX

struct mxu_http_req {
    http_conn *conn;      /* NULL once the connection is gone */
    mxu_http_server *srv; /* NULL once the server is freed */
    http_link dlink;      /* in srv->detached */

    /* URL, header names and values, each NUL-terminated, in arrival order.
     * Offsets, not pointers, while parsing because the buffer may move. */
    mxu_buf strs;
    http_hdr *hdrs;
    size_t nhdrs, hdrs_cap;
    enum http_piece piece;
    uint32_t url_len;
    uint32_t path_off;  /* HTTP_NO_OFFSET: "/" */
    uint32_t query_off; /* HTTP_NO_OFFSET: "" */

    const char *method;
    mxu_buf body;
    size_t body_limit; /* max_body_bytes, or the large limit for its path */
    uint64_t start_ns;
    void (*abort_cb)(mxu_http_req *req, void *ud);
    void *abort_ud;
    bool out;        /* handed to the handler and not answered */
    bool head;       /* HEAD: headers only */
    bool keep_alive; /* what the client asked for */
    bool http10;

    char peer[64];
};

mxu_http_req *http_req_new(http_conn *c);
/* Ready for the next request on the same connection (keeps memory). */
void http_req_reset(mxu_http_req *req);
void http_req_free(mxu_http_req *req);
/* Keep `req` as c's spare, or free it. */
void http_req_recycle(http_conn *c, mxu_http_req *req);
/* Finish the piece being appended to strs (NUL-terminates it). */
void http_req_end_piece(mxu_http_req *req);
/* ASCII case-insensitive equality of n bytes. */
bool http_ieq(const char *a, const char *b, size_t n);

/* ---- responses --------------------------------------------------------------- */

/* Append a response head to `out`. `length` is the Content-Length to announce
 * (ignored for statuses that have no body). */
void http_build_head(mxu_http_server *srv, mxu_buf *out, int status, const mxu_http_header *headers,
                     size_t nheaders, size_t length, bool keep_alive, bool http10);
/* Answer a request that failed to parse (400, 408, 413, 431, ...) and close. */
void http_conn_fail(http_conn *c, int status);

#endif
