/*
 * fuzz-frame — libFuzzer target for the channel protocol codec
 * (src/unit/frame.c), the code that reads every byte a hostile instance sends.
 *
 * The input is decoded as a frame header (its first 16 bytes) and as the
 * payload of every message type (all of it, copied into an exactly-sized
 * block so ASan sees any over-read). Whenever a decode succeeds, the decoded
 * view is encoded again and must reproduce the input byte for byte: the
 * encoding is canonical, so any difference is a decoder that accepted
 * something it misread. Header lists are walked to the end, which must never
 * fail after a successful decode. Descriptor operations (RES_OP, RES_REPLY)
 * are decoded the same way, their byte runs read through, and re-encoded.
 */
#include "unit/frame.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define REQUIRE(c)   \
    do {             \
        if (!(c))    \
            abort(); \
    } while (0)

/* Encode again (`expr` uses `buf` and `cap`: a sizing pass with buf = NULL,
 * then into an exactly-sized block) and compare with the input from byte
 * `from` on. */
#define SAME_BYTES(from, expr)                                            \
    do {                                                                  \
        uint8_t *buf = NULL;                                              \
        size_t cap = 0;                                                   \
        REQUIRE((expr) == size);                                          \
        buf = malloc(size ? size : 1);                                    \
        cap = size;                                                       \
        REQUIRE((expr) == size);                                          \
        REQUIRE(memcmp(buf + (from), data + (from), size - (from)) == 0); \
        free(buf);                                                        \
    } while (0)

/* Walk a decoded list into arrays; every pair must come out, then nothing. */
static uint32_t collect(mxu_header_list list, mxu_slice **names, mxu_slice **values)
{
    uint32_t count = list.count;
    *names = malloc((count ? count : 1) * sizeof(mxu_slice));
    *values = malloc((count ? count : 1) * sizeof(mxu_slice));
    for (uint32_t i = 0; i < count; i++)
        REQUIRE(mxu_wire_next_header(&list, &(*names)[i], &(*values)[i]));
    mxu_slice n, v;
    REQUIRE(!mxu_wire_next_header(&list, &n, &v));
    return count;
}

/* A C string copy of a slice (for the encoders that take C strings); the
 * decoders refuse NUL in the fields that travel this way. */
static char *cstr(mxu_slice s)
{
    char *p = malloc(s.len + 1);
    memcpy(p, s.ptr, s.len);
    p[s.len] = '\0';
    REQUIRE(strlen(p) == s.len);
    return p;
}

/* Read every byte of a view (the sum keeps the loads from being optimised
 * away). */
static volatile uint8_t sink;
static void touch(mxu_slice s)
{
    uint8_t sum = 0;
    for (uint32_t i = 0; i < s.len; i++)
        sum = (uint8_t)(sum + (uint8_t)s.ptr[i]);
    sink = sum;
}

static void fuzz_payload(const uint8_t *data, size_t size)
{
    mxu_hello_msg hello;
    if (mxu_hello_decode(data, size, &hello) == 0) {
        /* The encoder always writes MXU_PROTO_VERSION, the first field: a
         * peer may announce another, so compare what follows it. */
        char *sdk = cstr(hello.sdk);
        SAME_BYTES(4, mxu_hello_encode(buf, cap, sdk));
        free(sdk);
    }

    mxu_init_msg init;
    if (mxu_init_decode(data, size, &init) == 0) {
        mxu_slice *n, *v;
        uint32_t count = collect(init.config, &n, &v);
        char *fn = cstr(init.function);
        char **cn = malloc((count ? count : 1) * sizeof(char *));
        char **cv = malloc((count ? count : 1) * sizeof(char *));
        for (uint32_t i = 0; i < count; i++) {
            cn[i] = cstr(n[i]);
            cv[i] = cstr(v[i]);
        }
        SAME_BYTES(4, mxu_init_encode(buf, cap, fn, init.version, init.concurrency,
                                      (const char *const *)cn, (const char *const *)cv, count));
        for (uint32_t i = 0; i < count; i++) {
            free(cn[i]);
            free(cv[i]);
        }
        free(cn);
        free(cv);
        free(fn);
        free(n);
        free(v);
    }

    mxu_invoke_msg inv;
    if (mxu_invoke_decode(data, size, &inv) == 0) {
        mxu_slice *n, *v;
        uint32_t count = collect(inv.headers, &n, &v);
        SAME_BYTES(0, mxu_invoke_encode(buf, cap, inv.deadline_ms, inv.method, inv.path, inv.query,
                                        n, v, count, inv.body));
        free(n);
        free(v);
    }

    mxu_result_msg res;
    if (mxu_result_decode(data, size, &res) == 0) {
        REQUIRE(res.status >= 100 && res.status <= 599);
        mxu_slice *n, *v;
        uint32_t count = collect(res.headers, &n, &v);
        SAME_BYTES(0, mxu_result_encode(buf, cap, res.status, n, v, count, res.body));
        free(n);
        free(v);
    }

    mxu_log_msg log;
    if (mxu_log_decode(data, size, &log) == 0) {
        REQUIRE(log.level <= 3);
        SAME_BYTES(0, mxu_log_encode(buf, cap, log.level, log.text));
    }

    /* Descriptor operations: what a hostile instance sends (RES_OP) and what
     * the SDK trusts from the host (RES_REPLY). Every run the decoder handed
     * back is touched, so ASan sees a view that points past the input. */
    mxu_res_op_msg op;
    if (mxu_res_op_decode(data, size, &op) == 0) {
        REQUIRE(op.nargs <= MXU_RES_MAX_ARGS);
        REQUIRE(op.name.len >= 1 && op.name.len <= 63);
        touch(op.name);
        for (uint32_t i = 0; i < op.nargs; i++)
            touch(op.args[i]);
        SAME_BYTES(0, mxu_res_op_encode(buf, cap, op.call_id, op.name, op.op, op.n1, op.n2, op.args,
                                        op.nargs));
    } else {
        REQUIRE(op.nargs == 0);
    }

    mxu_res_reply_msg reply;
    if (mxu_res_reply_decode(data, size, &reply) == 0) {
        REQUIRE(reply.nvals <= MXU_RES_MAX_ARGS);
        touch(reply.message);
        for (uint32_t i = 0; i < reply.nvals; i++)
            touch(reply.vals[i]);
        SAME_BYTES(0, mxu_res_reply_encode(buf, cap, reply.call_id, reply.status, reply.message,
                                           reply.n1, reply.n2, reply.vals, reply.nvals));
    } else {
        REQUIRE(reply.nvals == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size >= MXU_FRAME_HEADER_SIZE) {
        mxu_frame_hdr h;
        if (mxu_frame_hdr_decode(data, &h) == 0) {
            REQUIRE(h.len <= MXU_FRAME_MAX_PAYLOAD && h.type >= 1 && h.type <= 31);
            uint8_t again[MXU_FRAME_HEADER_SIZE];
            mxu_frame_hdr_encode(&h, again);
            REQUIRE(memcmp(again, data, MXU_FRAME_HEADER_SIZE) == 0);
        }
    }

    /* An exactly-sized copy: an over-read of one byte is an ASan report. */
    uint8_t *copy = malloc(size ? size : 1);
    memcpy(copy, data, size);
    fuzz_payload(copy, size);
    free(copy);
    return 0;
}
