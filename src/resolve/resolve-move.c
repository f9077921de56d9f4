/*
 * Moving a resource to another backend while functions keep using it.
 *
 * 1. The destination is opened; the binding enters the moving state.
 * 2. A copier walks the source (list by pages; for kv: get + import with the
 *    same revision; for blobs: stat + chunked read + chunked write) and
 *    copies every key that no function has written since the move began.
 * 3. Meanwhile the source stays authoritative: reads go to it, and every
 *    write goes to the source first and then to the destination (kv: as an
 *    import of the revision the source gave it), and marks the key as
 *    touched, so the copier never overwrites it with an older value. A
 *    function is answered only when both writes are done.
 * 4. When the copy is complete, new writes are held for a moment while the
 *    dual writes in flight finish (so none can land on the destination after
 *    a newer one), then the map is updated durably, the binding switches to
 *    the destination, and the held writes run there.
 *
 * Blob uploads. A blob write changes an object only with its LAST chunk,
 * so only that chunk (or a delete) marks the key. An upload that begins
 * during the move is written to both backends chunk by chunk (each has the
 * same upload of the same writer). An upload that was already open when the
 * move began exists on the source only: it goes on there, the copier waits
 * for every such upload to end before it finishes, and the object of each
 * one that was published is copied again, after it appeared. Such an upload
 * ends at the latest with its invocation (the node abandons what an ended
 * invocation left open), so the wait is bounded by the function's timeout.
 * The copier's own uploads to the destination belong to MXU_RES_OWNER_MOVE;
 * one it gives up half-way is abandoned.
 *
 * Queues are not moved this way: a message leased from the source when the
 * switch happens could never be acked. `move` refuses them (set the location
 * of an empty queue instead).
 */
#include "resolve-core.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define COPY_PAGE  128
#define BLOB_CHUNK (1u << 20)

typedef struct touched {
    char *key;
    UT_hash_handle hh;
} touched;

typedef struct held_call {
    mxu_res_call call;
    char *key, *cursor;
    void *data;
    mxu_res_cb cb;
    void *ud;
    struct held_call *next;
} held_call;

struct mxu_move {
    mxu_binding *b;
    mxu_backend *src; /* reference, for the copier */
    mxu_backend *dst; /* reference, for the copier and dual writes */
    touched *touched;
    uint64_t copied, skipped;
    /* copier state */
    char **page;
    size_t npage, ipage;
    char *cursor;
    bool listed_all;
    uint64_t blob_off, blob_size; /* blob being copied */
    /* uploads open when the move began that have not ended, the objects
     * they published (to copy again), and whether the copier waits for them */
    size_t premove_open;
    char **recopy;
    size_t nrecopy;
    bool waiting;
    /* finishing */
    size_t writes_inflight;
    bool finishing;
    bool dst_failed;  /* a dual write failed there: the move cannot complete */
    bool copy_failed; /* the copier failed: end with `failure` once writes land */
    mxu_err failure;
    held_call *held, **held_tail;
    void (*done)(void *ud, const mxu_err *err);
    void *ud;
};

static void copy_next(mxu_move *m);

static bool is_touched(mxu_move *m, const char *key)
{
    touched *t = NULL;
    HASH_FIND_STR(m->touched, key, t);
    return t != NULL;
}

static void touch(mxu_move *m, const char *key)
{
    if (key == NULL || is_touched(m, key))
        return;
    touched *t = mxu_calloc(1, sizeof(*t));
    t->key = mxu_strdup(key);
    HASH_ADD_KEYPTR(hh, m->touched, t->key, strlen(t->key), t);
}

static void untouch(mxu_move *m, const char *key)
{
    touched *t = NULL;
    HASH_FIND_STR(m->touched, key, t);
    if (t != NULL) {
        HASH_DEL(m->touched, t);
        free(t->key);
        free(t);
    }
}

static void page_free(mxu_move *m)
{
    for (size_t i = 0; i < m->npage; i++)
        free(m->page[i]);
    free(m->page);
    m->page = NULL;
    m->npage = m->ipage = 0;
}

static void move_free(mxu_move *m)
{
    touched *t, *tmp;
    HASH_ITER(hh, m->touched, t, tmp)
    {
        HASH_DEL(m->touched, t);
        free(t->key);
        free(t);
    }
    page_free(m);
    for (size_t i = 0; i < m->nrecopy; i++)
        free(m->recopy[i]);
    free(m->recopy);
    free(m->cursor);
    mxu_backend_unref(m->src);
    mxu_backend_unref(m->dst);
    free(m);
}

/* End the move: on success switch, on failure stay where we were. */
static void move_end(mxu_move *m, const mxu_err *failure)
{
    mxu_binding *b = m->b;
    mxu_err err;
    mxu_err_clear(&err);
    if (failure == NULL && b->r &&
        mxu_resolver_map_put(b->r, b->tenant, b->kind, b->name,
                             strcmp(m->dst->location, "embedded") == 0 ? NULL : m->dst->location,
                             &err) < 0)
        failure = &err;
    b->move = NULL;
    /* Uploads still open began before the move (it failed) or went to both
     * backends: either way they go on where the binding now points. */
    for (mxu_upload_ref *u = b->uploads; u != NULL; u = u->hh.next)
        u->pre_move = false;
    mxu_backend *dst = b->move_to;
    b->move_to = NULL;
    if (failure == NULL) {
        mxu_info("%s: moved to %s (%llu copied, %llu written meanwhile)", b->uri, dst->location,
                 (unsigned long long)m->copied, (unsigned long long)m->skipped);
        mxu_binding_switch(b, dst);
    } else {
        mxu_warn("%s: move to %s failed: %s", b->uri, dst->location, failure->msg);
        mxu_backend_unref(dst);
    }
    /* Held writes run where the resource now is. */
    for (held_call *h = m->held, *next; h != NULL; h = next) {
        next = h->next;
        mxu_binding_dispatch(b, &h->call, h->cb, h->ud);
        free(h->key);
        free(h->cursor);
        free(h->data);
        free(h);
    }
    m->held = NULL;
    if (m->done)
        m->done(m->ud, failure);
    move_free(m);
    mxu_binding_unref(b); /* the move's reference */
}

static void maybe_finish(mxu_move *m)
{
    if (!m->finishing || m->writes_inflight > 0)
        return;
    if (m->copy_failed) {
        move_end(m, &m->failure);
        return;
    }
    if (m->dst_failed) {
        /* The destination missed a write: switching would lose it. */
        mxu_err err;
        mxu_err_set(&err, EIO, "a write to the destination failed during the move");
        move_end(m, &err);
        return;
    }
    move_end(m, NULL);
}

static void copy_fail(mxu_move *m, const char *what, const mxu_res_result *res)
{
    mxu_err_set(&m->failure, EIO, "%s: %s", what, res->message ? res->message : "backend error");
    m->copy_failed = true;
    /* Dual writes in flight point at the move and its destination: end only
     * once they have landed, holding new writes meanwhile (maybe_finish). */
    m->finishing = true;
    maybe_finish(m);
}

/* ---- the copier: kv ---------------------------------------------------------------- */

static void kv_imported(void *ud, const mxu_res_result *res)
{
    mxu_move *m = ud;
    if (res->status != MXU_RES_OK) {
        copy_fail(m, "writing to the destination", res);
        return;
    }
    m->copied++;
    copy_next(m);
}

static void kv_got(void *ud, const mxu_res_result *res)
{
    mxu_move *m = ud;
    const char *key = m->page[m->ipage - 1];
    if (res->status == MXU_RES_NOT_FOUND || is_touched(m, key)) {
        /* Deleted meanwhile, or a function wrote it: its dual write rules. */
        m->skipped++;
        copy_next(m);
        return;
    }
    if (res->status != MXU_RES_OK) {
        copy_fail(m, "reading from the source", res);
        return;
    }
    mxu_res_call c = {
        .op = MXU_RES_KV_IMPORT, .key = key, .data = res->data, .len = res->len, .n1 = res->n1};
    mxu_backend_call(m->dst, &c, kv_imported, m);
}

/* ---- the copier: blobs ------------------------------------------------------------- */

static void blob_copy_chunk(mxu_move *m);

static void blob_written(void *ud, const mxu_res_result *res)
{
    mxu_move *m = ud;
    if (res->status != MXU_RES_OK) {
        copy_fail(m, "writing to the destination", res);
        return;
    }
    if (m->blob_off >= m->blob_size) {
        m->copied++;
        copy_next(m);
        return;
    }
    blob_copy_chunk(m);
}

static void blob_read_chunk(void *ud, const mxu_res_result *res)
{
    mxu_move *m = ud;
    const char *key = m->page[m->ipage - 1];
    if (res->status == MXU_RES_NOT_FOUND || is_touched(m, key)) {
        /* Deleted or published anew meanwhile: drop what was copied of it. */
        if (m->blob_off > 0 && m->dst->driver->blob_abandon != NULL)
            m->dst->driver->blob_abandon(m->dst, key, MXU_RES_OWNER_MOVE);
        m->skipped++;
        copy_next(m);
        return;
    }
    if (res->status != MXU_RES_OK) {
        copy_fail(m, "reading from the source", res);
        return;
    }
    unsigned flags = 0;
    if (m->blob_off == 0)
        flags |= MXU_RES_BLOB_FIRST;
    uint64_t off = m->blob_off;
    m->blob_off += res->len;
    if (m->blob_off >= m->blob_size || res->len == 0) {
        flags |= MXU_RES_BLOB_LAST;
        m->blob_off = m->blob_size;
    }
    mxu_res_call c = {.op = MXU_RES_BLOB_WRITE,
                      .owner = MXU_RES_OWNER_MOVE,
                      .key = key,
                      .data = res->data,
                      .len = res->len,
                      .n1 = off,
                      .n2 = flags};
    mxu_backend_call(m->dst, &c, blob_written, m);
}

static void blob_copy_chunk(mxu_move *m)
{
    const char *key = m->page[m->ipage - 1];
    mxu_res_call c = {.op = MXU_RES_BLOB_READ, .key = key, .n1 = m->blob_off, .n2 = BLOB_CHUNK};
    mxu_backend_call(m->src, &c, blob_read_chunk, m);
}

static void blob_stated(void *ud, const mxu_res_result *res)
{
    mxu_move *m = ud;
    if (res->status == MXU_RES_NOT_FOUND) {
        m->skipped++;
        copy_next(m);
        return;
    }
    if (res->status != MXU_RES_OK) {
        copy_fail(m, "reading from the source", res);
        return;
    }
    m->blob_off = 0;
    m->blob_size = res->n1;
    blob_copy_chunk(m);
}

/* ---- the copier: pages ---------------------------------------------------------------- */

static void listed(void *ud, const mxu_res_result *res)
{
    mxu_move *m = ud;
    if (res->status != MXU_RES_OK) {
        copy_fail(m, "listing the source", res);
        return;
    }
    page_free(m);
    m->page = mxu_calloc(res->nkeys + 1, sizeof(char *));
    for (size_t i = 0; i < res->nkeys; i++)
        m->page[i] = mxu_strdup(res->keys[i]);
    m->npage = res->nkeys;
    free(m->cursor);
    m->cursor = mxu_strdup(res->cursor ? res->cursor : "");
    if (m->cursor[0] == '\0' || res->nkeys == 0)
        m->listed_all = true;
    copy_next(m);
}

static void copy_next(mxu_move *m)
{
    if (m->ipage < m->npage) {
        const char *key = m->page[m->ipage++];
        if (is_touched(m, key)) {
            m->skipped++;
            copy_next(m);
            return;
        }
        bool kv = strcmp(m->b->kind, "kv") == 0;
        mxu_res_call c = {.op = kv ? MXU_RES_KV_GET : MXU_RES_BLOB_STAT, .key = key};
        mxu_backend_call(m->src, &c, kv ? kv_got : blob_stated, m);
        return;
    }
    if (!m->listed_all) {
        bool kv = strcmp(m->b->kind, "kv") == 0;
        mxu_res_call c = {.op = kv ? MXU_RES_KV_LIST : MXU_RES_BLOB_LIST,
                          .key = "",
                          .cursor = m->cursor ? m->cursor : "",
                          .n1 = COPY_PAGE};
        mxu_backend_call(m->src, &c, listed, m);
        return;
    }
    if (m->nrecopy > 0) {
        /* Objects published by uploads older than the move, on the source
         * only: copy them again, now as they are there. */
        page_free(m);
        m->page = m->recopy;
        m->npage = m->nrecopy;
        m->recopy = NULL;
        m->nrecopy = 0;
        for (size_t i = 0; i < m->npage; i++)
            untouch(m, m->page[i]);
        copy_next(m);
        return;
    }
    if (m->premove_open > 0) {
        m->waiting = true; /* mxu_move_upload_ended() goes on */
        return;
    }
    /* Everything copied: hold new writes until the dual writes in flight land. */
    m->finishing = true;
    maybe_finish(m);
}

void mxu_move_upload_ended(mxu_binding *b, const char *key, bool published)
{
    mxu_move *m = b->move;
    if (m->premove_open > 0)
        m->premove_open--;
    if (published) {
        m->recopy = mxu_realloc(m->recopy, (m->nrecopy + 1) * sizeof(char *));
        m->recopy[m->nrecopy++] = mxu_strdup(key);
    }
    if (m->waiting && (m->nrecopy > 0 || m->premove_open == 0)) {
        m->waiting = false;
        copy_next(m);
    }
}

/* ---- functions' calls during a move ------------------------------------------------------ */

static bool is_write(enum mxu_res_op op)
{
    return op == MXU_RES_KV_PUT || op == MXU_RES_KV_DELETE || op == MXU_RES_KV_CAS ||
           op == MXU_RES_BLOB_WRITE || op == MXU_RES_BLOB_DELETE;
}

typedef struct dual_ctx {
    mxu_move *m;
    mxu_backend *dst;
    mxu_res_call call;
    char *key;
    void *data;
    mxu_res_cb cb;
    void *ud;
    mxu_res_result first; /* the source's answer, given to the function */
    uint64_t rev;
} dual_ctx;

static void dual_second(void *ud, const mxu_res_result *res)
{
    dual_ctx *d = ud;
    /* The source answered for the function; a failure at the destination
     * fails the move instead (it must not switch with a write missing). */
    mxu_res_result out = d->first;
    out.n1 = d->rev;
    if (res->status != MXU_RES_OK && res->status != MXU_RES_NOT_FOUND) {
        mxu_warn("%s: write to the move's destination failed: %s", d->key ? d->key : "?",
                 res->message ? res->message : "?");
        d->m->dst_failed = true;
    }
    d->cb(d->ud, &out);
    mxu_move *m = d->m;
    free(d->key);
    free(d->data);
    free(d);
    m->writes_inflight--;
    maybe_finish(m);
}

static void dual_first(void *ud, const mxu_res_result *res)
{
    dual_ctx *d = ud;
    d->first = *res;
    d->first.message = NULL; /* not kept beyond this callback */
    d->rev = res->n1;
    if (res->status != MXU_RES_OK) {
        mxu_res_result out = *res;
        d->cb(d->ud, &out);
        mxu_move *m = d->m;
        free(d->key);
        free(d->data);
        free(d);
        m->writes_inflight--;
        maybe_finish(m);
        return;
    }
    mxu_res_call second = d->call;
    second.key = d->key;
    second.data = d->data;
    if (d->call.op == MXU_RES_KV_PUT || d->call.op == MXU_RES_KV_CAS) {
        /* The same revision the source gave, so CAS works across the switch. */
        second.op = MXU_RES_KV_IMPORT;
        second.n1 = res->n1;
    }
    mxu_backend_call(d->dst, &second, dual_second, d);
}

void mxu_move_call(mxu_binding *b, const mxu_res_call *c, mxu_res_cb cb, void *ud)
{
    mxu_move *m = b->move;
    if (!is_write(c->op)) {
        mxu_backend_call(b->backend, c, cb, ud); /* the source is authoritative */
        return;
    }
    if (m->finishing) {
        held_call *h = mxu_calloc(1, sizeof(*h));
        h->call = *c;
        h->key = c->key ? mxu_strdup(c->key) : NULL;
        h->cursor = c->cursor ? mxu_strdup(c->cursor) : NULL;
        if (c->len) {
            h->data = mxu_malloc(c->len);
            memcpy(h->data, c->data, c->len);
        }
        h->call.key = h->key;
        h->call.cursor = h->cursor;
        h->call.data = h->data;
        h->cb = cb;
        h->ud = ud;
        *m->held_tail = h;
        m->held_tail = &h->next;
        return;
    }
    if (c->op == MXU_RES_BLOB_WRITE && !(c->n2 & MXU_RES_BLOB_FIRST)) {
        mxu_upload_ref *u = mxu_binding_upload(b, c->owner, c->key);
        if (u != NULL && u->pre_move) {
            /* Began before the move: it exists on the source only, goes on
             * there, and is copied again once published. */
            mxu_backend_call(b->backend, c, cb, ud);
            return;
        }
    }
    /* A blob upload changes its object only with its last chunk. */
    if (c->op != MXU_RES_BLOB_WRITE || (c->n2 & MXU_RES_BLOB_LAST))
        touch(m, c->key);
    dual_ctx *d = mxu_calloc(1, sizeof(*d));
    d->m = m;
    d->dst = m->dst;
    d->call = *c;
    d->key = c->key ? mxu_strdup(c->key) : NULL;
    if (c->len) {
        d->data = mxu_malloc(c->len);
        memcpy(d->data, c->data, c->len);
    }
    d->call.key = d->key;
    d->call.data = d->data;
    d->cb = cb;
    d->ud = ud;
    m->writes_inflight++;
    mxu_backend_call(b->backend, &d->call, dual_first, d);
}

json_t *mxu_move_json(mxu_binding *b)
{
    mxu_move *m = b->move;
    /* uploads_open: uploads older than the move it still waits for. */
    return json_pack("{s:s, s:I, s:I, s:b, s:I}", "to", m->dst->location, "copied",
                     (json_int_t)m->copied, "written_meanwhile", (json_int_t)m->skipped,
                     "finishing", m->finishing, "uploads_open", (json_int_t)m->premove_open);
}

int mxu_resolver_move(mxu_resolver *r, const char *tenant, const char *uri, const char *location,
                      void (*done)(void *ud, const mxu_err *err), void *ud, mxu_err *err)
{
    char kind[16], name[64];
    if (mxu_resource_parse(uri, kind, sizeof(kind), name, sizeof(name), err) < 0)
        return -1;
    if (strcmp(kind, "queue") == 0)
        return mxu_err_set(err, EINVAL,
                           "%s: queues cannot be moved while in use (a leased message could "
                           "never be acked); set the location of an empty queue instead",
                           uri);
    mxu_binding *b = mxu_resolver_bind(r, tenant, uri, err);
    if (b == NULL)
        return -1;
    if (b->move) {
        mxu_err_set(err, EBUSY, "%s is already being moved to %s", uri, b->move_to->location);
        mxu_binding_unref(b);
        return -1;
    }
    if (strcmp(b->backend->location, location) == 0) {
        mxu_binding_unref(b);
        return mxu_err_set(err, EINVAL, "%s is already at %s", uri, location);
    }
    mxu_backend *dst = mxu_resolver_open_backend(r, kind, b->key, location, err);
    if (dst == NULL) {
        mxu_binding_unref(b);
        return -1;
    }
    mxu_move *m = mxu_calloc(1, sizeof(*m));
    m->b = b; /* keeps the reference bind() gave us until the move ends */
    m->src = b->backend;
    m->src->refs++;
    m->dst = dst;
    dst->refs++;
    m->held_tail = &m->held;
    m->done = done;
    m->ud = ud;
    b->move = m;
    b->move_to = dst; /* the binding's reference */
    for (mxu_upload_ref *u = b->uploads; u != NULL; u = u->hh.next) {
        u->pre_move = true;
        m->premove_open++;
    }
    mxu_info("%s: moving from %s to %s", uri, m->src->location, location);
    copy_next(m);
    return 0;
}
