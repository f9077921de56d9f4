/*
 * The resolver: the resource map (durable, in the node's state.db) and the
 * live bindings that instances' descriptor tables point at.
 *
 * Divisions: the map (load, set), bindings (bind, call, switch), moves
 * (copy while dual-writing, then switch; see resolve-move.c).
 *
 * Lifetimes. A backend is reference-counted: its binding holds one reference
 * while it is current, every operation in flight one more. Switching a
 * binding to a new location opens the new backend first (so a bad location
 * changes nothing), swaps the pointer, and drops the binding's reference to
 * the old one, which closes once its last operation has called back.
 */
#include "resolve-core.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* ---- backends ------------------------------------------------------------------ */

void mxu_backend_unref(mxu_backend *be)
{
    if (be == NULL || --be->refs > 0)
        return;
    free(be->resource);
    free(be->location);
    be->resource = be->location = NULL;
    be->driver->close(be);
}

static const char *kind_default(const char *kind)
{
    MXU_UNUSED(kind);
    return "embedded";
}

/* "embedded" → the kind's local driver; "redis://..." → "redis". */
static int location_scheme(const char *kind, const char *location, char *scheme, size_t len,
                           mxu_err *err)
{
    if (strcmp(location, "embedded") == 0) {
        snprintf(scheme, len, "%s", strcmp(kind, "blob") == 0 ? "fs" : "embedded");
        return 0;
    }
    const char *sep = strstr(location, "://");
    if (sep == NULL || sep == location || (size_t)(sep - location) >= len)
        return mxu_err_set(err, EINVAL,
                           "'%s' is not a backend location (write embedded, "
                           "redis://HOST:PORT/DB or fs:///DIR)",
                           location);
    memcpy(scheme, location, (size_t)(sep - location));
    scheme[sep - location] = '\0';
    return 0;
}

mxu_backend *mxu_resolver_open_backend(mxu_resolver *r, const char *kind, const char *resource,
                                       const char *location, mxu_err *err)
{
    char scheme[32];
    if (location_scheme(kind, location, scheme, sizeof(scheme), err) < 0)
        return NULL;
    const mxu_driver *d = mxu_driver_find(kind, scheme);
    if (d == NULL) {
        mxu_err_set(err, EINVAL, "no %s backend for '%s' (scheme '%s')", kind, location, scheme);
        return NULL;
    }
    mxu_backend_config cfg = {
        .loop = r->loop, .data_dir = r->data_dir, .resource = resource, .location = location};
    mxu_backend *be = NULL;
    if (d->open(&cfg, &be, err) < 0)
        return NULL;
    be->driver = d;
    be->resource = mxu_strdup(resource);
    be->location = mxu_strdup(location);
    be->refs = 1;
    return be;
}

/* ---- the map --------------------------------------------------------------------- */

int mxu_resource_parse(const char *uri, char *kind, size_t kindlen, char *name, size_t namelen,
                       mxu_err *err)
{
    const char *colon = uri ? strchr(uri, ':') : NULL;
    if (colon == NULL || (size_t)(colon - uri) >= kindlen)
        return mxu_err_set(err, EINVAL, "'%s' is not a resource (write KIND:NAME, e.g. kv:orders)",
                           uri ? uri : "");
    memcpy(kind, uri, (size_t)(colon - uri));
    kind[colon - uri] = '\0';
    if (strcmp(kind, "kv") != 0 && strcmp(kind, "blob") != 0 && strcmp(kind, "queue") != 0)
        return mxu_err_set(err, EINVAL, "'%s': resources here are kv:, blob: or queue:", uri);
    if (!mxu_name_valid(colon + 1) || strlen(colon + 1) >= namelen)
        return mxu_err_set(err, EINVAL,
                           "'%s': a resource name is lowercase letters, digits, '-' and '_'", uri);
    snprintf(name, namelen, "%s", colon + 1);
    return 0;
}

static int db_exec(mxu_resolver *r, const char *sql, mxu_err *err)
{
    char *msg = NULL;
    if (sqlite3_exec(r->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        mxu_err_set(err, EIO, "resource map: %s", msg ? msg : sqlite3_errmsg(r->db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

/* The stored location of a resource, or NULL (default). Caller frees. */
static char *map_get(mxu_resolver *r, const char *tenant, const char *kind, const char *name)
{
    sqlite3_stmt *st = NULL;
    char *out = NULL;
    if (sqlite3_prepare_v2(r->db,
                           "SELECT location FROM resource_map WHERE tenant=?1 AND kind=?2 AND "
                           "name=?3",
                           -1, &st, NULL) != SQLITE_OK)
        return NULL;
    sqlite3_bind_text(st, 1, tenant, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, name, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW)
        out = mxu_strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return out;
}

int mxu_resolver_map_put(mxu_resolver *r, const char *tenant, const char *kind, const char *name,
                         const char *location, mxu_err *err)
{
    sqlite3_stmt *st = NULL;
    const char *sql = location ? "INSERT INTO resource_map(tenant, kind, name, location) "
                                 "VALUES(?1, ?2, ?3, ?4) ON CONFLICT(tenant, kind, name) DO "
                                 "UPDATE SET location=excluded.location"
                               : "DELETE FROM resource_map WHERE tenant=?1 AND kind=?2 AND name=?3";
    if (sqlite3_prepare_v2(r->db, sql, -1, &st, NULL) != SQLITE_OK)
        return mxu_err_set(err, EIO, "resource map: %s", sqlite3_errmsg(r->db));
    sqlite3_bind_text(st, 1, tenant, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, name, -1, SQLITE_STATIC);
    if (location)
        sqlite3_bind_text(st, 4, location, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return mxu_err_set(err, EIO, "resource map: %s", sqlite3_errmsg(r->db));
    return 0;
}

int mxu_resolver_open(const mxu_resolver_config *cfg, mxu_resolver **out, mxu_err *err)
{
    mxu_resolver *r = mxu_calloc(1, sizeof(*r));
    r->loop = cfg->loop;
    r->data_dir = mxu_strdup(cfg->data_dir);
    _cleanup_free_ char *path = mxu_path_join(cfg->data_dir, "state.db");
    if (sqlite3_open_v2(path, &r->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        mxu_err_set(err, EIO, "cannot open %s: %s", path, sqlite3_errmsg(r->db));
        goto fail;
    }
    sqlite3_busy_timeout(r->db, 5000);
    /* The registry owns the rest of state.db; this table is the map's. The
     * map is small and written rarely: every change is durable at once. */
    if (db_exec(r, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", err) < 0 ||
        db_exec(r,
                "CREATE TABLE IF NOT EXISTS resource_map("
                " tenant TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL,"
                " location TEXT NOT NULL, PRIMARY KEY(tenant, kind, name))",
                err) < 0)
        goto fail;
    *out = r;
    return 0;
fail:
    sqlite3_close(r->db);
    free(r->data_dir);
    free(r);
    return -1;
}

void mxu_resolver_close(mxu_resolver *r)
{
    if (r == NULL)
        return;
    mxu_binding *b, *tmp;
    HASH_ITER(hh, r->bindings, b, tmp)
    {
        /* Bindings still referenced by units outlive the resolver's table
         * only until those units go; detach them. */
        HASH_DEL(r->bindings, b);
        b->r = NULL;
        mxu_binding_unref(b);
    }
    sqlite3_close(r->db);
    free(r->data_dir);
    free(r);
}

/* ---- bindings ----------------------------------------------------------------------- */

static mxu_binding *binding_find(mxu_resolver *r, const char *key)
{
    mxu_binding *b = NULL;
    HASH_FIND_STR(r->bindings, key, b);
    return b;
}

mxu_binding *mxu_resolver_bind(mxu_resolver *r, const char *tenant, const char *uri, mxu_err *err)
{
    char kind[16], name[64];
    if (mxu_resource_parse(uri, kind, sizeof(kind), name, sizeof(name), err) < 0)
        return NULL;
    _cleanup_free_ char *key = mxu_asprintf("%s/%s/%s", tenant, kind, name);
    mxu_binding *b = binding_find(r, key);
    if (b) {
        b->refs++;
        return b;
    }
    _cleanup_free_ char *stored = map_get(r, tenant, kind, name);
    const char *location = stored ? stored : kind_default(kind);
    mxu_backend *be = mxu_resolver_open_backend(r, kind, key, location, err);
    if (be == NULL)
        return NULL;
    b = mxu_calloc(1, sizeof(*b));
    b->r = r;
    b->key = steal_pointer(&key);
    b->tenant = mxu_strdup(tenant);
    b->uri = mxu_strdup(uri);
    snprintf(b->kind, sizeof(b->kind), "%s", kind);
    snprintf(b->name, sizeof(b->name), "%s", name);
    b->backend = be;
    b->refs = 2; /* the resolver's table and the caller */
    HASH_ADD_KEYPTR(hh, r->bindings, b->key, strlen(b->key), b);
    return b;
}

static void upload_ref_free(mxu_binding *b, mxu_upload_ref *u)
{
    HASH_DEL(b->uploads, u);
    free(u->id);
    free(u);
}

void mxu_binding_unref(mxu_binding *b)
{
    if (b == NULL || --b->refs > 0)
        return;
    /* Closing the backends below drops what these uploads left. */
    while (b->uploads != NULL)
        upload_ref_free(b, b->uploads);
    mxu_backend_unref(b->backend);
    mxu_backend_unref(b->move_to);
    free(b->key);
    free(b->tenant);
    free(b->uri);
    free(b);
}

const char *mxu_binding_kind(const mxu_binding *b)
{
    return b->kind;
}
const char *mxu_binding_location(const mxu_binding *b)
{
    return b->backend->location;
}

/* Point the binding at a new backend (taking over `be`'s reference). */
void mxu_binding_switch(mxu_binding *b, mxu_backend *be)
{
    mxu_backend *old = b->backend;
    b->backend = be;
    mxu_backend_unref(old);
}

int mxu_resolver_set(mxu_resolver *r, const char *tenant, const char *uri, const char *location,
                     mxu_err *err)
{
    char kind[16], name[64];
    if (mxu_resource_parse(uri, kind, sizeof(kind), name, sizeof(name), err) < 0)
        return -1;
    if (location && (*location == '\0' || strcmp(location, kind_default(kind)) == 0))
        location = NULL;
    _cleanup_free_ char *key = mxu_asprintf("%s/%s/%s", tenant, kind, name);
    mxu_binding *b = binding_find(r, key);
    if (b && b->move)
        return mxu_err_set(err, EBUSY, "%s is being moved; wait for the move to finish", uri);
    /* Open first: a location that does not work changes nothing. (When the
     * resource is not bound now, this only checks the location.) */
    mxu_backend *be =
        mxu_resolver_open_backend(r, kind, key, location ? location : kind_default(kind), err);
    if (be == NULL)
        return -1;
    if (mxu_resolver_map_put(r, tenant, kind, name, location, err) < 0) {
        mxu_backend_unref(be);
        return -1;
    }
    if (b) {
        mxu_info("%s: now at %s (was %s)", uri, be->location, b->backend->location);
        mxu_binding_switch(b, be);
    } else {
        mxu_backend_unref(be);
    }
    return 0;
}

/* ---- calls ------------------------------------------------------------------------------ */

typedef struct call_ctx {
    mxu_backend *be;
    mxu_res_cb cb;
    void *ud;
} call_ctx;

static void call_done(void *ud, const mxu_res_result *res)
{
    call_ctx *c = ud;
    c->cb(c->ud, res);
    mxu_backend_unref(c->be);
    free(c);
}

static bool op_of_kind(enum mxu_res_op op, const char *kind)
{
    if (op >= MXU_RES_KV_GET && op <= MXU_RES_KV_LIST)
        return strcmp(kind, "kv") == 0;
    if (op >= MXU_RES_BLOB_READ && op <= MXU_RES_BLOB_DELETE)
        return strcmp(kind, "blob") == 0;
    if (op >= MXU_RES_QUEUE_PUBLISH && op <= MXU_RES_QUEUE_ACK)
        return strcmp(kind, "queue") == 0;
    return false;
}

void mxu_backend_call(mxu_backend *be, const mxu_res_call *c, mxu_res_cb cb, void *ud)
{
    const mxu_driver *d = be->driver;
    call_ctx *ctx = mxu_malloc(sizeof(*ctx));
    ctx->be = be;
    ctx->cb = cb;
    ctx->ud = ud;
    be->refs++;
    switch (c->op) {
    case MXU_RES_KV_GET:
        d->kv_get(be, c->key, call_done, ctx);
        return;
    case MXU_RES_KV_PUT:
        d->kv_put(be, c->key, c->data, c->len, call_done, ctx);
        return;
    case MXU_RES_KV_DELETE:
        d->kv_delete(be, c->key, call_done, ctx);
        return;
    case MXU_RES_KV_CAS:
        d->kv_cas(be, c->key, c->n1, c->data, c->len, call_done, ctx);
        return;
    case MXU_RES_KV_LIST:
        d->kv_list(be, c->key, c->cursor ? c->cursor : "", (size_t)c->n1, call_done, ctx);
        return;
    case MXU_RES_BLOB_READ:
        d->blob_read(be, c->key, c->n1, (size_t)c->n2, call_done, ctx);
        return;
    case MXU_RES_BLOB_WRITE:
        d->blob_write(be, c->key, c->owner, c->n1, (unsigned)c->n2, c->data, c->len, call_done,
                      ctx);
        return;
    case MXU_RES_BLOB_STAT:
        d->blob_stat(be, c->key, call_done, ctx);
        return;
    case MXU_RES_BLOB_LIST:
        d->blob_list(be, c->key, c->cursor ? c->cursor : "", (size_t)c->n1, call_done, ctx);
        return;
    case MXU_RES_BLOB_DELETE:
        d->blob_delete(be, c->key, call_done, ctx);
        return;
    case MXU_RES_QUEUE_PUBLISH:
        d->queue_publish(be, c->data, c->len, call_done, ctx);
        return;
    case MXU_RES_QUEUE_CONSUME:
        d->queue_consume(be, c->n1, call_done, ctx);
        return;
    case MXU_RES_QUEUE_ACK:
        d->queue_ack(be, c->key, call_done, ctx);
        return;
    case MXU_RES_SVC_CALL:
        break;
    }
    if ((int)c->op == MXU_RES_KV_IMPORT) {
        d->kv_import(be, c->key, c->data, c->len, c->n1, call_done, ctx);
        return;
    }
    mxu_res_result res = {.status = MXU_RES_INVALID, .message = "unknown operation"};
    call_done(ctx, &res);
}

/* ---- uploads -------------------------------------------------------------------------
 * Which blob uploads are open through a binding, by (owner, key): kept from a
 * successful FIRST chunk to the LAST one (or a failed FIRST, or the owner's
 * end). The driver keeps the uploads themselves; this is what lets the node
 * abandon an owner's uploads without asking every driver to search, and lets
 * a move tell uploads that began before it from those that began during it. */

mxu_upload_ref *mxu_binding_upload(mxu_binding *b, uint64_t owner, const char *key)
{
    if (b->uploads == NULL || key == NULL)
        return NULL;
    _cleanup_free_ char *id = mxu_asprintf("%016llx/%s", (unsigned long long)owner, key);
    mxu_upload_ref *u = NULL;
    HASH_FIND_STR(b->uploads, id, u);
    return u;
}

typedef struct upload_ctx {
    mxu_binding *b; /* a reference until the answer */
    uint64_t owner;
    char *key;
    unsigned flags;
    mxu_res_cb cb;
    void *ud;
} upload_ctx;

/* Bookkeeping after a chunk's answer, which the function already has. */
static void upload_track(mxu_binding *b, uint64_t owner, const char *key, unsigned flags,
                         enum mxu_res_status st)
{
    mxu_upload_ref *u = mxu_binding_upload(b, owner, key);
    bool first = flags & MXU_RES_BLOB_FIRST, last = flags & MXU_RES_BLOB_LAST;
    bool was_pre_move = u != NULL && u->pre_move;
    if (last || (first && st != MXU_RES_OK)) {
        /* Published, or no upload is left open by this owner. */
        if (u != NULL)
            upload_ref_free(b, u);
        if (was_pre_move && b->move)
            mxu_move_upload_ended(b, key, last && st == MXU_RES_OK);
        return;
    }
    if (!first || st != MXU_RES_OK)
        return;
    if (u == NULL) {
        u = mxu_calloc(1, sizeof(*u));
        u->id = mxu_asprintf("%016llx/%s", (unsigned long long)owner, key);
        u->key = u->id + 17;
        u->owner = owner;
        HASH_ADD_KEYPTR(hh, b->uploads, u->id, strlen(u->id), u);
        return;
    }
    /* Started over during a move: the new upload went to both backends. */
    u->pre_move = false;
    if (was_pre_move && b->move)
        mxu_move_upload_ended(b, key, false);
}

static void upload_done(void *ud, const mxu_res_result *res)
{
    upload_ctx *x = ud;
    enum mxu_res_status st = res->status;
    x->cb(x->ud, res);
    upload_track(x->b, x->owner, x->key, x->flags, st);
    mxu_binding_unref(x->b);
    free(x->key);
    free(x);
}

void mxu_binding_abandon(mxu_binding *b, uint64_t owner)
{
    if (b == NULL || b->uploads == NULL)
        return;
    /* Telling a move comes after the walk: it may end the move, whose held
     * writes change the table (and drop the move's reference: hold one). */
    char **ended = NULL;
    size_t nended = 0;
    mxu_upload_ref *u, *tmp;
    HASH_ITER(hh, b->uploads, u, tmp)
    {
        if (u->owner != owner)
            continue;
        /* On every backend the upload may have reached: the current one,
         * and during a move the destination too. */
        mxu_backend *bes[2] = {b->backend, b->move_to};
        for (size_t i = 0; i < 2; i++)
            if (bes[i] != NULL && bes[i]->driver->blob_abandon != NULL)
                bes[i]->driver->blob_abandon(bes[i], u->key, owner);
        if (u->pre_move && b->move) {
            ended = mxu_realloc(ended, (nended + 1) * sizeof(*ended));
            ended[nended++] = mxu_strdup(u->key);
        }
        upload_ref_free(b, u);
    }
    b->refs++;
    for (size_t i = 0; i < nended; i++) {
        if (b->move)
            mxu_move_upload_ended(b, ended[i], false);
        free(ended[i]);
    }
    free(ended);
    mxu_binding_unref(b);
}

void mxu_binding_call(mxu_binding *b, const mxu_res_call *c, mxu_res_cb cb, void *ud)
{
    if (!op_of_kind(c->op, b->kind)) {
        mxu_res_result res = {.status = MXU_RES_INVALID,
                              .message = "that operation does not apply to this kind of resource"};
        cb(ud, &res);
        return;
    }
    if (c->op == MXU_RES_BLOB_WRITE && c->key != NULL) {
        upload_ctx *x = mxu_malloc(sizeof(*x));
        *x = (upload_ctx){.b = b,
                          .owner = c->owner,
                          .key = mxu_strdup(c->key),
                          .flags = (unsigned)c->n2,
                          .cb = cb,
                          .ud = ud};
        b->refs++;
        cb = upload_done;
        ud = x;
    }
    mxu_binding_dispatch(b, c, cb, ud);
}

void mxu_binding_dispatch(mxu_binding *b, const mxu_res_call *c, mxu_res_cb cb, void *ud)
{
    if (b->move) {
        mxu_move_call(b, c, cb, ud);
        return;
    }
    mxu_backend_call(b->backend, c, cb, ud);
}

/* ---- listing -------------------------------------------------------------------------- */

json_t *mxu_resolver_list_json(mxu_resolver *r)
{
    json_t *arr = json_array();
    json_t *seen = json_object();
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(r->db,
                           "SELECT tenant, kind, name, location FROM resource_map ORDER BY "
                           "tenant, kind, name",
                           -1, &st, NULL) == SQLITE_OK) {
        while (sqlite3_step(st) == SQLITE_ROW) {
            const char *tenant = (const char *)sqlite3_column_text(st, 0);
            const char *kind = (const char *)sqlite3_column_text(st, 1);
            const char *name = (const char *)sqlite3_column_text(st, 2);
            _cleanup_free_ char *key = mxu_asprintf("%s/%s/%s", tenant, kind, name);
            _cleanup_free_ char *uri = mxu_asprintf("%s:%s", kind, name);
            json_t *o =
                json_pack("{s:s, s:s, s:s, s:b}", "resource", uri, "tenant", tenant, "backend",
                          (const char *)sqlite3_column_text(st, 3), "default", 0);
            mxu_binding *b = binding_find(r, key);
            json_object_set_new(o, "bound", json_boolean(b != NULL));
            if (b && b->move)
                json_object_set_new(o, "moving", mxu_move_json(b));
            json_array_append_new(arr, o);
            json_object_set_new(seen, key, json_true());
        }
        sqlite3_finalize(st);
    }
    /* Resources in use on their default backend. */
    for (mxu_binding *b = r->bindings; b != NULL; b = b->hh.next) {
        if (json_object_get(seen, b->key))
            continue;
        json_t *o = json_pack("{s:s, s:s, s:s, s:b, s:b}", "resource", b->uri, "tenant", b->tenant,
                              "backend", b->backend->location, "default", 1, "bound", 1);
        if (b->move)
            json_object_set_new(o, "moving", mxu_move_json(b));
        json_array_append_new(arr, o);
    }
    json_decref(seen);
    return arr;
}
