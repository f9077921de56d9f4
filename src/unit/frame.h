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
    MXU_FRAME_HELLO = 1,  /* instance → host, first frame: versions */
    MXU_FRAME_INIT = 2,   /* host → instance, answer to HELLO: function, config */
    MXU_FRAME_INVOKE = 3, /* host → instance: one request */
    MXU_FRAME_RESULT = 4, /* instance → host: the response to INVOKE with the same id */
    MXU_FRAME_LOG = 5,    /* instance → host: a log line (id = invocation, or 0) */
    MXU_FRAME_BYE = 6,    /* host → instance: finish in-flight work, then exit 0 */
    MXU_FRAME_FATAL = 7,  /* instance → host: unrecoverable error, message; then exit */
    /* 16..31 are reserved for descriptor operations (RES_OP / RES_REPLY). */
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

#endif
