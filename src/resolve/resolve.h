/*
 * resolve — from logical resources to real backends.
 *
 * A function declares descriptors (`orders: {uri: "kv:orders", access: read-write}`);
 * the node's *resource map* binds each logical resource (tenant + kind + name,
 * e.g. default/kv/orders) to a *backend*: a driver of that kind plus where it
 * keeps the data ("embedded", "redis://127.0.0.1:6379/0", "fs:///srv/blobs").
 * Resources not in the map use the kind's default (kv, queue: embedded in the
 * node's data directory; blob: a directory there; svc: the node's own
 * dispatcher).
 *
 * Drivers are ops tables, one per kind (crun's cgroup managers; Redis'
 * ConnectionType), a file each (resolve-kv-embedded.c, resolve-kv-redis.c,
 * ...), chosen here from the backend's scheme — never by the function.
 *
 * A *binding* is the live link of one logical resource to its current
 * backend. Descriptor tables of instances hold bindings, not backends: when
 * the map changes, the binding switches to the new backend and every instance
 * sees it at once, without restarting; operations in flight hold a reference
 * to the backend they started on and finish there.
 *
 * Every driver operation completes through a callback. A callback may run
 * before the call returns (embedded drivers answer at once) or later from the
 * loop (network drivers); it runs exactly once. Byte runs handed to a
 * callback are valid only during the callback; arguments (keys, values,
 * chunks) are borrowed only for the duration of the call, so a driver copies
 * whatever it still needs afterwards.
 */
#ifndef MXU_RESOLVE_H
#define MXU_RESOLVE_H

#include "core/core.h"
#include "unit/frame.h"

#include <jansson.h>
#include <uv.h>

/* ---- results ------------------------------------------------------------------ */

typedef struct mxu_res_result {
    enum mxu_res_status status; /* MXU_RES_OK or why not */
    const char *message;        /* for people; NULL when OK */
    /* What the op gives back (see the table in frame.h for each op). */
    const void *data; /* KV_GET value, BLOB_READ bytes, QUEUE_CONSUME message */
    size_t len;
    const char *receipt; /* QUEUE_CONSUME: the receipt to ack with */
    uint64_t n1, n2;     /* revision, size, mtime, id, attempts ... */
    /* KV_LIST / BLOB_LIST: keys of this page and where the next one starts
     * ("" = no more). */
    const char *const *keys;
    size_t nkeys;
    const char *cursor;
} mxu_res_result;

typedef void (*mxu_res_cb)(void *ud, const mxu_res_result *r);

/* A backend instance: one driver bound to one logical resource at one place.
 * The first member of every driver's own struct, so drivers can downcast.
 * A driver's open() sets `driver` and leaves the rest zero; the resolver
 * owns the other fields (fills them after open, frees its strings before
 * calling close). */
typedef struct mxu_backend {
    const struct mxu_driver *driver;
    char *resource; /* "default/kv/orders" */
    char *location; /* "embedded", "redis://127.0.0.1:6379/0" */
    int refs;       /* the binding's, plus one per operation in flight */
} mxu_backend;

/* What a driver needs to open a backend. */
typedef struct mxu_backend_config {
    uv_loop_t *loop;
    const char *data_dir; /* the node's data directory (embedded / fs defaults) */
    const char *resource; /* "default/kv/orders": namespace inside the backend */
    const char *location; /* the map's value for it */
} mxu_backend_config;

/* ---- drivers -------------------------------------------------------------------- */

typedef struct mxu_driver {
    const char *kind;   /* "kv" | "blob" | "queue" */
    const char *scheme; /* "embedded", "redis", "fs" */
    /* Open a backend for one resource. Fails at once (-1, err) when the
     * location is malformed; a network backend that is merely down opens
     * fine and fails operations with MXU_RES_UNAVAILABLE until it is back. */
    int (*open)(const mxu_backend_config *cfg, mxu_backend **out, mxu_err *err);
    /* Free it once no operation is in flight (the resolver guarantees that). */
    void (*close)(mxu_backend *b);

    /* kv: keys are 1..512 bytes of UTF-8 without NUL; revisions start at 1
     * and grow with every write of a key. */
    void (*kv_get)(mxu_backend *b, const char *key, mxu_res_cb cb, void *ud);
    void (*kv_put)(mxu_backend *b, const char *key, const void *val, size_t len, mxu_res_cb cb,
                   void *ud);
    void (*kv_delete)(mxu_backend *b, const char *key, mxu_res_cb cb, void *ud);
    /* expected 0: only if the key does not exist. CONFLICT if it lost. */
    void (*kv_cas)(mxu_backend *b, const char *key, uint64_t expected, const void *val, size_t len,
                   mxu_res_cb cb, void *ud);
    /* Keys starting with prefix, in byte order, after `cursor` ("" = from the
     * start), at most `limit`. */
    void (*kv_list)(mxu_backend *b, const char *prefix, const char *cursor, size_t limit,
                    mxu_res_cb cb, void *ud);
    /* For moves: write a key with a given revision, unconditionally. */
    void (*kv_import)(mxu_backend *b, const char *key, const void *val, size_t len,
                      uint64_t revision, mxu_res_cb cb, void *ud);

    /* blob: keys as kv, plus '/' allowed as a separator ("img/a.png"); no
     * "." or ".." segments, no leading '/'. */
    /* Answers the bytes, n1 = the object's size and n2 = its version: any
     * number that changes whenever the object is replaced (0 if the backend
     * cannot tell), so that a reader reading in chunks notices a replacement
     * of the same size. */
    void (*blob_read)(mxu_backend *b, const char *key, uint64_t offset, size_t len, mxu_res_cb cb,
                      void *ud);
    /* Uploads. An upload belongs to its writer: the pair (key, owner), where
     * `owner` is an opaque id the caller chooses (the node passes the
     * invocation that sent the chunk, unique on the node). Chunks of one
     * upload arrive in order with contiguous offsets; the object is visible
     * (atomically replacing an older one) after the chunk flagged
     * MXU_RES_BLOB_LAST. A chunk flagged FIRST starts the owner's upload of
     * that key over. Uploads of one key by different owners are independent:
     * each publishes whole on its LAST chunk, the last to publish wins, and
     * none disturbs another. */
    void (*blob_write)(mxu_backend *b, const char *key, uint64_t owner, uint64_t offset,
                       unsigned flags, const void *data, size_t len, mxu_res_cb cb, void *ud);
    /* Drop `owner`'s unfinished upload of `key` (and its temporary data), if
     * there is one: its writer is gone. No answer; a driver that needs the
     * network for it finishes in the background. */
    void (*blob_abandon)(mxu_backend *b, const char *key, uint64_t owner);
    void (*blob_stat)(mxu_backend *b, const char *key, mxu_res_cb cb, void *ud);
    void (*blob_list)(mxu_backend *b, const char *prefix, const char *cursor, size_t limit,
                      mxu_res_cb cb, void *ud);
    void (*blob_delete)(mxu_backend *b, const char *key, mxu_res_cb cb, void *ud);

    /* queue: durable FIFO with leases. consume() hides the oldest visible
     * message for lease_ms and returns it with a receipt; ack(receipt)
     * deletes it; a message not acked in time becomes visible again (its
     * attempts count grows). NOT_FOUND when nothing is visible. */
    void (*queue_publish)(mxu_backend *b, const void *msg, size_t len, mxu_res_cb cb, void *ud);
    void (*queue_consume)(mxu_backend *b, uint64_t lease_ms, mxu_res_cb cb, void *ud);
    void (*queue_ack)(mxu_backend *b, const char *receipt, mxu_res_cb cb, void *ud);
} mxu_driver;

/* The drivers compiled in (resolve.c holds the table). */
const mxu_driver *mxu_driver_find(const char *kind, const char *scheme);

/* ---- the resolver: the resource map and live bindings --------------------------- */

typedef struct mxu_resolver mxu_resolver;
typedef struct mxu_binding mxu_binding;

typedef struct mxu_resolver_config {
    uv_loop_t *loop;
    const char *data_dir; /* the resource map lives in <data_dir>/state.db */
} mxu_resolver_config;

int mxu_resolver_open(const mxu_resolver_config *cfg, mxu_resolver **out, mxu_err *err);
/* Close every backend (after in-flight operations finished) and free. */
void mxu_resolver_close(mxu_resolver *r);

/* Parse "kv:orders" into kind ("kv", "blob", "queue") and name; validates.
 * (svc: resources are resolved by the scheduler, not here.) */
int mxu_resource_parse(const char *uri, char *kind, size_t kindlen, char *name, size_t namelen,
                       mxu_err *err);

/* The binding of `tenant`'s resource `uri`, created on first use from the map
 * (or the kind's default). Reference-counted; release with
 * mxu_binding_unref. Fails if the map's location cannot be opened. */
mxu_binding *mxu_resolver_bind(mxu_resolver *r, const char *tenant, const char *uri, mxu_err *err);
void mxu_binding_unref(mxu_binding *b);

/* One operation on a resource, as it came from a function (frame.h's table). */
typedef struct mxu_res_call {
    enum mxu_res_op op;
    uint64_t owner;     /* BLOB_WRITE: whose upload (see blob_write); else unused */
    const char *key;    /* kv/blob key; list prefix; queue receipt */
    const char *cursor; /* list */
    const void *data;   /* kv value, blob chunk, queue message */
    size_t len;
    uint64_t n1, n2; /* see frame.h */
} mxu_res_call;

/* Run `c` on the binding's current backend (holding a reference to it until
 * cb ran), or — while the resource is being moved — on both backends for
 * writes. The op must belong to the binding's kind (else INVALID). */
void mxu_binding_call(mxu_binding *b, const mxu_res_call *c, mxu_res_cb cb, void *ud);
/* `owner` is gone (its invocation ended, however it ended): drop every
 * upload it left unfinished on this resource, at once, with its temporary
 * data. Cheap when it left none. */
void mxu_binding_abandon(mxu_binding *b, uint64_t owner);
const char *mxu_binding_kind(const mxu_binding *b);
const char *mxu_binding_location(const mxu_binding *b);

/* Set (durably) where a resource lives: "embedded", "redis://host:port/db",
 * "fs:///dir". NULL/"" goes back to the default. Existing bindings switch at
 * once; operations in flight finish on the old backend. No data is copied
 * (see mxu_resolver_move). */
int mxu_resolver_set(mxu_resolver *r, const char *tenant, const char *uri, const char *location,
                     mxu_err *err);

/* Move a resource: copy its data to `location`, then switch atomically.
 * Writes made during the copy go to both backends, so none is lost; the
 * switch happens when the copy is complete. done(ud, err) runs once, from
 * the loop; err is NULL on success. Progress is in mxu_resolver_list_json. */
int mxu_resolver_move(mxu_resolver *r, const char *tenant, const char *uri, const char *location,
                      void (*done)(void *ud, const mxu_err *err), void *ud, mxu_err *err);

/* [{"resource": "kv:orders", "tenant": "default", "backend": "redis://...",
 *   "default": false, "moving": {"to": "...", "copied": 120}}] for every
 * resource in the map or bound now. */
json_t *mxu_resolver_list_json(mxu_resolver *r);

#endif
