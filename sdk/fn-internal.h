/*
 * fn-internal — what the SDK's files share and nobody else sees.
 *
 * The SDK is split along the line a micro-VM port will cut:
 *
 *   fn-api.c      the calls of <mxu/fn.h>: request accessors, response
 *                 building, the per-invocation arena, logging, config.
 *   fn-runtime.c  the instance side of the protocol: HELLO, INIT, INVOKE →
 *                 mxu_handle() → RESULT, BYE; frames are encoded into one
 *                 output buffer.
 *   fn-process.c  the transport for the process and sandbox executors: main(),
 *                 a socket, batched reads and writes.
 *
 * The first two use nothing but the C library's malloc/realloc/free,
 * vsnprintf and memcpy, so they run unchanged on a freestanding guest
 * runtime; everything that knows about file descriptors is in the transport,
 * which the runtime reaches only through mxu_fn_transport.
 */
#ifndef MXU_FN_INTERNAL_H
#define MXU_FN_INTERNAL_H

#include "mxu/fn.h"
#include "unit/frame.h"

#include <stddef.h>
#include <stdint.h>

/* Buffers above these sizes are given back after the invocation that grew
 * them, so one huge request does not pin memory for the instance's life;
 * below them they are reused, so steady state does not allocate. */
#define MXU_FN_KEEP_BUF    (1u << 20)
#define MXU_FN_ARENA_KEEP  (1u << 20)
#define MXU_FN_ARENA_CHUNK (64u << 10)

/* ---- growable byte buffer -------------------------------------------------- */

typedef struct mxu_fn_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
} mxu_fn_buf;

/* Make room for `extra` more bytes after len. 0, or -1 when out of memory or
 * the size would overflow (the buffer is then unchanged). */
int mxu_fn_buf_reserve(mxu_fn_buf *b, size_t extra);
int mxu_fn_buf_append(mxu_fn_buf *b, const void *p, size_t n);
/* Empty the buffer; give its memory back when it has grown beyond `keep`. */
void mxu_fn_buf_reset(mxu_fn_buf *b, size_t keep);

/* ---- per-invocation arena -------------------------------------------------- */

typedef struct mxu_fn_chunk {
    struct mxu_fn_chunk *next;
    size_t cap; /* bytes in data */
    size_t used;
    max_align_t data[];
} mxu_fn_chunk;

typedef struct mxu_fn_arena {
    mxu_fn_chunk *head; /* chunks in allocation order */
    mxu_fn_chunk *cur;  /* the one being bumped; later ones are empty */
} mxu_fn_arena;

void *mxu_fn_arena_alloc(mxu_fn_arena *a, size_t n);
/* Release everything allocated; keep up to MXU_FN_ARENA_KEEP bytes of chunks. */
void mxu_fn_arena_reset(mxu_fn_arena *a);

/* ---- request and response -------------------------------------------------- */

typedef struct mxu_fn_hdr {
    const char *name; /* NUL-terminated, inside the INVOKE frame */
    const char *value;
    uint32_t name_len;
    uint32_t value_len;
} mxu_fn_hdr;

struct mxu_req {
    uint64_t id;
    const char *method;
    const char *path;
    const char *query;
    mxu_fn_hdr *headers;
    size_t nheaders;
    const char *body; /* followed by a NUL while the handler runs */
    size_t body_len;
    uint64_t deadline_at_ms; /* on the transport's clock */
};

/* A response header as offsets into mxu_res.hdr_bytes, which may move. */
typedef struct mxu_fn_res_hdr {
    size_t name_off;
    uint32_t name_len;
    size_t value_off;
    uint32_t value_len;
} mxu_fn_res_hdr;

struct mxu_res {
    uint32_t status; /* 0 = not set by the handler */
    int failed;      /* out of memory: answer 500, drop headers and body */
    mxu_fn_buf body;
    mxu_fn_buf hdr_bytes;
    mxu_fn_res_hdr *hdrs;
    size_t nhdrs;
    size_t hdrs_cap;
};

/* ---- transport -------------------------------------------------------------
 * What the runtime needs from the layer that moves bytes. */
typedef struct mxu_fn_transport {
    const char *name; /* "process", "vm": goes into HELLO for the node's logs */
    /* Send everything in the runtime's output buffer (mxu_fn_rt_out()) and
     * empty it. Called by the runtime itself only while a frame is being
     * handled, when the transport must not move its input. 0, or -1 when the
     * host is gone (the runtime then stops sending). */
    int (*flush)(void *ctx);
    /* Milliseconds on a monotonic clock. */
    uint64_t (*now_ms)(void *ctx);
} mxu_fn_transport;

/* ---- runtime --------------------------------------------------------------- */

enum mxu_fn_rt_state { MXU_FN_AWAIT_INIT, MXU_FN_READY, MXU_FN_DONE };

typedef struct mxu_fn_config_entry {
    const char *name;
    const char *value;
} mxu_fn_config_entry;

typedef struct mxu_fn_rt {
    const mxu_fn_transport *tp;
    void *tp_ctx;
    enum mxu_fn_rt_state state;
    int host_gone; /* a flush failed: send nothing more */
    mxu_fn_buf out;

    /* From INIT, one allocation, for the instance's life. */
    void *init_block;
    const char *function;
    uint32_t version;
    uint32_t concurrency;
    mxu_fn_config_entry *config;
    size_t nconfig;

    /* The invocation being handled (id 0 outside mxu_handle()). */
    uint64_t cur_id;
    mxu_req req;
    mxu_res res;
    size_t req_hdrs_cap;
    mxu_fn_arena arena;
    mxu_slice *enc_names; /* scratch for encoding RESULT headers */
    mxu_slice *enc_values;
    size_t enc_cap;
} mxu_fn_rt;

/* The one runtime of this instance. */
extern mxu_fn_rt mxu_fn_rt_g;

/* What the transport should do after a frame. */
enum mxu_fn_step {
    MXU_FN_CONTINUE = 0,
    MXU_FN_EXIT_OK,   /* BYE: flush and exit 0 */
    MXU_FN_EXIT_FAIL, /* protocol error or failed mxu_init(): FATAL is queued; flush, exit 1 */
};

/* Set the runtime up and queue HELLO. */
void mxu_fn_rt_start(const mxu_fn_transport *tp, void *ctx);
/* Handle one frame whose header decoded fine. `payload` holds h->len bytes
 * and one more writable byte after them (the runtime puts a NUL there while
 * the handler runs, then restores it). */
enum mxu_fn_step mxu_fn_rt_frame(const mxu_frame_hdr *h, uint8_t *payload, uint64_t recv_ms);
/* Queue a FATAL frame (payload laid out like LOG, level 3). */
void mxu_fn_rt_fatal(const char *fmt, ...) MXU_FN_PRINTF(1, 2);
/* The output buffer the transport sends. */
mxu_fn_buf *mxu_fn_rt_out(void);
/* Called by the transport when a batch is done: give back oversized buffers. */
void mxu_fn_rt_idle(void);

/* fn-api.c: start and finish one invocation's request/response state. */
void mxu_fn_api_begin(void);
void mxu_fn_api_end(void);
/* fn-api.c: queue one LOG or FATAL frame for the current invocation, text
 * formatted in place into the output buffer. Returns 0, or -1 if it could not
 * be queued. */
int mxu_fn_queue_text(uint8_t type, uint64_t id, int level, const char *fmt, va_list ap)
    MXU_FN_PRINTF(4, 0);

#endif
