/*
 * frame — the channel protocol's wire format, shared by the host (src/unit)
 * and the instance side (sdk/). Documented in docs/protocol.md.
 *
 * A frame is a 16-byte header followed by `len` payload bytes:
 *
 *   offset size  field
 *   0      4     len       payload length, little-endian, <= MXU_FRAME_MAX_PAYLOAD
 *   4      1     type      enum mxu_frame_type
 *   5      1     flags     must be 0 in version 1
 *   6      2     reserved  must be 0
 *   8      8     id        invocation id (0 for frames that belong to none)
 *
 * Payloads are sequences of fields: u32 and u64 little-endian, and strings or
 * byte runs as a u32 length followed by the bytes (no terminator on the wire).
 *
 * This file must stay freestanding: it uses only <stdint.h>, <stddef.h> and
 * memcpy, never allocates, and never trusts a length it reads. The same code
 * runs inside a micro-VM guest with no libc. Decoders return views (pointers
 * into the caller's buffer), valid as long as that buffer is.
 */
#ifndef MXU_FRAME_H
#define MXU_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define MXU_PROTO_VERSION     1u
#define MXU_FRAME_HEADER_SIZE 16u
/* A request or response body is at most 6 MiB by default and at most 64 MiB
 * by configuration; the rest of a frame (headers, path) is bounded by the
 * HTTP layer's header limit. */
#define MXU_FRAME_MAX_PAYLOAD (80u * 1024u * 1024u)

enum mxu_frame_type {
    MXU_FRAME_HELLO = 1,      /* instance → host, first frame: versions */
    MXU_FRAME_INIT = 2,       /* host → instance, answer to HELLO: function, config */
    MXU_FRAME_INVOKE = 3,     /* host → instance: one request */
    MXU_FRAME_RESULT = 4,     /* instance → host: the response to INVOKE with the same id */
    MXU_FRAME_LOG = 5,        /* instance → host: a log line (id = invocation, or 0) */
    MXU_FRAME_BYE = 6,        /* host → instance: finish in-flight work, then exit 0 */
    MXU_FRAME_FATAL = 7,      /* instance → host: unrecoverable error, message; then exit */
    MXU_FRAME_RES_OP = 16,    /* instance → host: an operation on a descriptor */
    MXU_FRAME_RES_REPLY = 17, /* host → instance: its outcome (same call id) */
    /* 18..31 are reserved for more descriptor traffic. */
};

typedef struct mxu_frame_hdr {
    uint32_t len;
    uint8_t type;
    uint8_t flags;
    uint16_t reserved;
    uint64_t id;
} mxu_frame_hdr;

/* A byte run inside a frame. Strings are NOT NUL-terminated. */
typedef struct mxu_slice {
    const char *ptr;
    uint32_t len;
} mxu_slice;

/* Encode a header into 16 bytes. */
void mxu_frame_hdr_encode(const mxu_frame_hdr *h, uint8_t out[MXU_FRAME_HEADER_SIZE]);
/* Decode and validate a header: returns 0, or -1 when len exceeds
 * MXU_FRAME_MAX_PAYLOAD, type is outside 1..31, or flags/reserved are not 0. */
int mxu_frame_hdr_decode(const uint8_t in[MXU_FRAME_HEADER_SIZE], mxu_frame_hdr *h);

/* ---- payload writer ---------------------------------------------------------
 * Writes into a caller-provided buffer. A write past `cap` sets `overflow` and
 * stops writing but keeps counting `len`, so a first pass with cap = 0 sizes
 * the buffer exactly, and a second pass fills it. */
typedef struct mxu_wire_w {
    uint8_t *buf;
    size_t cap;
    size_t len;
    int overflow;
} mxu_wire_w;

void mxu_wire_w_init(mxu_wire_w *w, void *buf, size_t cap);
void mxu_wire_put_u32(mxu_wire_w *w, uint32_t v);
void mxu_wire_put_u64(mxu_wire_w *w, uint64_t v);
void mxu_wire_put_bytes(mxu_wire_w *w, const void *p, uint32_t n); /* u32 length + bytes */
void mxu_wire_put_str(mxu_wire_w *w, const char *s);               /* strlen(s), s may be NULL */

/* ---- payload reader ---------------------------------------------------------
 * Reads from a payload. Any read past the end, or a length that does not fit,
 * sets `bad` and returns zero values / empty slices; check `bad` once at the
 * end (like a stream's fail bit). */
typedef struct mxu_wire_r {
    const uint8_t *p;
    const uint8_t *end;
    int bad;
} mxu_wire_r;

void mxu_wire_r_init(mxu_wire_r *r, const void *payload, size_t len);
uint32_t mxu_wire_get_u32(mxu_wire_r *r);
uint64_t mxu_wire_get_u64(mxu_wire_r *r);
mxu_slice mxu_wire_get_bytes(mxu_wire_r *r);
/* 1 when every byte was consumed and nothing was bad. */
int mxu_wire_r_done(const mxu_wire_r *r);

/* ---- messages --------------------------------------------------------------
 * Header lists travel as a u32 count followed by count × (name, value) byte
 * runs. A decoded message keeps the list as a reader positioned at its first
 * pair; walk it with mxu_wire_next_header(). The decoders below already walked
 * it once, so a message that decoded fine cannot fail while being walked. */
typedef struct mxu_header_list {
    uint32_t count;
    mxu_wire_r pairs;
} mxu_header_list;

/* Returns 1 and fills name/value for the next pair, 0 at the end. */
int mxu_wire_next_header(mxu_header_list *it, mxu_slice *name, mxu_slice *value);

/* HELLO: instance → host. */
typedef struct mxu_hello_msg {
    uint32_t proto_version; /* MXU_PROTO_VERSION the instance speaks */
    mxu_slice sdk;          /* e.g. "mxu-c/0.1.0 process" for logs */
} mxu_hello_msg;

/* INIT: host → instance. */
typedef struct mxu_init_msg {
    uint32_t proto_version; /* version the host chose */
    mxu_slice function;     /* function name */
    uint32_t version;       /* function version number */
    uint32_t concurrency;   /* invocations the host may have in flight here */
    mxu_header_list config; /* the manifest's env, as name/value pairs */
} mxu_init_msg;

/* INVOKE: host → instance; frame id = invocation id. */
typedef struct mxu_invoke_msg {
    uint64_t deadline_ms; /* milliseconds left for this invocation when sent */
    mxu_slice method;     /* "GET", "POST", ... */
    mxu_slice path;       /* sub-path after /fn/NAME, starts with '/', or "/" */
    mxu_slice query;      /* raw query string without '?', may be empty */
    mxu_header_list headers;
    mxu_slice body;
} mxu_invoke_msg;

/* RESULT: instance → host; frame id = invocation id. */
typedef struct mxu_result_msg {
    uint32_t status; /* HTTP status 100..599 */
    mxu_header_list headers;
    mxu_slice body;
} mxu_result_msg;

/* LOG: instance → host. */
typedef struct mxu_log_msg {
    uint32_t level; /* 0 debug, 1 info, 2 warn, 3 error */
    mxu_slice text;
} mxu_log_msg;

/* Encoders write the payload only (not the header) and return its length;
 * call with cap = 0 to size. `hdr_names`/`hdr_values` are `nhdr` byte runs. */
size_t mxu_hello_encode(void *buf, size_t cap, const char *sdk);
size_t mxu_init_encode(void *buf, size_t cap, const char *function, uint32_t version,
                       uint32_t concurrency, const char *const *cfg_names,
                       const char *const *cfg_values, uint32_t ncfg);
size_t mxu_invoke_encode(void *buf, size_t cap, uint64_t deadline_ms, mxu_slice method,
                         mxu_slice path, mxu_slice query, const mxu_slice *hdr_names,
                         const mxu_slice *hdr_values, uint32_t nhdr, mxu_slice body);
size_t mxu_result_encode(void *buf, size_t cap, uint32_t status, const mxu_slice *hdr_names,
                         const mxu_slice *hdr_values, uint32_t nhdr, mxu_slice body);
size_t mxu_log_encode(void *buf, size_t cap, uint32_t level, mxu_slice text);

/* Decoders validate the whole payload (every length in bounds, no trailing
 * bytes, status in 100..599, header count consistent) and return 0, or -1 if
 * anything is off. Nothing is copied. */
int mxu_hello_decode(const void *payload, size_t len, mxu_hello_msg *m);
int mxu_init_decode(const void *payload, size_t len, mxu_init_msg *m);
int mxu_invoke_decode(const void *payload, size_t len, mxu_invoke_msg *m);
int mxu_result_decode(const void *payload, size_t len, mxu_result_msg *m);
int mxu_log_decode(const void *payload, size_t len, mxu_log_msg *m);

/* ---- descriptor operations ----------------------------------------------------
 * A function reaches its resources only through these two frames. RES_OP's
 * frame id is the invocation it is made for (so the host applies that
 * invocation's deadline and policy); RES_REPLY's frame id is the same. An
 * instance has at most one operation outstanding (the SDK call blocks), but
 * the call id lets the host drop a stale reply.
 *
 * Every operation has the same generic shape — a descriptor name, an op code,
 * up to MXU_RES_MAX_ARGS byte runs and two numbers — so one decoder (and one
 * fuzz target) covers them all; what each op puts where is in the table
 * below and in docs/protocol.md.
 *
 *   op                args (byte runs)           n1 / n2 in            vals out                  n1
 * / n2 out KV_GET            key                        -                     value revision KV_PUT
 * key, value                 -                     -                         new revision KV_DELETE
 * key                        -                     -                         - KV_CAS key, value
 * expected revision     -                         new revision (0: must not exist) KV_LIST prefix,
 * cursor             limit                 key..., next cursor       count BLOB_READ         key
 * offset / length       data                      object size BLOB_WRITE        key, data offset /
 * flags        -                         bytes so far (flags: 1 = first chunk, 2 = last chunk; the
 * object appears when the last chunk is written; chunks arrive in order, offsets contiguous)
 *   BLOB_STAT         key                        -                     - size / mtime (ms)
 *   BLOB_LIST         prefix, cursor             limit                 key..., next cursor count
 *   BLOB_DELETE       key                        -                     -                         -
 *   QUEUE_PUBLISH     message                    -                     - message id QUEUE_CONSUME
 * -                          lease (ms)            message, receipt          attempts / id
 *   QUEUE_ACK         receipt                    -                     -                         -
 *   SVC_CALL          method, path, query, body, header name/value pairs...
 *                                                -                     body, header name/value
 * pairs... HTTP status
 */
enum mxu_res_op {
    MXU_RES_KV_GET = 1,
    MXU_RES_KV_PUT = 2,
    MXU_RES_KV_DELETE = 3,
    MXU_RES_KV_CAS = 4,
    MXU_RES_KV_LIST = 5,
    MXU_RES_BLOB_READ = 16,
    MXU_RES_BLOB_WRITE = 17,
    MXU_RES_BLOB_STAT = 18,
    MXU_RES_BLOB_LIST = 19,
    MXU_RES_BLOB_DELETE = 20,
    MXU_RES_QUEUE_PUBLISH = 32,
    MXU_RES_QUEUE_CONSUME = 33,
    MXU_RES_QUEUE_ACK = 34,
    MXU_RES_SVC_CALL = 48,
};

#define MXU_RES_BLOB_FIRST 1u
#define MXU_RES_BLOB_LAST  2u

/* Outcomes; the SDK returns them negated as its error codes (fn.h). */
enum mxu_res_status {
    MXU_RES_OK = 0,
    MXU_RES_DENIED = 1,       /* undeclared descriptor, or beyond its access */
    MXU_RES_NOT_FOUND = 2,    /* no such key / object / message */
    MXU_RES_CONFLICT = 3,     /* compare-and-set lost */
    MXU_RES_TOO_LARGE = 4,    /* key, value or chunk over its limit */
    MXU_RES_UNAVAILABLE = 5,  /* backend down or unreachable */
    MXU_RES_DEADLINE = 6,     /* the invocation's deadline passed */
    MXU_RES_INVALID = 7,      /* malformed: bad key, bad op for the kind, ... */
    MXU_RES_RATE_LIMITED = 8, /* the descriptor's operations-per-second budget */
    MXU_RES_CALL_FAILED = 9,  /* svc: the callee failed (crash, timeout, ...) */
};

#define MXU_RES_MAX_ARGS 64u /* byte runs in one op or reply (svc headers) */

typedef struct mxu_res_op_msg {
    uint32_t call_id;
    mxu_slice name; /* the descriptor's local name */
    uint32_t op;    /* enum mxu_res_op (unknown values decode; the host refuses them) */
    uint64_t n1, n2;
    uint32_t nargs;
    mxu_slice args[MXU_RES_MAX_ARGS];
} mxu_res_op_msg;

typedef struct mxu_res_reply_msg {
    uint32_t call_id;
    uint32_t status;   /* enum mxu_res_status */
    mxu_slice message; /* for people; may be empty */
    uint64_t n1, n2;
    uint32_t nvals;
    mxu_slice vals[MXU_RES_MAX_ARGS];
} mxu_res_reply_msg;

/* Payload layout: u32 call_id, bytes name, u32 op, u64 n1, u64 n2, u32 nargs,
 * nargs × bytes. Reply: u32 call_id, u32 status, bytes message, u64 n1,
 * u64 n2, u32 nvals, nvals × bytes. */
size_t mxu_res_op_encode(void *buf, size_t cap, uint32_t call_id, mxu_slice name, uint32_t op,
                         uint64_t n1, uint64_t n2, const mxu_slice *args, uint32_t nargs);
size_t mxu_res_reply_encode(void *buf, size_t cap, uint32_t call_id, uint32_t status,
                            mxu_slice message, uint64_t n1, uint64_t n2, const mxu_slice *vals,
                            uint32_t nvals);
/* Validate fully (nargs/nvals <= MXU_RES_MAX_ARGS, every length in bounds, no
 * trailing bytes, name non-empty and at most 63 bytes); 0 or -1. */
int mxu_res_op_decode(const void *payload, size_t len, mxu_res_op_msg *m);
int mxu_res_reply_decode(const void *payload, size_t len, mxu_res_reply_msg *m);

#endif
