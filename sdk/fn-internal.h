/*
 * fn-internal — what the SDK's files share and nobody else sees.
 *
 * The SDK is split along the line a micro-VM port will cut:
 *
 *   fn-api.c       the calls of <mxu/fn.h>: request accessors, response
 *                  building, the per-invocation arena, logging, config.
 *   fn-resource.c  the resource calls of <mxu/fn.h> (kv, blob, queue, svc):
 *                  arguments in, RES_OP out, RES_REPLY checked and copied
 *                  into the arena.
 *   fn-runtime.c   the instance side of the protocol: HELLO, INIT, INVOKE →
 *                  mxu_handle() → RESULT, BYE; the RES_OP → RES_REPLY round
 *                  trip; frames are encoded into one output buffer.
 *   fn-process.c   the transport for the process and sandbox executors:
 *                  main(), a socket, batched reads and writes, and the
 *                  blocking wait for a reply.
 *
 * The first three use nothing but the C library's malloc/realloc/free,
 * vsnprintf, memcpy and friends, so they run unchanged on a freestanding
 * guest runtime; everything that knows about file descriptors is in the
 * transport, which the runtime reaches only through mxu_fn_transport.
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

    /* The blocking half of a descriptor operation, used only while a frame
     * is being handled (so the frame being handled, and the request that
     * points into it, must not move).
     *
     * Send everything in the output buffer (the RES_OP just queued, and any
     * RESULTs batched before it, which must not wait behind the call), then
     * block until one more whole frame has arrived that has not been handed
     * out yet, and hand it out: its header in *h, its payload at *payload,
     * valid until the next transport call. Frames that were already buffered
     * when the handler started are never handed out here: they arrived
     * before the operation was sent, so none can be its reply.
     *
     * Every frame handed out is kept, and replayed through mxu_fn_rt_frame()
     * after the frame being handled, in arrival order, unless the runtime
     * calls drop_frame() for it. That is how INVOKEs and a BYE that arrive
     * during a call wait their turn.
     *
     * Returns 1 with a frame; 0 when the host is gone (EOF, or the send
     * failed); -1 on a malformed frame header or when out of memory, with a
     * FATAL already queued. */
    int (*wait_frame)(void *ctx, mxu_frame_hdr *h, uint8_t **payload);
    /* Forget the frame wait_frame() handed out last (a consumed RES_REPLY). */
    void (*drop_frame)(void *ctx);
    /* Send what is queued (if the host still listens) and end the instance
     * with `code`. For errors found in the middle of a handler. */
    void (*exit)(void *ctx, int code) __attribute__((noreturn));
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

    /* Descriptor operations (fn-resource.c). */
    uint32_t call_id;                /* of the last RES_OP; 0 is never used */
    char last_error[512];            /* mxu_last_error(); "" until a call fails */
    struct mxu_blob_writer *writers; /* open in this invocation */
    uint8_t *spare_chunk;            /* a writer's chunk buffer, kept for the next one */
    size_t spare_chunk_cap;
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

/* One descriptor operation, as a round trip: queue a RES_OP for the
 * invocation being handled, send it, and wait for the RES_REPLY with its call
 * id (INVOKE and BYE frames that arrive meanwhile are kept for later; any
 * other frame, or a reply that is not for this call, is a protocol error
 * that ends the instance). Returns 0 with the decoded reply in *rep,
 * whatever its status; its slices point into the transport's buffer, so copy
 * what you need, then call mxu_fn_rt_call_done(). Returns MXU_E_TOO_LARGE
 * when the op cannot be encoded in one frame and MXU_E_NOMEM when it cannot
 * be queued (nothing was sent). Does not return when the channel breaks. */
int mxu_fn_rt_call(mxu_slice desc, uint32_t op, uint64_t n1, uint64_t n2, const mxu_slice *args,
                   uint32_t nargs, mxu_res_reply_msg *rep);
void mxu_fn_rt_call_done(void);
/* A reply that does not fit its op: FATAL, and the instance ends. */
void mxu_fn_rt_bad_reply(const char *fmt, ...) MXU_FN_PRINTF(1, 2) __attribute__((noreturn));

/* fn-api.c: start and finish one invocation's request/response state. */
void mxu_fn_api_begin(void);
void mxu_fn_api_end(void);
/* fn-resource.c: the same for resource state (writers, the last error). */
void mxu_fn_res_begin(void);
void mxu_fn_res_end(void);
/* fn-api.c: the header rules of mxu_res_header(), shared with svc calls. */
int mxu_fn_is_token(const char *s, size_t n);
int mxu_fn_header_ok(const char *name, size_t nlen, const char *value, size_t vlen);
/* fn-api.c: queue one LOG or FATAL frame for the current invocation, text
 * formatted in place into the output buffer. Returns 0, or -1 if it could not
 * be queued. */
int mxu_fn_queue_text(uint8_t type, uint64_t id, int level, const char *fmt, va_list ap)
    MXU_FN_PRINTF(4, 0);

#endif
