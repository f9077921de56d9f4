/* Shared by the resolver's own files (resolve.c, resolve-move.c). */
#ifndef MXU_RESOLVE_CORE_H
#define MXU_RESOLVE_CORE_H

#include "resolve/resolve.h"

#include <sqlite3.h>
#include <uthash.h>

typedef struct mxu_move mxu_move;

/* A blob upload open through a binding: the binding remembers its writer
 * (owner) and key, so that an owner that ends can be abandoned on every
 * backend it may have written to, and so that a move knows which uploads
 * began before it (those finish on the source, then their object is copied). */
typedef struct mxu_upload_ref {
    char *id;        /* "OWNER-HEX/KEY", the hash key */
    const char *key; /* inside id */
    uint64_t owner;
    bool pre_move; /* open when the binding's current move began */
    UT_hash_handle hh;
} mxu_upload_ref;

/* The owner of the uploads a move's copier makes (no invocation id is this). */
#define MXU_RES_OWNER_MOVE UINT64_MAX

struct mxu_binding {
    mxu_resolver *r; /* NULL once the resolver closed */
    char *key;       /* "default/kv/orders" */
    char *tenant;
    char *uri; /* "kv:orders" */
    char kind[16];
    char name[64];
    mxu_backend *backend;    /* current; the binding holds a reference */
    mxu_backend *move_to;    /* during a move: the destination (a reference) */
    mxu_move *move;          /* during a move */
    mxu_upload_ref *uploads; /* blob: uploads open through this binding */
    int refs;
    UT_hash_handle hh;
};

struct mxu_resolver {
    uv_loop_t *loop;
    char *data_dir;
    sqlite3 *db;
    mxu_binding *bindings; /* by key */
};

mxu_backend *mxu_resolver_open_backend(mxu_resolver *r, const char *kind, const char *resource,
                                       const char *location, mxu_err *err);
void mxu_backend_unref(mxu_backend *be);

/* Not an operation functions can send: kv import for moves (n1 = revision). */
#define MXU_RES_KV_IMPORT 255

/* Run one call on one backend, holding a reference until its callback ran. */
void mxu_backend_call(mxu_backend *be, const mxu_res_call *c, mxu_res_cb cb, void *ud);
void mxu_binding_switch(mxu_binding *b, mxu_backend *be);
/* mxu_binding_call() for a call already checked and tracked (a write a move
 * held back). */
void mxu_binding_dispatch(mxu_binding *b, const mxu_res_call *c, mxu_res_cb cb, void *ud);
/* Store where a resource lives (NULL: back to the default). */
int mxu_resolver_map_put(mxu_resolver *r, const char *tenant, const char *kind, const char *name,
                         const char *location, mxu_err *err);

/* The upload of `key` by `owner` open through `b`, or NULL. */
mxu_upload_ref *mxu_binding_upload(mxu_binding *b, uint64_t owner, const char *key);

/* resolve-move.c */
void mxu_move_call(mxu_binding *b, const mxu_res_call *c, mxu_res_cb cb, void *ud);
/* An upload that was open when the move began ended: published (its LAST
 * chunk stored on the source: the object must be copied again) or not
 * (failed, restarted, abandoned). The copier waits for all of them. */
void mxu_move_upload_ended(mxu_binding *b, const char *key, bool published);
json_t *mxu_move_json(mxu_binding *b);

#endif
