/*
 * fuzz-catalog-sdk — the node and the SDK runtime, in memory, for the
 * catalogue fuzzer (fuzz/fuzz-catalog.c).
 *
 * A block runs here against the SDK's real request and response code
 * (sdk/fn-api.c: query decoding, header rules, body limits, mxu_res_error's
 * escaping; sdk/fn-resource.c: argument checks and reply handling of the
 * resource calls), linked into the fuzzer. What this file supplies is the
 * rest of what an instance sees: the runtime state that the INIT and INVOKE
 * frames would fill (sdk/fn-runtime.c), the status a RESULT gets, a transport
 * that drops log frames, and the node's answers to resource operations,
 * from a small kv map and a queue, with injected failures. The semantics are
 * the ones <mxu/fn.h> documents, so the blocks are exercised as in
 * production; nothing here is a stand-in the platform could run instead.
 */
#include "fuzz-catalog.h"

#include "../sdk/fn-internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

mxu_fn_rt mxu_fn_rt_g;

/* ---- transport: logs are queued by fn-api.c and dropped here ----------------------- */

static int tp_flush(void *ctx)
{
    (void)ctx;
    mxu_fn_rt_g.out.len = 0;
    return 0;
}

static uint64_t tp_now_ms(void *ctx)
{
    (void)ctx;
    return 1000; /* deadlines are 2 s after the request arrived at 1000 */
}

static const mxu_fn_transport transport = {
    .name = "fuzz",
    .flush = tp_flush,
    .now_ms = tp_now_ms,
};

/* ---- configuration ----------------------------------------------------------------- */

#define MAX_CONFIG 32
static mxu_fn_config_entry config[MAX_CONFIG];

/* ---- the node's stores ------------------------------------------------------------- */

#define KV_MAX_KEYS   16
#define KV_MAX_KEY    512u
#define KV_MAX_VALUE  (1u << 20)
#define QUEUE_MAX_MSG (256u << 10)

typedef struct kv_entry {
    char *key;
    unsigned char *val;
    size_t len;
    uint64_t rev;
} kv_entry;

static kv_entry kv[KV_MAX_KEYS];
static size_t nkv;
static uint64_t next_rev = 1;
static unsigned char *last_msg;
static size_t last_msg_len, nmsgs;
static uint32_t fail_status;
static unsigned fail_count, race_count;

static void kv_clear(void)
{
    for (size_t i = 0; i < nkv; i++) {
        free(kv[i].key);
        free(kv[i].val);
    }
    nkv = 0;
    free(last_msg);
    last_msg = NULL;
    last_msg_len = nmsgs = 0;
}

static kv_entry *kv_find(const char *key, size_t klen)
{
    for (size_t i = 0; i < nkv; i++)
        if (strlen(kv[i].key) == klen && memcmp(kv[i].key, key, klen) == 0)
            return &kv[i];
    return NULL;
}

static void *dup0(const void *p, size_t n)
{
    char *c = malloc(n + 1);
    if (!c)
        abort();
    if (n)
        memcpy(c, p, n);
    c[n] = '\0';
    return c;
}

/* Store a value; MXU_RES_OK, or TOO_LARGE when the map is full (a harness
 * limit, far above what one request of kv-counter writes). */
static uint32_t kv_store(const char *key, size_t klen, const void *val, size_t len, uint64_t *rev)
{
    kv_entry *e = kv_find(key, klen);
    if (!e) {
        if (nkv == KV_MAX_KEYS)
            return MXU_RES_TOO_LARGE;
        e = &kv[nkv++];
        e->key = dup0(key, klen);
        e->val = NULL;
    }
    free(e->val);
    e->val = dup0(val, len);
    e->len = len;
    e->rev = next_rev++;
    *rev = e->rev;
    return MXU_RES_OK;
}

static void kv_remove(kv_entry *e)
{
    free(e->key);
    free(e->val);
    *e = kv[--nkv];
}

/* Another instance's increment, for fc_node_race(). */
static void race(const char *key, size_t klen)
{
    kv_entry *e = kv_find(key, klen);
    long long n = 0;
    if (e) {
        char *end;
        n = strtoll((const char *)e->val, &end, 10);
        if (e->len == 0 || *end)
            return;
    }
    char text[32];
    int tlen = snprintf(text, sizeof(text), "%lld", n + 1);
    uint64_t rev;
    kv_store(key, klen, text, (size_t)tlen, &rev);
}

/* ---- resource operations: what the SDK's runtime would send and the node answer ----- */

static int slice_is(mxu_slice s, const char *name)
{
    return s.len == strlen(name) && memcmp(s.ptr, name, s.len) == 0;
}

int mxu_fn_rt_call(mxu_slice desc, uint32_t op, uint64_t n1, uint64_t n2, const mxu_slice *args,
                   uint32_t nargs, mxu_res_reply_msg *rep)
{
    (void)n2;
    memset(rep, 0, sizeof(*rep));
    rep->call_id = ++mxu_fn_rt_g.call_id;
    if (fail_count > 0) {
        fail_count--;
        rep->status = fail_status;
        rep->message = (mxu_slice){"injected failure", 16};
        return 0;
    }
    int is_kv = slice_is(desc, "counters") && op >= MXU_RES_KV_GET && op <= MXU_RES_KV_CAS;
    int is_queue = slice_is(desc, "queue") && op == MXU_RES_QUEUE_PUBLISH;
    if (!is_kv && !is_queue) {
        rep->status = MXU_RES_DENIED;
        rep->message = (mxu_slice){"not declared, or not with that access", 37};
        return 0;
    }
    if (is_queue) {
        if (nargs != 1)
            abort(); /* fn-resource.c always sends the message */
        if (args[0].len > QUEUE_MAX_MSG) {
            rep->status = MXU_RES_TOO_LARGE;
            rep->message = (mxu_slice){"the message is over 256 KiB", 27};
            return 0;
        }
        free(last_msg);
        last_msg = dup0(args[0].ptr, args[0].len);
        last_msg_len = args[0].len;
        rep->n1 = ++nmsgs;
        return 0;
    }
    if (nargs < 1)
        abort();
    mxu_slice key = args[0];
    if (key.len == 0 || key.len > KV_MAX_KEY || memchr(key.ptr, '\0', key.len)) {
        rep->status = key.len > KV_MAX_KEY ? MXU_RES_TOO_LARGE : MXU_RES_INVALID;
        return 0;
    }
    kv_entry *e = kv_find(key.ptr, key.len);
    switch (op) {
    case MXU_RES_KV_GET:
        if (!e) {
            rep->status = MXU_RES_NOT_FOUND;
            return 0;
        }
        rep->n1 = e->rev;
        rep->nvals = 1;
        rep->vals[0] = (mxu_slice){(const char *)e->val, (uint32_t)e->len};
        return 0;
    case MXU_RES_KV_DELETE:
        if (!e)
            rep->status = MXU_RES_NOT_FOUND;
        else
            kv_remove(e);
        return 0;
    case MXU_RES_KV_PUT:
    case MXU_RES_KV_CAS:
        if (nargs != 2)
            abort();
        if (args[1].len > KV_MAX_VALUE) {
            rep->status = MXU_RES_TOO_LARGE;
            return 0;
        }
        if (op == MXU_RES_KV_CAS) {
            if (race_count > 0) {
                race_count--;
                race(key.ptr, key.len);
                e = kv_find(key.ptr, key.len);
            }
            if ((e ? e->rev : 0) != n1) {
                rep->status = MXU_RES_CONFLICT;
                return 0;
            }
        }
        rep->status = kv_store(key.ptr, key.len, args[1].ptr, args[1].len, &rep->n1);
        return 0;
    }
    abort(); /* the blocks use nothing else */
}

void mxu_fn_rt_call_done(void) {}

void mxu_fn_rt_bad_reply(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "fuzz-catalog: the harness sent a bad reply: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    abort();
}

void fc_node_fail(uint32_t status, unsigned count)
{
    fail_status = status;
    fail_count = count;
}

void fc_node_race(unsigned count)
{
    race_count = count;
}

void fc_kv_set(const char *key, const void *val, size_t len)
{
    uint64_t rev;
    kv_store(key, strlen(key), val, len, &rev);
}

int fc_kv_get(const char *key, const char **val, size_t *len)
{
    kv_entry *e = kv_find(key, strlen(key));
    if (!e)
        return -1;
    *val = (const char *)e->val;
    *len = e->len;
    return 0;
}

size_t fc_queue_count(void)
{
    return nmsgs;
}

const void *fc_queue_last(size_t *len)
{
    *len = last_msg_len;
    return last_msg;
}

/* ---- the instance --------------------------------------------------------------------- */

void fc_reset(void)
{
    mxu_fn_rt *rt = &mxu_fn_rt_g;
    rt->tp = &transport;
    rt->state = MXU_FN_AWAIT_INIT;
    rt->function = "fuzz";
    rt->version = 1;
    rt->concurrency = 1;
    rt->config = config;
    rt->nconfig = 0;
    rt->cur_id = 0;
    fail_count = race_count = 0;
    kv_clear();
}

void fc_config(const char *name, const char *value)
{
    mxu_fn_rt *rt = &mxu_fn_rt_g;
    if (rt->nconfig == MAX_CONFIG)
        abort();
    config[rt->nconfig++] = (mxu_fn_config_entry){name, value};
}

int fc_init(int (*init)(void))
{
    mxu_fn_rt *rt = &mxu_fn_rt_g;
    int rc = init ? init() : 0;
    rt->state = MXU_FN_READY;
    return rc;
}

static char *header_copy(const mxu_res *res, const char *name)
{
    const char *hb = (const char *)res->hdr_bytes.data;
    for (size_t i = 0; i < res->nhdrs; i++) {
        const mxu_fn_res_hdr *h = &res->hdrs[i];
        if (h->name_len == strlen(name) && strncasecmp(hb + h->name_off, name, h->name_len) == 0)
            return dup0(hb + h->value_off, h->value_len);
    }
    return NULL;
}

void fc_invoke(int (*handle)(mxu_req *, mxu_res *), const fc_request *r, fc_answer *a)
{
    mxu_fn_rt *rt = &mxu_fn_rt_g;
    mxu_req *req = &rt->req;

    /* The request, as on_invoke() lays it out: strings NUL-terminated, the
     * body followed by a NUL (its own allocation, so that ASan sees a read
     * past it). */
    mxu_fn_hdr hdrs[8];
    if (r->nhdrs > sizeof(hdrs) / sizeof(hdrs[0]))
        abort();
    for (size_t i = 0; i < r->nhdrs; i++)
        hdrs[i] = (mxu_fn_hdr){r->hdr_names[i], r->hdr_values[i], (uint32_t)strlen(r->hdr_names[i]),
                               (uint32_t)strlen(r->hdr_values[i])};
    char *body = dup0(r->body, r->len);
    static uint64_t ids;
    rt->cur_id = ++ids;
    *req = (mxu_req){
        .id = rt->cur_id,
        .method = "POST",
        .path = r->path ? r->path : "/",
        .query = r->query ? r->query : "",
        .headers = hdrs,
        .nheaders = r->nhdrs,
        .body = body,
        .body_len = r->len,
        .deadline_at_ms = 3000,
    };

    mxu_fn_api_begin();
    int rc = handle(req, &rt->res);
    mxu_res *res = &rt->res;
    /* queue_result() in sdk/fn-runtime.c: the status the RESULT carries. */
    if (res->failed) {
        *a = (fc_answer){.status = 500, .body = dup0("", 0)};
    } else {
        a->status = res->status ? (int)res->status : rc != 0 ? 500 : 200;
        a->ctype = header_copy(res, "Content-Type");
        a->body = dup0(res->body.data, res->body.len);
        a->len = res->body.len;
    }
    mxu_fn_api_end();
    rt->cur_id = 0;
    /* FUZZ_CATALOG_TRACE=1: every answer on stderr, for reading a crash's input. */
    static int trace = -1;
    if (trace < 0)
        trace = getenv("FUZZ_CATALOG_TRACE") != NULL;
    if (trace)
        fprintf(stderr, "fuzz-catalog: %s?%s (%zu bytes) -> %d %s: %.*s\n", req->path, req->query,
                r->len, a->status, a->ctype ? a->ctype : "-", a->len > 300 ? 300 : (int)a->len,
                (const char *)a->body);
    *req = (mxu_req){0};
    free(body);
}

void fc_answer_free(fc_answer *a)
{
    free(a->ctype);
    free(a->body);
    *a = (fc_answer){0};
}
